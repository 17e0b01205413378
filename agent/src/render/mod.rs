//! Rendering: turning a [`ResultSet`] into the only bytes that leave the agent.
//!
//! Raw rows never leave the agent; what the job's [`RenderSpec`] asks for does:
//!
//! - a table as JSON (`application/json`) or as an escaped HTML `<table>` fragment
//!   (`text/html`), capped at the smaller of the job's `max_rows` and the agent's policy;
//! - a grouped bar chart as a self-contained, deterministic SVG (`image/svg+xml`): the same
//!   input always gives the same bytes.
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
use serde::ser::{Serialize, Serializer};

use crate::resultset::{ResultSet, Value};

mod pie;
mod scalar;
pub mod xy;

pub use pie::MAX_SLICES;
pub use xy::{XyChart, XyKind, DEFAULT_MAX_POINTS};

/// Most bar groups (rows) a chart may have.
pub const MAX_BAR_GROUPS: usize = 200;

/// Colours of the series, in `y` order; there are never more series than colours.
pub(crate) const PALETTE: [&str; 10] =
    ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

/// Most series (`y` columns) a chart may have: one colour each.
pub const MAX_SERIES: usize = PALETTE.len();

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
    #[error("{bars} bar groups exceed the limit of {max}")]
    TooManyBars {
        /// Bar groups (rows) in the result.
        bars: usize,
        /// The smaller of [`MAX_BAR_GROUPS`] and the agent's row policy.
        max: usize,
    },
    /// The chart would have more series than colours.
    #[error("{series} series exceed the limit of {max}")]
    TooManySeries {
        /// `y` columns asked for.
        series: usize,
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
        RenderSpec::Bar(BarSpec { x, y, title, stacked }) => {
            let chart = BarChart::build(rs, x, y, title.as_deref(), *stacked, max_rows)?;
            let body = chart.svg().map_err(|e| RenderError::Encode(e.to_string()))?.into_bytes();
            Ok(Rendered {
                content_type: "image/svg+xml",
                body,
                rows_rendered: rs.rows.len(),
                truncated: rs.truncated,
                points: chart.bars.iter().flatten().filter(|b| b.value.is_some()).count(),
                decisions: Vec::new(),
            })
        }
        RenderSpec::Line(spec) => xy::render_xy(XyKind::Line, spec, rs, max_points),
        RenderSpec::Area(spec) => xy::render_xy(XyKind::Area, spec, rs, max_points),
        RenderSpec::Scatter(spec) => xy::render_xy(XyKind::Scatter, spec, rs, max_points),
        RenderSpec::Pie(spec) => pie::render_pie(spec, rs, max_rows),
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

// ---------------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------------

#[derive(serde::Serialize)]
struct JsonTable<'a> {
    columns: &'a [String],
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

fn table_json(rs: &ResultSet, shown: usize, truncated: bool) -> Result<Vec<u8>, RenderError> {
    let table = JsonTable {
        columns: &rs.columns,
        rows: rs.rows.iter().take(shown).map(|r| JsonRow(r)).collect(),
        truncated,
        row_count: shown,
    };
    serde_json::to_vec(&table).map_err(|e| RenderError::Encode(e.to_string()))
}

fn table_html(rs: &ResultSet, shown: usize, truncated: bool) -> Result<String, fmt::Error> {
    let mut o = String::with_capacity(128 + shown * rs.columns.len() * 16);
    o.push_str("<table>\n");
    if truncated {
        writeln!(o, "<caption>Truncated: showing the first {shown} rows; the query returned more.</caption>")?;
    }
    o.push_str("<thead><tr>");
    for c in &rs.columns {
        write!(o, "<th scope=\"col\">{}</th>", Esc(c))?;
    }
    o.push_str("</tr></thead>\n<tbody>\n");
    for row in rs.rows.iter().take(shown) {
        o.push_str("<tr>");
        for v in row {
            match v {
                Value::Null => o.push_str("<td class=\"null\">NULL</td>"),
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
    o.push_str("</tbody>\n</table>\n");
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Bar charts
// ---------------------------------------------------------------------------------------------

pub(crate) const WIDTH: f64 = 800.0;
pub(crate) const HEIGHT: f64 = 450.0;
pub(crate) const MARGIN_TOP: f64 = 56.0;
pub(crate) const MARGIN_BOTTOM: f64 = 114.0;
pub(crate) const MARGIN_LEFT: f64 = 96.0;
pub(crate) const MARGIN_RIGHT: f64 = 20.0;
pub(crate) const LEGEND_WIDTH: f64 = 160.0;
/// Height of the plot area: the full axis span maps onto it.
pub(crate) const PLOT_HEIGHT: f64 = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
/// Characters of an x label shown under the axis.
pub(crate) const LABEL_CHARS: usize = 24;
/// Characters of a series name shown in the legend.
pub(crate) const LEGEND_CHARS: usize = 20;
/// Characters of the visible title.
pub(crate) const TITLE_CHARS: usize = 80;
/// Characters of text kept in attributes and `<title>` elements.
pub(crate) const ATTR_CHARS: usize = 200;
/// Assumed average glyph width of 11px sans-serif text, for label layout.
const GLYPH_WIDTH: f64 = 6.5;
/// Smallest distance between two rotated x labels.
const ROTATED_LABEL_SPACING: f64 = 13.0;
/// Number of intervals on the y axis (so one more tick).
const TICK_INTERVALS: u32 = 4;

/// One bar value: the number, and the text of the `data-value` attribute.
struct Bar {
    value: Option<f64>,
    text: String,
}

struct BarChart<'a> {
    x: &'a str,
    series: &'a [String],
    title: Option<&'a str>,
    /// One label per group.
    labels: Vec<String>,
    /// `bars[group][series]`.
    bars: Vec<Vec<Bar>>,
    truncated: bool,
    axis: Axis,
    /// Series stacked in one bar per group (positives up from zero, negatives down).
    stacked: bool,
}

impl<'a> BarChart<'a> {
    fn build(
        rs: &ResultSet,
        x: &'a str,
        series: &'a [String],
        title: Option<&'a str>,
        stacked: bool,
        max_rows: usize,
    ) -> Result<Self, RenderError> {
        if series.is_empty() {
            return Err(RenderError::NoSeries);
        }
        let xi = column_index(&rs.columns, x)?;
        let yis = series.iter().map(|c| column_index(&rs.columns, c)).collect::<Result<Vec<_>, _>>()?;
        if series.len() > MAX_SERIES {
            return Err(RenderError::TooManySeries { series: series.len(), max: MAX_SERIES });
        }
        let max = MAX_BAR_GROUPS.min(max_rows);
        if rs.rows.len() > max {
            return Err(RenderError::TooManyBars { bars: rs.rows.len(), max });
        }

        let mut labels = Vec::with_capacity(rs.rows.len());
        let mut bars = Vec::with_capacity(rs.rows.len());
        let (mut lo, mut hi) = (0.0_f64, 0.0_f64);
        for (row_index, row) in rs.rows.iter().enumerate() {
            labels.push(value_text(&row[xi]));
            let mut group = Vec::with_capacity(yis.len());
            let (mut up, mut down) = (0.0_f64, 0.0_f64);
            for (&yi, column) in yis.iter().zip(series) {
                let bar = match &row[yi] {
                    Value::Null => Bar { value: None, text: "null".to_owned() },
                    v if v.is_number() => {
                        let n = v
                            .as_f64()
                            .filter(|n| n.is_finite())
                            .ok_or_else(|| RenderError::NotNumeric { column: column.clone(), row: row_index })?;
                        if n.abs() > MAX_CHART_MAGNITUDE {
                            return Err(RenderError::OutOfRange { column: column.clone(), row: row_index });
                        }
                        if stacked {
                            if n >= 0.0 {
                                up += n;
                            } else {
                                down += n;
                            }
                            lo = lo.min(down);
                            hi = hi.max(up);
                        } else {
                            lo = lo.min(n);
                            hi = hi.max(n);
                        }
                        Bar { value: Some(n), text: value_text(v) }
                    }
                    _ => return Err(RenderError::NotNumeric { column: column.clone(), row: row_index }),
                };
                group.push(bar);
            }
            bars.push(group);
        }

        if lo.abs().max(hi.abs()) > MAX_CHART_MAGNITUDE || lo.is_nan() || hi.is_nan() {
            return Err(RenderError::OutOfRange { column: series.join(" + "), row: rs.rows.len().saturating_sub(1) });
        }
        Ok(Self { x, series, title, labels, bars, truncated: rs.truncated, axis: Axis::nice(lo, hi), stacked })
    }

    fn svg(&self) -> Result<String, fmt::Error> {
        let groups = self.bars.len();
        let n_series = self.series.len();
        let legend = n_series > 1;
        let plot_left = MARGIN_LEFT;
        let plot_right = WIDTH - MARGIN_RIGHT - if legend { LEGEND_WIDTH } else { 0.0 };
        let plot_width = plot_right - plot_left;
        let plot_top = MARGIN_TOP;
        let plot_bottom = MARGIN_TOP + PLOT_HEIGHT;
        let scale = PLOT_HEIGHT / (self.axis.hi - self.axis.lo);
        let y_of = |v: f64| plot_top + (self.axis.hi - v) * scale;
        let zero_y = y_of(0.0);

        let mut o = String::with_capacity(4096 + groups * n_series * 200);
        let description = match self.title {
            Some(t) => t.to_owned(),
            None => format!("Bar chart of {} by {}", self.series.join(", "), self.x),
        };
        svg_open(&mut o, &description, self.title, truncation_note(self.truncated, groups).as_deref())?;
        svg_y_ticks(&mut o, &self.axis, plot_left, plot_right, y_of)?;

        // Bars: one group per row, series side by side within the middle 80% of the group,
        // or stacked in one bar of that width.
        let group_width = if groups > 0 { plot_width / groups as f64 } else { plot_width };
        let bar_width = if self.stacked { group_width * 0.8 } else { group_width * 0.8 / n_series as f64 };
        for (g, group) in self.bars.iter().enumerate() {
            let label = truncate_chars(&self.labels[g], ATTR_CHARS);
            let group_left = plot_left + g as f64 * group_width + group_width * 0.1;
            let (mut up, mut down) = (0.0_f64, 0.0_f64);
            for (s, bar) in group.iter().enumerate() {
                let Some(value) = bar.value else { continue };
                let height = value.abs() * scale;
                let (base, slot) = if self.stacked {
                    let base = if value >= 0.0 { &mut up } else { &mut down };
                    let from = *base;
                    *base += value;
                    (y_of(from), 0.0)
                } else {
                    (zero_y, s as f64)
                };
                let top = if value >= 0.0 { base - height } else { base };
                let series = truncate_chars(&self.series[s], ATTR_CHARS);
                writeln!(
                    o,
                    "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" \
                     data-series=\"{}\" data-label=\"{}\" data-value=\"{}\"><title>{}: {} = {}</title></rect>",
                    Px(group_left + slot * bar_width),
                    Px(top),
                    Px(bar_width),
                    Px(height),
                    PALETTE[s % PALETTE.len()],
                    Esc(&series),
                    Esc(&label),
                    Esc(&bar.text),
                    Esc(&label),
                    Esc(&series),
                    Esc(&bar.text),
                )?;
            }
        }
        if groups == 0 {
            svg_empty(&mut o, plot_left, plot_width)?;
        }

        // Axis lines: the y axis on the left, the x axis at the zero baseline.
        writeln!(
            o,
            "<line class=\"axis\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#333333\"/>",
            Px(plot_top),
            Px(plot_bottom),
            x = Px(plot_left)
        )?;
        writeln!(
            o,
            "<line class=\"axis\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#333333\"/>",
            Px(plot_left),
            Px(plot_right),
            y = Px(zero_y)
        )?;

        // X labels: horizontal when they fit, otherwise rotated and thinned out.
        let shown: Vec<String> = self.labels.iter().map(|l| truncate_chars(l, LABEL_CHARS)).collect();
        let widest = shown.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let horizontal = widest as f64 * GLYPH_WIDTH + 4.0 <= group_width;
        let stride = if horizontal { 1 } else { ((ROTATED_LABEL_SPACING / group_width).ceil() as usize).max(1) };
        for (g, label) in shown.iter().enumerate().step_by(stride) {
            let cx = Px(plot_left + (g as f64 + 0.5) * group_width);
            if horizontal {
                writeln!(
                    o,
                    "<text class=\"x-label\" x=\"{cx}\" y=\"{}\" text-anchor=\"middle\" \
                     font-size=\"11\" fill=\"#444444\">{}</text>",
                    Px(plot_bottom + 18.0),
                    Esc(label)
                )?;
            } else {
                let y = Px(plot_bottom + 12.0);
                writeln!(
                    o,
                    "<text class=\"x-label\" x=\"{cx}\" y=\"{y}\" text-anchor=\"end\" \
                     font-size=\"11\" fill=\"#444444\" transform=\"rotate(-45 {cx} {y})\">{}</text>",
                    Esc(label)
                )?;
            }
        }

        // Axis titles: the x column below the labels, the value column (or "value" for
        // several series, which the legend names) along the y axis.
        let y_title = if self.series.len() == 1 { self.series[0].as_str() } else { "value" };
        svg_axis_titles(&mut o, self.x, y_title, plot_left, plot_width)?;
        if legend {
            svg_legend(&mut o, plot_right + 16.0, plot_top, self.series.iter().map(String::as_str))?;
        }
        svg_close(&mut o);
        Ok(o)
    }
}

/// The opening of every chart: root element, accessible title, background, visible title
/// and the truncation note.
pub(crate) fn svg_open(o: &mut String, description: &str, title: Option<&str>, note: Option<&str>) -> fmt::Result {
    o.push_str(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 800 450\" \
         width=\"800\" height=\"450\" role=\"img\">\n",
    );
    writeln!(o, "<title>{}</title>", Esc(&truncate_chars(description, ATTR_CHARS)))?;
    o.push_str("<g font-family=\"sans-serif\">\n");
    o.push_str("<rect x=\"0\" y=\"0\" width=\"800\" height=\"450\" fill=\"#ffffff\"/>\n");
    if let Some(t) = title {
        writeln!(
            o,
            "<text class=\"chart-title\" x=\"400\" y=\"26\" text-anchor=\"middle\" \
             font-size=\"16\" font-weight=\"bold\" fill=\"#222222\">{}</text>",
            Esc(&truncate_chars(t, TITLE_CHARS))
        )?;
    }
    if let Some(note) = note {
        writeln!(
            o,
            "<text class=\"note\" x=\"400\" y=\"44\" text-anchor=\"middle\" font-size=\"11\" \
             fill=\"#666666\">{}</text>",
            Esc(note)
        )?;
    }
    Ok(())
}

/// Closes what [`svg_open`] opened.
pub(crate) fn svg_close(o: &mut String) {
    o.push_str("</g>\n</svg>\n");
}

/// Horizontal grid lines and labels of a value axis.
pub(crate) fn svg_y_ticks(
    o: &mut String,
    axis: &Axis,
    left: f64,
    right: f64,
    y_of: impl Fn(f64) -> f64,
) -> fmt::Result {
    for v in axis.ticks() {
        let y = Px(y_of(v));
        writeln!(
            o,
            "<line class=\"grid\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#e5e5e5\"/>",
            Px(left),
            Px(right)
        )?;
        writeln!(
            o,
            "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\" \
             fill=\"#444444\">{}</text>",
            Px(left - 8.0),
            Px(y_of(v) + 4.0),
            Esc(&axis.label(v))
        )?;
    }
    Ok(())
}

/// The x axis title under the plot and the y axis title along its left side.
pub(crate) fn svg_axis_titles(o: &mut String, x_title: &str, y_title: &str, left: f64, width: f64) -> fmt::Result {
    writeln!(
        o,
        "<text class=\"axis-title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\" \
         fill=\"#333333\">{}</text>",
        Px(left + width / 2.0),
        Px(HEIGHT - 16.0),
        Esc(&truncate_chars(x_title, LEGEND_CHARS))
    )?;
    let (tx, ty) = (Px(18.0), Px(MARGIN_TOP + PLOT_HEIGHT / 2.0));
    writeln!(
        o,
        "<text class=\"axis-title\" x=\"{tx}\" y=\"{ty}\" text-anchor=\"middle\" font-size=\"12\" \
         fill=\"#333333\" transform=\"rotate(-90 {tx} {ty})\">{}</text>",
        Esc(&truncate_chars(y_title, LEGEND_CHARS))
    )
}

/// A legend: one swatch and name per entry, in the palette's order, from `top` down.
pub(crate) fn svg_legend<'n>(o: &mut String, x: f64, top: f64, names: impl Iterator<Item = &'n str>) -> fmt::Result {
    for (s, name) in names.enumerate() {
        let y = top + s as f64 * 20.0;
        writeln!(
            o,
            "<rect class=\"legend-swatch\" x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>",
            Px(x),
            Px(y),
            PALETTE[s % PALETTE.len()]
        )?;
        writeln!(
            o,
            "<text class=\"legend\" x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#444444\">{}</text>",
            Px(x + 18.0),
            Px(y + 10.0),
            Esc(&truncate_chars(name, LEGEND_CHARS))
        )?;
    }
    Ok(())
}

/// "No rows" in the middle of an empty plot.
pub(crate) fn svg_empty(o: &mut String, left: f64, width: f64) -> fmt::Result {
    writeln!(
        o,
        "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" \
         fill=\"#666666\">No rows</text>",
        Px(left + width / 2.0),
        Px(MARGIN_TOP + PLOT_HEIGHT / 2.0)
    )
}

/// The note of a chart whose result was cut at the row cap.
pub(crate) fn truncation_note(truncated: bool, rows: usize) -> Option<String> {
    truncated.then(|| format!("Truncated: showing the first {rows} rows; the query returned more."))
}

/// A coordinate, written with exactly two decimals and never as `-0.00`.
pub(crate) struct Px(pub(crate) f64);

impl fmt::Display for Px {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = (self.0 * 100.0).round() / 100.0;
        let r = if r == 0.0 { 0.0 } else { r };
        write!(f, "{r:.2}")
    }
}

/// A value axis of equal "nice" steps (1, 2, 2.5 or 5 times a power of ten).
///
/// [`Axis::nice`] spans [`TICK_INTERVALS`] steps and always includes 0 (bars, areas);
/// [`Axis::span`] covers just the data (lines, scatter plots, numeric x axes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Axis {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    step: f64,
    /// Index of the first tick: it sits at `start * step`.
    start: i64,
    /// Steps from the first tick to the last.
    intervals: u32,
    /// Decimals a tick label needs.
    decimals: usize,
    /// Whether tick labels use scientific notation.
    scientific: bool,
}

/// Mantissas of nice steps.
const MANTISSAS: [f64; 4] = [1.0, 2.0, 2.5, 5.0];

/// Most intervals of a [`Axis::span`] axis.
const SPAN_INTERVALS: u32 = 6;

impl Axis {
    /// The axis for values between `min` and `max` (both finite; the range is widened to 0).
    pub(crate) fn nice(min: f64, max: f64) -> Self {
        let pos = max.max(0.0);
        let neg = (-min).max(0.0);
        let raw = pos / f64::from(TICK_INTERVALS) + neg / f64::from(TICK_INTERVALS);
        // All zero (or too small to tell apart from zero): 0 .. 4.
        if raw.is_nan() || raw < f64::MIN_POSITIVE {
            return Self::with_step(1.0, 0, TICK_INTERVALS, 0);
        }
        let ceil = |x: f64| (x - 1e-9).ceil().max(0.0) as u32;
        for (step, decimals) in nice_steps(raw) {
            let below = ceil(neg / step);
            let above = ceil(pos / step);
            if below + above > TICK_INTERVALS {
                continue;
            }
            // Spare intervals go above zero, unless every value is negative.
            let below = if pos == 0.0 { TICK_INTERVALS } else { below };
            return Self::with_step(step, -i64::from(below), TICK_INTERVALS, decimals);
        }
        // Not reached for finite input: one full-range step on each side of zero.
        Self::with_step(pos.max(neg), -2 * i64::from(neg > 0.0), TICK_INTERVALS, 0)
    }

    /// An axis from a nice tick at or below `min` to one at or above `max`, with at most
    /// [`SPAN_INTERVALS`] steps; zero is included only when the data comes near it.
    pub(crate) fn span(min: f64, max: f64) -> Self {
        let (min, max) = if max > min {
            (min, max)
        } else if min == 0.0 {
            (-1.0, 1.0)
        } else {
            (min - min.abs() * 0.1, max + max.abs() * 0.1)
        };
        let raw = (max - min) / f64::from(SPAN_INTERVALS);
        if !raw.is_finite() || raw < f64::MIN_POSITIVE {
            return Self::nice(min, max);
        }
        for (step, decimals) in nice_steps(raw) {
            let first = (min / step + 1e-9).floor();
            let last = (max / step - 1e-9).ceil();
            if last - first > f64::from(SPAN_INTERVALS) || first.abs() > 1e15 || last.abs() > 1e15 {
                continue;
            }
            return Self::with_step(step, first as i64, (last - first).max(1.0) as u32, decimals);
        }
        Self::nice(min, max)
    }

    fn with_step(step: f64, start: i64, intervals: u32, decimals: usize) -> Self {
        let lo = start as f64 * step;
        let hi = (start + i64::from(intervals)) as f64 * step;
        let scientific = decimals > 2 || lo.abs().max(hi.abs()) >= 1e10;
        Self { lo, hi, step, start, intervals, decimals, scientific }
    }

    /// The tick values, from the bottom of the axis up.
    pub(crate) fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        (0..=i64::from(self.intervals)).map(|i| (self.start + i) as f64 * self.step)
    }

    /// The label of tick `v`: integers without decimals, thousands separated by commas,
    /// otherwise at most two decimals; scientific notation for very small steps or very
    /// large values.
    pub(crate) fn label(&self, v: f64) -> String {
        if v == 0.0 {
            return "0".to_owned();
        }
        if self.scientific {
            let s = format!("{v:.2e}");
            return match s.split_once('e') {
                Some((mantissa, exponent)) => {
                    format!("{}e{exponent}", trim_decimals(mantissa))
                }
                None => s,
            };
        }
        let digits = format!("{:.*}", self.decimals, v.abs());
        let digits = trim_decimals(&digits);
        let (int, frac) = match digits.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (digits, None),
        };
        let mut out = String::with_capacity(digits.len() + int.len() / 3 + 1);
        if v < 0.0 {
            out.push('-');
        }
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if let Some(frac) = frac {
            out.push('.');
            out.push_str(frac);
        }
        out
    }
}

/// Nice steps of at least `raw` (positive, finite), smallest first, over three decades
/// (a fitting step is always found within two; the bound only keeps loops finite), each
/// with the decimals its tick labels need.
fn nice_steps(raw: f64) -> impl Iterator<Item = (f64, usize)> {
    let first = raw.log10().floor() as i32;
    (first..first + 3)
        .flat_map(|exp| MANTISSAS.into_iter().map(move |m| (m, exp)))
        .map(|(m, exp)| (m * 10f64.powi(exp), decimals_of(m, exp)))
        .filter(move |(step, _)| step.is_finite() && *step >= raw * (1.0 - 1e-9))
}

/// Decimals a tick label of a step `mantissa × 10^exp` needs.
fn decimals_of(mantissa: f64, exp: i32) -> usize {
    let decimals = if mantissa == 2.5 { 1 - exp } else { -exp };
    decimals.max(0) as usize
}

/// `"2.50"` → `"2.5"`, `"3.00"` → `"3"`, `"10"` → `"10"`.
fn trim_decimals(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(columns: &[&str], rows: Vec<Vec<Value>>) -> ResultSet {
        ResultSet {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows,
            truncated: false,
            provenance: None,
        }
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn table(format: TableFormat, max_rows: Option<u32>) -> RenderSpec {
        RenderSpec::Table(TableSpec { format, max_rows })
    }

    fn bar(x: &str, y: &[&str], title: Option<&str>) -> RenderSpec {
        RenderSpec::Bar(BarSpec {
            x: x.to_owned(),
            y: y.iter().map(|c| (*c).to_owned()).collect(),
            title: title.map(str::to_owned),
            stacked: false,
        })
    }

    fn body(r: &Rendered) -> &str {
        std::str::from_utf8(&r.body).expect("rendered bodies are UTF-8")
    }

    fn json(r: &Rendered) -> serde_json::Value {
        serde_json::from_slice(&r.body).expect("table JSON parses")
    }

    /// Sales by region: one Text x column and two Int series.
    fn sales() -> ResultSet {
        rs(
            &["region", "2023", "2024"],
            vec![
                vec![text("north"), Value::Int(10), Value::Int(12)],
                vec![text("south"), Value::Int(25), Value::Int(5)],
                vec![text("east"), Value::Int(40), Value::Int(0)],
            ],
        )
    }

    /// A parsed bar `<rect>`.
    #[derive(Debug)]
    struct ParsedBar {
        series: String,
        label: String,
        value: String,
        x: f64,
        y: f64,
        width: f64,
        height: f64,
    }

    fn num(n: roxmltree::Node<'_, '_>, attr: &str) -> f64 {
        n.attribute(attr).expect("bar has the attribute").parse().expect("attribute is a number")
    }

    fn parse_bars(svg: &str) -> Vec<ParsedBar> {
        let doc = roxmltree::Document::parse(svg).expect("SVG is well-formed XML");
        doc.descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some("bar"))
            .map(|n| ParsedBar {
                series: n.attribute("data-series").unwrap_or_default().to_owned(),
                label: n.attribute("data-label").unwrap_or_default().to_owned(),
                value: n.attribute("data-value").unwrap_or_default().to_owned(),
                x: num(n, "x"),
                y: num(n, "y"),
                width: num(n, "width"),
                height: num(n, "height"),
            })
            .collect()
    }

    fn texts_with_class(svg: &str, class: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).expect("SVG is well-formed XML");
        doc.descendants()
            .filter(|n| n.has_tag_name("text") && n.attribute("class") == Some(class))
            .map(|n| n.text().unwrap_or_default().to_owned())
            .collect()
    }

    fn render_svg(spec: &RenderSpec, rs: &ResultSet) -> String {
        let r = render(spec, rs, 1000).expect("chart renders");
        assert_eq!(r.content_type, "image/svg+xml");
        body(&r).to_owned()
    }

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
        assert_eq!(body(&r), r#"{"columns":["a","b"],"rows":[[1,"x"]],"truncated":false,"row_count":1}"#);
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
        assert!(html.starts_with("<table>"));
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
            "<td class=\"null\">NULL</td><td class=\"num\">3</td><td class=\"num\">NaN</td><td>\\x0102</td>"
        ));
    }

    #[test]
    fn ragged_rows_are_refused() {
        let bad = rs(&["a", "b"], vec![vec![Value::Int(1), Value::Int(2)], vec![Value::Int(3)]]);
        for spec in [table(TableFormat::Json, None), bar("a", &["b"], None)] {
            assert_eq!(render(&spec, &bad, 10), Err(RenderError::RaggedRow { row: 1, expected: 2, found: 1 }));
        }
    }

    // ---- bar charts: geometry ---------------------------------------------------------------

    #[test]
    fn bar_heights_are_proportional_to_values() {
        let svg = render_svg(&bar("region", &["2023"], None), &sales());
        let bars = parse_bars(&svg);
        assert_eq!(bars.len(), 3);
        // Values 10, 25, 40 give an axis 0..40 in steps of 10.
        assert_eq!(texts_with_class(&svg, "tick"), ["0", "10", "20", "30", "40"]);
        for b in &bars {
            let value: f64 = b.value.parse().expect("data-value is a number");
            let expected = value / 40.0 * PLOT_HEIGHT;
            assert!((b.height - expected).abs() <= 0.005, "{b:?}");
            // Bars stand on the same baseline.
            assert!((b.y + b.height - (MARGIN_TOP + PLOT_HEIGHT)).abs() <= 0.01, "{b:?}");
        }
        let labels: Vec<_> = bars.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["north", "south", "east"]);
        assert!(bars.iter().all(|b| b.series == "2023"));
    }

    #[test]
    fn bar_heights_are_proportional_for_floats_and_odd_maxima() {
        let data = rs(
            &["k", "v"],
            vec![
                vec![Value::Int(1), Value::Float(0.37)],
                vec![Value::Int(2), Value::Float(1234.5)],
                vec![Value::Int(3), Value::Float(987.0)],
            ],
        );
        let svg = render_svg(&bar("k", &["v"], None), &data);
        let bars = parse_bars(&svg);
        let ratio = |b: &ParsedBar| b.height / b.value.parse::<f64>().expect("number");
        let tallest = bars.iter().map(|b| b.height).fold(0.0_f64, f64::max);
        assert!(tallest <= PLOT_HEIGHT);
        // The axis max is a nice number at least the largest value: steps of 500 up to 2,000.
        assert_eq!(texts_with_class(&svg, "tick"), ["0", "500", "1,000", "1,500", "2,000"]);
        for b in &bars[1..] {
            assert!((ratio(b) - PLOT_HEIGHT / 2000.0).abs() < 1e-4, "{b:?}");
        }
    }

    #[test]
    fn grouped_bars_sit_side_by_side_with_one_colour_per_series() {
        let svg = render_svg(&bar("region", &["2023", "2024"], None), &sales());
        let bars = parse_bars(&svg);
        assert_eq!(bars.len(), 6);
        for pair in bars.chunks(2) {
            assert_eq!(pair[0].label, pair[1].label);
            assert_eq!((pair[0].series.as_str(), pair[1].series.as_str()), ("2023", "2024"));
            assert!((pair[0].x + pair[0].width - pair[1].x).abs() <= 0.01, "{pair:?}");
        }
        // Groups do not overlap.
        assert!(bars[1].x + bars[1].width < bars[2].x);
        let doc = roxmltree::Document::parse(&svg).expect("parses");
        let fills: Vec<_> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("bar"))
            .map(|n| (n.attribute("data-series"), n.attribute("fill")))
            .collect();
        for (series, fill) in fills {
            let expected = if series == Some("2023") { PALETTE[0] } else { PALETTE[1] };
            assert_eq!(fill, Some(expected));
        }
    }

    #[test]
    fn bar_negative_values_go_down_from_the_zero_baseline() {
        let data = rs(&["k", "v"], vec![vec![text("up"), Value::Int(30)], vec![text("down"), Value::Int(-10)]]);
        let svg = render_svg(&bar("k", &["v"], None), &data);
        // Range -10..30 fits -10..30 in steps of 10, zero is a tick.
        assert_eq!(texts_with_class(&svg, "tick"), ["-10", "0", "10", "20", "30"]);
        let bars = parse_bars(&svg);
        let zero_y = MARGIN_TOP + PLOT_HEIGHT * 30.0 / 40.0;
        let (up, down) = (&bars[0], &bars[1]);
        assert!((up.y + up.height - zero_y).abs() <= 0.01, "{up:?}");
        assert!((down.y - zero_y).abs() <= 0.01, "{down:?}");
        assert!((up.height - 3.0 * down.height).abs() <= 0.02);
        assert!((down.height - 10.0 / 40.0 * PLOT_HEIGHT).abs() <= 0.005);
    }

    #[test]
    fn bar_all_negative_values_put_zero_at_the_top() {
        let data = rs(&["k", "v"], vec![vec![text("a"), Value::Float(-3.0)]]);
        let svg = render_svg(&bar("k", &["v"], None), &data);
        assert_eq!(texts_with_class(&svg, "tick"), ["-4", "-3", "-2", "-1", "0"]);
        let b = &parse_bars(&svg)[0];
        assert!((b.y - MARGIN_TOP).abs() <= 0.01, "{b:?}");
        assert!((b.height - 0.75 * PLOT_HEIGHT).abs() <= 0.005, "{b:?}");
    }

    #[test]
    fn bar_all_zero_values_render_flat_bars_on_a_sane_axis() {
        let data = rs(&["k", "v"], vec![vec![text("a"), Value::Int(0)], vec![text("b"), Value::Float(0.0)]]);
        let svg = render_svg(&bar("k", &["v"], None), &data);
        assert_eq!(texts_with_class(&svg, "tick"), ["0", "1", "2", "3", "4"]);
        let bars = parse_bars(&svg);
        assert_eq!(bars.len(), 2);
        assert!(bars.iter().all(|b| b.height == 0.0), "{bars:?}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn bar_null_values_keep_their_slot_without_a_rect() {
        let data = rs(
            &["k", "a", "b"],
            vec![vec![text("x"), Value::Null, Value::Int(2)], vec![Value::Null, Value::Int(1), Value::Null]],
        );
        let svg = render_svg(&bar("k", &["a", "b"], None), &data);
        let bars = parse_bars(&svg);
        assert_eq!(bars.len(), 2);
        assert_eq!((bars[0].series.as_str(), bars[0].label.as_str()), ("b", "x"));
        assert_eq!((bars[1].series.as_str(), bars[1].label.as_str()), ("a", "(null)"));
        // Series "b" is still in the second slot of its group, series "a" in the first.
        let group_width = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT - LEGEND_WIDTH) / 2.0;
        let bar_width = group_width * 0.8 / 2.0;
        assert!((bars[0].x - (MARGIN_LEFT + group_width * 0.1 + bar_width)).abs() <= 0.01);
        assert!((bars[1].x - (MARGIN_LEFT + group_width * 1.1)).abs() <= 0.01);
    }

    #[test]
    fn bar_chart_names_its_axes() {
        let rs = ResultSet {
            columns: vec!["region".into(), "revenue".into()],
            rows: vec![vec![text("North"), Value::Int(3)]],
            truncated: false,
            provenance: None,
        };
        let r = render(&bar("region", &["revenue"], None), &rs, 100).expect("render");
        let svg = body(&r);
        let doc = roxmltree::Document::parse(svg).expect("svg");
        let titles: Vec<&str> =
            doc.descendants().filter(|n| n.attribute("class") == Some("axis-title")).filter_map(|n| n.text()).collect();
        assert_eq!(titles, ["region", "revenue"]);
    }

    #[test]
    fn bar_legend_appears_only_with_several_series() {
        let one = render_svg(&bar("region", &["2023"], None), &sales());
        assert!(texts_with_class(&one, "legend").is_empty());
        let two = render_svg(&bar("region", &["2023", "2024"], None), &sales());
        assert_eq!(texts_with_class(&two, "legend"), ["2023", "2024"]);
    }

    #[test]
    fn bar_chart_has_the_required_root_title_and_axes() {
        let svg = render_svg(&bar("region", &["2023"], Some("Sales & <co>")), &sales());
        assert!(svg.starts_with(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 800 450\" width=\"800\" \
             height=\"450\" role=\"img\">"
        ));
        let doc = roxmltree::Document::parse(&svg).expect("parses");
        let root = doc.root_element();
        let title = root.children().find(|n| n.has_tag_name("title")).expect("root has a <title>");
        assert_eq!(title.text(), Some("Sales & <co>"));
        assert_eq!(texts_with_class(&svg, "chart-title"), ["Sales & <co>"]);
        assert_eq!(doc.descendants().filter(|n| n.attribute("class") == Some("axis")).count(), 2);

        let untitled = render_svg(&bar("region", &["2023", "2024"], None), &sales());
        assert!(untitled.contains("<title>Bar chart of 2023, 2024 by region</title>"));
        assert!(texts_with_class(&untitled, "chart-title").is_empty());
    }

    #[test]
    fn bar_chart_notes_a_truncated_result() {
        let mut data = sales();
        data.truncated = true;
        let r = render(&bar("region", &["2023"], None), &data, 100).expect("renders");
        assert!(r.truncated);
        assert_eq!(r.rows_rendered, 3);
        assert_eq!(texts_with_class(body(&r), "note").len(), 1);
        let r = render(&bar("region", &["2023"], None), &sales(), 100).expect("renders");
        assert!(!r.truncated);
        assert!(texts_with_class(body(&r), "note").is_empty());
    }

    #[test]
    fn bar_chart_is_deterministic() {
        let spec = bar("region", &["2023", "2024"], Some("Sales"));
        let a = render(&spec, &sales(), 100).expect("renders");
        let b = render(&spec, &sales(), 100).expect("renders");
        assert_eq!(a, b);
        assert_eq!(a.body, b.body);
    }

    #[test]
    fn x_labels_are_truncated_with_an_ellipsis() {
        let long = "abcdefghijklmnopqrstuvwxyz0123456789";
        let data = rs(&["k", "v"], vec![vec![text(long), Value::Int(1)]]);
        let svg = render_svg(&bar("k", &["v"], None), &data);
        let labels = texts_with_class(&svg, "x-label");
        assert_eq!(labels, ["abcdefghijklmnopqrstuvw…"]);
        assert_eq!(labels[0].chars().count(), 24);
        // The bar keeps the whole label.
        assert_eq!(parse_bars(&svg)[0].label, long);
    }

    #[test]
    fn x_labels_accept_numbers_and_null() {
        let data = rs(
            &["k", "v"],
            vec![
                vec![Value::Int(2024), Value::Int(1)],
                vec![Value::Float(2.5), Value::Int(1)],
                vec![Value::Null, Value::Int(1)],
            ],
        );
        let svg = render_svg(&bar("k", &["v"], None), &data);
        assert_eq!(texts_with_class(&svg, "x-label"), ["2024", "2.5", "(null)"]);
    }

    #[test]
    fn many_groups_render_with_thinned_rotated_labels() {
        let data = rs(
            &["k", "v"],
            (0..MAX_BAR_GROUPS as i64).map(|i| vec![text(&format!("item {i}")), Value::Int(i)]).collect(),
        );
        let svg = render_svg(&bar("k", &["v"], None), &data);
        assert_eq!(parse_bars(&svg).len(), MAX_BAR_GROUPS);
        let labels = texts_with_class(&svg, "x-label");
        assert!(!labels.is_empty() && labels.len() < MAX_BAR_GROUPS / 2, "{}", labels.len());
        assert!(svg.contains("rotate(-45 "));
    }

    #[test]
    fn empty_result_renders_an_empty_chart() {
        let data = rs(&["k", "v"], vec![]);
        let r = render(&bar("k", &["v"], None), &data, 10).expect("renders");
        assert_eq!(r.rows_rendered, 0);
        assert!(parse_bars(body(&r)).is_empty());
        assert_eq!(texts_with_class(body(&r), "empty"), ["No rows"]);
    }

    // ---- bar charts: refusals ---------------------------------------------------------------

    #[test]
    fn bar_refuses_unknown_column_naming_available_ones() {
        let available: Vec<String> = ["region", "2023", "2024"].map(String::from).to_vec();
        let err = render(&bar("regoin", &["2023"], None), &sales(), 100).expect_err("refused");
        assert_eq!(err, RenderError::UnknownColumn { column: "regoin".into(), available: available.clone() });
        let err = render(&bar("region", &["2023", "2025"], None), &sales(), 100).expect_err("refused");
        assert_eq!(err, RenderError::UnknownColumn { column: "2025".into(), available });
        let msg = err.to_string();
        assert!(msg.contains("2025") && msg.contains("region"), "{msg}");
    }

    #[test]
    fn bar_refuses_non_numeric_values_naming_column_and_row() {
        let data = rs(
            &["k", "v", "w"],
            vec![vec![text("a"), Value::Int(1), Value::Int(1)], vec![text("b"), Value::Int(2), text("3")]],
        );
        let err = render(&bar("k", &["v", "w"], None), &data, 100).expect_err("refused");
        assert_eq!(err, RenderError::NotNumeric { column: "w".into(), row: 1 });
        let msg = err.to_string();
        assert!(msg.contains("\"w\"") && msg.contains("row index 1"), "{msg}");

        for bad in [Value::Bytes(vec![1]), Value::Float(f64::NAN), Value::Float(f64::INFINITY)] {
            let data = rs(&["k", "v"], vec![vec![text("a"), bad]]);
            assert_eq!(
                render(&bar("k", &["v"], None), &data, 100),
                Err(RenderError::NotNumeric { column: "v".into(), row: 0 })
            );
        }
    }

    #[test]
    fn bar_refuses_values_too_large_to_chart() {
        let data = rs(&["k", "v"], vec![vec![text("a"), Value::Float(f64::MAX)]]);
        assert_eq!(
            render(&bar("k", &["v"], None), &data, 100),
            Err(RenderError::OutOfRange { column: "v".into(), row: 0 })
        );
        // Large but chartable values still render, with finite geometry.
        let data = rs(&["k", "v"], vec![vec![text("a"), Value::Float(9e299)]]);
        let svg = render_svg(&bar("k", &["v"], None), &data);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert_eq!(texts_with_class(&svg, "tick")[4], "1e300");
    }

    #[test]
    fn bar_refuses_too_many_groups_or_series() {
        let many = rs(&["k", "v"], (0..=MAX_BAR_GROUPS as i64).map(|i| vec![Value::Int(i), Value::Int(i)]).collect());
        assert_eq!(
            render(&bar("k", &["v"], None), &many, 10_000),
            Err(RenderError::TooManyBars { bars: MAX_BAR_GROUPS + 1, max: MAX_BAR_GROUPS })
        );
        // The agent's row policy lowers the cap: a chart carries every row's values.
        assert_eq!(
            render(&bar("region", &["2023"], None), &sales(), 2),
            Err(RenderError::TooManyBars { bars: 3, max: 2 })
        );

        let columns: Vec<String> = (0..=MAX_SERIES).map(|i| format!("s{i}")).collect();
        let mut all = vec!["k".to_owned()];
        all.extend(columns.iter().cloned());
        let wide = ResultSet { columns: all, rows: vec![], truncated: false, provenance: None };
        let spec = RenderSpec::Bar(BarSpec { x: "k".into(), y: columns, title: None, stacked: false });
        assert_eq!(
            render(&spec, &wide, 10),
            Err(RenderError::TooManySeries { series: MAX_SERIES + 1, max: MAX_SERIES })
        );
        assert_eq!(render(&bar("k", &[], None), &wide, 10), Err(RenderError::NoSeries));
    }

    // ---- bar charts: safety -----------------------------------------------------------------

    #[test]
    fn svg_escapes_labels_so_no_markup_is_injected() {
        let evil = "<script>alert(1)</script>";
        let data = rs(
            &["k", "\"><script>x</script>"],
            vec![vec![text(evil), Value::Int(1)], vec![text("a\"b'c&d"), Value::Int(2)]],
        );
        let spec = bar("k", &["\"><script>x</script>", "\"><script>x</script>"], Some(evil));
        let svg = render_svg(&spec, &data);
        assert!(!svg.to_ascii_lowercase().contains("<script"), "{svg}");
        let doc = roxmltree::Document::parse(&svg).expect("parses");
        assert!(doc.descendants().all(|n| !n.has_tag_name("script")));
        // The label survives only as text (cut to 24 characters under the axis) and as
        // attribute values (whole).
        assert_eq!(texts_with_class(&svg, "x-label"), ["<script>alert(1)</scrip…", "a\"b'c&d"]);
        assert_eq!(texts_with_class(&svg, "chart-title"), [evil]);
        let bars = parse_bars(&svg);
        assert_eq!(bars[0].label, evil);
        assert_eq!(bars[0].series, "\"><script>x</script>");
        assert_eq!(bars[2].label, "a\"b'c&d");
    }

    #[test]
    fn svg_stays_well_formed_with_control_characters() {
        let data = rs(&["k", "v"], vec![vec![text("a\u{0}b\u{1b}c\u{FFFF}"), Value::Int(1)]]);
        let svg = render_svg(&bar("k", &["v"], Some("t\u{7}")), &data);
        assert_eq!(parse_bars(&svg)[0].label, "a\u{FFFD}b\u{FFFD}c\u{FFFD}");
    }

    #[test]
    fn svg_has_no_scripts_handlers_or_external_references() {
        let svg = render_svg(&bar("region", &["2023", "2024"], Some("t")), &sales());
        let doc = roxmltree::Document::parse(&svg).expect("parses");
        let allowed = ["svg", "title", "g", "rect", "line", "text"];
        for n in doc.descendants().filter(|n| n.is_element()) {
            assert!(allowed.contains(&n.tag_name().name()), "{:?}", n.tag_name());
            for a in n.attributes() {
                let name = a.name().to_ascii_lowercase();
                assert!(!name.starts_with("on"), "{name}");
                assert!(!name.contains("href") && name != "style" && name != "src", "{name}");
                assert!(!a.value().contains("url("), "{}", a.value());
            }
        }
        assert_eq!(svg.matches("http://").count(), 1, "only the SVG namespace");
    }

    // ---- axis and number formatting ---------------------------------------------------------

    fn tick_labels(min: f64, max: f64) -> Vec<String> {
        let axis = Axis::nice(min, max);
        axis.ticks().map(|v| axis.label(v)).collect()
    }

    #[test]
    fn axis_ticks_are_nice_and_cover_the_values() {
        assert_eq!(tick_labels(0.0, 40.0), ["0", "10", "20", "30", "40"]);
        assert_eq!(tick_labels(0.0, 41.0), ["0", "20", "40", "60", "80"]);
        assert_eq!(tick_labels(0.0, 7.0), ["0", "2", "4", "6", "8"]);
        assert_eq!(tick_labels(0.0, 9.0), ["0", "2.5", "5", "7.5", "10"]);
        assert_eq!(tick_labels(0.0, 0.9), ["0", "0.25", "0.5", "0.75", "1"]);
        assert_eq!(tick_labels(0.0, 3_456_789.0), ["0", "1,000,000", "2,000,000", "3,000,000", "4,000,000"]);
        assert_eq!(tick_labels(-5.0, 5.0), ["-5", "-2.5", "0", "2.5", "5"]);
        assert_eq!(tick_labels(0.0, 0.009), ["0", "2.5e-3", "5e-3", "7.5e-3", "1e-2"]);
        assert_eq!(tick_labels(0.0, 3e12), ["0", "1e12", "2e12", "3e12", "4e12"]);
        for (lo, hi) in [(0.0, 1.0), (-3.0, 7.0), (-123.4, 0.5), (0.0, 99_999.0), (-1e-5, 2e-5)] {
            let axis = Axis::nice(lo, hi);
            assert!(axis.lo <= lo && axis.hi >= hi, "{lo}..{hi}: {axis:?}");
            assert!(axis.ticks().any(|v| v == 0.0));
            assert_eq!(axis.ticks().count(), 5);
        }
    }

    #[test]
    fn coordinates_have_two_decimals_and_no_negative_zero() {
        assert_eq!(Px(1.0 / 3.0).to_string(), "0.33");
        assert_eq!(Px(-0.001).to_string(), "0.00");
        assert_eq!(Px(-0.0).to_string(), "0.00");
        assert_eq!(Px(12.345_6).to_string(), "12.35");
    }
}

#[cfg(test)]
mod kinds_tests;
