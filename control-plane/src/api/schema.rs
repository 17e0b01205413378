//! `GET /v1/agents/{agent}/connections/{connection}/schema`: the schema browser.
//!
//! The catalog (tables, columns, types, row estimates, masked columns marked) is the
//! agent's to give: this handler signs a `catalog` job for the connection, as any job
//! is signed, waits for its answer and keeps it per agent and connection for
//! `schema_cache_secs`, so that opening the query page again does not ask the agent
//! again; `?refresh=true` asks at once. Requests that miss the cache together make one
//! job: the first asks, the others wait for it and take its answer. Who may see a connection's catalog is who may
//! dispatch a job to it ([`crate::api::check_connection`]), checked before the cache is
//! read. The agent's answer is parsed as [`Catalog`] (unknown fields refused, names
//! bounded) before it is kept or shown. The cache lives in this replica's memory: a
//! replica that has none asks the agent itself.
//!
//! Answers: 200 with the catalog; 202 `agent_offline` (no job made: it would only queue)
//! or `catalog_pending` (with the job id) when the agent has not answered within
//! [`CATALOG_WAIT_SECS`]; 409 `catalog_failed` (the job's reason: the agent's policy
//! refused the `catalog` kind, the database failed...); 502 `catalog_invalid` when the
//! answer is not a catalog.

use std::sync::Arc;

use http::{Response, StatusCode};
use http_body_util::BodyExt as _;
use outpost_protocol::catalog::Catalog;
use outpost_protocol::CatalogSpec;

use crate::api::{check_connection, Ctx};
use crate::app::schema_cache::{Cached, Key};
use crate::app::{App, DispatchRequest};
use crate::http::{json, query_param, ApiError, Body};
use crate::store::{JobOrigin, Store};

/// Tables a catalog job asks for at most.
pub const CATALOG_MAX_TABLES: u32 = 2_000;
/// Columns (over all tables) a catalog job asks for at most; the agent's `max_points`
/// may lower it.
pub const CATALOG_MAX_COLUMNS: u32 = 50_000;
/// How long a request waits for the agent's answer, seconds.
pub const CATALOG_WAIT_SECS: u64 = 30;
/// Whether `?refresh=` asks for a new catalog.
fn refresh_param(query: Option<&str>) -> Result<bool, ApiError> {
    match query_param(query, "refresh") {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1" | "") => Ok(true),
        Some(_) => Err(ApiError::bad_field("refresh", "must be true or false")),
    }
}

/// The handler.
pub async fn schema(
    app: &App,
    ctx: &mut Ctx,
    agent: &str,
    connection: &str,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let caller = ctx.caller()?.clone();
    outpost_protocol::job::validate_audience(agent).map_err(|e| ApiError::bad_field("agent", e))?;
    outpost_protocol::job::validate_name(connection).map_err(|e| ApiError::bad_field("connection", e))?;
    ctx.target = Some(format!("{agent}/{connection}"));
    let refresh = refresh_param(query)?;
    check_connection(app, &caller, agent, connection).await?;
    let key = (agent.to_owned(), connection.to_owned());
    let asked = std::time::Instant::now();
    let now = app.clock.now();
    let max_age = app.cfg.schema_cache_secs;
    if !refresh {
        if let Some(hit) = app.schema_cache.get(&key, now, max_age) {
            ctx.detail = Some(serde_json::json!({ "cached": true, "job": hit.job_id }));
            return Ok(answer(agent, connection, &hit, true, max_age));
        }
    }
    // One request asks the agent; those arriving meanwhile take its answer.
    let gate = app.schema_cache.gate(&key);
    let held = gate.lock().await;
    let answered = match app.schema_cache.get_since(&key, asked) {
        Some(hit) => {
            ctx.detail = Some(serde_json::json!({ "cached": true, "job": hit.job_id }));
            Ok(answer(agent, connection, &hit, true, max_age))
        }
        None => ask(app, ctx, &caller, key.clone(), refresh).await,
    };
    drop(held);
    app.schema_cache.release(&key, gate);
    answered
}

/// Signs a catalog job for `key`, waits for the agent's answer and keeps it.
async fn ask(
    app: &App,
    ctx: &mut Ctx,
    caller: &crate::auth::access::Caller,
    key: Key,
    refresh: bool,
) -> Result<Response<Body>, ApiError> {
    let (agent, connection) = (key.0.as_str(), key.1.as_str());
    let max_age = app.cfg.schema_cache_secs;
    // An offline agent gets no job: it would only queue, one per request, until expiry.
    // The answer is 202, as a job's result is while its agent is away.
    if let Some(why) = offline(app, agent, app.clock.now()).await? {
        // Not an error of the request: ask again once the agent is back.
        return Ok(json(StatusCode::ACCEPTED, &serde_json::json!({ "code": "agent_offline", "message": why })));
    }
    let origin = JobOrigin { owner: Some(caller.user_id.clone()), ..JobOrigin::default() };
    let requester = caller.requester(&origin);
    let req = DispatchRequest {
        agent: agent.to_owned(),
        connection: connection.to_owned(),
        sql: String::new(),
        params: Vec::new(),
        render: serde_json::Value::Null,
        cache: outpost_protocol::CacheSpec::default(),
        timeout_secs: None,
    };
    let render = outpost_protocol::RenderSpec::Catalog(CatalogSpec {
        max_tables: CATALOG_MAX_TABLES,
        max_columns: CATALOG_MAX_COLUMNS,
    });
    let (job_id, _) = app.dispatch_spec(req, render, origin, requester, caller.is_admin()).await?;
    ctx.detail = Some(serde_json::json!({ "cached": false, "job": job_id, "refresh": refresh }));
    let res = crate::api::result(app, &job_id, CATALOG_WAIT_SECS, true).await?;
    let status = res.status();
    let body = stored_body(res.into_body()).await;
    match status {
        StatusCode::OK => {
            let catalog: Catalog = serde_json::from_slice(&body).map_err(|e| bad_answer(&job_id, &e.to_string()))?;
            catalog.check().map_err(|e| bad_answer(&job_id, &e.to_string()))?;
            let cached = Cached {
                fetched_at: app.clock.now(),
                arrived: std::time::Instant::now(),
                job_id,
                catalog: Arc::new(catalog),
            };
            app.schema_cache.put(key.clone(), cached.clone());
            Ok(answer(agent, connection, &cached, false, max_age))
        }
        // Not answered in time: the job keeps running; its result is the job's.
        StatusCode::ACCEPTED => Ok(json(
            StatusCode::ACCEPTED,
            &serde_json::json!({
                "code": "catalog_pending",
                "message": format!(
                    "the agent has not answered within {CATALOG_WAIT_SECS} s; ask again, or read \
                     GET /v1/jobs/{job_id}/result"
                ),
                "job_id": job_id,
            }),
        )),
        // The job failed, was refused by the agent's policy, or expired: as a job's result says.
        _ => {
            let v = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
            let reason = v["reason"].as_str().unwrap_or("failed");
            let message = v["message"].as_str().unwrap_or_default();
            Ok(json(
                StatusCode::CONFLICT,
                &serde_json::json!({
                    "code": "catalog_failed",
                    "message": format!("the agent did not give the catalog ({reason}): {message}"),
                    "reason": reason,
                    "job_id": job_id,
                }),
            ))
        }
    }
}

/// Why `agent` (or every member of its pool) cannot answer now, if so.
async fn offline(app: &App, agent: &str, now: i64) -> Result<Option<String>, ApiError> {
    let offline_after = i64::try_from(app.cfg.offline_after_secs).unwrap_or(90);
    let members = match outpost_protocol::job::pool_of(agent) {
        Some(p) => app.store.pool_members(p.to_owned()).await?,
        None => app.store.agent(agent.to_owned()).await?.into_iter().collect(),
    };
    // An unknown agent or empty pool is for dispatch to name (400).
    if members.is_empty() || members.iter().any(|a| a.revoked_at.is_none() && a.status(now, offline_after) == "online")
    {
        return Ok(None);
    }
    Ok(Some(format!("{agent} is offline; the schema browser asks it for the catalog once it is connected again")))
}

/// The bytes of an answer built in this process (a stored result, already bounded by
/// what the agent API accepts), capped again all the same.
#[allow(clippy::disallowed_methods)] // `collect` runs on a `Limited` body
async fn stored_body(body: Body) -> bytes::Bytes {
    let max = outpost_protocol::report::MAX_BODY_LEN + 64 * 1024;
    http_body_util::Limited::new(body, max).collect().await.map(|b| b.to_bytes()).unwrap_or_default()
}

fn bad_answer(job_id: &str, why: &str) -> ApiError {
    tracing::warn!(job_id, error = why, "An agent's catalog answer is not a catalog.");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "catalog_invalid",
        format!("the agent's catalog (job {job_id}) is invalid: {why}"),
    )
}

/// The answer: the catalog with where it came from and how old it is.
fn answer(agent: &str, connection: &str, c: &Cached, cached: bool, max_age: u64) -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::json!({
            "agent": agent,
            "connection": connection,
            "job_id": c.job_id,
            "fetched_at": c.fetched_at,
            "cached": cached,
            "max_age_secs": max_age,
            "truncated": c.catalog.truncated,
            "tables": c.catalog.tables,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_takes_true_or_false_only() {
        assert_eq!(refresh_param(None).ok(), Some(false));
        assert_eq!(refresh_param(Some("refresh=true")).ok(), Some(true));
        assert_eq!(refresh_param(Some("refresh=0")).ok(), Some(false));
        assert!(refresh_param(Some("refresh=yes")).is_err());
    }
}
