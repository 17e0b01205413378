//! The PostgreSQL connector (tokio-postgres; TLS through rustls with the aws-lc-rs provider).
//!
//! Every query runs in its own `BEGIN READ ONLY` transaction, so PostgreSQL itself refuses
//! writes of any kind: INSERT, UPDATE, DELETE, DDL, `SELECT … FOR UPDATE`, `COPY … TO`,
//! functions that write. It then sets `SET LOCAL statement_timeout`, so the server stops
//! the statement by itself at the limit. A client-side deadline a little later sends a
//! cancel request if the server has not answered by then. The transaction always ends in
//! `ROLLBACK`, which also undoes any `SET` the statement made on the pooled session.
//!
//! Parameters are bound in PostgreSQL's binary format for the type the server infers
//! for each `$n`, never spliced into the SQL. Rows come through a portal in batches:
//! the connector asks for at most the row cap plus one, so memory stays bounded however
//! large the table, and the server does not send what the agent would throw away.
//! Values are decoded from the binary format by this module. NUMERIC is decoded to its
//! exact decimal text. A column of a type the agent cannot carry is refused before any
//! row is read, and the error names the column and the type.
//!
//! Connections are pooled per configured connection (`pool_size`, also the bound on
//! queries at once). A connection the server closed is dropped and replaced. Each new
//! session's role is checked first ([`super::privileges`]): a role with privileges
//! beyond reading is refused unless the connection allows it. A session goes back to
//! the pool only after [`SESSION_RESET`], so no lock or setting of one job outlives it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use outpost_protocol::Param;
use secrecy::ExposeSecret as _;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{QueryError, QueryLimits, ServerSettings};
use crate::resultset::{ResultSet, Value};

/// Rows fetched per round trip from the portal.
const BATCH: usize = 1000;
/// How long after the statement timeout the client stops waiting and cancels.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_UNIX: i64 = 946_684_800;
/// Run on a session before it goes back to the pool: `DISCARD ALL` without its
/// `DEALLOCATE ALL`, which would also drop the statements tokio-postgres keeps prepared
/// for looking up types (the agent's own statements are closed when dropped, and a job
/// cannot `PREPARE`: it returns no rows). Releases session advisory locks, resets every
/// setting (`set_config(…, false)`, `SET ROLE`), closes cursors, stops listening, drops
/// temporary tables. Allowed inside a transaction block, so it is one round trip. It
/// keeps `DISCARD ALL`'s `DISCARD PLANS` out too: the only prepared statements are the
/// agent's own (their plans hold no state a job can set; PostgreSQL re-plans them itself
/// after DDL), and planning the provenance check's catalog statements again for every
/// job would double its cost.
pub const SESSION_RESET: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

/// A pooled session: the connection and the provenance check's statements once prepared
/// on it.
struct Session {
    client: Client,
    catalog: Option<super::pg_provenance::Catalog>,
}

impl From<Client> for Session {
    fn from(client: Client) -> Self {
        Self { client, catalog: None }
    }
}

struct Inner {
    settings: ServerSettings,
    /// The TLS config built from `settings.tls_ca`.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The role's last check ([`super::privileges`]).
    role: super::privileges::RoleGuard,
    idle: Mutex<Vec<Session>>,
    permits: tokio::sync::Semaphore,
}

/// A configured PostgreSQL database with its pool.
#[derive(Clone)]
pub struct PostgresConnector {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PostgresConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConnector").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

fn db_err(e: &tokio_postgres::Error) -> QueryError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let message = db.message().to_owned();
        return match code {
            // read_only_sql_transaction
            "25006" => QueryError::NotReadOnly { reason: message },
            // insufficient_privilege
            "42501" => QueryError::Database { message: format!("permission denied by the database: {message}") },
            _ => QueryError::Server(Box::new(super::ServerError {
                message,
                sqlstate: Some(code.to_owned()),
                // A code the server does not define came from a RAISE … USING ERRCODE.
                custom_code: format!("{:?}", db.code()).contains("Other"),
                number: None,
                position: match db.position() {
                    Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
                    _ => None,
                },
            })),
        };
    }
    QueryError::Database { message: e.to_string() }
}

fn is_cancelled(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| d.code().code() == "57014")
}

impl PostgresConnector {
    /// A connector; connections open on first use. Fails if the CA file is unusable.
    pub fn new(settings: ServerSettings) -> Result<Self, QueryError> {
        let tls = match &settings.tls_ca {
            Some(ca) => {
                Some(super::tls_config(ca).map_err(|reason| QueryError::Open { path: settings.address(), reason })?)
            }
            None => None,
        };
        let permits = tokio::sync::Semaphore::new(settings.pool_size.max(1));
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                tls,
                role: super::privileges::RoleGuard::default(),
                idle: Mutex::new(Vec::new()),
                permits,
            }),
        })
    }

    /// What makes two connections the same database, for the result cache's key.
    pub fn identity(&self) -> String {
        self.inner.settings.identity("postgres")
    }

    fn config(&self) -> tokio_postgres::Config {
        let s = &self.inner.settings;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&s.host)
            .port(s.port)
            .dbname(&s.database)
            .user(&s.user)
            .application_name("outpost-agent")
            .connect_timeout(Duration::from_secs(10))
            .ssl_mode(if self.inner.tls.is_some() {
                tokio_postgres::config::SslMode::Require
            } else {
                tokio_postgres::config::SslMode::Disable
            });
        if let Some(p) = &s.password {
            cfg.password(p.expose_secret());
        }
        cfg
    }

    async fn connect(&self) -> Result<Client, QueryError> {
        let open = |e: tokio_postgres::Error| QueryError::Open {
            path: self.inner.settings.address(),
            reason: e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| super::error_chain(&e)),
        };
        let cfg = self.config();
        let client = match &self.inner.tls {
            Some(tls) => {
                let (client, conn) = cfg.connect(MakeRustlsConnect::new((**tls).clone())).await.map_err(open)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "PostgreSQL connection ended.");
                    }
                });
                client
            }
            None => {
                let (client, conn) = cfg.connect(NoTls).await.map_err(open)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "PostgreSQL connection ended.");
                    }
                });
                client
            }
        };
        // Dropping a refused client closes its session.
        let found = super::privileges::postgres(&client).await;
        super::privileges::verdict(&self.inner.settings, "postgres", found, &self.inner.role)?;
        Ok(client)
    }

    /// Makes the next job check the role again on its pooled session, as it would a
    /// minute after the last check.
    pub fn recheck_role(&self) {
        self.inner.role.expire();
    }

    /// Opens a session if none is pooled (checking the role) and pools it.
    pub async fn check_role(&self) -> Result<(), QueryError> {
        let _permit = self.inner.permits.acquire().await.map_err(|e| QueryError::Task(e.to_string()))?;
        let (session, _) = self.checkout().await?;
        self.checkin(session).await;
        Ok(())
    }

    /// An idle connection that is still open, or a new one; and whether it was pooled.
    async fn checkout(&self) -> Result<(Session, bool), QueryError> {
        loop {
            let pooled = self.inner.idle.lock().ok().and_then(|mut v| v.pop());
            match pooled {
                Some(s) if !s.client.is_closed() && self.inner.role.due() => {
                    // The last check is old: check the role again on this session. One
                    // that cannot answer is dropped; a new one is checked as it opens.
                    let Ok(found) = super::privileges::postgres(&s.client).await else { continue };
                    super::privileges::verdict(&self.inner.settings, "postgres", Ok(found), &self.inner.role)?;
                    return Ok((s, true));
                }
                Some(s) if !s.client.is_closed() => return Ok((s, true)),
                Some(_) => continue,
                None => return Ok((self.connect().await?.into(), false)),
            }
        }
    }

    /// Resets the session ([`SESSION_RESET`]) and pools it; a session that cannot be
    /// reset is closed.
    async fn checkin(&self, session: Session) {
        if session.client.is_closed() {
            return;
        }
        if let Err(e) = session.client.batch_execute(SESSION_RESET).await {
            tracing::debug!(error = %e, "A PostgreSQL session could not be reset; closed.");
            return;
        }
        if let Ok(mut idle) = self.inner.idle.lock() {
            if idle.len() < self.inner.settings.pool_size {
                idle.push(session);
            }
        }
    }

    async fn cancel(&self, token: tokio_postgres::CancelToken) {
        let result = match &self.inner.tls {
            Some(tls) => token.cancel_query(MakeRustlsConnect::new((**tls).clone())).await,
            None => token.cancel_query(NoTls).await,
        };
        match result {
            Ok(()) => tracing::info!("Cancelled the query on the PostgreSQL server."),
            Err(e) => tracing::warn!(error = %e, "Could not cancel the query on the PostgreSQL server."),
        }
    }

    /// Runs one read-only statement with typed parameters, within `limits`.
    pub async fn query(&self, sql: String, params: Vec<Param>, limits: QueryLimits) -> Result<ResultSet, QueryError> {
        let mut all = super::Collect::default();
        let truncated = self.query_into(sql, params, limits, &mut all).await?;
        Ok(ResultSet { truncated, ..all.0 })
    }

    /// Runs the statement, handing rows to `sink` batch by batch as the server sends
    /// them; whether the row cap cut the result.
    pub async fn query_into(
        &self,
        sql: String,
        params: Vec<Param>,
        limits: QueryLimits,
        sink: &mut dyn super::RowSink,
    ) -> Result<bool, QueryError> {
        let _permit = tokio::select! {
            p = self.inner.permits.acquire() => p.map_err(|e| QueryError::Task(e.to_string()))?,
            () = limits.cancel.cancelled() => return Err(QueryError::Cancelled),
        };
        let (mut session, mut pooled) = self.checkout().await?;
        let after_ms = u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX);
        loop {
            let token = session.client.cancel_token();
            let what = (limits.max_rows, after_ms, limits.provenance, limits.conditions);
            let run = run(&mut session, &sql, &params, what, &mut *sink);
            let result = tokio::select! {
                r = tokio::time::timeout(limits.timeout + CANCEL_GRACE, run) => match r {
                    Ok(r) => r,
                    Err(_) => {
                        // The server did not stop the statement by itself: cancel it
                        // there, and do not reuse this session.
                        self.cancel(token).await;
                        return Err(QueryError::Timeout { after_ms });
                    }
                },
                () = limits.cancel.cancelled() => {
                    // A user stopped the job: cancel the statement on the server, and
                    // do not reuse this session.
                    self.cancel(token).await;
                    return Err(QueryError::Cancelled);
                }
            };
            match result {
                // A pooled session that cannot even begin (the server closed or killed
                // it: a restart, an idle timeout): once more on a new one. Nothing ran,
                // so nothing runs twice.
                Err(Failure::Begin(e)) if pooled => {
                    tracing::debug!(error = %e, "A pooled PostgreSQL session failed; opening a new one.");
                    session = self.connect().await?.into();
                    pooled = false;
                }
                Err(f) => {
                    self.checkin(session).await;
                    return Err(f.into_error());
                }
                Ok(truncated) => {
                    self.checkin(session).await;
                    return Ok(truncated);
                }
            }
        }
    }
}

/// Where a query failed: before the transaction began (safe to retry) or after.
enum Failure {
    Begin(QueryError),
    Query(QueryError),
}

impl Failure {
    fn into_error(self) -> QueryError {
        match self {
            Failure::Begin(e) | Failure::Query(e) => e,
        }
    }
}

async fn run(
    session: &mut Session,
    sql: &str,
    params: &[Param],
    (max_rows, after_ms, provenance, conditions): (usize, u64, bool, bool),
    sink: &mut dyn super::RowSink,
) -> Result<bool, Failure> {
    // The provenance check's catalog statements, once per session (before the
    // transaction: a failure here is a session that cannot begin).
    if provenance && session.catalog.is_none() {
        let prepared = super::pg_provenance::Catalog::prepare(&session.client).await;
        session.catalog = Some(prepared.map_err(|e| Failure::Begin(db_err(&e)))?);
    }
    let Session { client, catalog } = session;
    let tx = client.build_transaction().read_only(true).start().await.map_err(|e| Failure::Begin(db_err(&e)))?;
    let q = |e: tokio_postgres::Error| {
        Failure::Query(if is_cancelled(&e) { QueryError::Timeout { after_ms } } else { db_err(&e) })
    };
    tx.batch_execute(&format!("SET LOCAL statement_timeout = {}", after_ms.max(1))).await.map_err(q)?;
    let stmt = tx.prepare(sql).await.map_err(q)?;
    // Only queries that return rows run. PostgreSQL lets some statements through a
    // read-only transaction that reach outside the database (`COPY … TO PROGRAM` and
    // `TO 'file'` for privileged roles, `DO` blocks that could run them); none of them
    // returns rows. Preparing a statement does not run it.
    if stmt.columns().is_empty() {
        return Err(Failure::Query(QueryError::NotReadOnly {
            reason: "only a query that returns rows may run; this statement returns none \
                     (COPY, DO, SET, LISTEN and other utility statements are refused)"
                .into(),
        }));
    }
    let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
    let types: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
    for (name, ty) in columns.iter().zip(&types) {
        if !decodable(ty) {
            return Err(Failure::Query(QueryError::UnsupportedType {
                column: name.clone(),
                type_name: ty.name().to_owned(),
            }));
        }
    }
    let expected = stmt.params();
    if params.len() != expected.len() {
        let index = params.len().min(expected.len()) + 1;
        return Err(Failure::Query(QueryError::Param {
            index,
            reason: format!("the statement takes {} parameter(s), the job gives {}", expected.len(), params.len()),
        }));
    }
    let encoded = params
        .iter()
        .zip(expected)
        .enumerate()
        .map(|(i, (p, ty))| encode(p, ty).map(Encoded).map_err(|reason| QueryError::Param { index: i + 1, reason }))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::Query)?;
    let refs: Vec<&(dyn ToSql + Sync)> = encoded.iter().map(|e| e as &(dyn ToSql + Sync)).collect();
    if provenance {
        let Some(catalog) = catalog.as_ref() else {
            return Err(Failure::Query(QueryError::Task("the provenance statements are not prepared".into())));
        };
        let traced = super::pg_provenance::trace(&tx, catalog, &stmt, sql, &refs, conditions).await.map_err(q)?;
        sink.provenance(traced).map_err(Failure::Query)?;
    }
    sink.columns(&columns).map_err(Failure::Query)?;
    let portal = tx.bind(&stmt, &refs).await.map_err(q)?;
    let mut read = 0usize;
    let mut truncated = false;
    loop {
        let want = (max_rows + 1 - read).min(BATCH);
        let batch = tx.query_portal(&portal, i32::try_from(want).unwrap_or(i32::MAX)).await.map_err(q)?;
        let got = batch.len();
        for row in batch {
            if read == max_rows {
                truncated = true;
                break;
            }
            let mut values = Vec::with_capacity(types.len());
            for (i, ty) in types.iter().enumerate() {
                let raw: Option<Raw<'_>> = row.try_get(i).map_err(q)?;
                let v = match raw {
                    None => Value::Null,
                    Some(Raw(bytes)) => decode(ty, bytes).map_err(|reason| {
                        Failure::Query(QueryError::Database {
                            message: format!("column {:?} ({}): {reason}", columns[i], ty.name()),
                        })
                    })?,
                };
                values.push(v);
            }
            sink.row(values, read).map_err(Failure::Query)?;
            read += 1;
            if let Some(room) = sink.room() {
                room.await;
            }
        }
        if truncated || got < want {
            break;
        }
    }
    drop(portal);
    tx.rollback().await.map_err(q)?;
    Ok(truncated)
}

/// A value in PostgreSQL's binary format, or NULL.
#[derive(Debug)]
struct Encoded(Option<Vec<u8>>);

impl ToSql for Encoded {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(b) => {
                out.extend_from_slice(b);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The raw binary bytes of a column; decoded by [`decode`].
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The type a value of `ty` is read as: the base type of a domain, text for an enum.
fn base(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base(inner),
        Kind::Enum(_) => &Type::TEXT,
        _ => ty,
    }
}

fn is_text(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN) || ty.name() == "citext"
}

/// Whether the agent can carry values of `ty`.
fn decodable(ty: &Type) -> bool {
    let ty = base(ty);
    is_text(ty)
        || matches!(
            *ty,
            Type::VOID
                | Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::OID
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                | Type::CHAR
                | Type::BYTEA
                | Type::DATE
                | Type::TIME
                | Type::TIMESTAMP
                | Type::TIMESTAMPTZ
                | Type::UUID
                | Type::JSON
                | Type::JSONB
        )
}

fn be<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into().map_err(|_| format!("expected {N} bytes, got {}", raw.len()))
}

fn pg_instant(micros: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(micros.checked_add(PG_EPOCH_UNIX * 1_000_000)?)
}

/// Decodes one value of `ty` from PostgreSQL's binary format.
fn decode(ty: &Type, raw: &[u8]) -> Result<Value, String> {
    let ty = base(ty);
    if is_text(ty) {
        return std::str::from_utf8(raw).map(|s| Value::Text(s.to_owned())).map_err(|e| e.to_string());
    }
    Ok(match *ty {
        Type::VOID => Value::Null,
        Type::BOOL => Value::Bool(be::<1>(raw)?[0] != 0),
        Type::INT2 => Value::Int(i16::from_be_bytes(be(raw)?).into()),
        Type::INT4 => Value::Int(i32::from_be_bytes(be(raw)?).into()),
        Type::INT8 => Value::Int(i64::from_be_bytes(be(raw)?)),
        Type::OID => Value::Int(u32::from_be_bytes(be(raw)?).into()),
        Type::FLOAT4 => Value::Float(f32::from_be_bytes(be(raw)?).into()),
        Type::FLOAT8 => Value::Float(f64::from_be_bytes(be(raw)?)),
        Type::NUMERIC => Value::Decimal(numeric_text(raw)?),
        Type::CHAR => Value::Text(char::from(be::<1>(raw)?[0]).to_string()),
        Type::BYTEA => Value::Bytes(raw.to_vec()),
        Type::DATE => match i32::from_be_bytes(be(raw)?) {
            i32::MAX => Value::Text("infinity".into()),
            i32::MIN => Value::Text("-infinity".into()),
            days => Value::Date(
                chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
                    .and_then(|d| d.checked_add_signed(chrono::TimeDelta::days(days.into())))
                    .ok_or("date out of range")?,
            ),
        },
        Type::TIME => {
            let micros = i64::from_be_bytes(be(raw)?);
            let secs = u32::try_from(micros.div_euclid(1_000_000)).map_err(|_| "time out of range")?;
            let nanos = u32::try_from(micros.rem_euclid(1_000_000) * 1000).map_err(|_| "time out of range")?;
            Value::Time(chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos).ok_or("time out of range")?)
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match i64::from_be_bytes(be(raw)?) {
            i64::MAX => Value::Text("infinity".into()),
            i64::MIN => Value::Text("-infinity".into()),
            micros => {
                let at = pg_instant(micros).ok_or("timestamp out of range")?;
                if *ty == Type::TIMESTAMPTZ {
                    Value::TimestampTz(at)
                } else {
                    Value::Timestamp(at.naive_utc())
                }
            }
        },
        Type::UUID => Value::Uuid(be(raw)?),
        Type::JSON => Value::Json(std::str::from_utf8(raw).map_err(|e| e.to_string())?.to_owned()),
        Type::JSONB => match raw.split_first() {
            Some((1, doc)) => Value::Json(std::str::from_utf8(doc).map_err(|e| e.to_string())?.to_owned()),
            _ => return Err("unknown jsonb version".into()),
        },
        _ => return Err("unsupported type".into()),
    })
}

/// Encodes a job parameter for the type the server expects at its position.
fn encode(p: &Param, ty: &Type) -> Result<Option<Vec<u8>>, String> {
    let ty = base(ty);
    let mismatch = || {
        let given = match p {
            Param::Null => "null",
            Param::Bool(_) => "bool",
            Param::Int(_) => "int",
            Param::Float(_) => "float",
            Param::Text(_) => "text",
        };
        Err(format!("the statement expects {} here; the job gives {given}", ty.name()))
    };
    let text = |what: &str| -> Result<&str, String> {
        match p {
            Param::Text(t) => Ok(t.as_str()),
            _ => Err(format!("the statement expects {} here; give it as text ({what})", ty.name())),
        }
    };
    if matches!(p, Param::Null) {
        return Ok(None);
    }
    if is_text(ty) {
        return match p {
            Param::Text(t) => Ok(Some(t.as_bytes().to_vec())),
            _ => mismatch(),
        };
    }
    let bytes = match (ty.clone(), p) {
        (Type::BOOL, Param::Bool(b)) => vec![u8::from(*b)],
        (Type::INT2, Param::Int(n)) => {
            i16::try_from(*n).map_err(|_| format!("{n} does not fit int2"))?.to_be_bytes().to_vec()
        }
        (Type::INT4, Param::Int(n)) => {
            i32::try_from(*n).map_err(|_| format!("{n} does not fit int4"))?.to_be_bytes().to_vec()
        }
        (Type::INT8, Param::Int(n)) => n.to_be_bytes().to_vec(),
        (Type::FLOAT4, Param::Float(f)) => (*f as f32).to_be_bytes().to_vec(),
        (Type::FLOAT4, Param::Int(n)) => (*n as f32).to_be_bytes().to_vec(),
        (Type::FLOAT8, Param::Float(f)) => f.to_be_bytes().to_vec(),
        (Type::FLOAT8, Param::Int(n)) => (*n as f64).to_be_bytes().to_vec(),
        (Type::NUMERIC, Param::Int(n)) => numeric_binary(&n.to_string())?,
        (Type::NUMERIC, Param::Float(f)) if f.is_finite() => numeric_binary(&f.to_string())?,
        (Type::NUMERIC, Param::Text(t)) => numeric_binary(t)?,
        (Type::JSON, Param::Text(t)) => {
            serde_json::from_str::<serde_json::Value>(t).map_err(|e| format!("not JSON: {e}"))?;
            t.as_bytes().to_vec()
        }
        (Type::JSONB, Param::Text(t)) => {
            serde_json::from_str::<serde_json::Value>(t).map_err(|e| format!("not JSON: {e}"))?;
            let mut b = vec![1];
            b.extend_from_slice(t.as_bytes());
            b
        }
        (Type::DATE, _) => {
            let d = chrono::NaiveDate::parse_from_str(text("YYYY-MM-DD")?, "%Y-%m-%d").map_err(|e| e.to_string())?;
            let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).ok_or("epoch")?;
            i32::try_from((d - epoch).num_days()).map_err(|_| "date out of range")?.to_be_bytes().to_vec()
        }
        (Type::TIME, _) => {
            let t = chrono::NaiveTime::parse_from_str(text("HH:MM:SS")?, "%H:%M:%S%.f").map_err(|e| e.to_string())?;
            let micros = (t - chrono::NaiveTime::MIN).num_microseconds().ok_or("time out of range")?;
            micros.to_be_bytes().to_vec()
        }
        (Type::TIMESTAMP, _) => {
            let s = text("YYYY-MM-DDTHH:MM:SS")?;
            let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
                .map_err(|e| e.to_string())?;
            (t.and_utc().timestamp_micros() - PG_EPOCH_UNIX * 1_000_000).to_be_bytes().to_vec()
        }
        (Type::TIMESTAMPTZ, _) => {
            let t = chrono::DateTime::parse_from_rfc3339(text("RFC 3339")?).map_err(|e| e.to_string())?;
            (t.timestamp_micros() - PG_EPOCH_UNIX * 1_000_000).to_be_bytes().to_vec()
        }
        (Type::UUID, _) => {
            let h: String = text("8-4-4-4-12 hex digits")?.chars().filter(|c| *c != '-').collect();
            outpost_protocol::encoding::unhex(&h).filter(|b| b.len() == 16).ok_or("not a UUID")?
        }
        (t, _) if decodable(&t) => return mismatch(),
        _ => {
            return Err(format!(
                "the statement expects {} here, which job parameters cannot carry; cast it in the SQL, \
                 for example $1::text::{}",
                ty.name(),
                ty.name()
            ))
        }
    };
    Ok(Some(bytes))
}

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// The exact decimal text of a binary NUMERIC (as PostgreSQL prints it, `dscale` digits
/// after the point).
pub fn numeric_text(raw: &[u8]) -> Result<String, String> {
    let word = |i: usize| -> Result<u16, String> {
        raw.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or_else(|| "numeric truncated".to_owned())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    match sign {
        NUMERIC_NAN => return Ok("NaN".into()),
        NUMERIC_PINF => return Ok("Infinity".into()),
        NUMERIC_NINF => return Ok("-Infinity".into()),
        0 | NUMERIC_NEG => {}
        _ => return Err(format!("numeric sign {sign:#x}")),
    }
    if raw.len() != 8 + 2 * ndigits {
        return Err("numeric length".into());
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect::<Result<_, _>>()?;
    if digits.iter().any(|d| *d > 9999) {
        return Err("numeric digit out of range".into());
    }
    let digit = |k: i64| usize::try_from(k).ok().and_then(|k| digits.get(k).copied()).unwrap_or(0);
    let mut s = String::new();
    if sign == NUMERIC_NEG && ndigits > 0 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                s.push_str(&digit(k).to_string());
            } else {
                s.push_str(&format!("{:04}", digit(k)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut k = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// The binary NUMERIC of a decimal text (`-12.340`, `1e3` is refused: plain notation only).
pub fn numeric_binary(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    let head = |sign: u16| [0u16, 0, sign, 0].iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
    match t {
        "NaN" => return Ok(head(NUMERIC_NAN)),
        "Infinity" => return Ok(head(NUMERIC_PINF)),
        "-Infinity" => return Ok(head(NUMERIC_NINF)),
        _ => {}
    }
    let bad = || format!("{text:?} is not a decimal number");
    let (neg, unsigned) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let dscale = u16::try_from(frac.len()).map_err(|_| bad())?;
    let int = int.trim_start_matches('0');
    let pad_left = (4 - int.len() % 4) % 4;
    let pad_right = (4 - frac.len() % 4) % 4;
    let all: String = "0".repeat(pad_left) + int + frac + &"0".repeat(pad_right);
    let mut groups: Vec<u16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).ok().and_then(|s| s.parse().ok()))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let mut weight = i64::try_from((pad_left + int.len()) / 4).map_err(|_| bad())? - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let ndigits = u16::try_from(groups.len()).map_err(|_| bad())?;
    let weight = i16::try_from(weight).map_err(|_| bad())?;
    let sign = if neg && !groups.is_empty() { NUMERIC_NEG } else { 0 };
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    for w in [ndigits, weight as u16, sign, dscale] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_round_trip_exactly_through_the_binary_format() {
        for text in [
            "0",
            "1",
            "-1",
            "10000",
            "12345678901234567890123456789012345678.123456789012345678901234567890",
            "0.00001234",
            "-0.5",
            "100.100",
            "9999.9999",
            "0.000",
            "NaN",
            "Infinity",
            "-Infinity",
        ] {
            let bin = numeric_binary(text).expect(text);
            assert_eq!(numeric_text(&bin).expect(text), text, "{text}");
        }
        assert_eq!(numeric_text(&numeric_binary("007.50").expect("leading zeros")).expect("text"), "7.50");
        assert_eq!(numeric_text(&numeric_binary("-0").expect("minus zero")).expect("text"), "0");
        for bad in ["", ".", "1e5", "1.2.3", "abc", "--1"] {
            assert!(numeric_binary(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parameters_are_checked_against_the_type_the_server_expects() {
        assert_eq!(encode(&Param::Int(7), &Type::INT4).expect("int4"), Some(7i32.to_be_bytes().to_vec()));
        assert!(encode(&Param::Int(1 << 40), &Type::INT4).expect_err("too big").contains("does not fit int4"));
        assert!(encode(&Param::Text("x".into()), &Type::INT8).expect_err("mismatch").contains("expects int8"));
        assert_eq!(encode(&Param::Null, &Type::UUID).expect("null"), None);
        let uuid = encode(&Param::Text("00112233-4455-6677-8899-aabbccddeeff".into()), &Type::UUID).expect("uuid");
        assert_eq!(
            decode(&Type::UUID, &uuid.expect("some")).expect("decode"),
            Value::Uuid(*b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff")
        );
        let ts = encode(&Param::Text("2024-02-29T12:34:56.789".into()), &Type::TIMESTAMP).expect("ts").expect("some");
        assert_eq!(
            crate::resultset::temporal_text(&decode(&Type::TIMESTAMP, &ts).expect("decode")).as_deref(),
            Some("2024-02-29T12:34:56.789")
        );
        assert!(encode(&Param::Text("x".into()), &Type::INTERVAL)
            .expect_err("interval")
            .contains("cast it in the SQL"));
    }
}
