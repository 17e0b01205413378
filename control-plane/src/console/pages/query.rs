//! The query page: the editor with the render options of the chosen kind, prefilled from
//! a job (`?job=ID`, "Edit" on a job's page), and the user's query history.

use std::fmt::Write as _;

use serde_json::Value;

use crate::api::{self, RouteId};
use crate::auth::access::Scope;
use crate::console::sanitize_svg::escape as e;
use crate::console::{when, Page, PageResult};
use crate::http::pct;
use crate::http::{query_param, ApiError};

/// Jobs listed under "History".
const HISTORY_LEN: u32 = 20;
/// Characters of SQL shown per history entry.
const SNIPPET_CHARS: usize = 120;

/// The kinds that take a number format, a unit and decimals.
const FORMATTED_KINDS: &str = "bar line area scatter pie scalar";

/// The render options: input name, label, the kinds it belongs to, and its input's
/// attributes. console.js shows those of the chosen kind and checks them as one types
/// (the message goes beside the field); the API checks them again. The names and values
/// are the API's (`docs/CHARTS.md`); an empty optional field is not sent.
const RENDER_FIELDS: &[(&str, &str, &str, &str)] = &[
    ("render.x", "X axis column", "bar line area scatter", "data-need=\"column\""),
    (
        "render.y",
        "Y axis columns <span class=\"hint\">comma-separated, 1 to 10</span>",
        "bar line area scatter",
        "data-type=\"list\" data-need=\"columns\"",
    ),
    (
        "render.series",
        "Series column <span class=\"hint\">optional: one series per value, with one Y column</span>",
        "bar line area scatter",
        "data-optional",
    ),
    (
        "render.y2",
        "Right axis columns <span class=\"hint\">optional, comma-separated: drawn dashed against a second axis</span>",
        "line area scatter",
        "data-type=\"list\" data-optional",
    ),
    ("render.label", "Label column", "pie", "data-need=\"column\""),
    ("render.value", "Value column", "pie", "data-need=\"column\""),
    ("render.column", "Column", "scalar", "data-need=\"column\""),
    ("render.label", "Label <span class=\"hint\">optional</span>", "scalar", "data-optional"),
    (
        "render.decimals",
        "Decimals <span class=\"hint\">optional, 0 to 10</span>",
        FORMATTED_KINDS,
        "type=\"number\" min=\"0\" max=\"10\" step=\"1\" data-type=\"int\" data-optional",
    ),
    (
        "render.unit",
        "Unit <span class=\"hint\">optional: ms, kg, €; for currency its code, e.g. EUR</span>",
        FORMATTED_KINDS,
        "maxlength=\"16\" data-optional",
    ),
    ("render.title", "Title <span class=\"hint\">optional</span>", "bar line area scatter pie", "data-optional"),
    (
        "render.max_points",
        "Most points <span class=\"hint\">optional</span>",
        "line area scatter",
        "type=\"number\" min=\"1\" data-type=\"int\" data-optional",
    ),
    (
        "render.max_rows",
        "Most rows <span class=\"hint\">optional</span>",
        "table",
        "type=\"number\" min=\"1\" data-type=\"int\" data-optional",
    ),
];

/// The chart number formats (`render.format`) as the API names them, with what they
/// show; "plain" is the default and sends nothing.
const NUMBER_FORMATS: &[(&str, &str)] = &[
    ("", "plain (default): 12,000,000"),
    ("compact", "compact: 12M, 2.5k"),
    ("percent", "percent: 0.25 as 25%"),
    ("currency", "currency: 12,000,000 EUR"),
];

/// Where console.js says what is wrong with one field, read out with it.
fn field_error(id: &str) -> String {
    format!("<span class=\"field-error\" id=\"{id}\" data-field-error aria-live=\"polite\"></span>")
}

/// The number format's select, set to a prefilled chart's format.
fn format_select(render: &Value, chosen: &str) -> String {
    let current = if FORMATTED_KINDS.split(' ').any(|k| k == chosen) { render["format"].as_str() } else { None };
    let mut options = String::new();
    for (value, text) in NUMBER_FORMATS {
        let sel = if !value.is_empty() && current == Some(*value) { " selected" } else { "" };
        let _ = write!(options, "<option value=\"{value}\"{sel}>{}</option>", e(text));
    }
    format!(
        "<label data-kinds=\"{FORMATTED_KINDS}\">Number format <select name=\"render.format\" data-optional \
         aria-describedby=\"fe-format\">{options}</select>{}</label>",
        field_error("fe-format")
    )
}

/// The schema browser beside the form, filled by schema.js from
/// `GET /v1/agents/{agent}/connections/{connection}/schema` once a connection is chosen:
/// tables (collapsible) with columns, types, row estimates and a "masked" badge; a
/// column's name inserts it into the SQL.
const SCHEMA_PANEL: &str = "<aside class=\"schema-panel\" data-schema-panel aria-labelledby=\"schema-title\">\
     <div class=\"schema-head\"><h2 id=\"schema-title\">Schema</h2>\
     <button type=\"button\" data-schema-refresh title=\"Ask the agent again\">Refresh</button></div>\
     <input type=\"search\" placeholder=\"Filter tables and columns\" aria-label=\"Filter tables and columns\" \
     data-schema-filter autocomplete=\"off\">\
     <p class=\"hint\" role=\"status\" data-schema-status>Choose an agent and a connection to see its tables.</p>\
     <div class=\"schema-list\" data-schema-list></div>\
     <script src=\"/console/assets/schema.js\" defer></script></aside>";

/// The query form and the schema browser side by side (one column on a narrow screen).
fn with_schema_panel(form: &str) -> String {
    format!("<div class=\"query-layout\"><div class=\"query-main\">{form}</div>{SCHEMA_PANEL}</div>")
}

/// What the form starts with: empty, or a job's spec (its "Edit").
#[derive(Default)]
struct Prefill {
    agent: String,
    connection: String,
    sql: String,
    params: String,
    render: Value,
    cache_max_age: u64,
    /// Opened from a dashboard tile's "Edit": the project and the query it replaces.
    tile: Option<super::project_save::TileQuery>,
}

impl Prefill {
    /// A job's spec or a project query, as the API gives them.
    fn from_spec(spec: &Value) -> Self {
        Self {
            agent: spec["agent"].as_str().unwrap_or_default().to_owned(),
            connection: spec["connection"].as_str().unwrap_or_default().to_owned(),
            sql: spec["sql"].as_str().unwrap_or_default().to_owned(),
            params: params_text(&spec["params"]),
            render: spec["render"].clone(),
            cache_max_age: spec["cache"]["max_age_secs"].as_u64().unwrap_or(0),
            tile: None,
        }
    }
}

/// A job spec's parameters as the form's lines, `type:value`.
fn params_text(params: &Value) -> String {
    let mut lines = Vec::new();
    for p in params.as_array().into_iter().flatten() {
        let t = p["type"].as_str().unwrap_or("text");
        match &p["value"] {
            Value::Null => lines.push(t.to_owned()),
            Value::String(s) => lines.push(format!("{t}:{s}")),
            v => lines.push(format!("{t}:{v}")),
        }
    }
    lines.join("\n")
}

/// A render option's value in the form: a list joined with commas, text as it is.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

impl Page<'_> {
    /// The form's starting values: `?project=ID&index=N` (a dashboard tile's query) or
    /// `?job=ID` (the API checks the caller may read its SQL), else `?agent=` and
    /// `?connection=`.
    async fn prefill(&self, q: Option<&str>) -> Result<Prefill, ApiError> {
        let decoded = |k: &str| {
            query_param(q, k).and_then(|v| crate::http::percent_decode(&v.replace('+', " "))).unwrap_or_default()
        };
        if let Some(t) = self.tile_query(q).await? {
            let pre = Prefill::from_spec(&t.query);
            return Ok(Prefill { tile: Some(t), ..pre });
        }
        let job = decoded("job");
        if job.is_empty() {
            return Ok(Prefill { agent: decoded("agent"), connection: decoded("connection"), ..Prefill::default() });
        }
        Ok(Prefill::from_spec(&self.get(RouteId::JobsSpec, &[&job], None).await?))
    }

    pub(crate) async fn query(&self, q: Option<&str>) -> PageResult {
        if !self.can(Scope::JobsDispatch) {
            return Err(api::forbidden("your role may not run queries"));
        }
        let v = self.get(RouteId::AgentsList, &[], None).await?;
        let pre = self.prefill(q).await?;
        let mut agents = String::new();
        let mut conns = String::new();
        for a in v["agents"].as_array().into_iter().flatten().filter(|a| a["status"] != "revoked") {
            let name = a["name"].as_str().unwrap_or_default();
            let sel = if name == pre.agent { " selected" } else { "" };
            let _ = write!(
                agents,
                "<option value=\"{n}\"{sel}>{n} ({})</option>",
                e(a["status"].as_str().unwrap_or("")),
                n = e(name)
            );
            for c in a["connections"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let sel = if name == pre.agent && c == pre.connection { " selected" } else { "" };
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
        let chosen = pre.render["kind"].as_str().unwrap_or("bar");
        let mut kinds = String::new();
        for k in outpost_protocol::RENDER_KINDS {
            let sel = if k == chosen { " selected" } else { "" };
            let _ = write!(kinds, "<option value=\"{k}\"{sel}>{k}</option>");
        }
        let mut fields = String::new();
        for (i, (name, label, for_kinds, attrs)) in RENDER_FIELDS.iter().enumerate() {
            // The number format sits with the unit and decimals it goes with.
            if *name == "render.decimals" {
                fields.push_str(&format_select(&pre.render, chosen));
            }
            let key = name.trim_start_matches("render.");
            // A label of one kind is not the label of the other.
            let value =
                if for_kinds.split(' ').any(|k| k == chosen) { render_value(&pre.render[key]) } else { String::new() };
            let _ = write!(
                fields,
                "<label data-kinds=\"{for_kinds}\">{label} <input name=\"{name}\" value=\"{}\" {attrs} autocomplete=\"off\" \
                 aria-describedby=\"fe-{i}\">{}</label>",
                e(&value),
                field_error(&format!("fe-{i}"))
            );
        }
        let stacked = if pre.render["stacked"] == Value::Bool(true) { " checked" } else { "" };
        let save = self.save_area(pre.tile.as_ref(), q).await;
        let body = format!(
            "<form id=\"query-form\" class=\"stack\" data-api=\"POST /v1/jobs\" data-then=\"go:/console/jobs/{{id}}\" \
             data-query-form novalidate>\
             <div class=\"row\"><label>Agent <select name=\"agent\" required data-agent-select>{agents}</select></label>\
             <label>Connection <select name=\"connection\" required data-connection-select>{conns}</select></label></div>\
             <label>SQL <textarea name=\"sql\" rows=\"8\" spellcheck=\"false\" class=\"code\" data-need=\"sql\" \
             aria-describedby=\"run-output\">{sql}</textarea></label>\
             <div class=\"row run-bar\"><button type=\"submit\" class=\"primary\" data-run>Run</button>\
             <span class=\"hint\"><kbd>Ctrl</kbd>+<kbd>Enter</kbd> runs the query</span></div>\
             <output id=\"run-output\" role=\"alert\" data-run-output></output>\
             <label>Parameters <span class=\"hint\">one per line as type:value, for $1, $2… (types: text, int, float, bool, null)</span>\
             <textarea name=\"params\" rows=\"2\" data-type=\"params\" spellcheck=\"false\" class=\"code\">{params}</textarea></label>\
             <fieldset><legend>Render</legend><div class=\"row\">\
             <label>Kind <select name=\"render.kind\" data-kind-select>{kinds}</select></label>{fields}\
             <label data-kinds=\"bar\" class=\"check\"><input type=\"checkbox\" name=\"render.stacked\" data-type=\"bool\"{stacked}> stacked</label>\
             <input type=\"hidden\" name=\"render.format\" value=\"json\" data-kinds=\"table\">\
             </div></fieldset>\
             <label>Use a cached result up to (seconds) <input name=\"cache.max_age_secs\" type=\"number\" min=\"0\" value=\"{age}\" data-type=\"int\"></label>\
             {save}</form>\
             <script src=\"/console/assets/editor.js\" defer></script>",
            sql = e(&pre.sql),
            params = e(&pre.params),
            age = pre.cache_max_age,
        );
        let mut body = with_schema_panel(&body);
        if self.can(Scope::ResultsRead) {
            body.push_str(&self.history().await);
        }
        Ok(("Query".into(), body))
    }

    /// The signed-in user's own latest jobs: name, SQL, status, time, with links to the
    /// job and to edit it again.
    async fn history(&self) -> String {
        let mut b = String::from(
            "<section class=\"history\" id=\"history\" aria-labelledby=\"history-title\">\
                                  <h2 id=\"history-title\">History</h2>",
        );
        let v = match self.get(RouteId::JobsList, &[], Some(&format!("limit={HISTORY_LEN}&sql=true"))).await {
            Ok(v) => v,
            Err(err) => {
                let _ = write!(b, "<p class=\"error\">{}</p></section>", e(&err.message));
                return b;
            }
        };
        let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
        if jobs.is_empty() {
            b.push_str("<p class=\"muted\">Your queries will be listed here once you run one.</p></section>");
            return b;
        }
        b.push_str(
            "<div class=\"scroll\"><table class=\"history\"><thead><tr><th scope=\"col\">Query</th><th scope=\"col\">SQL</th>\
             <th scope=\"col\">Status</th><th scope=\"col\">When</th><th scope=\"col\"><span class=\"sr\">Actions</span></th>\
             </tr></thead><tbody>",
        );
        // The schema browser's catalog jobs are not queries the user wrote.
        for j in jobs.iter().filter(|j| !crate::api::job_name::is_catalog_job(j)) {
            let id = j["id"].as_str().unwrap_or_default();
            let sql = j["sql"].as_str().unwrap_or_default();
            let snippet = crate::console::snippet(sql, SNIPPET_CHARS);
            let edit = if sql.is_empty() {
                String::new()
            } else {
                format!("<a href=\"/console/query?job={}\" data-history-edit>Edit</a>", e(&pct(id)))
            };
            let _ = write!(
                b,
                "<tr data-history=\"{i}\"><td><a href=\"/console/jobs/{i}\">{n}</a></td><td><code>{snippet}</code></td>\
                 <td><span class=\"status {s}\">{s}</span></td><td>{}</td><td>{edit}</td></tr>",
                when(&j["created_at"]),
                i = e(id),
                n = e(j["name"].as_str().filter(|n| !n.is_empty()).unwrap_or(id)),
                snippet = e(&snippet),
                s = e(j["state"].as_str().unwrap_or_default()),
            );
        }
        b.push_str("</tbody></table></div></section>");
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_prefills_the_form_as_typed() {
        let p = serde_json::json!([{ "type": "text", "value": "North" }, { "type": "int", "value": 5 }, { "type": "null" }]);
        assert_eq!(params_text(&p), "text:North\nint:5\nnull");
        assert_eq!(render_value(&serde_json::json!(["a", "b"])), "a, b");
        assert_eq!(render_value(&serde_json::json!(3)), "3");
        assert_eq!(render_value(&Value::Null), "");
    }

    /// The options each kind is offered, as docs/CHARTS.md lists them.
    fn offered(kind: &str) -> Vec<&'static str> {
        let mut names: Vec<&str> = RENDER_FIELDS
            .iter()
            .filter(|f| f.2.split(' ').any(|k| k == kind))
            .map(|f| f.0.trim_start_matches("render."))
            .collect();
        if FORMATTED_KINDS.split(' ').any(|k| k == kind) {
            names.push("format");
        }
        names
    }

    #[test]
    fn each_kind_is_offered_exactly_the_options_it_takes() {
        let all = ["x", "y", "series", "y2", "label", "value", "column", "decimals", "unit", "title"];
        let take = |kind: &str, names: &[&str]| {
            for n in all.iter().chain(&["format", "max_points", "max_rows"]) {
                assert_eq!(offered(kind).contains(n), names.contains(n), "{kind} {n}");
            }
        };
        let chart = ["x", "y", "series", "title", "format", "unit", "decimals"];
        take("bar", &chart);
        for kind in ["line", "area", "scatter"] {
            take(kind, &[&chart[..], &["y2", "max_points"]].concat());
        }
        take("pie", &["label", "value", "title", "format", "unit", "decimals"]);
        take("scalar", &["column", "label", "format", "unit", "decimals"]);
        take("table", &["max_rows"]);
    }

    #[test]
    fn the_number_format_offers_the_api_values_and_keeps_a_prefilled_one() {
        let values: Vec<&str> = NUMBER_FORMATS.iter().map(|f| f.0).collect();
        assert_eq!(values, ["", "compact", "percent", "currency"], "plain is the default and is not sent");
        let line = serde_json::json!({ "kind": "line", "format": "compact" });
        assert!(format_select(&line, "line").contains("<option value=\"compact\" selected>"));
        assert!(!format_select(&line, "line").contains("\"\" selected"));
        // A table's format (json, html) is not a number format.
        let table = serde_json::json!({ "kind": "table", "format": "html" });
        assert!(!format_select(&table, "table").contains(" selected"));
        assert!(format_select(&table, "table").contains("data-kinds=\"bar line area scatter pie scalar\""));
        assert!(
            format_select(&line, "line").contains("aria-describedby=\"fe-format\"")
                && field_error("fe-format").contains("id=\"fe-format\"")
        );
    }

    #[test]
    fn the_schema_panel_sits_beside_the_form_and_loads_its_own_script() {
        let page = with_schema_panel("<form data-query-form></form>");
        assert!(page.starts_with("<div class=\"query-layout\"><div class=\"query-main\"><form"));
        assert!(page.contains("data-schema-panel") && page.contains("src=\"/console/assets/schema.js\""));
        assert!(!SCHEMA_PANEL.contains("style=") && !SCHEMA_PANEL.contains("onclick"), "nothing inline (CSP)");
    }
}
