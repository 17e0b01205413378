//! Line, area and scatter charts over a numeric or temporal x axis, downsampled so that a
//! result of any size draws a bounded number of points.
//!
//! Rows are fed one at a time into an [`XyChart`], which keeps each series in a bounded
//! summary ([`super::downsample`]): memory stays bounded whatever the row count, and the
//! result does not need to be sorted. The series are the `y` columns, or (long form) the
//! distinct values of a `series` column, at most [`MAX_SERIES`], which share the point
//! budget as they appear and are drawn in sorted order.

use std::collections::HashMap;

use super::downsample::Reducer;
use std::fmt::{self, Write as _};

use outpost_protocol::{EgressAction, EgressDecision, XySpec};

use super::axis::MAX_INTERVALS;
use super::format::ValueFormat;
use super::series_order::{sorted, SeriesKey};
use super::xaxis::{x_coordinate, XAxis, XKind, DATE_LINE};
use super::{
    column_index, horizontal_labels_bottom, plot_left, right_axis_room, svg_axis_titles, svg_close, svg_empty,
    svg_legend, svg_open, svg_right_axis, svg_right_ticks, svg_x_label, svg_y_ticks, truncation_note, value_text,
    x_title_baseline, Axis, Esc, Px, RenderError, Rendered, ATTR_CHARS, EDGE, LEGEND_WIDTH, MARGIN_LEFT, MARGIN_RIGHT,
    MARGIN_TOP, MAX_CHART_MAGNITUDE, MAX_SERIES, PALETTE, PLOT_HEIGHT_FLAT, WIDTH, X_LABEL_BASELINE,
};
use crate::resultset::{ResultSet, Value};

/// Points drawn over all series when neither the job nor the policy asks for fewer.
pub const DEFAULT_MAX_POINTS: usize = 4000;

/// Fewest points a series is given, whatever the budget.
const MIN_SERIES_POINTS: usize = 8;

/// Which chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XyKind {
    /// Connected points.
    Line,
    /// A line filled down to zero.
    Area,
    /// Unconnected points.
    Scatter,
}

impl XyKind {
    fn name(self) -> &'static str {
        match self {
            XyKind::Line => "Line chart",
            XyKind::Area => "Area chart",
            XyKind::Scatter => "Scatter plot",
        }
    }
}

/// A line, area or scatter chart being built from rows.
#[derive(Debug)]
pub struct XyChart {
    kind: XyKind,
    x: String,
    /// Series names: the `y` columns, or the `series` column's values as they appear.
    series: Vec<String>,
    title: Option<String>,
    xi: usize,
    yis: Vec<usize>,
    /// Long form: the `series` column, and each series' value (key and legend order).
    from_column: Option<FromColumn>,
    xkind: Option<XKind>,
    reducers: Vec<Reducer>,
    rows: usize,
    /// Most points over all series.
    budget: usize,
    format: ValueFormat,
    /// The `y2` columns (right axis): name, column index and summary of each.
    right: Vec<(String, usize, Reducer)>,
    /// Once finished: how many of the last `series` are drawn against the right axis.
    n_right: usize,
}

/// Series from a column's values (long form).
#[derive(Debug)]
struct FromColumn {
    name: String,
    index: usize,
    /// The `y` column.
    y: String,
    /// Series of each value (NULL apart from the text "(null)").
    of: HashMap<Option<String>, usize>,
    keys: Vec<SeriesKey>,
}

impl XyChart {
    /// Checks the spec against the result's columns; `max_points` is the policy's budget
    /// (the job may ask for fewer; without asking it gets [`DEFAULT_MAX_POINTS`]).
    pub fn new(kind: XyKind, spec: &XySpec, columns: &[String], max_points: usize) -> Result<Self, RenderError> {
        if spec.y.is_empty() {
            return Err(RenderError::NoSeries);
        }
        let xi = column_index(columns, &spec.x)?;
        let yis = spec.y.iter().map(|c| column_index(columns, c)).collect::<Result<Vec<_>, _>>()?;
        if spec.y.len() > MAX_SERIES {
            return Err(RenderError::TooManySeries { series: spec.y.len(), max: MAX_SERIES });
        }
        // The job's ask (default DEFAULT_MAX_POINTS), never more than the policy's budget.
        let budget = spec.max_points.map_or(DEFAULT_MAX_POINTS, |m| m as usize).min(max_points);
        let format = ValueFormat::new(spec.format, spec.unit.as_deref(), spec.decimals);
        if spec.y.len() + spec.y2.len() > MAX_SERIES {
            return Err(RenderError::TooManySeries { series: spec.y.len() + spec.y2.len(), max: MAX_SERIES });
        }
        let grid = kind == XyKind::Scatter;
        let per_series = (budget / (spec.y.len() + spec.y2.len())).max(MIN_SERIES_POINTS);
        let right = spec
            .y2
            .iter()
            .map(|c| Ok((c.clone(), column_index(columns, c)?, Reducer::new(grid, per_series))))
            .collect::<Result<Vec<_>, RenderError>>()?;
        let mut chart = Self {
            kind,
            x: spec.x.clone(),
            series: spec.y.clone(),
            title: spec.title.clone(),
            xi,
            yis,
            from_column: None,
            xkind: None,
            reducers: Vec::new(),
            rows: 0,
            budget,
            format,
            right,
            n_right: 0,
        };
        if let Some(column) = &spec.series {
            if spec.y.len() != 1 {
                return Err(RenderError::SeriesWithSeveralY { y: spec.y.len() });
            }
            let index = column_index(columns, column)?;
            chart.series.clear();
            chart.from_column = Some(FromColumn {
                name: column.clone(),
                index,
                y: spec.y[0].clone(),
                of: HashMap::new(),
                keys: Vec::new(),
            });
            return Ok(chart);
        }
        chart.reducers = spec.y.iter().map(|_| Reducer::new(grid, per_series)).collect();
        Ok(chart)
    }

    /// Long form: the series of this row's `series` value, added (and the budget shared
    /// anew) when it is new; more than [`MAX_SERIES`] values is refused.
    fn series_of(&mut self, row: &[Value]) -> Result<usize, RenderError> {
        let Some(from) = self.from_column.as_mut() else { return Ok(0) };
        let v = &row[from.index];
        let key = (!matches!(v, Value::Null)).then(|| value_text(v));
        if let Some(&s) = from.of.get(&key) {
            return Ok(s);
        }
        // The right axis's columns take their colours first.
        let max = MAX_SERIES - self.right.len();
        if from.of.len() == max {
            return Err(RenderError::TooManySeriesValues { column: from.name.clone(), max });
        }
        let s = from.of.len();
        from.of.insert(key, s);
        from.keys.push(SeriesKey::of(v));
        self.series.push(value_text(v));
        let per_series = (self.budget / (s + 1 + self.right.len())).max(MIN_SERIES_POINTS);
        for r in self.reducers.iter_mut().chain(self.right.iter_mut().map(|r| &mut r.2)) {
            r.shrink(per_series);
        }
        self.reducers.push(Reducer::new(self.kind == XyKind::Scatter, per_series));
        Ok(s)
    }

    /// Adds one row (`index` counts from 0, for error messages).
    pub fn push(&mut self, row: &[Value], index: usize) -> Result<(), RenderError> {
        self.rows += 1;
        let xv = &row[self.xi];
        if matches!(xv, Value::Null) {
            return Ok(());
        }
        let wrong = || RenderError::NotAxis { column: self.x.clone(), row: index, found: xv.type_name() };
        let (kind, x) = x_coordinate(xv).ok_or_else(wrong)?;
        match self.xkind {
            None => self.xkind = Some(kind),
            Some(k) if k != kind => return Err(wrong()),
            Some(_) => {}
        }
        if !x.is_finite() {
            return Err(RenderError::NotNumeric { column: self.x.clone(), row: index });
        }
        if x.abs() > MAX_CHART_MAGNITUDE {
            return Err(RenderError::OutOfRange { column: self.x.clone(), row: index });
        }
        let long = self.series_of(row)?;
        let scatter = self.kind == XyKind::Scatter;
        for (i, &yi) in self.yis.iter().enumerate() {
            let s = if self.from_column.is_some() { long } else { i };
            let name = match &self.from_column {
                Some(f) => &f.y,
                None => &self.series[i],
            };
            push_value(&mut self.reducers[s], scatter, &row[yi], x, || name.clone(), index)?;
        }
        for (column, yi, reducer) in &mut self.right {
            push_value(reducer, scatter, &row[*yi], x, || column.clone(), index)?;
        }
        Ok(())
    }

    /// Draws the chart; `truncated` says the query stopped at the row cap.
    pub fn finish(mut self, truncated: bool) -> Result<Rendered, RenderError> {
        // Series from a column are drawn (and coloured) in sorted order.
        if let Some(from) = &self.from_column {
            let order = sorted(&from.keys);
            let mut reducers: Vec<Option<Reducer>> = std::mem::take(&mut self.reducers).into_iter().map(Some).collect();
            self.reducers = order.iter().filter_map(|&s| reducers[s].take()).collect();
            self.series = order.iter().map(|&s| self.series[s].clone()).collect();
        }
        // The right axis's series come last.
        self.n_right = self.right.len();
        for (name, _, reducer) in std::mem::take(&mut self.right) {
            self.series.push(name);
            self.reducers.push(reducer);
        }
        let points: Vec<Vec<(f64, f64)>> = self.reducers.iter().map(Reducer::points).collect();
        let drawn: usize = points.iter().flatten().filter(|p| !p.1.is_nan()).count();
        let seen: u64 = self.reducers.iter().map(|r| r.seen).sum();
        let mut decisions = Vec::new();
        if (drawn as u64) < seen {
            decisions.push(EgressDecision {
                action: EgressAction::Downsampled,
                rule: "max_points".into(),
                detail: format!(
                    "{seen} points drawn as {drawn} ({}, at most {} over all series)",
                    if self.kind == XyKind::Scatter {
                        "one per cell"
                    } else {
                        "first, min, max and last per x interval"
                    },
                    self.budget
                ),
            });
        }
        let body = self.svg(&points, truncated).map_err(|e| RenderError::Encode(e.to_string()))?.into_bytes();
        Ok(Rendered {
            content_type: "image/svg+xml",
            body,
            rows_rendered: self.rows,
            truncated,
            points: drawn,
            decisions,
        })
    }

    fn svg(&self, points: &[Vec<(f64, f64)>], truncated: bool) -> Result<String, fmt::Error> {
        // The left axis's series first, then the right axis's (`y2`).
        let n_left = self.series.len() - self.n_right;
        let (lb, rb) = (bounds(&points[..n_left]), bounds(&points[n_left..]));
        let any = lb.is_some() || rb.is_some();
        let (xl, xh) = match (lb, rb) {
            (Some(l), Some(r)) => (l.0.min(r.0), l.1.max(r.1)),
            (Some(b), None) | (None, Some(b)) => (b.0, b.1),
            (None, None) => (0.0, 1.0),
        };
        let axis_of = |(_, _, yl, yh): (f64, f64, f64, f64)| {
            if self.kind == XyKind::Area {
                Axis::nice(yl, yh)
            } else {
                Axis::span(yl, yh, MAX_INTERVALS)
            }
        };
        let xkind = self.xkind.unwrap_or(XKind::Number);
        let xaxis = XAxis::new(xkind, xl, xh);
        let yaxis = axis_of(lb.or(rb).unwrap_or((0.0, 1.0, 0.0, 1.0)));
        let y2axis = rb.filter(|_| self.n_right > 0).map(axis_of);

        let legend = self.series.len() > 1 || self.from_column.is_some();
        let left = if any { plot_left(&yaxis, &self.format) } else { MARGIN_LEFT };
        let right_room = y2axis.as_ref().map_or(0.0, |a| right_axis_room(a, &self.format));
        let right = WIDTH - MARGIN_RIGHT - if legend { LEGEND_WIDTH } else { 0.0 } - right_room;
        // The x labels always lie flat: the plot takes the height they leave.
        let (top, bottom) = (MARGIN_TOP, MARGIN_TOP + PLOT_HEIGHT_FLAT);
        let width = right - left;
        let x_of = |x: f64| left + (x - xaxis.lo) / (xaxis.hi - xaxis.lo) * width;
        let map = |axis: &Axis, y: f64| top + (axis.hi - y) / (axis.hi - axis.lo) * PLOT_HEIGHT_FLAT;
        let y_of = |y: f64| map(&yaxis, y);

        let mut o = String::with_capacity(4096 + points.iter().map(Vec::len).sum::<usize>() * 16);
        let description = match (&self.title, &self.from_column) {
            (Some(t), _) => t.clone(),
            (None, Some(f)) => format!("{} of {} by {} and {}", self.kind.name(), f.y, self.x, f.name),
            (None, None) => format!("{} of {} by {}", self.kind.name(), self.series.join(", "), self.x),
        };
        svg_open(&mut o, &description, self.title.as_deref(), truncation_note(truncated, self.rows).as_deref())?;
        // Without a value there is nothing to scale: no ticks (a 0–1 axis would be made up).
        let mut labels_bottom = horizontal_labels_bottom(bottom);
        if any {
            svg_y_ticks(&mut o, &yaxis, &self.format, left, right, y_of)?;
            if let Some(a) = &y2axis {
                svg_right_ticks(&mut o, a, &self.format, right, |y| map(a, y))?;
            }
            for (v, label) in &xaxis.ticks {
                let x = Px(x_of(*v));
                writeln!(
                    o,
                    "<line class=\"x-tick\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#333333\"/>",
                    Px(bottom),
                    Px(bottom + 5.0)
                )?;
                svg_x_label(&mut o, "x-label", x_of(*v), bottom + X_LABEL_BASELINE, label)?;
            }
            // The date under the time of day: at the first tick and where the day changes.
            for (v, date) in &xaxis.dates {
                svg_x_label(&mut o, "x-date", x_of(*v), bottom + X_LABEL_BASELINE + DATE_LINE, date)?;
            }
            if !xaxis.dates.is_empty() {
                labels_bottom += DATE_LINE;
            }
        }
        // The domain of both axes, so a reader (or a test) can map coordinates back to data.
        writeln!(
            o,
            "<g class=\"plot\" data-x-min=\"{}\" data-x-max=\"{}\" data-y-min=\"{}\" data-y-max=\"{}\" \
             data-left=\"{}\" data-right=\"{}\" data-top=\"{}\" data-bottom=\"{}\"{}>",
            xaxis.lo,
            xaxis.hi,
            yaxis.lo,
            yaxis.hi,
            Px(left),
            Px(right),
            Px(top),
            Px(bottom),
            // The right axis's domain, when there is one.
            y2axis.as_ref().map_or_else(String::new, |a| format!(" data-y2-min=\"{}\" data-y2-max=\"{}\"", a.lo, a.hi))
        )?;
        for (s, pts) in points.iter().enumerate() {
            let colour = PALETTE[s % PALETTE.len()];
            let on_right = s >= n_left;
            let axis = y2axis.as_ref().filter(|_| on_right).unwrap_or(&yaxis);
            let y_of = |y: f64| map(axis, y);
            let dash = if on_right { " stroke-dasharray=\"6 3\"" } else { "" };
            let name = Esc(&super::truncate_chars(&self.series[s], ATTR_CHARS)).to_string();
            let valued = pts.iter().filter(|p| !p.1.is_nan()).count();
            if valued == 0 {
                continue;
            }
            if self.kind == XyKind::Scatter {
                writeln!(o, "<g class=\"series\" data-series=\"{name}\" data-points=\"{valued}\" fill=\"{colour}\">")?;
                for &(x, y) in pts {
                    writeln!(o, "<circle class=\"point\" cx=\"{}\" cy=\"{}\" r=\"2.5\"/>", Px(x_of(x)), Px(y_of(y)))?;
                }
                o.push_str("</g>\n");
                continue;
            }
            // A NULL breaks the line: each run of values is its own sub-path; a value alone
            // between gaps (or a one-row result) is a marker, since a path of one point
            // draws nothing.
            let runs: Vec<&[(f64, f64)]> = pts.split(|p| p.1.is_nan()).filter(|r| !r.is_empty()).collect();
            let (mut d, mut area) = (String::with_capacity(pts.len() * 16), String::new());
            let base = Px(y_of(0.0));
            for run in runs.iter().filter(|r| r.len() > 1) {
                for (i, &(x, y)) in run.iter().enumerate() {
                    let sep = if d.is_empty() { "" } else { " " };
                    write!(d, "{sep}{}{} {}", if i == 0 { "M" } else { "L" }, Px(x_of(x)), Px(y_of(y)))?;
                }
                if self.kind == XyKind::Area {
                    let sep = if area.is_empty() { "" } else { " " };
                    write!(area, "{sep}M{} {base}", Px(x_of(run[0].0)))?;
                    for &(x, y) in run.iter() {
                        write!(area, " L{} {}", Px(x_of(x)), Px(y_of(y)))?;
                    }
                    write!(area, " L{} {base} Z", Px(x_of(run[run.len() - 1].0)))?;
                }
            }
            if !area.is_empty() {
                writeln!(
                    o,
                    "<path class=\"area\" data-series=\"{name}\" d=\"{area}\" fill=\"{colour}\" \
                     fill-opacity=\"0.25\" stroke=\"none\"/>"
                )?;
            }
            if !d.is_empty() {
                writeln!(
                    o,
                    "<path class=\"series\" data-series=\"{name}\" data-points=\"{valued}\" d=\"{d}\" fill=\"none\" \
                     stroke=\"{colour}\" stroke-width=\"1.5\" stroke-linejoin=\"round\"{dash}/>"
                )?;
            }
            for run in runs.iter().filter(|r| r.len() == 1) {
                let (x, y) = run[0];
                writeln!(
                    o,
                    "<circle class=\"marker\" data-series=\"{name}\" cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{colour}\">\
                     <title>{name}: {}</title></circle>",
                    Px(x_of(x)),
                    Px(y_of(y)),
                    Esc(&self.format.value(&y.to_string(), y))
                )?;
            }
        }
        o.push_str("</g>\n");
        if !any {
            svg_empty(&mut o, left, width, bottom)?;
        }
        writeln!(
            o,
            "<line class=\"axis\" x1=\"{l}\" y1=\"{}\" x2=\"{l}\" y2=\"{b}\" stroke=\"#333333\"/>",
            Px(top),
            l = Px(left),
            b = Px(bottom)
        )?;
        writeln!(
            o,
            "<line class=\"axis\" x1=\"{}\" y1=\"{b}\" x2=\"{}\" y2=\"{b}\" stroke=\"#333333\"/>",
            Px(left),
            Px(right),
            b = Px(bottom)
        )?;
        let x_title = match xkind {
            XKind::TimestampTz => format!("{} (UTC)", super::truncate_chars(&self.x, 14)),
            _ => self.x.clone(),
        };
        let y_title = match &self.from_column {
            Some(f) => f.y.as_str(),
            None if n_left == 1 => self.series[0].as_str(),
            None => "value",
        };
        svg_axis_titles(&mut o, &x_title, y_title, (left, width, bottom), x_title_baseline(labels_bottom))?;
        if y2axis.is_some() {
            let title = if self.n_right == 1 { self.series[n_left].as_str() } else { "value (right)" };
            svg_right_axis(&mut o, right, right + right_room, bottom, title)?;
        }
        if legend {
            let x = right + right_room + 16.0;
            let entries = self
                .series
                .iter()
                .enumerate()
                .map(|(s, name)| (name.as_str(), if s >= n_left { " (right)".to_owned() } else { String::new() }));
            svg_legend(&mut o, x, top, WIDTH - EDGE - x, entries)?;
        }
        svg_close(&mut o);
        Ok(o)
    }
}

/// The extent `(x min, x max, y min, y max)` of the values of `series`, if any.
fn bounds(series: &[Vec<(f64, f64)>]) -> Option<(f64, f64, f64, f64)> {
    let mut out: Option<(f64, f64, f64, f64)> = None;
    for &(x, y) in series.iter().flatten().filter(|p| !p.1.is_nan()) {
        let (xl, xh, yl, yh) = out.unwrap_or((x, x, y, y));
        out = Some((xl.min(x), xh.max(x), yl.min(y), yh.max(y)));
    }
    out
}

/// One `y` value of a row into its series: a NULL is a gap (a line breaks there, not
/// bridged by a straight segment; a scatter plot just has no point).
fn push_value(
    reducer: &mut Reducer,
    scatter: bool,
    v: &Value,
    x: f64,
    column: impl Fn() -> String,
    index: usize,
) -> Result<(), RenderError> {
    if matches!(v, Value::Null) {
        if !scatter {
            reducer.push_gap(x);
        }
        return Ok(());
    }
    let y =
        v.as_f64().filter(|y| y.is_finite()).ok_or_else(|| RenderError::NotNumeric { column: column(), row: index })?;
    if y.abs() > MAX_CHART_MAGNITUDE {
        return Err(RenderError::OutOfRange { column: column(), row: index });
    }
    reducer.push((x, y));
    Ok(())
}

/// Renders a whole result set as an x–y chart.
pub fn render_xy(kind: XyKind, spec: &XySpec, rs: &ResultSet, max_points: usize) -> Result<Rendered, RenderError> {
    let mut chart = XyChart::new(kind, spec, &rs.columns, max_points)?;
    for (i, row) in rs.rows.iter().enumerate() {
        chart.push(row, i)?;
    }
    chart.finish(rs.truncated)
}
