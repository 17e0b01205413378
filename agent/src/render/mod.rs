//! Rendering: turning a [`ResultSet`] into the only bytes that leave the agent.
//!
//! Raw rows never leave the agent; what the job's [`RenderSpec`] asks for does:
//!
//! - a table as JSON (`application/json`) or as an escaped HTML `<table>` fragment
//!   (`text/html`), capped at the smaller of the job's `max_rows` and the agent's policy;
//! - a grouped or stacked bar chart as a self-contained, deterministic SVG
//!   (`image/svg+xml`): the same input always gives the same bytes. Its series are its `y`
//!   columns, or the values of a `series` column (long form, pivoted by the agent);
//! - line, area and scatter charts, pies and scalars.
//!
//! Every piece of text that came from the database (column names, cells, labels, titles) is
//! escaped, and control characters that XML cannot carry are replaced, so a value can never
//! become markup. The output never contains scripts, event-handler attributes, styles or
//! references to anything outside the document.
//!
//! It refuses, with a typed [`RenderError`] and without panicking: columns that do not exist,
//! rows whose width does not match the columns, non-numeric or non-finite chart values,
//! values too large to chart, charts without series, and charts with more bar groups or series
//! than the limits (or more rows than the agent's row policy allows to leave).

use std::fmt::{self, Write as _};

use outpost_protocol::{BarSpec, EgressDecision, RenderSpec, TableFormat, TableSpec};

use crate::resultset::{ResultSet, Value};

mod axis;
mod bar;
mod bar_series;
mod downsample;
mod format;
mod measure;
mod pie;
mod scalar;
mod series_order;
mod svg;
mod table;
mod xaxis;
pub mod xy;

#[cfg(test)]
mod bar_series_tests;
#[cfg(test)]
mod bar_tests;
#[cfg(test)]
mod finish_tests;
#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod kinds_tests;
#[cfg(test)]
mod options_tests;
#[cfg(test)]
mod test_util;

pub(crate) use axis::Axis;
use bar::BarChart;
use bar_series::LongForm;
pub(crate) use svg::*;
pub(crate) use table::JsonCell;
use table::{table_html, table_json};

pub use pie::MAX_SLICES;
pub use xy::{XyChart, XyKind, DEFAULT_MAX_POINTS};

/// Most bar groups (rows) a chart may have.
pub const MAX_BAR_GROUPS: usize = 200;

/// Colours of the series, in `y` order; there are never more series than colours.
pub(crate) const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/// Most series (`y` columns, or `series` values before the rest is summed as "Other") a
/// chart may have: one colour each.
pub const MAX_SERIES: usize = outpost_protocol::job::MAX_SERIES;
const _: () = assert!(MAX_SERIES == PALETTE.len(), "one colour per series");

/// Largest magnitude a chart value may have; beyond it the axis arithmetic would overflow.
pub const MAX_CHART_MAGNITUDE: f64 = 1e300;

/// The bytes that leave the agent, with what describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// MIME type of `body`.
    pub content_type: &'static str,
    /// The rendered result.
    pub body: Vec<u8>,
    /// How many result rows the body shows.
    pub rows_rendered: usize,
    /// Whether the query returned more rows than the body shows.
    pub truncated: bool,
    /// Values the body carries: table cells, bars, slices, chart points.
    pub points: usize,
    /// What rendering did to fit the limits (downsampling), for the report and audit log.
    pub decisions: Vec<EgressDecision>,
}

/// Why a result could not be rendered.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum RenderError {
    /// A catalog job is answered from the database's metadata, never rendered from rows.
    #[error("a catalog job is not rendered from rows")]
    NotRows,
    /// The spec names a column the result does not have.
    #[error("unknown column {column:?}; available columns: {available:?}")]
    UnknownColumn {
        /// The column asked for.
        column: String,
        /// The result's columns, in query order.
        available: Vec<String>,
    },
    /// A chart value is not a finite number (text, bytes, NaN or infinity).
    #[error("column {column:?} holds a value that is not a finite number at row index {row}")]
    NotNumeric {
        /// The `y` column.
        column: String,
        /// Index of the row, counting from 0.
        row: usize,
    },
    /// A chart value's magnitude is above [`MAX_CHART_MAGNITUDE`].
    #[error("column {column:?} holds a value too large to chart at row index {row}")]
    OutOfRange {
        /// The `y` column.
        column: String,
        /// Index of the row, counting from 0.
        row: usize,
    },
    /// The chart would have more bar groups than allowed.
    #[error("{bars} bar groups exceed {}", bar_limit(*.max))]
    TooManyBars {
        /// Bar groups (rows) in the result.
        bars: usize,
        /// The smaller of [`MAX_BAR_GROUPS`] and the agent's row policy.
        max: usize,
    },
    /// A bar chart with a `series` column has more distinct `x` values than bar groups.
    #[error(
        "the bar chart has more than {max} distinct x values; it draws at most {max} bar groups (one per x value)"
    )]
    TooManyBarGroups {
        /// [`MAX_BAR_GROUPS`].
        max: usize,
    },
    /// A bar chart with a `series` column has more rows than the agent's row policy lets
    /// a chart show.
    #[error("a bar chart of {rows} rows exceeds the agent's row limit (max_rows) of {max}")]
    TooManyBarRows {
        /// Rows in the result.
        rows: usize,
        /// The agent's row policy (`max_rows`).
        max: usize,
    },
    /// A pie chart's result has more rows than the agent's row policy lets a chart show.
    #[error(
        "a pie chart of {rows} rows exceeds the agent's row limit (max_rows) of {max}; a pie draws at most \
         {MAX_SLICES} slices, the largest, and sums the rest as Other"
    )]
    TooManyPieRows {
        /// Rows in the result.
        rows: usize,
        /// The agent's row policy (`max_rows`).
        max: usize,
    },
    /// The chart would have more series than colours.
    #[error("{series} series exceed the limit of {max} series per chart (one colour each)")]
    TooManySeries {
        /// `y` columns asked for.
        series: usize,
        /// [`MAX_SERIES`].
        max: usize,
    },
    /// A bar chart takes `series` from a column and from several `y` columns at once.
    #[error("series takes its values from exactly one y column, but y names {y}")]
    SeriesWithSeveralY {
        /// `y` columns asked for.
        y: usize,
    },
    /// A line, area or scatter chart's `series` column has more distinct values than colours.
    #[error(
        "column {column:?} has more than {max} distinct values; a line, area or scatter chart draws at most {max} series \
         (one colour each), so group the rest in SQL or filter them out"
    )]
    TooManySeriesValues {
        /// The `series` column.
        column: String,
        /// [`MAX_SERIES`].
        max: usize,
    },
    /// A chart spec names no `y` column.
    #[error("a bar chart needs at least one y column")]
    NoSeries,
    /// An x axis value is neither a number nor a date, time or timestamp, or not of the
    /// same kind as the column's other values.
    #[error("column {column:?} holds {found} at row index {row}; a line, area or scatter chart needs numbers, dates, times or timestamps of one kind on its x axis")]
    NotAxis {
        /// The `x` column.
        column: String,
        /// Index of the row, counting from 0.
        row: usize,
        /// The type found.
        found: &'static str,
    },
    /// A pie slice would have a negative size.
    #[error("column {column:?} holds a negative value at row index {row}; pie slices need sizes of zero or more")]
    Negative {
        /// The `value` column.
        column: String,
        /// Index of the row, counting from 0.
        row: usize,
    },
    /// A row does not have one value per column.
    #[error("row index {row} has {found} values for {expected} columns")]
    RaggedRow {
        /// Index of the row, counting from 0.
        row: usize,
        /// Number of columns.
        expected: usize,
        /// Number of values in the row.
        found: usize,
    },
    /// Encoding the output failed (not expected to happen).
    #[error("encoding the rendered result failed: {0}")]
    Encode(String),
}

/// Names the limit a bar chart hit: its own, or the agent's row policy when lower.
fn bar_limit(max: usize) -> String {
    if max == MAX_BAR_GROUPS {
        format!("the bar chart limit of {MAX_BAR_GROUPS} groups (one per row)")
    } else {
        format!("the agent's row limit (max_rows) of {max}")
    }
}

/// Renders `rs` as `spec` asks, showing at most `max_rows` rows (the agent's policy).
///
/// Tables show at most `min(spec.max_rows, max_rows)` rows and say when rows were cut.
/// Charts encode every row's values, so a chart with more than `min(MAX_BAR_GROUPS,
/// max_rows)` rows is refused rather than silently cut.
pub fn render(spec: &RenderSpec, rs: &ResultSet, max_rows: usize) -> Result<Rendered, RenderError> {
    render_with(spec, rs, max_rows, DEFAULT_MAX_POINTS)
}

/// [`render`] with a budget of chart points: line, area and scatter charts are downsampled
/// to at most `max_points` points over all series.
pub fn render_with(
    spec: &RenderSpec,
    rs: &ResultSet,
    max_rows: usize,
    max_points: usize,
) -> Result<Rendered, RenderError> {
    check_row_widths(rs)?;
    match spec {
        RenderSpec::Table(TableSpec { format, max_rows: spec_max }) => {
            let cap = spec_max.map_or(max_rows, |m| max_rows.min(usize::try_from(m).unwrap_or(usize::MAX)));
            let shown = rs.rows.len().min(cap);
            let truncated = rs.truncated || shown < rs.rows.len();
            let (content_type, body) = match format {
                TableFormat::Json => ("application/json", table_json(rs, shown, truncated)?),
                TableFormat::Html => (
                    "text/html; charset=utf-8",
                    table_html(rs, shown, truncated).map_err(|e| RenderError::Encode(e.to_string()))?.into_bytes(),
                ),
            };
            let points = shown * rs.columns.len();
            Ok(Rendered { content_type, body, rows_rendered: shown, truncated, points, decisions: Vec::new() })
        }
        RenderSpec::Scalar(spec) => scalar::render_scalar(spec, rs),
        RenderSpec::Bar(BarSpec { x, y, title, stacked, series, format, unit, decimals }) => {
            let mut chart = match (series, y.as_slice()) {
                (None, _) => BarChart::build(rs, x, y, title.as_deref(), *stacked, max_rows)?,
                (Some(series), [y]) => {
                    LongForm { x, y, series, title: title.as_deref(), stacked: *stacked }.build(rs, max_rows)?
                }
                (Some(_), []) => return Err(RenderError::NoSeries),
                (Some(_), _) => return Err(RenderError::SeriesWithSeveralY { y: y.len() }),
            };
            chart.format = format::ValueFormat::new(*format, unit.as_deref(), *decimals);
            let body = chart.svg().map_err(|e| RenderError::Encode(e.to_string()))?.into_bytes();
            Ok(Rendered {
                content_type: "image/svg+xml",
                body,
                rows_rendered: rs.rows.len(),
                truncated: rs.truncated,
                points: chart.points(),
                decisions: Vec::new(),
            })
        }
        RenderSpec::Line(spec) => xy::render_xy(XyKind::Line, spec, rs, max_points),
        RenderSpec::Area(spec) => xy::render_xy(XyKind::Area, spec, rs, max_points),
        RenderSpec::Scatter(spec) => xy::render_xy(XyKind::Scatter, spec, rs, max_points),
        RenderSpec::Pie(spec) => pie::render_pie(spec, rs, max_rows),
        RenderSpec::Catalog(_) => Err(RenderError::NotRows),
    }
}

fn check_row_widths(rs: &ResultSet) -> Result<(), RenderError> {
    let expected = rs.columns.len();
    match rs.rows.iter().position(|r| r.len() != expected) {
        Some(row) => Err(RenderError::RaggedRow { row, expected, found: rs.rows[row].len() }),
        None => Ok(()),
    }
}

fn column_index(columns: &[String], column: &str) -> Result<usize, RenderError> {
    columns
        .iter()
        .position(|c| c == column)
        .ok_or_else(|| RenderError::UnknownColumn { column: column.to_owned(), available: columns.to_vec() })
}

/// A computed number (a sum) as a table would show it: integers without decimals.
fn plain_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        v.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Shared text helpers
// ---------------------------------------------------------------------------------------------

/// `\x` followed by lower-case hex, as PostgreSQL shows `bytea`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("\\x");
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Name of a non-finite float, as tables show it.
fn non_finite_name(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

/// A cell or label as text (no escaping).
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "(null)".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_finite() => f.to_string(),
        Value::Float(f) => non_finite_name(*f).to_owned(),
        Value::Decimal(d) => d.clone(),
        Value::Text(t) | Value::Json(t) => t.clone(),
        Value::Bytes(b) => hex(b),
        Value::Uuid(u) => crate::resultset::uuid_text(u),
        Value::Date(_) | Value::Time(_) | Value::Timestamp(_) | Value::TimestampTz(_) => {
            crate::resultset::temporal_text(v).unwrap_or_default()
        }
    }
}

/// At most `max` characters of `s`, the last one an ellipsis when it was cut.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Text escaped for XML and HTML, both in content and in quoted attributes.
///
/// Characters XML 1.0 cannot carry at all (C0 controls other than tab, line feed and
/// carriage return; U+FFFE; U+FFFF) become U+FFFD.
pub(crate) struct Esc<'a>(pub(crate) &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                '\t' | '\n' | '\r' => f.write_char(c)?,
                c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => f.write_char('\u{FFFD}')?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}
