//! The schemas of a dashboard's parameters (`Parameter`, `parameters`, a query's `bind`,
//! a run's `filters`).

use serde_json::{json, Value};

use super::{r, strict};

/// One parameter ([`crate::app::project_params`]): a choice, a text, a number or a date range.
pub(super) fn parameter() -> Value {
    use crate::app::project_params::{MAX_CHOICES, MAX_LABEL_CHARS, MAX_LAST_DAYS, MAX_TEXT_CHARS};
    let name = json!({ "type": "string", "pattern": "^[a-z][a-z0-9_]{0,39}$",
                       "description": "what bind, filters and the console's URL (f.NAME) use" });
    let label = json!({ "type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS,
                        "description": "what the filter bar calls it; default: the name" });
    let text = json!({ "type": "string", "maxLength": MAX_TEXT_CHARS });
    let kind = |k: &str| json!({ "type": "string", "enum": [k] });
    let date = json!({ "type": "string", "format": "date" });
    json!({ "oneOf": [
        strict(&["name", "kind", "choices"], json!({ "name": name, "label": label, "kind": kind("choice"),
            "choices": { "type": "array", "minItems": 1, "maxItems": MAX_CHOICES, "items": text },
            "default": { "type": "string", "description": "one of the choices; default: the first" } })),
        strict(&["name", "kind", "choices_from"], json!({ "name": name, "label": label, "kind": kind("choice"),
            "choices_from": strict(&["query", "column"], json!({
                "query": { "type": "integer", "minimum": 0,
                           "description": "the index of a table query of this project that does not bind this parameter" },
                "column": { "type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS,
                            "description": "a column of its result" } })),
            "choices": { "type": "array", "maxItems": MAX_CHOICES, "items": text,
                         "description": "in answers only: the current choices, the distinct values of the column in \
                                         the query's newest successful result (the first 200, in result order; \
                                         none before it has one)" },
            "default": { "type": "string", "maxLength": MAX_TEXT_CHARS,
                         "description": "checked against the current choices at a run; default: the first of them" } })),
        strict(&["name", "kind"], json!({ "name": name, "label": label, "kind": kind("text"),
            "default": { "type": "string", "maxLength": MAX_TEXT_CHARS, "description": "default: empty" } })),
        strict(&["name", "kind"], json!({ "name": name, "label": label, "kind": kind("number"),
            "default": { "type": "number", "description": "default: 0, or the nearest of min and max" },
            "min": { "type": "number" }, "max": { "type": "number" },
            "integer": { "type": "boolean", "default": false,
                         "description": "whole numbers only, bound as int; else bound as float" } })),
        strict(&["name", "kind"], json!({ "name": name, "label": label, "kind": kind("date_range"),
            "default": { "oneOf": [
                strict(&["from", "to"], json!({ "from": date, "to": date })),
                strict(&["last_days"], json!({ "last_days": { "type": "integer", "minimum": 1, "maximum": MAX_LAST_DAYS } })),
            ], "description": "fixed dates (from ≤ to), or the last N days up to today (UTC); default: the last 30 days" } })),
    ] })
}

/// A project's parameters.
pub(super) fn parameters() -> Value {
    json!({ "type": "array", "maxItems": crate::app::project_params::MAX_PARAMETERS, "items": r("Parameter"),
            "description": "the dashboard's parameters, shown as filters; omitted on an update: kept. \
                            Shown to every viewer (never the queries' bind)." })
}

/// A query's `bind`.
pub(super) fn bind() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" },
            "example": { "2": "region", "3": "period.from", "4": "period.to" },
            "description": "1-based parameter positions, each bound to a parameter's value (a date range's from or to); \
                            a position replaces one of params or extends them, as customer_param does" })
}

/// A run's or a lookup's `filters`.
pub(super) fn filters() -> Value {
    json!({ "type": "object", "additionalProperties": {},
            "example": { "region": "US", "period": { "from": "2026-01-01", "to": "2026-02-01" } },
            "description": "values by parameter name: a choice or a text as a string, a number, a date range as \
                            {\"from\", \"to\"} or \"2026-01-01..2026-02-01\"; absent ones take their default" })
}

/// An embed token's fixed `filters`.
pub(super) fn fixed_filters() -> Value {
    json!({ "type": "object", "additionalProperties": {}, "example": { "region": "US" },
            "description": "values fixed in the embed token (a signed claim), by parameter name: the embed shows \
                            these and the viewer cannot change them; the others take their default or, those in \
                            `viewer_filters`, the viewer's value" })
}
