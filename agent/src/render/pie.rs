//! Pie charts: one slice per row, clockwise from twelve o'clock in query order.
//!
//! Sizes must be numbers and none negative; rows with a NULL size are left out. Beyond
//! [`MAX_SLICES`] rows, the largest `MAX_SLICES - 1` keep their slices and the rest are
//! summed into one "Other" slice, which the chart says: a pie of any number of rows (up to
//! the agent's row policy, `max_rows`) draws at most [`MAX_SLICES`] slices.

use std::fmt::{self, Write as _};

use outpost_protocol::PieSpec;

use super::format::ValueFormat;
use super::{
    column_index, svg_close, svg_empty, svg_legend, svg_open, truncate_chars, truncation_note, value_text, Esc, Px,
    RenderError, Rendered, ATTR_CHARS, EDGE, MARGIN_TOP, MAX_CHART_MAGNITUDE, PALETTE, PLOT_HEIGHT, WIDTH,
};
use crate::resultset::{ResultSet, Value};

/// Most slices drawn (the last one "Other" when there are more rows); the rest are summed
/// into "Other".
pub const MAX_SLICES: usize = 10;

/// Centre and radius of the pie.
const CX: f64 = 290.0;
const CY: f64 = MARGIN_TOP + PLOT_HEIGHT / 2.0 + 30.0;
const R: f64 = 150.0;
/// Left edge of the legend, right of the pie.
const LEGEND_X: f64 = 500.0;

struct Slice {
    label: String,
    value: f64,
    text: String,
}

/// Renders `rs` as a pie chart; more than `max_rows` rows is refused, as for bar charts.
pub fn render_pie(spec: &PieSpec, rs: &ResultSet, max_rows: usize) -> Result<Rendered, RenderError> {
    let li = column_index(&rs.columns, &spec.label)?;
    let vi = column_index(&rs.columns, &spec.value)?;
    if rs.rows.len() > max_rows {
        return Err(RenderError::TooManyPieRows { rows: rs.rows.len(), max: max_rows });
    }
    let mut slices = Vec::with_capacity(rs.rows.len());
    for (row, values) in rs.rows.iter().enumerate() {
        let v = &values[vi];
        if matches!(v, Value::Null) {
            continue;
        }
        let n = v
            .as_f64()
            .filter(|n| n.is_finite())
            .ok_or_else(|| RenderError::NotNumeric { column: spec.value.clone(), row })?;
        if n < 0.0 {
            return Err(RenderError::Negative { column: spec.value.clone(), row });
        }
        if n > MAX_CHART_MAGNITUDE {
            return Err(RenderError::OutOfRange { column: spec.value.clone(), row });
        }
        slices.push(Slice { label: value_text(&values[li]), value: n, text: value_text(v) });
    }
    let mut other = None;
    if slices.len() > MAX_SLICES {
        // Keep the largest (ties: the earlier row), in query order; sum the rest.
        let mut order: Vec<usize> = (0..slices.len()).collect();
        order.sort_by(|&a, &b| slices[b].value.total_cmp(&slices[a].value).then(a.cmp(&b)));
        let mut keep = vec![false; slices.len()];
        for &i in &order[..MAX_SLICES - 1] {
            keep[i] = true;
        }
        let (mut kept, mut rest, mut count) = (Vec::new(), 0.0, 0usize);
        for (i, s) in slices.into_iter().enumerate() {
            if keep[i] {
                kept.push(s);
            } else {
                rest += s.value;
                count += 1;
            }
        }
        other = Some(count);
        kept.push(Slice { label: format!("Other ({count} rows)"), value: rest, text: super::plain_number(rest) });
        slices = kept;
    }
    let body = svg(spec, &slices, rs, other).map_err(|e| RenderError::Encode(e.to_string()))?.into_bytes();
    Ok(Rendered {
        content_type: "image/svg+xml",
        body,
        rows_rendered: rs.rows.len(),
        truncated: rs.truncated,
        points: slices.len(),
        decisions: Vec::new(),
    })
}

/// A share with one decimal (`25.3%`); a slice too small for that says `<0.1%`, not `0.0%`.
fn share_text(share: f64) -> String {
    if share > 0.0 && share < 0.0005 {
        "<0.1%".to_owned()
    } else {
        format!("{:.1}%", share * 100.0)
    }
}

fn svg(spec: &PieSpec, slices: &[Slice], rs: &ResultSet, other: Option<usize>) -> Result<String, fmt::Error> {
    let mut o = String::with_capacity(2048 + slices.len() * 300);
    let description = match &spec.title {
        Some(t) => t.clone(),
        None => format!("Pie chart of {} by {}", spec.value, spec.label),
    };
    let note = match (truncation_note(rs.truncated, rs.rows.len()), other) {
        (Some(n), _) => Some(n),
        (None, Some(count)) => Some(format!("The {count} smallest rows are summed as Other.")),
        (None, None) => None,
    };
    svg_open(&mut o, &description, spec.title.as_deref(), note.as_deref())?;
    let total: f64 = slices.iter().map(|s| s.value).sum();
    if total <= 0.0 {
        svg_empty(&mut o, CX - R, 2.0 * R, MARGIN_TOP + PLOT_HEIGHT)?;
        svg_close(&mut o);
        return Ok(o);
    }
    let format = ValueFormat::new(spec.format, spec.unit.as_deref(), spec.decimals);
    let mut angle = 0.0_f64;
    for (i, s) in slices.iter().enumerate() {
        let share = s.value / total;
        let label = Esc(&truncate_chars(&s.label, ATTR_CHARS)).to_string();
        let attrs = format!(
            "class=\"slice\" fill=\"{}\" stroke=\"#ffffff\" data-label=\"{label}\" data-value=\"{}\" data-share=\"{:.4}\"",
            PALETTE[i % PALETTE.len()],
            Esc(&s.text),
            share
        );
        let title =
            format!("<title>{label}: {} ({})</title>", Esc(&format.value(&s.text, s.value)), Esc(&share_text(share)));
        if share >= 1.0 - 1e-12 {
            writeln!(o, "<circle {attrs} cx=\"{}\" cy=\"{}\" r=\"{}\">{title}</circle>", Px(CX), Px(CY), Px(R))?;
        } else if share > 0.0 {
            let end = angle + share * std::f64::consts::TAU;
            let point = |a: f64| (CX + R * a.sin(), CY - R * a.cos());
            let (x0, y0) = point(angle);
            let (x1, y1) = point(end);
            let large = u8::from(share > 0.5);
            writeln!(
                o,
                "<path {attrs} d=\"M{} {} L{} {} A{r} {r} 0 {large} 1 {} {} Z\">{title}</path>",
                Px(CX),
                Px(CY),
                Px(x0),
                Px(y0),
                Px(x1),
                Px(y1),
                r = Px(R)
            )?;
            angle = end;
        }
    }
    // Each name gets the room there is right of the pie, its share always shown whole.
    let entries = slices.iter().map(|s| (s.label.as_str(), format!(" ({})", share_text(s.value / total))));
    svg_legend(&mut o, LEGEND_X, MARGIN_TOP + 20.0, WIDTH - EDGE - LEGEND_X, entries)?;
    svg_close(&mut o);
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::share_text;

    #[test]
    fn a_tiny_share_reads_less_than_a_tenth_not_zero() {
        assert_eq!(share_text(0.253), "25.3%");
        assert_eq!(share_text(0.0002), "<0.1%");
        assert_eq!(share_text(0.0), "0.0%");
        assert_eq!(share_text(1.0), "100.0%");
    }
}
