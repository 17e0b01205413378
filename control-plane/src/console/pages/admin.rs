//! The admin pages: agents, API tokens, users and shares, enrolment, the audit log.

use std::fmt::Write as _;

use serde_json::Value;

use crate::api::{self, RouteId};
use crate::auth::access::Scope;
use crate::console::sanitize_svg::escape as e;
use crate::console::{num, when, Page, PageResult};
use crate::http::pct;
use crate::http::query_param;

impl Page<'_> {
    pub(crate) async fn agents(&self) -> PageResult {
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

    pub(crate) async fn tokens(&self) -> PageResult {
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

    pub(crate) async fn users(&self) -> PageResult {
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

    pub(crate) async fn enrolment(&self) -> PageResult {
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

    pub(crate) async fn audit(&self, q: Option<&str>) -> PageResult {
        // Only the known filters travel on to the API, re-encoded.
        let mut fwd = Vec::new();
        let mut vals = std::collections::HashMap::new();
        for k in ["actor", "action", "outcome", "target", "after", "limit"] {
            if let Some(v) = query_param(q, k).and_then(|v| crate::http::percent_decode(&v.replace('+', " "))) {
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
