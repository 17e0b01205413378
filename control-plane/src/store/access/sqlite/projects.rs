//! The SQLite backend's projects, their grants and embed epochs, and the latest job of a
//! project query.

use rusqlite::{params, OptionalExtension};

use super::users::user_id_by_name;
use crate::store::access::Grant;
use crate::store::access::{FilterSet, ProjectRecord, ScheduleState};
use crate::store::{AccessRefusal, SqliteStore, StoreError};

pub(super) const PROJECT_COLS: &str = "p.id, p.name, p.owner, u.name, p.queries, p.embed_epoch, p.created_at, \
     p.updated_at, p.embed_origins, p.schedule, p.next_run_at, p.schedule_done, p.tiles, p.parameters";

pub(super) fn project_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRecord> {
    Ok(ProjectRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        owner_id: r.get(2)?,
        owner: r.get(3)?,
        queries_json: r.get(4)?,
        embed_epoch: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        embed_origins: r.get(8)?,
        schedule: r
            .get::<_, Option<String>>(9)?
            .map(|json| Ok::<_, rusqlite::Error>(ScheduleState { json, next_run_at: r.get(10)?, done: r.get(11)? }))
            .transpose()?,
        tiles_json: r.get(12)?,
        parameters_json: r.get(13)?,
    })
}

fn grant_of(s: &str) -> rusqlite::Result<Grant> {
    Grant::parse(s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, "unknown grant".into())
    })
}

pub(super) async fn create_project(store: &SqliteStore, p: ProjectRecord) -> Result<(), StoreError> {
    store
        .with_conn(move |c| {
            c.execute(
                "INSERT INTO projects (id, name, owner, queries, embed_epoch, created_at, updated_at, embed_origins,
                   schedule, next_run_at, schedule_done, tiles, parameters)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    p.id,
                    p.name,
                    p.owner_id,
                    p.queries_json,
                    p.embed_epoch,
                    p.created_at,
                    p.updated_at,
                    p.embed_origins,
                    p.schedule.as_ref().map(|s| &s.json),
                    p.schedule.as_ref().and_then(|s| s.next_run_at),
                    p.schedule.as_ref().map_or(0, |s| s.done),
                    p.tiles_json,
                    p.parameters_json
                ],
            )?;
            Ok(())
        })
        .await
}

pub(super) async fn project(store: &SqliteStore, id: String) -> Result<Option<ProjectRecord>, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {PROJECT_COLS} FROM projects p JOIN users u ON u.id = p.owner WHERE p.id = ?1"
            ))?
            .query_row(params![id], project_from_row)
            .optional()?)
        })
        .await
}

pub(super) async fn projects_for(
    store: &SqliteStore,
    user_id: Option<String>,
) -> Result<Vec<(ProjectRecord, Option<Grant>)>, StoreError> {
    store
        .with_conn(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {PROJECT_COLS}, g.access FROM projects p JOIN users u ON u.id = p.owner
                 LEFT JOIN project_grants g ON g.project_id = p.id AND g.user_id = ?1
                 WHERE ?1 IS NULL OR p.owner = ?1 OR g.user_id IS NOT NULL ORDER BY p.name, p.id"
            ))?;
            let rows = stmt
                .query_map(params![user_id], |r| {
                    let g: Option<String> = r.get(14)?;
                    Ok((project_from_row(r)?, g.as_deref().map(grant_of).transpose()?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}

pub(super) async fn project_grant(
    store: &SqliteStore,
    project_id: String,
    user_id: String,
) -> Result<Option<Grant>, StoreError> {
    store
        .with_conn(move |c| {
            let g: Option<String> = c
                .prepare_cached("SELECT access FROM project_grants WHERE project_id = ?1 AND user_id = ?2")?
                .query_row(params![project_id, user_id], |r| r.get(0))
                .optional()?;
            Ok(g.as_deref().map(grant_of).transpose()?)
        })
        .await
}

pub(super) async fn project_grants(
    store: &SqliteStore,
    project_id: String,
) -> Result<Vec<(String, Grant)>, StoreError> {
    store
        .with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT u.name, g.access FROM project_grants g JOIN users u ON u.id = g.user_id
                 WHERE g.project_id = ?1 ORDER BY u.name",
            )?;
            let rows = stmt
                .query_map(params![project_id], |r| Ok((r.get(0)?, grant_of(&r.get::<_, String>(1)?)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
}

pub(super) async fn update_project(
    store: &SqliteStore,
    id: String,
    name: String,
    queries_json: String,
    tiles_json: String,
    parameters_json: String,
    now: i64,
) -> Result<bool, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.execute(
                "UPDATE projects SET name = ?2, queries = ?3, tiles = ?4, updated_at = ?5, parameters = ?6 WHERE id = ?1",
                params![id, name, queries_json, tiles_json, now, parameters_json],
            )? == 1)
        })
        .await
}

pub(super) async fn delete_project(store: &SqliteStore, id: String) -> Result<bool, StoreError> {
    store.with_conn(move |c| Ok(c.execute("DELETE FROM projects WHERE id = ?1", params![id])? == 1)).await
}

pub(super) async fn set_project_grant(
    store: &SqliteStore,
    project_id: String,
    user: String,
    grant: Option<Grant>,
) -> Result<Result<(), AccessRefusal>, StoreError> {
    store
        .with_conn(move |c| {
            let tx = c.savepoint()?;
            let Some(uid) = user_id_by_name(&tx, &user)? else {
                return Ok(Err(AccessRefusal::NoUser { name: user }));
            };
            match grant {
                Some(g) => tx.execute(
                    "INSERT INTO project_grants (project_id, user_id, access) VALUES (?1, ?2, ?3)
                     ON CONFLICT(project_id, user_id) DO UPDATE SET access = excluded.access",
                    params![project_id, uid, g.as_str()],
                )?,
                None => tx.execute(
                    "DELETE FROM project_grants WHERE project_id = ?1 AND user_id = ?2",
                    params![project_id, uid],
                )?,
            };
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
}

pub(super) async fn bump_embed_epoch(store: &SqliteStore, project_id: String) -> Result<Option<i64>, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached(
                "UPDATE projects SET embed_epoch = embed_epoch + 1 WHERE id = ?1 RETURNING embed_epoch",
            )?
            .query_row(params![project_id], |r| r.get(0))
            .optional()?)
        })
        .await
}

pub(super) async fn latest_project_job(
    store: &SqliteStore,
    project_id: String,
    query_index: i64,
    customer: Option<String>,
    filters: Option<String>,
    succeeded_only: bool,
) -> Result<Option<String>, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached(
                "SELECT id FROM jobs WHERE project_id = ?1 AND query_index = ?2 AND customer IS ?3
                   AND filters IS ?5 AND (NOT ?4 OR state = 'succeeded')
                 ORDER BY created_at DESC, rowid DESC LIMIT 1",
            )?
            .query_row(params![project_id, query_index, customer, succeeded_only, filters], |r| r.get(0))
            .optional()?)
        })
        .await
}

pub(super) async fn set_embed_origins(
    store: &SqliteStore,
    project_id: String,
    origins_json: String,
) -> Result<bool, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.execute("UPDATE projects SET embed_origins = ?2 WHERE id = ?1", params![project_id, origins_json])?
                == 1)
        })
        .await
}

pub(super) async fn remember_filter_set(store: &SqliteStore, set: FilterSet) -> Result<(), StoreError> {
    store
        .with_conn(move |c| {
            c.prepare_cached(
                "INSERT INTO project_filter_sets (project_id, filters, filter_values, was_default, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (project_id, filters) DO UPDATE
                   SET was_default = max(was_default, excluded.was_default), created_at = excluded.created_at",
            )?
            .execute(params![set.project_id, set.filters, set.values_json, set.was_default, set.at])?;
            Ok(())
        })
        .await
}

pub(super) async fn filter_set_values(
    store: &SqliteStore,
    project_id: String,
    filters: String,
) -> Result<Option<String>, StoreError> {
    store
        .with_conn(move |c| {
            Ok(c.prepare_cached(
                "SELECT filter_values FROM project_filter_sets WHERE project_id = ?1 AND filters = ?2",
            )?
            .query_row(params![project_id, filters], |r| r.get(0))
            .optional()?)
        })
        .await
}
