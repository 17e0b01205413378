//! The query page's **Filters** part, when it was opened from a dashboard tile whose
//! project has parameters: one select per parameter position of the query (`$1`, `$2`, …
//! or each `?`), offering the project's parameters (a date range as its `.from` and `.to`)
//! or nothing. bindings.js keeps the selects in step with the SQL as it is edited (issue
//! 23: a `$2` typed after the page opened gets its select, a removed one loses it);
//! dashboard.js puts the choices into the query's `bind` when **Save to project** sends
//! the project's `PUT`, and says a refusal (`queries[0].bind.2: …`) next to that
//! position's select.

use std::fmt::Write as _;

use serde_json::Value;

use crate::console::sanitize_svg::escape as e;

/// Most positions offered (the API's own limit on a query's parameters is higher; a
/// dashboard binds a few). bindings.js reads it from the fieldset's `data-max-positions`.
const MAX_POSITIONS: usize = 50;

/// How many parameter positions `sql` has: its highest `$N`, or its count of `?`
/// (MySQL), whichever is more; quoted text and `--` comments are passed over.
pub(crate) fn positions(sql: &str) -> usize {
    let (mut dollar, mut question) = (0usize, 0usize);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' => question += 1,
            '$' => {
                let mut n = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                dollar = dollar.max(n.parse().unwrap_or(0));
            }
            _ => {}
        }
    }
    dollar.max(question).min(MAX_POSITIONS)
}

/// The Filters fieldset for a query with `sql` and `bind` (positions to targets) of a
/// project with `parameters` (as `GET /v1/projects/{id}` shows them); empty when the
/// project has none. It is rendered whenever there are parameters, also for SQL without
/// positions, with a `<template>` of one position's row: bindings.js counts the positions
/// again as the SQL is edited (the same rules as [`positions`], at most
/// `data-max-positions`) and adds or removes rows from it.
pub(crate) fn fieldset(parameters: &Value, sql: &str, bind: &Value) -> String {
    let params = parameters.as_array().map(Vec::as_slice).unwrap_or_default();
    if params.is_empty() {
        return String::new();
    }
    let bound_max = bind.as_object().into_iter().flatten().filter_map(|(k, _)| k.parse::<usize>().ok()).max();
    let n = positions(sql).max(bound_max.unwrap_or(0).min(MAX_POSITIONS));
    let mut b = format!(
        "<fieldset class=\"bindings\" data-bindings data-max-positions=\"{MAX_POSITIONS}\"><legend>Filters</legend>\
         <p class=\"hint\">Which dashboard filter fills each parameter of the query; a position left \
         unbound keeps its value from Params. The list follows the SQL as you edit it.</p>\
         <p class=\"muted\" data-no-positions{}>The query has no parameters ($1, $2, … or ?) to bind.</p>\
         <div data-bind-rows>",
        if n == 0 { "" } else { " hidden" }
    );
    for pos in 1..=n {
        b.push_str(&row(Some(pos), &options(params, bind[pos.to_string()].as_str().unwrap_or_default())));
    }
    let _ = write!(
        b,
        "</div><template data-bind-template>{}</template>\
         <output class=\"hint\" aria-live=\"polite\" data-bind-status></output></fieldset>\
         <script src=\"/console/assets/bindings.js\" defer></script>",
        row(None, &options(params, ""))
    );
    b
}

/// The options of one position's select: "not bound", then each parameter by its label
/// (a date range as its two ends), `current` selected.
fn options(params: &[Value], current: &str) -> String {
    let mut options = String::from("<option value=\"\">not bound</option>");
    for p in params {
        let name = p["name"].as_str().unwrap_or_default();
        let label = p["label"].as_str().unwrap_or(name);
        let targets: Vec<(String, String)> = if p["kind"] == "date_range" {
            vec![(format!("{name}.from"), format!("{label}: from")), (format!("{name}.to"), format!("{label}: to"))]
        } else {
            vec![(name.to_owned(), label.to_owned())]
        };
        for (value, text) in targets {
            let sel = if !current.is_empty() && value == current { " selected" } else { "" };
            let _ = write!(options, "<option value=\"{}\"{sel}>{}</option>", e(&value), e(&text));
        }
    }
    options
}

/// One position's row: its labelled select and where a refusal about it is said. `None`
/// is the template's row, whose number bindings.js fills in.
fn row(pos: Option<usize>, options: &str) -> String {
    let n = pos.map(|p| p.to_string()).unwrap_or_default();
    format!(
        "<div class=\"row\" data-bind-row=\"{n}\"><label>Parameter {n} <select data-bind-position=\"{n}\">{options}</select></label>\
         <output class=\"error\" role=\"alert\" data-bind-error=\"{n}\"></output></div>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_counted_outside_quotes_and_comments() {
        assert_eq!(positions("SELECT * FROM t WHERE a = $1 AND b BETWEEN $2 AND $3"), 3);
        assert_eq!(positions("SELECT '$9', \"?\" FROM t WHERE a = $2 -- $7 ?\n"), 2);
        assert_eq!(positions("SELECT * FROM t WHERE a = ? AND b = ?"), 2);
        assert_eq!(positions("SELECT 1"), 0);
    }

    #[test]
    fn each_position_offers_the_parameters_with_the_bound_one_selected() {
        let params = serde_json::json!([{ "name": "region", "label": "Region <r>", "kind": "choice" },
                                        { "name": "period", "label": "Period", "kind": "date_range" }]);
        let h = fieldset(&params, "SELECT $1, $2", &serde_json::json!({ "2": "period.to" }));
        assert!(h.contains("data-bind-position=\"1\"><option value=\"\">not bound</option>"), "{h}");
        assert!(h.contains("<option value=\"period.to\" selected>Period: to</option>"), "{h}");
        assert!(h.contains("Region &lt;r&gt;"), "labels are escaped: {h}");
        assert!(!h.contains("data-bind-position=\"3\""), "{h}");
        assert_eq!(fieldset(&serde_json::json!([]), "SELECT $1", &Value::Null), "");
    }

    /// The part of `h` before its `<template>`: what the page shows at load.
    fn shown(h: &str) -> &str {
        h.split("<template").next().unwrap_or_default()
    }

    #[test]
    fn sql_without_positions_still_gets_the_fieldset_and_its_template_when_the_project_has_parameters() {
        let params = serde_json::json!([{ "name": "region", "label": "Region", "kind": "choice" },
                                        { "name": "period", "label": "Period", "kind": "date_range" }]);
        let h = fieldset(&params, "SELECT 1 -- no $1 here", &Value::Null);
        assert!(
            h.starts_with(
                "<fieldset class=\"bindings\" data-bindings data-max-positions=\"50\"><legend>Filters</legend>"
            ),
            "{h}"
        );
        assert!(shown(&h).contains("<p class=\"muted\" data-no-positions>"), "the empty state is shown: {h}");
        assert!(!shown(&h).contains("<select"), "no select at load: {h}");
        // The template's row is a row as rendered for a position, unnumbered, nothing chosen.
        let template = h.split("<template data-bind-template>").nth(1).and_then(|t| t.split("</template>").next());
        let template = template.unwrap_or_default();
        assert_eq!(template, row(None, &options(params.as_array().map(Vec::as_slice).unwrap_or_default(), "")));
        assert!(template.contains("<label>Parameter  <select data-bind-position=\"\"><option value=\"\">not bound</option>\
                                   <option value=\"region\">Region</option><option value=\"period.from\">Period: from</option>"),
                "{template}");
        assert!(template.contains("data-bind-error=\"\"") && !template.contains("selected"), "{template}");
        assert!(
            h.contains("aria-live=\"polite\" data-bind-status")
                && h.ends_with("<script src=\"/console/assets/bindings.js\" defer></script>"),
            "{h}"
        );
    }

    #[test]
    fn rows_rendered_at_load_have_the_template_markup_and_the_empty_state_hidden() {
        let params = serde_json::json!([{ "name": "region", "kind": "choice" }]);
        let h = fieldset(&params, "SELECT ?, ?", &serde_json::json!({ "2": "region" }));
        assert!(shown(&h).contains("<p class=\"muted\" data-no-positions hidden>"), "{h}");
        assert!(
            shown(&h).contains(
                "<div class=\"row\" data-bind-row=\"1\"><label>Parameter 1 <select data-bind-position=\"1\">"
            ),
            "{h}"
        );
        assert!(
            shown(&h).contains(
                "<option value=\"region\" selected>region</option></select></label>\
                                    <output class=\"error\" role=\"alert\" data-bind-error=\"2\"></output>"
            ),
            "{h}"
        );
        // Positions bound beyond the SQL are shown too (a save then says what is wrong).
        let h = fieldset(&params, "SELECT $1", &serde_json::json!({ "3": "region" }));
        assert!(
            shown(&h).contains("data-bind-position=\"3\"") && !shown(&h).contains("data-bind-position=\"4\""),
            "{h}"
        );
    }
}
