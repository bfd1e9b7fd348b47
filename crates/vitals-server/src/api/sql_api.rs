//! `POST /api/v1/sql`: a query as JSON (`{"sql": "...", "format": "csv"}`) or as the body
//! itself (`Content-Type: application/sql` or `text/plain`); the answer as JSON, CSV,
//! Arrow IPC or Parquet (`?format=`, the body's `format`, else `Accept`, else JSON). Rows
//! are those of the caller's patients (`sql::scope`); the audit entry holds the query text.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use vitals_sql::answer::{self, Format};

use crate::api::error::{ApiError, Code};
use crate::api::extract::Query;
use crate::app::AppState;
use crate::audit::AuditTarget;
use crate::auth::Principal;

/// Longest query text accepted (and recorded in the audit log).
pub(crate) const MAX_SQL_BYTES: usize = 64 << 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlBody {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlParams {
    #[serde(default)]
    format: Option<String>,
}

pub(crate) async fn query(
    State(app): State<AppState>,
    Extension(who): Extension<Principal>,
    Query(params): Query<SqlParams>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // Read at most one byte past the limit: a larger body is refused without being held.
    let body = match axum::body::to_bytes(body, MAX_SQL_BYTES + 1).await {
        Ok(b) => b,
        Err(_) => {
            let e = ApiError::new(Code::PayloadTooLarge, format!("a query may be at most {MAX_SQL_BYTES} bytes"));
            return e.into_response();
        }
    };
    let (sql, body_format) = match read_body(&headers, &body) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let audit = AuditTarget(sql.clone());
    let mut r = match run(&app, &who, &sql, params.format.or(body_format), &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    r.extensions_mut().insert(audit);
    r
}

fn read_body(headers: &HeaderMap, body: &Bytes) -> Result<(String, Option<String>), ApiError> {
    if body.len() > MAX_SQL_BYTES {
        return Err(ApiError::new(Code::PayloadTooLarge, format!("a query may be at most {MAX_SQL_BYTES} bytes")));
    }
    let media = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let (sql, format) = match media.as_str() {
        "application/json" => {
            let b: SqlBody = serde_json::from_slice(body)
                .map_err(|e| ApiError::new(Code::InvalidBody, format!("expected {{\"sql\": \"SELECT ...\"}}: {e}")))?;
            (b.sql, b.format)
        }
        "application/sql" | "text/plain" => {
            let text = std::str::from_utf8(body)
                .map_err(|e| ApiError::new(Code::InvalidBody, format!("the query is not UTF-8: {e}")))?;
            (text.to_owned(), None)
        }
        other => {
            return Err(ApiError::new(
                Code::InvalidBody,
                format!("Content-Type {other:?}: send application/json ({{\"sql\": ...}}) or application/sql"),
            ));
        }
    };
    if sql.trim().is_empty() {
        return Err(ApiError::new(Code::InvalidSql, "the query is empty"));
    }
    Ok((sql, format))
}

async fn run(
    app: &AppState,
    who: &Principal,
    sql: &str,
    format: Option<String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let format = match format {
        Some(f) => f.parse::<Format>().map_err(|e| ApiError::new(Code::InvalidQuery, e))?,
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .and_then(Format::from_media_type)
            .unwrap_or(Format::Json),
    };
    if format == Format::Table {
        return Err(ApiError::new(Code::InvalidQuery, "format: use json, csv, arrow or parquet"));
    }
    let Some(scope) = crate::sql::scope(who) else {
        return Err(ApiError::new(Code::Forbidden, format!("a {} may not run SQL", who.role)));
    };
    let answer = app.sql.query(sql, &scope).await?;
    let bytes = tokio::task::spawn_blocking(move || answer::encode(&answer, format))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let mut r = bytes.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()));
    Ok(r)
}
