//! The embed page: `/embed/dashboards/{id}?token=…`, a project's latest results for one
//! end customer, for an `<iframe>` in another product.
//!
//! It holds no session and reads nothing itself: each tile is read through the embed API
//! routes with the token as their bearer ([`crate::api::call_embed`]), so the token's
//! checks (algorithm, key, expiry, the project's revocation epoch) and the audit record
//! are the API's. It shows query names and rendered results only: no SQL, agent or
//! connection names, no statistics. Its `Content-Security-Policy` lets no script run and
//! names the origins that may frame it: the project's own `embed_origins`, or the control
//! plane's `embed.frame_ancestors` (none by default), of which a project's are a subset.

use std::fmt::Write as _;
use std::net::SocketAddr;

use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::api::RouteId;
use crate::app::App;
use crate::console::pages::dashboard::{size_attrs, text_tile, tiles_of};
use crate::console::pages::jobs::json_result_html;
use crate::console::sanitize_svg::{escape as e, sanitise};
use crate::http::{bytes_response, query_param, Body};
use crate::store::access::AccessStore;

/// Whether `path` is the embed page's.
pub fn is_embed_path(path: &str) -> bool {
    path.starts_with("/embed/")
}

/// The page's policy: no script at all, our own stylesheet, the sanitised charts inline,
/// and framing by `ancestors` only (none when empty).
fn csp(ancestors: &[String]) -> String {
    // Each entry was checked to be an origin when the configuration was read, and a
    // project's own are a subset of those.
    let ancestors = if ancestors.is_empty() { "'none'".to_owned() } else { ancestors.join(" ") };
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'none'; base-uri 'none'; \
         frame-ancestors {ancestors}"
    )
}

/// Serves `/embed/dashboards/{id}?token=…`.
pub async fn handle(app: &App, remote: SocketAddr, path: &str, query: Option<&str>) -> Response<Body> {
    let Some(id) = path.strip_prefix("/embed/dashboards/").filter(|id| !id.is_empty() && !id.contains('/')) else {
        return page(&app.cfg.embed.frame_ancestors, StatusCode::NOT_FOUND, "Not found", "<p>No such page.</p>");
    };
    let token = query_param(query, "token").unwrap_or_default();
    let well_formed = !token.is_empty()
        && token.len() <= crate::auth::embed::MAX_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !well_formed {
        return page(
            &app.cfg.embed.frame_ancestors,
            StatusCode::UNAUTHORIZED,
            "Not available",
            "<p>This dashboard needs a valid embed token.</p>",
        );
    }
    let remote = remote.to_string();
    let (status, _, bytes) = call(app, &remote, token, RouteId::EmbedProject, Vec::new()).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    // The token's project is the one in the path, or the page says nothing of either.
    if !status.is_success() || v["project"]["id"].as_str() != Some(id) {
        return page(
            &app.cfg.embed.frame_ancestors,
            StatusCode::UNAUTHORIZED,
            "Not available",
            "<p>This embed token has expired, was revoked, or is not for this dashboard.</p>",
        );
    }
    // Framed by the project's own origins (or the control plane's when it has none).
    let ancestors = match app.store.project(id.to_owned()).await {
        Ok(Some(p)) => crate::api::projects::frame_ancestors(app, &p),
        _ => Vec::new(),
    };
    // The dashboard's tiles in its order and sizes, texts included, as in the console.
    let queries = v["queries"].as_array().cloned().unwrap_or_default();
    // The filters the token fixed (the others' defaults), said above the tiles.
    let params = v["parameters"].as_array().cloned().unwrap_or_default();
    let mut b = crate::console::pages::filters::summary(&params, &v["filters"]);
    b.push_str("<div class=\"tiles\">");
    for t in tiles_of(&v) {
        if t["text"].is_string() {
            b.push_str(&text_tile(&t));
            continue;
        }
        let Some(q) = t["query"].as_u64().and_then(|i| queries.iter().find(|q| q["index"].as_u64() == Some(i))) else {
            continue;
        };
        let index = q["index"].as_u64().unwrap_or_default();
        let _ = write!(
            b,
            "<section {} data-query=\"{index}\"><h2>{}</h2>",
            size_attrs(&t).replace("{kind}", "query"),
            e(q["name"].as_str().unwrap_or_default())
        );
        b.push_str(&tile(app, &remote, token, index).await);
        b.push_str("</section>");
    }
    b.push_str("</div>");
    page(&ancestors, StatusCode::OK, v["project"]["name"].as_str().unwrap_or("Dashboard"), &b)
}

/// One query's latest result for the token's customer.
async fn tile(app: &App, remote: &str, token: &str, index: u64) -> String {
    let (status, headers, bytes) = call(app, remote, token, RouteId::EmbedResult, vec![index.to_string()]).await;
    if status == StatusCode::NOT_FOUND {
        return "<p class=\"muted\">No result yet.</p>".into();
    }
    if !status.is_success() {
        return "<p class=\"muted\">This result cannot be shown.</p>".into();
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if ct.starts_with("image/svg+xml") {
        match sanitise(&bytes) {
            Ok(clean) => format!("<figure class=\"chart\">{}</figure>", clean.svg),
            Err(_) => "<p class=\"muted\">This chart cannot be shown.</p>".into(),
        }
    } else if ct.starts_with("application/json") {
        json_result_html(&serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    } else {
        "<p class=\"muted\">This result cannot be shown here.</p>".into()
    }
}

/// Calls an embed route; `collect` of our own in-memory `Full` body, as the console's pages do.
#[allow(clippy::disallowed_methods)]
async fn call(
    app: &App,
    remote: &str,
    token: &str,
    route: RouteId,
    params: Vec<String>,
) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    let (parts, body) = crate::api::call_embed(app, remote, token, route, params).await.into_parts();
    let bytes = body.collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
    (parts.status, parts.headers, bytes)
}

/// The page around `body`: no navigation, no script, sized by its frame, framed by
/// `ancestors` only.
fn page(ancestors: &[String], status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head>\
         <body class=\"embed\"><main id=\"main\"><h1>{t}</h1>{body}</main></body></html>\n",
        t = e(title)
    );
    let mut res = bytes_response(status, "text/html; charset=utf-8", html.into_bytes());
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp(ancestors)) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    // The token is in the address: never sent on as a referrer, never cached.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}
