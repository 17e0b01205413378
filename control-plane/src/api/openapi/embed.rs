//! The shapes of embed tokens and the embed API (`/v1/embed/…`).

use serde_json::{json, Value};

use super::{int, nullable, obj, parameters, strict, string, tiles};

/// The parameter names an embed's viewer may change.
fn viewer_filters() -> Value {
    json!({ "type": "array", "items": string(), "uniqueItems": true, "example": ["region"],
            "description": "parameters the embed's viewer may change (by name; none of those `filters` fixes): the \
                            embed page shows a filter bar for them, and `/v1/embed/run` runs the dashboard for the \
                            values the viewer sets. Absent or empty: the viewer changes nothing" })
}

/// `POST /v1/projects/{id}/embed-tokens`.
pub(super) fn token_create() -> (Option<Value>, &'static str, Value) {
    (
        Some(strict(
            &["customer"],
            json!({ "customer": string(), "ttl_secs": { "type": "integer", "minimum": 0 },
                    "filters": parameters::fixed_filters(), "viewer_filters": viewer_filters() }),
        )),
        "201",
        obj(
            &["token", "project", "customer", "expires_at", "jti"],
            json!({
            "token": string(), "project": string(), "customer": string(), "expires_at": int(), "jti": string(),
            "filters": nullable(parameters::fixed_filters()), "viewer_filters": nullable(viewer_filters()) }),
        ),
    )
}

/// `GET /v1/embed/project`.
pub(super) fn project() -> (Option<Value>, &'static str, Value) {
    (
        None,
        "200",
        obj(
            &["project", "customer", "expires_at", "queries"],
            json!({
            "project": obj(&["id", "name"], json!({ "id": string(), "name": string() })), "customer": string(), "expires_at": int(),
            "queries": { "type": "array", "items": obj(&["index", "name", "render_kind"], json!({ "index": int(), "name": string(), "render_kind": string() })) },
            "tiles": tiles::tiles(), "parameters": parameters::parameters(), "filters": parameters::filters(),
            "viewer_filters": viewer_filters() }),
        ),
    )
}

/// `POST /v1/embed/run`.
pub(super) fn run() -> (Option<Value>, &'static str, Value) {
    let run = obj(
        &["index", "outcome", "job"],
        json!({ "index": int(),
                "outcome": { "type": "string", "enum": ["queued", "running", "recent", "busy"],
                    "description": "queued: a job was queued now; running: one for these values is still going; \
                                    recent: one for these values ended less than embed.viewer_refresh_secs ago; \
                                    busy: the agent's share of refreshes is full, not run (the answer is then 429)" },
                "job": nullable(string()) }),
    );
    (
        Some(strict(
            &[],
            json!({ "filters": { "type": "object", "additionalProperties": {}, "example": { "region": "EU" },
                    "description": "the viewer's values of the parameters the token lets them change, by name; \
                                    the others are the token's or their default" } }),
        )),
        "202",
        obj(
            &["filters", "runs"],
            json!({ "filters": parameters::filters(), "runs": { "type": "array", "items": run } }),
        ),
    )
}

/// The `filters=` query of the embed API's reads.
pub(super) fn viewer_filters_query() -> Value {
    json!({ "name": "filters", "in": "query", "required": false, "schema": string(),
            "description": "a JSON object (URL-encoded) of the viewer's values of the parameters the embed token \
                            lets them change; absent ones are the token's or their default" })
}
