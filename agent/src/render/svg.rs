//! SVG primitives shared by the charts: layout, the document's frame, value-axis ticks,
//! axis titles, legends and coordinates.

use std::fmt::{self, Write as _};

use super::format::ValueFormat;
use super::measure::{fit_width, text_width};
use super::{truncate_chars, Axis, Esc, PALETTE};

pub(crate) const WIDTH: f64 = 800.0;
pub(crate) const HEIGHT: f64 = 450.0;
pub(crate) const MARGIN_TOP: f64 = 56.0;
pub(crate) const MARGIN_BOTTOM: f64 = 114.0;
pub(crate) const MARGIN_LEFT: f64 = 96.0;
pub(crate) const MARGIN_RIGHT: f64 = 20.0;
pub(crate) const LEGEND_WIDTH: f64 = 160.0;
/// Height of the plot area under rotated x labels: the full axis span maps onto it.
pub(crate) const PLOT_HEIGHT: f64 = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
/// Below a plot whose x labels lie flat: their line (and a line of dates), the x axis
/// title just below, and its descenders, so no band of the chart is left empty.
pub(crate) const MARGIN_BOTTOM_FLAT: f64 = 68.0;
/// Height of the plot area when the x labels lie flat.
pub(crate) const PLOT_HEIGHT_FLAT: f64 = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM_FLAT;
/// Characters of an x label shown under the axis.
pub(crate) const LABEL_CHARS: usize = 24;
/// Characters of a series name shown in the legend.
pub(crate) const LEGEND_CHARS: usize = 20;
/// Characters of the visible title.
pub(crate) const TITLE_CHARS: usize = 80;
/// Characters of text kept in attributes and `<title>` elements.
pub(crate) const ATTR_CHARS: usize = 200;
/// Smallest distance between two rotated x labels.
pub(crate) const ROTATED_LABEL_SPACING: f64 = 13.0;

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

/// Where the y axis title ends, right of the chart's left edge (its baseline is at 18).
const Y_TITLE_RIGHT: f64 = 26.0;
/// Between a tick label's end and the axis.
const TICK_GAP: f64 = 8.0;

/// The plot's left edge: [`MARGIN_LEFT`], or further right when the widest tick label
/// (`43,725,380 EUR`) would otherwise run into the y axis title.
pub(crate) fn plot_left(axis: &Axis, format: &ValueFormat) -> f64 {
    let widest = axis.ticks().map(|v| text_width(&axis.label_as(v, format), 11.0)).fold(0.0, f64::max);
    MARGIN_LEFT.max((Y_TITLE_RIGHT + widest + TICK_GAP).ceil())
}

/// Horizontal grid lines and labels of a value axis, in the chart's number format.
pub(crate) fn svg_y_ticks(
    o: &mut String,
    axis: &Axis,
    format: &ValueFormat,
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
            Px(left - TICK_GAP),
            Px(y_of(v) + 4.0),
            Esc(&axis.label_as(v, format))
        )?;
    }
    Ok(())
}

/// Room right of the plot for a right value axis (dual axis): its tick labels and title.
pub(crate) fn right_axis_room(axis: &Axis, format: &ValueFormat) -> f64 {
    let widest = axis.ticks().map(|v| text_width(&axis.label_as(v, format), 11.0)).fold(0.0, f64::max);
    (TICK_GAP + widest + Y_TITLE_RIGHT).ceil()
}

/// Tick labels of a right value axis, left-aligned beside the plot's right edge `right`
/// (the grid lines are the left axis's).
pub(crate) fn svg_right_ticks(
    o: &mut String,
    axis: &Axis,
    format: &ValueFormat,
    right: f64,
    y_of: impl Fn(f64) -> f64,
) -> fmt::Result {
    for v in axis.ticks() {
        writeln!(
            o,
            "<text class=\"tick-right\" x=\"{}\" y=\"{}\" text-anchor=\"start\" font-size=\"11\" \
             fill=\"#444444\">{}</text>",
            Px(right + TICK_GAP),
            Px(y_of(v) + 4.0),
            Esc(&axis.label_as(v, format))
        )?;
    }
    Ok(())
}

/// The right axis's line at `right` (down to the plot's `bottom`) and its title, read
/// bottom to top like the left one's but on the right, ending at `outer`.
pub(crate) fn svg_right_axis(o: &mut String, right: f64, outer: f64, bottom: f64, title: &str) -> fmt::Result {
    writeln!(
        o,
        "<line class=\"axis\" x1=\"{r}\" y1=\"{}\" x2=\"{r}\" y2=\"{}\" stroke=\"#333333\"/>",
        Px(MARGIN_TOP),
        Px(bottom),
        r = Px(right)
    )?;
    let (tx, ty) = (Px(outer - 8.0), Px((MARGIN_TOP + bottom) / 2.0));
    writeln!(
        o,
        "<text class=\"axis-title\" x=\"{tx}\" y=\"{ty}\" text-anchor=\"middle\" font-size=\"12\" \
         fill=\"#333333\" transform=\"rotate(-90 {tx} {ty})\">{}</text>",
        Esc(&truncate_chars(title, LEGEND_CHARS))
    )
}

/// Baseline of horizontal x labels, below the plot's bottom edge.
pub(crate) const X_LABEL_BASELINE: f64 = 18.0;
/// Where rotated x labels end (their anchor), below the plot's bottom edge.
pub(crate) const ROTATED_LABEL_TOP: f64 = 12.0;
/// From the lowest point of the x labels to the x axis title's baseline: the title's own
/// height (12px text) and a small gap.
const X_TITLE_GAP: f64 = 16.0;
/// Lowest baseline of the x axis title: above the bottom edge, with room for descenders.
pub(crate) const X_TITLE_MAX: f64 = HEIGHT - 6.0;
/// `sin 45°`: how far a label rotated by −45° reaches down (and left) per pixel of width.
pub(crate) const SIN_45: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// Baseline of the x axis title just below labels whose lowest point is `labels_bottom`.
pub(crate) fn x_title_baseline(labels_bottom: f64) -> f64 {
    (labels_bottom + X_TITLE_GAP).min(X_TITLE_MAX)
}

/// Lowest point of horizontal x labels under a plot whose bottom edge is `bottom`
/// (baseline plus descenders of 11px text).
pub(crate) fn horizontal_labels_bottom(bottom: f64) -> f64 {
    bottom + X_LABEL_BASELINE + 3.0
}

/// One horizontal x label centred on `x`, or anchored at its end (start) when centring
/// would take it past the right (left) edge of the chart.
pub(crate) fn svg_x_label(o: &mut String, class: &str, x: f64, baseline: f64, label: &str) -> fmt::Result {
    let half = text_width(label, 11.0) / 2.0;
    let anchor = if x + half > WIDTH - EDGE {
        "end"
    } else if x - half < EDGE {
        "start"
    } else {
        "middle"
    };
    let x = x.clamp(EDGE, WIDTH - EDGE);
    writeln!(
        o,
        "<text class=\"{class}\" x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" font-size=\"11\" \
         fill=\"#444444\">{}</text>",
        Px(x),
        Px(baseline),
        Esc(label)
    )
}

/// Space kept free between text and the edges of the chart.
pub(crate) const EDGE: f64 = 4.0;

/// The x axis title under the plot (its baseline at `x_title_y`, just below the labels)
/// and the y axis title along the left side of a plot whose bottom edge is `bottom`.
pub(crate) fn svg_axis_titles(
    o: &mut String,
    x_title: &str,
    y_title: &str,
    (left, width, bottom): (f64, f64, f64),
    x_title_y: f64,
) -> fmt::Result {
    writeln!(
        o,
        "<text class=\"axis-title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\" \
         fill=\"#333333\">{}</text>",
        Px(left + width / 2.0),
        Px(x_title_y),
        Esc(&truncate_chars(x_title, LEGEND_CHARS))
    )?;
    let (tx, ty) = (Px(18.0), Px((MARGIN_TOP + bottom) / 2.0));
    writeln!(
        o,
        "<text class=\"axis-title\" x=\"{tx}\" y=\"{ty}\" text-anchor=\"middle\" font-size=\"12\" \
         fill=\"#333333\" transform=\"rotate(-90 {tx} {ty})\">{}</text>",
        Esc(&truncate_chars(y_title, LEGEND_CHARS))
    )
}

/// A legend: one swatch and entry per `(name, suffix)`, in the palette's order, from `top`
/// down. Each name is cut to what fits in `max_width` pixels beside its swatch (the suffix,
/// such as a share, is always shown whole); a cut name keeps its full text in a `<title>`.
pub(crate) fn svg_legend<'n>(
    o: &mut String,
    x: f64,
    top: f64,
    max_width: f64,
    entries: impl Iterator<Item = (&'n str, String)>,
) -> fmt::Result {
    for (s, (name, suffix)) in entries.enumerate() {
        let y = top + s as f64 * 20.0;
        writeln!(
            o,
            "<rect class=\"legend-swatch\" x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>",
            Px(x),
            Px(y),
            PALETTE[s % PALETTE.len()]
        )?;
        let room = max_width - LEGEND_TEXT_OFFSET - text_width(&suffix, 11.0);
        let shown = fit_width(name, room, 11.0);
        write!(
            o,
            "<text class=\"legend\" x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#444444\">{}{}",
            Px(x + LEGEND_TEXT_OFFSET),
            Px(y + 10.0),
            Esc(&shown),
            Esc(&suffix)
        )?;
        if shown != name {
            write!(o, "<title>{}{}</title>", Esc(&truncate_chars(name, ATTR_CHARS)), Esc(&suffix))?;
        }
        o.push_str("</text>\n");
    }
    Ok(())
}

/// From a legend swatch's left edge to its text.
pub(crate) const LEGEND_TEXT_OFFSET: f64 = 18.0;

/// "No data" in the middle of an empty plot whose bottom edge is `bottom`.
pub(crate) fn svg_empty(o: &mut String, left: f64, width: f64, bottom: f64) -> fmt::Result {
    writeln!(
        o,
        "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" \
         fill=\"#666666\">No data</text>",
        Px(left + width / 2.0),
        Px((MARGIN_TOP + bottom) / 2.0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_have_two_decimals_and_no_negative_zero() {
        assert_eq!(Px(1.0 / 3.0).to_string(), "0.33");
        assert_eq!(Px(-0.001).to_string(), "0.00");
        assert_eq!(Px(-0.0).to_string(), "0.00");
        assert_eq!(Px(12.345_6).to_string(), "12.35");
    }
}
