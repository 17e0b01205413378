//! The jobs list, a job's page and its live result.

use std::fmt::Write as _;

use serde_json::Value;

use crate::api::RouteId;
use crate::auth::access::Scope;
use crate::console::sanitize_svg::escape as e;
use crate::console::{is_final, num, snippet, when, Page, PageResult};
use crate::http::pct;
use crate::http::ApiError;

impl Page<'_> {
    /// The jobs list, filtered by the GET form's state, agent, connection and (for admins)
    /// requester; the filters are re-encoded for the API, which checks them again.
    pub(crate) async fn jobs(&self, q: Option<&str>) -> PageResult {
        let admin = self.caller.is_admin();
        let mut vals = std::collections::HashMap::new();
        let mut fwd = vec!["limit=100".to_owned(), "sql=true".to_owned()];
        for k in ["state", "agent", "connection", "owner"] {
            if let Some(v) = crate::api::jobs::filter_param(q, k)? {
                fwd.push(format!("{k}={}", pct(&v)));
                vals.insert(k, v);
            }
        }
        // An admin sees everyone's jobs unless a requester is named.
        if admin && !vals.contains_key("owner") {
            fwd.push("all=true".into());
        }
        let v = self.get(RouteId::JobsList, &[], Some(&fwd.join("&"))).await?;
        let val = |k: &str| e(vals.get(k).map_or("", String::as_str));
        let mut states = String::from("<option value=\"\">any</option>");
        for st in crate::api::jobs::JOB_STATES {
            let st = st.as_str();
            let sel = if vals.get("state").map(String::as_str) == Some(st) { " selected" } else { "" };
            let _ = write!(states, "<option{sel}>{st}</option>");
        }
        let owner = if admin {
            format!("<label>Requester <input name=\"owner\" value=\"{}\" placeholder=\"anyone\"></label>", val("owner"))
        } else {
            String::new()
        };
        let mut b = format!(
            "<form class=\"row filters\" method=\"get\" action=\"/console/jobs\" data-jobs-filter>\
             <label>Status <select name=\"state\">{states}</select></label>\
             <label>Agent <input name=\"agent\" value=\"{}\"></label><label>Connection <input name=\"connection\" value=\"{}\"></label>\
             {owner}<button type=\"submit\">Filter</button> <a href=\"/console/jobs\">Clear</a></form>",
            val("agent"),
            val("connection"),
        );
        // The schema browser's catalog jobs are not queries anyone wrote (the API lists them).
        let jobs: Vec<Value> = v["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| !crate::api::job_name::is_catalog_job(j))
            .cloned()
            .collect();
        if jobs.is_empty() {
            b.push_str("<p class=\"muted\" data-no-jobs>No jobs match.</p>");
        }
        let who = if admin { "<th scope=\"col\">Requested by</th>" } else { "" };
        let _ = write!(
            b,
            "<div class=\"scroll\"><table class=\"jobs\"><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">Status</th>\
             <th scope=\"col\">Agent / connection</th>{who}<th scope=\"col\">Created</th></tr></thead><tbody>",
        );
        for j in &jobs {
            let id = j["id"].as_str().unwrap_or_default();
            let target = match (j["agent"].as_str(), j["connection"].as_str()) {
                (Some(a), Some(c)) => format!("{} / {}", e(a), e(c)),
                _ => "—".into(),
            };
            let sql = match j["sql"].as_str() {
                Some(sql) => format!("<br><code class=\"snippet\" data-snippet>{}</code>", e(&snippet(sql, 100))),
                None => String::new(),
            };
            // An admin's list names who asked, each a link to their jobs.
            let requester = match (admin, j["requester"].as_str()) {
                (false, _) => String::new(),
                (true, Some(u)) => {
                    format!("<td data-requester><a href=\"/console/jobs?owner={}\">{}</a></td>", e(&pct(u)), e(u))
                }
                (true, None) => "<td data-requester>—</td>".into(),
            };
            let _ = write!(
                b,
                "<tr data-job-row=\"{i}\"><td><a href=\"/console/jobs/{i}\">{n}</a><br><code class=\"muted small\">{i}</code>{sql}</td>\
                 <td><span class=\"status {s}\">{s}</span></td><td>{target}</td>{requester}<td>{}</td></tr>",
                when(&j["created_at"]),
                i = e(id),
                n = e(j["name"].as_str().filter(|n| !n.is_empty()).unwrap_or(id)),
                s = e(j["state"].as_str().unwrap_or("")),
            );
        }
        b.push_str("</tbody></table></div>");
        Ok(("Jobs".into(), b))
    }

    /// A job's page: named as its query, its id beside; its SQL, Edit and Re-run to those
    /// who may read the SQL (the API refuses the others); its live result.
    pub(crate) async fn job(&self, id: &str) -> PageResult {
        let j = self.get(RouteId::JobsRead, &[id], None).await?;
        let name = j["name"].as_str().filter(|n| !n.is_empty()).unwrap_or(id).to_owned();
        let mut b = format!("<p class=\"subtitle\">Job <code data-job-id>{}</code></p><dl class=\"facts\">", e(id));
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
        b.push_str(&self.job_origin(&j, &name).await);
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
            if self.can(Scope::JobsDispatch) {
                let _ = write!(
                    b,
                    "<p class=\"row actions\"><a class=\"button\" href=\"/console/query?job={i}\" data-edit>Edit</a> \
                     <button type=\"button\" data-rerun=\"{i}\">Re-run</button><output role=\"alert\"></output></p>",
                    i = e(&pct(id))
                );
            }
        }
        b.push_str(&self.job_section(&j).await);
        Ok((name, b))
    }

    /// Where a project job came from: its project (a link to the dashboard with the
    /// filter values it ran with) and tile, and those values in words. Empty for an
    /// ad-hoc job.
    async fn job_origin(&self, j: &Value, query: &str) -> String {
        let Some(pid) = j["project_id"].as_str() else { return String::new() };
        let project = self.get(RouteId::ProjectsRead, &[pid], None).await.ok();
        let filters = j["filters"].as_object();
        let mut b = String::from("<p class=\"origin\" data-job-origin>From ");
        match &project {
            Some(p) => {
                let url = filters.map(dashboard_query).unwrap_or_default();
                let _ = write!(
                    b,
                    "project <a href=\"/console/projects/{}{}\" data-job-project>{}</a>",
                    e(&pct(pid)),
                    e(&url),
                    e(p["name"].as_str().unwrap_or(pid))
                );
            }
            None => b.push_str("a project that is gone"),
        }
        let _ = write!(b, ", tile <strong>{}</strong></p>", e(query));
        if let Some(f) = filters.filter(|f| !f.is_empty()) {
            let labels = project.as_ref().map(|p| &p["parameters"]);
            let words: Vec<String> = f
                .iter()
                .map(|(k, v)| {
                    let label = labels
                        .and_then(|ps| ps.as_array()?.iter().find(|p| p["name"] == k.as_str())?["label"].as_str())
                        .unwrap_or(k);
                    format!("<li data-job-filter=\"{}\">{} = {}</li>", e(k), e(label), e(&filter_words(v)))
                })
                .collect();
            let _ =
                write!(b, "<p>With the filters</p><ul class=\"job-filters\" data-job-filters>{}</ul>", words.join(""));
        }
        b
    }

    /// A job's live section: status line, cancel button, and the result once final.
    pub(crate) async fn job_section(&self, j: &Value) -> String {
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

    pub(crate) async fn result_fragment(&self, id: &str) -> Result<String, ApiError> {
        let j = self.get(RouteId::JobsRead, &[id], None).await?;
        Ok(self.result_html(&j).await)
    }

    /// A final job's result: the sanitised chart or the table, with its statistics and
    /// what the agent's egress policy did; or why it failed.
    pub(crate) async fn result_html(&self, j: &Value) -> String {
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
        let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let _ =
                write!(b, "<p class=\"error\">{}</p>", e(v["message"].as_str().unwrap_or("the result cannot be read")));
        } else if ct.starts_with("image/svg+xml") {
            match crate::console::sanitize_svg::sanitise(&bytes) {
                Ok(clean) => {
                    let _ = write!(b, "<figure class=\"chart\">{}</figure>", clean.svg);
                    b.push_str(&downloads(j, false));
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
            if crate::console::download::is_table(&v) {
                b.push_str(&downloads(j, true));
            }
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
}

/// A filter value in words: a text as it is, a number, a date range `from .. to`.
fn filter_words(v: &Value) -> String {
    let shown = super::filters::shown(v);
    if v.is_object() {
        shown.replacen("..", " .. ", 1)
    } else {
        shown
    }
}

/// The dashboard's address query for filter values (`?f.region=US&f.period=A..B`), as
/// its filter bar reads them.
fn dashboard_query(f: &serde_json::Map<String, Value>) -> String {
    let parts: Vec<String> =
        f.iter().map(|(k, v)| format!("f.{}={}", pct(k), pct(&super::filters::shown(v)))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// The download links of job `j`'s result: SVG and PNG of a chart, CSV of a table. The
/// PNG is drawn by console.js from the chart on the page.
fn downloads(j: &Value, table: bool) -> String {
    let id = pct(j["id"].as_str().unwrap_or_default());
    let slug = crate::console::download::slug(j["name"].as_str().unwrap_or_default());
    if table {
        format!(
            "<p class=\"downloads\">Download <a href=\"/console/jobs/{id}/download.csv\" download=\"{slug}.csv\" \
             data-download=\"csv\">CSV</a></p>"
        )
    } else {
        format!(
            "<p class=\"downloads\">Download <a href=\"/console/jobs/{id}/download.svg\" download=\"{slug}.svg\" \
             data-download=\"svg\">SVG</a> <button type=\"button\" data-png=\"{slug}\">PNG</button></p>"
        )
    }
}

/// A JSON result (table or scalar) as HTML, every value escaped.
pub(crate) fn json_result_html(v: &Value) -> String {
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
}
