//! The PostgreSQL backend of [`Store`] and [`crate::store::access::AccessStore`], for
//! several control-plane replicas sharing one database.
//!
//! - Migrations are versioned (`outpost_schema`) and applied at start inside one
//!   transaction that first takes a transaction-level advisory lock, so replicas starting
//!   at once apply each migration exactly once and the others wait, then see it done.
//! - Leases use `FOR UPDATE SKIP LOCKED`: two replicas serving two members of a pool never
//!   hand out the same job, and neither waits on the other's rows.
//! - Wake-ups cross replicas by `LISTEN/NOTIFY` ([`listen`], [`Publisher`]): a job queued
//!   through replica B wakes the agent long-polling replica A at once.
//! - Every method is one transaction; a replica killed mid-request leaves no half state,
//!   and the leases it handed out run out and are handed out again.
//!
//! The database holds public keys and hashes only: the CA key, the job-signing keys, the
//! results key and the embed key stay in each replica's data dir (or systemd credentials).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use outpost_protocol::{Reason, ResultReport};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{
    AgentPeer, AgentRecord, AuditHeadOutcome, CancelOutcome, CompleteOutcome, EnrolTokenRecord, JobOrigin, JobRecord,
    JobState, KeySetChange, LeaseBatch, NewJob, RedeemError, SigningKeyRecord, Store, StoreError, StoredAuditHead,
};

/// The advisory lock key migrations run under ("outpost" in ASCII).
const MIGRATION_LOCK: i64 = 0x006f_7574_706f_7374;
/// The channel replicas wake each other on.
pub const HUB_CHANNEL: &str = "outpost_hub";

/// Schema v1: everything the SQLite schema has reached at its v7, in PostgreSQL types.
const PG_SCHEMA_V1: &str = include_str!("migrations/postgres/001.sql");

/// v2: the latest signed audit head per agent (`GET /v1/agents/{name}/audit-head`).
const PG_SCHEMA_V2: &str = include_str!("migrations/postgres/002.sql");

/// v3: when an agent said it was stopping (cleared by its next request).
const PG_SCHEMA_V3: &str = include_str!("migrations/postgres/003.sql");

/// Migrations in order: (version, SQL). Append only.
pub(super) const PG_MIGRATIONS: &[(i32, &str)] = &[(1, PG_SCHEMA_V1), (2, PG_SCHEMA_V2), (3, PG_SCHEMA_V3)];

/// How to reach the database, from `control-plane.yaml`.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://…` connection URL (its password, if any, is a secret).
    pub url: String,
    /// A file holding the password (e.g. a systemd credential); overrides the URL's.
    pub password_file: Option<std::path::PathBuf>,
    /// PEM bundle of CAs trusted for the server's certificate when the URL asks for TLS
    /// (`sslmode=require`); default: the system bundle.
    pub ca_file: Option<std::path::PathBuf>,
    /// Most connections this replica opens (besides the one that listens).
    pub max_connections: usize,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &redact_url(&self.url))
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "<not a URL>".into() };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Parses and checks a store URL; the error names what is wrong without the password.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must be `sqlite` or a postgres:// URL".into());
    }
    let cfg = tokio_postgres::Config::from_str(url).map_err(|e| format!("{}: {e}", redact_url(url)))?;
    if cfg.get_hosts().is_empty() {
        return Err(format!("{}: no host", redact_url(url)));
    }
    if cfg.get_dbname().is_none() {
        return Err(format!("{}: no database name (postgres://user@host/DATABASE)", redact_url(url)));
    }
    Ok(cfg)
}

/// The URL's `sslmode`, or when it names none: `disable` for a server on this machine
/// (loopback or a Unix socket) and `require` for any other, so that a store reached over
/// the network is never in clear by default. With TLS the server's certificate is
/// always verified (against `store_ca_file` or the system bundle).
fn default_ssl_mode(url: &str, cfg: &mut tokio_postgres::Config) {
    if url.contains("sslmode=") {
        return;
    }
    let local = cfg.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        tokio_postgres::config::Host::Unix(_) => true,
    });
    cfg.ssl_mode(if local {
        tokio_postgres::config::SslMode::Disable
    } else {
        tokio_postgres::config::SslMode::Require
    });
}

/// PostgreSQL backend.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// For the listening connection, which lives outside the pool.
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("pool", &self.pool.status()).finish_non_exhaustive()
    }
}

fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Postgres(pg_error(&e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(pg_error(&e)),
            other => StoreError::Postgres(other.to_string()),
        }
    }
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, StoreError> {
    use rustls_pki_types::pem::PemObject;
    let ca = ca_file.unwrap_or(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let setup = |m: String| StoreError::Postgres(format!("store_ca_file {}: {m}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    match outpost_common::fsutil::read_capped_file(ca, 16 * 1024 * 1024) {
        Ok(pem) => {
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                // A bundle may hold certificates this TLS stack cannot use; skip those.
                let _ = roots.add(cert.map_err(|e| setup(e.to_string()))?);
            }
        }
        // Without a bundle, a server asking for TLS cannot be verified and is refused.
        Err(e) if ca_file.is_some() => return Err(setup(e.to_string())),
        Err(_) => {}
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl PgStore {
    /// Connects, applies missing migrations under the advisory lock, and returns the store.
    pub async fn open(opts: &PgOptions) -> Result<Self, StoreError> {
        let mut config = parse_url(&opts.url).map_err(StoreError::Postgres)?;
        default_ssl_mode(&opts.url, &mut config);
        if let Some(path) = &opts.password_file {
            let bytes = outpost_common::fsutil::read_capped_file(path, 4096)
                .map_err(|e| StoreError::Postgres(format!("store_password_file {}: {e}", path.display())))?;
            let text = zeroize::Zeroizing::new(
                String::from_utf8(bytes)
                    .map_err(|_| StoreError::Postgres(format!("store_password_file {}: not UTF-8", path.display())))?,
            );
            config.password(text.trim_end_matches(['\n', '\r']));
        }
        if config.get_application_name().is_none() {
            config.application_name("outpost-control-plane");
        }
        config.connect_timeout(Duration::from_secs(10));
        let tls = MakeRustlsConnect::new(tls_config(opts.ca_file.as_deref())?);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(opts.max_connections.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Postgres(e.to_string()))?;
        let store = Self { pool, config, tls };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Held until this transaction ends: a second replica starting now waits here and
        // then finds every migration applied.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS outpost_schema (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
        let current: i32 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM outpost_schema", &[]).await?.get(0);
        let latest = PG_MIGRATIONS.last().map_or(0, |m| m.0);
        if current > latest {
            return Err(StoreError::Corrupt {
                table: "schema",
                reason: format!("database schema {current} is newer than this build ({latest})"),
            });
        }
        for (version, sql) in PG_MIGRATIONS.iter().filter(|m| m.0 > current) {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO outpost_schema (version, applied_at) VALUES ($1, $2)",
                &[version, &outpost_protocol::unix_now()],
            )
            .await?;
            tracing::info!(version, "Applied a PostgreSQL schema migration.");
        }
        tx.commit().await?;
        Ok(())
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Sends wake-ups to every replica (including this one) on [`HUB_CHANNEL`], all in
    /// one statement and one commit, in order.
    pub async fn notify_all(&self, payloads: Vec<String>) -> Result<(), StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT pg_notify($1, p) FROM unnest($2::TEXT[]) WITH ORDINALITY AS n(p, i) ORDER BY i")
            .await?;
        client.execute(&stmt, &[&HUB_CHANNEL, &payloads]).await?;
        Ok(())
    }

    /// A new connection outside the pool, `LISTEN`ing on [`HUB_CHANNEL`]. Its
    /// notifications arrive on the returned channel while the returned client is kept;
    /// when the connection ends the receiver yields `None` and the caller connects again.
    pub async fn listen(
        &self,
    ) -> Result<(tokio_postgres::Client, tokio::sync::mpsc::UnboundedReceiver<String>), StoreError> {
        use tokio_postgres::AsyncMessage;
        let (client, mut connection) = self.config.connect(self.tls.clone()).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if tx.send(n.payload().to_owned()).is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %pg_error(&e), "The PostgreSQL listening connection failed.");
                        return;
                    }
                    None => return,
                }
            }
        });
        client.batch_execute(&format!("LISTEN {HUB_CHANNEL}")).await?;
        Ok((client, rx))
    }

    /// Database name and server version, for the start-up log.
    pub async fn describe(&self) -> Result<String, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT current_database(), current_setting('server_version')", &[]).await?;
        Ok(format!("PostgreSQL {} database {}", row.get::<_, String>(1), row.get::<_, String>(0)))
    }
}

fn agent_from_row(r: &Row) -> AgentRecord {
    let conns: String = r.get(5);
    AgentRecord {
        name: r.get(0),
        enrolled_at: r.get(1),
        cert_not_after: r.get(2),
        last_seen: r.get(3),
        version: r.get(4),
        connections: serde_json::from_str(&conns).unwrap_or_default(),
        revoked_at: r.get(6),
        pool: r.get(7),
        stopped_at: r.get(8),
    }
}

const AGENT_COLS: &str =
    "name, enrolled_at, cert_not_after, last_seen, version, connections, revoked_at, pool, stopped_at";

/// Admits a request of `agent` (see the SQLite backend's `admit_agent`) and returns its
/// pool. Locks the agent's row for the rest of the transaction, so a revocation cannot
/// slip between the check and the work.
async fn admit_agent(
    tx: &deadpool_postgres::Transaction<'_>,
    agent: &AgentPeer,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let stmt = tx
        .prepare_cached(
            "UPDATE agents SET last_seen = $2, stopped_at = NULL
             WHERE name = $1 AND revoked_at IS NULL AND enrolled_at <= $3
             RETURNING pool",
        )
        .await?;
    if let Some(row) = tx.query_opt(&stmt, &[&agent.name, &now, &agent.cert_issued_at]).await? {
        return Ok(row.get(0));
    }
    Err(refusal(tx, agent).await?)
}

/// Why `agent` was not admitted: revoked, unknown, or its certificate superseded.
async fn refusal(tx: &impl deadpool_postgres::GenericClient, agent: &AgentPeer) -> Result<StoreError, StoreError> {
    let row = tx.query_opt("SELECT revoked_at, enrolled_at FROM agents WHERE name = $1", &[&agent.name]).await?;
    Ok(match row.map(|r| (r.get::<_, Option<i64>>(0), r.get::<_, i64>(1))) {
        Some((None, enrolled_at)) => StoreError::CertificateSuperseded { agent: agent.name.clone(), enrolled_at },
        Some((revoked_at, _)) => StoreError::AgentRefused { agent: agent.name.clone(), revoked_at },
        None => StoreError::AgentRefused { agent: agent.name.clone(), revoked_at: None },
    })
}

const JOB_COLS: &str = "id, agent, connection, state, created_at, expires_at, finished_at, attempts,
     reason_code, reason_message, stats, content_type";

/// A job row: [`JOB_COLS`], then the body or NULL, `cancel_requested_at`, the origin and the pool.
fn enrol_token_from_row(r: &Row) -> EnrolTokenRecord {
    EnrolTokenRecord {
        id: r.get(0),
        agent: r.get(1),
        pool: r.get(2),
        secret_sha256: r.get(3),
        created_at: r.get(4),
        expires_at: r.get(5),
    }
}

fn job_from_row(r: &Row) -> Result<JobRecord, StoreError> {
    let code: Option<String> = r.get(8);
    let message: Option<String> = r.get(9);
    let stats: Option<String> = r.get(10);
    let state: String = r.get(3);
    Ok(JobRecord {
        id: r.get(0),
        agent: r.get(1),
        connection: r.get(2),
        state: JobState::parse(&state)?,
        created_at: r.get(4),
        expires_at: r.get(5),
        finished_at: r.get(6),
        attempts: r.get(7),
        reason: code.map(|code| Reason { code, message: message.unwrap_or_default() }),
        stats: stats.and_then(|s| serde_json::from_str(&s).ok()),
        content_type: r.get(11),
        body: r.get(12),
        cancel_requested_at: r.get(13),
        origin: JobOrigin { owner: r.get(14), project_id: r.get(15), query_index: r.get(16), customer: r.get(17) },
        pool: r.get(18),
    })
}

const JOB_TAIL_COLS: &str = "cancel_requested_at, owner, project_id, query_index, customer, pool";

/// Marks jobs past `expires_at` expired; `where_sql` uses `$1` (a text) and `$2` is now.
async fn expire_overdue(
    tx: &deadpool_postgres::Transaction<'_>,
    where_sql: &str,
    arg: &(dyn ToSql + Sync),
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE jobs SET state = 'expired', finished_at = $2, lease_until = NULL,
                 reason_code = 'expired', reason_message = 'the job expired before its agent returned a result'
             WHERE {where_sql} AND state IN ('queued', 'leased') AND expires_at < $2 RETURNING id"
        ))
        .await?;
    Ok(tx.query(&stmt, &[arg, &now]).await?.iter().map(|r| r.get(0)).collect())
}

async fn current_key_set_version(tx: &deadpool_postgres::Transaction<'_>) -> Result<u64, StoreError> {
    let stmt = tx.prepare_cached("SELECT COALESCE(MAX(version), 0)::BIGINT FROM key_sets").await?;
    let v: i64 = tx.query_one(&stmt, &[]).await?.get(0);
    Ok(u64::try_from(v).unwrap_or(0))
}

impl Store for PgStore {
    async fn create_enrol_token(&self, t: EnrolTokenRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO enrol_tokens (id, agent, secret_sha256, created_at, expires_at, pool)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&t.id, &t.agent, &t.secret_sha256, &t.created_at, &t.expires_at, &t.pool],
            )
            .await?;
        Ok(())
    }

    async fn outstanding_enrol_tokens(&self, now: i64) -> Result<Vec<EnrolTokenRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, agent, pool, secret_sha256, created_at, expires_at FROM enrol_tokens
                 WHERE used_at IS NULL AND expires_at >= $1 ORDER BY created_at, id",
                &[&now],
            )
            .await?;
        Ok(rows.iter().map(enrol_token_from_row).collect())
    }

    async fn revoke_enrol_token(&self, id: String) -> Result<Option<EnrolTokenRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "DELETE FROM enrol_tokens WHERE id = $1 AND used_at IS NULL
                 RETURNING id, agent, pool, secret_sha256, created_at, expires_at",
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(enrol_token_from_row))
    }

    async fn redeem_enrol_token(
        &self,
        id: String,
        secret_sha256: String,
        agent: String,
        now: i64,
        cert_not_after: i64,
    ) -> Result<Result<Option<String>, RedeemError>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT agent, secret_sha256, expires_at, used_at, pool FROM enrol_tokens WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?;
        let Some(row) = row else {
            return Ok(Err(RedeemError::Unknown));
        };
        let (bound, stored_hash, expires_at, used_at, pool): (String, String, i64, Option<i64>, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if let Err(refused) =
            crate::store::check_redeem(&stored_hash, &secret_sha256, used_at, expires_at, &bound, &agent, now)
        {
            return Ok(Err(refused));
        }
        tx.execute("UPDATE enrol_tokens SET used_at = $2 WHERE id = $1", &[&id, &now]).await?;
        // Waits for the requests of the old enrolment in flight (they hold the row FOR KEY
        // SHARE), and they for this (postgres_jobs.rs).
        tx.execute("SELECT 1 FROM agents WHERE name = $1 FOR UPDATE", &[&agent]).await?;
        tx.execute(
            "INSERT INTO agents (name, enrolled_at, cert_not_after, pool) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET enrolled_at = excluded.enrolled_at,
                 cert_not_after = excluded.cert_not_after, revoked_at = NULL, pool = excluded.pool",
            &[&agent, &now, &cert_not_after, &pool],
        )
        .await?;
        // A new enrolment starts a new account of its audit log.
        tx.execute("DELETE FROM audit_heads WHERE agent = $1", &[&agent]).await?;
        tx.commit().await?;
        Ok(Ok(pool))
    }

    async fn agent(&self, name: String) -> Result<Option<AgentRecord>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE name = $1")).await?;
        Ok(client.query_opt(&stmt, &[&name]).await?.as_ref().map(agent_from_row))
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client.query(&format!("SELECT {AGENT_COLS} FROM agents ORDER BY name"), &[]).await?;
        Ok(rows.iter().map(agent_from_row).collect())
    }

    async fn pool_members(&self, pool: String) -> Result<Vec<AgentRecord>, StoreError> {
        let client = self.client().await?;
        let stmt =
            client.prepare_cached(&format!("SELECT {AGENT_COLS} FROM agents WHERE pool = $1 ORDER BY name")).await?;
        Ok(client.query(&stmt, &[&pool]).await?.iter().map(agent_from_row).collect())
    }

    async fn touch_agent(
        &self,
        agent: AgentPeer,
        now: i64,
        version: Option<String>,
        connections: Option<Vec<String>>,
    ) -> Result<(), StoreError> {
        let conns = connections.map(|v| serde_json::to_string(&v).unwrap_or_else(|_| "[]".into()));
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        admit_agent(&tx, &agent, now).await?;
        let stmt = tx
            .prepare_cached(
                "UPDATE agents SET version = COALESCE($2, version), connections = COALESCE($3, connections)
                 WHERE name = $1",
            )
            .await?;
        tx.execute(&stmt, &[&agent.name, &version, &conns]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn agent_stopped(&self, agent: AgentPeer, now: i64) -> Result<(), StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE agents SET last_seen = $2, stopped_at = $2
                 WHERE name = $1 AND revoked_at IS NULL AND enrolled_at <= $3",
            )
            .await?;
        client.execute(&stmt, &[&agent.name, &now, &agent.cert_issued_at]).await?;
        Ok(())
    }

    async fn record_audit_head(&self, agent: AgentPeer, head: StoredAuditHead) -> Result<AuditHeadOutcome, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO audit_heads (agent, seq, hash, head, received_at)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (
                     SELECT 1 FROM agents WHERE name = $1 AND revoked_at IS NULL AND enrolled_at <= $6)
                 ON CONFLICT (agent) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, head = excluded.head,
                     received_at = excluded.received_at
                 WHERE excluded.seq > audit_heads.seq
                    OR (excluded.seq = audit_heads.seq AND excluded.hash = audit_heads.hash)",
            )
            .await?;
        let n = client
            .execute(
                &stmt,
                &[&agent.name, &head.seq, &head.hash, &head.head_json, &head.received_at, &agent.cert_issued_at],
            )
            .await?;
        if n > 0 {
            return Ok(AuditHeadOutcome::Stored);
        }
        Ok(crate::store::behind_or_not_admitted(self.audit_head(agent.name).await?, &head))
    }

    async fn audit_head(&self, agent: String) -> Result<Option<StoredAuditHead>, StoreError> {
        let client = self.client().await?;
        let stmt =
            client.prepare_cached("SELECT seq, hash, head, received_at FROM audit_heads WHERE agent = $1").await?;
        Ok(client.query_opt(&stmt, &[&agent]).await?.map(|r| StoredAuditHead {
            seq: r.get(0),
            hash: r.get(1),
            head_json: r.get(2),
            received_at: r.get(3),
        }))
    }

    async fn job_envelope(&self, id: String) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached("SELECT envelope FROM jobs WHERE id = $1").await?;
        Ok(client.query_opt(&stmt, &[&id]).await?.map(|r| r.get(0)))
    }

    async fn insert_job(&self, job: NewJob) -> Result<(), StoreError> {
        let client = self.client().await?;
        // One statement (one round trip, one commit). The key row is share-locked: a
        // retirement (which updates it, then re-signs the key's undelivered jobs) either
        // waits for this insert and then re-signs this job too, or commits first and this
        // insert finds no key to insert with.
        let stmt = client
            .prepare_cached(
                "WITH usable AS (
                     SELECT 1 FROM signing_keys WHERE key_id = $8 AND status <> 'retired' FOR SHARE)
                 INSERT INTO jobs (id, agent, pool, connection, state, envelope, created_at, expires_at, key_id,
                                   owner, project_id, query_index, customer)
                 SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::TEXT, 'queued', $5::TEXT, $6::BIGINT, $7::BIGINT, $8::TEXT,
                        $9::TEXT, $10::TEXT, $11::BIGINT, $12::TEXT
                 FROM usable",
            )
            .await?;
        let inserted = client
            .execute(
                &stmt,
                &[
                    &job.id,
                    &job.agent,
                    &job.pool,
                    &job.connection,
                    &job.envelope_json,
                    &job.created_at,
                    &job.expires_at,
                    &job.key_id,
                    &job.origin.owner,
                    &job.origin.project_id,
                    &job.origin.query_index,
                    &job.origin.customer,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::KeyRetired { key_id: job.key_id });
        }
        Ok(())
    }

    async fn lease_jobs(
        &self,
        agent: AgentPeer,
        now: i64,
        lease_secs: i64,
        max: usize,
    ) -> Result<LeaseBatch, StoreError> {
        let client = self.client().await?;
        let leased = super::postgres_jobs::lease(&client, &agent, now, lease_secs, max).await?;
        match leased.admitted {
            Some(_) => Ok(leased.batch),
            None => Err(refusal(&client, &agent).await?),
        }
    }

    async fn fail_corrupt_job(&self, id: String, agent: String, now: i64, message: String) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE jobs SET state = 'failed', finished_at = $3, lease_until = NULL,
                     reason_code = 'corrupt_job', reason_message = $4
                 WHERE id = $1 AND agent = $2 AND state = 'leased'",
            )
            .await?;
        Ok(client.execute(&stmt, &[&id, &agent, &now, &message]).await? == 1)
    }

    async fn cancel_job(&self, id: String, now: i64) -> Result<CancelOutcome, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        expire_overdue(&tx, "id = $1", &id, now).await?;
        let Some(row) = tx.query_opt("SELECT state, agent FROM jobs WHERE id = $1 FOR UPDATE", &[&id]).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        let (state, agent): (String, String) = (row.get(0), row.get(1));
        let outcome = match JobState::parse(&state)? {
            JobState::Queued => {
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = $2, cancel_requested_at = $2,
                         reason_code = 'cancelled',
                         reason_message = 'cancelled at a user''s request before the agent received it'
                     WHERE id = $1",
                    &[&id, &now],
                )
                .await?;
                CancelOutcome::Cancelled
            }
            JobState::Leased => {
                tx.execute(
                    "UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, $2) WHERE id = $1",
                    &[&id, &now],
                )
                .await?;
                CancelOutcome::Requested { agent }
            }
            other => CancelOutcome::AlreadyFinal(other),
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn signing_keys(&self) -> Result<(Vec<SigningKeyRecord>, u64), StoreError> {
        let mut client = self.client().await?;
        let tx =
            client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).start().await?;
        let keys = tx
            .query(
                "SELECT key_id, public_key, status, created_at, activated_at, retired_at FROM signing_keys
                 ORDER BY created_at, key_id",
                &[],
            )
            .await?
            .iter()
            .map(|r| SigningKeyRecord {
                key_id: r.get(0),
                public_key: r.get(1),
                status: r.get(2),
                created_at: r.get(3),
                activated_at: r.get(4),
                retired_at: r.get(5),
            })
            .collect();
        let version = current_key_set_version(&tx).await?;
        tx.commit().await?;
        Ok((keys, version))
    }

    async fn active_signing_key(&self) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached("SELECT key_id FROM signing_keys WHERE status = 'active'").await?;
        Ok(client.query_opt(&stmt, &[]).await?.map(|r| r.get(0)))
    }

    async fn commit_key_set(&self, change: KeySetChange) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // One key-set change at a time across replicas.
        tx.batch_execute("LOCK TABLE key_sets IN EXCLUSIVE MODE").await?;
        let found = current_key_set_version(&tx).await?;
        if found + 1 != change.version {
            return Err(StoreError::KeySetConflict { expected: change.version.saturating_sub(1), found });
        }
        let mut keys = change.keys.clone();
        keys.sort_by_key(|k| k.status == "active");
        for k in &keys {
            tx.execute(
                "INSERT INTO signing_keys (key_id, public_key, status, created_at, activated_at, retired_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (key_id) DO UPDATE SET status = $3, activated_at = $5, retired_at = $6",
                &[&k.key_id, &k.public_key, &k.status, &k.created_at, &k.activated_at, &k.retired_at],
            )
            .await?;
        }
        let version = i64::try_from(change.version)
            .map_err(|_| StoreError::Corrupt { table: "key_sets", reason: "version overflow".into() })?;
        tx.execute(
            "INSERT INTO key_sets (version, statement, created_at) VALUES ($1, $2, $3)",
            &[&version, &change.statement_json, &change.now],
        )
        .await?;
        let mut resigned = 0;
        if let Some((retired, active)) = &change.resign {
            // A fresh statement after the key row's update: it sees every job whose insert
            // held the key row (FOR SHARE) before the update.
            let pending = tx
                .query(
                    "SELECT id, envelope FROM jobs WHERE key_id = $1 AND state IN ('queued', 'leased') FOR UPDATE",
                    &[retired],
                )
                .await?;
            for row in pending {
                let (id, envelope): (String, String) = (row.get(0), row.get(1));
                // One bad row never blocks the rotation: it fails, the others are re-signed.
                let Some(new) = crate::store::queue::resigned(&id, &envelope, active, change.envelopes.as_deref())
                else {
                    tx.execute(
                        "UPDATE jobs SET state = 'failed', finished_at = $2, lease_until = NULL,
                             reason_code = 'corrupt_job', reason_message = $3
                         WHERE id = $1",
                        &[&id, &change.now, &crate::store::queue::CORRUPT_JOB_MESSAGE],
                    )
                    .await?;
                    continue;
                };
                tx.execute(
                    "UPDATE jobs SET envelope = $2, key_id = $3 WHERE id = $1",
                    &[&id, &new, &active.key_id().0],
                )
                .await?;
                resigned += 1;
            }
        }
        tx.commit().await?;
        Ok(resigned)
    }

    async fn key_sets_after(&self, after: u64, max: usize) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let stmt = client
            .prepare_cached("SELECT statement FROM key_sets WHERE version > $1 ORDER BY version LIMIT $2")
            .await?;
        Ok(client.query(&stmt, &[&after, &max]).await?.iter().map(|r| r.get(0)).collect())
    }

    async fn complete_job(
        &self,
        agent: AgentPeer,
        report: ResultReport,
        report_sha256: String,
        sealed_body: Option<Vec<u8>>,
        now: i64,
    ) -> Result<CompleteOutcome, StoreError> {
        let client = self.client().await?;
        let completion = super::postgres_jobs::Completion {
            job_id: &report.job_id,
            new_state: JobState::from(report.status),
            report_sha256: &report_sha256,
            reason: report.reason.map(|r| (r.code, r.message)).unzip(),
            stats: serde_json::to_string(&report.stats).unwrap_or_default(),
            content_type: report.content_type.as_deref(),
            sealed_body,
        };
        match super::postgres_jobs::complete(&client, &agent, completion, now).await? {
            Some(outcome) => Ok(outcome),
            None => Err(refusal(&client, &agent).await?),
        }
    }

    async fn record_renewal(&self, agent: AgentPeer, cert_not_after: i64, now: i64) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        admit_agent(&tx, &agent, now).await?;
        tx.execute("UPDATE agents SET cert_not_after = $2 WHERE name = $1", &[&agent.name, &cert_not_after]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_agent(&self, name: String, now: i64) -> Result<Option<Vec<String>>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Waits for the agent's requests in flight (they hold the row FOR KEY SHARE, which
        // the UPDATE alone would not wait for), and they for this: nothing is leased to
        // the agent after this commits (postgres_jobs.rs).
        tx.execute("SELECT 1 FROM agents WHERE name = $1 FOR UPDATE", &[&name]).await?;
        let n = tx
            .execute("UPDATE agents SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1", &[&name, &now])
            .await?;
        if n == 0 {
            return Ok(None);
        }
        // A pool's job this agent held goes back to the pool; its own jobs fail.
        tx.execute(
            "UPDATE jobs SET state = 'queued', agent = '', lease_until = NULL
             WHERE agent = $1 AND pool IS NOT NULL AND state = 'leased'",
            &[&name],
        )
        .await?;
        let failed = tx
            .query(
                "UPDATE jobs SET state = 'failed', finished_at = $2, lease_until = NULL, reason_code = 'agent_revoked',
                     reason_message = 'the agent was revoked before it returned a result'
                 WHERE agent = $1 AND pool IS NULL AND state IN ('queued', 'leased') RETURNING id",
                &[&name, &now],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.commit().await?;
        Ok(Some(failed))
    }

    async fn jobs(&self, filter: crate::store::JobFilter, limit: u32, now: i64) -> Result<Vec<JobRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        match &filter.owner {
            Some(o) => expire_overdue(&tx, "owner = $1", o, now).await?,
            None => expire_overdue(&tx, "$1::TEXT IS NOT NULL", &"", now).await?,
        };
        let stmt = tx
            .prepare_cached(&format!(
                "SELECT {JOB_COLS}, NULL::BYTEA, {JOB_TAIL_COLS}
                 FROM jobs WHERE {} ORDER BY created_at DESC, seq DESC LIMIT $2",
                crate::store::jobs_filter_sql('$', "::TEXT")
            ))
            .await?;
        let state = filter.state.map(JobState::as_str);
        let rows =
            tx.query(&stmt, &[&filter.owner, &i64::from(limit), &state, &filter.agent, &filter.connection]).await?;
        tx.commit().await?;
        // One bad row never hides the others: it is left out, and logged.
        Ok(rows
            .iter()
            .filter_map(|r| match job_from_row(r) {
                Ok(rec) => Some(rec),
                Err(e) => {
                    let id: Option<String> = r.try_get(0).ok();
                    tracing::error!(job_id = id.as_deref().unwrap_or(""), error = %e, "A stored job cannot be read; it is left out of the list.");
                    None
                }
            })
            .collect())
    }

    async fn job(&self, id: String, now: i64, with_body: bool) -> Result<Option<JobRecord>, StoreError> {
        let mut client = self.client().await?;
        let sql = format!("SELECT {JOB_COLS}, CASE WHEN $2 THEN body END, {JOB_TAIL_COLS} FROM jobs WHERE id = $1");
        // One round trip unless the job is open past its expiry: then it is marked
        // expired and read again in one transaction.
        let stmt = client.prepare_cached(&sql).await?;
        let found = client.query_opt(&stmt, &[&id, &with_body]).await?.as_ref().map(job_from_row).transpose()?;
        match found {
            Some(rec) if matches!(rec.state, JobState::Queued | JobState::Leased) && rec.expires_at < now => {
                let tx = client.transaction().await?;
                expire_overdue(&tx, "id = $1", &id, now).await?;
                let stmt = tx.prepare_cached(&sql).await?;
                let row = tx.query_opt(&stmt, &[&id, &with_body]).await?;
                tx.commit().await?;
                row.as_ref().map(job_from_row).transpose()
            }
            other => Ok(other),
        }
    }
}

/// A fresh database on the test server for one test (dropped by [`TestDb::drop`]).
#[cfg(test)]
pub(crate) mod testdb {
    use super::{PgOptions, PgStore};

    /// The server's URL from `OUTPOST_TEST_PG_URL` (default: the local server).
    pub fn base_url() -> String {
        std::env::var("OUTPOST_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    fn with_db(url: &str, db: &str) -> String {
        let (head, query) = url.split_once('?').map_or((url, None), |(h, q)| (h, Some(q)));
        let base = head.rsplit_once('/').map_or(head, |(b, _)| b);
        match query {
            Some(q) => format!("{base}/{db}?{q}"),
            None => format!("{base}/{db}"),
        }
    }

    /// A new, empty database; the store is opened (migrated) on it.
    pub struct TestDb {
        /// The store.
        pub store: PgStore,
        name: String,
    }

    impl TestDb {
        /// Creates the database and opens a store on it.
        pub async fn new() -> Self {
            let admin = base_url();
            let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is not reachable at {admin} ({e}); set OUTPOST_TEST_PG_URL or start it: \
                     pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
                )
            });
            tokio::spawn(conn);
            let name = format!(
                "outpost_unit_{}",
                outpost_protocol::encoding::hex(&outpost_protocol::ids::random_bytes::<6>())
            );
            client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
            let url = with_db(&admin, &name);
            let opts = PgOptions { url: url.clone(), password_file: None, ca_file: None, max_connections: 8 };
            let store = PgStore::open(&opts).await.expect("open the PostgreSQL store");
            Self { store, name }
        }

        /// Drops the database.
        pub async fn drop(self) {
            self.store.pool.close();
            if let Ok((client, conn)) = tokio_postgres::connect(&base_url(), tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await;
            }
        }
    }
}
