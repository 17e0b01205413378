//! The PostgreSQL backend's project schedules: setting one, the due projects, the claim
//! of a due slot (compare-and-set: one `UPDATE … WHERE next_run_at = $due`, so of several
//! replicas that read the same due slot exactly one moves it), and the refresh jobs
//! waiting at an agent.

use super::projects::{project_from_row, PROJECT_COLS};
use crate::store::access::{ProjectRecord, ScheduleClaim, ScheduleState};
use crate::store::postgres::PgStore;
use crate::store::StoreError;

pub(super) async fn set_project_schedule(
    store: &PgStore,
    project_id: String,
    schedule: Option<ScheduleState>,
) -> Result<bool, StoreError> {
    let client = store.client().await?;
    let (json, next, done) = match schedule {
        Some(s) => (Some(s.json), s.next_run_at, s.done),
        None => (None, None, 0),
    };
    let stmt = client
        .prepare_cached("UPDATE projects SET schedule = $2, next_run_at = $3, schedule_done = $4 WHERE id = $1")
        .await?;
    Ok(client.execute(&stmt, &[&project_id, &json, &next, &done]).await? == 1)
}

pub(super) async fn due_projects(store: &PgStore, now: i64, limit: u32) -> Result<Vec<ProjectRecord>, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {PROJECT_COLS} FROM projects p JOIN users u ON u.id = p.owner
                 WHERE p.next_run_at <= $1 AND p.schedule IS NOT NULL
                 ORDER BY p.next_run_at, p.id COLLATE \"C\" LIMIT $2"
        ))
        .await?;
    Ok(client.query(&stmt, &[&now, &i64::from(limit)]).await?.iter().map(project_from_row).collect())
}

pub(super) async fn next_schedule_at(store: &PgStore) -> Result<Option<i64>, StoreError> {
    let client = store.client().await?;
    let stmt = client.prepare_cached("SELECT MIN(next_run_at) FROM projects WHERE schedule IS NOT NULL").await?;
    Ok(client.query_one(&stmt, &[]).await?.get(0))
}

pub(super) async fn claim_schedule(store: &PgStore, claim: ScheduleClaim) -> Result<bool, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(
            "UPDATE projects SET next_run_at = $4, schedule_done = $5
                 WHERE id = $1 AND next_run_at = $2 AND schedule_done = $3 AND schedule IS NOT NULL",
        )
        .await?;
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&claim.project_id, &claim.due, &claim.done, &claim.next_run_at, &claim.new_done];
    Ok(client.execute(&stmt, &args).await? == 1)
}

pub(super) async fn queued_refresh_jobs(
    store: &PgStore,
    agent: String,
    pool: Option<String>,
) -> Result<i64, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(
            "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND project_id IS NOT NULL
                   AND CASE WHEN $2::TEXT IS NULL THEN agent = $1 AND pool IS NULL ELSE pool = $2 END",
        )
        .await?;
    Ok(client.query_one(&stmt, &[&agent, &pool]).await?.get(0))
}
