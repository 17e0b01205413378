//! A single value with a label: the first row's value of one column, as JSON.
//!
//! `{"label", "column", "type", "value", "formatted"}`: `value` is exact (decimals as
//! strings, as in tables), `formatted` is what a dashboard shows, with thousands
//! separators, the requested decimals (rounded half away from zero, on the decimal text
//! itself for exact decimals) and the unit; or, with a `format`, compact (`43.7M`),
//! percent or currency.

use outpost_protocol::ScalarSpec;
use serde::Serialize;

use super::format::{format_number, unit_suffix, ValueFormat};
use super::{column_index, value_text, JsonCell, RenderError, Rendered};
use crate::resultset::{ResultSet, Value};

#[derive(Serialize)]
struct Scalar<'a> {
    label: &'a str,
    column: &'a str,
    #[serde(rename = "type")]
    type_name: &'static str,
    value: JsonCell<'a>,
    formatted: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
    /// Rows the query returned beyond the first (not shown).
    more_rows: bool,
}

/// Renders the first row's `spec.column`.
pub fn render_scalar(spec: &ScalarSpec, rs: &ResultSet) -> Result<Rendered, RenderError> {
    let ci = column_index(&rs.columns, &spec.column)?;
    let value = rs.rows.first().map_or(&Value::Null, |r| &r[ci]);
    let fmt = ValueFormat::new(spec.format, spec.unit.as_deref(), spec.decimals);
    let number = value.as_f64().filter(|n| n.is_finite() && value.is_number());
    let formatted = match number {
        // Compact, percent and currency: the number in that format, with its unit.
        Some(n) if !spec.format.is_plain() => fmt.headline(&value_text(value), n),
        _ => {
            let mut text = plain(spec, rs, value);
            if let (Some(unit), false) = (&spec.unit, matches!(value, Value::Null)) {
                text.push_str(&unit_suffix(unit));
            }
            text
        }
    };
    finish(spec, rs, value, formatted)
}

/// The value as the database gave it, grouped and rounded to `decimals`.
fn plain(spec: &ScalarSpec, rs: &ResultSet, value: &Value) -> String {
    match value {
        Value::Null if rs.rows.is_empty() => "no rows".to_owned(),
        Value::Null => "NULL".to_owned(),
        Value::Int(i) => format_number(&i.to_string(), spec.decimals),
        Value::Decimal(d) => format_number(d, spec.decimals),
        Value::Float(f) if f.is_finite() => {
            let text = match spec.decimals {
                Some(d) => format!("{f:.*}", usize::from(d)),
                None => f.to_string(),
            };
            format_number(&text, None)
        }
        v => value_text(v),
    }
}

fn finish(spec: &ScalarSpec, rs: &ResultSet, value: &Value, formatted: String) -> Result<Rendered, RenderError> {
    let out = Scalar {
        label: spec.label.as_deref().unwrap_or(&spec.column),
        column: &spec.column,
        type_name: value.type_name(),
        value: JsonCell(value),
        formatted,
        unit: spec.unit.as_deref(),
        more_rows: rs.rows.len() > 1 || rs.truncated,
    };
    let body = serde_json::to_vec(&out).map_err(|e| RenderError::Encode(e.to_string()))?;
    Ok(Rendered {
        content_type: "application/json",
        body,
        rows_rendered: rs.rows.len().min(1),
        truncated: rs.rows.len() > 1 || rs.truncated,
        points: 1,
        decisions: Vec::new(),
    })
}
