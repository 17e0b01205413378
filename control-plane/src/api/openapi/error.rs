//! The `Error` schema every failed request answers with.

use serde_json::{json, Value};

use super::obj;

/// `{code, message}`, with a refusal of the real parser as its example.
pub(super) fn schema() -> Value {
    let refused = json!({ "agent": "edge-1", "connection": "sample", "sql": "SELECT $1", "params": ["5"],
                          "render": { "kind": "table" } });
    let example = crate::http::parse_json::<crate::app::DispatchRequest>(refused.to_string().as_bytes())
        .err()
        .map(|e| json!({ "code": e.code, "message": e.message }));
    let mut schema = obj(
        &["code", "message"],
        json!({
            "code": { "type": "string", "description": "stable short name, such as invalid_request, unauthorized, forbidden, not_found" },
            "message": { "type": "string",
                "description": "one line for a human; an invalid_request names the field first (params[1].value, queries[0].render.y), then what was given and what is accepted" } }),
    );
    if let Some(example) = example {
        schema["example"] = example;
    }
    schema
}
