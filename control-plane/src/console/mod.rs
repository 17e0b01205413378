//! The console: server-rendered HTML pages on the API listener, for people in a browser.
//!
//! Every page reads its data through [`api::call`], i.e. the very handler, scope check,
//! data-access check and audit record that an API client gets: the console can show no
//! more than the API would give the same user. Every change is a `fetch` from
//! `console.js` to the JSON API with the session's `X-CSRF-Token`, so there is one place
//! that decides who may change what.
//!
//! The pages carry a strict Content-Security-Policy (scripts and styles only from our own
//! embedded assets, nothing inline, no framing) and an agent's SVG is rebuilt from an
//! allow-list ([`crate::console::sanitize_svg`]) before it is put into a page.

mod download;
pub mod embed;
mod pages;
pub mod sanitize_svg;
pub mod sso;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;

use crate::api::{self, RouteId};
use crate::app::App;
use crate::auth::access::{Caller, Credential, Scope};
use crate::console::sanitize_svg::escape as e;
use crate::http::{bytes_response, ApiError, Body};

const CSS: &str = include_str!("../../assets/console.css");
const JS: &str = include_str!("../../assets/console.js");
/// The query page's SQL editor: CodeMirror 6 bundled by scripts/build-editor.sh (MIT, its
/// notices at the top of the file); loaded by that page only.
const EDITOR_JS: &str = include_str!("../../assets/editor.js");
/// The query page's schema browser (issue 23); loaded by that page only.
const SCHEMA_JS: &str = include_str!("../../assets/schema.js");
/// A project's dashboard editing and the query page's "Add to project" / "Save to
/// project"; loaded by those pages only.
const DASHBOARD_JS: &str = include_str!("../../assets/dashboard.js");
/// The query page's Filters part following the SQL as it is edited; loaded with that part
/// only (`pages/bindings.rs`).
const BINDINGS_JS: &str = include_str!("../../assets/bindings.js");

/// The pages' policy: our own script and style files only, no inline script or style,
/// no plugins, no framing by anyone, forms and fetches to ourselves only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Whether `path` belongs to the console (or is the root, which leads to it).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with("/console/") || embed::is_embed_path(path)
}

/// Serves one console request.
pub async fn handle(app: Arc<App>, remote: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return page_response(
            StatusCode::METHOD_NOT_ALLOWED,
            bare_page("Not allowed", "<p>The console changes things through the API only.</p>"),
        );
    }
    if embed::is_embed_path(&path) {
        return embed::handle(&app, remote, &path, query.as_deref()).await;
    }
    match path.as_str() {
        "/" | "/console" => return redirect("/console/"),
        "/console/assets/console.css" => return asset(CSS, "text/css; charset=utf-8"),
        "/console/assets/console.js" => return asset(JS, "text/javascript; charset=utf-8"),
        "/console/assets/editor.js" => return asset(EDITOR_JS, "text/javascript; charset=utf-8"),
        "/console/assets/schema.js" => return asset(SCHEMA_JS, "text/javascript; charset=utf-8"),
        "/console/assets/dashboard.js" => return asset(DASHBOARD_JS, "text/javascript; charset=utf-8"),
        "/console/assets/bindings.js" => return asset(BINDINGS_JS, "text/javascript; charset=utf-8"),
        "/console/login" => return page_response(StatusCode::OK, login_page(&app, None)),
        "/console/oidc/start" => return sso::start(&app).await,
        "/console/oidc/callback" => return sso::callback(&app, remote, &req).await,
        _ => {}
    }
    let caller = match api::session_cookie(&req) {
        Some(c) => api::session_caller(&app, c).await.ok(),
        None => None,
    };
    let Some(caller) = caller else {
        return redirect("/console/login");
    };
    let page = Page { app: &app, caller, remote: remote.to_string() };
    let segs: Vec<&str> = path.trim_start_matches("/console/").split('/').collect();
    let q = query.as_deref();
    let result = match segs.as_slice() {
        [""] => {
            return redirect(if page.caller.require(Scope::AgentsRead).is_ok() {
                "/console/agents"
            } else {
                "/console/projects"
            })
        }
        ["agents"] => page.agents().await,
        ["query"] => page.query(q).await,
        ["jobs"] => page.jobs(q).await,
        ["jobs", id] => page.job(id).await,
        ["jobs", id, "result"] => {
            return match page.result_fragment(id).await {
                Ok(html) => page_response(StatusCode::OK, html),
                Err(err) => page_response(err.status, format!("<p class=\"error\">{}</p>", e(&err.message))),
            }
        }
        ["jobs", id, "download.svg"] => return page.download(id, download::Format::Svg).await,
        ["jobs", id, "download.csv"] => return page.download(id, download::Format::Csv).await,
        ["projects"] => page.projects().await,
        ["projects", id] => page.project(id, q).await,
        ["tokens"] => page.tokens().await,
        ["admin", "users"] => page.users().await,
        ["admin", "enrolment"] => page.enrolment().await,
        ["admin", "audit"] => page.audit(q).await,
        _ => Err(ApiError::not_found(format!("no console page {path}"))),
    };
    match result {
        Ok((title, body)) => page_response(StatusCode::OK, page.layout(&title, &body)),
        Err(err) => {
            let body = format!("<p class=\"error\" role=\"alert\">{}</p>", e(&err.message));
            page_response(err.status, page.layout(&error_title(err.status), &body))
        }
    }
}

fn error_title(status: StatusCode) -> String {
    match status {
        StatusCode::FORBIDDEN => "Not allowed".into(),
        StatusCode::NOT_FOUND => "Not found".into(),
        s => format!("Error {}", s.as_u16()),
    }
}

/// An HTML response with the console's security headers.
pub fn page_response(status: StatusCode, html: String) -> Response<Body> {
    let mut res = bytes_response(status, "text/html; charset=utf-8", html.into_bytes());
    secure_headers(&mut res);
    res
}

pub(crate) fn secure_headers(res: &mut Response<Body>) {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
}

/// A 303 to `to` (a path of ours).
pub fn redirect(to: &str) -> Response<Body> {
    let mut res = bytes_response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", Vec::new());
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut res);
    res
}

fn asset(text: &'static str, content_type: &'static str) -> Response<Body> {
    let mut res = bytes_response(StatusCode::OK, content_type, text.as_bytes().to_vec());
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300"));
    secure_headers(&mut res);
    res
}

/// A page without navigation (sign-in, errors before sign-in).
pub fn bare_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · Outpost</title><link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script></head>\
         <body class=\"bare\"><main id=\"main\"><h1>{t}</h1>{body}</main></body></html>\n",
        t = e(title)
    )
}

/// The sign-in page; `error` comes from a refused single sign-on.
pub fn login_page(app: &App, error: Option<&str>) -> String {
    let mut b = String::new();
    if let Some(m) = error {
        let _ = write!(b, "<p class=\"error\" role=\"alert\">{}</p>", e(m));
    }
    if app.cfg.oidc.is_some() {
        b.push_str(
            "<p><a class=\"button primary\" id=\"sso\" href=\"/console/oidc/start\">Sign in with single sign-on</a></p>\
             <p class=\"muted\">or with a local account:</p>",
        );
    }
    b.push_str(
        "<form data-api=\"POST /v1/sessions\" data-then=\"go:/console/\" class=\"stack narrow\">\
         <label>User name <input name=\"user\" autocomplete=\"username\" required autofocus></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\" class=\"primary\">Sign in</button><output role=\"alert\"></output></form>",
    );
    bare_page("Sign in", &b)
}

pub(crate) struct Page<'a> {
    app: &'a App,
    caller: Caller,
    remote: String,
}

/// A page's title and body, or why it cannot be shown.
pub(crate) type PageResult = Result<(String, String), ApiError>;

impl Page<'_> {
    pub(crate) fn can(&self, s: Scope) -> bool {
        self.caller.require(s).is_ok()
    }

    /// Calls the API as the signed-in user and returns the response.
    #[allow(clippy::disallowed_methods)] // `collect` of our own in-memory `Full` body
    pub(crate) async fn raw(
        &self,
        route: RouteId,
        params: &[&str],
        query: Option<&str>,
    ) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
        let res = api::call(
            self.app,
            &self.caller,
            &self.remote,
            route,
            params.iter().map(|p| (*p).to_owned()).collect(),
            query,
        )
        .await;
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
        (parts.status, parts.headers, bytes)
    }

    /// Calls the API as the signed-in user; a refusal becomes the page's error.
    pub(crate) async fn get(&self, route: RouteId, params: &[&str], query: Option<&str>) -> Result<Value, ApiError> {
        let (status, _, bytes) = self.raw(route, params, query).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            Ok(v)
        } else {
            let m = v["message"].as_str().unwrap_or("the request was refused").to_owned();
            Err(ApiError::new(status, "refused", m))
        }
    }

    fn layout(&self, title: &str, body: &str) -> String {
        let csrf = match &self.caller.credential {
            Credential::Session { csrf, .. } => csrf.as_str(),
            Credential::Token { .. } => "",
        };
        // The menu shows what the user's role may open; the pages check again.
        let menu: [(Option<Scope>, &str, &str); 8] = [
            (Some(Scope::AgentsRead), "/console/agents", "Agents"),
            (Some(Scope::JobsDispatch), "/console/query", "Query"),
            (Some(Scope::ResultsRead), "/console/jobs", "Jobs"),
            (None, "/console/projects", "Projects"),
            (None, "/console/tokens", "API tokens"),
            (Some(Scope::UsersAdmin), "/console/admin/users", "Users &amp; shares"),
            (Some(Scope::AgentsAdmin), "/console/admin/enrolment", "Enrol an agent"),
            (Some(Scope::AuditRead), "/console/admin/audit", "Audit log"),
        ];
        let mut nav = String::new();
        for (scope, href, label) in menu {
            if scope.is_none_or(|s| self.can(s)) {
                let _ = write!(nav, "<li><a href=\"{href}\">{label}</a></li>");
            }
        }
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"outpost-csrf\" content=\"{csrf}\"><title>{t} · Outpost</title>\
             <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
             <script src=\"/console/assets/console.js\" defer></script></head><body>\
             <a class=\"skip\" href=\"#main\">Skip to content</a>\
             <header><a class=\"brand\" href=\"/console/\">Outpost</a><nav aria-label=\"Main\"><ul>{nav}</ul></nav>\
             <div class=\"who\"><span id=\"who\">{user}</span> <span class=\"badge\">{role}</span> \
             <button type=\"button\" data-signout>Sign out</button></div></header>\
             <main id=\"main\"><h1>{t}</h1>{body}</main></body></html>\n",
            csrf = e(csrf),
            t = e(title),
            user = e(&self.caller.user),
            role = e(self.caller.role.as_str()),
        )
    }
}

/// Whether a job in `state` has ended.
pub(crate) fn is_final(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "rejected" | "expired" | "cancelled")
}

/// `text` on one line (whitespace runs as one space), cut to `max` characters with `…`.
pub(crate) fn snippet(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut: String = one_line.chars().take(max).collect();
    if one_line.chars().count() > max {
        cut.push('…');
    }
    cut
}

/// A number from an API answer; anything else shows as `—` (never raw markup).
pub(crate) fn num(v: &Value) -> String {
    if v.is_number() {
        v.to_string()
    } else {
        "—".into()
    }
}

/// A Unix time as UTC text in a `<time>` element; `—` when absent.
pub(crate) fn when(v: &Value) -> String {
    match v.as_i64().and_then(|t| chrono::DateTime::from_timestamp(t, 0)) {
        Some(t) => {
            format!("<time datetime=\"{}\">{}</time>", t.format("%Y-%m-%dT%H:%M:%SZ"), t.format("%Y-%m-%d %H:%M UTC"))
        }
        None => "—".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_allows_no_inline_script_or_framing() {
        assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe"));
        assert!(CSP.contains("frame-ancestors 'none'"));
        assert!(is_console_path("/") && is_console_path("/console/x") && !is_console_path("/consoles"));
        assert_eq!(snippet("SELECT a,\n\t b  FROM t", 12), "SELECT a, b …");
        assert_eq!(snippet("SELECT 1", 12), "SELECT 1");
    }

    #[test]
    fn the_sql_editor_bundle_carries_the_licence_notices_of_what_it_bundles() {
        assert!(EDITOR_JS.starts_with("/*! Outpost console SQL editor: CodeMirror 6"));
        for package in ["@codemirror/view", "@codemirror/lang-sql", "@lezer/lr", "style-mod"] {
            assert!(EDITOR_JS[..20_000].contains(&format!(" * {package} ")), "{package} has no notice");
        }
        assert!(EDITOR_JS.contains("Permission is hereby granted, free of charge"));
    }
}
