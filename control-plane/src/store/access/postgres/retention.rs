//! The PostgreSQL backend's retention: ended jobs and expired sessions deleted.

use crate::store::postgres::PgStore;
use crate::store::StoreError;

/// The jobs retention deletes: ended at or before `$1`, or still open and expired at or
/// before `$1`, except the newest successful result of each project query (per customer
/// and filters) that ended after `$2`. An open job is named by its state, not by
/// `finished_at IS NULL` (every change to a final state sets `finished_at`): so each
/// branch has an index, `jobs_by_end` (ended jobs) and `jobs_open` (open jobs), and the
/// purge does not read the whole table (schema 10).
pub(crate) const PURGE_JOBS_SQL: &str = "DELETE FROM jobs
     WHERE ((finished_at IS NOT NULL AND finished_at <= $1) OR (state IN ('queued', 'leased') AND expires_at <= $1))
       AND NOT (project_id IS NOT NULL AND state = 'succeeded' AND finished_at > $2
                AND NOT EXISTS (
                    SELECT 1 FROM jobs AS newer
                    WHERE newer.project_id = jobs.project_id
                      AND newer.query_index IS NOT DISTINCT FROM jobs.query_index
                      AND newer.customer IS NOT DISTINCT FROM jobs.customer
                      AND newer.filters IS NOT DISTINCT FROM jobs.filters AND newer.state = 'succeeded'
                      AND (newer.created_at > jobs.created_at
                           OR (newer.created_at = jobs.created_at AND newer.seq > jobs.seq))))";

pub(super) async fn purge(
    store: &PgStore,
    before: i64,
    keep_results_after: i64,
    now: i64,
) -> Result<usize, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let n = tx.execute(PURGE_JOBS_SQL, &[&before, &keep_results_after]).await?;
    tx.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now]).await?;
    tx.commit().await?;
    // Unlike SQLite's secure_delete, PostgreSQL cannot zero the freed space on demand:
    // the dead rows stay in their pages until (auto)vacuum frees them and new rows
    // overwrite them. Result bodies are sealed, so what lingers is ciphertext.
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

pub(super) async fn drop_surplus_filter_sets(
    store: &PgStore,
    keep: u32,
    before: i64,
    now: i64,
) -> Result<usize, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // Per project query and customer, the filter sets ranked by their newest job (runs in
    // the same second by insertion order); a
    // default one is not ranked (never dropped here).
    let n = tx
        .execute(
            "DELETE FROM jobs WHERE seq IN (
               SELECT j.seq FROM jobs AS j JOIN (
                 SELECT project_id, query_index, customer, filters,
                        ROW_NUMBER() OVER (PARTITION BY project_id, query_index, customer
                                           ORDER BY MAX(created_at) DESC, MAX(seq) DESC) AS recency
                 FROM jobs AS v
                 WHERE project_id IS NOT NULL AND filters IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM project_filter_sets AS s
                                   WHERE s.project_id = v.project_id AND s.filters = v.filters AND s.was_default)
                 GROUP BY project_id, query_index, customer, filters) AS ranked
               ON j.project_id = ranked.project_id AND j.query_index IS NOT DISTINCT FROM ranked.query_index
                  AND j.customer IS NOT DISTINCT FROM ranked.customer AND j.filters = ranked.filters
               WHERE ranked.recency > $1 AND (j.finished_at IS NOT NULL OR j.expires_at <= $2))",
            &[&i64::from(keep), &now],
        )
        .await?;
    tx.execute(
        "DELETE FROM project_filter_sets WHERE created_at < $1 AND NOT EXISTS (
           SELECT 1 FROM jobs WHERE jobs.project_id = project_filter_sets.project_id
                                AND jobs.filters = project_filter_sets.filters)",
        &[&before],
    )
    .await?;
    tx.commit().await?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}
