//! What a caller sees of jobs: which jobs they may see, waiting for a job to change or
//! finish, the answer with its rendered result, and the job's public view; and the
//! dispatch of an ad-hoc job after the data-access check.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::api::{check_connection, forbidden, job_name, Ctx, MAX_RESULT_WAIT_SECS};
use crate::app::{App, DispatchRequest};
use crate::auth::access::Caller;
use crate::http::{bytes_response, json, parse_json, query_param, ApiError, Body};
use crate::store::access::AccessStore;
use crate::store::{JobOrigin, JobRecord, JobState, Store};

/// Why a queued job waits, when it is because its agent (or every member of its pool) is
/// offline: when it was last seen, and until when the job keeps. The agent's name only to
/// those who may read the job's logic.
async fn waiting_for_agent(app: &App, rec: &JobRecord, may_read_sql: bool) -> Result<Option<String>, ApiError> {
    let now = app.clock.now();
    let offline_after = i64::try_from(app.cfg.offline_after_secs).unwrap_or(90);
    let (who, members) = match &rec.pool {
        Some(p) => (format!("no member of pool {p:?} is online"), app.store.pool_members(p.clone()).await?),
        None => (
            format!("agent {:?} is offline", rec.agent),
            app.store.agent(rec.agent.clone()).await?.into_iter().collect(),
        ),
    };
    let live: Vec<_> = members.iter().filter(|a| a.revoked_at.is_none()).collect();
    if live.iter().any(|a| a.status(now, offline_after) == "online") {
        return Ok(None);
    }
    let last = live.iter().filter_map(|a| a.last_seen).max();
    let seen = match last {
        Some(t) => format!("last seen {} ({} s ago)", rfc3339_secs(t), now - t),
        None => "never seen since it enrolled".to_owned(),
    };
    let who =
        if may_read_sql { format!("{who} ({seen})") } else { "the agent that runs this job is offline".to_owned() };
    Ok(Some(format!(
        "{who}: the job runs when it reconnects, if that is before it expires at {}",
        rfc3339_secs(rec.expires_at)
    )))
}

fn rfc3339_secs(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map_or_else(|| unix.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Dispatches an ad-hoc job after the data-access check (before anything is signed).
pub async fn dispatch_job(app: &App, ctx: &mut Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let caller = ctx.caller()?.clone();
    let dispatch: DispatchRequest = parse_json(body)?;
    ctx.detail = Some(serde_json::json!({ "agent": dispatch.agent, "connection": dispatch.connection }));
    check_connection(app, &caller, &dispatch.agent, &dispatch.connection).await?;
    let origin = JobOrigin { owner: Some(caller.user_id.clone()), ..JobOrigin::default() };
    let requester = caller.requester(&origin);
    // Only an admin is told every connection the agent has; others see theirs in GET /v1/agents.
    let (id, expires_at) = app.dispatch(dispatch, origin, requester, caller.is_admin()).await?;
    ctx.target = Some(id.clone());
    Ok(json(StatusCode::ACCEPTED, &serde_json::json!({ "id": id, "state": "queued", "expires_at": expires_at })))
}

/// Reads a job the caller may see: their own, any for an admin, or one of a project they
/// can view. Someone else's job is refused 403.
pub async fn visible_job(app: &App, caller: &Caller, id: &str, with_body: bool) -> Result<JobRecord, ApiError> {
    let rec = find_job(app, id, with_body).await?;
    check_visible(app, caller, &rec).await?;
    Ok(rec)
}

/// Refuses (403) a job the caller may not see ([`visible_job`]).
async fn check_visible(app: &App, caller: &Caller, rec: &JobRecord) -> Result<(), ApiError> {
    if caller.is_admin() || rec.origin.owner.as_deref() == Some(caller.user_id.as_str()) {
        return Ok(());
    }
    if let Some(pid) = &rec.origin.project_id {
        if app.project_access(caller, pid).await?.1.can_view() {
            return Ok(());
        }
    }
    Err(forbidden(format!("job {} is not yours", rec.id)))
}

/// A job by id; 404 when unknown.
pub async fn find_job(app: &App, id: &str, with_body: bool) -> Result<JobRecord, ApiError> {
    if !outpost_protocol::ids::is_job_id(id) {
        return Err(ApiError::not_found(format!("no job {id:?}")));
    }
    app.store
        .job(id.to_owned(), app.clock.now(), with_body)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no job {id} (results are deleted after their retention)")))
}

/// Parses `?wait=` (seconds, capped).
pub fn wait_param(query: Option<&str>) -> Result<u64, ApiError> {
    match query_param(query, "wait") {
        None => Ok(0),
        Some(v) => v
            .parse::<u64>()
            .map(|w| w.min(MAX_RESULT_WAIT_SECS))
            .map_err(|_| ApiError::bad_field("wait", "must be a whole number of seconds")),
    }
}

/// A job `caller` may see ([`visible_job`]), once its state is no longer `state` (as its
/// view names it) or after `wait_secs`: what the console's live status line waits on.
/// Without `state`, at once.
pub async fn job_change(
    app: &App,
    caller: &Caller,
    id: &str,
    wait_secs: u64,
    state: Option<&str>,
) -> Result<JobRecord, ApiError> {
    let Some(state) = state.filter(|_| wait_secs > 0) else {
        return visible_job(app, caller, id, false).await;
    };
    wait_for_job(app, id, false, wait_secs, false, Some(caller), |rec| JobView::from(rec).state != state).await
}

/// Reads a job until `done` holds for it or `wait_secs` have passed (or shutdown). Wakes
/// on the job's notifications, never on an interval. With `viewer`, the first read is
/// also the visibility check ([`visible_job`]): one read of the job instead of two
/// before waiting (issue 24).
async fn wait_for_job(
    app: &App,
    id: &str,
    with_body: bool,
    wait_secs: u64,
    end_only: bool,
    mut viewer: Option<&Caller>,
    done: impl Fn(&JobRecord) -> bool,
) -> Result<JobRecord, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
    let waiter = app.hub.job(id, end_only);
    let found = async {
        let mut last: Option<JobRecord> = None;
        loop {
            // Register before reading, so a change stored in between still wakes us.
            let notified = waiter.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // A job that ended on this replica comes with its end: no second read. Only a
            // result waiter (`end_only`, with the body) is handed one.
            let rec = match (last.take(), waiter.ended()) {
                (Some(before), Some(end)) if end_only && with_body => end.apply(before),
                _ => find_job(app, id, with_body).await?,
            };
            if let Some(caller) = viewer.take() {
                check_visible(app, caller, &rec).await?;
            }
            if done(&rec) || tokio::time::Instant::now() >= deadline || app.shutdown.is_cancelled() {
                return Ok::<_, ApiError>(rec);
            }
            last = Some(rec);
            tokio::select! {
                () = &mut notified => {}
                // Read once more at the deadline: expiry is applied when a job is read.
                () = tokio::time::sleep_until(deadline) => {}
                () = app.shutdown.cancelled() => {}
            }
        }
    }
    .await;
    drop(waiter);
    found
}

/// [`result`] of a job `caller` may see ([`visible_job`]); its failure's text only when
/// they may read its SQL.
pub async fn result_for(app: &App, caller: &Caller, id: &str, wait_secs: u64) -> Result<Response<Body>, ApiError> {
    let rec = wait_for_job(app, id, true, wait_secs, true, Some(caller), |r| r.state.is_final()).await?;
    // Who may read the SQL depends on the job's origin, which never changes.
    let may_read_sql = crate::redact::may_read_sql(app, caller, &rec).await?;
    respond(app, id, rec, may_read_sql).await
}

/// Answers with a job's rendered result, waiting for it up to `wait_secs`. A failure's
/// text is given only when `may_read_sql` (see [`crate::redact`]).
pub async fn result(app: &App, id: &str, wait_secs: u64, may_read_sql: bool) -> Result<Response<Body>, ApiError> {
    let rec = wait_for_job(app, id, true, wait_secs, true, None, |r| r.state.is_final()).await?;
    respond(app, id, rec, may_read_sql).await
}

/// The answer for a job as read by [`result`].
async fn respond(app: &App, id: &str, mut rec: JobRecord, may_read_sql: bool) -> Result<Response<Body>, ApiError> {
    match rec.state {
        JobState::Succeeded => {
            let ct = rec.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
            let body = match rec.body.take() {
                None => Vec::new(),
                Some(sealed) => app.results.open(id, &sealed).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::GONE,
                        "result_unreadable",
                        "the stored result cannot be opened with this control plane's results key",
                    )
                })?,
            };
            let mut res = bytes_response(StatusCode::OK, &ct, body);
            if let Some(stats) = rec.stats {
                let h = res.headers_mut();
                if !stats.egress.is_empty() {
                    // What the agent's egress policy did, e.g. `masked,truncated`; the
                    // details are in GET /v1/jobs/{id}.
                    let mut actions: Vec<&str> = stats.egress.iter().map(|d| egress_action_name(d.action)).collect();
                    actions.sort_unstable();
                    actions.dedup();
                    if let Ok(v) = HeaderValue::from_str(&actions.join(",")) {
                        h.insert("outpost-egress", v);
                    }
                }
                h.insert("outpost-rows-read", stats.rows_read.into());
                h.insert("outpost-duration-ms", stats.duration_ms.into());
                h.insert("outpost-cache-hit", HeaderValue::from_static(if stats.cache_hit { "true" } else { "false" }));
                h.insert("outpost-truncated", HeaderValue::from_static(if stats.truncated { "true" } else { "false" }));
            }
            Ok(res)
        }
        JobState::Queued => {
            let (code, message) = match waiting_for_agent(app, &rec, may_read_sql).await? {
                Some(why) => ("waiting_for_agent", why),
                None => ("pending", "the result is not there yet; ask again with ?wait=SECONDS".to_owned()),
            };
            Ok(json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "code": code, "message": message, "state": rec.state.as_str() }),
            ))
        }
        JobState::Leased => Ok(json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "code": "pending", "message": "the result is not there yet; ask again with ?wait=SECONDS", "state": rec.state.as_str() }),
        )),
        state => {
            let mut reason =
                rec.reason.unwrap_or(outpost_protocol::Reason { code: state.as_str().into(), message: String::new() });
            if !may_read_sql {
                reason = crate::redact::redacted(state, &reason);
            }
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

/// The public view of a job (never its SQL).
#[derive(Debug, Serialize)]
pub struct JobView {
    id: String,
    /// What the job is called: its project query's name, or its SQL's first line
    /// ([`job_name`]); empty where a view is built without looking it up.
    name: String,
    /// The job's SQL: only with `GET /v1/jobs?sql=true`, to callers who may read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    sql: Option<String>,
    /// Name of the user who dispatched it (hidden with the agent and connection).
    #[serde(skip_serializing_if = "Option::is_none")]
    requester: Option<String>,
    /// Hidden from callers whose only access is a project's `view-app` grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<String>,
    /// The pool it was addressed to (`agent` is then the member that took it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection: Option<String>,
    state: &'static str,
    #[serde(skip)]
    job_state: JobState,
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
    /// The project it ran a query of.
    #[serde(skip_serializing_if = "Option::is_none")]
    project_id: Option<String>,
    /// Index of that query.
    #[serde(skip_serializing_if = "Option::is_none")]
    query_index: Option<i64>,
    /// End customer the project ran for.
    #[serde(skip_serializing_if = "Option::is_none")]
    customer: Option<String>,
    /// The dashboard filter values it ran with, by parameter name (those its query binds;
    /// only `GET /v1/jobs/{id}` looks them up).
    #[serde(skip_serializing_if = "Option::is_none")]
    filters: Option<serde_json::Value>,
}

impl JobView {
    /// The view for `caller`: without agent and connection when the job belongs to a
    /// project the caller may only see as an app (`view-app`).
    pub async fn for_caller(app: &App, caller: &Caller, r: &JobRecord) -> Result<Self, ApiError> {
        Self::for_caller_cached(app, caller, r, &mut job_name::ProjectCache::new(), false).await
    }

    /// As [`for_caller`](Self::for_caller), looking each project up once in `seen`; with
    /// the job's SQL when `with_sql` and the caller may read it.
    pub async fn for_caller_cached(
        app: &App,
        caller: &Caller,
        r: &JobRecord,
        seen: &mut job_name::ProjectCache,
        with_sql: bool,
    ) -> Result<Self, ApiError> {
        let mut v = Self::from(r);
        (v.name, v.sql) = job_name::for_job(app, caller, r, seen, with_sql).await?;
        if let Some(owner) = &r.origin.owner {
            v.requester = job_name::user_name(app, owner, seen).await?;
        }
        if let (Some(pid), false) = (&r.origin.project_id, caller.is_admin()) {
            if !job_name::project_facts(app, caller, pid, seen).await?.0 {
                v.hide_logic();
            }
        }
        Ok(v)
    }

    /// Adds the filter values job `r` ran with, when it ran a query binding parameters
    /// and they are still known (jobs from before they were kept have only their key).
    pub async fn add_filters(&mut self, app: &App, r: &JobRecord) -> Result<(), ApiError> {
        if let (Some(pid), Some(key)) = (&r.origin.project_id, &r.origin.filters) {
            let stored = app.store.filter_set_values(pid.clone(), key.clone()).await?;
            self.filters = stored.and_then(|j| serde_json::from_str(&j).ok());
        }
        Ok(())
    }

    /// Names the view (a caller that knows the name already, as a project's results do).
    pub fn set_name(&mut self, name: &str) {
        self.name = job_name::shorten(name);
    }

    /// Hides what only those who may read the job's SQL see: requester, agent, pool,
    /// connection and the failure's text (its code stays; see [`crate::redact`]).
    pub fn hide_logic(&mut self) {
        self.requester = None;
        self.agent = None;
        self.pool = None;
        self.connection = None;
        if let Some(r) = &self.reason {
            self.reason = Some(crate::redact::redacted(self.job_state, r));
        }
    }
}

impl From<&JobRecord> for JobView {
    fn from(r: &JobRecord) -> Self {
        Self {
            id: r.id.clone(),
            name: String::new(),
            sql: None,
            requester: None,
            agent: Some(r.agent.clone()).filter(|a| !a.is_empty()),
            pool: r.pool.clone(),
            connection: Some(r.connection.clone()),
            state: if r.state == JobState::Leased && r.cancel_requested_at.is_some() {
                "cancelling"
            } else {
                r.state.as_str()
            },
            job_state: r.state,
            created_at: r.created_at,
            expires_at: r.expires_at,
            finished_at: r.finished_at,
            attempts: r.attempts,
            reason: r.reason.clone(),
            stats: r.stats.clone(),
            content_type: r.content_type.clone(),
            cancel_requested_at: r.cancel_requested_at,
            project_id: r.origin.project_id.clone(),
            query_index: r.origin.query_index,
            customer: r.origin.customer.clone(),
            filters: None,
        }
    }
}
