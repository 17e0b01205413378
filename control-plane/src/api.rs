//! The API listener: what the cloud UI and API clients call, with a bearer token.
//!
//! ```text
//! POST /v1/jobs                      dispatch (sign + queue)        -> 202 {id}
//! GET  /v1/jobs/{id}                 status                         -> 200 {...}
//! GET  /v1/jobs/{id}/result?wait=N   rendered bytes, waiting for them up to N s
//! POST /v1/jobs/{id}/cancel          stop it: queued -> cancelled, running -> cancelling
//! GET  /v1/agents                    agents: status (online, offline, revoked), last seen
//! POST /v1/agents/{name}/revoke       refuse the agent's certificate from now on
//! POST /v1/enrollment-tokens         {agent, ttl_secs} -> {token, expires_at}
//! ```
//! Every answer that is not a rendered result is JSON; errors are `{code, message}`.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use outpost_protocol::encoding::sha256_hex;
use serde::{Deserialize, Serialize};

use crate::app::{App, DispatchRequest};
use crate::http::{bytes_response, json, parse_json, query_param, read_body, ApiError, Body};
use crate::store::{JobRecord, JobState, Store};

/// Largest API request body.
const MAX_API_BODY: usize = 256 * 1024;
/// Longest `?wait=` honoured, seconds.
pub const MAX_RESULT_WAIT_SECS: u64 = 60;

/// Handles one API request.
pub async fn handle<S: Store>(app: Arc<App<S>>, req: Request<Incoming>) -> Response<Body> {
    match route(&app, req).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

async fn route<S: Store>(app: &App<S>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    authenticate(app, &req).await?;
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method().clone(), segments.as_slice()) {
        (Method::POST, ["v1", "jobs"]) => {
            let body = read_body(req.into_body(), MAX_API_BODY).await?;
            let dispatch: DispatchRequest = parse_json(&body)?;
            let (id, expires_at) = app.dispatch(dispatch).await?;
            Ok(json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "id": id, "state": "queued", "expires_at": expires_at }),
            ))
        }
        (Method::GET, ["v1", "jobs", id]) => {
            let rec = find_job(app, id, false).await?;
            Ok(json(StatusCode::OK, &JobView::from(&rec)))
        }
        (Method::POST, ["v1", "jobs", id, "cancel"]) => {
            use crate::store::CancelOutcome;
            if !outpost_protocol::ids::is_job_id(id) {
                return Err(ApiError::not_found(format!("no job {id:?}")));
            }
            match app.cancel_job(id).await? {
                CancelOutcome::Cancelled => {
                    Ok(json(StatusCode::OK, &serde_json::json!({ "id": id, "state": "cancelled" })))
                }
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
        (Method::GET, ["v1", "jobs", id, "result"]) => {
            let wait = match query_param(query.as_deref(), "wait") {
                None => 0,
                Some(v) => {
                    v.parse::<u64>().map_err(|_| ApiError::bad_field("wait", "must be a whole number of seconds"))?
                }
            };
            result(app, id, wait.min(MAX_RESULT_WAIT_SECS)).await
        }
        (Method::GET, ["v1", "agents"]) => {
            let agents = app.store.agents().await?;
            let now = outpost_protocol::unix_now();
            let offline_after = i64::try_from(app.cfg.offline_after_secs).unwrap_or(90);
            let view: Vec<_> = agents
                .into_iter()
                .map(|a| {
                    let status = match (a.revoked_at, a.last_seen) {
                        (Some(_), _) => "revoked",
                        (None, Some(t)) if now - t <= offline_after => "online",
                        (None, _) => "offline",
                    };
                    serde_json::json!({
                        "name": a.name,
                        "status": status,
                        "revoked_at": a.revoked_at,
                        "offline_since": if status == "offline" { a.last_seen } else { None },
                        "enrolled_at": a.enrolled_at,
                        "last_seen": a.last_seen,
                        "seconds_since_seen": a.last_seen.map(|t| now - t),
                        "version": a.version,
                        "connections": a.connections,
                        "cert_not_after": a.cert_not_after,
                    })
                })
                .collect();
            Ok(json(StatusCode::OK, &serde_json::json!({ "agents": view })))
        }
        (Method::POST, ["v1", "agents", name, "revoke"]) => match app.revoke_agent(name).await? {
            Some(failed) => Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "agent": name, "status": "revoked", "failed_jobs": failed }),
            )),
            None => Err(ApiError::not_found(format!("no agent {name:?}"))),
        },
        (Method::POST, ["v1", "enrollment-tokens"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Req {
                agent: String,
                #[serde(default = "default_ttl")]
                ttl_secs: u64,
            }
            fn default_ttl() -> u64 {
                crate::config::DEFAULT_ENROL_TOKEN_TTL_SECS
            }
            let body = read_body(req.into_body(), MAX_API_BODY).await?;
            let r: Req = parse_json(&body)?;
            let (token, expires_at) = app.create_enrolment_token(&r.agent, r.ttl_secs).await.map_err(|e| match e {
                crate::app::AppError::Usage(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m),
                other => ApiError::internal(other),
            })?;
            Ok(json(
                StatusCode::CREATED,
                &serde_json::json!({ "token": token, "agent": r.agent, "expires_at": expires_at }),
            ))
        }
        (
            _,
            ["v1", "jobs"]
            | ["v1", "jobs", _]
            | ["v1", "jobs", _, "result"]
            | ["v1", "jobs", _, "cancel"]
            | ["v1", "agents"]
            | ["v1", "enrollment-tokens"],
        ) => {
            Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this path"))
        }
        _ => Err(ApiError::not_found(format!("no such endpoint: {path}"))),
    }
}

async fn authenticate<S: Store>(app: &App<S>, req: &Request<Incoming>) -> Result<(), ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <token>"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("Authorization must be: Bearer <token>"))?;
    match app.store.api_token_role(sha256_hex(token.trim().as_bytes()), outpost_protocol::unix_now()).await? {
        Some(_role) => Ok(()),
        None => Err(unauthorized("invalid API token")),
    }
}

async fn find_job<S: Store>(app: &App<S>, id: &str, with_body: bool) -> Result<JobRecord, ApiError> {
    if !outpost_protocol::ids::is_job_id(id) {
        return Err(ApiError::not_found(format!("no job {id:?}")));
    }
    app.store
        .job(id.to_owned(), outpost_protocol::unix_now(), with_body)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

async fn result<S: Store>(app: &App<S>, id: &str, wait_secs: u64) -> Result<Response<Body>, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
    let waiter = app.hub.job(id);
    let found = async {
        loop {
            // Register before reading, so a result stored in between still wakes us.
            let notified = waiter.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let rec = find_job(app, id, true).await?;
            if rec.state.is_final() || tokio::time::Instant::now() >= deadline || app.shutdown.is_cancelled() {
                return Ok::<_, ApiError>(rec);
            }
            tokio::select! {
                () = &mut notified => {}
                // Read once more at the deadline: expiry is applied when a job is read.
                () = tokio::time::sleep_until(deadline) => {}
                () = app.shutdown.cancelled() => {}
            }
        }
    }
    .await;
    app.hub.release_job(id, waiter);
    let mut rec = found?;
    match rec.state {
        JobState::Succeeded => {
            let ct = rec.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
            let mut res = bytes_response(StatusCode::OK, &ct, rec.body.take().unwrap_or_default());
            if let Some(stats) = rec.stats {
                let h = res.headers_mut();
                if !stats.egress.is_empty() {
                    // What the agent's egress policy did, e.g. `masked,truncated`; the
                    // details are in GET /v1/jobs/{id}.
                    let mut actions: Vec<&str> = stats.egress.iter().map(|d| egress_action_name(d.action)).collect();
                    actions.sort_unstable();
                    actions.dedup();
                    if let Ok(v) = http::HeaderValue::from_str(&actions.join(",")) {
                        h.insert("outpost-egress", v);
                    }
                }
                h.insert("outpost-rows-read", stats.rows_read.into());
                h.insert("outpost-duration-ms", stats.duration_ms.into());
                h.insert(
                    "outpost-cache-hit",
                    http::HeaderValue::from_static(if stats.cache_hit { "true" } else { "false" }),
                );
                h.insert(
                    "outpost-truncated",
                    http::HeaderValue::from_static(if stats.truncated { "true" } else { "false" }),
                );
            }
            Ok(res)
        }
        JobState::Queued | JobState::Leased => Ok(json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "code": "pending", "message": "the result is not there yet; ask again with ?wait=SECONDS", "state": rec.state.as_str() }),
        )),
        state => {
            let reason =
                rec.reason.unwrap_or(outpost_protocol::Reason { code: state.as_str().into(), message: String::new() });
            Ok(json(
                StatusCode::CONFLICT,
                &serde_json::json!({ "code": format!("job_{}", state.as_str()), "message": reason.message, "reason": reason.code, "state": state.as_str() }),
            ))
        }
    }
}

fn egress_action_name(a: outpost_protocol::EgressAction) -> &'static str {
    use outpost_protocol::EgressAction;
    match a {
        EgressAction::Truncated => "truncated",
        EgressAction::Masked => "masked",
        EgressAction::Downsampled => "downsampled",
        EgressAction::Refused => "refused",
    }
}

/// The public view of a job.
#[derive(Debug, Serialize)]
pub struct JobView {
    id: String,
    agent: String,
    connection: String,
    state: &'static str,
    created_at: i64,
    expires_at: i64,
    finished_at: Option<i64>,
    attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<outpost_protocol::Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<outpost_protocol::ResultStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    /// When a user asked to cancel it (the job may still have finished first).
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_requested_at: Option<i64>,
}

impl From<&JobRecord> for JobView {
    fn from(r: &JobRecord) -> Self {
        Self {
            id: r.id.clone(),
            agent: r.agent.clone(),
            connection: r.connection.clone(),
            state: if r.state == JobState::Leased && r.cancel_requested_at.is_some() {
                "cancelling"
            } else {
                r.state.as_str()
            },
            created_at: r.created_at,
            expires_at: r.expires_at,
            finished_at: r.finished_at,
            attempts: r.attempts,
            reason: r.reason.clone(),
            stats: r.stats.clone(),
            content_type: r.content_type.clone(),
            cancel_requested_at: r.cancel_requested_at,
        }
    }
}
