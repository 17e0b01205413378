//! The API listener: what the cloud console and API clients call.
//!
//! Every route is in [`ROUTES`] with the scope it needs; the OpenAPI document at
//! `/v1/openapi.json` is generated from the same table. A request is authenticated by a
//! bearer API token or the session cookie (plus the `X-CSRF-Token` header when it changes
//! something), narrowed to its scopes, checked against data access and project grants,
//! and written to the control plane's audit log with its outcome — refusals included.
//! Embed routes take only an embed token. Every answer that is not a rendered result is
//! JSON; errors are `{code, message}`.
//!
//! Here: a request's way through (route, authenticate, read the body, call the handler,
//! write the audit record). The route table is in `routes`, authentication in `authn`,
//! what a caller sees of jobs in [`job_results`], and the handlers by concern in
//! [`jobs`], [`enrolment`], [`access`], [`projects`] and [`schema`].

pub mod access;
mod authn;
pub mod enrolment;
pub mod job_name;
pub mod job_results;
pub mod jobs;
pub mod openapi;
pub mod project_embed;
pub mod projects;
#[cfg(test)]
mod request_errors_tests;
mod routes;
pub mod schema;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::auth::access::Caller;
use crate::http::{read_body, ApiError, Body};
use crate::store::access::{AccessStore, AuditEvent};

pub use authn::{bearer, cookie, same_origin, session_caller, session_cookie};
pub use job_results::{dispatch_job, find_job, job_change, result, result_for, visible_job, wait_param, JobView};
pub use routes::{match_route, Auth, Route, RouteId, ROUTES};

/// Largest API request body.
pub const MAX_API_BODY: usize = 256 * 1024;
/// Longest `?wait=` honoured, seconds.
pub const MAX_RESULT_WAIT_SECS: u64 = 60;
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

/// 403, saying why (a text, or a [`crate::auth::access::ScopeRefusal`]).
pub fn forbidden(m: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", m.to_string())
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
    let result = match authn::authenticate(&app, route, &req, &mut ctx).await {
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

/// One call of an embed route from the embed page ([`call_embed`]).
#[derive(Debug)]
pub struct EmbedCall {
    /// The route.
    pub route: RouteId,
    /// Its path parameters, in order.
    pub params: Vec<String>,
    /// Its query string, without the `?`.
    pub query: Option<String>,
    /// Its body.
    pub body: bytes::Bytes,
}

impl EmbedCall {
    /// A call of `route` with `params`, no query and no body.
    pub fn new(route: RouteId, params: Vec<String>) -> Self {
        Self { route, params, query: None, body: bytes::Bytes::new() }
    }
}

/// Calls an embed route in-process with `token` as its bearer, through the same checks
/// and audit record as a request from outside: the embed page's way to its results.
pub async fn call_embed(app: &App, remote: &str, token: &str, call: EmbedCall) -> Response<Body> {
    let EmbedCall { route, params, query, body } = call;
    let Some(route) = ROUTES.iter().find(|r| r.id == route && r.auth == Auth::Embed) else {
        return ApiError::internal(format!("no embed route {route:?}")).into_response();
    };
    let mut ctx = Ctx { remote: remote.to_owned(), ..Ctx::default() };
    let uri = match query {
        Some(q) => format!("{}?{q}", route.path),
        None => route.path.to_owned(),
    };
    let req = Request::builder()
        .method(route.method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(body);
    let result = match req {
        Ok(req) => crate::api::jobs::dispatch(app, route.id, params, req, &mut ctx).await,
        Err(_) => Err(unauthorized("the embed token is not well formed")),
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
        at: app.clock.now(),
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

/// Whether the caller may use `agent`/`connection`: admins may use every connection,
/// everyone else only those shared with them or their groups.
pub async fn check_connection(app: &App, caller: &Caller, agent: &str, connection: &str) -> Result<(), ApiError> {
    if app.may_use_connection(&caller.user_id, caller.role, agent, connection).await? {
        Ok(())
    } else {
        Err(forbidden(format!("connection {connection:?} on agent {agent:?} is not shared with you")))
    }
}
