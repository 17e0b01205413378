//! The SQLite backend's retention: ended jobs and expired sessions deleted, and the
//! freed pages zeroed out of the write-ahead log too.

use rusqlite::params;

use crate::store::{SqliteStore, StoreError};

pub(super) async fn purge(
    store: &SqliteStore,
    before: i64,
    keep_results_after: i64,
    now: i64,
) -> Result<usize, StoreError> {
    let n = store
            .with_conn(move |c| {
                let n = c.execute(
                    "DELETE FROM jobs
                     WHERE ((finished_at IS NOT NULL AND finished_at <= ?1) OR (finished_at IS NULL AND expires_at <= ?1))
                       AND NOT (project_id IS NOT NULL AND state = 'succeeded' AND finished_at > ?2
                                AND NOT EXISTS (
                                    SELECT 1 FROM jobs AS newer
                                    WHERE newer.project_id = jobs.project_id AND newer.query_index IS jobs.query_index
                                      AND newer.customer IS jobs.customer AND newer.filters IS jobs.filters AND newer.state = 'succeeded'
                                      AND (newer.created_at > jobs.created_at
                                           OR (newer.created_at = jobs.created_at AND newer.rowid > jobs.rowid))))",
                    params![before, keep_results_after],
                )?;
                c.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now])?;
                Ok(n)
            })
            .await?;
    if n > 0 {
        // secure_delete zeroed the freed pages in the WAL; copy them into the
        // database file and empty the WAL, so the old bytes are nowhere on disk.
        store.checkpoint_alone().await?;
    }
    Ok(n)
}
