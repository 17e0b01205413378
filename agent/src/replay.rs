//! Replay defence: the ids and nonces of jobs this agent accepted, kept until the jobs
//! expire, in `state_dir/seen-jobs.db` (SQLite, 0600).
//!
//! A captured envelope sent again, by a compromised control plane or anyone on its
//! path, verifies like the original; only memory of what already ran stops it. The
//! record is written before the query runs and survives a restart. Entries whose job
//! has expired (plus the skew allowance) are dropped on every insert, so the store
//! stays bounded by the job rate times the longest lifetime policy allows.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, ErrorCode};

/// File name in the state dir.
pub const SEEN_DB: &str = "seen-jobs.db";

/// Replay-store failures.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// This job id or nonce was accepted before.
    #[error("job {job_id} was already accepted by this agent (replayed envelope)")]
    Replayed {
        /// Job id.
        job_id: String,
    },
    /// The store failed; the job must not run.
    #[error("replay store: {0}")]
    Store(String),
}

/// The persistent set of accepted jobs.
#[derive(Clone)]
pub struct SeenJobs {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SeenJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeenJobs").finish_non_exhaustive()
    }
}

fn store_err(e: impl std::fmt::Display) -> ReplayError {
    ReplayError::Store(e.to_string())
}

impl SeenJobs {
    /// Opens (creating 0600) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, ReplayError> {
        let path = state_dir.join(SEEN_DB);
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(store_err)?;
        }
        let mut conn = Connection::open(&path).map_err(store_err)?;
        // WAL + NORMAL: a record survives a crash of the agent process; only a power cut
        // can lose the last ones. The record is written before the query runs, so its
        // commit never copies the WAL itself: a thread beside it does.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(store_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(store_err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS seen (
                 job_id TEXT PRIMARY KEY,
                 nonce TEXT NOT NULL UNIQUE,
                 keep_until INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS seen_by_keep_until ON seen(keep_until);",
        )
        .map_err(store_err)?;
        outpost_common::sqlite_checkpoints::start(&path, &mut conn).map_err(store_err)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Records a job as accepted, or refuses it if its id or nonce was seen before.
    /// `keep_until` is the job's expiry plus the skew allowance.
    pub async fn check_and_record(
        &self,
        job_id: &str,
        nonce: &str,
        keep_until: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        let conn = Arc::clone(&self.conn);
        let (job_id, nonce) = (job_id.to_owned(), nonce.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().map_err(|_| store_err("mutex poisoned"))?;
            // One transaction, one commit, for the pruning and the insert.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(store_err)?;
            tx.prepare_cached("DELETE FROM seen WHERE keep_until < ?1")
                .map_err(store_err)?
                .execute(params![now])
                .map_err(store_err)?;
            let inserted = tx
                .prepare_cached("INSERT INTO seen (job_id, nonce, keep_until) VALUES (?1, ?2, ?3)")
                .map_err(store_err)?
                .execute(params![job_id, nonce, keep_until]);
            match inserted {
                Ok(_) => tx.commit().map_err(store_err),
                Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == ErrorCode::ConstraintViolation => {
                    Err(ReplayError::Replayed { job_id })
                }
                Err(e) => Err(store_err(e)),
            }
        })
        .await
        .map_err(store_err)?
    }

    /// Number of entries (for status and tests).
    pub fn len(&self) -> usize {
        self.conn
            .lock()
            .ok()
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM seen", [], |r| r.get::<_, i64>(0)).ok())
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_id_or_nonce_seen_before_is_a_replay_also_after_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seen = SeenJobs::open(dir.path()).expect("open");
        seen.check_and_record("job-a", "nonce-a", 2000, 1000).await.expect("first");
        let again = seen.check_and_record("job-a", "nonce-a", 2000, 1001).await;
        assert!(matches!(again, Err(ReplayError::Replayed { .. })), "{again:?}");
        let same_nonce = seen.check_and_record("job-b", "nonce-a", 2000, 1001).await;
        assert!(matches!(same_nonce, Err(ReplayError::Replayed { .. })), "{same_nonce:?}");
        drop(seen);
        let reopened = SeenJobs::open(dir.path()).expect("reopen");
        let after_restart = reopened.check_and_record("job-a", "nonce-a", 2000, 1002).await;
        assert!(matches!(after_restart, Err(ReplayError::Replayed { .. })), "{after_restart:?}");
    }

    #[tokio::test]
    async fn expired_entries_are_dropped_so_the_store_stays_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seen = SeenJobs::open(dir.path()).expect("open");
        for i in 0..100 {
            seen.check_and_record(&format!("j{i}"), &format!("n{i}"), 1000 + i, 900).await.expect("record");
        }
        assert_eq!(seen.len(), 100);
        seen.check_and_record("late", "late", 5000, 1050).await.expect("record");
        assert_eq!(seen.len(), 51, "entries kept until 1000..=1049 were dropped at 1050; 50 remain plus the new one");
    }
}
