//! The PostgreSQL backend of [`Store`] and [`crate::store::access::AccessStore`], for
//! several control-plane replicas sharing one database.
//!
//! - Migrations are versioned (`outpost_schema`) and applied at start inside one
//!   transaction that first takes a transaction-level advisory lock, so replicas starting
//!   at once apply each migration exactly once and the others wait, then see it done.
//! - Leases use `FOR UPDATE SKIP LOCKED`: two replicas serving two members of a pool never
//!   hand out the same job, and neither waits on the other's rows.
//! - Wake-ups cross replicas by `LISTEN/NOTIFY` ([`PgStore::listen`],
//!   [`PgStore::notify_all`]): a job queued through replica B wakes the agent
//!   long-polling replica A at once.
//! - Every method is one transaction; a replica killed mid-request leaves no half state,
//!   and the leases it handed out run out and are handed out again.
//!
//! The database holds public keys and hashes only: the CA key, the job-signing keys, the
//! results key and the embed key stay in each replica's data dir (or systemd credentials).
//!
//! This file opens the store (the connection set-up is in `connect`) and runs the
//! migrations of `store::migrations`. Each call is answered, as `store::dispatch` lists,
//! in its topic: enrolment tokens, agents and audit heads in `agents`, jobs in `jobs`
//! (the lease and the result as one statement each, in `transitions`), the job-signing
//! keys in `keys`.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::access::postgres::AuditWriter;
use crate::store::dispatch::{by_topic, impl_store};
use crate::store::migrations::PG_MIGRATIONS;
use crate::store::{DatabaseKind, StoreError};

mod agents;
mod connect;
mod jobs;
mod keys;
mod transitions;

use connect::{default_ssl_mode, tls_config};
pub use connect::{parse_url, redact_url, PgOptions, UrlError};

/// The advisory lock key migrations run under ("outpost" in ASCII).
const MIGRATION_LOCK: i64 = 0x006f_7574_706f_7374;

/// The channel replicas wake each other on.
pub const HUB_CHANNEL: &str = "outpost_hub";

/// PostgreSQL backend.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// For the listening connection, which lives outside the pool.
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// The cloud audit log's group-commit writer.
    audit: AuditWriter,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("pool", &self.pool.status()).finish_non_exhaustive()
    }
}

/// A PostgreSQL error in the words the store's errors have always used: the server's
/// message and SQLSTATE for an error the server sent, the client's words otherwise. Its
/// source is what lies below (the server's whole report, or the I/O error).
#[derive(Debug)]
struct PgError(tokio_postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{} ({})", db.message(), db.code().code()),
            None => self.0.fmt(f),
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A failure of PostgreSQL or of the way to it, `source` its cause (or what went wrong
/// setting the connection up, in words).
pub(crate) fn postgres_error(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::database(DatabaseKind::Postgres, source)
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        postgres_error(PgError(e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => postgres_error(other),
        }
    }
}

impl PgStore {
    /// Connects, applies missing migrations under the advisory lock, and returns the store.
    pub async fn open(opts: &PgOptions) -> Result<Self, StoreError> {
        let mut config = parse_url(&opts.url).map_err(postgres_error)?;
        default_ssl_mode(&opts.url, &mut config);
        if let Some(path) = &opts.password_file {
            let bytes = outpost_common::fsutil::read_capped_file(path, 4096)
                .map_err(|e| postgres_error(format!("store_password_file {}: {e}", path.display())))?;
            let text = zeroize::Zeroizing::new(
                String::from_utf8(bytes)
                    .map_err(|_| postgres_error(format!("store_password_file {}: not UTF-8", path.display())))?,
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
            .map_err(postgres_error)?;
        let audit = AuditWriter::start(pool.clone());
        let store = Self { pool, config, tls, audit };
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

    /// The cloud audit log's writer.
    pub(crate) fn audit_writer(&self) -> &AuditWriter {
        &self.audit
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// A connection outside the pool that sends wake-ups ([`Publisher::notify_all`]).
    ///
    /// A `NOTIFY` gives its transaction an id, so its commit waits for a WAL flush like
    /// any write; under load that was two flushes per job for wake-ups alone (issue 24).
    /// A wake-up needs no durability (a replica that misses one re-reads the store at its
    /// next poll or wait), so this session commits with `synchronous_commit = off`: the
    /// notification is delivered at commit all the same, without waiting for the disk.
    /// Only this connection is set so; every other write still waits for its flush.
    pub async fn publisher(&self) -> Result<Publisher, StoreError> {
        let (client, connection) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %PgError(e), "The PostgreSQL wake-up connection failed.");
            }
        });
        client.batch_execute("SET synchronous_commit TO off").await?;
        let stmt = client
            .prepare("SELECT pg_notify($1, p) FROM unnest($2::TEXT[]) WITH ORDINALITY AS n(p, i) ORDER BY i")
            .await?;
        Ok(Publisher { client, stmt })
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
                        tracing::warn!(error = %PgError(e), "The PostgreSQL listening connection failed.");
                        return;
                    }
                    None => return,
                }
            }
        });
        client.batch_execute(&format!("LISTEN {HUB_CHANNEL}")).await?;
        Ok((client, rx))
    }

    /// The pool, for tests that drive a part of the store directly.
    #[cfg(test)]
    pub(crate) fn pool_for_tests(&self) -> Pool {
        self.pool.clone()
    }

    /// Closes the pool (a test database is dropped after).
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn close(&self) {
        self.pool.close();
    }

    /// Database name and server version, for the start-up log.
    pub async fn describe(&self) -> Result<String, StoreError> {
        let client = self.client().await?;
        let row = client.query_one("SELECT current_database(), current_setting('server_version')", &[]).await?;
        Ok(format!("PostgreSQL {} database {}", row.get::<_, String>(1), row.get::<_, String>(0)))
    }
}

/// The connection wake-ups are sent on ([`PgStore::publisher`]).
pub struct Publisher {
    client: tokio_postgres::Client,
    stmt: tokio_postgres::Statement,
}

impl Publisher {
    /// Sends wake-ups to every replica (including this one) on [`HUB_CHANNEL`], all in
    /// one statement and one commit, in order.
    pub async fn notify_all(&self, payloads: Vec<String>) -> Result<(), StoreError> {
        self.client.execute(&self.stmt, &[&HUB_CHANNEL, &payloads]).await?;
        Ok(())
    }
}

impl_store!(PgStore, by_topic);

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// An error the server sent reads as it always did (its message and SQLSTATE), and
    /// the server's whole report stays in the error's sources.
    #[tokio::test]
    async fn a_postgres_error_keeps_its_words_and_the_servers_report() {
        crate::store::testdb::on_postgres(|store| async move {
            let client = store.client().await.expect("client");
            let e = client.batch_execute("SELECT 1/0").await.expect_err("division by zero");
            let err = StoreError::from(e);
            assert_eq!(err.to_string(), "PostgreSQL: division by zero (22012)");
            assert!(matches!(err, StoreError::Database { backend: DatabaseKind::Postgres, .. }), "{err:?}");
            let mut sources = Vec::new();
            let mut next = err.source();
            while let Some(s) = next {
                sources.push(s.to_string());
                next = s.source();
            }
            assert!(sources.iter().any(|s| s.contains("ERROR: division by zero")), "{sources:?}");
        })
        .await;
    }
}
