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
//!
//! When the token lets the viewer change some filters (`viewer_filters`), the page shows a
//! filter bar for those: a plain `GET` form back to the page (`f.NAME=…` as the console's
//! dashboards carry them). The page then asks the embed API to run the dashboard for the
//! values it shows (the viewer's, or at first the token's and the defaults) where it must
//! (`POST /v1/embed/run`, bounded there), waits a few seconds for those tiles, and reloads
//! itself (a `Refresh` header, no script) while any is still running, at most
//! [`MAX_RELOADS`] times for one change.

use std::fmt::Write as _;
use std::net::SocketAddr;

use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::api::{EmbedCall, RouteId};
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
    // project's own are a subset of those. Forms (the viewer's filter bar) go to the page
    // itself only.
    let ancestors = if ancestors.is_empty() { "'none'".to_owned() } else { ancestors.join(" ") };
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
         frame-ancestors {ancestors}"
    )
}

/// Seconds the page waits for a tile its viewer's change just ran before it shows
/// "Running…" and reloads itself.
const TILE_WAIT_SECS: u64 = 5;
/// Seconds between the page's reloads while a tile runs, and while the agent is busy.
const RELOAD_SECS: u64 = 3;
const BUSY_RELOAD_SECS: u64 = 15;
/// Most times the page reloads itself for one change (a minute of "Running…", five of
/// "busy"); then it says so and leaves reloading to the viewer, so a page left open on
/// a stuck agent does not keep adding reads to the audit log.
const MAX_RELOADS: u32 = 20;

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
    let (status, _, bytes) = call(app, &remote, token, EmbedCall::new(RouteId::EmbedProject, Vec::new())).await;
    let mut v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    // The token's project is the one in the path, or the page says nothing of either.
    if !status.is_success() || v["project"]["id"].as_str() != Some(id) {
        return page(
            &app.cfg.embed.frame_ancestors,
            StatusCode::UNAUTHORIZED,
            "Not available",
            "<p>This embed token has expired, was revoked, or is not for this dashboard.</p>",
        );
    }
    // The viewer's values of the filters the token lets them change; the address cannot
    // change the others (the API would refuse them, the page does not send them).
    let editable: Vec<String> =
        v["viewer_filters"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
    let mut values = crate::console::pages::filters::from_url(query);
    values.retain(|k, _| editable.contains(k));
    let filters_query = crate::console::pages::filters::api_query(&values);
    // The viewer's values as a `filters` object (text, as the address gives them).
    let given = Value::Object(values.iter().map(|(k, x)| (k.clone(), Value::from(x.as_str()))).collect());
    // A value refused: the page says why beside the bar, with the token's own values.
    let mut refused = None;
    if filters_query.is_some() {
        let mut with = EmbedCall::new(RouteId::EmbedProject, Vec::new());
        with.query.clone_from(&filters_query);
        let (status, _, bytes) = call(app, &remote, token, with).await;
        let got: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            v = got;
        } else {
            refused = Some(got["message"].as_str().unwrap_or("These values cannot be shown.").to_owned());
        }
    }
    // Framed by the project's own origins (or the control plane's when it has none).
    let ancestors = match app.store.project(id.to_owned()).await {
        Ok(Some(p)) => crate::api::projects::frame_ancestors(app, &p),
        _ => Vec::new(),
    };
    let params = v["parameters"].as_array().cloned().unwrap_or_default();
    let (mine, others): (Vec<Value>, Vec<Value>) =
        params.into_iter().partition(|p| p["name"].as_str().is_some_and(|n| editable.iter().any(|e| e == n)));
    // The bar for the viewer's filters (showing what they asked for when it was refused);
    // the other values said in words.
    let hidden = format!("<input type=\"hidden\" name=\"token\" value=\"{}\">", e(token));
    let shown = match &refused {
        Some(_) => given.clone(),
        None => v["filters"].clone(),
    };
    let action = format!("/embed/dashboards/{id}");
    let mut b = crate::console::pages::filters::form(&action, &hidden, &mine, &shown, refused.as_deref());
    b.push_str(&crate::console::pages::filters::summary(&others, &v["filters"]));
    if refused.is_some() {
        return page(&ancestors, StatusCode::BAD_REQUEST, v["project"]["name"].as_str().unwrap_or("Dashboard"), &b);
    }
    // A viewer who may change filters sees the values shown run, whether they chose them or
    // they are the token's and the defaults (the page as first framed: nothing may have run
    // for those); then the tiles are read. A token that lets its viewer change nothing
    // shows what has run, as before.
    let mut runs: Vec<Value> = Vec::new();
    if !editable.is_empty() {
        let mut run = EmbedCall::new(RouteId::EmbedRun, Vec::new());
        run.body = serde_json::to_vec(&serde_json::json!({ "filters": given })).unwrap_or_default().into();
        let (_, _, out) = call(app, &remote, token, run).await;
        let out: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
        runs = out["runs"].as_array().cloned().unwrap_or_default();
    }
    let outcome = |index: u64| {
        runs.iter().find(|r| r["index"].as_u64() == Some(index)).and_then(|r| r["outcome"].as_str()).unwrap_or("")
    };
    // The dashboard's tiles in its order and sizes, texts included, as in the console; the
    // query tiles read at once.
    let queries = v["queries"].as_array().cloned().unwrap_or_default();
    let tiles = tiles_of(&v);
    let reads = tiles.iter().map(|t| {
        let index = t["query"].as_u64().filter(|i| queries.iter().any(|q| q["index"].as_u64() == Some(*i)));
        let wait = index.filter(|i| matches!(outcome(*i), "queued" | "running")).map_or(0, |_| TILE_WAIT_SECS);
        let remote = &remote;
        let fq = filters_query.clone();
        let busy = index.is_some_and(|i| outcome(i) == "busy");
        async move {
            match index {
                Some(i) => Some(tile(app, remote, token, i, fq, wait, busy).await),
                None => None,
            }
        }
    });
    let read = futures_util::future::join_all(reads).await;
    let mut reload = None;
    b.push_str("<div class=\"tiles\">");
    for (t, got) in tiles.iter().zip(read) {
        if t["text"].is_string() {
            b.push_str(&text_tile(t));
            continue;
        }
        let Some((html, again)) = got else { continue };
        let Some(q) = t["query"].as_u64().and_then(|i| queries.iter().find(|q| q["index"].as_u64() == Some(i))) else {
            continue;
        };
        reload = match (reload, again) {
            (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
            (a, b) => a.or(b),
        };
        let index = q["index"].as_u64().unwrap_or_default();
        let _ = write!(
            b,
            "<section {} data-query=\"{index}\"><h2>{}</h2>",
            size_attrs(t).replace("{kind}", "query"),
            e(q["name"].as_str().unwrap_or_default())
        );
        b.push_str(&html);
        b.push_str("</section>");
    }
    b.push_str("</div>");
    let reloads = query_param(query, "r").and_then(|r| r.parse::<u32>().ok()).unwrap_or(0);
    let reload = reload.filter(|_| reloads < MAX_RELOADS);
    if reloads >= MAX_RELOADS {
        b.push_str(
            "<p class=\"muted\" data-stopped>Some results are still not ready; reload this page to look again.</p>",
        );
    }
    let mut res = page(&ancestors, StatusCode::OK, v["project"]["name"].as_str().unwrap_or("Dashboard"), &b);
    if let Some(secs) = reload {
        // Still running: the page reloads itself (no script), and runs nothing twice.
        if let Ok(v) = HeaderValue::from_str(&format!("{secs}; url={}", reload_url(id, query, reloads + 1))) {
            res.headers_mut().insert(header::REFRESH, v);
        }
    }
    res
}

/// The page's own address with its reload count `r` set to `n`.
fn reload_url(id: &str, query: Option<&str>, n: u32) -> String {
    let mut q: Vec<&str> =
        query.unwrap_or_default().split('&').filter(|kv| !kv.is_empty() && !kv.starts_with("r=")).collect();
    let r = format!("r={n}");
    q.push(&r);
    format!("/embed/dashboards/{id}?{}", q.join("&"))
}

/// One query's latest result for the token's customer (with the viewer's `filters`
/// query, waiting up to `wait` seconds), and when the page should reload to show it.
async fn tile(
    app: &App,
    remote: &str,
    token: &str,
    index: u64,
    filters: Option<String>,
    wait: u64,
    busy: bool,
) -> (String, Option<u64>) {
    let mut read = EmbedCall::new(RouteId::EmbedResult, vec![index.to_string()]);
    read.query = match (filters, wait) {
        (Some(f), 0) => Some(f),
        (Some(f), w) => Some(format!("{f}&wait={w}")),
        (None, 0) => None,
        (None, w) => Some(format!("wait={w}")),
    };
    let (status, headers, bytes) = call(app, remote, token, read).await;
    if status == StatusCode::NOT_FOUND && busy {
        return (
            "<p class=\"muted\" data-busy>The data source is busy; this page tries again shortly.</p>".into(),
            Some(BUSY_RELOAD_SECS),
        );
    }
    if status == StatusCode::NOT_FOUND {
        return ("<p class=\"muted\">No result yet.</p>".into(), None);
    }
    if status == StatusCode::ACCEPTED {
        return (
            "<p class=\"muted\" data-running>Running… this page shows the result when it is ready.</p>".into(),
            Some(RELOAD_SECS),
        );
    }
    if !status.is_success() {
        return ("<p class=\"muted\">This result cannot be shown.</p>".into(), None);
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let html = if ct.starts_with("image/svg+xml") {
        match sanitise(&bytes) {
            Ok(clean) => format!("<figure class=\"chart\">{}</figure>", clean.svg),
            Err(_) => "<p class=\"muted\">This chart cannot be shown.</p>".into(),
        }
    } else if ct.starts_with("application/json") {
        json_result_html(&serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    } else {
        "<p class=\"muted\">This result cannot be shown here.</p>".into()
    };
    (html, None)
}

/// Calls an embed route; `collect` of our own in-memory `Full` body, as the console's pages do.
#[allow(clippy::disallowed_methods)]
async fn call(app: &App, remote: &str, token: &str, c: EmbedCall) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    let (parts, body) = crate::api::call_embed(app, remote, token, c).await.into_parts();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_the_address_and_counts_itself() {
        let q = Some("token=a.b.c&f.region=South&r=3&f.period.from=2025-01-01");
        assert_eq!(
            reload_url("p1", q, 4),
            "/embed/dashboards/p1?token=a.b.c&f.region=South&f.period.from=2025-01-01&r=4"
        );
        assert_eq!(reload_url("p1", None, 1), "/embed/dashboards/p1?r=1");
        // A value that merely starts with r (f.r=…, region=…) is kept.
        assert_eq!(reload_url("p1", Some("f.r=1&region=x"), 2), "/embed/dashboards/p1?f.r=1&region=x&r=2");
    }
}
