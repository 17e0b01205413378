//! SVG primitives shared by the charts: layout, the document's frame, value-axis ticks,
//! axis titles, legends and coordinates.

use std::fmt::{self, Write as _};

use super::{truncate_chars, Axis, Esc, PALETTE};

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
pub(crate) const GLYPH_WIDTH: f64 = 6.5;
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
