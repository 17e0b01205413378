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

pub(super) async fn drop_surplus_filter_sets(
    store: &SqliteStore,
    keep: u32,
    before: i64,
    now: i64,
) -> Result<usize, StoreError> {
    let n = store
        .with_conn(move |c| {
            // Per project query and customer, the filter sets ranked by their newest job (runs
            // in the same second by insertion order);
            // a default one is not ranked (never dropped here).
            let n = c.execute(
                "DELETE FROM jobs WHERE rowid IN (
                   SELECT j.rowid FROM jobs AS j JOIN (
                     SELECT project_id, query_index, customer, filters,
                            ROW_NUMBER() OVER (PARTITION BY project_id, query_index, customer
                                               ORDER BY MAX(created_at) DESC, MAX(rowid) DESC) AS recency
                     FROM jobs AS v
                     WHERE project_id IS NOT NULL AND filters IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM project_filter_sets AS s
                                       WHERE s.project_id = v.project_id AND s.filters = v.filters AND s.was_default)
                     GROUP BY project_id, query_index, customer, filters) AS ranked
                   ON j.project_id = ranked.project_id AND j.query_index IS ranked.query_index
                      AND j.customer IS ranked.customer AND j.filters = ranked.filters
                   WHERE ranked.recency > ?1 AND (j.finished_at IS NOT NULL OR j.expires_at <= ?2))",
                params![keep, now],
            )?;
            c.execute(
                "DELETE FROM project_filter_sets WHERE created_at < ?1 AND NOT EXISTS (
                   SELECT 1 FROM jobs WHERE jobs.project_id = project_filter_sets.project_id
                                        AND jobs.filters = project_filter_sets.filters)",
                params![before],
            )?;
            Ok(n)
        })
        .await?;
    if n > 0 {
        store.checkpoint_alone().await?;
    }
    Ok(n)
}
