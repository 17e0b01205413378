//! The agent listener's endpoints.
//!
//! On a mutual-TLS connection the agent is identified by its certificate's CN, which
//! `server.rs` checks against the enrolled agents when the connection is made:
//!
//! ```text
//! GET  /v1/agent/jobs/next?wait=N&max=K   long-poll: returns the moment a job is queued
//! POST /v1/agent/jobs/{id}/result         result upload (idempotent)
//! POST /v1/agent/heartbeat                version and connection names
//! POST /v1/agent/renew                    new certificate for a new key pair (CSR)
//! GET  /v1/agent/key-sets?after=N         signed key-set statements after version N
//! ```
//! On an enrolment connection (no client certificate, ALPN `outpost-enroll/1`) only
//! `POST /v1/enroll` exists.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use outpost_protocol::encoding::sha256_hex;
use outpost_protocol::enrol::{EnrolRequest, EnrolResponse};
use outpost_protocol::wire::{
    DeliveredJob, Heartbeat, KeySetsResponse, PollResponse, RenewRequest, RenewResponse, MAX_KEY_SETS_PER_RESPONSE,
    PATH_ENROLL, PATH_HEARTBEAT, PATH_KEY_SETS, PATH_POLL, PATH_RENEW,
};
use outpost_protocol::ResultReport;

use crate::app::App;
use crate::http::{json, parse_json, query_param, read_body, ApiError, Body};
use crate::hub::JobEnd;
use crate::store::{AgentPeer, CompleteOutcome, RedeemError, Store};

/// Largest result upload (a rendered body is capped at 4 MiB before base64).
const MAX_REPORT_BODY: usize = outpost_protocol::report::MAX_BODY_LEN / 3 * 4 + 64 * 1024;
/// Largest other agent request.
const MAX_SMALL_BODY: usize = 64 * 1024;
/// Most connection names an agent may report.
const MAX_REPORTED_CONNECTIONS: usize = 256;
/// Most jobs handed out by one poll.
const MAX_JOBS_PER_POLL: usize = 64;

/// Handles one request from the authenticated agent `agent`.
pub async fn handle(app: Arc<App>, peer: Arc<AgentPeer>, req: Request<Incoming>) -> Response<Body> {
    match route(&app, &peer, req).await {
        Ok(res) => res,
        Err(e) => {
            tracing::debug!(agent_id = %peer.name, code = e.code, error = %e.message, "Agent request refused.");
            e.into_response()
        }
    }
}

async fn route(app: &App, peer: &AgentPeer, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let agent = peer.name.as_str();
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, PATH_POLL) => poll(app, peer, req.uri().query()).await,
        (&Method::GET, PATH_KEY_SETS) => {
            let after = match query_param(req.uri().query(), "after") {
                None => 0,
                Some(v) => v.parse::<u64>().map_err(|_| ApiError::bad_field("after", "a key-set version"))?,
            };
            // Statements form a chain (each is checked against the keys before it), so a
            // statement that cannot be read ends the answer there instead of failing it:
            // the agent gets every good one before it, and the error is logged.
            let mut statements = Vec::new();
            for (i, s) in app.store.key_sets_after(after, MAX_KEY_SETS_PER_RESPONSE).await?.into_iter().enumerate() {
                match serde_json::from_str(&s) {
                    Ok(st) => statements.push(st),
                    Err(_) => {
                        tracing::error!(
                            after,
                            position = i,
                            "A stored key-set statement cannot be read; answering with the ones before it."
                        );
                        break;
                    }
                }
            }
            Ok(json(StatusCode::OK, &KeySetsResponse { statements }))
        }
        (&Method::POST, PATH_HEARTBEAT) => {
            let body = read_body(req.into_body(), MAX_SMALL_BODY).await?;
            let hb: Heartbeat = parse_json(&body)?;
            if hb.connections.len() > MAX_REPORTED_CONNECTIONS {
                return Err(ApiError::bad_field("connections", format!("more than {MAX_REPORTED_CONNECTIONS}")));
            }
            for (i, c) in hb.connections.iter().enumerate() {
                outpost_protocol::job::validate_name(c)
                    .map_err(|e| ApiError::bad_field(&format!("connections[{i}]"), e))?;
            }
            if hb.version.len() > 64 || hb.version.chars().any(char::is_control) {
                return Err(ApiError::bad_field("version", "at most 64 printable characters"));
            }
            app.store.touch_agent(peer.clone(), app.clock.now(), Some(hb.version), Some(hb.connections)).await?;
            if let Some(head) = &hb.audit_head {
                crate::audit_heads::accept(app, peer, head, crate::audit_heads::HeadSource::Heartbeat).await;
            }
            if hb.stopping {
                app.store.agent_stopped(peer.clone(), app.clock.now()).await?;
                tracing::info!(agent_id = %agent, "Agent stopping cleanly; offline until it connects again.");
            }
            Ok(json(StatusCode::OK, &serde_json::json!({ "ok": true })))
        }
        (&Method::POST, PATH_RENEW) => {
            let body = read_body(req.into_body(), MAX_SMALL_BODY).await?;
            let r: RenewRequest = parse_json(&body)?;
            rcgen::CertificateSigningRequestParams::from_pem(&r.csr_pem)
                .map_err(|e| ApiError::bad_field("csr_pem", e))?;
            let lifetime = i64::try_from(app.cfg.cert_lifetime_secs).unwrap_or(86_400);
            // Never issued before the name's enrolment took effect (a re-enrolment's is a
            // second ahead: store::rules::enrolment_time), or admission would refuse it.
            let enrolled_at = app.store.agent(agent.to_owned()).await?.map_or(0, |a| a.enrolled_at);
            let now = app.clock.now();
            let issued_at = now.max(enrolled_at);
            let not_after = issued_at.saturating_add(lifetime);
            let certificate_pem =
                app.ca.issue_agent_cert(agent, &r.csr_pem, issued_at, not_after).map_err(ApiError::internal)?;
            if let Err(e) = app.store.record_renewal(peer.clone(), not_after, now).await {
                let err = ApiError::from(e);
                let detail = serde_json::json!({ "error": err.code });
                crate::enrolment::audit_agent(app, agent, "mtls".into(), "agents.renew", err.status, None, detail)
                    .await;
                return Err(err);
            }
            tracing::info!(agent_id = %agent, not_after, "Agent certificate renewed.");
            let detail = serde_json::json!({ "not_after": not_after });
            crate::enrolment::audit_agent(app, agent, "mtls".into(), "agents.renew", StatusCode::OK, None, detail)
                .await;
            Ok(json(StatusCode::OK, &RenewResponse { certificate_pem, not_after }))
        }
        (&Method::POST, p) if p.starts_with(outpost_protocol::wire::PATH_JOBS) && p.ends_with("/result") => {
            let id = &p[outpost_protocol::wire::PATH_JOBS.len()..p.len() - "/result".len()];
            upload(app, peer, id, req).await
        }
        _ => Err(ApiError::not_found(format!("no such endpoint: {path}"))),
    }
}

async fn poll(app: &App, peer: &AgentPeer, query: Option<&str>) -> Result<Response<Body>, ApiError> {
    let agent = peer.name.as_str();
    let wait =
        query_param(query, "wait").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0).min(app.cfg.jobs.long_poll_secs);
    // `max=0`: the agent is busy and asks only for cancels of the jobs it runs.
    let max = query_param(query, "max").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).min(MAX_JOBS_PER_POLL);
    let lease = i64::try_from(app.cfg.jobs.lease_secs).unwrap_or(120);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let waker = app.hub.agent(agent);
    // A job addressed to the pool wakes every member's long-poll; one leases it.
    let pool_waker = peer.pool.as_deref().map(|p| app.hub.agent(&format!("{}{p}", outpost_protocol::job::POOL_PREFIX)));
    loop {
        let notified = waker.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let pool_notified = pool_waker.as_ref().map(|w| w.notified());
        tokio::pin!(pool_notified);
        if let Some(n) = pool_notified.as_mut().as_pin_mut() {
            n.enable();
        }
        let now = app.clock.now();
        let got = crate::store::queue::lease_deliverable(&app.store, &app.results, peer, now, lease, max).await?;
        for bad in &got.corrupt {
            tracing::error!(job_id = %bad.id, agent_id = %agent, problem = bad.problem,
                "A job's stored envelope cannot be read; it fails as corrupt_job and the poll goes on.");
            app.audit_system("jobs.corrupt", &bad.id, serde_json::json!({ "agent": agent, "problem": bad.problem }))
                .await;
            app.hub.job_done(&bad.id);
        }
        let (batch, leased) = (got.batch, got.jobs);
        let (expired, key_set_version) = (batch.expired, batch.key_set_version);
        for id in &expired {
            tracing::info!(job_id = %id, agent_id = %agent, "Job expired before delivery.");
            app.hub.job_done(id);
        }
        for id in &batch.cancelled {
            tracing::info!(job_id = %id, agent_id = %agent, "Cancelled job's lease ran out without a report; it ends cancelled.");
            app.hub.job_done(id);
        }
        for id in &batch.cancel {
            tracing::info!(job_id = %id, agent_id = %agent, "Telling the agent to cancel the job.");
        }
        if !leased.is_empty() || !batch.cancel.is_empty() {
            let mut jobs = Vec::with_capacity(leased.len());
            for (job_id, envelope) in leased {
                tracing::debug!(job_id = %job_id, agent_id = %agent, "Job delivered.");
                app.hub.job_changed(&job_id);
                jobs.push(DeliveredJob { job_id, envelope });
            }
            return Ok(json(StatusCode::OK, &PollResponse { jobs, key_set_version, cancel: batch.cancel }));
        }
        let empty = PollResponse { jobs: Vec::new(), key_set_version, cancel: Vec::new() };
        let pool_wake = async {
            match pool_notified.as_mut().as_pin_mut() {
                Some(n) => n.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut notified => {}
            () = pool_wake => {}
            () = tokio::time::sleep_until(deadline) => return Ok(json(StatusCode::OK, &empty)),
            () = app.shutdown.cancelled() => return Ok(json(StatusCode::OK, &empty)),
        }
    }
}

async fn upload(app: &App, peer: &AgentPeer, id: &str, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let agent = peer.name.as_str();
    let body = read_body(req.into_body(), MAX_REPORT_BODY).await?;
    let report: ResultReport = parse_json(&body)?;
    if report.job_id != id {
        return Err(ApiError::bad_field("job_id", "does not match the job id in the path"));
    }
    report.check().map_err(|e| {
        // Each text starts with the field at fault: the answer names it apart.
        let m = e.to_string();
        let (field, msg) = m.split_once(": ").unwrap_or(("report", m.as_str()));
        ApiError::bad_field(field, msg)
    })?;
    let status = report.status;
    let head = report.audit_head.clone();
    // The rendered body is sealed before the store sees it: no result is on disk in clear.
    let sealed = report.body_bytes().map_err(|m| ApiError::bad_field("body", m))?.map(|b| app.results.seal(id, &b));
    let now = app.clock.now();
    // A caller waiting here for this result is handed it with the wake-up, if it is stored.
    let end = app.hub.awaits_end(id).then(|| JobEnd::from_report(agent, &report, sealed.clone(), now));
    let outcome = app.store.complete_job(peer.clone(), report, sha256_hex(&body), sealed, now).await?;
    match outcome {
        CompleteOutcome::Accepted => {
            tracing::info!(job_id = %id, agent_id = %agent, status = ?status, "Result stored.");
            match end {
                Some(end) => app.hub.job_ended(id, end),
                None => app.hub.job_done(id),
            }
            if let Some(head) = &head {
                crate::audit_heads::accept(app, peer, head, crate::audit_heads::HeadSource::Result).await;
            }
            Ok(json(StatusCode::OK, &serde_json::json!({ "status": "accepted" })))
        }
        CompleteOutcome::Duplicate => Ok(json(StatusCode::OK, &serde_json::json!({ "status": "duplicate" }))),
        CompleteOutcome::Conflict(state) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflicting_result",
            format!("job {id} already ended as {} with a different result", state.as_str()),
        )),
        CompleteOutcome::NotFound => Err(ApiError::not_found(format!("no job {id} for this agent"))),
    }
}

/// Handles a request on an enrolment connection from `remote`: throttled per source
/// address and per token id, and every attempt recorded in the audit log.
pub async fn handle_enrol(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let now = app.clock.now();
    if let Err(wait) = app.enrol_throttle.check_address(remote.ip(), now) {
        tracing::warn!(remote = %remote.ip(), "Enrolment attempt throttled (source address).");
        let detail = serde_json::json!({ "reason": "throttled_address" });
        let status = StatusCode::TOO_MANY_REQUESTS;
        crate::enrolment::audit_agent(&app, "unknown", "none".into(), "agents.enrol", status, Some(remote), detail)
            .await;
        return crate::enrolment::too_many(wait, "from this address");
    }
    let mut attempt = EnrolAttempt::default();
    let result = enrol(&app, req, &mut attempt, now).await;
    let agent = attempt.agent.as_deref().unwrap_or("unknown");
    let credential = match &attempt.token_id {
        Some(id) => format!("enrolment-token:{}", crate::enrolment::audit_token_id(id)),
        None => "none".into(),
    };
    match result {
        Ok((res, detail)) => {
            let action = if attempt.reenrolment { "agents.reenrol" } else { "agents.enrol" };
            crate::enrolment::audit_agent(&app, agent, credential, action, StatusCode::OK, Some(remote), detail).await;
            res
        }
        Err(Refusal::Throttled(wait)) => {
            tracing::warn!(remote = %remote.ip(), "Enrolment attempt throttled (token id).");
            let detail = serde_json::json!({ "reason": "throttled_token" });
            let status = StatusCode::TOO_MANY_REQUESTS;
            crate::enrolment::audit_agent(&app, agent, credential, "agents.enrol", status, Some(remote), detail).await;
            crate::enrolment::too_many(wait, "with this token")
        }
        Err(Refusal::Error(e)) => {
            tracing::warn!(code = e.code, error = %e.message, remote = %remote.ip(), "Enrolment refused.");
            if e.status.is_client_error() {
                app.enrol_throttle.failed(remote.ip(), attempt.token_id.as_deref(), now);
            }
            let detail = serde_json::json!({ "reason": e.code });
            crate::enrolment::audit_agent(&app, agent, credential, "agents.enrol", e.status, Some(remote), detail)
                .await;
            e.into_response()
        }
    }
}

/// What an enrolment request said about itself, for its audit record.
#[derive(Debug, Default)]
struct EnrolAttempt {
    agent: Option<String>,
    token_id: Option<String>,
    reenrolment: bool,
}

enum Refusal {
    Throttled(i64),
    Error(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Error(e)
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(e: crate::store::StoreError) -> Self {
        Refusal::Error(e.into())
    }
}

async fn enrol(
    app: &App,
    req: Request<Incoming>,
    attempt: &mut EnrolAttempt,
    now: i64,
) -> Result<(Response<Body>, serde_json::Value), Refusal> {
    if req.method() != Method::POST || req.uri().path() != PATH_ENROLL {
        return Err(ApiError::not_found("only POST /v1/enroll is served without a client certificate").into());
    }
    let body = read_body(req.into_body(), MAX_SMALL_BODY).await?;
    let r: EnrolRequest = parse_json(&body)?;
    attempt.token_id = Some(r.token_id.clone());
    outpost_protocol::job::validate_name(&r.agent).map_err(|e| ApiError::bad_field("agent", e))?;
    attempt.agent = Some(r.agent.clone());
    if let Err(wait) = app.enrol_throttle.check_token(&r.token_id, now) {
        return Err(Refusal::Throttled(wait));
    }
    // Check the CSR before spending the token on it.
    rcgen::CertificateSigningRequestParams::from_pem(&r.csr_pem).map_err(|e| ApiError::bad_field("csr_pem", e))?;
    let before = app.store.agent(r.agent.clone()).await?;
    let lifetime = i64::try_from(app.cfg.cert_lifetime_secs).unwrap_or(86_400);
    let redeemed = app
        .store
        .redeem_enrol_token(r.token_id.clone(), sha256_hex(r.secret.as_bytes()), r.agent.clone(), now, lifetime)
        .await?;
    let enrolled = match redeemed {
        Ok(enrolled) => enrolled,
        Err(e) => {
            let code = match e {
                RedeemError::Unknown => "token_unknown",
                RedeemError::SecretMismatch => "token_altered",
                RedeemError::WrongAgent { .. } => "token_wrong_agent",
                RedeemError::Used { .. } => "token_used",
                RedeemError::Expired { .. } => "token_expired",
            };
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string()).into());
        }
    };
    attempt.reenrolment = before.is_some();
    // Issued at the enrolment's time, so that this certificate, and no earlier one of the
    // name, is admitted.
    let not_after = enrolled.cert_not_after;
    let certificate_pem =
        app.ca.issue_agent_cert(&r.agent, &r.csr_pem, enrolled.enrolled_at, not_after).map_err(ApiError::internal)?;
    let pool = enrolled.pool;
    let (signing_keys, key_set_version) = crate::app::key_ring::published(&app.store).await?;
    tracing::info!(agent_id = %r.agent, pool = pool.as_deref().unwrap_or(""), not_after, reenrolment = attempt.reenrolment, "Agent enrolled.");
    let detail = serde_json::json!({
        "pool": pool, "not_after": not_after,
        "was_revoked": before.as_ref().is_some_and(|a| a.revoked_at.is_some()),
    });
    let res = json(
        StatusCode::OK,
        &EnrolResponse {
            agent: r.agent.clone(),
            certificate_pem,
            ca_pem: app.ca.cert_pem().to_owned(),
            signing_keys,
            key_set_version,
            not_after,
            pool,
        },
    );
    Ok((res, detail))
}
