//! The projects list and a project's page.

use std::fmt::Write as _;

use crate::api::RouteId;
use crate::auth::access::Scope;
use crate::console::sanitize_svg::escape as e;
use crate::console::{when, Page, PageResult};
use crate::http::pct;

impl Page<'_> {
    pub(crate) async fn projects(&self) -> PageResult {
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

    pub(crate) async fn project(&self, id: &str, q: Option<&str>) -> PageResult {
        let p = self.get(RouteId::ProjectsRead, &[id], None).await?;
        // The filters of the URL (`f.NAME=…`); a refused value is said in the bar, and the
        // defaults shown.
        let fq = super::filters::api_query(&super::filters::from_url(q));
        let (results, filter_error) = match self.get(RouteId::ProjectsResults, &[id], fq.as_deref()).await {
            Ok(r) => (r, None),
            Err(err) if fq.is_some() => (self.get(RouteId::ProjectsResults, &[id], None).await?, Some(err.message)),
            Err(err) => return Err(err),
        };
        let pid = e(p["id"].as_str().unwrap_or_default());
        let access = p["access"].as_str().unwrap_or_default();
        let can_edit = matches!(access, "owner" | "admin" | "edit");
        let params = p["parameters"].as_array().cloned().unwrap_or_default();
        let mut b = super::filters::bar(&pid, &params, &results["filters"], filter_error.as_deref());
        let _ = write!(
            b,
            "<dl class=\"facts\"><dt>Owner</dt><dd>{}</dd><dt>Your access</dt><dd>{}</dd></dl>",
            e(p["owner"].as_str().unwrap_or_default()),
            e(access)
        );
        if self.can(Scope::ProjectsRun) {
            let _ = write!(
                b,
                "<form class=\"row\" data-api=\"POST /v1/projects/{pid}/run\" data-then=\"reload\">\
                 <label>End customer <span class=\"hint\">only for queries that take one</span>\
                 <input name=\"customer\" data-optional></label>{}<button type=\"submit\" class=\"primary\">Refresh</button>\
                 <output role=\"alert\"></output></form>",
                super::filters::hidden(&results["filters"])
            );
        }
        // The tiles of the dashboard, in the project's order and sizes; the schedule and the
        // other settings below them, so the results come first.
        b.push_str(&self.dashboard(&p, &results).await);
        b.push_str(&self.schedule_section(&p, can_edit && self.can(Scope::ProjectsWrite)));
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
}

/// What became of the newest run of a query when it is not the result shown: still
/// going, or failed (the result below is then the previous one, and says when it is from).
pub(super) fn refresh_note(r: &serde_json::Value) -> String {
    let state = r["state"].as_str().unwrap_or_default();
    let at = when(&r["created_at"]);
    let id = e(r["id"].as_str().unwrap_or_default());
    if matches!(state, "queued" | "leased") {
        format!("<p class=\"muted\" data-refresh=\"running\">A refresh started {at} is still running; below is the previous result.</p>")
    } else {
        let why = r["reason"]["message"].as_str().or(r["reason"]["code"].as_str()).unwrap_or(state);
        format!(
            "<p class=\"notice\" role=\"status\" data-refresh=\"{}\">The refresh started {at} did not succeed ({}: {}; \
             <a href=\"/console/jobs/{id}\">details</a>). Below is the previous result.</p>",
            e(state),
            e(state),
            e(why)
        )
    }
}
