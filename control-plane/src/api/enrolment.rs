//! API handlers of enrolment tokens: create, list the outstanding ones, revoke. The
//! tokens themselves are made by [`App::create_enrolment_token`]; their audit records and
//! throttle are [`crate::enrolment`]'s.

use http::{Response, StatusCode};
use serde::Deserialize;

use crate::api::Ctx;
use crate::app::App;
use crate::enrolment::token_view;
use crate::http::{json, no_content, parse_json, ApiError, Body};
use crate::store::Store;

/// `POST /v1/enrollment-tokens`: a one-time token for an agent name (and pool).
pub async fn create(app: &App, ctx: &mut Ctx, body: &[u8]) -> Result<Response<Body>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Req {
        agent: String,
        #[serde(default)]
        pool: Option<String>,
        #[serde(default = "default_ttl")]
        ttl_secs: u64,
    }
    fn default_ttl() -> u64 {
        crate::config::DEFAULT_ENROL_TOKEN_TTL_SECS
    }
    let r: Req = parse_json(body)?;
    ctx.target = Some(r.agent.clone());
    let (token, id, expires_at) =
        app.create_enrolment_token(&r.agent, r.pool.as_deref(), r.ttl_secs).await.map_err(|e| match e {
            crate::app::AppError::Usage(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m),
            other => ApiError::internal(other),
        })?;
    // Who created it (the audit record's actor), for which agent and pool, until when.
    ctx.detail = Some(serde_json::json!({ "token_id": id, "pool": r.pool, "expires_at": expires_at }));
    Ok(json(
        StatusCode::CREATED,
        &serde_json::json!({ "token": token, "id": id, "agent": r.agent, "pool": r.pool, "expires_at": expires_at }),
    ))
}

/// `GET /v1/enrollment-tokens`: the outstanding (unused, unexpired) tokens.
pub async fn list(app: &App) -> Result<Response<Body>, ApiError> {
    let tokens = app.store.outstanding_enrol_tokens(app.clock.now()).await?;
    let view: Vec<_> = tokens.iter().map(token_view).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "tokens": view })))
}

/// `DELETE /v1/enrollment-tokens/{id}`: an unused token enrols nobody from now on.
pub async fn revoke(app: &App, ctx: &mut Ctx, id: &str) -> Result<Response<Body>, ApiError> {
    ctx.target = Some(id.to_owned());
    match app.store.revoke_enrol_token(id.to_owned()).await? {
        Some(t) => {
            ctx.detail = Some(serde_json::json!({ "agent": t.agent, "pool": t.pool, "expires_at": t.expires_at }));
            tracing::info!(token_id = %t.id, agent_id = %t.agent, "Enrolment token revoked.");
            Ok(no_content())
        }
        None => Err(ApiError::not_found(format!("no unused enrolment token {id:?}"))),
    }
}
