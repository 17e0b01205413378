//! A dashboard's filter bar: its parameters as a select (choice), an input (text, number)
//! or two date inputs (date range), carried in the page's URL as `f.NAME=VALUE`
//! (`f.period=2026-01-01..2026-02-01`; the form sends a range as `f.period.from` and
//! `f.period.to`, read the same way). "Apply" is a plain `GET` of the page: no script.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::console::sanitize_svg::escape as e;
use crate::http::percent_decode;

/// The filter values of the page's URL, by parameter name, as text (a range as `from..to`).
pub(crate) fn from_url(q: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut ends: BTreeMap<String, (String, String)> = BTreeMap::new();
    for kv in q.unwrap_or_default().split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let (Some(k), Some(v)) = (k.strip_prefix("f."), percent_decode(v)) else { continue };
        if let Some(n) = k.strip_suffix(".from") {
            ends.entry(n.to_owned()).or_default().0 = v;
        } else if let Some(n) = k.strip_suffix(".to") {
            ends.entry(n.to_owned()).or_default().1 = v;
        } else {
            out.insert(k.to_owned(), v);
        }
    }
    for (n, (f, t)) in ends {
        out.insert(n, format!("{f}..{t}"));
    }
    out
}

/// The `filters=` query of the results API for the URL's values (`None`: all defaults).
pub(crate) fn api_query(values: &BTreeMap<String, String>) -> Option<String> {
    if values.is_empty() {
        return None;
    }
    let obj: serde_json::Map<String, Value> =
        values.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
    Some(format!("filters={}", crate::http::pct(&Value::Object(obj).to_string())))
}

/// A value of the results' `filters` (canonical JSON) as the form (and the URL) shows it.
pub(crate) fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => format!(
            "{}..{}",
            o.get("from").and_then(Value::as_str).unwrap_or_default(),
            o.get("to").and_then(Value::as_str).unwrap_or_default()
        ),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The filter bar of project `pid` with `params` (the project's `parameters`) showing
/// `values` (the results' `filters`), and `error` (a refused value) when there is one.
pub(crate) fn bar(pid: &str, params: &[Value], values: &Value, error: Option<&str>) -> String {
    form(&format!("/console/projects/{pid}"), "", params, values, error)
}

/// A filter bar that sends its values (and `hidden`, markup of hidden inputs) to `action`
/// with a plain `GET`; empty without `params`.
pub(crate) fn form(action: &str, hidden: &str, params: &[Value], values: &Value, error: Option<&str>) -> String {
    if params.is_empty() {
        return String::new();
    }
    let mut b = format!(
        "<form class=\"row filters\" method=\"get\" action=\"{}\" data-filters>{hidden}\
         <span class=\"hint\">Filters</span>",
        e(action)
    );
    for p in params {
        let name = p["name"].as_str().unwrap_or_default();
        let label = e(p["label"].as_str().unwrap_or(name));
        let field = format!("f.{}", e(name));
        let value = shown(&values[name]);
        match p["kind"].as_str().unwrap_or_default() {
            "choice" => {
                let _ = write!(b, "<label>{label} <select name=\"{field}\">");
                for c in p["choices"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    let sel = if c == value { " selected" } else { "" };
                    let _ = write!(b, "<option value=\"{c}\"{sel}>{c}</option>", c = e(c));
                }
                b.push_str("</select></label>");
                if p["choices_from"].is_object() && p["choices"].as_array().is_none_or(Vec::is_empty) {
                    // Filled by a query that has no result yet.
                    b.push_str("<span class=\"hint\">(run the dashboard once to fill it)</span>");
                }
            }
            "date_range" => {
                let (from, to) = value.split_once("..").unwrap_or_default();
                let _ = write!(
                    b,
                    "<fieldset class=\"row\"><legend>{label}</legend>\
                     <label>From <input type=\"date\" name=\"{field}.from\" value=\"{}\" required></label>\
                     <label>To <input type=\"date\" name=\"{field}.to\" value=\"{}\" required></label></fieldset>",
                    e(from),
                    e(to)
                );
            }
            "number" => {
                let step = if p["integer"].as_bool() == Some(true) { "1" } else { "any" };
                let bound = |k: &str| p[k].as_f64().map(|n| format!(" {k}=\"{n}\"")).unwrap_or_default();
                let _ = write!(
                    b,
                    "<label>{label} <input type=\"number\" name=\"{field}\" value=\"{}\" step=\"{step}\"{}{} required></label>",
                    e(&value),
                    bound("min"),
                    bound("max")
                );
            }
            _ => {
                let _ = write!(
                    b,
                    "<label>{label} <input name=\"{field}\" value=\"{}\" maxlength=\"200\"></label>",
                    e(&value)
                );
            }
        }
    }
    b.push_str("<button type=\"submit\">Apply</button>");
    if let Some(m) = error {
        let _ = write!(b, "<output role=\"alert\" class=\"error\" data-filters-error>{}</output>", e(m));
    }
    b.push_str("</form>");
    b
}

/// The values shown, in words, for a page without a filter bar (the embed page): "Region:
/// US · Period: 2026-01-01..2026-02-01", escaped; empty without parameters.
pub(crate) fn summary(params: &[Value], values: &Value) -> String {
    let parts: Vec<String> = params
        .iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap_or_default();
            format!("{}: {}", e(p["label"].as_str().unwrap_or(name)), e(&shown(&values[name])))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("<p class=\"muted\" data-filters-shown>{}</p>", parts.join(" · "))
    }
}

/// Hidden inputs that make the Refresh form run with the shown `values`.
pub(crate) fn hidden(values: &Value) -> String {
    let mut b = String::new();
    for (k, v) in values.as_object().into_iter().flatten() {
        let _ = write!(b, "<input type=\"hidden\" name=\"filters.{}\" value=\"{}\">", e(k), e(&shown(v)));
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_url_carries_values_and_ranges_either_way() {
        let got = from_url(Some("f.region=US&x=1&f.period=2026-01-01..2026-02-01&f.q=a%20b"));
        assert_eq!(got["region"], "US");
        assert_eq!(got["period"], "2026-01-01..2026-02-01");
        assert_eq!(got["q"], "a b");
        let got = from_url(Some("f.period.from=2026-01-01&f.period.to=2026-02-01"));
        assert_eq!(got["period"], "2026-01-01..2026-02-01");
        assert_eq!(api_query(&BTreeMap::new()), None);
        let q = api_query(&got).expect("some");
        assert_eq!(
            percent_decode(q.trim_start_matches("filters=")).as_deref(),
            Some(r#"{"period":"2026-01-01..2026-02-01"}"#)
        );
    }

    #[test]
    fn the_bar_shows_each_kind_escaped_with_the_values_shown() {
        let params = [
            json!({ "name": "region", "label": "Region <b>", "kind": "choice", "choices": ["EU", "US"] }),
            json!({ "name": "period", "label": "Period", "kind": "date_range" }),
            json!({ "name": "n", "label": "N", "kind": "number", "integer": true, "min": 0.0 }),
        ];
        let values = json!({ "region": "US", "period": { "from": "2026-01-01", "to": "2026-02-01" }, "n": 3 });
        let html = bar("p1", &params, &values, Some("filters.region: <no>"));
        assert!(html.contains("action=\"/console/projects/p1\"") && html.contains("method=\"get\""), "{html}");
        assert!(html.contains("<option value=\"US\" selected>US</option>"), "{html}");
        assert!(html.contains("Region &lt;b&gt;") && html.contains("filters.region: &lt;no&gt;"), "{html}");
        assert!(html.contains("name=\"f.period.from\" value=\"2026-01-01\""), "{html}");
        assert!(html.contains("name=\"f.n\" value=\"3\" step=\"1\" min=\"0\""), "{html}");
        assert!(!html.contains("style=") && !html.contains("onclick"));
        assert_eq!(bar("p1", &[], &values, None), "");
        let h = hidden(&values);
        assert!(h.contains("name=\"filters.period\" value=\"2026-01-01..2026-02-01\""), "{h}");
    }
}
