//! The PostgreSQL wire protocol (`sql.pg_listen`), so that psql, psycopg, pandas, Grafana,
//! Metabase and DBeaver query Vitals like a database: the simple and the extended query
//! protocols over `vitals-sql`, read-only.
//!
//! Sign-in: a Vitals user's name and password (the same lockout as the dashboard's), or
//! any user name with an API token as the password; cleartext over the connection, so TLS
//! (the server's certificate) or a loopback address. The principal is read again at every
//! query, so revocation is immediate. Every query is audited with its text. `BEGIN`,
//! `COMMIT`, `ROLLBACK`, `SET`, `RESET`, `DISCARD` and `DEALLOCATE` are accepted and do
//! nothing: every query reads the latest data.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::driver::AuthOutcome;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    AuthDriver, AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use vitals_sql::arrow::array::{Array, ArrayRef, AsArray};
use vitals_sql::arrow::datatypes::{DataType, Schema, TimeUnit};
use vitals_sql::arrow::util::display::{ArrayFormatter, FormatOptions};
use vitals_sql::{Answer, SqlError};

use crate::app::AppState;
use crate::auth::{LockoutPolicy, Principal};
use crate::shutdown::Shutdown;

/// How a connection signed in; the principal is derived from it at every query.
#[derive(Debug, Clone)]
enum Credential {
    User(String),
    Token(String),
}

/// Starts the listener when `sql.pg_listen` is set: its address and task.
pub async fn spawn(
    app: AppState,
    shutdown: Shutdown,
) -> anyhow::Result<Option<(SocketAddr, JoinHandle<anyhow::Result<()>>)>> {
    let listen = app.config.sql.pg_listen.clone();
    if listen.is_empty() {
        return Ok(None);
    }
    let listener = TcpListener::bind(&listen).await.map_err(|e| anyhow::anyhow!("sql.pg_listen {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let tls = crate::tls::http_config(&app.config)?.map(pgwire::tokio::TlsAcceptor::from);
    if tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the PostgreSQL protocol listens beyond loopback without TLS: passwords cross the network in clear");
    }
    tracing::info!(%addr, tls = tls.is_some(), "PostgreSQL protocol listening");
    let handlers = Arc::new(Handlers { app: app.clone() });
    let slots = Arc::new(tokio::sync::Semaphore::new(app.config.sql.pg_max_connections.max(1)));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.triggered() => return Ok(()),
                accepted = listener.accept() => {
                    let (mut socket, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(error = %e, "accepting a PostgreSQL connection");
                            continue;
                        }
                    };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "PostgreSQL connection refused: sql.pg_max_connections reached");
                        tokio::spawn(async move { too_many_clients(&mut socket).await });
                        continue;
                    };
                    let (h, tls) = (handlers.clone(), tls.clone());
                    tokio::spawn(async move {
                        let _slot = slot;
                        if let Err(e) = pgwire::tokio::process_socket(socket, tls, h).await {
                            tracing::debug!(error = %e, "PostgreSQL connection ended");
                        }
                    });
                }
            }
        }
    });
    Ok(Some((addr, task)))
}

/// Answers a connection over the cap as PostgreSQL does: a FATAL error 53300 (clients
/// read it in place of the answer to their first message), then the end of the connection.
async fn too_many_clients(socket: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let mut body = Vec::new();
    for (field, text) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "53300"), (b'M', "sorry, too many clients already")]
    {
        body.push(field);
        body.extend_from_slice(text.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = vec![b'E'];
    msg.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    msg.extend_from_slice(&body);
    let _ = socket.write_all(&msg).await;
    let _ = socket.shutdown().await;
}

struct Handlers {
    app: AppState,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(Queries { app: self.app.clone() })
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(Queries { app: self.app.clone() })
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Startup {
            driver: AuthDriver::new(parameters()),
            cleartext: Arc::new(CleartextPasswordAuth::new(Arc::new(Verifier { app: self.app.clone() }))),
        })
    }
}

fn parameters() -> DefaultServerParameterProvider {
    let mut p = DefaultServerParameterProvider::default();
    p.server_version = format!("16.0 (Vitals {})", env!("CARGO_PKG_VERSION"));
    p.time_zone = "UTC".into();
    p
}

/// Checks a user's password, or a token given as the password.
struct Verifier {
    app: AppState,
}

impl Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

#[async_trait]
impl AuthSource<Credential> for Verifier {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(login.user().unwrap_or_default().to_owned()))
    }

    async fn verify_password(&self, login: &LoginInfo, presented: &[u8]) -> PgWireResult<Option<Credential>> {
        let name = login.user().unwrap_or_default().to_owned();
        let refused = || PgWireError::InvalidPassword(name.clone());
        let password = String::from_utf8(presented.to_vec()).map_err(|_| refused())?;
        let app = self.app.clone();
        let now = app.clock.now_ms();
        let ip = login.host().parse::<std::net::IpAddr>().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        if !app.login_limiter.allow(ip, now, app.config.auth.login_attempts_per_minute) {
            return Err(user_error("28000", "too many sign-in attempts from this address; wait a minute"));
        }
        // A token first (it needs no user name), then the user's password.
        if let Some(p) = app.directory.authenticate(&password, now) {
            let token = p.actor.clone();
            audit_login(&app, &name, &token, "ok", login.host()).await;
            return Ok(Some(Credential::Token(password)));
        }
        let policy = LockoutPolicy {
            max_failed: app.config.auth.max_failed_logins.max(1),
            lockout_ms: app.config.auth.lockout.as_ms(),
        };
        let checked = {
            let (app, name) = (app.clone(), name.clone());
            tokio::task::spawn_blocking(move || app.directory.login(&name, &password, now, policy))
                .await
                .map_err(|e| user_error("XX000", &e.to_string()))?
        };
        match checked {
            Ok(user) => {
                audit_login(&app, &name, &format!("user:{}", user.name), "ok", login.host()).await;
                Ok(Some(Credential::User(user.id)))
            }
            Err(e) => {
                audit_login(&app, &name, "anonymous", "denied", login.host()).await;
                tracing::info!(user = %name, error = %e, "PostgreSQL sign-in refused");
                Err(match e {
                    crate::auth::LoginError::Locked { .. } => user_error("28P01", &e.to_string()),
                    crate::auth::LoginError::Store(why) => {
                        tracing::error!(error = %why, "PostgreSQL sign-in");
                        user_error("XX000", "internal error; see the server log")
                    }
                    _ => refused(),
                })
            }
        }
    }
}

async fn audit_login(app: &AppState, name: &str, actor: &str, outcome: &str, host: &str) {
    let event = vitals_meta::AuditEvent {
        ts_ms: app.clock.now_ms(),
        actor: actor.to_owned(),
        action: if outcome == "ok" { "login.ok" } else { "login.failed" }.to_owned(),
        patient: None,
        target: format!("postgres user {name}"),
        origin: host.to_owned(),
        outcome: outcome.to_owned(),
    };
    if let Err(e) = app.auditor.record(event).await {
        tracing::error!(error = %e, "recording a PostgreSQL sign-in");
    }
}

struct Startup {
    driver: AuthDriver<DefaultServerParameterProvider, Credential>,
    cleartext: Arc<CleartextPasswordAuth<Verifier>>,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if client.metadata().get("user").is_none() {
                    return Err(PgWireError::UserNameRequired);
                }
                let mechanism = AuthMechanismFactory::<Credential>::create(self.cleartext.as_ref());
                if let AuthOutcome::Authenticated { final_message, .. } =
                    self.driver.begin_authentication(client, mechanism).await?
                {
                    self.driver.complete_authentication(client, final_message).await?;
                }
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(m) => {
                if let AuthOutcome::Authenticated { identity, final_message } =
                    self.driver.advance_authentication(client, m).await?
                {
                    let Some(credential) = identity else {
                        return Err(PgWireError::InvalidPassword(String::new()));
                    };
                    client.session_extensions().insert(credential);
                    self.driver.complete_authentication(client, final_message).await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

struct Queries {
    app: AppState,
}

/// Statements clients send around queries that have no meaning here.
fn session_statement(sql: &str) -> Option<Response> {
    let word = sql.split_whitespace().next().unwrap_or("").trim_end_matches(';').to_ascii_uppercase();
    Some(match word.as_str() {
        "BEGIN" | "START" => Response::TransactionStart(Tag::new("BEGIN")),
        "COMMIT" | "END" => Response::TransactionEnd(Tag::new("COMMIT")),
        "ROLLBACK" | "ABORT" => Response::TransactionEnd(Tag::new("ROLLBACK")),
        "SET" | "RESET" | "DISCARD" | "DEALLOCATE" => Response::Execution(Tag::new(&word)),
        _ => return None,
    })
}

fn user_error(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".to_owned(), code.to_owned(), message.to_owned())))
}

fn sql_error(e: &SqlError) -> PgWireError {
    let code = match e {
        SqlError::Invalid(_) => "42601",
        SqlError::NotAllowed(_) => "25006",
        SqlError::TooManyRows { .. } => "54000",
        SqlError::Memory { .. } => "53200",
        SqlError::Timeout { .. } => "57014",
        SqlError::Busy { .. } => "53300",
        SqlError::Failed(_) => "22000",
        SqlError::Internal(_) => "XX000",
    };
    let message = match e {
        SqlError::Internal(detail) => {
            tracing::error!(error = %detail, "SQL over the PostgreSQL protocol");
            "internal error; see the server log".to_owned()
        }
        other => other.to_string(),
    };
    user_error(code, &message)
}

impl Queries {
    /// The principal of the connection now, and the rows its SQL may see.
    fn who<C: ClientInfo>(&self, client: &C) -> PgWireResult<(Principal, vitals_sql::Scope)> {
        let now = self.app.clock.now_ms();
        let principal = match client.session_extensions().get::<Credential>().as_deref() {
            Some(Credential::Token(t)) => self.app.directory.authenticate(t, now),
            Some(Credential::User(id)) => {
                self.app.directory.meta().user(id).ok().flatten().and_then(|u| self.app.directory.principal_of_user(&u))
            }
            None => None,
        };
        let principal =
            principal.ok_or_else(|| user_error("28000", "the credentials of this connection are no longer valid"))?;
        let scope = crate::sql::scope(&principal)
            .ok_or_else(|| user_error("42501", &format!("a {} may not run SQL", principal.role)))?;
        Ok((principal, scope))
    }

    /// Runs one statement and records it in the audit log.
    async fn run<C: ClientInfo>(
        &self,
        client: &C,
        sql: &str,
        params: &[vitals_sql::Param],
        formats: &Format,
    ) -> PgWireResult<Response> {
        if let Some(r) = session_statement(sql) {
            return Ok(r);
        }
        let (principal, scope) = self.who(client)?;
        let answer = self.app.sql.query_with(sql, params, &scope).await;
        // The values are part of what was asked (a patient id, a range): they are recorded too.
        let shown: Vec<String> =
            params.iter().map(|p| p.as_deref().map_or_else(|| "NULL".to_owned(), |s| format!("{s:?}"))).collect();
        let target = if params.is_empty() {
            format!("postgres {sql}")
        } else {
            format!("postgres {sql} -- parameters: {}", shown.join(", "))
        };
        let event = vitals_meta::AuditEvent {
            ts_ms: self.app.clock.now_ms(),
            actor: principal.actor.clone(),
            action: crate::audit::audit_action(crate::authz::Action::QuerySql).to_owned(),
            patient: None,
            target,
            origin: client.socket_addr().ip().to_string(),
            outcome: if answer.is_ok() { "ok" } else { "failed" }.to_owned(),
        };
        // Patient data is not handed out unrecorded.
        self.app.auditor.record(event).await.map_err(|e| user_error("XX000", &format!("the audit log: {e}")))?;
        let answer = answer.map_err(|e| sql_error(&e))?;
        let fields = Arc::new(fields(&answer.schema, formats));
        let rows = encode(&answer, fields.clone())?;
        Ok(Response::Query(QueryResponse::new(fields, futures_util::stream::iter(rows.into_iter().map(Ok)))))
    }

    async fn describe<C: ClientInfo>(&self, client: &C, sql: &str, formats: &Format) -> PgWireResult<Vec<FieldInfo>> {
        if session_statement(sql).is_some() {
            return Ok(Vec::new());
        }
        let (_, scope) = self.who(client)?;
        let schema = self.app.sql.describe(sql, &scope).await.map_err(|e| sql_error(&e))?;
        Ok(fields(&schema, formats))
    }
}

#[async_trait]
impl SimpleQueryHandler for Queries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut out = Vec::new();
        for statement in vitals_sql::split_statements(query) {
            match self.run(client, &statement, &[], &Format::UnifiedText).await {
                Ok(r) => out.push(r),
                // Later statements are not run after an error, as in PostgreSQL.
                Err(PgWireError::UserError(info)) => {
                    out.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Statements are kept as their text; they are planned when described or run.
#[derive(Debug, Default)]
struct TextParser;

#[async_trait]
impl QueryParser for TextParser {
    type Statement = String;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<String>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        Ok(Some(sql.to_owned()))
    }

    fn get_parameter_types(&self, _stmt: &String) -> PgWireResult<Vec<Type>> {
        Ok(Vec::new())
    }

    fn get_result_schema(&self, _stmt: &String, _format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Queries {
    type Statement = String;
    type QueryParser = TextParser;

    fn query_parser(&self) -> Arc<TextParser> {
        Arc::new(TextParser)
    }

    async fn do_describe_statement<C>(
        &self,
        client: &mut C,
        target: &StoredStatement<String>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = self.describe(client, &target.statement, &Format::UnifiedText).await?;
        let params = if session_statement(&target.statement).is_some() {
            Vec::new()
        } else {
            let (_, scope) = self.who(client)?;
            let types = self.app.sql.parameter_types(&target.statement, &scope).await.map_err(|e| sql_error(&e))?;
            // A type the client named at Parse stands; the others are what the query implies.
            types
                .iter()
                .enumerate()
                .map(|(i, t)| target.parameter_types.get(i).cloned().flatten().unwrap_or_else(|| pg_type(t)))
                .collect()
        };
        Ok(DescribeStatementResponse::new(params, fields))
    }

    async fn do_describe_portal<C>(
        &self,
        client: &mut C,
        target: &Portal<String>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let fields = self.describe(client, &target.statement.statement, &target.result_column_format).await?;
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<String>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = String>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let params = decode_params(portal)?;
        self.run(client, &portal.statement.statement, &params, &portal.result_column_format).await
    }
}

/// The values of a portal's parameters as text (NULL as `None`). Text-format values are
/// taken as they are; binary ones are decoded for the types clients send in binary
/// (integers, floats, booleans, text), and refused otherwise with a clear error.
fn decode_params(portal: &Portal<String>) -> PgWireResult<Vec<vitals_sql::Param>> {
    let binary = |i: usize| match &portal.parameter_format {
        Format::UnifiedText => false,
        Format::UnifiedBinary => true,
        // One code applies to every parameter; otherwise one per parameter.
        Format::Individual(codes) => codes.get(i).or(codes.first()).is_some_and(|c| *c == 1),
    };
    let types = &portal.statement.parameter_types;
    portal
        .parameters
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let Some(bytes) = p else { return Ok(None) };
            let bad = |why: &str| user_error("22P02", &format!("parameter ${}: {why}", i + 1));
            if !binary(i) {
                return String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| bad("not UTF-8"));
            }
            let ty = types.get(i).cloned().flatten().unwrap_or(Type::TEXT);
            let b: &[u8] = bytes;
            let int = |n: usize| -> PgWireResult<i64> {
                let arr: [u8; 8] = match n {
                    2 => <[u8; 2]>::try_from(b).map(|a| i64::from(i16::from_be_bytes(a)).to_be_bytes()),
                    4 => <[u8; 4]>::try_from(b).map(|a| i64::from(i32::from_be_bytes(a)).to_be_bytes()),
                    _ => <[u8; 8]>::try_from(b),
                }
                .map_err(|_| bad("wrong length for its type"))?;
                Ok(i64::from_be_bytes(arr))
            };
            let text = match ty {
                Type::INT2 => int(2)?.to_string(),
                Type::INT4 => int(4)?.to_string(),
                Type::INT8 => int(8)?.to_string(),
                Type::FLOAT4 => {
                    f32::from_be_bytes(<[u8; 4]>::try_from(b).map_err(|_| bad("wrong length"))?).to_string()
                }
                Type::FLOAT8 => {
                    f64::from_be_bytes(<[u8; 8]>::try_from(b).map_err(|_| bad("wrong length"))?).to_string()
                }
                Type::BOOL => (b.first() == Some(&1)).to_string(),
                // Microseconds since 2000-01-01 00:00 UTC (PostgreSQL's epoch).
                Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                    let us = int(8)?.checked_add(946_684_800_000_000).ok_or_else(|| bad("out of range"))?;
                    let t = chrono::DateTime::from_timestamp_micros(us).ok_or_else(|| bad("out of range"))?;
                    if ty == Type::TIMESTAMPTZ { t.to_rfc3339() } else { t.naive_utc().to_string() }
                }
                Type::DATE => {
                    let days = int(4)?;
                    let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).ok_or_else(|| bad("out of range"))?;
                    epoch
                        .checked_add_signed(chrono::TimeDelta::days(days))
                        .ok_or_else(|| bad("out of range"))?
                        .to_string()
                }
                Type::TEXT | Type::VARCHAR | Type::UNKNOWN | Type::NAME => {
                    String::from_utf8(b.to_vec()).map_err(|_| bad("not UTF-8"))?
                }
                other => {
                    return Err(user_error(
                        "0A000",
                        &format!(
                            "parameter ${}: binary {} values are not supported; send it as text",
                            i + 1,
                            other.name()
                        ),
                    ));
                }
            };
            Ok(Some(text))
        })
        .collect()
}

/// The PostgreSQL type a column is sent as.
/// The type a column is sent as: the one the catalog (`pg_attribute`) describes it with.
fn pg_type(t: &DataType) -> Type {
    let oid = vitals_sql::pg_catalog::type_oid(t);
    u32::try_from(oid).ok().and_then(Type::from_oid).unwrap_or(Type::TEXT)
}

fn fields(schema: &Schema, formats: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| FieldInfo::new(f.name().clone(), None, None, pg_type(f.data_type()), formats.format_for(i)))
        .collect()
}

/// Every row of an answer as PostgreSQL data rows, in each field's type and format.
fn encode(answer: &Answer, fields: Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<DataRow>> {
    let options = FormatOptions::default();
    let mut rows = Vec::with_capacity(answer.rows);
    let mut encoder = DataRowEncoder::new(fields);
    for batch in &answer.batches {
        let columns: Vec<Column<'_>> = batch
            .columns()
            .iter()
            .map(|a| Column::of(a, &options))
            .collect::<Result<_, _>>()
            .map_err(|e| user_error("XX000", &e))?;
        for r in 0..batch.num_rows() {
            for c in &columns {
                c.encode(&mut encoder, r)?;
            }
            rows.push(encoder.take_row());
        }
    }
    Ok(rows)
}

/// A column and how its values are written: typed, or as Arrow formats them.
struct Column<'a> {
    array: &'a ArrayRef,
    text: Option<ArrayFormatter<'a>>,
}

impl<'a> Column<'a> {
    fn of(a: &'a ArrayRef, options: &'a FormatOptions<'a>) -> Result<Column<'a>, String> {
        let text = match pg_type(a.data_type()) {
            Type::TEXT => Some(ArrayFormatter::try_new(a.as_ref(), options).map_err(|e| e.to_string())?),
            _ => None,
        };
        Ok(Column { array: a, text })
    }

    fn encode(&self, e: &mut DataRowEncoder, r: usize) -> PgWireResult<()> {
        use vitals_sql::arrow::datatypes as t;
        let a = self.array;
        if a.is_null(r) {
            return e.encode_field(&None::<i32>);
        }
        if let Some(f) = &self.text {
            return e.encode_field(&f.value(r).to_string());
        }
        match a.data_type() {
            DataType::Boolean => e.encode_field(&a.as_boolean().value(r)),
            DataType::Int8 => e.encode_field(&i16::from(a.as_primitive::<t::Int8Type>().value(r))),
            DataType::Int16 => e.encode_field(&a.as_primitive::<t::Int16Type>().value(r)),
            DataType::UInt8 => e.encode_field(&i16::from(a.as_primitive::<t::UInt8Type>().value(r))),
            DataType::Int32 => e.encode_field(&a.as_primitive::<t::Int32Type>().value(r)),
            DataType::UInt16 => e.encode_field(&i32::from(a.as_primitive::<t::UInt16Type>().value(r))),
            DataType::Int64 => e.encode_field(&a.as_primitive::<t::Int64Type>().value(r)),
            DataType::UInt32 => e.encode_field(&i64::from(a.as_primitive::<t::UInt32Type>().value(r))),
            DataType::UInt64 => {
                e.encode_field(&i64::try_from(a.as_primitive::<t::UInt64Type>().value(r)).unwrap_or(i64::MAX))
            }
            DataType::Float16 => e.encode_field(&f32::from(a.as_primitive::<t::Float16Type>().value(r))),
            DataType::Float32 => e.encode_field(&a.as_primitive::<t::Float32Type>().value(r)),
            DataType::Float64 => e.encode_field(&a.as_primitive::<t::Float64Type>().value(r)),
            DataType::Decimal128(_, scale) => {
                let v = a.as_primitive::<t::Decimal128Type>().value(r) as f64 / 10f64.powi(i32::from(*scale));
                e.encode_field(&v)
            }
            DataType::Timestamp(unit, tz) => {
                let v = match unit {
                    TimeUnit::Second => a.as_primitive::<t::TimestampSecondType>().value(r).saturating_mul(1_000_000),
                    TimeUnit::Millisecond => {
                        a.as_primitive::<t::TimestampMillisecondType>().value(r).saturating_mul(1000)
                    }
                    TimeUnit::Microsecond => a.as_primitive::<t::TimestampMicrosecondType>().value(r),
                    TimeUnit::Nanosecond => a.as_primitive::<t::TimestampNanosecondType>().value(r) / 1000,
                };
                let Some(utc) = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(v) else {
                    return e.encode_field(&None::<i32>);
                };
                if tz.is_some() { e.encode_field(&utc) } else { e.encode_field(&utc.naive_utc()) }
            }
            DataType::Date32 | DataType::Date64 => {
                let days = match a.data_type() {
                    DataType::Date32 => i64::from(a.as_primitive::<t::Date32Type>().value(r)),
                    _ => a.as_primitive::<t::Date64Type>().value(r) / 86_400_000,
                };
                match chrono::DateTime::<chrono::Utc>::from_timestamp(days * 86_400, 0) {
                    Some(d) => e.encode_field(&d.date_naive()),
                    None => e.encode_field(&None::<i32>),
                }
            }
            _ => e.encode_field(&None::<i32>),
        }
    }
}
