//! What only the SQLite backend promises: its file's mode, and a lease that reads the
//! agent's open jobs, not its history.

use rusqlite::params;

use super::*;
use crate::store::transitions::{PollSql, Slots};

#[test]
fn database_file_is_created_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cp.db");
    SqliteStore::open(&path).expect("open");
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
}

/// A poll reads the agent's open jobs, not its history: with 3,000 finished jobs the
/// lease statement takes about as many steps as with none (it read every one of them
/// before, and throughput fell as the history grew).
#[tokio::test]
async fn leasing_does_not_read_the_agents_finished_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("cp.db")).expect("open");
    seed(&store).await;
    store.insert_job(job("open-1", 5000)).await.expect("insert");
    let lease_steps = |store: SqliteStore| async move {
        store
            .with_conn(|c| {
                let tx = c.savepoint()?;
                let (steps, leased) = {
                    let mut stmt = tx.prepare(&PollSql::new(&Slots::SQLITE).lease)?;
                    let leased = stmt
                        .query_map(params!["edge-1", 1100, 60, 10, None::<String>], |r| r.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()?;
                    (stmt.get_status(rusqlite::StatementStatus::VmStep), leased)
                };
                drop(tx); // rolled back
                Ok((steps, leased))
            })
            .await
            .expect("lease")
    };
    let (before, leased) = lease_steps(store.clone()).await;
    assert_eq!(leased, ["open-1"]);
    store
        .with_conn(|c| {
            c.execute_batch(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
                 INSERT INTO jobs (id, agent, connection, state, envelope, created_at, expires_at, finished_at)
                 SELECT 'done-' || i, 'edge-1', 'sample', 'succeeded', '{}', 900, 5000, 950 FROM n",
            )?;
            Ok(())
        })
        .await
        .expect("history");
    let (after, leased) = lease_steps(store.clone()).await;
    assert_eq!(leased, ["open-1"]);
    assert!(after < before + 100, "the lease took {after} steps with 3,000 finished jobs, {before} without");
}
