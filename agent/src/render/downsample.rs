//! Bounded summaries of a chart's points: a result of any size keeps per series at most
//! a fixed number of cells (min and max per x interval for lines, one point per x–y cell
//! for scatter plots), doubling the cell width whenever there are too many. Memory stays
//! bounded whatever the row count, and the rows need not be sorted. A line keeps, per
//! cell, its first, lowest, highest and last point, so peaks and dips survive; a NULL
//! value is kept as `(x, NaN)`, a gap.

use std::collections::BTreeMap;

/// One x interval (lines) or x–y cell (scatter) of a series: its first, last, lowest and
/// highest point. `valued` is false while it holds only a gap, a NULL that breaks the line
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
pub(super) struct Reducer {
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
    pub(super) seen: u64,
}

impl Reducer {
    pub(super) fn new(grid: bool, max_points: usize) -> Self {
        let max_cells = Self::cells_for(grid, max_points);
        Self { grid, max_cells, raw: Vec::new(), max_points, width: (0.0, 0.0), cells: BTreeMap::new(), seen: 0 }
    }

    fn cells_for(grid: bool, max_points: usize) -> usize {
        if grid {
            max_points
        } else {
            (max_points / 4).max(1)
        }
    }

    /// Lowers the budget (a new series shares it), merging what is kept to fit.
    pub(super) fn shrink(&mut self, max_points: usize) {
        if max_points >= self.max_points {
            return;
        }
        self.max_points = max_points;
        self.max_cells = Self::cells_for(self.grid, max_points);
        if self.width.0 == 0.0 {
            if self.raw.len() > self.max_points {
                self.start_cells();
            }
        } else {
            self.compact();
        }
    }

    /// A NULL value at `x`: a line breaks there.
    pub(super) fn push_gap(&mut self, x: f64) {
        self.push((x, f64::NAN));
    }

    /// A point; `(x, NaN)` is a gap.
    pub(super) fn push(&mut self, p: (f64, f64)) {
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
    pub(super) fn points(&self) -> Vec<(f64, f64)> {
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
