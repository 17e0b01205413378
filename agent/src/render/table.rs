//! Tables: JSON (`application/json`) and an escaped HTML `<table>` fragment (`text/html`).
//!
//! JSON: `{"columns", "types", "rows", "truncated", "row_count"}`; `types` gives each
//! column's type (see [`column_types`]), beside `columns` so readers of `columns` keep working.
//!
//! HTML: a `<div class="outpost-table">` holding a style scoped to it and the `<table>`:
//! numeric cells (and the headers of numeric columns) have the class `num` and are
//! right-aligned; a NULL is `<td class="null" aria-label="NULL (no value)">NULL</td>`, greyed
//! and in italics, so it reads differently from the text "NULL".

use std::fmt::{self, Write as _};

use serde::ser::{Serialize, Serializer};

use super::{non_finite_name, value_text, Esc, RenderError};
use crate::resultset::{ResultSet, Value};

#[derive(serde::Serialize)]
struct JsonTable<'a> {
    columns: &'a [String],
    types: Vec<&'static str>,
    rows: Vec<JsonRow<'a>>,
    truncated: bool,
    row_count: usize,
}

struct JsonRow<'a>(&'a [Value]);

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(JsonCell))
    }
}

pub(crate) struct JsonCell<'a>(pub(crate) &'a Value);

impl Serialize for JsonCell<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(f) => s.serialize_str(non_finite_name(*f)),
            // Exact: a JSON number would be read back as a float by most consumers.
            Value::Decimal(d) => s.serialize_str(d),
            Value::Text(t) => s.serialize_str(t),
            Value::Json(t) => match serde_json::from_str::<serde_json::Value>(t) {
                Ok(doc) => doc.serialize(s),
                Err(_) => s.serialize_str(t),
            },
            v => s.serialize_str(&value_text(v)),
        }
    }
}

/// The style of the HTML fragment, scoped to its `div` so that it changes nothing else on
/// the page it is put in.
const TABLE_STYLE: &str = "<style>\
.outpost-table table{border-collapse:collapse;font:14px/1.4 system-ui,sans-serif;color:#222}\
.outpost-table caption{caption-side:bottom;text-align:left;font-size:12px;color:#666;padding-top:4px}\
.outpost-table th,.outpost-table td{padding:4px 10px;border-bottom:1px solid #e2e2e2;text-align:left;vertical-align:top}\
.outpost-table thead th{background:#f4f4f4;border-bottom:2px solid #ccc;font-weight:600}\
.outpost-table .num{text-align:right;font-variant-numeric:tabular-nums}\
.outpost-table td.null{color:#888;font-style:italic}\
</style>\n";

/// Types whose cells are numbers, right-aligned.
const NUMERIC_TYPES: [&str; 4] = ["integer", "float", "decimal", "number"];

/// Each column's type, from its values: the type all its non-NULL values share
/// ([`Value::type_name`]); `"number"` for a mix of integers, floats and decimals (as SQLite
/// may give); `"mixed"` for other mixes; `"null"` when every value is NULL or there are no rows.
pub(super) fn column_types(rs: &ResultSet) -> Vec<&'static str> {
    (0..rs.columns.len())
        .map(|c| {
            let mut found: Option<&'static str> = None;
            for row in &rs.rows {
                let t = match &row[c] {
                    Value::Null => continue,
                    v => v.type_name(),
                };
                found = Some(match found {
                    None => t,
                    Some(f) if f == t => f,
                    Some(f) if NUMERIC_TYPES.contains(&f) && NUMERIC_TYPES.contains(&t) => "number",
                    Some(_) => return "mixed",
                });
            }
            found.unwrap_or("null")
        })
        .collect()
}

pub(super) fn table_json(rs: &ResultSet, shown: usize, truncated: bool) -> Result<Vec<u8>, RenderError> {
    let table = JsonTable {
        columns: &rs.columns,
        types: column_types(rs),
        rows: rs.rows.iter().take(shown).map(|r| JsonRow(r)).collect(),
        truncated,
        row_count: shown,
    };
    serde_json::to_vec(&table).map_err(|e| RenderError::Encode(e.to_string()))
}

pub(super) fn table_html(rs: &ResultSet, shown: usize, truncated: bool) -> Result<String, fmt::Error> {
    let mut o = String::with_capacity(128 + shown * rs.columns.len() * 16);
    o.push_str("<div class=\"outpost-table\">\n");
    o.push_str(TABLE_STYLE);
    o.push_str("<table>\n");
    if truncated {
        writeln!(o, "<caption>Truncated: showing the first {shown} rows; the query returned more.</caption>")?;
    }
    o.push_str("<thead><tr>");
    for (c, t) in rs.columns.iter().zip(column_types(rs)) {
        let class = if NUMERIC_TYPES.contains(&t) { " class=\"num\"" } else { "" };
        write!(o, "<th scope=\"col\"{class}>{}</th>", Esc(c))?;
    }
    o.push_str("</tr></thead>\n<tbody>\n");
    for row in rs.rows.iter().take(shown) {
        o.push_str("<tr>");
        for v in row {
            match v {
                Value::Null => o.push_str("<td class=\"null\" aria-label=\"NULL (no value)\">NULL</td>"),
                v if v.is_number() => {
                    write!(o, "<td class=\"num\">{}</td>", Esc(&value_text(v)))?;
                }
                v => {
                    write!(o, "<td>{}</td>", Esc(&value_text(v)))?;
                }
            }
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody>\n</table>\n</div>\n");
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;

    // ---- tables -----------------------------------------------------------------------------

    #[test]
    fn table_json_caps_rows_and_marks_truncation() {
        let five = rs(&["n"], (0..5).map(|i| vec![Value::Int(i)]).collect());

        // The job's cap is lower than the policy's.
        let r = render(&table(TableFormat::Json, Some(2)), &five, 10).expect("renders");
        assert_eq!(r.content_type, "application/json");
        assert_eq!((r.rows_rendered, r.truncated), (2, true));
        let v = json(&r);
        assert_eq!(v["rows"], serde_json::json!([[0], [1]]));
        assert_eq!(v["row_count"], 2);
        assert_eq!(v["truncated"], true);

        // The policy's cap is lower than the job's.
        let r = render(&table(TableFormat::Json, Some(4)), &five, 3).expect("renders");
        assert_eq!((r.rows_rendered, r.truncated), (3, true));
        assert_eq!(json(&r)["row_count"], 3);

        // Nothing cut here and nothing cut by the connector.
        let r = render(&table(TableFormat::Json, None), &five, 5).expect("renders");
        assert_eq!((r.rows_rendered, r.truncated), (5, false));
        assert_eq!(json(&r)["truncated"], false);

        // Nothing cut here, but the connector stopped early.
        let mut cut = five.clone();
        cut.truncated = true;
        let r = render(&table(TableFormat::Json, None), &cut, 100).expect("renders");
        assert_eq!((r.rows_rendered, r.truncated), (5, true));
        assert_eq!(json(&r)["truncated"], true);
    }

    #[test]
    fn table_json_has_the_documented_shape_and_key_order() {
        let r = render(&table(TableFormat::Json, None), &rs(&["a", "b"], vec![vec![Value::Int(1), text("x")]]), 10)
            .expect("renders");
        assert_eq!(
            body(&r),
            r#"{"columns":["a","b"],"types":["integer","text"],"rows":[[1,"x"]],"truncated":false,"row_count":1}"#
        );
    }

    #[test]
    fn table_json_encodes_every_value_type() {
        let row = vec![
            Value::Null,
            Value::Int(-7),
            Value::Float(1.5),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
            text("he said \"hi\"\n"),
            Value::Bytes(vec![0x00, 0xab, 0xff]),
        ];
        let r = render(&table(TableFormat::Json, None), &rs(&["a", "b", "c", "d", "e", "f", "g", "h"], vec![row]), 10)
            .expect("renders");
        assert_eq!(
            json(&r)["rows"][0],
            serde_json::json!([null, -7, 1.5, "NaN", "inf", "-inf", "he said \"hi\"\n", "\\x00abff"])
        );
    }

    #[test]
    fn html_table_escapes_markup_in_cells() {
        let r = render(
            &table(TableFormat::Html, None),
            &rs(
                &["<b>col</b>", "plain"],
                vec![vec![text("<script>alert('x')</script>"), text("a & b \"q\" <img src=x onerror=alert(1)>")]],
            ),
            10,
        )
        .expect("renders");
        assert_eq!(r.content_type, "text/html; charset=utf-8");
        let html = body(&r);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("<th scope=\"col\">&lt;b&gt;col&lt;/b&gt;</th>"));
        assert!(html.contains("<td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;</td>"));
        assert!(html.contains("<td>a &amp; b &quot;q&quot; &lt;img src=x onerror=alert(1)&gt;</td>"));
        assert!(html.starts_with("<div class=\"outpost-table\">\n<style>"));
        assert!(html.contains("</style>\n<table>\n"));
        assert!(html.contains("<thead>") && html.contains("<tbody>"));
        // The fragment is well-formed, so nothing escaped its cell.
        let doc = roxmltree::Document::parse(html).expect("HTML fragment is well-formed");
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("td")).count(), 2);
    }

    #[test]
    fn html_table_notes_truncation_in_a_caption_only_when_truncated() {
        let three = rs(&["n"], (0..3).map(|i| vec![Value::Int(i)]).collect());
        let r = render(&table(TableFormat::Html, Some(2)), &three, 10).expect("renders");
        assert!(r.truncated);
        let html = body(&r);
        assert!(html.contains("<caption>Truncated: showing the first 2 rows"), "{html}");
        assert_eq!(html.matches("<tr>").count(), 3, "header and two rows: {html}");

        let r = render(&table(TableFormat::Html, None), &three, 10).expect("renders");
        assert!(!r.truncated);
        assert!(!body(&r).contains("<caption>"));
    }

    #[test]
    fn html_table_shows_null_numbers_and_bytes() {
        let r = render(
            &table(TableFormat::Html, None),
            &rs(
                &["a", "b", "c", "d"],
                vec![vec![Value::Null, Value::Int(3), Value::Float(f64::NAN), Value::Bytes(vec![1, 2])]],
            ),
            10,
        )
        .expect("renders");
        let html = body(&r);
        assert!(html.contains(
            "<td class=\"null\" aria-label=\"NULL (no value)\">NULL</td><td class=\"num\">3</td>\
             <td class=\"num\">NaN</td><td>\\x0102</td>"
        ));
    }

    #[test]
    fn ragged_rows_are_refused() {
        let bad = rs(&["a", "b"], vec![vec![Value::Int(1), Value::Int(2)], vec![Value::Int(3)]]);
        for spec in [table(TableFormat::Json, None), bar("a", &["b"], None)] {
            assert_eq!(render(&spec, &bad, 10), Err(RenderError::RaggedRow { row: 1, expected: 2, found: 1 }));
        }
    }
}
