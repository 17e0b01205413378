//! The API listener: what the cloud console and API clients call.
//!
//! Every route is in [`ROUTES`] with the scope it needs; the OpenAPI document at
//! `/v1/openapi.json` is generated from the same table. A request is authenticated by a
//! bearer API token or the session cookie (plus the `X-CSRF-Token` header when it changes
//! something), narrowed to its scopes, checked against data access and project grants,
//! and written to the control plane's audit log with its outcome — refusals included.
//! Embed routes take only an embed token. Every answer that is not a rendered result is
//! JSON; errors are `{code, message}`.

pub mod access;
pub mod enrolment;
pub mod job_name;
pub mod jobs;
pub mod openapi;
pub mod projects;
pub mod schema;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use outpost_protocol::encoding::{constant_time_eq, sha256_hex};
use serde::Serialize;

use crate::app::{App, DispatchRequest};
use crate::auth::access::{self as auth, Caller, Credential, Scope, SESSION_COOKIE};
use crate::http::{bytes_response, json, parse_json, query_param, read_body, ApiError, Body};
use crate::store::access::{AccessStore, AuditEvent};
use crate::store::{JobOrigin, JobRecord, JobState, Store};

/// Largest API request body.
pub const MAX_API_BODY: usize = 256 * 1024;
/// Longest `?wait=` honoured, seconds.
pub const MAX_RESULT_WAIT_SECS: u64 = 60;

/// How a route authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone (sign-in, the OpenAPI document).
    Public,
    /// A signed-in user or API token holding the scope (`None`: any signed-in caller).
    Caller(Option<Scope>),
    /// An embed token.
    Embed,
}

/// Every route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum RouteId {
    SessionCreate,
    SessionDelete,
    Me,
    UsersList,
    UsersCreate,
    UsersUpdate,
    GroupsList,
    GroupsCreate,
    GroupsDelete,
    GroupMemberAdd,
    GroupMemberRemove,
    SharesList,
    SharesCreate,
    SharesDelete,
    AgentsList,
    AgentsRevoke,
    AgentsAuditHead,
    AgentsConnectionSchema,
    EnrolmentTokensCreate,
    EnrolmentTokensList,
    EnrolmentTokensRevoke,
    JobsList,
    JobsDispatch,
    JobsRead,
    JobsResult,
    JobsSpec,
    JobsCancel,
    ProjectsList,
    ProjectsCreate,
    ProjectsRead,
    ProjectsUpdate,
    ProjectsDelete,
    ProjectGrantSet,
    ProjectGrantRemove,
    ProjectsRun,
    ProjectsResults,
    EmbedTokensCreate,
    EmbedTokensRevoke,
    EmbedProject,
    EmbedResult,
    TokensList,
    TokensCreate,
    TokensRevoke,
    AuditRead,
    ResultsPurge,
    OpenApi,
}

/// One route: method, path template (`{name}` matches one segment), what it needs.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Which handler.
    pub id: RouteId,
    /// Name in the audit log.
    pub action: &'static str,
    /// Authentication and scope.
    pub auth: Auth,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
}

macro_rules! route {
    ($m:literal, $p:literal, $id:ident, $action:literal, $auth:expr, $summary:literal) => {
        Route { method: $m, path: $p, id: RouteId::$id, action: $action, auth: $auth, summary: $summary }
    };
}

const ANY: Auth = Auth::Caller(None);
const fn needs(s: Scope) -> Auth {
    Auth::Caller(Some(s))
}

/// The API, route by route.
pub const ROUTES: &[Route] = &[
    route!(
        "POST",
        "/v1/sessions",
        SessionCreate,
        "session.create",
        Auth::Public,
        "Sign in with a user name and password; sets the session cookie"
    ),
    route!(
        "DELETE",
        "/v1/sessions/current",
        SessionDelete,
        "session.delete",
        ANY,
        "Sign out: ends the session on the server"
    ),
    route!(
        "GET",
        "/v1/me",
        Me,
        "me.read",
        ANY,
        "Who the caller is, with role, scopes and (for a session) the CSRF token"
    ),
    route!("GET", "/v1/users", UsersList, "users.list", needs(Scope::UsersAdmin), "List users"),
    route!("POST", "/v1/users", UsersCreate, "users.create", needs(Scope::UsersAdmin), "Create a local user"),
    route!(
        "PATCH",
        "/v1/users/{name}",
        UsersUpdate,
        "users.update",
        needs(Scope::UsersAdmin),
        "Change a user's role, password, or disable them"
    ),
    route!("GET", "/v1/groups", GroupsList, "groups.list", needs(Scope::UsersAdmin), "List groups with their members"),
    route!("POST", "/v1/groups", GroupsCreate, "groups.create", needs(Scope::UsersAdmin), "Create a group"),
    route!(
        "DELETE",
        "/v1/groups/{name}",
        GroupsDelete,
        "groups.delete",
        needs(Scope::UsersAdmin),
        "Delete a group and its shares"
    ),
    route!(
        "PUT",
        "/v1/groups/{name}/members/{user}",
        GroupMemberAdd,
        "groups.member_add",
        needs(Scope::UsersAdmin),
        "Add a user to a group"
    ),
    route!(
        "DELETE",
        "/v1/groups/{name}/members/{user}",
        GroupMemberRemove,
        "groups.member_remove",
        needs(Scope::UsersAdmin),
        "Remove a user from a group"
    ),
    route!("GET", "/v1/shares", SharesList, "shares.list", needs(Scope::UsersAdmin), "List connection shares"),
    route!(
        "POST",
        "/v1/shares",
        SharesCreate,
        "shares.create",
        needs(Scope::UsersAdmin),
        "Share an agent's connection with a user or group"
    ),
    route!(
        "DELETE",
        "/v1/shares/{id}",
        SharesDelete,
        "shares.delete",
        needs(Scope::UsersAdmin),
        "Stop sharing a connection"
    ),
    route!(
        "GET",
        "/v1/agents",
        AgentsList,
        "agents.list",
        needs(Scope::AgentsRead),
        "List agents (editors: those with a connection shared with them)"
    ),
    route!(
        "POST",
        "/v1/agents/{name}/revoke",
        AgentsRevoke,
        "agents.revoke",
        needs(Scope::AgentsAdmin),
        "Revoke an agent"
    ),
    route!(
        "GET",
        "/v1/agents/{name}/audit-head",
        AgentsAuditHead,
        "agents.audit_head",
        needs(Scope::AuditRead),
        "The latest signed head of an agent's audit log, for `outpost-agent audit verify --head`"
    ),
    route!(
        "GET",
        "/v1/agents/{name}/connections/{connection}/schema",
        AgentsConnectionSchema,
        "agents.connection_schema",
        needs(Scope::JobsDispatch),
        "The connection's catalog for the schema browser (tables and views the connection's role may read, \
         columns with types and nullability, row estimates, columns the agent's policy masks marked masked), \
         read by a signed catalog job and kept for schema_cache_secs; ?refresh=true asks the agent again. \
         Needs the connection shared with the caller, as dispatching a job to it does"
    ),
    route!(
        "POST",
        "/v1/enrollment-tokens",
        EnrolmentTokensCreate,
        "enrollment_tokens.create",
        needs(Scope::AgentsAdmin),
        "Create a one-time enrolment token for an agent name"
    ),
    route!(
        "GET",
        "/v1/enrollment-tokens",
        EnrolmentTokensList,
        "enrollment_tokens.list",
        needs(Scope::AgentsAdmin),
        "List the outstanding (unused, unexpired) enrolment tokens, never their secrets"
    ),
    route!(
        "DELETE",
        "/v1/enrollment-tokens/{id}",
        EnrolmentTokensRevoke,
        "enrollment_tokens.revoke",
        needs(Scope::AgentsAdmin),
        "Revoke an unused enrolment token: it enrols nobody from now on"
    ),
    route!(
        "GET",
        "/v1/jobs",
        JobsList,
        "jobs.list",
        needs(Scope::ResultsRead),
        "List the caller's jobs, newest first, each with its name; filter with ?state= (queued, leased, succeeded, \
         failed, rejected, expired, cancelled), ?agent= (or pool:NAME), ?connection= and ?owner= (a user name: admins only; \
         others see only their own jobs); admins: every job with ?all=true; ?limit= 1 to 1000 (100); ?sql=true adds \
         each job's SQL where the caller may read it"
    ),
    route!(
        "POST",
        "/v1/jobs",
        JobsDispatch,
        "jobs.dispatch",
        needs(Scope::JobsDispatch),
        "Dispatch an ad-hoc job to a connection shared with the caller"
    ),
    route!(
        "GET",
        "/v1/jobs/{id}",
        JobsRead,
        "jobs.read",
        needs(Scope::ResultsRead),
        "A job's status; with ?state=S&wait=N it waits for the job to leave state S"
    ),
    route!(
        "GET",
        "/v1/jobs/{id}/result",
        JobsResult,
        "jobs.result",
        needs(Scope::ResultsRead),
        "A job's rendered result, waiting up to ?wait=N seconds"
    ),
    route!(
        "GET",
        "/v1/jobs/{id}/spec",
        JobsSpec,
        "jobs.spec",
        needs(Scope::ResultsRead),
        "A job's SQL, parameters, render spec and requester (those who may read its SQL)"
    ),
    route!("POST", "/v1/jobs/{id}/cancel", JobsCancel, "jobs.cancel", needs(Scope::JobsDispatch), "Cancel a job"),
    route!(
        "GET",
        "/v1/projects",
        ProjectsList,
        "projects.list",
        needs(Scope::ProjectsRead),
        "List projects the caller owns or has a grant on"
    ),
    route!("POST", "/v1/projects", ProjectsCreate, "projects.create", needs(Scope::ProjectsWrite), "Create a project"),
    route!(
        "GET",
        "/v1/projects/{id}",
        ProjectsRead,
        "projects.read",
        needs(Scope::ProjectsRead),
        "A project (SQL only with view-logic, edit or ownership)"
    ),
    route!(
        "PUT",
        "/v1/projects/{id}",
        ProjectsUpdate,
        "projects.update",
        needs(Scope::ProjectsWrite),
        "Replace a project's name and queries"
    ),
    route!(
        "DELETE",
        "/v1/projects/{id}",
        ProjectsDelete,
        "projects.delete",
        needs(Scope::ProjectsWrite),
        "Delete a project"
    ),
    route!(
        "PUT",
        "/v1/projects/{id}/grants/{user}",
        ProjectGrantSet,
        "projects.grant",
        needs(Scope::ProjectsWrite),
        "Grant a user view-app, view-logic or edit"
    ),
    route!(
        "DELETE",
        "/v1/projects/{id}/grants/{user}",
        ProjectGrantRemove,
        "projects.ungrant",
        needs(Scope::ProjectsWrite),
        "Remove a user's grant"
    ),
    route!(
        "POST",
        "/v1/projects/{id}/run",
        ProjectsRun,
        "projects.run",
        needs(Scope::ProjectsRun),
        "Run (refresh) every query of a project"
    ),
    route!(
        "GET",
        "/v1/projects/{id}/results",
        ProjectsResults,
        "projects.results",
        needs(Scope::ProjectsRead),
        "The latest job of each query of a project"
    ),
    route!(
        "POST",
        "/v1/projects/{id}/embed-tokens",
        EmbedTokensCreate,
        "embed_tokens.create",
        needs(Scope::EmbedCreate),
        "Create a short-lived embed token for one end customer"
    ),
    route!(
        "POST",
        "/v1/projects/{id}/embed-tokens/revoke",
        EmbedTokensRevoke,
        "embed_tokens.revoke",
        needs(Scope::EmbedCreate),
        "Invalidate every embed token of a project"
    ),
    route!(
        "GET",
        "/v1/embed/project",
        EmbedProject,
        "embed.project",
        Auth::Embed,
        "The project an embed token is for (names and kinds only)"
    ),
    route!(
        "GET",
        "/v1/embed/results/{index}",
        EmbedResult,
        "embed.result",
        Auth::Embed,
        "The latest rendered result of one query for the token's customer"
    ),
    route!(
        "GET",
        "/v1/tokens",
        TokensList,
        "tokens.list",
        ANY,
        "List the caller's API tokens (admins: everyone's with ?all=true)"
    ),
    route!(
        "POST",
        "/v1/tokens",
        TokensCreate,
        "tokens.create",
        needs(Scope::TokensWrite),
        "Create an API token with some of the caller's scopes; shown once"
    ),
    route!(
        "DELETE",
        "/v1/tokens/{id}",
        TokensRevoke,
        "tokens.revoke",
        needs(Scope::TokensWrite),
        "Revoke an API token"
    ),
    route!("GET", "/v1/audit", AuditRead, "audit.read", needs(Scope::AuditRead), "Read the control plane's audit log"),
    route!(
        "POST",
        "/v1/results/purge",
        ResultsPurge,
        "results.purge",
        needs(Scope::ResultsPurge),
        "Delete results that ended more than older_than_secs ago"
    ),
    route!("GET", "/v1/openapi.json", OpenApi, "openapi.read", Auth::Public, "This API's OpenAPI document"),
];

/// Finds the route for `method` and `path`, with the path's `{…}` values in order.
/// `Err(true)` when the path exists with other methods, `Err(false)` when it does not.
pub fn match_route(method: &Method, path: &str) -> Result<(&'static Route, Vec<String>), bool> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut path_known = false;
    for r in ROUTES {
        let tmpl: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        if tmpl.len() != segs.len() {
            continue;
        }
        let mut params = Vec::new();
        let fits = tmpl.iter().zip(&segs).all(|(t, s)| {
            if t.starts_with('{') {
                params.push((*s).to_owned());
                !s.is_empty()
            } else {
                t == s
            }
        });
        if fits {
            path_known = true;
            if r.method == method.as_str() {
                return Ok((r, params));
            }
        }
    }
    Err(path_known)
}

/// What a handler learns and leaves for the audit record and the response.
#[derive(Debug, Default)]
pub struct Ctx {
    /// The authenticated caller.
    pub caller: Option<Caller>,
    /// Actor and credential when there is no caller (sign-in, embed).
    pub actor: Option<(String, String)>,
    /// Client address.
    pub remote: String,
    /// What the request acted on.
    pub target: Option<String>,
    /// Details for the audit record (never secrets or SQL).
    pub detail: Option<serde_json::Value>,
    /// A cookie to set.
    pub set_cookie: Option<String>,
}

impl Ctx {
    /// The caller; routes that reach a handler with `Auth::Caller` always have one.
    pub fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller.as_ref().ok_or_else(|| unauthorized("sign in or send Authorization: Bearer <API token>"))
    }
}

/// 401.
pub fn unauthorized(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
}

/// 403.
pub fn forbidden(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", m)
}

/// Handles one API request from `remote`.
pub async fn handle(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    // HTTP/1.1 cannot find the next request on a connection whose body was left unread:
    // such a refusal says `Connection: close`, and hyper closes after sending it.
    let unread_closes = req.version() < http::Version::HTTP_2 && has_body(&req);
    let console = crate::console::is_console_path(req.uri().path());
    let (mut res, body_read) =
        if console { (crate::console::handle(app, remote, req).await, false) } else { route(app, remote, req).await };
    if unread_closes && !body_read && (!console || res.status().is_client_error() || res.status().is_server_error()) {
        res.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    res
}

/// Whether a request says it carries a body.
fn has_body<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().parse::<u64>().map_or(true, |n| n > 0))
}

/// An API request: the response, and whether its body was read to the end.
async fn route(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> (Response<Body>, bool) {
    let (route, params) = match match_route(req.method(), req.uri().path()) {
        Ok(x) => x,
        Err(true) => {
            let e =
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this path");
            return (e.into_response(), false);
        }
        Err(false) => {
            return (ApiError::not_found(format!("no such endpoint: {}", req.uri().path())).into_response(), false);
        }
    };
    let mut ctx = Ctx { remote: remote.to_string(), ..Ctx::default() };
    let mut body_read = false;
    let result = match authenticate(&app, route, &req, &mut ctx).await {
        // The body is read only once the caller is known (public routes excepted).
        Ok(()) => {
            let (parts, body) = req.into_parts();
            match read_body(body, MAX_API_BODY).await {
                Ok(b) => {
                    body_read = true;
                    crate::api::jobs::dispatch(&app, route.id, params, Request::from_parts(parts, b), &mut ctx).await
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    (finish(&app, route, ctx, result).await, body_read)
}

/// Calls `route` for a caller the console has already authenticated by its session
/// cookie: the same scope check, handler and audit record as a request to the API.
pub async fn call(
    app: &App,
    caller: &Caller,
    remote: &str,
    route: RouteId,
    params: Vec<String>,
    query: Option<&str>,
) -> Response<Body> {
    let Some(route) = ROUTES.iter().find(|r| r.id == route) else {
        return ApiError::internal(format!("no route {route:?}")).into_response();
    };
    let mut ctx = Ctx { remote: remote.to_owned(), caller: Some(caller.clone()), ..Ctx::default() };
    let mut uri = route.path.to_owned();
    if let Some(q) = query {
        uri.push('?');
        uri.push_str(q);
    }
    let refused = match route.auth {
        Auth::Caller(Some(scope)) => caller.require(scope).err().map(forbidden),
        Auth::Caller(None) => None,
        Auth::Public | Auth::Embed => Some(forbidden("not a console route")),
    };
    let result = match (refused, Request::builder().method(route.method).uri(uri).body(bytes::Bytes::new())) {
        (Some(e), _) => Err(e),
        (None, Ok(req)) => crate::api::jobs::dispatch(app, route.id, params, req, &mut ctx).await,
        (None, Err(e)) => Err(ApiError::internal(e)),
    };
    finish(app, route, ctx, result).await
}

async fn finish(app: &App, route: &Route, mut ctx: Ctx, result: Result<Response<Body>, ApiError>) -> Response<Body> {
    let mut res = match result {
        Ok(r) => r,
        Err(e) => {
            if ctx.detail.is_none() && e.status != StatusCode::INTERNAL_SERVER_ERROR {
                ctx.detail = Some(serde_json::json!({ "error": e.message }));
            }
            e.into_response()
        }
    };
    if let Some(c) = ctx.set_cookie.take() {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    if route.id != RouteId::OpenApi {
        record(app, route, &ctx, res.status()).await;
    }
    res
}

async fn record(app: &App, route: &Route, ctx: &Ctx, status: StatusCode) {
    let (actor, credential) = match (&ctx.caller, &ctx.actor) {
        (Some(c), _) => (c.user.clone(), c.credential.audit_name()),
        (None, Some((a, c))) => (a.clone(), c.clone()),
        (None, None) => ("anonymous".to_owned(), "none".to_owned()),
    };
    let outcome = match status.as_u16() {
        0..=399 => "ok",
        401 | 403 => "denied",
        _ => "failed",
    };
    let event = AuditEvent {
        seq: 0,
        at: outpost_protocol::unix_now(),
        actor,
        credential,
        action: route.action.to_owned(),
        target: ctx.target.clone(),
        outcome: outcome.to_owned(),
        status: status.as_u16(),
        remote: Some(ctx.remote.clone()),
        detail: ctx.detail.clone(),
    };
    if let Err(e) = app.store.add_audit(event).await {
        tracing::error!(error = %e, action = route.action, "Could not write the audit record.");
    }
}

/// The bearer token of a request, if any.
pub fn bearer<B>(req: &Request<B>) -> Result<Option<&str>, ApiError> {
    match req.headers().get(header::AUTHORIZATION) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| Some(t.trim()))
            .ok_or_else(|| unauthorized("Authorization must be: Bearer <token>")),
    }
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie<B>(req: &Request<B>) -> Option<&str> {
    cookie(req, SESSION_COOKIE)
}

/// The value of the first cookie called `name` the request carries.
pub fn cookie<'r, B>(req: &'r Request<B>, name: &str) -> Option<&'r str> {
    req.headers().get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(';').find_map(|kv| {
            let (k, val) = kv.trim().split_once('=')?;
            (k == name).then_some(val)
        })
    })
}

/// The signed-in user behind a session cookie; 401 when the session has ended.
pub async fn session_caller(app: &App, cookie: &str) -> Result<Caller, ApiError> {
    let idle = i64::try_from(app.cfg.sessions.idle_secs).unwrap_or(1800);
    let hash = sha256_hex(cookie.as_bytes());
    let (s, user) = app
        .store
        .session(hash.clone(), outpost_protocol::unix_now(), idle)
        .await?
        .ok_or_else(|| unauthorized("the session has ended; sign in again"))?;
    Ok(Caller {
        user_id: user.id,
        user: user.name,
        role: user.role,
        scopes: user.role.scopes(),
        credential: Credential::Session { id: hash[..16].to_owned(), hash, csrf: s.csrf },
    })
}

/// A cookie-authenticated request that changes something must not come from another
/// site: `Sec-Fetch-Site` and `Origin`, when the browser sends them, must say ours.
pub fn same_origin(h: &http::HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Err("cross-site request refused (Sec-Fetch-Site)");
        }
    }
    if let (Some(origin), Some(host)) =
        (h.get(header::ORIGIN).and_then(|v| v.to_str().ok()), h.get(header::HOST).and_then(|v| v.to_str().ok()))
    {
        if origin != format!("https://{host}") {
            return Err("cross-origin request refused (Origin)");
        }
    }
    Ok(())
}

async fn authenticate(app: &App, route: &Route, req: &Request<Incoming>, ctx: &mut Ctx) -> Result<(), ApiError> {
    let scope = match route.auth {
        Auth::Public | Auth::Embed => return Ok(()),
        Auth::Caller(scope) => scope,
    };
    let now = outpost_protocol::unix_now();
    let caller = if let Some(token) = bearer(req)? {
        if token.matches('.').count() == 2 {
            return Err(unauthorized("embed tokens are accepted only on /v1/embed/ routes"));
        }
        ctx.actor = Some(("anonymous".into(), "token:unknown".into()));
        let (t, user) =
            app.store.token_auth(sha256_hex(token.as_bytes()), now).await?.ok_or_else(|| {
                unauthorized("invalid API token (unknown, expired or revoked, or its user is disabled)")
            })?;
        let scopes = auth::Scopes::from_stored(&t.scopes).map_err(ApiError::internal)?;
        Caller {
            user_id: user.id,
            user: user.name,
            role: user.role,
            scopes: user.role.scopes().intersect(scopes),
            credential: Credential::Token { id: t.id },
        }
    } else if let Some(cookie) = session_cookie(req) {
        ctx.actor = Some(("anonymous".into(), "session:unknown".into()));
        let caller = session_caller(app, cookie).await?;
        // A cookie is sent by the browser whoever made the page: a state-changing request
        // must also prove it read the CSRF token, which only our own pages can, and come
        // from our own origin when the browser says where it comes from.
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            let csrf = match &caller.credential {
                Credential::Session { csrf, .. } => csrf.clone(),
                Credential::Token { .. } => String::new(),
            };
            let sent = req.headers().get(auth::CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
            if let Err(m) = same_origin(req.headers()) {
                ctx.caller = Some(caller);
                return Err(forbidden(m));
            }
            if csrf.is_empty() || !constant_time_eq(sent, csrf.as_bytes()) {
                ctx.caller = Some(caller);
                return Err(forbidden("missing or wrong X-CSRF-Token header for this session"));
            }
        }
        caller
    } else {
        return Err(unauthorized("missing credentials: sign in, or send Authorization: Bearer <API token>"));
    };
    ctx.actor = None;
    let refused = scope.and_then(|s| caller.require(s).err());
    ctx.caller = Some(caller);
    match refused {
        Some(m) => Err(forbidden(m)),
        None => Ok(()),
    }
}

/// Whether the caller may use `agent`/`connection`: admins may use every connection,
/// everyone else only those shared with them or their groups.
pub async fn check_connection(app: &App, caller: &Caller, agent: &str, connection: &str) -> Result<(), ApiError> {
    if caller.is_admin() {
        return Ok(());
    }
    let shared = app.store.shared_connections(caller.user_id.clone()).await?;
    if shared.iter().any(|(a, c)| a == agent && c == connection) {
        Ok(())
    } else {
        Err(forbidden(format!("connection {connection:?} on agent {agent:?} is not shared with you")))
    }
}

/// Why a queued job waits, when it is because its agent (or every member of its pool) is
/// offline: when it was last seen, and until when the job keeps. The agent's name only to
/// those who may read the job's logic.
async fn waiting_for_agent(app: &App, rec: &JobRecord, may_read_sql: bool) -> Result<Option<String>, ApiError> {
    let now = outpost_protocol::unix_now();
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
    if caller.is_admin() || rec.origin.owner.as_deref() == Some(caller.user_id.as_str()) {
        return Ok(rec);
    }
    if let Some(pid) = &rec.origin.project_id {
        if app.project_access(caller, pid).await?.1.can_view() {
            return Ok(rec);
        }
    }
    Err(forbidden(format!("job {id} is not yours")))
}

/// A job by id; 404 when unknown.
pub async fn find_job(app: &App, id: &str, with_body: bool) -> Result<JobRecord, ApiError> {
    if !outpost_protocol::ids::is_job_id(id) {
        return Err(ApiError::not_found(format!("no job {id:?}")));
    }
    app.store
        .job(id.to_owned(), outpost_protocol::unix_now(), with_body)
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

/// A job, once its state is no longer `state` (as its view names it) or after
/// `wait_secs`: what the console's live status line waits on. Without `state`, at once.
pub async fn job_change(app: &App, id: &str, wait_secs: u64, state: Option<&str>) -> Result<JobRecord, ApiError> {
    let Some(state) = state.filter(|_| wait_secs > 0) else {
        return find_job(app, id, false).await;
    };
    wait_for_job(app, id, false, wait_secs, false, |rec| JobView::from(rec).state != state).await
}

/// Reads a job until `done` holds for it or `wait_secs` have passed (or shutdown). Wakes
/// on the job's notifications, never on an interval.
async fn wait_for_job(
    app: &App,
    id: &str,
    with_body: bool,
    wait_secs: u64,
    end_only: bool,
    done: impl Fn(&JobRecord) -> bool,
) -> Result<JobRecord, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait_secs);
    let waiter = app.hub.job(id, end_only);
    let found = async {
        loop {
            // Register before reading, so a change stored in between still wakes us.
            let notified = waiter.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let rec = find_job(app, id, with_body).await?;
            if done(&rec) || tokio::time::Instant::now() >= deadline || app.shutdown.is_cancelled() {
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
    app.hub.release_job(id, end_only, waiter);
    found
}

/// Answers with a job's rendered result, waiting for it up to `wait_secs`. A failure's
/// text is given only when `may_read_sql` (see [`crate::redact`]).
pub async fn result(app: &App, id: &str, wait_secs: u64, may_read_sql: bool) -> Result<Response<Body>, ApiError> {
    let mut rec = wait_for_job(app, id, true, wait_secs, true, |r| r.state.is_final()).await?;
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_by_method_and_template() {
        let (r, p) = match_route(&Method::PUT, "/v1/groups/ops/members/ana").expect("route");
        assert_eq!(r.id, RouteId::GroupMemberAdd);
        assert_eq!(p, vec!["ops".to_owned(), "ana".to_owned()]);
        assert_eq!(match_route(&Method::PATCH, "/v1/jobs").map(|x| x.0.id), Err(true));
        assert_eq!(match_route(&Method::GET, "/v1/nothing").map(|x| x.0.id), Err(false));
        assert_eq!(match_route(&Method::GET, "/v1/jobs//result").map(|x| x.0.id), Err(false));
        // No two routes share a method and template.
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{} {} twice", a.method, a.path);
                assert_ne!(a.action, b.action, "audit action {} twice", a.action);
            }
        }
    }
}
