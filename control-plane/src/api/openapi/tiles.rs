//! The schemas of a project's dashboard layout (`Tile`, `tiles`).

use serde_json::{json, Value};

use super::{r, strict};

/// One dashboard tile ([`crate::app::project_tiles`]): a query's result or a text.
pub(super) fn tile() -> Value {
    use crate::app::project_tiles::{COLUMNS, MAX_H, MAX_TEXT_CHARS, QUERY_W, TEXT_W};
    let w = |default: u8| {
        json!({ "type": "integer", "minimum": 1, "maximum": COLUMNS, "default": default,
                "description": format!("width in columns of a {COLUMNS}-column grid (one column on a narrow screen)") })
    };
    let h = json!({ "type": "integer", "minimum": 1, "maximum": MAX_H, "default": 1, "description": "height in row units" });
    json!({ "oneOf": [
        strict(&["query"], json!({ "query": { "type": "integer", "minimum": 0,
            "description": "index of one of the project's queries (0 is the first); each query on one tile at most" },
            "w": w(QUERY_W), "h": h })),
        strict(&["text"], json!({ "text": { "type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS,
            "description": "plain text, shown escaped with its line breaks (no markup, no links)" },
            "w": w(TEXT_W), "h": h })),
    ] })
}

/// A project's tiles, in order.
pub(super) fn tiles() -> Value {
    json!({ "type": "array", "maxItems": crate::app::project_tiles::MAX_TILES, "items": r("Tile"),
            "description": "the dashboard's tiles in order. Queries no tile names are appended at the default size; \
                            omitted on create: one tile per query; omitted on an update: kept (refused when a tile's \
                            query is gone). Shown to every viewer, texts included." })
}
