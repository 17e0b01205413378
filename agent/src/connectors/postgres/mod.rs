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
//!
//! Files: `types` (the binary format of values and parameters), `numeric` (NUMERIC's
//! binary form), `provenance` (where result columns come from, read from the catalog and plan).

mod numeric;
mod provenance;
#[cfg(test)]
mod tests;
mod types;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_protocol::Param;
use secrecy::ExposeSecret as _;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

pub use self::numeric::{numeric_binary, numeric_text};
use self::types::{decodable, decode, encode, Encoded, Raw};
use super::common::{check_param_count, returns_no_rows, CappedRows, Permits};
use super::{QueryError, QueryLimits, ServerSettings};
use crate::resultset::{ResultSet, Value};

/// Rows fetched per round trip from the portal.
const BATCH: usize = 1000;
/// How long after the statement timeout the client stops waiting and cancels.
const CANCEL_GRACE: Duration = Duration::from_secs(2);
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
    catalog: Option<provenance::Catalog>,
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
    permits: Permits,
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
        let tls = settings.tls()?;
        let permits = Permits::new(settings.pool_size);
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
        let open = |e: tokio_postgres::Error| {
            let reason = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_else(|| super::error_chain(&e));
            self.inner.settings.open_error(reason)
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
        let _permit = self.inner.permits.take().await?;
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
        let _permit = self.inner.permits.take_or_cancel(&limits.cancel).await?;
        let (mut session, mut pooled) = self.checkout().await?;
        let after_ms = limits.timeout_ms();
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
        let prepared = provenance::Catalog::prepare(&session.client).await;
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
        return Err(Failure::Query(returns_no_rows("COPY, DO, SET, LISTEN and other utility statements are refused")));
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
    check_param_count(params.len(), expected.len()).map_err(Failure::Query)?;
    let encoded = params
        .iter()
        .zip(expected)
        .enumerate()
        .map(|(i, (p, ty))| {
            encode(p, ty).map(Encoded).map_err(|e| QueryError::Param { index: i + 1, reason: e.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::Query)?;
    let refs: Vec<&(dyn ToSql + Sync)> = encoded.iter().map(|e| e as &(dyn ToSql + Sync)).collect();
    if provenance {
        let Some(catalog) = catalog.as_ref() else {
            return Err(Failure::Query(QueryError::Task("the provenance statements are not prepared".into())));
        };
        let traced = provenance::trace(&tx, catalog, &stmt, sql, &refs, conditions).await.map_err(q)?;
        sink.provenance(traced).map_err(Failure::Query)?;
    }
    sink.columns(&columns).map_err(Failure::Query)?;
    let portal = tx.bind(&stmt, &refs).await.map_err(q)?;
    let mut rows = CappedRows::new(sink, max_rows);
    loop {
        let want = (max_rows + 1 - rows.read()).min(BATCH);
        let batch = tx.query_portal(&portal, i32::try_from(want).unwrap_or(i32::MAX)).await.map_err(q)?;
        let got = batch.len();
        for row in batch {
            if rows.full() {
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
            rows.push(values).await.map_err(Failure::Query)?;
        }
        if rows.truncated() || got < want {
            break;
        }
    }
    let truncated = rows.truncated();
    drop(portal);
    tx.rollback().await.map_err(q)?;
    Ok(truncated)
}
