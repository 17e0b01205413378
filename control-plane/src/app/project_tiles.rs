//! A project's dashboard layout: its tiles in order, each a query's result or a text, with
//! a width in columns of a 12-column grid and a height in row units.
//!
//! Rules (docs/DASHBOARDS.md, "Layout and editing"):
//! - a tile is `{"query": n, "w", "h"}` (query `n` of the project, 0-based) or
//!   `{"text": "…", "w", "h"}` (plain text, at most [`MAX_TEXT_CHARS`] characters, shown
//!   escaped with its line breaks; no markup, no links);
//! - `w` is 1 to 12 columns (default 6 for a query, 12 for a text), `h` 1 to 4 row units
//!   (default 1);
//! - a query is on at most one tile; queries no tile names are **appended** at the end,
//!   in order, at the default size, so a body without `tiles` gets one tile per query and
//!   a query added to a project shows up without a layout change;
//! - on an update without `tiles` the stored layout is kept; when the new queries leave a
//!   stored tile without its query the update is refused, naming that tile.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::ApiError;

/// Grid columns of a dashboard; a tile's `w` is 1 to this.
pub const COLUMNS: u8 = 12;
/// Tallest tile, in row units.
pub const MAX_H: u8 = 4;
/// Longest text tile, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Most tiles on one dashboard (every query plus as many texts).
pub const MAX_TILES: usize = 2 * super::projects::MAX_QUERIES;
/// Width of a query's tile when none is given.
pub const QUERY_W: u8 = 6;
/// Width of a text tile when none is given: the full row, as a heading or a note.
pub const TEXT_W: u8 = COLUMNS;

/// One tile, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Tile {
    /// A query's latest result.
    Query {
        /// The query's index in the project.
        query: usize,
        /// Width in grid columns.
        w: u8,
        /// Height in row units.
        h: u8,
        /// Stored only, never shown: when the query at this position became another
        /// one (unix seconds); the jobs kept under the position from before are not its
        /// results ([`crate::app::project_jobs`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<i64>,
    },
    /// Plain text chosen by the dashboard's editor.
    Text {
        /// The text.
        text: String,
        /// Width in grid columns.
        w: u8,
        /// Height in row units.
        h: u8,
    },
}

impl Tile {
    /// The query shown, if a query tile.
    pub fn query(&self) -> Option<usize> {
        match self {
            Tile::Query { query, .. } => Some(*query),
            Tile::Text { .. } => None,
        }
    }

    /// Width and height.
    pub fn size(&self) -> (u8, u8) {
        match self {
            Tile::Query { w, h, .. } | Tile::Text { w, h, .. } => (*w, *h),
        }
    }
}

fn default_tile(query: usize) -> Tile {
    Tile::Query { query, w: QUERY_W, h: 1, since: None }
}

/// `tiles` with a default tile appended for each of the `queries` queries none shows.
fn with_missing(mut tiles: Vec<Tile>, queries: usize) -> Vec<Tile> {
    let shown: std::collections::BTreeSet<usize> = tiles.iter().filter_map(Tile::query).collect();
    tiles.extend((0..queries).filter(|q| !shown.contains(q)).map(default_tile));
    tiles
}

/// A size field: absent gives `default`, else a whole number from 1 to `max`.
fn size(tile: &serde_json::Map<String, Value>, at: &str, key: &str, max: u8, default: u8) -> Result<u8, ApiError> {
    let Some(v) = tile.get(key) else { return Ok(default) };
    let what = if key == "w" {
        format!("must be a whole number of grid columns from 1 to {max} ({max} is the full width)")
    } else {
        format!("must be a whole number of row units from 1 to {max}")
    };
    v.as_u64()
        .filter(|n| (1..=u64::from(max)).contains(n))
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| ApiError::bad_field(&format!("{at}.{key}"), what))
}

/// A text tile's text: plain text of 1 to [`MAX_TEXT_CHARS`] characters; line breaks
/// (`\r\n` kept as `\n`) and tabs are its only control characters.
fn text(v: &Value, at: &str) -> Result<String, ApiError> {
    let field = format!("{at}.text");
    let t = v.as_str().ok_or_else(|| ApiError::bad_field(&field, "must be a string of plain text"))?;
    let t = t.replace("\r\n", "\n");
    if t.trim().is_empty() {
        return Err(ApiError::bad_field(&field, "must not be empty"));
    }
    let n = t.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(ApiError::bad_field(&field, format!("is {n} characters; give at most {MAX_TEXT_CHARS}")));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::bad_field(&field, "may hold line breaks and tabs but no other control characters"));
    }
    Ok(t)
}

/// Checks the `tiles` of a project body against its `queries` queries; returns the
/// layout to store (queries no tile names appended).
pub fn checked(tiles: &[Value], queries: usize) -> Result<Vec<Tile>, ApiError> {
    if tiles.len() > MAX_TILES {
        return Err(ApiError::bad_field("tiles", format!("give at most {MAX_TILES} tiles")));
    }
    let mut out: Vec<Tile> = Vec::with_capacity(tiles.len());
    for (i, v) in tiles.iter().enumerate() {
        let at = format!("tiles[{i}]");
        let o = v.as_object().ok_or_else(|| {
            ApiError::bad_field(&at, "must be an object: {\"query\": n, \"w\": 6} or {\"text\": \"…\", \"w\": 12}")
        })?;
        if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "query" | "text" | "w" | "h")) {
            return Err(ApiError::bad_field(
                &format!("{at}.{k}"),
                "unknown field; a tile takes query or text, w and h",
            ));
        }
        let tile = match (o.get("query"), o.get("text")) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(ApiError::bad_field(
                    &at,
                    "give either \"query\" (the index of one of the project's queries) or \"text\"",
                ))
            }
            (Some(q), None) => {
                let field = format!("{at}.query");
                let n = q.as_u64().ok_or_else(|| {
                    ApiError::bad_field(&field, "must be the index of one of the project's queries (0 is the first)")
                })?;
                let query = usize::try_from(n).ok().filter(|n| *n < queries).ok_or_else(|| {
                    ApiError::bad_field(
                        &field,
                        format!("query {n} does not exist (the project has {queries}, numbered from 0)"),
                    )
                })?;
                if let Some(j) = out.iter().position(|t| t.query() == Some(query)) {
                    return Err(ApiError::bad_field(
                        &field,
                        format!("query {query} is already on tiles[{j}]; a query is shown on one tile"),
                    ));
                }
                Tile::Query {
                    query,
                    w: size(o, &at, "w", COLUMNS, QUERY_W)?,
                    h: size(o, &at, "h", MAX_H, 1)?,
                    since: None,
                }
            }
            (None, Some(t)) => Tile::Text {
                text: text(t, &at)?,
                w: size(o, &at, "w", COLUMNS, TEXT_W)?,
                h: size(o, &at, "h", MAX_H, 1)?,
            },
        };
        out.push(tile);
    }
    Ok(with_missing(out, queries))
}

/// The stored layout of a project whose queries change to `queries` queries and whose
/// body gave no `tiles`: kept, unless a tile's query is gone.
pub fn kept(stored_json: &str, queries: usize) -> Result<Vec<Tile>, ApiError> {
    let tiles = parse_stored(stored_json);
    if let Some((i, q)) =
        tiles.iter().enumerate().find_map(|(i, t)| t.query().filter(|q| *q >= queries).map(|q| (i, q)))
    {
        return Err(ApiError::bad_field(
            &format!("tiles[{i}].query"),
            format!(
                "the dashboard shows query {q} there, which the new queries no longer have (they are {queries}); \
                 send `tiles` with the queries"
            ),
        ));
    }
    Ok(with_missing(tiles, queries))
}

fn parse_stored(json: &str) -> Vec<Tile> {
    serde_json::from_str(json).unwrap_or_default()
}

/// A project's layout as shown: the stored tiles whose query exists (each query once),
/// then the queries no tile shows. A layout that no longer reads is the default one.
pub fn shown(stored_json: &str, queries: usize) -> Vec<Tile> {
    let mut seen = std::collections::BTreeSet::new();
    let tiles = parse_stored(stored_json)
        .into_iter()
        .filter(|t| t.query().is_none_or(|q| q < queries && seen.insert(q)))
        .map(|t| match t {
            Tile::Query { query, w, h, .. } => Tile::Query { query, w, h, since: None },
            text => text,
        })
        .collect();
    with_missing(tiles, queries)
}

/// When the query at position `query` became the one there now, if it changed hands
/// since the project was made.
pub fn since(stored_json: &str, query: usize) -> Option<i64> {
    parse_stored(stored_json).into_iter().find_map(|t| match t {
        Tile::Query { query: q, since, .. } if q == query => since,
        _ => None,
    })
}

/// Notes in `tiles` (the layout an update stores) the positions whose query is now
/// another one: named otherwise than the query that was there (`old` and `new` are the
/// queries' names), or new. Positions that kept their query keep what was noted before.
pub fn note_changes(tiles: &mut [Tile], stored_json: &str, old: &[String], new: &[String], now: i64) {
    for t in tiles {
        if let Tile::Query { query, since: s, .. } = t {
            let q = *query;
            *s = if old.get(q) == new.get(q) { since(stored_json, q) } else { Some(now) };
        }
    }
}

/// The layout as stored.
pub fn to_json(tiles: &[Tile]) -> Result<String, ApiError> {
    serde_json::to_string(tiles).map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value, queries: usize) -> Result<Vec<Tile>, String> {
        checked(v.as_array().expect("list"), queries).map_err(|e| e.message)
    }

    fn q(query: usize, w: u8, h: u8) -> Tile {
        Tile::Query { query, w, h, since: None }
    }

    #[test]
    fn a_position_that_changes_hands_is_noted_and_never_shown() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // [A, B, C] → A removed: B and C move up; both positions changed hands.
        let mut tiles = vec![q(0, 6, 1), q(1, 6, 1)];
        note_changes(&mut tiles, "[]", &names(&["A", "B", "C"]), &names(&["B", "C"]), 100);
        let stored = to_json(&tiles).expect("json");
        assert_eq!(stored, r#"[{"query":0,"w":6,"h":1,"since":100},{"query":1,"w":6,"h":1,"since":100}]"#);
        assert_eq!((since(&stored, 0), since(&stored, 1), since(&stored, 2)), (Some(100), Some(100), None));
        assert_eq!(shown(&stored, 2), [q(0, 6, 1), q(1, 6, 1)], "never shown");
        // Later: a resize, and a query edited under its own name: what was noted stays;
        // a query added at a position that had one before is noted anew.
        let mut tiles = vec![q(1, 12, 1), q(0, 6, 1), q(2, 6, 1)];
        note_changes(&mut tiles, &stored, &names(&["B", "C"]), &names(&["B", "C", "D"]), 200);
        let stored = to_json(&tiles).expect("json");
        assert_eq!((since(&stored, 1), since(&stored, 0), since(&stored, 2)), (Some(100), Some(100), Some(200)));
        // The same queries: nothing noted.
        let mut tiles = vec![q(0, 6, 1)];
        note_changes(&mut tiles, "[]", &names(&["A"]), &names(&["A"]), 300);
        assert_eq!(tiles, [q(0, 6, 1)]);
    }

    #[test]
    fn tiles_are_sized_ordered_and_defaulted() {
        let got = check(json!([{ "text": "Revenue\nby region", "w": 12 }, { "query": 1, "w": 4, "h": 2 }]), 3)
            .expect("valid");
        assert_eq!(
            got,
            [Tile::Text { text: "Revenue\nby region".into(), w: 12, h: 1 }, q(1, 4, 2), q(0, 6, 1), q(2, 6, 1),],
            "queries no tile names are appended at the default size"
        );
        assert_eq!(
            check(json!([{ "text": "note" }]), 0).expect("valid"),
            [Tile::Text { text: "note".into(), w: 12, h: 1 }]
        );
        assert_eq!(check(json!([]), 2).expect("valid"), [default_tile(0), default_tile(1)]);
        let stored = to_json(&check(json!([{ "query": 0, "w": 3 }, { "text": "a" }]), 1).expect("ok")).expect("json");
        assert_eq!(stored, r#"[{"query":0,"w":3,"h":1},{"text":"a","w":12,"h":1}]"#);
        assert_eq!(shown(&stored, 1), check(json!([{ "query": 0, "w": 3 }, { "text": "a" }]), 1).expect("ok"));
        let crlf = check(json!([{ "text": "a\r\nb\tc" }]), 0).expect("ok");
        assert_eq!(crlf[0], Tile::Text { text: "a\nb\tc".into(), w: 12, h: 1 });
    }

    #[test]
    fn each_bad_tile_is_named_with_what_is_accepted() {
        let bad = |v: Value, queries: usize, starts: &str| {
            let m = check(v, queries).expect_err("refused");
            assert!(m.starts_with(starts), "{m}");
            m
        };
        let m = bad(json!([{ "query": 0 }, { "query": 1 }, { "query": 2 }, { "query": 7 }]), 4, "tiles[3].query: ");
        assert!(m.contains("query 7 does not exist (the project has 4"), "{m}");
        let m = bad(json!([{ "query": 0, "w": 13 }, { "query": 1, "w": 0 }]), 2, "tiles[0].w: ");
        assert!(m.contains("1 to 12"), "{m}");
        bad(json!([{ "query": 0 }, { "query": 1, "w": 0 }]), 2, "tiles[1].w: ");
        bad(json!([{ "query": 0, "w": "6" }]), 1, "tiles[0].w: ");
        bad(json!([{ "query": 0, "w": 2.5 }]), 1, "tiles[0].w: ");
        let m = bad(json!([{ "query": 0, "h": 5 }]), 1, "tiles[0].h: ");
        assert!(m.contains("1 to 4"), "{m}");
        let m = bad(json!([{ "query": 1 }, { "text": "x" }, { "query": 1 }]), 2, "tiles[2].query: ");
        assert!(m.contains("already on tiles[0]"), "{m}");
        bad(json!([{ "query": -1 }]), 2, "tiles[0].query: ");
        bad(json!([{ "query": "0" }]), 2, "tiles[0].query: ");
        bad(json!([{ "query": 0, "text": "x" }]), 1, "tiles[0]: give either");
        bad(json!([{ "w": 6 }]), 1, "tiles[0]: give either");
        bad(json!([7]), 1, "tiles[0]: must be an object");
        bad(json!([{ "query": 0, "html": "<b>" }]), 1, "tiles[0].html: unknown field");
        bad(json!([{ "text": "  " }]), 0, "tiles[0].text: must not be empty");
        bad(json!([{ "text": 5 }]), 0, "tiles[0].text: must be a string");
        bad(json!([{ "text": "a\u{7}" }]), 0, "tiles[0].text: ");
        let long = "é".repeat(MAX_TEXT_CHARS + 1);
        let m = bad(json!([{ "text": long }]), 0, "tiles[0].text: ");
        assert!(m.contains("2001 characters; give at most 2000"), "{m}");
        assert!(check(json!([{ "text": "é".repeat(MAX_TEXT_CHARS) }]), 0).is_ok(), "2000 characters, not bytes");
        let many: Vec<Value> = (0..=MAX_TILES).map(|_| json!({ "text": "x" })).collect();
        bad(Value::Array(many), 0, "tiles: give at most");
    }

    #[test]
    fn a_kept_layout_must_still_fit_the_queries() {
        let stored =
            r#"[{"text":"t","w":12,"h":1},{"query":2,"w":4,"h":1},{"query":0,"w":6,"h":2},{"query":1,"w":6,"h":1}]"#;
        // One more query: the layout is kept and the new query appended.
        let more = kept(stored, 4).expect("fits");
        assert_eq!((more.len(), more[4].clone()), (5, default_tile(3)));
        assert_eq!(more[1], q(2, 4, 1));
        // One query fewer: tile 1 shows query 2, which is gone.
        let m = kept(stored, 2).expect_err("no longer fits").message;
        assert!(m.starts_with("tiles[1].query: ") && m.contains("send `tiles`"), "{m}");
        // A stored layout from before tiles (`[]`) or one that no longer reads: the default.
        assert_eq!(kept("[]", 2).expect("ok"), [default_tile(0), default_tile(1)]);
        assert_eq!(shown("not json", 1), [default_tile(0)]);
        // What is shown never names a query twice or one that is gone.
        let odd = r#"[{"query":1,"w":4,"h":1},{"query":1,"w":3,"h":1},{"query":5,"w":3,"h":1}]"#;
        assert_eq!(shown(odd, 2), [q(1, 4, 1), default_tile(0)]);
    }
}
