//! The OpenAPI 3.1 document of the HTTP API, built from the route table itself: every
//! route of [`super::routes`] becomes an operation with its credentials, path parameters
//! and error answers, so a route cannot exist without being described (a test walks both).
//! What the table does not know (query parameters, bodies, success codes) comes from
//! [`describe`]; a route it does not know fails the test.

mod routes;

use axum::http::Method;
use serde_json::{Value, json};
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Components, ContentBuilder, Info, OpenApi, OpenApiBuilder, Paths, Ref, RefOr, Required, ResponseBuilder, Responses,
    ResponsesBuilder,
};

use vitals_meta::Role;

use super::RouteSpec;
use crate::auth::credentials::Credentials;
use routes::describe_route;

/// How a route answers when it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A JSON object.
    Json,
    /// A JSON array or object (as Nightscout answers).
    JsonArrayOrObject,
    /// No body.
    Empty,
    /// JSON by default, CSV when asked (`Accept: text/csv`).
    JsonOrCsv,
    /// A query's answer: JSON, CSV, Arrow IPC or Parquet.
    Table,
    /// A zip archive.
    Zip,
    /// A FHIR resource (`application/fhir+json`).
    Fhir,
    /// FHIR resources, one per line (`application/fhir+ndjson`).
    FhirNdjson,
    /// Server-sent events.
    EventStream,
    /// Prometheus text.
    Text,
}

/// What the route table does not say about a route.
struct Doc {
    summary: &'static str,
    tag: &'static str,
    /// Query parameters: name, JSON schema, required.
    query: Vec<(&'static str, Value, bool)>,
    /// Request body: content types and the JSON schema of each.
    body: Vec<(&'static str, Value)>,
    /// Success statuses.
    ok: &'static [u16],
    answer: Answer,
    /// The schema of a JSON answer, where it is pinned down (else any object).
    returns: Option<Value>,
}

impl Doc {
    fn returns(mut self, schema: Value) -> Doc {
        self.returns = Some(schema);
        self
    }
}

/// An object with these members, each of this schema (others allowed).
fn with(members: &[(&str, Value)]) -> Value {
    let names: Vec<&str> = members.iter().map(|m| m.0).collect();
    let props: serde_json::Map<String, Value> = members.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    json!({"type": "object", "required": names, "properties": props})
}

fn objects() -> Value {
    json!({"type": "array", "items": {"type": "object"}})
}

fn string() -> Value {
    json!({"type": "string"})
}
fn integer() -> Value {
    json!({"type": "integer", "format": "int64"})
}
fn count() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": 0})
}
/// A time: RFC 3339, or milliseconds since the epoch.
fn time() -> Value {
    json!({"type": "string", "description": "RFC 3339 time or milliseconds since the epoch"})
}
fn any_object() -> Value {
    json!({"type": "object"})
}
fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn role() -> Value {
    let names: Vec<Value> = Role::ALL.iter().filter_map(|r| serde_json::to_value(r).ok()).collect();
    json!({"type": "string", "enum": names})
}

/// A sample as `POST /api/v1/samples` takes it.
fn sample() -> Value {
    json!({
        "type": "object",
        "required": ["patient", "metric", "time", "value"],
        "properties": {
            "patient": {"type": "string"},
            "metric": {"type": "string"},
            "time": {"type": ["string", "integer"]},
            "value": {"type": "number"},
            "unit": {"type": "string"},
            "device": {"type": "string"},
            "id": {"type": "string"}
        }
    })
}

fn rule_spec() -> Value {
    json!({
        "type": "object",
        "required": ["name", "expr"],
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string"},
            "expr": {"type": "string"},
            "severity": {"type": "string", "enum": ["info", "warning", "urgent"]},
            "for": {"type": "string"},
            "clear": {"type": "string"},
            "scope": {"type": ["string", "object"], "description": "all patients (default), or those named"},
            "renotify": {"type": "string"},
            "enabled": {"type": "boolean"},
            "description": {"type": "string"}
        }
    })
}

fn identity() -> Value {
    json!({"type": "object", "additionalProperties": {"type": ["string", "null"]}})
}

fn doc(
    summary: &'static str,
    tag: &'static str,
    query: Vec<(&'static str, Value, bool)>,
    body: Vec<(&'static str, Value)>,
    ok: &'static [u16],
    answer: Answer,
) -> Doc {
    Doc { summary, tag, query, body, ok, answer, returns: None }
}

fn json_body(schema: Value) -> Vec<(&'static str, Value)> {
    vec![("application/json", schema)]
}

/// What a route takes and answers, beyond what the route table says. `None`: a route this
/// function does not know (the test over the route table fails on it).
fn describe(method: &Method, path: &str) -> Option<Doc> {
    let d = describe_route(method, path)?;
    Some(match answer_schema(method.as_str(), path) {
        Some(v) => d.returns(v),
        None => d,
    })
}

/// The JSON answers pinned down member by member (the others are objects).
fn answer_schema(method: &str, path: &str) -> Option<Value> {
    let int = || json!({"type": "integer"});
    Some(match (method, path) {
        ("POST", "/api/v1/samples") => with(&[("accepted", int()), ("rejected", objects()), ("rejected_total", int())]),
        ("POST", "/api/v1/ingest/health-auto-export") => with(&[
            ("accepted", int()),
            ("events", int()),
            ("rejected", objects()),
            ("rejected_total", int()),
            ("unsupported", objects()),
        ]),
        ("POST", "/api/v1/ingest/file") => with(&[
            ("accepted", int()),
            ("events", int()),
            ("rejected", objects()),
            ("rejected_total", int()),
            ("unsupported", objects()),
        ]),
        ("GET", "/api/v1/metrics") => with(&[("metrics", objects())]),
        ("GET", "/api/v1/patients") => with(&[("patients", objects())]),
        ("POST", "/api/v1/patients") => with(&[("patient", string())]),
        ("GET", "/api/v1/patients/{patient}/latest") => {
            with(&[("patient", string()), ("metrics", objects()), ("now", string())])
        }
        ("GET", "/api/v1/patients/{patient}/devices") => with(&[
            ("patient", string()),
            ("now", string()),
            ("stale_after_seconds", int()),
            ("alarm", json!({"type": "boolean"})),
            ("devices", objects()),
        ]),
        ("GET", "/api/v1/patients/{patient}/events") => with(&[("patient", string()), ("events", objects())]),
        ("GET", "/api/v1/patients/{patient}/series/{metric}") => with(&[
            ("patient", string()),
            ("metric", string()),
            ("unit", string()),
            ("points", json!({"type": "array"})),
        ]),
        ("GET", "/api/v1/users") => with(&[("users", objects())]),
        ("GET", "/api/v1/teams") => with(&[("teams", objects())]),
        ("GET", "/api/v1/audit") => with(&[("entries", objects())]),
        ("GET", "/api/v1/alerts") => with(&[("alerts", objects())]),
        ("GET", "/api/v1/dead-letters") => with(&[("dead_letters", objects()), ("total", int()), ("dropped", int())]),
        ("POST", "/api/v1/sql") => {
            with(&[("columns", objects()), ("rows", json!({"type": "array"})), ("row_count", int())])
        }
        _ => return None,
    })
}

fn schema(v: Value) -> Result<RefOr<Schema>, serde_json::Error> {
    serde_json::from_value::<Schema>(v).map(RefOr::T)
}

/// The error bodies of each way of presenting credentials.
fn error_schema(credentials: Credentials) -> Result<RefOr<Schema>, serde_json::Error> {
    match credentials {
        Credentials::Bearer => Ok(RefOr::Ref(Ref::from_schema_name("Error"))),
        // InfluxDB and Nightscout clients get errors in their own shape; limits and
        // failures ahead of the handler answer in the API's.
        Credentials::Influx | Credentials::Nightscout => schema(json!({"anyOf": [
            {"$ref": "#/components/schemas/Error"},
            {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            {"type": "object", "required": ["status", "message"], "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}
        ]})),
    }
}

/// Every error status a route may answer, and why.
const ERRORS: [(u16, &str); 12] = [
    (400, "the request is malformed (the body says where and why)"),
    (401, "no valid credentials"),
    (403, "the credentials do not allow this"),
    (404, "no such thing, or not one of yours"),
    (408, "the request body stalled"),
    (409, "conflicts with the current state"),
    (413, "the body is over the limit"),
    (422, "understood but refused"),
    (429, "too many requests; retry later"),
    (500, "an internal fault (logged; never expected)"),
    (503, "overloaded or unavailable; retry after Retry-After seconds"),
    (507, "the data disk is full; retry after Retry-After seconds"),
];

fn responses(spec: &RouteSpec, d: &Doc) -> Result<Responses, serde_json::Error> {
    let mut r = ResponsesBuilder::new();
    for &code in d.ok {
        let ok = ResponseBuilder::new().description("success");
        let ok = match (d.answer, code) {
            (_, 204) | (Answer::Empty, _) => ok,
            (Answer::Json, _) => {
                ok.content("application/json", ContentBuilder::new().schema(Some(schema(any_object())?)).build())
            }
            (Answer::JsonArrayOrObject, _) => ok.content(
                "application/json",
                ContentBuilder::new().schema(Some(schema(json!({"type": ["array", "object"]}))?)).build(),
            ),
            (Answer::JsonOrCsv, _) => ok
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema(d.returns.clone().unwrap_or_else(any_object))?)).build(),
                )
                .content("text/csv", ContentBuilder::new().schema(Some(schema(string())?)).build()),
            (Answer::Table, _) => {
                let binary = || schema(json!({"type": "string", "format": "binary"}));
                ok.content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema(d.returns.clone().unwrap_or_else(any_object))?)).build(),
                )
                .content("text/csv", ContentBuilder::new().schema(Some(schema(string())?)).build())
                .content("application/vnd.apache.arrow.stream", ContentBuilder::new().schema(Some(binary()?)).build())
                .content("application/vnd.apache.parquet", ContentBuilder::new().schema(Some(binary()?)).build())
            }
            (Answer::Fhir, _) => {
                ok.content("application/fhir+json", ContentBuilder::new().schema(Some(schema(any_object())?)).build())
            }
            (Answer::FhirNdjson, _) => {
                ok.content("application/fhir+ndjson", ContentBuilder::new().schema(Some(schema(string())?)).build())
            }
            (Answer::Zip, _) => ok.content(
                "application/zip",
                ContentBuilder::new().schema(Some(schema(json!({"type": "string", "format": "binary"}))?)).build(),
            ),
            (Answer::EventStream, _) => {
                let event = json!({
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {"event": {"type": "string", "enum": ["latest"]}, "data": {"type": "string"}}
                });
                ok.content("text/event-stream", ContentBuilder::new().schema(Some(schema(event)?)).build())
            }
            (Answer::Text, _) => {
                ok.content("text/plain", ContentBuilder::new().schema(Some(schema(string())?)).build())
            }
        };
        r = r.response(code.to_string(), ok.build());
    }
    for (code, why) in ERRORS {
        if code == 500 {
            // Documented in prose only: a 500 is a bug, and the schemathesis run fails on one.
            continue;
        }
        let content = ContentBuilder::new().schema(Some(error_schema(spec.credentials)?)).build();
        r = r.response(
            code.to_string(),
            ResponseBuilder::new().description(why).content("application/json", content).build(),
        );
    }
    Ok(r.build())
}

fn security(credentials: Credentials) -> Vec<SecurityRequirement> {
    let names: &[&str] = match credentials {
        Credentials::Bearer => &["bearer", "session"],
        Credentials::Influx => &["bearer", "influx_token", "basic"],
        Credentials::Nightscout => &["bearer", "api_secret", "token_query"],
    };
    names.iter().map(|n| SecurityRequirement::new(*n, Vec::<String>::new())).collect()
}

fn operation(spec: &RouteSpec, d: &Doc) -> Result<Operation, serde_json::Error> {
    let id = format!(
        "{}{}",
        spec.method.as_str().to_lowercase(),
        spec.path.replace(['{', '}'], "").replace(['/', '.', '-'], "_")
    );
    let mut op = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(d.summary))
        .tag(d.tag)
        .securities(Some(security(spec.credentials)))
        .responses(responses(spec, d)?);
    for segment in spec.path.split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(schema(json!({"type": "string", "minLength": 1}))?)),
            );
        }
    }
    for (name, s, required) in &d.query {
        op = op.parameter(
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Query)
                .required(if *required { Required::True } else { Required::False })
                .schema(Some(schema(s.clone())?)),
        );
    }
    if !d.body.is_empty() {
        let mut body = RequestBodyBuilder::new().required(Some(Required::True));
        for (content_type, s) in &d.body {
            body = body.content(*content_type, ContentBuilder::new().schema(Some(schema(s.clone())?)).build());
        }
        op = op.request_body(Some(body.build()));
    }
    Ok(op.build())
}

fn http_method(m: &Method) -> Option<HttpMethod> {
    Some(match *m {
        Method::GET => HttpMethod::Get,
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        _ => return None,
    })
}

/// The routes of `specs` that [`describe`] does not know: none, or the document is not
/// the whole API.
pub fn undescribed(specs: &[RouteSpec]) -> Vec<String> {
    specs
        .iter()
        .filter(|s| http_method(&s.method).is_none() || describe(&s.method, &s.path).is_none())
        .map(|s| format!("{} {}", s.method, s.path))
        .collect()
}

fn components() -> Result<Components, serde_json::Error> {
    let mut c = Components::new();
    c.schemas.insert(
        "Error".into(),
        schema(json!({
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable, e.g. invalid_query, not_found, overloaded"},
                "message": {"type": "string"}
            }
        }))?,
    );
    let schemes = [
        ("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer))),
        ("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("vitals_session")))),
        ("influx_token", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("Authorization")))),
        ("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic))),
        ("api_secret", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("api-secret")))),
        ("token_query", SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("token")))),
    ];
    for (name, s) in schemes {
        c.security_schemes.insert(name.into(), RefOr::T(s));
    }
    Ok(c)
}

/// The document for the routes of `specs` (the router's table). An error: a schema
/// literal of this file that is not a schema (a test builds the document).
pub fn document(specs: &[RouteSpec]) -> Result<OpenApi, serde_json::Error> {
    let mut paths = Paths::new();
    for spec in specs {
        let (Some(method), Some(d)) = (http_method(&spec.method), describe(&spec.method, &spec.path)) else {
            continue;
        };
        let item = PathItem::new(method, operation(spec, &d)?);
        match paths.paths.get_mut(&spec.path) {
            Some(existing) => existing.merge_operations(item),
            None => {
                paths.paths.insert(spec.path.clone(), item);
            }
        }
    }
    let mut info = Info::new("Vitals", env!("CARGO_PKG_VERSION"));
    info.description = Some(
        "The HTTP API of Vitals. Every route needs credentials except /healthz, /api/v1/login and the \
         dashboard's static shell. Errors are {\"code\", \"message\"} with a stable code; the InfluxDB and \
         Nightscout routes answer errors as those servers do. A 500 is a bug."
            .into(),
    );
    Ok(OpenApiBuilder::new().info(info).paths(paths).components(Some(components()?)).build())
}
