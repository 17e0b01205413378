//! Calls the handler of a matched route; the job and agent handlers live here, access
//! control in [`crate::api::access`], projects and embedding in [`crate::api::projects`],
//! enrolment tokens in [`crate::api::enrolment`].

use http::{Request, Response, StatusCode};

use crate::api::access as acc;
use crate::api::projects as prj;
use crate::api::{self, forbidden, visible_job, wait_param, Ctx, JobView, RouteId};
use crate::app::App;
use crate::http::{json, query_param, ApiError, Body};
use crate::store::access::AccessStore;
use crate::store::{JobFilter, JobState, Store};

/// Runs the handler of `route` with the path's values `p`.
pub async fn dispatch(
    app: &App,
    route: RouteId,
    p: Vec<String>,
    req: Request<bytes::Bytes>,
    ctx: &mut Ctx,
) -> Result<Response<Body>, ApiError> {
    let query = req.uri().query().map(str::to_owned);
    let q = query.as_deref();
    let arg = |i: usize| p.get(i).cloned().unwrap_or_default();
    use RouteId::*;
    match route {
        SessionCreate => {
            // Only a script of our own origin can send JSON here: a form on another site
            // cannot sign a browser in to someone else's account.
            let json_body =
                req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                    v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
                });
            if !json_body {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "sign-in takes Content-Type: application/json",
                ));
            }
            acc::sign_in(app, ctx, req.body()).await
        }
        SessionDelete => acc::sign_out(app, ctx).await,
        Me => acc::me(ctx),
        UsersList => acc::users_list(app).await,
        UsersCreate => acc::users_create(app, ctx, req.body()).await,
        UsersUpdate => acc::users_update(app, ctx, &arg(0), req.body()).await,
        GroupsList => acc::groups_list(app).await,
        GroupsCreate => acc::groups_create(app, ctx, req.body()).await,
        GroupsDelete => acc::groups_delete(app, ctx, &arg(0)).await,
        GroupMemberAdd => acc::group_member(app, ctx, &arg(0), &arg(1), true).await,
        GroupMemberRemove => acc::group_member(app, ctx, &arg(0), &arg(1), false).await,
        SharesList => acc::shares_list(app).await,
        SharesCreate => acc::shares_create(app, ctx, req.body()).await,
        SharesDelete => acc::shares_delete(app, ctx, &arg(0)).await,
        AgentsList => agents_list(app, ctx).await,
        AgentsRevoke => agents_revoke(app, ctx, &arg(0)).await,
        AgentsAuditHead => agents_audit_head(app, ctx, &arg(0)).await,
        AgentsConnectionSchema => crate::api::schema::schema(app, ctx, &arg(0), &arg(1), q).await,
        EnrolmentTokensCreate => crate::api::enrolment::create(app, ctx, req.body()).await,
        EnrolmentTokensList => crate::api::enrolment::list(app).await,
        EnrolmentTokensRevoke => crate::api::enrolment::revoke(app, ctx, &arg(0)).await,
        JobsList => jobs_list(app, ctx, q).await,
        JobsDispatch => api::dispatch_job(app, ctx, req.body()).await,
        JobsRead => {
            ctx.target = Some(arg(0));
            let caller = ctx.caller()?;
            let rec = api::job_change(app, caller, &arg(0), wait_param(q)?, query_param(q, "state")).await?;
            let mut view = JobView::for_caller(app, caller, &rec).await?;
            view.add_filters(app, &rec).await?;
            Ok(json(StatusCode::OK, &view))
        }
        JobsResult => {
            ctx.target = Some(arg(0));
            let wait = wait_param(q)?;
            let caller = ctx.caller()?;
            api::result_for(app, caller, &arg(0), wait).await
        }
        JobsSpec => jobs_spec(app, ctx, &arg(0)).await,
        JobsCancel => jobs_cancel(app, ctx, &arg(0)).await,
        ProjectsList => prj::list(app, ctx).await,
        ProjectsCreate => prj::create(app, ctx, req.body()).await,
        ProjectsRead => prj::read(app, ctx, &arg(0)).await,
        ProjectsUpdate => prj::update(app, ctx, &arg(0), req.body()).await,
        ProjectsDelete => prj::delete(app, ctx, &arg(0)).await,
        ProjectGrantSet => prj::grant(app, ctx, &arg(0), &arg(1), Some(req.body())).await,
        ProjectGrantRemove => prj::grant(app, ctx, &arg(0), &arg(1), None).await,
        ProjectsRun => prj::run(app, ctx, &arg(0), req.body()).await,
        ProjectsResults => prj::results(app, ctx, &arg(0), q).await,
        EmbedTokensCreate => prj::embed_token(app, ctx, &arg(0), req.body()).await,
        EmbedTokensRevoke => prj::embed_revoke(app, ctx, &arg(0)).await,
        EmbedProject => prj::embed_project(app, ctx, &req).await,
        EmbedResult => {
            let claims = prj::embed_claims(app, ctx, &req).await?;
            prj::embed_result(app, ctx, &claims, &arg(0), q).await
        }
        EmbedRun => {
            let claims = prj::embed_claims(app, ctx, &req).await?;
            prj::embed_run(app, ctx, &claims, req.body()).await
        }
        TokensList => acc::tokens_list(app, ctx, q).await,
        TokensCreate => acc::tokens_create(app, ctx, req.body()).await,
        TokensRevoke => acc::tokens_revoke(app, ctx, &arg(0)).await,
        AuditRead => acc::audit_read(app, q).await,
        ResultsPurge => acc::purge(app, ctx, req.body()).await,
        OpenApi => Ok(crate::http::bytes_response(StatusCode::OK, "application/json", {
            // Built once per process: the document depends only on the binary.
            static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            DOC.get_or_init(crate::api::openapi::document_json).clone().into_bytes()
        })),
    }
}

/// An agent as the API and `agent list --json` show it, with the connections the
/// reader may see.
pub fn agent_view(
    a: &crate::store::AgentRecord,
    connections: Vec<String>,
    now: i64,
    offline_after: i64,
) -> serde_json::Value {
    let status = a.status(now, offline_after);
    serde_json::json!({
        "name": a.name,
        "status": status,
        "revoked_at": a.revoked_at,
        "offline_since": if status == "offline" { a.last_seen } else { None },
        "enrolled_at": a.enrolled_at,
        "last_seen": a.last_seen,
        "seconds_since_seen": a.last_seen.map(|t| now - t),
        "version": a.version,
        "connections": connections,
        "cert_not_after": a.cert_not_after,
        "pool": a.pool,
    })
}

pub(crate) async fn agents_list(app: &App, ctx: &mut Ctx) -> Result<Response<Body>, ApiError> {
    let caller = ctx.caller()?;
    let shared =
        if caller.is_admin() { None } else { Some(app.store.shared_connections(caller.user_id.clone()).await?) };
    let agents = app.store.agents().await?;
    let now = app.clock.now();
    let offline_after = i64::try_from(app.cfg.offline_after_secs).unwrap_or(90);
    let view: Vec<_> = agents
        .into_iter()
        .filter_map(|a| {
            // Editors see only agents with a connection shared with them, and only those
            // connections.
            // A connection shared on the agent's pool (`pool:NAME`) is shared on each member.
            let pool_target = a.pool.as_ref().map(|p| format!("{}{p}", outpost_protocol::job::POOL_PREFIX));
            let connections: Vec<String> = match &shared {
                None => a.connections.clone(),
                Some(s) => {
                    let mut mine: Vec<String> = s
                        .iter()
                        .filter(|(ag, _)| *ag == a.name || Some(ag) == pool_target.as_ref())
                        .map(|(_, c)| c.clone())
                        .collect();
                    mine.sort();
                    mine.dedup();
                    if mine.is_empty() {
                        return None;
                    }
                    mine
                }
            };
            Some(agent_view(&a, connections, now, offline_after))
        })
        .collect();
    // Pools of the agents shown, with their members and how many are online now.
    let mut pools: std::collections::BTreeMap<String, (Vec<String>, i64)> = Default::default();
    for a in &view {
        if let Some(p) = a["pool"].as_str() {
            let entry = pools.entry(p.to_owned()).or_default();
            entry.0.push(a["name"].as_str().unwrap_or_default().to_owned());
            entry.1 += i64::from(a["status"] == "online");
        }
    }
    let pools: Vec<_> = pools
        .into_iter()
        .map(|(name, (members, online))| {
            serde_json::json!({
                "name": name, "target": format!("{}{name}", outpost_protocol::job::POOL_PREFIX),
                "members": members, "online": online,
            })
        })
        .collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "agents": view, "pools": pools })))
}

async fn agents_revoke(app: &App, ctx: &mut Ctx, name: &str) -> Result<Response<Body>, ApiError> {
    ctx.target = Some(name.to_owned());
    match app.revoke_agent(name).await? {
        Some(failed) => {
            Ok(json(StatusCode::OK, &serde_json::json!({ "agent": name, "status": "revoked", "failed_jobs": failed })))
        }
        None => Err(ApiError::not_found(format!("no agent {name:?}"))),
    }
}

/// What a job asked for, as signed: its SQL, parameters, render spec and requester. Only
/// for callers who may read the job's SQL (admins, the job's owner, a project's
/// `view-logic` and `edit` grants); a `view-app` viewer gets 403.
async fn jobs_spec(app: &App, ctx: &mut Ctx, id: &str) -> Result<Response<Body>, ApiError> {
    ctx.target = Some(id.to_owned());
    let caller = ctx.caller()?;
    let rec = visible_job(app, caller, id, false).await?;
    if !crate::redact::may_read_sql(app, caller, &rec).await? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("job {id} belongs to a project you may see only as an app: its SQL is not shown"),
        ));
    }
    let stored =
        app.store.job_envelope(id.to_owned()).await?.ok_or_else(|| ApiError::not_found(format!("no job {id:?}")))?;
    let spec = crate::store::queue::open_spec(&app.results, id, &stored).map_err(|problem| {
        tracing::error!(job_id = %id, problem, "A job's stored envelope cannot be read.");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt_job",
            format!("job {id}'s stored record cannot be read"),
        )
    })?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "id": id, "agent": Some(&rec.agent).filter(|a| !a.is_empty()), "pool": rec.pool,
            "connection": spec.connection, "sql": spec.sql, "params": spec.params, "render": spec.render,
            "cache": spec.cache, "timeout_secs": spec.timeout_secs, "requester": spec.requester,
            "issued_at": spec.issued_at, "expires_at": spec.expires_at,
        }),
    ))
}

/// The head as the agent signed it, so that `outpost-agent audit verify --head` can check
/// the signature itself and need not trust the control plane's word.
async fn agents_audit_head(app: &App, ctx: &mut Ctx, name: &str) -> Result<Response<Body>, ApiError> {
    ctx.target = Some(name.to_owned());
    if app.store.agent(name.to_owned()).await?.is_none() {
        return Err(ApiError::not_found(format!("no agent {name:?}")));
    }
    // `head` is null until the agent reports one after it enrolled.
    let (head, received_at) = match app.store.audit_head(name.to_owned()).await? {
        Some(stored) => {
            let head: serde_json::Value = serde_json::from_str(&stored.head_json).map_err(ApiError::internal)?;
            (head, Some(stored.received_at))
        }
        None => (serde_json::Value::Null, None),
    };
    Ok(json(StatusCode::OK, &serde_json::json!({ "agent": name, "head": head, "received_at": received_at })))
}

/// The states `GET /v1/jobs?state=` accepts, as the store keeps them.
pub const JOB_STATES: [JobState; 7] = [
    JobState::Queued,
    JobState::Leased,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Rejected,
    JobState::Expired,
    JobState::Cancelled,
];

/// Longest agent, connection or owner name a filter takes.
const MAX_FILTER_LEN: usize = 200;

/// The value of filter `key` in `q`, percent-decoded (`+` is a space); `None` when absent
/// or empty (a form's "any").
pub fn filter_param(q: Option<&str>, key: &str) -> Result<Option<String>, ApiError> {
    let Some(raw) = query_param(q, key) else { return Ok(None) };
    let v = crate::http::percent_decode(&raw.replace('+', " "))
        .ok_or_else(|| ApiError::bad_field(key, "bad percent-encoding"))?;
    let v = v.trim();
    if v.chars().count() > MAX_FILTER_LEN {
        return Err(ApiError::bad_field(key, format!("longer than {MAX_FILTER_LEN} characters")));
    }
    Ok(Some(v.to_owned()).filter(|v| !v.is_empty()))
}

/// `?state=` as a job state; an unknown one is refused naming the accepted values.
pub fn state_param(q: Option<&str>) -> Result<Option<JobState>, ApiError> {
    let Some(v) = filter_param(q, "state")? else { return Ok(None) };
    JOB_STATES.into_iter().find(|s| s.as_str() == v).map(Some).ok_or_else(|| {
        let names: Vec<&str> = JOB_STATES.iter().map(|s| s.as_str()).collect();
        ApiError::bad_field("state", format!("{v:?} is not a job state; use one of {}", names.join(", ")))
    })
}

/// `GET /v1/jobs`: the caller's jobs (an admin's: anyone's with `?all=true` or
/// `?owner=NAME`), filtered by `state`, `agent` (or `pool:NAME`) and `connection` in the
/// store. A non-admin naming another owner gets no jobs: never someone else's.
async fn jobs_list(app: &App, ctx: &mut Ctx, q: Option<&str>) -> Result<Response<Body>, ApiError> {
    let caller = ctx.caller()?;
    let all = crate::http::bool_param(q, "all")?;
    if all && !caller.is_admin() {
        return Err(forbidden("only admins may list every job"));
    }
    let limit = match query_param(q, "limit") {
        None => 100,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::bad_field("limit", "must be a whole number from 1 to 1000"))?,
    };
    let mut filter = JobFilter {
        owner: (!all).then(|| caller.user_id.clone()),
        state: state_param(q)?,
        agent: filter_param(q, "agent")?,
        connection: filter_param(q, "connection")?,
    };
    if let Some(name) = filter_param(q, "owner")? {
        if caller.is_admin() {
            let user = app.store.user_by_name(name.clone()).await?;
            filter.owner =
                Some(user.ok_or_else(|| ApiError::bad_field("owner", format!("no user named {name:?}")))?.id);
        } else if name != caller.user {
            return Ok(json(StatusCode::OK, &serde_json::json!({ "jobs": [] })));
        }
    }
    let with_sql = crate::http::bool_param(q, "sql")?;
    let jobs = app.store.jobs(filter, limit, app.clock.now()).await?;
    let mut view: Vec<JobView> = Vec::with_capacity(jobs.len());
    let mut seen = crate::api::job_name::ProjectCache::new();
    for j in &jobs {
        view.push(JobView::for_caller_cached(app, caller, j, &mut seen, with_sql).await?);
    }
    Ok(json(StatusCode::OK, &serde_json::json!({ "jobs": view })))
}

async fn jobs_cancel(app: &App, ctx: &mut Ctx, id: &str) -> Result<Response<Body>, ApiError> {
    use crate::store::CancelOutcome;
    ctx.target = Some(id.to_owned());
    let rec = visible_job(app, ctx.caller()?, id, false).await?;
    let caller = ctx.caller()?;
    if !caller.is_admin() && rec.origin.owner.as_deref() != Some(caller.user_id.as_str()) {
        return Err(forbidden(format!("job {id} is not yours to cancel")));
    }
    match app.cancel_job(id).await? {
        CancelOutcome::Cancelled => Ok(json(StatusCode::OK, &serde_json::json!({ "id": id, "state": "cancelled" }))),
        CancelOutcome::Requested { agent } => Ok(json(
            StatusCode::ACCEPTED,
            &serde_json::json!({
                "id": id,
                "state": "cancelling",
                "message": format!("agent {agent} is told to stop the query; the job ends cancelled when it reports"),
            }),
        )),
        CancelOutcome::AlreadyFinal(state) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_final",
            format!("job {id} already ended as {}", state.as_str()),
        )),
        CancelOutcome::NotFound => Err(ApiError::not_found(format!("no job {id}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_filters_are_decoded_and_an_unknown_state_is_named_with_the_states() {
        assert_eq!(state_param(Some("state=failed&agent=x")).ok().flatten(), Some(JobState::Failed));
        assert_eq!(state_param(Some("state=")).ok().flatten(), None, "an empty filter is \"any\"");
        let err = state_param(Some("state=done")).err().map(|e| (e.status, e.message));
        assert_eq!(
            err,
            Some((
                StatusCode::BAD_REQUEST,
                "state: \"done\" is not a job state; use one of queued, leased, succeeded, failed, rejected, expired, \
                 cancelled"
                    .to_owned()
            ))
        );
        assert_eq!(filter_param(Some("agent=pool%3Aeu+west"), "agent").ok().flatten().as_deref(), Some("pool:eu west"));
        assert_eq!(filter_param(Some("connection=%20"), "connection").ok().flatten(), None);
        assert!(filter_param(Some("owner=%ZZ"), "owner").is_err());
        assert!(filter_param(Some(&format!("agent={}", "a".repeat(201))), "agent").is_err());
    }
}
