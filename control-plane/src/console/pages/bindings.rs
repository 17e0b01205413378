//! The query page's **Filters** part, when it was opened from a dashboard tile whose
//! project has parameters: one select per parameter position of the query (`$1`, `$2`, …
//! or each `?`), offering the project's parameters (a date range as its `.from` and `.to`)
//! or nothing. dashboard.js puts the choices into the query's `bind` when **Save to
//! project** sends the project's `PUT`, and says a refusal (`queries[0].bind.2: …`) next
//! to that position's select.

use std::fmt::Write as _;

use serde_json::Value;

use crate::console::sanitize_svg::escape as e;

/// Most positions offered (the API's own limit on a query's parameters is higher; a
/// dashboard binds a few).
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
/// project has none.
pub(crate) fn fieldset(parameters: &Value, sql: &str, bind: &Value) -> String {
    let params = parameters.as_array().map(Vec::as_slice).unwrap_or_default();
    if params.is_empty() {
        return String::new();
    }
    let bound_max = bind.as_object().into_iter().flatten().filter_map(|(k, _)| k.parse::<usize>().ok()).max();
    let n = positions(sql).max(bound_max.unwrap_or(0).min(MAX_POSITIONS));
    let mut b = String::from(
        "<fieldset class=\"bindings\" data-bindings><legend>Filters</legend>\
         <p class=\"hint\">Which dashboard filter fills each parameter of the query; a position left \
         unbound keeps its value from Params.</p>",
    );
    if n == 0 {
        b.push_str("<p class=\"muted\" data-no-positions>The query has no parameters ($1, $2, … or ?) to bind.</p>");
    }
    for pos in 1..=n {
        let current = bind[pos.to_string()].as_str().unwrap_or_default();
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
                let sel = if value == current { " selected" } else { "" };
                let _ = write!(options, "<option value=\"{}\"{sel}>{}</option>", e(&value), e(&text));
            }
        }
        let _ = write!(
            b,
            "<div class=\"row\"><label>Parameter {pos} <select data-bind-position=\"{pos}\">{options}</select></label>\
             <output class=\"error\" role=\"alert\" data-bind-error=\"{pos}\"></output></div>"
        );
    }
    b.push_str("</fieldset>");
    b
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
}
