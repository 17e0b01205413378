//! Line, area and scatter charts over a numeric or temporal x axis, downsampled so that a
//! result of any size draws a bounded number of points.
//!
//! Rows are fed one at a time into an [`XyChart`], which keeps per series at most a fixed
//! number of cells (min and max per x interval for lines, one point per x–y cell for
//! scatter plots) and doubles the cell width whenever there are too many: memory stays
//! bounded whatever the row count, and the result does not need to be sorted. A line keeps,
//! per cell, its first, lowest, highest and last point, so peaks and dips survive.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use outpost_protocol::{EgressAction, EgressDecision, XySpec};

use super::axis::MAX_INTERVALS;
use super::format::format_number;
use super::xaxis::{x_coordinate, XAxis, XKind, DATE_LINE};
use super::{
    column_index, horizontal_labels_bottom, svg_axis_titles, svg_close, svg_empty, svg_legend, svg_open, svg_x_label,
    svg_y_ticks, truncation_note, x_title_baseline, Axis, Esc, Px, RenderError, Rendered, ATTR_CHARS, EDGE,
    LEGEND_WIDTH, MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MAX_CHART_MAGNITUDE, MAX_SERIES, PALETTE, PLOT_HEIGHT, WIDTH,
    X_LABEL_BASELINE,
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

/// in the line: its `first` is `(x, NaN)`.
#[derive(Debug, Clone, Copy)]
struct Cell {
    first: (f64, f64),
    last: (f64, f64),
    min: (f64, f64),
    max: (f64, f64),
    valued: bool,
}

impl Cell {
    fn new(p: (f64, f64)) -> Self {
        Self { first: p, last: p, min: p, max: p, valued: !p.1.is_nan() }
    }

    fn merge(&mut self, o: &Cell) {
        // A gap inside an interval that has values is too narrow to draw.
        if !o.valued {
            return;
        }
        if !self.valued {
            *self = *o;
            return;
        }
        if o.first.0 < self.first.0 {
            self.first = o.first;
        }
        if o.last.0 >= self.last.0 {
            self.last = o.last;
        }
        if o.min.1 < self.min.1 {
            self.min = o.min;
        }
        if o.max.1 > self.max.1 {
            self.max = o.max;
        }
    }
}

/// A bounded summary of one series' points.
#[derive(Debug)]
struct Reducer {
    /// Scatter: cells over x and y; line: cells over x only.
    grid: bool,
    /// Most cells kept.
    max_cells: usize,
    /// Points kept as they are until there are more than `max_points`.
    raw: Vec<(f64, f64)>,
    max_points: usize,
    /// Cell size in x and y once bucketing started (0 before).
    width: (f64, f64),
    cells: BTreeMap<(i64, i64), Cell>,
    /// Points pushed.
    seen: u64,
}

impl Reducer {
    fn new(grid: bool, max_points: usize) -> Self {
        let max_cells = if grid { max_points } else { (max_points / 4).max(1) };
        Self { grid, max_cells, raw: Vec::new(), max_points, width: (0.0, 0.0), cells: BTreeMap::new(), seen: 0 }
    }

    /// A NULL value at `x`: a line breaks there.
    fn push_gap(&mut self, x: f64) {
        self.push((x, f64::NAN));
    }

    /// A point; `(x, NaN)` is a gap.
    fn push(&mut self, p: (f64, f64)) {
        if !p.1.is_nan() {
            self.seen += 1;
        }
        if self.width.0 == 0.0 {
            self.raw.push(p);
            if self.raw.len() > self.max_points {
                self.start_cells();
            }
            return;
        }
        self.insert(p);
        if self.cells.len() > self.max_cells {
            self.compact();
        }
    }

    fn start_cells(&mut self) {
        let (mut xl, mut xh, mut yl, mut yh) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in &self.raw {
            (xl, xh, yl, yh) = (xl.min(x), xh.max(x), yl.min(y), yh.max(y));
        }
        let per_axis = if self.grid { (self.max_cells as f64).sqrt() } else { self.max_cells as f64 };
        let size = |span: f64| if span > 0.0 && (span / per_axis).is_normal() { span / per_axis } else { 1.0 };
        self.width = (size(xh - xl), size(yh - yl));
        for p in std::mem::take(&mut self.raw) {
            self.insert(p);
        }
        self.compact();
    }

    fn key(&self, (x, y): (f64, f64)) -> (i64, i64) {
        // `as` saturates: a far outlier shares the edge cell until the cells widen.
        let kx = (x / self.width.0).floor() as i64;
        let ky = if self.grid { (y / self.width.1).floor() as i64 } else { 0 };
        (kx, ky)
    }

    fn insert(&mut self, p: (f64, f64)) {
        let key = self.key(p);
        match self.cells.get_mut(&key) {
            Some(c) => c.merge(&Cell::new(p)),
            None => {
                self.cells.insert(key, Cell::new(p));
            }
        }
    }

    /// Doubles the cell size until at most `max_cells` remain. With cells anchored at 0,
    /// a cell of the double size is exactly two old ones.
    fn compact(&mut self) {
        while self.cells.len() > self.max_cells && self.width.0.is_finite() {
            self.width.0 *= 2.0;
            if self.grid {
                self.width.1 *= 2.0;
            }
            let mut merged: BTreeMap<(i64, i64), Cell> = BTreeMap::new();
            for ((kx, ky), c) in std::mem::take(&mut self.cells) {
                let key = (kx.div_euclid(2), if self.grid { ky.div_euclid(2) } else { 0 });
                match merged.get_mut(&key) {
                    Some(m) => m.merge(&c),
                    None => {
                        merged.insert(key, c);
                    }
                }
            }
            self.cells = merged;
        }
    }

    /// The points to draw: in x order for lines (`(x, NaN)` where a NULL breaks the line),
    /// in cell order for scatter plots.
    fn points(&self) -> Vec<(f64, f64)> {
        if self.width.0 == 0.0 {
            let mut pts = self.raw.clone();
            if !self.grid {
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            return pts;
        }
        let mut out = Vec::with_capacity(self.cells.len() * 4);
        for c in self.cells.values() {
            if self.grid || !c.valued {
                out.push(c.first);
                continue;
            }
            let mut four = [c.first, c.min, c.max, c.last];
            four.sort_by(|a, b| a.0.total_cmp(&b.0));
            for p in four {
                if out.last() != Some(&p) {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// A line, area or scatter chart being built from rows.
#[derive(Debug)]
pub struct XyChart {
    kind: XyKind,
    x: String,
    series: Vec<String>,
    title: Option<String>,
    xi: usize,
    yis: Vec<usize>,
    xkind: Option<XKind>,
    reducers: Vec<Reducer>,
    rows: usize,
    /// Most points over all series.
    budget: usize,
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
        let per_series = (budget / spec.y.len()).max(MIN_SERIES_POINTS);
        let reducers = spec.y.iter().map(|_| Reducer::new(kind == XyKind::Scatter, per_series)).collect();
        Ok(Self {
            kind,
            x: spec.x.clone(),
            series: spec.y.clone(),
            title: spec.title.clone(),
            xi,
            yis,
            xkind: None,
            reducers,
            rows: 0,
            budget,
        })
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
        for (s, &yi) in self.yis.iter().enumerate() {
            let v = &row[yi];
            if matches!(v, Value::Null) {
                // A NULL breaks a line (a gap), not bridged by a straight segment.
                if self.kind != XyKind::Scatter {
                    self.reducers[s].push_gap(x);
                }
                continue;
            }
            let y = v
                .as_f64()
                .filter(|y| y.is_finite())
                .ok_or_else(|| RenderError::NotNumeric { column: self.series[s].clone(), row: index })?;
            if y.abs() > MAX_CHART_MAGNITUDE {
                return Err(RenderError::OutOfRange { column: self.series[s].clone(), row: index });
            }
            self.reducers[s].push((x, y));
        }
        Ok(())
    }

    /// Draws the chart; `truncated` says the query stopped at the row cap.
    pub fn finish(self, truncated: bool) -> Result<Rendered, RenderError> {
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
        let (mut xl, mut xh, mut yl, mut yh) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        let mut any = false;
        for &(x, y) in points.iter().flatten().filter(|p| !p.1.is_nan()) {
            any = true;
            (xl, xh, yl, yh) = (xl.min(x), xh.max(x), yl.min(y), yh.max(y));
        }
        if !any {
            (xl, xh, yl, yh) = (0.0, 1.0, 0.0, 1.0);
        }
        let xkind = self.xkind.unwrap_or(XKind::Number);
        let xaxis = XAxis::new(xkind, xl, xh);
        let yaxis = if self.kind == XyKind::Area { Axis::nice(yl, yh) } else { Axis::span(yl, yh, MAX_INTERVALS) };

        let legend = self.series.len() > 1;
        let left = MARGIN_LEFT;
        let right = WIDTH - MARGIN_RIGHT - if legend { LEGEND_WIDTH } else { 0.0 };
        let (top, bottom) = (MARGIN_TOP, MARGIN_TOP + PLOT_HEIGHT);
        let width = right - left;
        let x_of = |x: f64| left + (x - xaxis.lo) / (xaxis.hi - xaxis.lo) * width;
        let y_of = |y: f64| top + (yaxis.hi - y) / (yaxis.hi - yaxis.lo) * PLOT_HEIGHT;

        let mut o = String::with_capacity(4096 + points.iter().map(Vec::len).sum::<usize>() * 16);
        let description = match &self.title {
            Some(t) => t.clone(),
            None => format!("{} of {} by {}", self.kind.name(), self.series.join(", "), self.x),
        };
        svg_open(&mut o, &description, self.title.as_deref(), truncation_note(truncated, self.rows).as_deref())?;
        // Without a value there is nothing to scale: no ticks (a 0–1 axis would be made up).
        let mut labels_bottom = horizontal_labels_bottom(bottom);
        if any {
            svg_y_ticks(&mut o, &yaxis, left, right, y_of)?;
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
             data-left=\"{}\" data-right=\"{}\" data-top=\"{}\" data-bottom=\"{}\">",
            xaxis.lo,
            xaxis.hi,
            yaxis.lo,
            yaxis.hi,
            Px(left),
            Px(right),
            Px(top),
            Px(bottom)
        )?;
        for (s, pts) in points.iter().enumerate() {
            let colour = PALETTE[s % PALETTE.len()];
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
                     stroke=\"{colour}\" stroke-width=\"1.5\" stroke-linejoin=\"round\"/>"
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
                    Esc(&format_number(&y.to_string(), None))
                )?;
            }
        }
        o.push_str("</g>\n");
        if !any {
            svg_empty(&mut o, left, width)?;
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
        let y_title = if self.series.len() == 1 { self.series[0].as_str() } else { "value" };
        svg_axis_titles(&mut o, &x_title, y_title, left, width, x_title_baseline(labels_bottom))?;
        if legend {
            let x = right + 16.0;
            svg_legend(&mut o, x, top, WIDTH - EDGE - x, self.series.iter().map(|s| (s.as_str(), String::new())))?;
        }
        svg_close(&mut o);
        Ok(o)
    }
}

/// Renders a whole result set as an x–y chart.
pub fn render_xy(kind: XyKind, spec: &XySpec, rs: &ResultSet, max_points: usize) -> Result<Rendered, RenderError> {
    let mut chart = XyChart::new(kind, spec, &rs.columns, max_points)?;
    for (i, row) in rs.rows.iter().enumerate() {
        chart.push(row, i)?;
    }
    chart.finish(rs.truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_series_is_kept_exactly_in_x_order() {
        let mut r = Reducer::new(false, 100);
        for (x, y) in [(3.0, 1.0), (1.0, 5.0), (2.0, -1.0)] {
            r.push((x, y));
        }
        assert_eq!(r.points(), [(1.0, 5.0), (2.0, -1.0), (3.0, 1.0)]);
    }

    #[test]
    fn a_long_series_is_bounded_and_keeps_its_extremes() {
        let mut r = Reducer::new(false, 400);
        let n = 1_000_000;
        for i in 0..n {
            let x = f64::from(i);
            // A slow wave with one spike up and one spike down.
            let y = match i {
                123_457 => 1000.0,
                765_431 => -1000.0,
                _ => (x / 10_000.0).sin(),
            };
            r.push((x, y));
        }
        let pts = r.points();
        assert!(pts.len() <= 400, "{}", pts.len());
        assert!(pts.len() >= 100, "{}", pts.len());
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0), "x order");
        assert!(pts.contains(&(123_457.0, 1000.0)) && pts.contains(&(765_431.0, -1000.0)));
        assert_eq!(pts.first().map(|p| p.0), Some(0.0));
        assert_eq!(pts.last().map(|p| p.0), Some(f64::from(n - 1)));
    }

    #[test]
    fn unsorted_input_gives_the_same_cells_as_sorted_input() {
        let mut sorted = Reducer::new(false, 40);
        let mut shuffled = Reducer::new(false, 40);
        let pts: Vec<(f64, f64)> = (0..10_000).map(|i| (f64::from(i), f64::from(i % 97))).collect();
        for p in &pts {
            sorted.push(*p);
        }
        // A deterministic permutation (7919 is prime to 10 000).
        for i in 0..10_000usize {
            shuffled.push(pts[(i * 7919) % 10_000]);
        }
        let (a, b) = (sorted.points(), shuffled.points());
        assert!(a.len() <= 40 && b.len() <= 40);
        // Each cell's min and max are found whatever the order.
        let ys = |v: &[(f64, f64)]| v.iter().map(|p| p.1).fold((f64::MAX, f64::MIN), |(l, h), y| (l.min(y), h.max(y)));
        assert_eq!(ys(&a), (0.0, 96.0));
        assert_eq!(ys(&b), (0.0, 96.0));
    }

    #[test]
    fn a_scatter_grid_is_bounded() {
        let mut r = Reducer::new(true, 500);
        for i in 0..200_000u32 {
            let x = f64::from(i % 1000);
            let y = f64::from((i * 31) % 777);
            r.push((x, y));
        }
        let pts = r.points();
        assert!(pts.len() <= 500 && pts.len() > 50, "{}", pts.len());
    }
}
