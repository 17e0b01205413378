//! Grouped and stacked bar charts: one bar group per row and one series per `y` column
//! (wide form), or series from a column's values ([`super::bar_series`], long form).

use std::fmt::{self, Write as _};

use super::format::ValueFormat;
use super::measure::{fit_width, text_width};
use super::{
    column_index, horizontal_labels_bottom, plot_left, svg_axis_titles, svg_close, svg_empty, svg_legend, svg_open,
    svg_x_label, svg_y_ticks, truncate_chars, truncation_note, value_text, x_title_baseline, Axis, Esc, Px,
    RenderError, ATTR_CHARS, EDGE, LABEL_CHARS, LEGEND_WIDTH, MARGIN_RIGHT, MARGIN_TOP, MAX_BAR_GROUPS,
    MAX_CHART_MAGNITUDE, MAX_SERIES, PALETTE, PLOT_HEIGHT, PLOT_HEIGHT_FLAT, ROTATED_LABEL_SPACING, ROTATED_LABEL_TOP,
    SIN_45, WIDTH, X_TITLE_MAX,
};
use crate::resultset::{ResultSet, Value};

/// Lowest point rotated x labels may reach: the x axis title goes below them.
const MAX_ROTATED_BOTTOM: f64 = X_TITLE_MAX - 16.0;

/// One bar value: the number, and the text of the `data-value` attribute.
pub(super) struct Bar {
    pub(super) value: Option<f64>,
    pub(super) text: String,
}

impl Bar {
    /// No bar: a NULL value, or no row for this group and series.
    pub(super) fn none() -> Self {
        Bar { value: None, text: "null".to_owned() }
    }
}

/// How the series were found, which decides the legend, the y title and the description.
pub(super) enum SeriesFrom<'a> {
    /// One series per `y` column (wide form).
    Columns,
    /// One series per distinct value of a column (long form), of the one `y` column.
    Values {
        /// The `series` column.
        column: &'a str,
        /// The `y` column.
        y: &'a str,
        /// How many series were summed as "Other", if any.
        other: Option<usize>,
    },
}

pub(super) struct BarChart<'a> {
    pub(super) x: &'a str,
    /// Series names, in drawing (and legend) order.
    pub(super) series: Vec<String>,
    pub(super) from: SeriesFrom<'a>,
    pub(super) title: Option<&'a str>,
    /// One label per group.
    pub(super) labels: Vec<String>,
    /// `bars[group][series]`.
    pub(super) bars: Vec<Vec<Bar>>,
    /// Rows of the result, and whether the query returned more.
    pub(super) rows: usize,
    pub(super) truncated: bool,
    pub(super) axis: Axis,
    /// Series stacked in one bar per group (positives up from zero, negatives down).
    pub(super) stacked: bool,
    /// How values are written on the axis and in tooltips.
    pub(super) format: ValueFormat,
}

/// A chart value as a bar: NULL draws none; anything else must be a finite number no
/// larger than [`MAX_CHART_MAGNITUDE`].
pub(super) fn bar_of(v: &Value, column: &str, row: usize) -> Result<Bar, RenderError> {
    match v {
        Value::Null => Ok(Bar::none()),
        v if v.is_number() => {
            let n = v
                .as_f64()
                .filter(|n| n.is_finite())
                .ok_or_else(|| RenderError::NotNumeric { column: column.to_owned(), row })?;
            if n.abs() > MAX_CHART_MAGNITUDE {
                return Err(RenderError::OutOfRange { column: column.to_owned(), row });
            }
            Ok(Bar { value: Some(n), text: value_text(v) })
        }
        _ => Err(RenderError::NotNumeric { column: column.to_owned(), row }),
    }
}

/// The value axis for `bars`: zero and every value, or every stack's top and bottom.
/// `column` names the values when the range is too large to chart.
pub(super) fn value_axis(bars: &[Vec<Bar>], stacked: bool, column: &str) -> Result<Axis, RenderError> {
    let (mut lo, mut hi) = (0.0_f64, 0.0_f64);
    for (row, group) in bars.iter().enumerate() {
        let (mut up, mut down) = (0.0_f64, 0.0_f64);
        for n in group.iter().filter_map(|b| b.value) {
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
        }
        if lo.abs().max(hi.abs()) > MAX_CHART_MAGNITUDE || lo.is_nan() || hi.is_nan() {
            return Err(RenderError::OutOfRange { column: column.to_owned(), row });
        }
    }
    Ok(Axis::nice(lo, hi))
}

impl<'a> BarChart<'a> {
    /// The wide form: one bar group per row, one series per `y` column.
    pub(super) fn build(
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
        for (row_index, row) in rs.rows.iter().enumerate() {
            labels.push(value_text(&row[xi]));
            let group = yis
                .iter()
                .zip(series)
                .map(|(&yi, column)| bar_of(&row[yi], column, row_index))
                .collect::<Result<Vec<_>, _>>()?;
            bars.push(group);
        }
        let axis = value_axis(&bars, stacked, &series.join(" + "))?;
        Ok(Self {
            x,
            series: series.to_vec(),
            from: SeriesFrom::Columns,
            title,
            labels,
            bars,
            rows: rs.rows.len(),
            truncated: rs.truncated,
            axis,
            stacked,
            format: ValueFormat::default(),
        })
    }

    /// Bars drawn (NULL values draw none).
    pub(super) fn points(&self) -> usize {
        self.bars.iter().flatten().filter(|b| b.value.is_some()).count()
    }

    pub(super) fn svg(&self) -> Result<String, fmt::Error> {
        let groups = self.bars.len();
        let n_series = self.series.len();
        let legend = n_series > 1 || matches!(self.from, SeriesFrom::Values { .. });
        let plot_left = plot_left(&self.axis, &self.format);
        let plot_right = WIDTH - MARGIN_RIGHT - if legend { LEGEND_WIDTH } else { 0.0 };
        let plot_width = plot_right - plot_left;
        // X labels lie flat when every one fits its group, otherwise they are rotated,
        // thinned out and cut to what fits between the axis and the axis title; flat ones
        // leave the plot more height.
        let group_width = if groups > 0 { plot_width / groups as f64 } else { plot_width };
        let shown: Vec<String> = self.labels.iter().map(|l| truncate_chars(l, LABEL_CHARS)).collect();
        let widest = shown.iter().map(|l| text_width(l, 11.0)).fold(0.0, f64::max);
        let horizontal = groups == 0 || widest + 4.0 <= group_width;
        let plot_height = if horizontal { PLOT_HEIGHT_FLAT } else { PLOT_HEIGHT };
        let plot_top = MARGIN_TOP;
        let plot_bottom = MARGIN_TOP + plot_height;
        let scale = plot_height / (self.axis.hi - self.axis.lo);
        let y_of = |v: f64| plot_top + (self.axis.hi - v) * scale;
        let zero_y = y_of(0.0);

        let mut o = String::with_capacity(4096 + groups * n_series * 200);
        let (description, note) = match &self.from {
            SeriesFrom::Columns => (format!("Bar chart of {} by {}", self.series.join(", "), self.x), None),
            SeriesFrom::Values { column, y, other } => (
                format!("Bar chart of {y} by {} and {column}", self.x),
                other.map(|n| format!("The {n} smallest series of {column} are summed as Other.")),
            ),
        };
        let description = self.title.map_or(description, str::to_owned);
        let note = truncation_note(self.truncated, self.rows).or(note);
        svg_open(&mut o, &description, self.title, note.as_deref())?;
        // An empty chart has no values to scale: no ticks, only "No data".
        if groups > 0 {
            svg_y_ticks(&mut o, &self.axis, &self.format, plot_left, plot_right, y_of)?;
        }

        // Bars: one group per row, series side by side within the middle 80% of the group,
        // or stacked in one bar of that width.
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
                    Esc(&self.format.value(&bar.text, value)),
                )?;
            }
        }
        if groups == 0 {
            svg_empty(&mut o, plot_left, plot_width, plot_bottom)?;
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

        let labels_bottom = if horizontal {
            for (g, label) in shown.iter().enumerate() {
                svg_x_label(&mut o, "x-label", plot_left + (g as f64 + 0.5) * group_width, plot_bottom + 18.0, label)?;
            }
            horizontal_labels_bottom(plot_bottom)
        } else {
            let stride = ((ROTATED_LABEL_SPACING / group_width).ceil() as usize).max(1);
            let y = plot_bottom + ROTATED_LABEL_TOP;
            let mut widest = 0.0_f64;
            for (g, label) in shown.iter().enumerate().step_by(stride) {
                let cx = plot_left + (g as f64 + 0.5) * group_width;
                // Room down to the title, and left to the chart's edge.
                let room = ((MAX_ROTATED_BOTTOM - y) / SIN_45 - 11.0).min((cx - EDGE) / SIN_45);
                let label = fit_width(label, room, 11.0);
                widest = widest.max(text_width(&label, 11.0));
                let (cx, y) = (Px(cx), Px(y));
                writeln!(
                    o,
                    "<text class=\"x-label\" x=\"{cx}\" y=\"{y}\" text-anchor=\"end\" \
                     font-size=\"11\" fill=\"#444444\" transform=\"rotate(-45 {cx} {y})\">{}</text>",
                    Esc(&label)
                )?;
            }
            y + (widest + 11.0) * SIN_45
        };

        // Axis titles: the x column just below the labels, the value column (or "value" for
        // several series, which the legend names) along the y axis.
        let y_title = match self.from {
            SeriesFrom::Values { y, .. } => y,
            SeriesFrom::Columns if self.series.len() == 1 => self.series[0].as_str(),
            SeriesFrom::Columns => "value",
        };
        let plot = (plot_left, plot_width, plot_bottom);
        svg_axis_titles(&mut o, self.x, y_title, plot, x_title_baseline(labels_bottom))?;
        if legend {
            let x = plot_right + 16.0;
            svg_legend(&mut o, x, plot_top, WIDTH - EDGE - x, self.series.iter().map(|s| (s.as_str(), String::new())))?;
        }
        svg_close(&mut o);
        Ok(o)
    }
}
