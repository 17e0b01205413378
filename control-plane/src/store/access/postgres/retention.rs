//! The PostgreSQL backend's retention: ended jobs and expired sessions deleted.

use crate::store::postgres::PgStore;
use crate::store::StoreError;

pub(super) async fn purge(
    store: &PgStore,
    before: i64,
    keep_results_after: i64,
    now: i64,
) -> Result<usize, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            "DELETE FROM jobs
                 WHERE ((finished_at IS NOT NULL AND finished_at <= $1) OR (finished_at IS NULL AND expires_at <= $1))
                   AND NOT (project_id IS NOT NULL AND state = 'succeeded' AND finished_at > $2
                            AND NOT EXISTS (
                                SELECT 1 FROM jobs AS newer
                                WHERE newer.project_id = jobs.project_id
                                  AND newer.query_index IS NOT DISTINCT FROM jobs.query_index
                                  AND newer.customer IS NOT DISTINCT FROM jobs.customer
                                  AND newer.filters IS NOT DISTINCT FROM jobs.filters AND newer.state = 'succeeded'
                                  AND (newer.created_at > jobs.created_at
                                       OR (newer.created_at = jobs.created_at AND newer.seq > jobs.seq))))",
            &[&before, &keep_results_after],
        )
        .await?;
    tx.execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now]).await?;
    tx.commit().await?;
    // Unlike SQLite's secure_delete, PostgreSQL cannot zero the freed space on demand:
    // the dead rows stay in their pages until (auto)vacuum frees them and new rows
    // overwrite them. Result bodies are sealed, so what lingers is ciphertext.
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}
