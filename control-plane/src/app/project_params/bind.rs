//! A query's `bind` (which of its parameter positions take which dashboard parameter),
//! checked against the project's parameters ([`check_bind`]); what a job records of the
//! values it ran with ([`filters_key`]); the values put into a query's parameters
//! ([`bind_params`]).

use std::collections::BTreeMap;

use outpost_protocol::Param;
use serde_json::Value;

use super::{bad, did_you_mean, Filters, Kind, Parameter, Val};
use crate::http::ApiError;

/// A bound value's source: a parameter, and for a date range which end.
fn source<'a>(params: &'a [Parameter], target: &str) -> Result<(&'a Parameter, Option<bool>), String> {
    let (name, end) = match target.split_once('.') {
        Some((n, e)) => (n, Some(e)),
        None => (target, None),
    };
    let Some(p) = params.iter().find(|p| p.name == name) else {
        let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        let listed =
            if names.is_empty() { " (the project has no parameters)".to_owned() } else { did_you_mean(name, &names) };
        return Err(format!("no parameter {name:?}{listed}"));
    };
    match (&p.kind, end) {
        (Kind::DateRange { .. }, Some("from")) => Ok((p, Some(true))),
        (Kind::DateRange { .. }, Some("to")) => Ok((p, Some(false))),
        (Kind::DateRange { .. }, _) => Err(format!("{name:?} is a date range: bind {name}.from or {name}.to")),
        (_, None) => Ok((p, None)),
        (_, Some(_)) => Err(format!("{name:?} is not a date range; bind it as {name:?}")),
    }
}

/// Checks a query's `bind` (at `at`, e.g. `queries[0].bind`) against the project's
/// parameters, the query's `params` (`n_params` of them) and its `customer_param`: each
/// key a 1-based position, each value a parameter (`period.from`/`period.to` for a date
/// range), no position also the customer's, and no gap after `params`.
pub fn check_bind(
    at: &str,
    bind: &BTreeMap<String, String>,
    params: &[Parameter],
    n_params: usize,
    customer_param: Option<u16>,
) -> Result<(), ApiError> {
    let mut filled: std::collections::BTreeSet<usize> = (1..=n_params).collect();
    if let Some(c) = customer_param.filter(|c| *c >= 1) {
        filled.insert(usize::from(c));
    }
    for (k, target) in bind {
        let field = format!("{at}.{k}");
        let pos = k
            .parse::<u16>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| bad(&field, "a key of bind is a parameter position, 1-based (\"1\" for $1)"))?;
        if customer_param == Some(pos) {
            return Err(bad(&field, format!("position {pos} is customer_param's: it receives the end customer id")));
        }
        source(params, target).map_err(|m| bad(&field, m))?;
        filled.insert(usize::from(pos));
    }
    // Positions past `params` extend them: they must follow each other.
    if let Some(gap) = (1..=filled.last().copied().unwrap_or(0)).find(|p| !filled.contains(p)) {
        let field = bind
            .keys()
            .find(|k| k.parse::<usize>().is_ok_and(|p| p > gap))
            .map_or_else(|| at.to_owned(), |k| format!("{at}.{k}"));
        return Err(bad(
            &field,
            format!("position {gap} would have no value: give it in params, bind it, or make it customer_param"),
        ));
    }
    Ok(())
}

/// The names of the parameters query `bind` uses, in order, each once.
pub(super) fn bound_names(bind: &BTreeMap<String, String>) -> std::collections::BTreeSet<&str> {
    bind.values().map(|t| t.split_once('.').map_or(t.as_str(), |(n, _)| n)).collect()
}

/// What a job of a query with `bind` records of the run's values: the sha256 (hex) of
/// the canonical JSON of the values of the parameters it binds; `None` when it binds none.
pub fn filters_key(bind: &BTreeMap<String, String>, filters: &Filters) -> Option<String> {
    bound_values(bind, filters).map(|(key, _)| key)
}

/// The key [`filters_key`] gives, with the canonical JSON it is the sha256 of (the values
/// of the parameters `bind` uses, by name): what a job's page says it ran with.
pub fn bound_values(bind: &BTreeMap<String, String>, filters: &Filters) -> Option<(String, String)> {
    if bind.is_empty() {
        return None;
    }
    let canonical: serde_json::Map<String, Value> = bound_names(bind)
        .into_iter()
        .filter_map(|n| filters.values.get(n).map(|(v, int)| (n.to_owned(), v.to_json(*int))))
        .collect();
    let text = Value::Object(canonical).to_string();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    Some((digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(), text))
}

/// `params` with the run's values put into the positions `bind` names (replacing one of
/// `params`, or extending them). Positions were checked when the project was saved; one
/// that is not there any more (a parameter removed since) is an error naming it.
pub fn bind_params(
    mut params: Vec<Param>,
    bind: &BTreeMap<String, String>,
    project: &[Parameter],
    filters: &Filters,
) -> Result<Vec<Param>, ApiError> {
    let mut positions: Vec<(usize, &String)> =
        bind.iter().filter_map(|(k, t)| k.parse::<usize>().ok().filter(|p| *p >= 1).map(|p| (p, t))).collect();
    positions.sort_by_key(|(p, _)| *p);
    for (pos, target) in positions {
        let (p, end) = source(project, target).map_err(|m| bad(&format!("bind.{pos}"), m))?;
        let v = filters.get(&p.name).ok_or_else(|| bad(&format!("filters.{}", p.name), "has no value"))?;
        let param = match (v, end) {
            (Val::Text(t), _) => Param::Text(t.clone()),
            #[allow(clippy::cast_possible_truncation)]
            (Val::Num(n), _) if p.integer() => Param::Int(*n as i64),
            (Val::Num(n), _) => Param::Float(*n),
            (Val::Dates(f, _), Some(true)) => Param::Text(f.to_string()),
            (Val::Dates(_, t), _) => Param::Text(t.to_string()),
        };
        let at = pos - 1;
        if at < params.len() {
            params[at] = param;
        } else if at == params.len() {
            params.push(param);
        } else {
            // A gap (customer_param fills its position later): keep the order by position.
            params.resize(at, Param::Null);
            params.push(param);
        }
    }
    Ok(params)
}
