//! API handlers of access control: sign-in sessions, users, groups, connection shares,
//! API tokens, the audit log and the results purge.

use http::{Response, StatusCode};
use outpost_protocol::encoding::hex;
use outpost_protocol::ids::random_bytes;
use serde::Deserialize;

use crate::api::{forbidden, unauthorized, Ctx};
use crate::app::App;
use crate::auth::access::{self, Credential, Role, Scope, Scopes, SESSION_COOKIE, SESSION_PREFIX};
use crate::http::{json, no_content, parse_json, query_param, ApiError, Body};
use crate::store::access::{
    AccessStore, ApiTokenRecord, AuditFilter, SessionRecord, ShareRecord, UserRecord, UserUpdate,
};
use crate::store::{AccessRefusal, Store, StoreError};

fn conflict(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", m)
}

fn store_conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(m) => conflict(m),
        other => other.into(),
    }
}

/// A user as the API and `user list --json` show it (never the password hash).
pub fn user_view(u: &UserRecord) -> serde_json::Value {
    serde_json::json!({
        "name": u.name,
        "role": u.role,
        "disabled": u.disabled_at.is_some(),
        "disabled_at": u.disabled_at,
        "created_at": u.created_at,
        "last_sign_in": u.last_sign_in,
        "has_password": u.password_hash.is_some(),
    })
}

fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    access::validate_principal_name(name).map_err(|m| ApiError::bad_field(field, m))
}

/// `POST /v1/sessions`.
pub async fn sign_in(app: &App, ctx: &mut Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        user: String,
        password: access::Password,
    }
    let r: Req = parse_json(body)?;
    let name = r.user.chars().take(64).collect::<String>();
    // The typed name is recorded only once it names an account: a password typed into
    // the name field must not reach the audit log. Until then, a keyed hash stands in.
    ctx.actor = Some((app.results.keyed_name(&name), "password".into()));
    let now = app.clock.now();
    if let Err(wait) = app.sign_in_failures.check(&name, now) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many failed sign-ins for this user; try again in {wait} s"),
        )
        .retry_after(u64::try_from(wait).unwrap_or(1)));
    }
    let user = app.store.user_by_name(name.clone()).await?;
    if let Some(u) = &user {
        ctx.actor = Some((u.name.clone(), "password".into()));
        ctx.detail = Some(serde_json::json!({ "user_id": u.id }));
    }
    let password = r.password.clone();
    let hash = user.as_ref().filter(|u| u.disabled_at.is_none()).and_then(|u| u.password_hash.clone());
    // Argon2 costs ~20 ms of CPU: off the async threads. A missing user, a disabled one
    // and one without a password verify against a decoy, so all cost the same.
    // At most a few at once (see `password_work`): a flood is told to come back.
    // The decoy is made there too (once): a hashing on an async thread would block it and
    // leave Argon2's buffer with that thread for good.
    let ok = app
        .passwords
        .run(move || match &hash {
            Some(h) => access::verify_password(password.expose(), h),
            None => access::verify_password(password.expose(), access::decoy_hash()),
        })
        .await
        .map_err(busy)?;
    let user = match user {
        Some(u) if ok && u.disabled_at.is_none() && u.password_hash.is_some() => u,
        _ => {
            app.sign_in_failures.failed(&name, now);
            return Err(unauthorized("invalid user name or password"));
        }
    };
    app.sign_in_failures.succeeded(&name);
    let NewSession { cookie, session_id, csrf, expires_at } = new_session(app, &user).await?;
    ctx.actor = Some((user.name.clone(), format!("session:{session_id}")));
    ctx.set_cookie = Some(cookie);
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({
            "user": user.name,
            "role": user.role,
            "csrf_token": csrf,
            "expires_at": expires_at,
            "idle_timeout_secs": app.cfg.sessions.idle_secs,
        }),
    ))
}

/// A session just created for a user who proved who they are.
pub struct NewSession {
    /// The `Set-Cookie` value (the secret is only here and in the browser).
    pub cookie: String,
    /// The session's id in the audit log (a prefix of its hash).
    pub session_id: String,
    /// Its CSRF token.
    pub csrf: String,
    /// Absolute expiry.
    pub expires_at: i64,
}

/// Creates a session for `user` (stored as a SHA-256 of the cookie) and records the
/// sign-in. Used by password and single sign-on alike.
pub async fn new_session(app: &App, user: &UserRecord) -> Result<NewSession, ApiError> {
    let now = app.clock.now();
    let (secret, id_sha256) = access::new_secret(SESSION_PREFIX);
    let csrf = hex(&random_bytes::<32>());
    let absolute = i64::try_from(app.cfg.sessions.absolute_secs).unwrap_or(43_200);
    let expires_at = now + absolute;
    app.store
        .create_session(SessionRecord {
            id_sha256: id_sha256.clone(),
            user_id: user.id.clone(),
            csrf: csrf.clone(),
            created_at: now,
            last_seen: now,
            expires_at,
        })
        .await?;
    app.store.record_sign_in(user.id.clone(), now).await?;
    Ok(NewSession {
        cookie: format!(
            "{SESSION_COOKIE}={}; Path=/; Max-Age={absolute}; Secure; HttpOnly; SameSite=Strict",
            secret.as_str()
        ),
        session_id: id_sha256[..16].to_owned(),
        csrf,
        expires_at,
    })
}

/// `DELETE /v1/sessions/current`.
pub async fn sign_out(app: &App, ctx: &mut Ctx) -> Result<Response<Body>, ApiError> {
    let Credential::Session { hash, .. } = &ctx.caller()?.credential else {
        return Err(ApiError::bad_field("session", "this request was not made with a session cookie"));
    };
    app.store.delete_session(hash.clone()).await?;
    ctx.set_cookie = Some(format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict"));
    Ok(no_content())
}

/// `GET /v1/me`.
pub fn me(ctx: &Ctx) -> Result<Response<Body>, ApiError> {
    let c = ctx.caller()?;
    let (kind, csrf) = match &c.credential {
        Credential::Session { csrf, .. } => ("session", Some(csrf.clone())),
        Credential::Token { .. } => ("token", None),
    };
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "user": c.user,
            "role": c.role,
            "scopes": c.scopes.names(),
            "credential": kind,
            "csrf_token": csrf,
        }),
    ))
}

/// `GET /v1/users`.
pub async fn users_list(app: &App) -> Result<Response<Body>, ApiError> {
    let users: Vec<_> = app.store.users().await?.iter().map(user_view).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "users": users })))
}

async fn hash_password(app: &App, password: access::Password) -> Result<String, ApiError> {
    app.passwords
        .run(move || access::hash_password(password.expose()))
        .await
        .map_err(busy)?
        .map_err(|e| ApiError::bad_field("password", e))
}

/// 503 with `Retry-After`: every password slot is taken and the queue is full or its
/// deadline passed.
fn busy(_: crate::auth::password_work::Busy) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many sign-ins at once; try again in a moment")
        .retry_after(crate::auth::password_work::RETRY_AFTER_SECS)
}

/// `POST /v1/users`.
pub async fn users_create(app: &App, ctx: &mut Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        name: String,
        role: Role,
        #[serde(default)]
        password: Option<access::Password>,
    }
    let r: Req = parse_json(body)?;
    check_name("name", &r.name)?;
    ctx.target = Some(r.name.clone());
    ctx.detail = Some(serde_json::json!({ "role": r.role }));
    let password_hash = match r.password {
        Some(p) => Some(hash_password(app, p).await?),
        None => None,
    };
    let user = UserRecord {
        id: access::new_id(),
        name: r.name.clone(),
        role: r.role,
        password_hash,
        created_at: app.clock.now(),
        disabled_at: None,
        last_sign_in: None,
    };
    if !app.store.create_user(user.clone()).await? {
        return Err(conflict(format!("a user named {:?} already exists", r.name)));
    }
    Ok(json(StatusCode::CREATED, &user_view(&user)))
}

/// `PATCH /v1/users/{name}`.
pub async fn users_update(app: &App, ctx: &mut Ctx, name: &str, body: &[u8]) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        #[serde(default)]
        role: Option<Role>,
        #[serde(default)]
        disabled: Option<bool>,
        #[serde(default)]
        password: Option<access::Password>,
    }
    let r: Req = parse_json(body)?;
    ctx.target = Some(name.to_owned());
    ctx.detail =
        Some(serde_json::json!({ "role": r.role, "disabled": r.disabled, "password_changed": r.password.is_some() }));
    let password_hash = match r.password {
        Some(p) => Some(hash_password(app, p).await?),
        None => None,
    };
    let update = UserUpdate { role: r.role, disabled: r.disabled, password_hash };
    match app.store.update_user(name.to_owned(), update, app.clock.now()).await.map_err(store_conflict)? {
        Some(u) => Ok(json(StatusCode::OK, &user_view(&u))),
        None => Err(ApiError::not_found(format!("no user {name:?}"))),
    }
}

/// `GET /v1/groups`.
pub async fn groups_list(app: &App) -> Result<Response<Body>, ApiError> {
    let groups: Vec<_> = app
        .store
        .groups()
        .await?
        .into_iter()
        .map(|g| serde_json::json!({ "name": g.name, "created_at": g.created_at, "members": g.members }))
        .collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "groups": groups })))
}

/// `POST /v1/groups`.
pub async fn groups_create(app: &App, ctx: &mut Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        name: String,
    }
    let r: Req = parse_json(body)?;
    check_name("name", &r.name)?;
    ctx.target = Some(r.name.clone());
    let now = app.clock.now();
    if !app.store.create_group(r.name.clone(), now).await? {
        return Err(conflict(format!("a group named {:?} already exists", r.name)));
    }
    Ok(json(StatusCode::CREATED, &serde_json::json!({ "name": r.name, "created_at": now, "members": [] })))
}

/// `DELETE /v1/groups/{name}`.
pub async fn groups_delete(app: &App, ctx: &mut Ctx, name: &str) -> Result<Response<Body>, ApiError> {
    ctx.target = Some(name.to_owned());
    if app.store.delete_group(name.to_owned()).await? {
        Ok(no_content())
    } else {
        Err(ApiError::not_found(format!("no group {name:?}")))
    }
}

/// `PUT|DELETE /v1/groups/{name}/members/{user}`.
pub async fn group_member(
    app: &App,
    ctx: &mut Ctx,
    group: &str,
    user: &str,
    member: bool,
) -> Result<Response<Body>, ApiError> {
    ctx.target = Some(group.to_owned());
    ctx.detail = Some(serde_json::json!({ "user": user }));
    app.store
        .set_group_member(group.to_owned(), user.to_owned(), member)
        .await?
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(no_content())
}

fn share_view(s: &ShareRecord) -> serde_json::Value {
    serde_json::json!({
        "id": s.id, "agent": s.agent, "connection": s.connection, "user": s.user, "group": s.group,
        "created_at": s.created_at, "created_by": s.created_by,
    })
}

/// `GET /v1/shares`.
pub async fn shares_list(app: &App) -> Result<Response<Body>, ApiError> {
    let shares: Vec<_> = app.store.shares().await?.iter().map(share_view).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "shares": shares })))
}

/// `POST /v1/shares`.
pub async fn shares_create(app: &App, ctx: &mut Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        agent: String,
        connection: String,
        #[serde(default)]
        user: Option<String>,
        #[serde(default)]
        group: Option<String>,
    }
    let r: Req = parse_json(body)?;
    outpost_protocol::job::validate_audience(&r.agent).map_err(|e| ApiError::bad_field("agent", e))?;
    outpost_protocol::job::validate_name(&r.connection).map_err(|e| ApiError::bad_field("connection", e))?;
    if r.user.is_some() == r.group.is_some() {
        return Err(ApiError::bad_field("user", "give exactly one of `user` and `group`"));
    }
    ctx.target = Some(format!("{}/{}", r.agent, r.connection));
    ctx.detail = Some(serde_json::json!({ "user": r.user, "group": r.group }));
    if app.store.agent(r.agent.clone()).await?.is_none() {
        return Err(ApiError::bad_field("agent", format!("no enrolled agent is named {:?}", r.agent)));
    }
    let share = ShareRecord {
        id: access::new_id(),
        agent: r.agent,
        connection: r.connection,
        user: r.user,
        group: r.group,
        created_at: app.clock.now(),
        created_by: ctx.caller()?.user.clone(),
    };
    match app.store.add_share(share.clone()).await? {
        Ok(()) => Ok(json(StatusCode::CREATED, &share_view(&share))),
        Err(e @ AccessRefusal::NoUser { .. }) => Err(ApiError::bad_field("user", e)),
        Err(e @ AccessRefusal::NoGroup { .. }) => Err(ApiError::bad_field("group", e)),
        Err(e @ AccessRefusal::AlreadyShared) => Err(conflict(e.to_string())),
    }
}

/// `DELETE /v1/shares/{id}`.
pub async fn shares_delete(app: &App, ctx: &mut Ctx, id: &str) -> Result<Response<Body>, ApiError> {
    ctx.target = Some(id.to_owned());
    if app.store.delete_share(id.to_owned()).await? {
        Ok(no_content())
    } else {
        Err(ApiError::not_found(format!("no share {id:?}")))
    }
}

/// An API token as the API and `token list --json` show it (never its secret or hash).
pub fn token_view(t: &ApiTokenRecord, now: i64) -> serde_json::Value {
    let status = t.status(now);
    let scopes: Vec<String> = if t.scopes.trim() == "*" {
        vec!["*".into()]
    } else {
        t.scopes.split_whitespace().map(str::to_owned).collect()
    };
    serde_json::json!({
        "id": t.id, "name": t.name, "user": t.user, "scopes": scopes, "status": status,
        "created_at": t.created_at, "expires_at": t.expires_at, "last_used": t.last_used, "revoked_at": t.revoked_at,
    })
}

/// `GET /v1/tokens`.
pub async fn tokens_list(app: &App, ctx: &mut Ctx, q: Option<&str>) -> Result<Response<Body>, ApiError> {
    let caller = ctx.caller()?;
    let all = crate::http::bool_param(q, "all")?;
    if all {
        caller.require(Scope::UsersAdmin).map_err(forbidden)?;
    }
    let now = app.clock.now();
    let tokens = app.store.tokens(if all { None } else { Some(caller.user_id.clone()) }).await?;
    let view: Vec<_> = tokens.iter().map(|t| token_view(t, now)).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "tokens": view })))
}

/// `POST /v1/tokens`.
pub async fn tokens_create(app: &App, ctx: &mut Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        name: String,
        scopes: Vec<String>,
        #[serde(default)]
        expires_in_days: Option<u64>,
        #[serde(default)]
        user: Option<String>,
    }
    let caller = ctx.caller()?.clone();
    let r: Req = parse_json(body)?;
    if r.name.is_empty() || r.name.len() > 100 || r.name.chars().any(char::is_control) {
        return Err(ApiError::bad_field("name", "must be 1 to 100 printable characters"));
    }
    if r.scopes.is_empty() || r.scopes.len() > 32 {
        return Err(ApiError::bad_field("scopes", "give 1 to 32 scopes, or [\"*\"] for all of yours"));
    }
    let max = app.cfg.api_tokens.max_ttl_days;
    let days = r.expires_in_days.unwrap_or(app.cfg.api_tokens.default_ttl_days);
    if !(1..=max).contains(&days) {
        return Err(ApiError::bad_field("expires_in_days", format!("must be between 1 and {max}")));
    }
    // For another user (admins only), the ceiling is that user's role.
    let (owner, ceiling) = match &r.user {
        Some(name) if *name != caller.user => {
            caller.require(Scope::UsersAdmin).map_err(forbidden)?;
            let u = app
                .store
                .user_by_name(name.clone())
                .await?
                .ok_or_else(|| ApiError::bad_field("user", format!("no user {name:?}")))?;
            let ceiling = u.role.scopes();
            (u, ceiling)
        }
        _ => {
            let u = app.store.user_by_name(caller.user.clone()).await?.ok_or_else(|| unauthorized("no such user"))?;
            (u, caller.scopes)
        }
    };
    let scopes = Scopes::parse_list(&r.scopes, ceiling).map_err(|m| ApiError::bad_field("scopes", m))?;
    if let Some(extra) = scopes.names().into_iter().find(|n| Scope::parse(n).is_some_and(|s| !ceiling.has(s))) {
        return Err(forbidden(format!(
            "cannot grant scope {extra}: it exceeds the rights of the token's user or of this request"
        )));
    }
    let expires_at = app.clock.now() + i64::try_from(days * 86_400).unwrap_or(86_400);
    let (secret, id) = crate::app::issue_api_token(&app.store, &owner.id, &r.name, scopes, expires_at).await?;
    ctx.target = Some(id.clone());
    ctx.detail = Some(serde_json::json!({ "user": owner.name, "scopes": scopes.names(), "expires_at": expires_at }));
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({
            "id": id, "token": secret.as_str(), "name": r.name, "user": owner.name,
            "scopes": scopes.names(), "expires_at": expires_at,
        }),
    ))
}

/// `DELETE /v1/tokens/{id}`: one's own, or anyone's for an admin.
pub async fn tokens_revoke(app: &App, ctx: &mut Ctx, id: &str) -> Result<Response<Body>, ApiError> {
    ctx.target = Some(id.to_owned());
    let caller = ctx.caller()?;
    let t = app.store.token(id.to_owned()).await?.ok_or_else(|| ApiError::not_found(format!("no token {id:?}")))?;
    if t.user_id != caller.user_id && !caller.scopes.has(Scope::UsersAdmin) {
        return Err(ApiError::not_found(format!("no token {id:?}")));
    }
    if !app.store.revoke_token(id.to_owned(), app.clock.now()).await? {
        return Err(conflict(format!("token {id} is already revoked")));
    }
    Ok(no_content())
}

/// `GET /v1/audit`.
pub async fn audit_read(app: &App, q: Option<&str>) -> Result<Response<Body>, ApiError> {
    let text = |k: &str| -> Result<Option<String>, ApiError> {
        match query_param(q, k) {
            None => Ok(None),
            Some(v) => {
                let v = crate::http::percent_decode(v).ok_or_else(|| ApiError::bad_field(k, "bad percent-encoding"))?;
                if v.len() > 200 {
                    return Err(ApiError::bad_field(k, "too long"));
                }
                Ok(Some(v))
            }
        }
    };
    let num = |k: &str| -> Result<Option<i64>, ApiError> {
        query_param(q, k)
            .map(|v| v.parse::<i64>().map_err(|_| ApiError::bad_field(k, "must be a whole number")))
            .transpose()
    };
    let limit = match num("limit")? {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => u32::try_from(n).unwrap_or(100),
        Some(_) => return Err(ApiError::bad_field("limit", "must be from 1 to 1000")),
    };
    let filter = AuditFilter {
        actor: text("actor")?,
        action: text("action")?,
        outcome: text("outcome")?,
        target: text("target")?,
        since: num("since")?,
        until: num("until")?,
        after: num("after")?,
        limit,
    };
    let events = app.store.audit(filter).await?;
    let next = events.last().map(|e| e.seq);
    Ok(json(StatusCode::OK, &serde_json::json!({ "events": events, "next_after": next })))
}

/// `POST /v1/results/purge`.
pub async fn purge(app: &App, ctx: &mut Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Req {
        #[serde(default)]
        older_than_secs: Option<u64>,
    }
    let r: Req = if body.is_empty() { Req::default() } else { parse_json(body)? };
    let older = r.older_than_secs.unwrap_or(app.cfg.results.retention_secs);
    if older > 10 * 365 * 86_400 {
        return Err(ApiError::bad_field("older_than_secs", "must be at most ten years"));
    }
    let n = app.purge_results(older).await?;
    ctx.detail = Some(serde_json::json!({ "older_than_secs": older, "deleted": n }));
    Ok(json(StatusCode::OK, &serde_json::json!({ "deleted": n, "older_than_secs": older })))
}
