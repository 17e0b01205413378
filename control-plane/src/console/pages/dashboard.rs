//! A project's page as a dashboard: its tiles on a 12-column grid in the project's order
//! and sizes (`GET /v1/projects/{id}`'s `tiles`), text tiles drawn as escaped plain text,
//! and, for those who may change the project, the "Edit dashboard" bar that
//! `dashboard.js` brings to life (remove, resize, reorder, add and edit texts; Save sends
//! one `PUT` of the whole project).
//!
//! Sizes are classes (`w-1`…`w-12`, `h-1`…`h-4`): the console's CSP allows no inline style.

use std::fmt::Write as _;

use serde_json::Value;

use crate::app::project_tiles::{COLUMNS, MAX_H};
use crate::auth::access::Scope;
use crate::console::sanitize_svg::escape as e;
use crate::console::{when, Page};

/// The size classes and data of a tile, clamped to the grid (the API stored them checked).
pub(crate) fn size_attrs(tile: &Value) -> String {
    let clamp = |key: &str, max: u8, default: u8| {
        tile[key].as_u64().and_then(|n| u8::try_from(n).ok()).filter(|n| (1..=max).contains(n)).unwrap_or(default)
    };
    let default_w = if tile["text"].is_string() { COLUMNS } else { 6 };
    let (w, h) = (clamp("w", COLUMNS, default_w), clamp("h", MAX_H, 1));
    format!("class=\"{{kind}} tile w-{w} h-{h}\" data-tile data-w=\"{w}\" data-h=\"{h}\"")
}

/// A text tile: plain text, escaped, its line breaks kept by the stylesheet.
pub(crate) fn text_tile(tile: &Value) -> String {
    let attrs = size_attrs(tile).replace("{kind}", "note");
    format!(
        "<section {attrs} data-text><p class=\"tile-text\">{}</p></section>",
        e(tile["text"].as_str().unwrap_or_default())
    )
}

/// The project's tiles as the API gives them, or one per query for a project read from
/// an older control plane.
pub(crate) fn tiles_of(p: &Value) -> Vec<Value> {
    match p["tiles"].as_array() {
        Some(t) => t.clone(),
        None => (0..p["queries"].as_array().map_or(0, Vec::len)).map(|i| serde_json::json!({ "query": i })).collect(),
    }
}

impl Page<'_> {
    /// The grid of tiles of project `p` with its latest `results`.
    pub(super) async fn dashboard(&self, p: &Value, results: &Value) -> String {
        let pid = e(p["id"].as_str().unwrap_or_default());
        let latest = results["queries"].as_array().cloned().unwrap_or_default();
        let queries = p["queries"].as_array().cloned().unwrap_or_default();
        let filtered = p["parameters"].as_array().is_some_and(|a| !a.is_empty());
        let mut b = String::new();
        let access = p["access"].as_str().unwrap_or_default();
        if matches!(access, "owner" | "admin" | "edit") && self.can(Scope::ProjectsWrite) {
            b.push_str(&edit_bar(&pid, self.can(Scope::JobsDispatch)));
        }
        b.push_str("<div class=\"tiles\">");
        for tile in tiles_of(p) {
            if tile["text"].is_string() {
                b.push_str(&text_tile(&tile));
                continue;
            }
            let Some(q) = tile["query"].as_u64().and_then(|i| queries.iter().find(|q| q["index"].as_u64() == Some(i)))
            else {
                continue;
            };
            let idx = q["index"].as_u64().unwrap_or_default();
            let kind = q["render"]["kind"].as_str().or(q["render_kind"].as_str()).unwrap_or_default();
            let attrs = size_attrs(&tile).replace("{kind}", "query");
            let _ = write!(
                b,
                "<section {attrs} data-query=\"{idx}\"><h2>{} <span class=\"badge\">{}</span></h2>",
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
            let entry = latest.iter().find(|l| l["index"].as_u64() == Some(idx));
            if let Some(r) = entry.map(|l| &l["refresh"]).filter(|r| r.is_object()) {
                b.push_str(&super::projects::refresh_note(r));
            }
            match entry.map(|l| &l["job"]) {
                Some(j) if j.is_object() => {
                    if j["finished_at"].is_i64() {
                        let _ = write!(b, "<p class=\"muted as-of\">As of {}</p>", when(&j["finished_at"]));
                    }
                    b.push_str(&self.job_section(j).await);
                }
                _ if filtered => b.push_str(
                    "<p class=\"muted\" data-no-result>No result for these filter values yet; Refresh runs the dashboard \
                     with them.</p>",
                ),
                _ => b.push_str("<p class=\"muted\">Not run yet.</p>"),
            }
            b.push_str("</section>");
        }
        b.push_str("</div>");
        b
    }
}

/// The editing bar of a dashboard: "Edit dashboard", and in edit mode (dashboard.js)
/// "Add text tile", "Add query", Save and Cancel, with the answer beside them.
fn edit_bar(pid: &str, can_dispatch: bool) -> String {
    let add_query = if can_dispatch {
        format!("<a class=\"button\" href=\"/console/query?project={pid}\" data-edit-only hidden>Add query tile</a>")
    } else {
        String::new()
    };
    format!(
        "<div class=\"row dashboard-bar\" data-dashboard-bar=\"{pid}\">\
         <button type=\"button\" data-dashboard-edit aria-pressed=\"false\">Edit dashboard</button>\
         <button type=\"button\" data-dashboard-add-text data-edit-only hidden>Add text tile</button>{add_query}\
         <button type=\"button\" class=\"primary\" data-dashboard-save data-edit-only hidden>Save dashboard</button>\
         <button type=\"button\" data-dashboard-cancel data-edit-only hidden>Cancel</button>\
         <output role=\"alert\" data-dashboard-output></output></div>\
         <script src=\"/console/assets/dashboard.js\" defer></script>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_text_tile_is_escaped_plain_text_with_its_size() {
        let html = text_tile(&json!({ "text": "<script>alert(1)</script>\nline 2 & <a href=x>", "w": 8, "h": 2 }));
        assert!(html.starts_with("<section class=\"note tile w-8 h-2\" data-tile data-w=\"8\" data-h=\"2\" data-text>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;\nline 2 &amp; &lt;a href=x&gt;"), "{html}");
        assert!(!html.contains("<script") && !html.contains("<a "), "{html}");
    }

    #[test]
    fn sizes_are_classes_clamped_to_the_grid() {
        assert_eq!(
            size_attrs(&json!({ "query": 0 })),
            "class=\"{kind} tile w-6 h-1\" data-tile data-w=\"6\" data-h=\"1\""
        );
        assert!(size_attrs(&json!({ "query": 0, "w": 99, "h": 0 })).contains("w-6 h-1"));
        assert!(size_attrs(&json!({ "text": "x" })).contains("w-12 h-1"));
        assert!(size_attrs(&json!({ "query": 1, "w": 3, "h": 4 })).contains("w-3 h-4"));
        let older = json!({ "queries": [{ "index": 0 }, { "index": 1 }] });
        assert_eq!(tiles_of(&older), [json!({ "query": 0 }), json!({ "query": 1 })]);
    }

    #[test]
    fn the_edit_bar_loads_its_own_script_and_nothing_inline() {
        let bar = edit_bar("p1", true);
        assert!(bar.contains("src=\"/console/assets/dashboard.js\"") && bar.contains("/console/query?project=p1"));
        assert!(!bar.contains("style=") && !bar.contains("onclick"));
        assert!(!edit_bar("p1", false).contains("/console/query"), "no query page for those who may not run queries");
    }
}
