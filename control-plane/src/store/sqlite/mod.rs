//! The embedded SQLite backend of `Store` (and, in `access::sqlite`, of `AccessStore`):
//! one writer thread that commits what arrives together in one transaction, and
//! read-only connections beside it ([`db`]), and WAL checkpoints on a thread of their
//! own ([`outpost_common::sqlite_checkpoints`]).
//!
//! This file opens the database (file mode, pragmas, migrations from
//! [`crate::store::migrations`]). Each call is answered, as `store::dispatch` lists, in
//! its topic: enrolment tokens, agents and audit heads in [`agents`], jobs and their
//! state machine in [`jobs`], the job-signing keys in [`keys`].

use std::path::Path;

use rusqlite::Connection;

use crate::store::dispatch::{by_topic, impl_store};
use crate::store::migrations::{MIGRATIONS, SCHEMA_VERSION};
use crate::store::{DatabaseKind, StoreError};

mod agents;
mod db;
mod jobs;
mod keys;

/// SQLite backend.
#[derive(Clone)]
pub struct SqliteStore {
    db: db::SqliteDb,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Create the file 0600 before SQLite does (it would use the umask); the WAL and
        // shared-memory files inherit the database file's mode.
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| StoreError::Task(format!("{}: {e}", path.display())))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(db::BUSY_TIMEOUT)?;
        // WAL: readers do not block the writer. synchronous=NORMAL in WAL mode keeps the
        // database consistent after a crash; a power cut may lose the last transactions.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Deleted rows (expired results, sessions) are overwritten with zeros, not left in
        // free pages for someone with the file to read.
        conn.pragma_update(None, "secure_delete", true)?;
        db::plan_once(&conn)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        // Migrations run in order, each in its own transaction with the version bump.
        for &(target, sql) in MIGRATIONS {
            if version < target {
                conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql} PRAGMA user_version = {target}; COMMIT;"))?;
            }
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                table: "schema",
                reason: format!("database schema {version} is newer than this build ({SCHEMA_VERSION})"),
            });
        }
        Ok(Self { db: db::SqliteDb::start(path, conn)? })
    }

    /// Runs `f` on the writer's connection, in a savepoint of the group it is committed
    /// with; returns once that group is committed. Every change goes through here.
    pub(crate) async fn with_conn<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.write(f).await
    }

    /// [`with_conn`](Self::with_conn) for a small change by key, which may run on the
    /// caller's thread when the writer is idle ([`db::SqliteDb::write_small`]): the job
    /// path's queue, lease, result and the audit record of each request.
    pub(crate) async fn with_conn_small<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.write_small(f).await
    }

    /// Copies the WAL into the database file and empties it (outside any transaction,
    /// after the changes queued before it are committed).
    ///
    /// It waits for the checkpointer beside the writer to finish (SQLite would refuse a
    /// second checkpoint at once, leaving the WAL and what a purge deleted in it); then
    /// only a reader that holds on past the busy timeout can make it give up.
    pub(crate) async fn checkpoint_alone(&self) -> Result<(), StoreError> {
        let checkpoints = self.db.checkpoints();
        self.db
            .write_alone(move |c| {
                let (busy, _, _): (i64, i64, i64) = checkpoints.alone(|| {
                    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                })?;
                if busy != 0 {
                    tracing::warn!("The WAL was not emptied: a reader held on past the busy timeout. The next purge or a clean stop empties it.");
                }
                Ok(())
            })
            .await
    }

    /// Runs `f` on a read-only connection beside the writer (it sees the last commit), on
    /// the caller's thread: for lookups by key only (see [`db::SqliteDb::read`]).
    pub(crate) async fn with_read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.db.read(f).await
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::database(DatabaseKind::Sqlite, e)
    }
}

impl_store!(SqliteStore, by_topic);

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// A SQLite failure reads as it always did and keeps SQLite's error as its source.
    #[test]
    fn a_sqlite_error_keeps_its_words_and_its_source() {
        let conn = Connection::open_in_memory().expect("open");
        let e = conn.execute_batch("SELEC 1").expect_err("a syntax error");
        let said = format!("database error: {e}");
        let err = StoreError::from(e);
        assert_eq!(err.to_string(), said);
        assert!(matches!(err, StoreError::Database { backend: DatabaseKind::Sqlite, .. }), "{err:?}");
        assert!(err.source().and_then(|s| s.downcast_ref::<rusqlite::Error>()).is_some(), "{err:?}");
    }

    /// What retention and a clean stop rely on: after commits that keep the checkpointer
    /// busy, `checkpoint_alone` still empties the WAL, so what a purge deleted has no copy
    /// left there and the database file alone holds every change. Without the wait for
    /// the checkpointer SQLite refused this TRUNCATE as busy in most rounds.
    #[tokio::test]
    async fn checkpoint_alone_empties_the_wal_while_the_checkpointer_works() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp.db");
        let store = SqliteStore::open(&path).expect("open");
        store.with_conn(|c| Ok(c.execute_batch("CREATE TABLE filler (v BLOB)")?)).await.expect("table");
        for round in 0..6 {
            for _ in 0..1_200 {
                store
                    .with_conn(|c| Ok(c.execute("INSERT INTO filler (v) VALUES (zeroblob(4000))", [])?))
                    .await
                    .expect("insert");
            }
            store.checkpoint_alone().await.expect("checkpoint");
            let wal = std::fs::metadata(dir.path().join("cp.db-wal")).map(|m| m.len()).unwrap_or(0);
            assert_eq!(wal, 0, "round {round}: the WAL holds {wal} bytes after checkpoint_alone");
        }
    }
}
