//! The SQLite backend's project schedules: setting one, the due projects, the claim of a
//! due slot (compare-and-set), and the refresh jobs waiting at an agent.

use rusqlite::{params, OptionalExtension};

use super::projects::{project_from_row, PROJECT_COLS};
use crate::store::access::{ProjectRecord, ScheduleClaim, ScheduleState};
use crate::store::{SqliteStore, StoreError};

pub(super) async fn set_project_schedule(
    store: &SqliteStore,
    project_id: String,
    schedule: Option<ScheduleState>,
) -> Result<bool, StoreError> {
    store
        .with_conn(move |c| {
            let (json, next, done) = match schedule {
                Some(s) => (Some(s.json), s.next_run_at, s.done),
                None => (None, None, 0),
            };
            Ok(c.execute(
                "UPDATE projects SET schedule = ?2, next_run_at = ?3, schedule_done = ?4 WHERE id = ?1",
                params![project_id, json, next, done],
            )? == 1)
        })
        .await
}

pub(super) async fn due_projects(store: &SqliteStore, now: i64, limit: u32) -> Result<Vec<ProjectRecord>, StoreError> {
    store
        .with_conn(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {PROJECT_COLS} FROM projects p JOIN users u ON u.id = p.owner
                 WHERE p.next_run_at <= ?1 AND p.schedule IS NOT NULL ORDER BY p.next_run_at, p.id LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now, limit], project_from_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}

pub(super) async fn next_schedule_at(store: &SqliteStore) -> Result<Option<i64>, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached("SELECT MIN(next_run_at) FROM projects WHERE schedule IS NOT NULL")?
                .query_row([], |r| r.get(0))
                .optional()?
                .flatten())
        })
        .await
}

pub(super) async fn claim_schedule(store: &SqliteStore, claim: ScheduleClaim) -> Result<bool, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.execute(
                "UPDATE projects SET next_run_at = ?4, schedule_done = ?5
                 WHERE id = ?1 AND next_run_at = ?2 AND schedule_done = ?3 AND schedule IS NOT NULL",
                params![claim.project_id, claim.due, claim.done, claim.next_run_at, claim.new_done],
            )? == 1)
        })
        .await
}

pub(super) async fn queued_refresh_jobs(
    store: &SqliteStore,
    agent: String,
    pool: Option<String>,
) -> Result<i64, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached(
                "SELECT COUNT(*) FROM jobs WHERE state = 'queued' AND project_id IS NOT NULL
                   AND CASE WHEN ?2 IS NULL THEN agent = ?1 AND pool IS NULL ELSE pool = ?2 END",
            )?
            .query_row(params![agent, pool], |r| r.get(0))?)
        })
        .await
}
