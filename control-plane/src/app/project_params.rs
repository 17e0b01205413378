//! A dashboard's parameters: named, typed values (a choice, a text, a number, a date
//! range) that its queries bind into parameter positions, shown as filters at the top of
//! the dashboard and carried in its URL (docs/DASHBOARDS.md, "Filters").
//!
//! - A project body's `parameters` (at most [`MAX_PARAMETERS`]) are checked by
//!   [`checked`]; a query's `bind` (`{"2": "region", "3": "period.from"}`, 1-based
//!   positions) by [`check_bind`].
//! - A run's `filters` are checked by [`resolve`]: absent ones take their default.
//! - [`bind_params`] puts the values into a query's typed parameters; [`filters_key`]
//!   is what a job records of the values it ran with (the sha256 of the canonical JSON of
//!   the values of the parameters its query binds; `None` when it binds none, as every
//!   job from before parameters), so a dashboard finds the results of exactly those values.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::ApiError;

mod bind;
mod choices_from;
use bind::bound_names;
pub use bind::{bind_params, bound_values, check_bind, filters_key};
pub use choices_from::{
    apply as apply_current_choices, check_choices_from, distinct_values, shown, ChoicesFrom, Current,
};

/// Most parameters of one project.
pub const MAX_PARAMETERS: usize = 20;
/// Most choices of a `choice` parameter.
pub const MAX_CHOICES: usize = 200;
/// Longest text value (a choice, a text), in characters.
pub const MAX_TEXT_CHARS: usize = 200;
/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;
/// Longest relative date range, in days.
pub const MAX_LAST_DAYS: u32 = 36_600;

/// One parameter as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    /// Its name: what `bind`, `filters` and the URL (`f.NAME`) use.
    pub name: String,
    /// What the filter bar calls it.
    pub label: String,
    /// Its kind, with the kind's settings and default.
    #[serde(flatten)]
    pub kind: Kind,
}

/// A parameter's kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// One of a static list of strings, or of the values of a query's column
    /// (`choices_from`, then `choices` is empty).
    Choice {
        /// The strings offered, in order.
        choices: Vec<String>,
        /// One of them (with `choices_from`: empty for "the first current choice").
        default: String,
        /// Where the choices come from instead of `choices`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        choices_from: Option<ChoicesFrom>,
    },
    /// Free text.
    Text {
        /// The default (may be empty).
        default: String,
    },
    /// A number: a 64-bit float, or a whole number with `integer`.
    Number {
        /// The default.
        default: f64,
        /// Least value allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        /// Greatest value allowed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
        /// Whole numbers only, bound as `int` (else `float`).
        #[serde(default)]
        integer: bool,
    },
    /// Two ISO dates, `from` ≤ `to`.
    DateRange {
        /// The default: fixed dates, or the last N days up to today (UTC).
        default: DateDefault,
    },
}

/// A date range's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DateDefault {
    /// Fixed dates.
    Fixed {
        /// First day.
        #[serde(with = "iso_date")]
        from: NaiveDate,
        /// Last day.
        #[serde(with = "iso_date")]
        to: NaiveDate,
    },
    /// The `last_days` days up to today (UTC), today included.
    Last {
        /// How many days.
        last_days: u32,
    },
}

/// A date as an ISO string (chrono is built without serde here).
mod iso_date {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let s = String::deserialize(d)?;
        NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(serde::de::Error::custom)
    }
}

/// A parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// A choice or a text.
    Text(String),
    /// A number (whole when the parameter is `integer`).
    Num(f64),
    /// A date range.
    Dates(NaiveDate, NaiveDate),
}

impl Val {
    /// As JSON (the canonical form: a string, a number, `{"from", "to"}`).
    pub fn to_json(&self, integer: bool) -> Value {
        match self {
            Val::Text(t) => Value::String(t.clone()),
            #[allow(clippy::cast_possible_truncation)]
            Val::Num(n) if integer => Value::from(*n as i64),
            Val::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
            Val::Dates(f, t) => serde_json::json!({ "from": f.to_string(), "to": t.to_string() }),
        }
    }

    /// As the console's URL carries it (`f.period=2026-01-01..2026-02-01`).
    pub fn to_url(&self) -> String {
        match self {
            Val::Text(t) => t.clone(),
            Val::Num(n) => n.to_string(),
            Val::Dates(f, t) => format!("{f}..{t}"),
        }
    }
}

/// The values of a run, by parameter name: every parameter of the project has one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    values: BTreeMap<String, (Val, bool)>,
}

impl Filters {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&Val> {
        self.values.get(name).map(|(v, _)| v)
    }

    /// Every value as JSON, by name (what a run answers with).
    pub fn to_json(&self) -> Value {
        Value::Object(self.values.iter().map(|(k, (v, int))| (k.clone(), v.to_json(*int))).collect())
    }
}

fn bad(field: &str, m: impl std::fmt::Display) -> ApiError {
    ApiError::bad_field(field, m)
}

fn did_you_mean(given: &str, names: &[&str]) -> String {
    crate::http::did_you_mean(given, names)
}

fn text_value(field: &str, v: &Value) -> Result<String, ApiError> {
    let t = v.as_str().ok_or_else(|| bad(field, "must be a string"))?;
    let n = t.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(bad(field, format!("is {n} characters; give at most {MAX_TEXT_CHARS}")));
    }
    if t.chars().any(char::is_control) {
        return Err(bad(field, "must not hold control characters"));
    }
    Ok(t.to_owned())
}

fn date(field: &str, v: &Value) -> Result<NaiveDate, ApiError> {
    let s = v.as_str().ok_or_else(|| bad(field, "must be an ISO date string such as \"2026-01-31\""))?;
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| bad(field, format!("{s:?} is not an ISO date (YYYY-MM-DD, such as \"2026-01-31\")")))
}

/// `{"from": "2026-01-01", "to": "2026-02-01"}` or `"2026-01-01..2026-02-01"`.
fn date_range(field: &str, v: &Value) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let (from, to) = match v {
        Value::String(s) => {
            let (f, t) = s.split_once("..").ok_or_else(|| {
                bad(field, "must be {\"from\": \"2026-01-01\", \"to\": \"2026-02-01\"} or \"2026-01-01..2026-02-01\"")
            })?;
            (date(&format!("{field}.from"), &Value::from(f))?, date(&format!("{field}.to"), &Value::from(t))?)
        }
        Value::Object(o) => {
            if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "from" | "to")) {
                return Err(bad(&format!("{field}.{k}"), "unknown field; a date range takes from and to"));
            }
            let get = |k: &str| o.get(k).ok_or_else(|| bad(&format!("{field}.{k}"), "is required"));
            (date(&format!("{field}.from"), get("from")?)?, date(&format!("{field}.to"), get("to")?)?)
        }
        _ => {
            return Err(bad(
                field,
                "must be {\"from\": \"2026-01-01\", \"to\": \"2026-02-01\"} or \"2026-01-01..2026-02-01\"",
            ))
        }
    };
    if from > to {
        return Err(bad(field, format!("from ({from}) is after to ({to})")));
    }
    Ok((from, to))
}

fn number(field: &str, v: &Value) -> Result<f64, ApiError> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        // The URL carries numbers as text.
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite()).ok_or_else(|| bad(field, "must be a number"))
}

impl Parameter {
    /// Checks `v` as a value of this parameter (a run's filter, or its default).
    pub fn value(&self, field: &str, v: &Value) -> Result<Val, ApiError> {
        match &self.kind {
            Kind::Choice { choices, choices_from, .. } => {
                let t = text_value(field, v)?;
                // Choices from a query are checked against its current result by the caller.
                if choices_from.is_some() || choices.contains(&t) {
                    Ok(Val::Text(t))
                } else {
                    let names: Vec<&str> = choices.iter().map(String::as_str).collect();
                    let shown = if choices.len() <= 10 { format!(" ({})", choices.join(", ")) } else { String::new() };
                    Err(bad(field, format!("{t:?} is not one of its choices{shown}{}", did_you_mean(&t, &names))))
                }
            }
            Kind::Text { .. } => Ok(Val::Text(text_value(field, v)?)),
            Kind::Number { min, max, integer, .. } => {
                let n = number(field, v)?;
                if *integer && (n.fract() != 0.0 || n.abs() > 9.0e15) {
                    return Err(bad(field, format!("{n} is not a whole number")));
                }
                if let Some(m) = min.filter(|m| n < *m) {
                    return Err(bad(field, format!("{n} is below the least allowed, {m}")));
                }
                if let Some(m) = max.filter(|m| n > *m) {
                    return Err(bad(field, format!("{n} is above the greatest allowed, {m}")));
                }
                Ok(Val::Num(n))
            }
            Kind::DateRange { .. } => {
                let (f, t) = date_range(field, v)?;
                Ok(Val::Dates(f, t))
            }
        }
    }

    /// The default value, relative dates read on `today`.
    pub fn default_value(&self, today: NaiveDate) -> Val {
        match &self.kind {
            Kind::Choice { default, .. } | Kind::Text { default } => Val::Text(default.clone()),
            Kind::Number { default, .. } => Val::Num(*default),
            Kind::DateRange { default: DateDefault::Fixed { from, to } } => Val::Dates(*from, *to),
            Kind::DateRange { default: DateDefault::Last { last_days } } => {
                let from = today - chrono::Days::new(u64::from(last_days.saturating_sub(1)));
                Val::Dates(from, today)
            }
        }
    }

    fn integer(&self) -> bool {
        matches!(self.kind, Kind::Number { integer: true, .. })
    }
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    n.len() <= 40
        && c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
}

/// One entry of a body's `parameters`, checked.
fn parameter(at: &str, v: &Value) -> Result<Parameter, ApiError> {
    let o = v.as_object().ok_or_else(|| {
        bad(at, "must be an object: {\"name\": \"region\", \"kind\": \"choice\", \"choices\": [\"EU\", \"US\"]}")
    })?;
    let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
    let allowed: &[&str] = match kind {
        "choice" => &["choices", "choices_from"],
        "text" => &[],
        "number" => &["min", "max", "integer"],
        "date_range" => &[],
        _ => {
            const KINDS: [&str; 4] = ["choice", "text", "number", "date_range"];
            let given = o.get("kind").map_or_else(|| "none".to_owned(), ToString::to_string);
            return Err(bad(
                &format!("{at}.kind"),
                format!(
                    "{given} is not a parameter kind; give one of choice, text, number or date_range{}",
                    did_you_mean(kind, &KINDS)
                ),
            ));
        }
    };
    if let Some(k) = o
        .keys()
        .find(|k| !matches!(k.as_str(), "name" | "label" | "kind" | "default") && !allowed.contains(&k.as_str()))
    {
        return Err(bad(&format!("{at}.{k}"), format!("unknown field for a {kind} parameter")));
    }
    let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
    if !valid_name(name) {
        return Err(bad(
            &format!("{at}.name"),
            "must be 1 to 40 characters of a-z, 0-9 and _, starting with a letter (it is used in URLs: f.NAME)",
        ));
    }
    let label = match o.get("label") {
        None => name.to_owned(),
        Some(l) => {
            let l = l.as_str().unwrap_or_default();
            if l.trim().is_empty() || l.chars().count() > MAX_LABEL_CHARS || l.chars().any(char::is_control) {
                return Err(bad(
                    &format!("{at}.label"),
                    format!("must be 1 to {MAX_LABEL_CHARS} printable characters"),
                ));
            }
            l.to_owned()
        }
    };
    let dflt = format!("{at}.default");
    let kind = match kind {
        "choice" if o.contains_key("choices_from") => {
            return choices_from::parameter(at, o, name.into(), label);
        }
        "choice" => {
            let list = o.get("choices").and_then(Value::as_array).ok_or_else(|| {
                bad(&format!("{at}.choices"), format!("must be a list of 1 to {MAX_CHOICES} strings"))
            })?;
            if list.is_empty() || list.len() > MAX_CHOICES {
                return Err(bad(&format!("{at}.choices"), format!("must be a list of 1 to {MAX_CHOICES} strings")));
            }
            let mut choices: Vec<String> = Vec::with_capacity(list.len());
            for (i, c) in list.iter().enumerate() {
                let f = format!("{at}.choices[{i}]");
                let t = text_value(&f, c)?;
                if let Some(j) = choices.iter().position(|x| *x == t) {
                    return Err(bad(&f, format!("{t:?} is listed twice (also choices[{j}])")));
                }
                choices.push(t);
            }
            let default = choices[0].clone();
            let mut p =
                Parameter { name: name.into(), label, kind: Kind::Choice { choices, default, choices_from: None } };
            if let Some(d) = o.get("default") {
                let Val::Text(t) = p.value(&dflt, d)? else { unreachable!("a choice is text") };
                if let Kind::Choice { default, .. } = &mut p.kind {
                    *default = t;
                }
            }
            return Ok(p);
        }
        "text" => {
            Kind::Text { default: o.get("default").map(|d| text_value(&dflt, d)).transpose()?.unwrap_or_default() }
        }
        "number" => {
            let bound = |k: &str| -> Result<Option<f64>, ApiError> {
                match o.get(k) {
                    None => Ok(None),
                    Some(v) => v
                        .as_f64()
                        .filter(|n| n.is_finite())
                        .map(Some)
                        .ok_or_else(|| bad(&format!("{at}.{k}"), "must be a number")),
                }
            };
            let (min, max) = (bound("min")?, bound("max")?);
            if let (Some(a), Some(b)) = (min, max) {
                if a > b {
                    return Err(bad(&format!("{at}.max"), format!("{b} is below min ({a})")));
                }
            }
            let integer = match o.get("integer") {
                None => false,
                Some(v) => v.as_bool().ok_or_else(|| bad(&format!("{at}.integer"), "must be true or false"))?,
            };
            let mut p = Parameter {
                name: name.into(),
                label,
                kind: Kind::Number {
                    default: min.unwrap_or(0.0).max(0.0).min(max.unwrap_or(f64::MAX)),
                    min,
                    max,
                    integer,
                },
            };
            if let Some(d) = o.get("default") {
                if !d.is_number() {
                    return Err(bad(&dflt, "must be a number"));
                }
                let Val::Num(n) = p.value(&dflt, d)? else { unreachable!("a number") };
                if let Kind::Number { default, .. } = &mut p.kind {
                    *default = n;
                }
            } else if let Kind::Number { default, .. } = &p.kind {
                // The implicit default must itself be allowed.
                p.value(&dflt, &Value::from(*default))?;
            }
            return Ok(p);
        }
        _ => {
            let default = match o.get("default") {
                None => DateDefault::Last { last_days: 30 },
                Some(Value::Object(d)) if d.contains_key("last_days") => {
                    if d.len() != 1 {
                        return Err(bad(&dflt, "give either {\"last_days\": n} or {\"from\": …, \"to\": …}"));
                    }
                    let n = d["last_days"]
                        .as_u64()
                        .filter(|n| (1..=u64::from(MAX_LAST_DAYS)).contains(n))
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            bad(
                                &format!("{dflt}.last_days"),
                                format!("must be a whole number of days from 1 to {MAX_LAST_DAYS}"),
                            )
                        })?;
                    DateDefault::Last { last_days: n }
                }
                Some(d) => {
                    let (from, to) = date_range(&dflt, d)?;
                    DateDefault::Fixed { from, to }
                }
            };
            Kind::DateRange { default }
        }
    };
    Ok(Parameter { name: name.into(), label, kind })
}

/// Checks a project body's `parameters`.
pub fn checked(params: &[Value]) -> Result<Vec<Parameter>, ApiError> {
    if params.len() > MAX_PARAMETERS {
        return Err(bad("parameters", format!("give at most {MAX_PARAMETERS} parameters")));
    }
    let mut out: Vec<Parameter> = Vec::with_capacity(params.len());
    for (i, v) in params.iter().enumerate() {
        let at = format!("parameters[{i}]");
        let p = parameter(&at, v)?;
        if let Some(j) = out.iter().position(|q| q.name == p.name) {
            return Err(bad(&format!("{at}.name"), format!("{:?} is also the name of parameters[{j}]", p.name)));
        }
        out.push(p);
    }
    Ok(out)
}

/// A project's stored parameters (`[]` when it has none, or they no longer read).
pub fn parse_stored(json: &str) -> Vec<Parameter> {
    serde_json::from_str(json).unwrap_or_default()
}

/// The parameters as stored.
pub fn to_json(params: &[Parameter]) -> Result<String, ApiError> {
    serde_json::to_string(params).map_err(ApiError::internal)
}

/// The values of a run: `given` (a JSON object by parameter name, at field `filters`)
/// checked, the others their default (relative dates read on `today`).
pub fn resolve(params: &[Parameter], given: Option<&Value>, today: NaiveDate) -> Result<Filters, ApiError> {
    let empty = serde_json::Map::new();
    let given = match given {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad("filters", "must be an object of values by parameter name: {\"region\": \"US\"}")),
    };
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    if let Some(k) = given.keys().find(|k| !names.contains(&k.as_str())) {
        let known =
            if names.is_empty() { " (the project has no parameters)".to_owned() } else { did_you_mean(k, &names) };
        return Err(bad(&format!("filters.{k}"), format!("no parameter {k:?}{known}")));
    }
    let mut values = BTreeMap::new();
    for p in params {
        let v = match given.get(&p.name) {
            Some(v) => p.value(&format!("filters.{}", p.name), v)?,
            None => p.default_value(today),
        };
        values.insert(p.name.clone(), (v, p.integer()));
    }
    Ok(Filters { values })
}

#[cfg(test)]
mod tests;
