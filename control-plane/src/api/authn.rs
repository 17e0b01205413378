//! Who is calling: the bearer API token or the session cookie (with its CSRF token and
//! same-origin check for a change), narrowed to the route's scope.

use http::{header, Method, Request};
use hyper::body::Incoming;
use outpost_protocol::encoding::{constant_time_eq, sha256_hex};

use crate::api::{forbidden, unauthorized, Auth, Ctx, Route};
use crate::app::App;
use crate::auth::access::{self as auth, Caller, Credential, SESSION_COOKIE};
use crate::http::ApiError;
use crate::store::access::AccessStore;

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
        .session(hash.clone(), app.clock.now(), idle)
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

pub(crate) async fn authenticate(
    app: &App,
    route: &Route,
    req: &Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<(), ApiError> {
    let scope = match route.auth {
        Auth::Public | Auth::Embed => return Ok(()),
        Auth::Caller(scope) => scope,
    };
    let now = app.clock.now();
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
