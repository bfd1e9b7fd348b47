//! The one error type of the HTTP API: a stable code, a status and a message.
//!
//! Body: `{"code": "...", "message": "..."}`. Codes are part of the public API; internal
//! details are logged once and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use vitals_storage::dead_letter::DeadLetterError;

use crate::source::pipeline::{IngestError, ReplayError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unauthorized,
    Forbidden,
    InvalidBody,
    PayloadTooLarge,
    InvalidQuery,
    InvalidPatient,
    UnknownMetric,
    UnknownPatient,
    NotFound,
    Conflict,
    InvalidRule,
    TooManyPoints,
    Overloaded,
    AccountLocked,
    RateLimited,
    RequestTimeout,
    Unavailable,
    InsufficientStorage,
    InvalidSql,
    TooManyRows,
    QueryOutOfMemory,
    QueryFailed,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::InvalidBody => "invalid_body",
            Code::PayloadTooLarge => "payload_too_large",
            Code::InvalidQuery => "invalid_query",
            Code::InvalidPatient => "invalid_patient",
            Code::UnknownMetric => "unknown_metric",
            Code::UnknownPatient => "unknown_patient",
            Code::NotFound => "not_found",
            Code::Conflict => "conflict",
            Code::InvalidRule => "invalid_rule",
            Code::TooManyPoints => "too_many_points",
            Code::Overloaded => "overloaded",
            Code::AccountLocked => "account_locked",
            Code::RateLimited => "rate_limited",
            Code::RequestTimeout => "request_timeout",
            Code::Unavailable => "unavailable",
            Code::InsufficientStorage => "insufficient_storage",
            Code::InvalidSql => "invalid_sql",
            Code::TooManyRows => "too_many_rows",
            Code::QueryOutOfMemory => "query_out_of_memory",
            Code::QueryFailed => "query_failed",
            Code::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::InvalidBody
            | Code::InvalidQuery
            | Code::InvalidPatient
            | Code::InvalidRule
            | Code::TooManyPoints
            | Code::InvalidSql
            | Code::TooManyRows
            | Code::QueryOutOfMemory
            | Code::QueryFailed => StatusCode::BAD_REQUEST,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::UnknownMetric | Code::UnknownPatient | Code::NotFound => StatusCode::NOT_FOUND,
            Code::Conflict => StatusCode::CONFLICT,
            Code::AccountLocked => StatusCode::LOCKED,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::Overloaded | Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A time given in a query parameter `key`: RFC 3339 or ms since the epoch.
pub fn query_time(key: &str, s: &str) -> Result<i64, ApiError> {
    // Bounded to years 1970 to 9999, so arithmetic on times never overflows.
    vitals_core::time::parse_time(s)
        .map_err(|e| ApiError::new(Code::InvalidQuery, format!("{key}: an RFC 3339 time or ms since the epoch ({e})")))
}

#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// Logs the detail and answers with a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(Code::Internal, "internal error; see the server log")
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r =
            (self.code.status(), Json(Body { code: self.code.as_str(), message: &self.message })).into_response();
        match self.code {
            Code::Overloaded => {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Code::InsufficientStorage => {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            }
            Code::Unauthorized => {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"vitals\""));
            }
            _ => {}
        }
        if matches!(self.code, Code::Overloaded | Code::Unauthorized | Code::Forbidden | Code::PayloadTooLarge) {
            closing(&mut r);
        }
        r
    }
}

/// Answers that may come before the request body was read end the connection: the unread
/// body would otherwise be taken for the next request, and clients must not reuse it.
pub fn closing(r: &mut Response) {
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
}

impl From<vitals_storage::StoreError> for ApiError {
    fn from(e: vitals_storage::StoreError) -> Self {
        use vitals_storage::StoreError as E;
        match e {
            E::Overloaded { .. } => ApiError::new(Code::Overloaded, e.to_string()),
            E::TooManyPoints { .. } => ApiError::new(Code::TooManyPoints, e.to_string()),
            E::Closed => ApiError::new(Code::Unavailable, "the server is shutting down"),
            E::Failed(_) => {
                tracing::error!(error = %e, "write refused");
                ApiError::new(Code::Unavailable, "storage failed; writes are refused until it works again")
            }
            E::NoSpace(_) => {
                tracing::error!(error = %e, "write refused");
                ApiError::new(
                    Code::InsufficientStorage,
                    "the server's disk is full; writes are refused until space is freed (nothing acknowledged is lost)",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(e: crate::audit::AuditError) -> Self {
        match e {
            crate::audit::AuditError::DiskFull(_) => {
                tracing::error!(error = %e, "request refused");
                ApiError::new(
                    Code::InsufficientStorage,
                    "the server's disk is full: the audit log cannot record this request, and patient data is not served unrecorded",
                )
            }
            other => ApiError::internal(format!("recording the audit entry: {other}")),
        }
    }
}

impl From<vitals_sql::SqlError> for ApiError {
    fn from(e: vitals_sql::SqlError) -> Self {
        use vitals_sql::SqlError as E;
        let code = match &e {
            E::Invalid(_) | E::NotAllowed(_) => Code::InvalidSql,
            E::TooManyRows { .. } => Code::TooManyRows,
            E::Memory { .. } => Code::QueryOutOfMemory,
            E::Timeout { .. } => Code::RequestTimeout,
            E::Busy { .. } => Code::Overloaded,
            E::Failed(_) => Code::QueryFailed,
            E::Internal(_) => return ApiError::internal(e),
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<vitals_query::QueryError> for ApiError {
    fn from(e: vitals_query::QueryError) -> Self {
        use vitals_query::QueryError as E;
        match e {
            E::TooManyPoints | E::TooManyScanned | E::TooManyBuckets { .. } => {
                ApiError::new(Code::TooManyPoints, e.to_string())
            }
            E::EmptyRange => ApiError::new(Code::InvalidQuery, e.to_string()),
            E::Store(s) => s.into(),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Undecodable { message, .. } => ApiError::new(Code::InvalidBody, message),
            IngestError::Store(s) => s.into(),
            IngestError::ShuttingDown => ApiError::new(Code::Unavailable, "the server is shutting down"),
            other @ IngestError::Events(_) => ApiError::internal(other),
        }
    }
}

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::DeadLetter(DeadLetterError::NotFound(id)) => {
                ApiError::new(Code::NotFound, format!("no dead letter {id}"))
            }
            ReplayError::Ingest(i) => i.into(),
            ReplayError::Decode(m) => ApiError::new(Code::InvalidBody, m),
            other => ApiError::internal(other),
        }
    }
}
