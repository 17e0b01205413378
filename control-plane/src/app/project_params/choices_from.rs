//! A `choice` parameter filled by a query: `"choices_from": {"query": N, "column": "region"}`
//! offers the distinct values of that column in the newest successful result of query N
//! of the same project (at most [`super::MAX_CHOICES`], first ones in result order).
//!
//! Checked at save: the shape here ([`parameter`]), the query against the project's
//! queries ([`check_choices_from`]: it exists, renders a `table`, does not bind this
//! parameter). The column is only known once the query has a result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{bad, bound_names, text_value, Kind, Parameter, Val};
use crate::http::ApiError;

/// Where a choice parameter's choices come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChoicesFrom {
    /// The index of a query of the same project (0-based, as in `queries`).
    pub query: usize,
    /// A column of its table result.
    pub column: String,
}

/// A `choice` parameter with `choices_from` (`o` is its object, at `at`).
pub(super) fn parameter(at: &str, o: &Map<String, Value>, name: String, label: String) -> Result<Parameter, ApiError> {
    let field = format!("{at}.choices_from");
    if o.contains_key("choices") {
        return Err(bad(&format!("{at}.choices"), "give either choices or choices_from, not both"));
    }
    let shape =
        "must be {\"query\": N, \"column\": \"region\"}: the distinct values of that column of query N's result";
    let from = o["choices_from"].as_object().ok_or_else(|| bad(&field, shape))?;
    if let Some(k) = from.keys().find(|k| !matches!(k.as_str(), "query" | "column")) {
        return Err(bad(&format!("{field}.{k}"), "unknown field; choices_from takes query and column"));
    }
    let query = from.get("query").and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
        bad(&format!("{field}.query"), "must be the index of a query of this project (0 for the first)")
    })?;
    let column = match from.get("column") {
        Some(c) => text_value(&format!("{field}.column"), c)?,
        None => String::new(),
    };
    if column.trim().is_empty() {
        return Err(bad(&format!("{field}.column"), "must name a column of the query's table result"));
    }
    // The default is checked against the choices when the dashboard runs; absent: the first.
    let default = match o.get("default") {
        Some(d) => text_value(&format!("{at}.default"), d)?,
        None => String::new(),
    };
    let choices_from = Some(ChoicesFrom { query, column });
    Ok(Parameter { name, label, kind: Kind::Choice { choices: Vec::new(), default, choices_from } })
}

/// Checks every `choices_from` against the project's queries, given as (render kind,
/// `bind`) in order: the query exists, renders a `table`, and does not bind the
/// parameter it fills (its choices would depend on themselves).
pub fn check_choices_from(params: &[Parameter], queries: &[(&str, &BTreeMap<String, String>)]) -> Result<(), ApiError> {
    for (i, p) in params.iter().enumerate() {
        let Kind::Choice { choices_from: Some(from), .. } = &p.kind else { continue };
        let field = format!("parameters[{i}].choices_from.query");
        let Some((render, bind)) = queries.get(from.query) else {
            return Err(bad(
                &field,
                format!("there is no query {} (the project has {}, counted from 0)", from.query, queries.len()),
            ));
        };
        if *render != "table" {
            return Err(bad(&field, format!("query {} renders {render}; choices come from a table query", from.query)));
        }
        if bound_names(bind).contains(p.name.as_str()) {
            return Err(bad(
                &field,
                format!("query {} binds {:?} itself: its choices would depend on the value chosen", from.query, p.name),
            ));
        }
    }
    Ok(())
}

/// A value of `p` when its choices come from a query: one of `current` (the choices now).
/// `None` for `current` when the query has no result yet.
fn value_among(field: &str, t: &str, current: Option<&[String]>) -> Result<Val, ApiError> {
    let Some(current) = current else {
        return Err(bad(field, "its choices come from a query with no result yet: run the dashboard once to fill it"));
    };
    if current.iter().any(|c| c == t) {
        return Ok(Val::Text(t.to_owned()));
    }
    let shown = if current.len() <= 10 { format!(" ({})", current.join(", ")) } else { String::new() };
    Err(bad(field, format!("{t:?} is not one of its choices{shown}")))
}

/// The current choices of each `choices_from` parameter, by name: `None` while its query
/// has no successful result.
pub type Current = BTreeMap<String, Option<Vec<String>>>;

/// The distinct values of `column` in a JSON table result (`{"columns": [...], "rows":
/// [[...]]}`), first ones in result order, at most [`super::MAX_CHOICES`]; numbers and
/// booleans as text, nulls left out. A result without that column gives none.
pub fn distinct_values(result: &Value, column: &str) -> Vec<String> {
    let Some(at) = result["columns"].as_array().and_then(|c| c.iter().position(|c| c.as_str() == Some(column))) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for row in result["rows"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let t = match &row[at] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => continue,
        };
        if !out.contains(&t) && t.chars().count() <= super::MAX_TEXT_CHARS {
            out.push(t);
            if out.len() == super::MAX_CHOICES {
                break;
            }
        }
    }
    out
}

/// Checks the run's values of the `choices_from` parameters against their `current`
/// choices: a value given (in `given`, the run's `filters`) must be one of them, and
/// is refused while the query has no result. A parameter left to its default takes it,
/// or without one the first current choice (empty while there is none, so the first run
/// of the dashboard, the one that fills the list, still runs).
pub fn apply(
    params: &[Parameter],
    filters: &mut super::Filters,
    given: Option<&Value>,
    current: &Current,
) -> Result<(), ApiError> {
    for p in params {
        let Kind::Choice { choices_from: Some(_), default, .. } = &p.kind else { continue };
        let now = current.get(&p.name).and_then(Option::as_deref);
        let chosen = given.and_then(|g| g.get(&p.name));
        let v = match chosen {
            Some(v) => {
                let field = format!("filters.{}", p.name);
                value_among(&field, &text_value(&field, v)?, now)?
            }
            None if default.is_empty() => Val::Text(now.and_then(<[String]>::first).cloned().unwrap_or_default()),
            None => continue,
        };
        filters.values.insert(p.name.clone(), (v, false));
    }
    Ok(())
}

/// The parameters as shown (`GET /v1/projects/{id}`, the embed): each `choices_from`
/// one with its current `choices` (none while its query has no result).
pub fn shown(params: &[Parameter], current: &Current) -> Value {
    let mut v = serde_json::to_value(params).unwrap_or_default();
    for (p, out) in params.iter().zip(v.as_array_mut().into_iter().flatten()) {
        if let Some(now) = current.get(&p.name) {
            out["choices"] = serde_json::to_value(now.clone().unwrap_or_default()).unwrap_or_default();
        }
    }
    v
}

#[cfg(test)]
#[path = "choices_from_tests.rs"]
mod tests;
