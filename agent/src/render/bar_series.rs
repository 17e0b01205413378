//! Bar charts in long form: rows shaped `(x, series, y)`, pivoted here so that the SQL
//! need not pivot. One bar group per distinct `x` value, in the order they first appear
//! in the result, and one series per distinct `series` value, in sorted order
//! ([`super::series_order`]) so legend and colours do not depend on the rows' order.
//!
//! At most [`MAX_SERIES`] series are drawn, one colour each. Beyond that, as a pie does
//! with slices, the `MAX_SERIES - 1` series with the largest totals (by magnitude) keep
//! their own and the rest are summed, group by group, as one "Other" series, which the
//! chart says. A NULL `series` value is the series "(null)", a NULL `x` the group
//! "(null)"; a NULL `y` draws no bar. Rows with the same `x` and `series` are added.

use std::collections::{BTreeMap, HashMap};

use super::bar::{bar_of, value_axis, Bar, BarChart, SeriesFrom};
use super::series_order::{sorted, SeriesKey};
use super::{column_index, plain_number, value_text, RenderError, MAX_BAR_GROUPS, MAX_SERIES};
use crate::resultset::{ResultSet, Value};

/// A group or series key: NULL apart from any text, so that the text "(null)" is not NULL.
fn key(v: &Value) -> Option<String> {
    (!matches!(v, Value::Null)).then(|| value_text(v))
}

/// Index of `k` in `order`, added at the end when new.
fn index_of(
    index: &mut HashMap<Option<String>, usize>,
    order: &mut Vec<String>,
    k: Option<String>,
    label: &Value,
) -> usize {
    let next = index.len();
    *index.entry(k).or_insert_with(|| {
        order.push(value_text(label));
        next
    })
}

/// One drawn cell: the sum of its rows' values, and how many rows had one.
#[derive(Default, Clone, Copy)]
struct Cell {
    sum: f64,
    rows: usize,
}

pub(super) struct LongForm<'a> {
    pub(super) x: &'a str,
    pub(super) y: &'a str,
    pub(super) series: &'a str,
    pub(super) title: Option<&'a str>,
    pub(super) stacked: bool,
}

impl<'a> LongForm<'a> {
    /// Pivots `rs`; more than `max_rows` rows (the agent's row policy) or more than
    /// [`MAX_BAR_GROUPS`] distinct `x` values is refused, as the wide form refuses rows.
    pub(super) fn build(self, rs: &ResultSet, max_rows: usize) -> Result<BarChart<'a>, RenderError> {
        let xi = column_index(&rs.columns, self.x)?;
        let si = column_index(&rs.columns, self.series)?;
        let yi = column_index(&rs.columns, self.y)?;
        if rs.rows.len() > max_rows {
            return Err(RenderError::TooManyBarRows { rows: rs.rows.len(), max: max_rows });
        }
        let (mut group_index, mut labels) = (HashMap::new(), Vec::new());
        let (mut series_index, mut names) = (HashMap::new(), Vec::new());
        // (group, series) -> cell; only cells that have rows. Ordered, so that sums are
        // added in the same order every time (the output is deterministic).
        let mut cells: BTreeMap<(usize, usize), Cell> = BTreeMap::new();
        // The first row of each cell keeps its value's own text (as the wide form shows it).
        let mut first_text: BTreeMap<(usize, usize), String> = BTreeMap::new();
        let mut totals: Vec<f64> = Vec::new();
        let mut sort_keys: Vec<SeriesKey> = Vec::new();
        for (row, values) in rs.rows.iter().enumerate() {
            let g = index_of(&mut group_index, &mut labels, key(&values[xi]), &values[xi]);
            if labels.len() > MAX_BAR_GROUPS {
                return Err(RenderError::TooManyBarGroups { max: MAX_BAR_GROUPS });
            }
            let s = index_of(&mut series_index, &mut names, key(&values[si]), &values[si]);
            totals.resize(names.len(), 0.0);
            if sort_keys.len() < names.len() {
                sort_keys.push(SeriesKey::of(&values[si]));
            }
            let Some(n) = bar_of(&values[yi], self.y, row)?.value else { continue };
            totals[s] += n.abs();
            let cell = cells.entry((g, s)).or_default();
            cell.sum += n;
            cell.rows += 1;
            first_text.entry((g, s)).or_insert_with(|| value_text(&values[yi]));
        }

        // Which series keep their own colour: all, or the largest and then "Other"; the
        // kept ones in sorted order, "Other" last.
        let n_series = names.len();
        let mut keep = vec![true; n_series];
        if n_series > MAX_SERIES {
            let mut by_total: Vec<usize> = (0..n_series).collect();
            by_total.sort_by(|&a, &b| totals[b].total_cmp(&totals[a]).then(a.cmp(&b)));
            keep = vec![false; n_series];
            for &s in &by_total[..MAX_SERIES - 1] {
                keep[s] = true;
            }
        }
        let mut slot_of = vec![MAX_SERIES - 1; n_series];
        let mut series = Vec::with_capacity(MAX_SERIES);
        for s in sorted(&sort_keys).into_iter().filter(|s| keep[*s]) {
            slot_of[s] = series.len();
            series.push(names[s].clone());
        }
        let other = (series.len() < n_series).then(|| n_series - series.len());
        if let Some(folded) = other {
            series.push(format!("Other ({folded} series)"));
        }

        let mut merged = vec![vec![Cell::default(); series.len()]; labels.len()];
        let mut single: BTreeMap<(usize, usize), String> = BTreeMap::new();
        for ((g, s), cell) in &cells {
            let slot = slot_of[*s];
            let m = &mut merged[*g][slot];
            m.sum += cell.sum;
            m.rows += cell.rows;
            if let Some(t) = first_text.get(&(*g, *s)) {
                single.insert((*g, slot), t.clone());
            }
        }
        let bars = merged
            .iter()
            .enumerate()
            .map(|(g, group)| {
                group
                    .iter()
                    .enumerate()
                    .map(|(slot, cell)| match cell.rows {
                        0 => Bar::none(),
                        1 => Bar { value: Some(cell.sum), text: single.remove(&(g, slot)).unwrap_or_default() },
                        _ => Bar { value: Some(cell.sum), text: plain_number(cell.sum) },
                    })
                    .collect()
            })
            .collect::<Vec<Vec<Bar>>>();
        let axis = value_axis(&bars, self.stacked, self.y)?;
        Ok(BarChart {
            x: self.x,
            series,
            from: SeriesFrom::Values { column: self.series, y: self.y, other },
            title: self.title,
            labels,
            bars,
            rows: rs.rows.len(),
            truncated: rs.truncated,
            axis,
            stacked: self.stacked,
            format: super::format::ValueFormat::default(),
        })
    }
}
