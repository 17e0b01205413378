//! The browser's side of single sign-on: `GET /console/oidc/start` sends the browser to
//! the provider with a sealed flow cookie, `GET /console/oidc/callback` checks that the
//! answer is for the sign-in this browser started, has [`crate::auth::oidc`] verify it and
//! find the user, and opens a session. Every sign-in, and every refusal with its reason,
//! is in the audit log.

use std::net::SocketAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use outpost_protocol::encoding::constant_time_eq;
use outpost_protocol::ids::random_bytes;
use serde::Deserialize;

use crate::app::App;
use crate::auth::oidc::{Oidc, OidcError};
use crate::console::{bare_page, login_page, page_response, redirect};
use crate::http::Body;
use crate::store::access::{AccessStore, AuditEvent, UserRecord};

/// The cookie that carries a sign-in's `state`, `nonce` and PKCE verifier, sealed with
/// the control plane's results key (AES-256-GCM, bound to [`FLOW_AAD`]): nothing is kept
/// on the server between start and callback, so no request can crowd out another
/// user's sign-in. `Lax`, because the provider sends the browser back with a cross-site
/// top-level navigation; `__Host-`, so no other host can plant one.
const FLOW_COOKIE: &str = "__Host-outpost_oidc";
const FLOW_AAD: &str = "oidc-flow";
/// A sign-in must come back within this time (seconds).
const FLOW_TTL_SECS: i64 = 600;

/// What the flow cookie holds.
#[derive(serde::Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    created: i64,
}

/// `GET /console/oidc/start`: sends the browser to the provider.
pub async fn start(app: &App) -> Response<Body> {
    let Some(oidc) = &app.oidc else {
        return page_response(StatusCode::NOT_FOUND, login_page(app, Some("Single sign-on is not configured.")));
    };
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let state = b64(&random_bytes::<32>());
    let nonce = b64(&random_bytes::<32>());
    let verifier = b64(&random_bytes::<32>());
    let challenge = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref());
    let flow = Flow { state: state.clone(), nonce: nonce.clone(), verifier, created: app.clock.now() };
    let sealed = app.results.seal(FLOW_AAD, &zeroize::Zeroizing::new(serde_json::to_vec(&flow).unwrap_or_default()));
    let flow_cookie = URL_SAFE_NO_PAD.encode(sealed);
    let location = match oidc.authorization_url(&state, &nonce, &challenge).await {
        Ok(url) => url,
        Err(e) => {
            tracing::warn!(error = %e, "Single sign-on could not start.");
            return page_response(StatusCode::BAD_GATEWAY, login_page(app, Some(&e.to_string())));
        }
    };
    let mut res = redirect("/console/login");
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={flow_cookie}; Path=/; Max-Age={FLOW_TTL_SECS}; Secure; HttpOnly; SameSite=Lax"
    )) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `GET /console/oidc/callback`: checks the answer, signs the user in.
pub async fn callback(app: &App, remote: SocketAddr, req: &Request<Incoming>) -> Response<Body> {
    let Some(oidc) = &app.oidc else {
        return page_response(StatusCode::NOT_FOUND, login_page(app, Some("Single sign-on is not configured.")));
    };
    let outcome = finish(app, oidc, req).await;
    let (actor, credential, status, detail) = match &outcome {
        Ok((user, session_id, _)) => (user.name.clone(), format!("session:{session_id}"), StatusCode::OK, None),
        Err(e) => {
            let status = match e {
                OidcError::Refused(_) => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_GATEWAY,
            };
            ("anonymous".to_owned(), "oidc".to_owned(), status, Some(serde_json::json!({ "error": e.to_string() })))
        }
    };
    let event = AuditEvent {
        seq: 0,
        at: app.clock.now(),
        actor,
        credential,
        action: "session.create_sso".into(),
        target: Some(oidc.issuer().to_owned()),
        outcome: if status == StatusCode::OK {
            "ok"
        } else if status == StatusCode::UNAUTHORIZED {
            "denied"
        } else {
            "failed"
        }
        .into(),
        status: status.as_u16(),
        remote: Some(remote.to_string()),
        detail,
    };
    if let Err(e) = app.store.add_audit(event).await {
        tracing::error!(error = %e, "Could not write the audit record.");
    }
    let clear_flow = format!("{FLOW_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax");
    let mut res = match outcome {
        Ok((_, _, cookie)) => {
            // A page, not a redirect: the navigation to the console then starts on our own
            // site, so the browser sends the SameSite=Strict session cookie with it.
            let mut res = page_response(
                StatusCode::OK,
                bare_page(
                    "Signed in",
                    "<p><a href=\"/console/\" id=\"continue\" data-autofollow>Continue to the console</a></p>",
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) => {
            tracing::warn!(error = %e, "Single sign-on refused.");
            page_response(status, login_page(app, Some(&format!("Single sign-on failed: {e}"))))
        }
    };
    if let Ok(v) = HeaderValue::from_str(&clear_flow) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

async fn finish(app: &App, oidc: &Oidc, req: &Request<Incoming>) -> Result<(UserRecord, String, String), OidcError> {
    let q = req.uri().query();
    let param =
        |k: &str| crate::http::query_param(q, k).and_then(|v| crate::http::percent_decode(&v.replace('+', " ")));
    // First: is this the answer to the sign-in this browser started? Nothing the
    // request says is shown or used before that.
    let flow = crate::api::cookie(req, FLOW_COOKIE)
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .and_then(|sealed| app.results.open(FLOW_AAD, &sealed))
        .and_then(|plain| serde_json::from_slice::<Flow>(&zeroize::Zeroizing::new(plain)).ok());
    let state_ok = match (&flow, param("state")) {
        (Some(f), Some(s)) => constant_time_eq(f.state.as_bytes(), s.as_bytes()),
        _ => false,
    };
    let Some(flow) = flow.filter(|_| state_ok) else {
        return Err(OidcError::Refused("wrong state: this answer is not for the sign-in this browser started".into()));
    };
    let now = app.clock.now();
    if now - flow.created > FLOW_TTL_SECS {
        return Err(OidcError::Refused("the sign-in took too long; start again".into()));
    }
    if let Some(err) = param("error") {
        let desc = param("error_description").unwrap_or_default();
        tracing::warn!(error = %err.chars().take(100).collect::<String>(), description = %desc.chars().take(300).collect::<String>(), "The identity provider refused the sign-in.");
        let code: String = err.chars().filter(|c| c.is_ascii_lowercase() || *c == '_').take(40).collect();
        return Err(OidcError::Refused(format!("the identity provider refused the sign-in ({code})")));
    }
    let Some(code) = param("code") else {
        return Err(OidcError::Refused("the answer has no code".into()));
    };
    let user = oidc.sign_in(&app.store, &code, &flow.verifier, &flow.nonce, now).await?;
    let s = crate::api::access::new_session(app, &user)
        .await
        .map_err(|e| OidcError::Provider(format!("could not create the session: {}", e.message)))?;
    tracing::info!(user = %user.name, issuer = %oidc.issuer(), "Signed in by single sign-on.");
    Ok((user, s.session_id, s.cookie))
}
