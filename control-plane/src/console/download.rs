//! Downloads of a job's result from its page: the sanitised SVG of a chart, and a table
//! as CSV (converted here from the agent's JSON table). Each reads the result through
//! [`api::call`], so a download passes the same checks and audit as the result itself.
//! The PNG is drawn in the browser (console.js) from the SVG on the page.

use std::fmt::Write as _;

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::Value;

use crate::api::RouteId;
use crate::console::Page;
use crate::http::{bytes_response, Body};

/// Longest file name stem.
const MAX_SLUG_LEN: usize = 60;

/// What a download is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The chart, sanitised.
    Svg,
    /// The table, as CSV.
    Csv,
}

/// A file name stem from a job's name: lower-case ASCII letters and digits, other runs
/// as one `-`, at most [`MAX_SLUG_LEN`] characters; `result` when nothing is left.
pub(crate) fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.is_empty() && !s.ends_with('-') {
            s.push('-');
        }
        if s.len() >= MAX_SLUG_LEN {
            break;
        }
    }
    let s = s.trim_end_matches('-');
    if s.is_empty() {
        "result".to_owned()
    } else {
        s.to_owned()
    }
}

/// Whether a JSON result is a table (`columns` and `rows`).
pub(crate) fn is_table(v: &Value) -> bool {
    v["columns"].is_array() && v["rows"].is_array()
}

/// Whether `s` is a plain number (`-12.5`, `3e4`): such a cell is a value, not a formula,
/// and is written as it is.
fn is_number(s: &str) -> bool {
    let t = s.strip_prefix(['-', '+']).unwrap_or(s);
    !t.is_empty()
        && t.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && t.parse::<f64>().is_ok_and(f64::is_finite)
}

/// One CSV field (RFC 4180): a text that a spreadsheet would take for a formula (it
/// starts with `=`, `+`, `-`, `@`, a tab or a CR, and is not a plain number) gets a
/// leading `'`; a field with a comma, quote, CR or LF is quoted, its quotes doubled.
pub(crate) fn csv_field(s: &str) -> String {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_number(s);
    let text = if formula { format!("'{s}") } else { s.to_owned() };
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// A JSON table as CSV: a header of column names, then one line per row, CRLF line ends;
/// NULL is an empty field, a number as the agent wrote it. `None` when `v` is no table.
pub(crate) fn table_csv(v: &Value) -> Option<String> {
    let (cols, rows) = (v["columns"].as_array()?, v["rows"].as_array()?);
    let mut out = String::new();
    let names: Vec<String> =
        cols.iter().map(|c| csv_field(c.as_str().or_else(|| c["name"].as_str()).unwrap_or_default())).collect();
    let _ = write!(out, "{}\r\n", names.join(","));
    for r in rows {
        let cells: Vec<String> = r
            .as_array()
            .into_iter()
            .flatten()
            .map(|cell| match cell {
                Value::Null => String::new(),
                Value::String(s) => csv_field(s),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => csv_field(&other.to_string()),
            })
            .collect();
        let _ = write!(out, "{}\r\n", cells.join(","));
    }
    Some(out)
}

/// A plain-text answer of the download routes (an error a person reads).
fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut res = bytes_response(status, "text/plain; charset=utf-8", format!("{message}\n").into_bytes());
    crate::console::secure_headers(&mut res);
    res
}

/// An attachment named `file`, with the console's headers and a sandbox.
fn attachment(content_type: &str, file: &str, body: Vec<u8>) -> Response<Body> {
    let mut res = bytes_response(StatusCode::OK, content_type, body);
    crate::console::secure_headers(&mut res);
    let h = res.headers_mut();
    // `file` is a slug: ASCII letters, digits and dashes.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    res
}

impl Page<'_> {
    /// `GET /console/jobs/{id}/download.{svg,csv}`.
    pub(crate) async fn download(&self, id: &str, format: Format) -> Response<Body> {
        let j = match self.get(RouteId::JobsRead, &[id], None).await {
            Ok(j) => j,
            Err(err) => return text(err.status, &err.message),
        };
        let stem = slug(j["name"].as_str().unwrap_or_default());
        let (status, headers, bytes) = self.raw(RouteId::JobsResult, &[id], None).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status == StatusCode::ACCEPTED {
            return text(
                StatusCode::CONFLICT,
                &format!("job {id} has no result yet: download it when it has succeeded"),
            );
        }
        if !status.is_success() {
            return text(status, v["message"].as_str().unwrap_or("the result cannot be read"));
        }
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        match format {
            Format::Svg if ct.starts_with("image/svg+xml") => match crate::console::sanitize_svg::sanitise(&bytes) {
                Ok(clean) => attachment("image/svg+xml", &format!("{stem}.svg"), clean.svg.into_bytes()),
                Err(err) => text(StatusCode::UNPROCESSABLE_ENTITY, &format!("the chart cannot be read: {err}")),
            },
            Format::Svg => text(
                StatusCode::CONFLICT,
                &format!("job {id}'s result is not a chart: only a chart downloads as SVG or PNG"),
            ),
            Format::Csv if ct.starts_with("text/html") => text(
                StatusCode::CONFLICT,
                &format!(
                    "job {id}'s table was rendered as HTML: run it with the JSON table format to download it as CSV"
                ),
            ),
            Format::Csv => match table_csv(&v).filter(|_| ct.starts_with("application/json")) {
                Some(csv) => {
                    attachment("text/csv; charset=utf-8; header=present", &format!("{stem}.csv"), csv.into_bytes())
                }
                None => text(
                    StatusCode::CONFLICT,
                    &format!("job {id}'s result is not a table: only a table result downloads as CSV"),
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_field_is_quoted_and_never_a_formula() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        assert_eq!(csv_field("+1+2"), "'+1+2");
        assert_eq!(csv_field("-2+3"), "'-2+3");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("\rx"), "\"'\rx\"");
        // A plain number is a value, not a formula: it stays as it is.
        assert_eq!(csv_field("-12.50"), "-12.50");
        assert_eq!(csv_field("+3e4"), "+3e4");
        assert_eq!(csv_field("-inf"), "'-inf");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn a_table_becomes_csv_with_nulls_empty() {
        let v = serde_json::json!({ "columns": ["name", "a,b", { "name": "n" }],
            "rows": [["x", null, -1.5], ["=cmd|' /C calc'!A0", "q\"", 2], [true, "", null]] });
        assert_eq!(
            table_csv(&v).as_deref(),
            Some("name,\"a,b\",n\r\nx,,-1.5\r\n'=cmd|' /C calc'!A0,\"q\"\"\",2\r\ntrue,,\r\n")
        );
        assert!(table_csv(&serde_json::json!({ "value": 3 })).is_none());
        assert!(!is_table(&serde_json::json!({ "value": 3 })));
    }

    #[test]
    fn a_slug_is_a_safe_file_name() {
        assert_eq!(slug("Revenue by région (EUR)"), "revenue-by-r-gion-eur");
        assert_eq!(slug("SELECT * FROM \"t\"; --"), "select-from-t");
        assert_eq!(slug("…"), "result");
        assert!(slug(&"ab ".repeat(100)).len() <= MAX_SLUG_LEN);
    }
}
