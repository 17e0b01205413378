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

pub mod sanitize_svg;

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
use crate::net::http::{bytes_response, query_param, ApiError, Body};
use crate::store::Store;

const CSS: &str = include_str!("../../assets/console.css");
const JS: &str = include_str!("../../assets/console.js");

/// The pages' policy: our own script and style files only, no inline script or style,
/// no plugins, no framing by anyone, forms and fetches to ourselves only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Whether `path` belongs to the console (or is the root, which leads to it).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path == "/console" || path.starts_with("/console/")
}

/// Serves one console request.
pub async fn handle<S: Store>(app: Arc<App<S>>, remote: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return page_response(
            StatusCode::METHOD_NOT_ALLOWED,
            bare_page("Not allowed", "<p>The console changes things through the API only.</p>"),
        );
    }
    match path.as_str() {
        "/" | "/console" => return redirect("/console/"),
        "/console/assets/console.css" => return asset(CSS, "text/css; charset=utf-8"),
        "/console/assets/console.js" => return asset(JS, "text/javascript; charset=utf-8"),
        "/console/login" => return page_response(StatusCode::OK, login_page(&app, None)),
        "/console/oidc/start" => return crate::auth::oidc::start(&app).await,
        "/console/oidc/callback" => return crate::auth::oidc::callback(&app, remote, &req).await,
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
        ["jobs"] => page.jobs().await,
        ["jobs", id] => page.job(id).await,
        ["jobs", id, "result"] => {
            return match page.result_fragment(id).await {
                Ok(html) => page_response(StatusCode::OK, html),
                Err(err) => page_response(err.status, format!("<p class=\"error\">{}</p>", e(&err.message))),
            }
        }
        ["projects"] => page.projects().await,
        ["projects", id] => page.project(id).await,
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

fn secure_headers(res: &mut Response<Body>) {
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
pub fn login_page<S: Store>(app: &App<S>, error: Option<&str>) -> String {
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

struct Page<'a, S: Store> {
    app: &'a App<S>,
    caller: Caller,
    remote: String,
}

type PageResult = Result<(String, String), ApiError>;

impl<S: Store> Page<'_, S> {
    fn can(&self, s: Scope) -> bool {
        self.caller.require(s).is_ok()
    }

    /// Calls the API as the signed-in user and returns the response.
    #[allow(clippy::disallowed_methods)] // `collect` of our own in-memory `Full` body
    async fn raw(
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
    async fn get(&self, route: RouteId, params: &[&str], query: Option<&str>) -> Result<Value, ApiError> {
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

    async fn agents(&self) -> PageResult {
        let v = self.get(RouteId::AgentsList, &[], None).await?;
        let admin = self.can(Scope::AgentsAdmin);
        let dispatch = self.can(Scope::JobsDispatch);
        let mut b = String::new();
        let agents = v["agents"].as_array().cloned().unwrap_or_default();
        if agents.is_empty() {
            b.push_str("<p class=\"muted\">No agents yet");
            if admin {
                b.push_str(": <a href=\"/console/admin/enrolment\">create an enrolment token</a> and enrol one");
            }
            b.push_str(".</p>");
        }
        b.push_str(
            "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Agent</th><th scope=\"col\">Status</th>\
             <th scope=\"col\">Last seen</th><th scope=\"col\">Version</th><th scope=\"col\">Certificate expires</th>\
             <th scope=\"col\">Connections</th>",
        );
        if admin {
            b.push_str("<th scope=\"col\"><span class=\"sr\">Actions</span></th>");
        }
        b.push_str("</tr></thead><tbody>");
        for a in &agents {
            let name = a["name"].as_str().unwrap_or_default();
            let status = a["status"].as_str().unwrap_or("unknown");
            let mut conns = String::new();
            for c in a["connections"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if dispatch && status != "revoked" {
                    let _ = write!(
                        conns,
                        "<li><a href=\"/console/query?agent={}&amp;connection={}\">{}</a></li>",
                        pct(name),
                        pct(c),
                        e(c)
                    );
                } else {
                    let _ = write!(conns, "<li>{}</li>", e(c));
                }
            }
            let _ = write!(
                b,
                "<tr data-agent=\"{n}\"><th scope=\"row\">{n}</th><td><span class=\"status {s}\">{s}</span></td>\
                 <td>{seen}</td><td>{ver}</td><td>{cert}</td><td><ul class=\"plain\">{conns}</ul></td>",
                n = e(name),
                s = e(status),
                seen = when(&a["last_seen"]),
                ver = e(a["version"].as_str().unwrap_or("—")),
                cert = when(&a["cert_not_after"]),
            );
            if admin {
                b.push_str("<td>");
                if status != "revoked" {
                    let _ = write!(
                        b,
                        "<button type=\"button\" class=\"danger\" data-api=\"POST /v1/agents/{n}/revoke\" \
                         data-confirm=\"Revoke agent {n}? It will need a new enrolment.\" data-then=\"reload\">Revoke</button>",
                        n = e(&pct(name))
                    );
                }
                b.push_str("</td>");
            }
            b.push_str("</tr>");
        }
        b.push_str("</tbody></table></div>");
        Ok(("Agents".into(), b))
    }

    async fn query(&self, q: Option<&str>) -> PageResult {
        if !self.can(Scope::JobsDispatch) {
            return Err(api::forbidden("your role may not run queries"));
        }
        let v = self.get(RouteId::AgentsList, &[], None).await?;
        let want_agent = query_param(q, "agent").and_then(crate::api::access::percent_decode).unwrap_or_default();
        let want_conn = query_param(q, "connection").and_then(crate::api::access::percent_decode).unwrap_or_default();
        let mut agents = String::new();
        let mut conns = String::new();
        for a in v["agents"].as_array().into_iter().flatten().filter(|a| a["status"] != "revoked") {
            let name = a["name"].as_str().unwrap_or_default();
            let sel = if name == want_agent { " selected" } else { "" };
            let _ = write!(
                agents,
                "<option value=\"{n}\"{sel}>{n} ({})</option>",
                e(a["status"].as_str().unwrap_or("")),
                n = e(name)
            );
            for c in a["connections"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let sel = if name == want_agent && c == want_conn { " selected" } else { "" };
                let _ =
                    write!(conns, "<option value=\"{c}\" data-agent=\"{n}\"{sel}>{c}</option>", c = e(c), n = e(name));
            }
        }
        if agents.is_empty() {
            return Ok((
                "Query".into(),
                "<p class=\"muted\">No connection is shared with you yet; ask an admin to share one.</p>".into(),
            ));
        }
        let mut kinds = String::new();
        for k in outpost_protocol::RENDER_KINDS {
            let sel = if k == "bar" { " selected" } else { "" };
            let _ = write!(kinds, "<option value=\"{k}\"{sel}>{k}</option>");
        }
        let body = format!(
            "<form id=\"query-form\" class=\"stack\" data-api=\"POST /v1/jobs\" data-then=\"go:/console/jobs/{{id}}\">\
             <div class=\"row\"><label>Agent <select name=\"agent\" required data-agent-select>{agents}</select></label>\
             <label>Connection <select name=\"connection\" required data-connection-select>{conns}</select></label></div>\
             <label>SQL <textarea name=\"sql\" rows=\"8\" required spellcheck=\"false\" class=\"code\"></textarea></label>\
             <label>Parameters <span class=\"hint\">one per line as type:value, for $1, $2… (types: text, int, float, bool, null)</span>\
             <textarea name=\"params\" rows=\"2\" data-type=\"params\" spellcheck=\"false\" class=\"code\"></textarea></label>\
             <fieldset><legend>Render</legend><div class=\"row\">\
             <label>Kind <select name=\"render.kind\" data-kind-select>{kinds}</select></label>\
             <label data-kinds=\"bar line area scatter\">x column <input name=\"render.x\"></label>\
             <label data-kinds=\"bar line area scatter\">y columns <span class=\"hint\">comma-separated</span><input name=\"render.y\" data-type=\"list\"></label>\
             <label data-kinds=\"pie\">Label column <input name=\"render.label\"></label>\
             <label data-kinds=\"pie\">Value column <input name=\"render.value\"></label>\
             <label data-kinds=\"scalar\">Column <input name=\"render.column\"></label>\
             <label data-kinds=\"scalar\">Label <input name=\"render.label\" data-optional></label>\
             <label data-kinds=\"bar line area scatter pie\">Title <input name=\"render.title\" data-optional></label>\
             <label data-kinds=\"table\">Max rows <input name=\"render.max_rows\" type=\"number\" min=\"1\" data-type=\"int\" data-optional></label>\
             <label data-kinds=\"bar\" class=\"check\"><input type=\"checkbox\" name=\"render.stacked\" data-type=\"bool\"> stacked</label>\
             <input type=\"hidden\" name=\"render.format\" value=\"json\" data-kinds=\"table\">\
             </div></fieldset>\
             <label>Use a cached result up to (seconds) <input name=\"cache.max_age_secs\" type=\"number\" min=\"0\" value=\"0\" data-type=\"int\"></label>\
             <div class=\"row\"><button type=\"submit\" class=\"primary\">Run</button></div>\
             <fieldset><legend>Save as a project</legend><div class=\"row\">\
             <label>Project name <input name=\"_project\" data-optional></label>\
             <label>Query name <input name=\"_query_name\" data-optional></label>\
             <button type=\"submit\" data-api=\"POST /v1/projects\" data-wrap=\"project\" data-then=\"go:/console/projects/{{id}}\">Save as project</button>\
             </div></fieldset><output role=\"alert\"></output></form>"
        );
        Ok(("Query".into(), body))
    }

    async fn jobs(&self) -> PageResult {
        let v = self.get(RouteId::JobsList, &[], Some("limit=100")).await?;
        let mut b = String::from(
            "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">State</th>\
             <th scope=\"col\">Agent / connection</th><th scope=\"col\">Created</th></tr></thead><tbody>",
        );
        for j in v["jobs"].as_array().into_iter().flatten() {
            let id = j["id"].as_str().unwrap_or_default();
            let target = match (j["agent"].as_str(), j["connection"].as_str()) {
                (Some(a), Some(c)) => format!("{} / {}", e(a), e(c)),
                _ => "—".into(),
            };
            let _ = write!(
                b,
                "<tr><td><a href=\"/console/jobs/{i}\"><code>{i}</code></a></td><td><span class=\"status {s}\">{s}</span></td>\
                 <td>{target}</td><td>{}</td></tr>",
                when(&j["created_at"]),
                i = e(id),
                s = e(j["state"].as_str().unwrap_or("")),
            );
        }
        b.push_str("</tbody></table></div>");
        Ok(("Jobs".into(), b))
    }

    async fn job(&self, id: &str) -> PageResult {
        let j = self.get(RouteId::JobsRead, &[id], None).await?;
        let mut b = String::from("<dl class=\"facts\">");
        if let (Some(a), Some(c)) = (j["agent"].as_str(), j["connection"].as_str()) {
            let _ = write!(b, "<dt>Agent</dt><dd>{}</dd><dt>Connection</dt><dd>{}</dd>", e(a), e(c));
        }
        let _ = write!(
            b,
            "<dt>Created</dt><dd>{}</dd><dt title=\"The job's signature is valid until then: an agent that has not \
             started it by then never will. Its result is kept for the retention period after it ends.\">Must start by</dt>\
             <dd>{}</dd></dl>",
            when(&j["created_at"]),
            when(&j["expires_at"])
        );
        // Who asked for what, to those who may read the SQL (the API refuses the others).
        if let Ok(spec) = self.get(RouteId::JobsSpec, &[id], None).await {
            let r = &spec["requester"];
            if let Some(user) = r["user"].as_str().or(r["customer"].as_str()) {
                let via = r["via"].as_str().map(|v| format!(" ({})", e(v))).unwrap_or_default();
                let _ = write!(b, "<p class=\"requester\">Requested by <strong>{}</strong>{via}</p>", e(user));
            }
            let _ = write!(
                b,
                "<h2>SQL</h2><pre class=\"sql\" data-sql><code>{}</code></pre>",
                e(spec["sql"].as_str().unwrap_or_default())
            );
        }
        b.push_str(&self.job_section(&j).await);
        Ok((format!("Job {id}"), b))
    }

    /// A job's live section: status line, cancel button, and the result once final.
    async fn job_section(&self, j: &Value) -> String {
        let id = j["id"].as_str().unwrap_or_default();
        let state = j["state"].as_str().unwrap_or("unknown");
        let result = if is_final(state) { self.result_html(j).await } else { String::new() };
        let cancel = if !is_final(state) && j["agent"].is_string() && self.can(Scope::JobsDispatch) {
            format!(
                "<button type=\"button\" data-api=\"POST /v1/jobs/{}/cancel\" data-then=\"reload\" data-cancel>Cancel</button>",
                e(id)
            )
        } else {
            String::new()
        };
        format!(
            "<section class=\"job\" data-job=\"{i}\" data-state=\"{s}\"><p class=\"status-line\" aria-live=\"polite\">\
             Status: <span class=\"status {s}\" data-status>{s}</span> {cancel}</p><div data-result>{result}</div></section>",
            i = e(id),
            s = e(state),
        )
    }

    async fn result_fragment(&self, id: &str) -> Result<String, ApiError> {
        let j = self.get(RouteId::JobsRead, &[id], None).await?;
        Ok(self.result_html(&j).await)
    }

    /// A final job's result: the sanitised chart or the table, with its statistics and
    /// what the agent's egress policy did; or why it failed.
    async fn result_html(&self, j: &Value) -> String {
        let id = j["id"].as_str().unwrap_or_default();
        let state = j["state"].as_str().unwrap_or_default();
        if state != "succeeded" {
            let reason = &j["reason"];
            return format!(
                "<p class=\"error\">The job ended <strong>{}</strong>{}{}</p>",
                e(state),
                reason["code"].as_str().map(|c| format!(" ({})", e(c))).unwrap_or_default(),
                reason["message"].as_str().filter(|m| !m.is_empty()).map(|m| format!(": {}", e(m))).unwrap_or_default(),
            );
        }
        let mut b = String::new();
        let (status, headers, bytes) = self.raw(RouteId::JobsResult, &[id], None).await;
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let _ =
                write!(b, "<p class=\"error\">{}</p>", e(v["message"].as_str().unwrap_or("the result cannot be read")));
        } else if ct.starts_with("image/svg+xml") {
            match crate::console::sanitize_svg::sanitise(&bytes) {
                Ok(clean) => {
                    let _ = write!(b, "<figure class=\"chart\">{}</figure>", clean.svg);
                    if clean.dropped_elements + clean.dropped_attributes > 0 {
                        tracing::warn!(
                            job_id = %id,
                            elements = clean.dropped_elements,
                            attributes = clean.dropped_attributes,
                            "An agent's SVG held markup outside the allow-list; it was removed before display."
                        );
                        let _ = write!(
                            b,
                            "<p class=\"warning\" data-sanitised>The agent's SVG held {} element(s) and {} attribute(s) \
                             that are not drawing markup (such as scripts or event handlers); they were removed.</p>",
                            clean.dropped_elements, clean.dropped_attributes
                        );
                    }
                }
                Err(err) => {
                    let _ = write!(b, "<p class=\"error\">The chart cannot be shown: {}</p>", e(&err.to_string()));
                }
            }
        } else if ct.starts_with("application/json") {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            b.push_str(&json_result_html(&v));
        } else {
            let _ = write!(
                b,
                "<p>A result of type <code>{}</code> ({} bytes); read it with <code>GET /v1/jobs/{}/result</code>.</p>",
                e(&ct),
                bytes.len(),
                e(id)
            );
        }
        b.push_str(&stats_html(&j["stats"]));
        b
    }

    async fn projects(&self) -> PageResult {
        let v = self.get(RouteId::ProjectsList, &[], None).await?;
        let mut b = String::new();
        if self.can(Scope::ProjectsWrite) && self.can(Scope::JobsDispatch) {
            b.push_str("<p>Save a query as a project from the <a href=\"/console/query\">Query</a> page.</p>");
        }
        b.push_str(
            "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Project</th><th scope=\"col\">Owner</th>\
             <th scope=\"col\">Your access</th><th scope=\"col\">Queries</th><th scope=\"col\">Updated</th></tr></thead><tbody>",
        );
        for p in v["projects"].as_array().into_iter().flatten() {
            let _ = write!(
                b,
                "<tr><th scope=\"row\"><a href=\"/console/projects/{}\">{}</a></th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                e(p["id"].as_str().unwrap_or_default()),
                e(p["name"].as_str().unwrap_or_default()),
                e(p["owner"].as_str().unwrap_or_default()),
                e(p["access"].as_str().unwrap_or_default()),
                p["queries"].as_array().map_or(0, Vec::len),
                when(&p["updated_at"]),
            );
        }
        b.push_str("</tbody></table></div>");
        Ok(("Projects".into(), b))
    }

    async fn project(&self, id: &str) -> PageResult {
        let p = self.get(RouteId::ProjectsRead, &[id], None).await?;
        let results = self.get(RouteId::ProjectsResults, &[id], None).await?;
        let pid = e(p["id"].as_str().unwrap_or_default());
        let access = p["access"].as_str().unwrap_or_default();
        let can_edit = matches!(access, "owner" | "admin" | "edit");
        let mut b = format!(
            "<dl class=\"facts\"><dt>Owner</dt><dd>{}</dd><dt>Your access</dt><dd>{}</dd></dl>",
            e(p["owner"].as_str().unwrap_or_default()),
            e(access)
        );
        if self.can(Scope::ProjectsRun) {
            let _ = write!(
                b,
                "<form class=\"row\" data-api=\"POST /v1/projects/{pid}/run\" data-then=\"reload\">\
                 <label>End customer <span class=\"hint\">only for queries that take one</span>\
                 <input name=\"customer\" data-optional></label><button type=\"submit\" class=\"primary\">Refresh</button>\
                 <output role=\"alert\"></output></form>"
            );
        }
        let latest = results["queries"].as_array().cloned().unwrap_or_default();
        for q in p["queries"].as_array().into_iter().flatten() {
            let idx = q["index"].as_u64().unwrap_or_default();
            let kind = q["render"]["kind"].as_str().or(q["render_kind"].as_str()).unwrap_or_default();
            let _ = write!(
                b,
                "<section class=\"query\" data-query=\"{idx}\"><h2>{} <span class=\"badge\">{}</span></h2>",
                e(q["name"].as_str().unwrap_or_default()),
                e(kind)
            );
            if let Some(sql) = q["sql"].as_str() {
                let _ = write!(
                    b,
                    "<details><summary>SQL on {} / {}</summary><pre class=\"code\" data-sql>{}</pre></details>",
                    e(q["agent"].as_str().unwrap_or_default()),
                    e(q["connection"].as_str().unwrap_or_default()),
                    e(sql)
                );
            }
            let job = latest.iter().find(|l| l["index"].as_u64() == Some(idx)).map(|l| &l["job"]);
            match job {
                Some(j) if j.is_object() => b.push_str(&self.job_section(j).await),
                _ => b.push_str("<p class=\"muted\">Not run yet.</p>"),
            }
            b.push_str("</section>");
        }
        if let Some(grants) = p["grants"].as_array() {
            b.push_str("<section><h2>Sharing</h2><ul class=\"plain\">");
            for g in grants {
                let user = g["user"].as_str().unwrap_or_default();
                let _ = write!(
                    b,
                    "<li data-grant=\"{u}\">{u}: {a} <button type=\"button\" data-api=\"DELETE /v1/projects/{pid}/grants/{pu}\" \
                     data-then=\"reload\">Remove</button></li>",
                    u = e(user),
                    a = e(g["access"].as_str().unwrap_or_default()),
                    pu = e(&pct(user))
                );
            }
            let _ = write!(
                b,
                "</ul><form class=\"row\" data-api=\"PUT /v1/projects/{pid}/grants/{{_user}}\" data-then=\"reload\">\
                 <label>User <input name=\"_user\" required></label>\
                 <label>Access <select name=\"access\"><option value=\"view-app\">view-app (results only)</option>\
                 <option value=\"view-logic\">view-logic (results and SQL)</option><option value=\"edit\">edit</option></select></label>\
                 <button type=\"submit\">Share</button><output role=\"alert\"></output></form></section>"
            );
        }
        if can_edit && self.can(Scope::EmbedCreate) {
            let ttl = self.app.cfg.embed.default_ttl_secs;
            let _ = write!(
                b,
                "<section><h2>Embed</h2><form class=\"row\" data-api=\"POST /v1/projects/{pid}/embed-tokens\" data-then=\"embed\">\
                 <label>End customer <input name=\"customer\" required></label>\
                 <label>Lifetime (seconds) <input name=\"ttl_secs\" type=\"number\" min=\"1\" value=\"{ttl}\" data-type=\"int\"></label>\
                 <button type=\"submit\">Create embed snippet</button><output role=\"alert\"></output></form>\
                 <div data-embed-out hidden><label>Snippet <textarea readonly rows=\"8\" class=\"code\" data-copy-source></textarea></label>\
                 <button type=\"button\" data-copy>Copy</button></div></section>"
            );
        }
        if matches!(access, "owner" | "admin") && self.can(Scope::ProjectsWrite) {
            let _ = write!(
                b,
                "<p><button type=\"button\" class=\"danger\" data-api=\"DELETE /v1/projects/{pid}\" \
                 data-confirm=\"Delete this project?\" data-then=\"go:/console/projects\">Delete project</button></p>"
            );
        }
        Ok((p["name"].as_str().unwrap_or("Project").to_owned(), b))
    }

    async fn tokens(&self) -> PageResult {
        let all = self.caller.is_admin();
        let v = self.get(RouteId::TokensList, &[], all.then_some("all=true")).await?;
        let mut b = String::new();
        if self.can(Scope::TokensWrite) {
            let mut scopes = String::new();
            for s in self.caller.scopes.names() {
                let _ = write!(scopes, "<label class=\"check\"><input type=\"checkbox\" name=\"scopes\" value=\"{s}\" data-type=\"checks\"> {s}</label>");
            }
            let _ = write!(
                b,
                "<form class=\"stack\" data-api=\"POST /v1/tokens\" data-then=\"secret:token\">\
                 <div class=\"row\"><label>Name <input name=\"name\" required></label>\
                 <label>Expires in (days) <input name=\"expires_in_days\" type=\"number\" min=\"1\" value=\"{}\" data-type=\"int\"></label></div>\
                 <fieldset><legend>Scopes</legend><div class=\"row\">{scopes}</div></fieldset>\
                 <button type=\"submit\" class=\"primary\">Create token</button><output role=\"alert\"></output>\
                 <div data-secret-out hidden><p>Copy it now: it is shown only once.</p>\
                 <input readonly class=\"code\" data-copy-source aria-label=\"New token\"><button type=\"button\" data-copy>Copy</button></div></form>",
                self.app.cfg.api_tokens.default_ttl_days
            );
        }
        b.push_str(
            "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">User</th>\
             <th scope=\"col\">Scopes</th><th scope=\"col\">Status</th><th scope=\"col\">Expires</th>\
             <th scope=\"col\">Last used</th><th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>",
        );
        for t in v["tokens"].as_array().into_iter().flatten() {
            let id = t["id"].as_str().unwrap_or_default();
            let scopes: Vec<&str> = t["scopes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let status = t["status"].as_str().unwrap_or_default();
            let revoke = if status == "active" && self.can(Scope::TokensWrite) {
                format!(
                    "<button type=\"button\" class=\"danger\" data-api=\"DELETE /v1/tokens/{}\" data-confirm=\"Revoke this token?\" \
                     data-then=\"reload\">Revoke</button>",
                    e(&pct(id))
                )
            } else {
                String::new()
            };
            let _ = write!(
                b,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td><span class=\"status {s}\">{s}</span></td><td>{}</td><td>{}</td><td>{revoke}</td></tr>",
                e(t["name"].as_str().unwrap_or_default()),
                e(t["user"].as_str().unwrap_or_default()),
                e(&scopes.join(", ")),
                when(&t["expires_at"]),
                when(&t["last_used"]),
                s = e(status),
            );
        }
        b.push_str("</tbody></table></div>");
        Ok(("API tokens".into(), b))
    }

    async fn users(&self) -> PageResult {
        let users = self.get(RouteId::UsersList, &[], None).await?;
        let groups = self.get(RouteId::GroupsList, &[], None).await?;
        let shares = self.get(RouteId::SharesList, &[], None).await?;
        let roles = |cur: &str| {
            ["admin", "editor", "viewer"]
                .iter()
                .map(|r| format!("<option value=\"{r}\"{}>{r}</option>", if *r == cur { " selected" } else { "" }))
                .collect::<String>()
        };
        let mut b = String::from(
            "<section><h2>Users</h2><div class=\"scroll\"><table><thead><tr><th scope=\"col\">User</th><th scope=\"col\">Role</th>\
             <th scope=\"col\">Status</th><th scope=\"col\">Last sign-in</th><th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>",
        );
        for u in users["users"].as_array().into_iter().flatten() {
            let name = u["name"].as_str().unwrap_or_default();
            let disabled = u["disabled"].as_bool().unwrap_or(false);
            let pn = e(&pct(name));
            let _ = write!(
                b,
                "<tr data-user=\"{n}\"><th scope=\"row\">{n}</th><td><form class=\"inline\" data-api=\"PATCH /v1/users/{pn}\" data-then=\"reload\">\
                 <label><span class=\"sr\">Role of {n}</span><select name=\"role\">{}</select></label> <button type=\"submit\">Save</button>\
                 <output role=\"alert\"></output></form></td><td>{}</td><td>{}</td><td>\
                 <button type=\"button\" data-api=\"PATCH /v1/users/{pn}\" data-body='{{\"disabled\": {}}}' data-then=\"reload\">{}</button></td></tr>",
                roles(u["role"].as_str().unwrap_or_default()),
                if disabled { "disabled" } else { "active" },
                when(&u["last_sign_in"]),
                !disabled,
                if disabled { "Enable" } else { "Disable" },
                n = e(name),
            );
        }
        let _ = write!(
            b,
            "</tbody></table></div><form class=\"row\" data-api=\"POST /v1/users\" data-then=\"reload\">\
             <label>New user <input name=\"name\" required></label><label>Role <select name=\"role\">{}</select></label>\
             <label>Password <span class=\"hint\">empty: single sign-on only</span><input name=\"password\" type=\"password\" autocomplete=\"new-password\" data-optional></label>\
             <button type=\"submit\">Add user</button><output role=\"alert\"></output></form></section>",
            roles("viewer")
        );
        b.push_str("<section><h2>Groups</h2><ul class=\"plain\">");
        for g in groups["groups"].as_array().into_iter().flatten() {
            let members: Vec<&str> = g["members"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let _ = write!(
                b,
                "<li><strong>{}</strong>: {}</li>",
                e(g["name"].as_str().unwrap_or_default()),
                e(&members.join(", "))
            );
        }
        b.push_str(
            "</ul><form class=\"row\" data-api=\"POST /v1/groups\" data-then=\"reload\"><label>New group <input name=\"name\" required></label>\
             <button type=\"submit\">Create group</button><output role=\"alert\"></output></form>\
             <form class=\"row\" data-api=\"PUT /v1/groups/{_group}/members/{_user}\" data-then=\"reload\">\
             <label>Group <input name=\"_group\" required></label><label>User <input name=\"_user\" required></label>\
             <button type=\"submit\">Add to group</button><output role=\"alert\"></output></form></section>",
        );
        b.push_str(
            "<section><h2>Connection shares</h2><div class=\"scroll\"><table><thead><tr><th scope=\"col\">Agent</th>\
             <th scope=\"col\">Connection</th><th scope=\"col\">Shared with</th><th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>",
        );
        for s in shares["shares"].as_array().into_iter().flatten() {
            let with = match (s["user"].as_str(), s["group"].as_str()) {
                (Some(u), _) => format!("user {}", e(u)),
                (None, Some(g)) => format!("group {}", e(g)),
                _ => String::new(),
            };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{with}</td><td><button type=\"button\" data-api=\"DELETE /v1/shares/{}\" data-then=\"reload\">Stop sharing</button></td></tr>",
                e(s["agent"].as_str().unwrap_or_default()),
                e(s["connection"].as_str().unwrap_or_default()),
                e(&pct(&s["id"].to_string().replace('"', ""))),
            );
        }
        b.push_str(
            "</tbody></table></div><form class=\"row\" data-api=\"POST /v1/shares\" data-then=\"reload\">\
             <label>Agent <input name=\"agent\" required></label><label>Connection <input name=\"connection\" required></label>\
             <label>User <input name=\"user\" data-optional></label><label>or group <input name=\"group\" data-optional></label>\
             <button type=\"submit\">Share</button><output role=\"alert\"></output></form></section>",
        );
        Ok(("Users & shares".into(), b))
    }

    async fn enrolment(&self) -> PageResult {
        if !self.can(Scope::AgentsAdmin) {
            return Err(api::forbidden("only admins enrol agents"));
        }
        let mut b = format!(
            "<p>An enrolment token lets one agent, of this name, enrol once; it expires unused after its lifetime.</p>\
             <form class=\"stack\" data-api=\"POST /v1/enrollment-tokens\" data-then=\"secret:token\">\
             <div class=\"row\"><label>Agent name <input name=\"agent\" required pattern=\"[a-z0-9][a-z0-9._\\-]*\"></label>\
             <label>Lifetime (seconds) <input name=\"ttl_secs\" type=\"number\" min=\"60\" value=\"{}\" data-type=\"int\"></label></div>\
             <button type=\"submit\" class=\"primary\">Create enrolment token</button><output role=\"alert\"></output>\
             <div data-secret-out hidden><p>Give it to the agent's administrator (<code>outpost-agent enroll --token -</code>); it is shown only once.</p>\
             <input readonly class=\"code\" data-copy-source aria-label=\"Enrolment token\"><button type=\"button\" data-copy>Copy</button></div></form>",
            crate::config::DEFAULT_ENROL_TOKEN_TTL_SECS
        );
        // The outstanding tokens (never their secrets), each with a revoke button.
        let v = self.get(RouteId::EnrolmentTokensList, &[], None).await?;
        let tokens = v["tokens"].as_array().cloned().unwrap_or_default();
        b.push_str("<h2>Outstanding enrolment tokens</h2>");
        if tokens.is_empty() {
            b.push_str("<p>None: every token was used, revoked or has expired.</p>");
        } else {
            b.push_str(
                "<div class=\"scroll\"><table><thead><tr><th scope=\"col\">Id</th><th scope=\"col\">Agent</th>\
                 <th scope=\"col\">Pool</th><th scope=\"col\">Created</th><th scope=\"col\">Expires</th>\
                 <th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>",
            );
            for t in &tokens {
                let id = t["id"].as_str().unwrap_or_default();
                let _ = write!(
                    b,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>\
                     <button type=\"button\" class=\"danger\" data-api=\"DELETE /v1/enrollment-tokens/{}\" \
                     data-confirm=\"Revoke this enrolment token?\" data-then=\"reload\">Revoke</button></td></tr>",
                    e(id),
                    e(t["agent"].as_str().unwrap_or_default()),
                    e(t["pool"].as_str().unwrap_or("-")),
                    when(&t["created_at"]),
                    when(&t["expires_at"]),
                    e(&pct(id)),
                );
            }
            b.push_str("</tbody></table></div>");
        }
        Ok(("Enrol an agent".into(), b))
    }

    async fn audit(&self, q: Option<&str>) -> PageResult {
        // Only the known filters travel on to the API, re-encoded.
        let mut fwd = Vec::new();
        let mut vals = std::collections::HashMap::new();
        for k in ["actor", "action", "outcome", "target", "after", "limit"] {
            if let Some(v) = query_param(q, k).and_then(|v| crate::api::access::percent_decode(&v.replace('+', " "))) {
                if !v.is_empty() {
                    fwd.push(format!("{k}={}", pct(&v)));
                    vals.insert(k, v);
                }
            }
        }
        let v = self.get(RouteId::AuditRead, &[], Some(&fwd.join("&"))).await?;
        let val = |k: &str| e(vals.get(k).map_or("", String::as_str));
        let mut outcomes = String::from("<option value=\"\">any</option>");
        for o in ["ok", "denied", "failed"] {
            let sel = if vals.get("outcome").map(String::as_str) == Some(o) { " selected" } else { "" };
            let _ = write!(outcomes, "<option{sel}>{o}</option>");
        }
        let mut b = format!(
            "<form class=\"row\" method=\"get\" action=\"/console/admin/audit\">\
             <label>Actor <input name=\"actor\" value=\"{}\"></label><label>Action <span class=\"hint\">prefix, e.g. jobs.</span><input name=\"action\" value=\"{}\"></label>\
             <label>Outcome <select name=\"outcome\">{outcomes}</select></label><label>Target <input name=\"target\" value=\"{}\"></label>\
             <button type=\"submit\">Filter</button></form>",
            val("actor"),
            val("action"),
            val("target"),
        );
        b.push_str(
            "<div class=\"scroll\"><table class=\"audit\"><thead><tr><th scope=\"col\">#</th><th scope=\"col\">When</th><th scope=\"col\">Actor</th>\
             <th scope=\"col\">Credential</th><th scope=\"col\">Action</th><th scope=\"col\">Target</th><th scope=\"col\">Outcome</th>\
             <th scope=\"col\">Status</th><th scope=\"col\">From</th><th scope=\"col\">Detail</th></tr></thead><tbody>",
        );
        for ev in v["events"].as_array().into_iter().flatten() {
            let detail = if ev["detail"].is_null() { String::new() } else { ev["detail"].to_string() };
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><span class=\"status {o}\">{o}</span></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                num(&ev["seq"]),
                when(&ev["at"]),
                e(ev["actor"].as_str().unwrap_or_default()),
                e(ev["credential"].as_str().unwrap_or_default()),
                e(ev["action"].as_str().unwrap_or_default()),
                e(ev["target"].as_str().unwrap_or_default()),
                num(&ev["status"]),
                e(ev["remote"].as_str().unwrap_or_default()),
                e(&detail),
                o = e(ev["outcome"].as_str().unwrap_or_default()),
            );
        }
        b.push_str("</tbody></table></div>");
        if let Some(next) = v["next_after"].as_i64() {
            let mut keep: Vec<String> =
                vals.iter().filter(|(k, _)| **k != "after").map(|(k, v)| format!("{k}={}", pct(v))).collect();
            keep.sort();
            keep.push(format!("after={next}"));
            let _ = write!(b, "<p><a href=\"/console/admin/audit?{}\">Next page</a></p>", e(&keep.join("&")));
        }
        Ok(("Audit log".into(), b))
    }
}

fn is_final(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "expired" | "cancelled" | "refused")
}

/// A JSON result (table or scalar) as HTML, every value escaped.
fn json_result_html(v: &Value) -> String {
    let mut b = String::new();
    if let (Some(cols), Some(rows)) = (v["columns"].as_array(), v["rows"].as_array()) {
        // The agent's column types (when it sends them): decimals come as strings, to stay
        // exact, but are numbers all the same and are aligned as such.
        let numeric: Vec<bool> = (0..cols.len())
            .map(|i| matches!(v["types"][i].as_str(), Some("integer" | "float" | "decimal" | "number")))
            .collect();
        b.push_str("<div class=\"scroll\"><table class=\"result\"><thead><tr>");
        for (i, c) in cols.iter().enumerate() {
            let name =
                c.as_str().map(str::to_owned).or_else(|| c["name"].as_str().map(str::to_owned)).unwrap_or_default();
            let class = if numeric[i] { " class=\"num\"" } else { "" };
            let _ = write!(b, "<th scope=\"col\"{class}>{}</th>", e(&name));
        }
        b.push_str("</tr></thead><tbody>");
        for r in rows {
            b.push_str("<tr>");
            for (i, cell) in r.as_array().into_iter().flatten().enumerate() {
                match cell {
                    Value::Null => b.push_str("<td class=\"null\">NULL</td>"),
                    Value::String(s) if numeric.get(i).copied().unwrap_or(false) => {
                        let _ = write!(b, "<td class=\"num\">{}</td>", e(s));
                    }
                    Value::String(s) => {
                        let _ = write!(b, "<td>{}</td>", e(s));
                    }
                    other => {
                        let _ = write!(b, "<td class=\"num\">{}</td>", e(&other.to_string()));
                    }
                }
            }
            b.push_str("</tr>");
        }
        b.push_str("</tbody></table></div>");
    } else if v.get("value").is_some() {
        let text = v["formatted"].as_str().map(str::to_owned).unwrap_or_else(|| v["value"].to_string());
        let _ = write!(
            b,
            "<p class=\"scalar\"><span class=\"label\">{}</span> <strong>{}</strong></p>",
            e(v["label"].as_str().unwrap_or_default()),
            e(&text)
        );
    } else {
        let _ = write!(b, "<pre class=\"code\">{}</pre>", e(&serde_json::to_string_pretty(v).unwrap_or_default()));
    }
    b
}

/// Rows read, duration, cache hit, and every egress decision with its rule and reason.
fn stats_html(s: &Value) -> String {
    if !s.is_object() {
        return String::new();
    }
    let mut b = format!(
        "<dl class=\"facts stats\"><dt>Rows read</dt><dd data-rows-read>{}</dd><dt>Duration</dt><dd>{} ms</dd>\
         <dt>Cache hit</dt><dd>{}</dd><dt>Truncated</dt><dd>{}</dd></dl>",
        num(&s["rows_read"]),
        num(&s["duration_ms"]),
        if s["cache_hit"].as_bool() == Some(true) { "yes" } else { "no" },
        if s["truncated"].as_bool() == Some(true) { "yes" } else { "no" },
    );
    if let Some(egress) = s["egress"].as_array().filter(|a| !a.is_empty()) {
        b.push_str("<h3>What the agent's egress policy did</h3><ul class=\"egress\">");
        for d in egress {
            let _ = write!(
                b,
                "<li><strong>{}</strong> by rule <code>{}</code>: {}</li>",
                e(d["action"].as_str().unwrap_or_default()),
                e(d["rule"].as_str().unwrap_or_default()),
                e(d["detail"].as_str().unwrap_or_default())
            );
        }
        b.push_str("</ul>");
    }
    b
}

/// A number from an API answer; anything else shows as `—` (never raw markup).
fn num(v: &Value) -> String {
    if v.is_number() {
        v.to_string()
    } else {
        "—".into()
    }
}

/// A Unix time as UTC text in a `<time>` element; `—` when absent.
fn when(v: &Value) -> String {
    match v.as_i64().and_then(|t| chrono::DateTime::from_timestamp(t, 0)) {
        Some(t) => {
            format!("<time datetime=\"{}\">{}</time>", t.format("%Y-%m-%dT%H:%M:%SZ"), t.format("%Y-%m-%d %H:%M UTC"))
        }
        None => "—".into(),
    }
}

/// Percent-encodes everything but unreserved characters (for a path segment or query value).
pub fn pct(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(char::from(b));
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_escaped() {
        let v = serde_json::json!({ "columns": ["<b>c</b>"], "rows": [["<script>x</script>", 1, null]] });
        let h = json_result_html(&v);
        assert!(!h.contains("<script>") && !h.contains("<b>"), "{h}");
        assert!(h.contains("&lt;script&gt;x&lt;/script&gt;") && h.contains("<td class=\"null\">NULL</td>"));
        // With the agent's types, an exact decimal (a JSON string) is aligned as a number.
        let v = serde_json::json!({ "columns": ["name", "amount"], "types": ["text", "decimal"],
            "rows": [["a", "12.50"]] });
        let h = json_result_html(&v);
        assert!(h.contains("<th scope=\"col\" class=\"num\">amount</th>"), "{h}");
        assert!(h.contains("<td>a</td><td class=\"num\">12.50</td>"), "{h}");
        let s = serde_json::json!({ "rows_read": 3, "duration_ms": 4, "cache_hit": false, "truncated": true,
            "egress": [{ "action": "masked", "rule": "<r>", "detail": "email \"x\"" }] });
        let h = stats_html(&s);
        assert!(h.contains("<code>&lt;r&gt;</code>") && h.contains("email &quot;x&quot;"), "{h}");
    }

    #[test]
    fn csp_allows_no_inline_script_or_framing() {
        assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe"));
        assert!(CSP.contains("frame-ancestors 'none'"));
        assert_eq!(pct("a b/é"), "a%20b%2F%C3%A9");
        assert!(is_console_path("/") && is_console_path("/console/x") && !is_console_path("/consoles"));
    }
}
