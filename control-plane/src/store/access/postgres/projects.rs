//! The PostgreSQL backend's projects, their grants and embed epochs, and the latest job
//! of a project query.

use tokio_postgres::Row;

use super::users::user_id_by_name;
use crate::store::access::Grant;
use crate::store::access::{FilterSet, ProjectRecord, ScheduleState};
use crate::store::postgres::PgStore;
use crate::store::{AccessRefusal, StoreError};

pub(super) const PROJECT_COLS: &str = "p.id, p.name, p.owner, u.name, p.queries, p.embed_epoch, p.created_at, \
     p.updated_at, p.embed_origins, p.schedule, p.next_run_at, p.schedule_done, p.tiles, p.parameters";

pub(super) fn project_from_row(r: &Row) -> ProjectRecord {
    ProjectRecord {
        id: r.get(0),
        name: r.get(1),
        owner_id: r.get(2),
        owner: r.get(3),
        queries_json: r.get(4),
        embed_epoch: r.get(5),
        created_at: r.get(6),
        updated_at: r.get(7),
        embed_origins: r.get(8),
        schedule: r.get::<_, Option<String>>(9).map(|json| ScheduleState {
            json,
            next_run_at: r.get(10),
            done: r.get(11),
        }),
        tiles_json: r.get(12),
        parameters_json: r.get(13),
    }
}

fn grant_of(s: &str) -> Result<Grant, StoreError> {
    Grant::parse(s)
        .ok_or_else(|| StoreError::Corrupt { table: "project_grants", reason: format!("unknown grant {s:?}") })
}

pub(super) async fn create_project(store: &PgStore, p: ProjectRecord) -> Result<(), StoreError> {
    let client = store.client().await?;
    client
        .execute(
            "INSERT INTO projects (id, name, owner, queries, embed_epoch, created_at, updated_at, embed_origins,
                   schedule, next_run_at, schedule_done, tiles, parameters)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                &p.id,
                &p.name,
                &p.owner_id,
                &p.queries_json,
                &p.embed_epoch,
                &p.created_at,
                &p.updated_at,
                &p.embed_origins,
                &p.schedule.as_ref().map(|s| s.json.clone()),
                &p.schedule.as_ref().and_then(|s| s.next_run_at),
                &p.schedule.as_ref().map_or(0, |s| s.done),
                &p.tiles_json,
                &p.parameters_json,
            ],
        )
        .await?;
    Ok(())
}

pub(super) async fn project(store: &PgStore, id: String) -> Result<Option<ProjectRecord>, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {PROJECT_COLS} FROM projects p JOIN users u ON u.id = p.owner WHERE p.id = $1"
        ))
        .await?;
    Ok(client.query_opt(&stmt, &[&id]).await?.as_ref().map(project_from_row))
}

pub(super) async fn projects_for(
    store: &PgStore,
    user_id: Option<String>,
) -> Result<Vec<(ProjectRecord, Option<Grant>)>, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {PROJECT_COLS}, g.access FROM projects p JOIN users u ON u.id = p.owner
                 LEFT JOIN project_grants g ON g.project_id = p.id AND g.user_id = $1
                 WHERE $1::TEXT IS NULL OR p.owner = $1 OR g.user_id IS NOT NULL
                 ORDER BY p.name COLLATE \"C\", p.id COLLATE \"C\""
        ))
        .await?;
    client
        .query(&stmt, &[&user_id])
        .await?
        .iter()
        .map(|r| {
            let g: Option<String> = r.get(14);
            Ok((project_from_row(r), g.as_deref().map(grant_of).transpose()?))
        })
        .collect()
}

pub(super) async fn project_grant(
    store: &PgStore,
    project_id: String,
    user_id: String,
) -> Result<Option<Grant>, StoreError> {
    let client = store.client().await?;
    let stmt =
        client.prepare_cached("SELECT access FROM project_grants WHERE project_id = $1 AND user_id = $2").await?;
    let g: Option<String> = client.query_opt(&stmt, &[&project_id, &user_id]).await?.map(|r| r.get(0));
    g.as_deref().map(grant_of).transpose()
}

pub(super) async fn project_grants(store: &PgStore, project_id: String) -> Result<Vec<(String, Grant)>, StoreError> {
    let client = store.client().await?;
    let rows = client
        .query(
            "SELECT u.name, g.access FROM project_grants g JOIN users u ON u.id = g.user_id
                 WHERE g.project_id = $1 ORDER BY u.name COLLATE \"C\"",
            &[&project_id],
        )
        .await?;
    rows.iter().map(|r| Ok((r.get(0), grant_of(&r.get::<_, String>(1))?))).collect()
}

pub(super) async fn update_project(
    store: &PgStore,
    id: String,
    name: String,
    queries_json: String,
    tiles_json: String,
    parameters_json: String,
    now: i64,
) -> Result<bool, StoreError> {
    let client = store.client().await?;
    Ok(client
        .execute(
            "UPDATE projects SET name = $2, queries = $3, tiles = $4, updated_at = $5, parameters = $6 WHERE id = $1",
            &[&id, &name, &queries_json, &tiles_json, &now, &parameters_json],
        )
        .await?
        == 1)
}

pub(super) async fn delete_project(store: &PgStore, id: String) -> Result<bool, StoreError> {
    let client = store.client().await?;
    Ok(client.execute("DELETE FROM projects WHERE id = $1", &[&id]).await? == 1)
}

pub(super) async fn set_project_grant(
    store: &PgStore,
    project_id: String,
    user: String,
    grant: Option<Grant>,
) -> Result<Result<(), AccessRefusal>, StoreError> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let Some(uid) = user_id_by_name(&tx, &user).await? else {
        return Ok(Err(AccessRefusal::NoUser { name: user }));
    };
    match grant {
        Some(g) => {
            tx.execute(
                "INSERT INTO project_grants (project_id, user_id, access) VALUES ($1, $2, $3)
                     ON CONFLICT (project_id, user_id) DO UPDATE SET access = excluded.access",
                &[&project_id, &uid, &g.as_str()],
            )
            .await?
        }
        None => {
            tx.execute("DELETE FROM project_grants WHERE project_id = $1 AND user_id = $2", &[&project_id, &uid])
                .await?
        }
    };
    tx.commit().await?;
    Ok(Ok(()))
}

pub(super) async fn bump_embed_epoch(store: &PgStore, project_id: String) -> Result<Option<i64>, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached("UPDATE projects SET embed_epoch = embed_epoch + 1 WHERE id = $1 RETURNING embed_epoch")
        .await?;
    Ok(client.query_opt(&stmt, &[&project_id]).await?.map(|r| r.get(0)))
}

pub(super) async fn latest_project_job(
    store: &PgStore,
    project_id: String,
    query_index: i64,
    customer: Option<String>,
    filters: Option<String>,
    succeeded_only: bool,
) -> Result<Option<String>, StoreError> {
    let client = store.client().await?;
    // `seq` (identity) stands for SQLite's rowid: insertion order breaks ties.
    let stmt = client
        .prepare_cached(
            "SELECT id FROM jobs
                 WHERE project_id = $1 AND query_index = $2 AND customer IS NOT DISTINCT FROM $3::TEXT
                   AND filters IS NOT DISTINCT FROM $5::TEXT AND (NOT $4 OR state = 'succeeded')
                 ORDER BY created_at DESC, seq DESC LIMIT 1",
        )
        .await?;
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&project_id, &query_index, &customer, &succeeded_only, &filters];
    Ok(client.query_opt(&stmt, &args).await?.map(|r| r.get(0)))
}

pub(super) async fn set_embed_origins(
    store: &PgStore,
    project_id: String,
    origins_json: String,
) -> Result<bool, StoreError> {
    let client = store.client().await?;
    let stmt = client.prepare_cached("UPDATE projects SET embed_origins = $2 WHERE id = $1").await?;
    Ok(client.execute(&stmt, &[&project_id, &origins_json]).await? == 1)
}

pub(super) async fn remember_filter_set(store: &PgStore, set: FilterSet) -> Result<(), StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO project_filter_sets (project_id, filters, filter_values, was_default, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (project_id, filters) DO UPDATE
               SET was_default = project_filter_sets.was_default OR excluded.was_default,
                   created_at = excluded.created_at",
        )
        .await?;
    client.execute(&stmt, &[&set.project_id, &set.filters, &set.values_json, &set.was_default, &set.at]).await?;
    Ok(())
}

pub(super) async fn filter_set_values(
    store: &PgStore,
    project_id: String,
    filters: String,
) -> Result<Option<String>, StoreError> {
    let client = store.client().await?;
    let stmt = client
        .prepare_cached("SELECT filter_values FROM project_filter_sets WHERE project_id = $1 AND filters = $2")
        .await?;
    Ok(client.query_opt(&stmt, &[&project_id, &filters]).await?.map(|r| r.get(0)))
}
