//! Value axes of "nice" ticks.

/// A value axis of equal "nice" steps (1, 2, 2.5 or 5 times a power of ten).
///
/// The top of the axis is a tick at or above the largest value, and little of the plot is
/// empty: 11M gets a 12M axis, 113k a 120k one, 1,234 a 1,250 one. Of the nice steps that
/// cover the values in 4 to 7 intervals (5 to 8 ticks, easy to read) and leave at most
/// [`MAX_EMPTY`] of the axis empty, the shortest axis is taken; when none does (41 would
/// need 0–50, 18% empty), the shortest axis of at most [`MAX_INTERVALS`] intervals (0–45
/// in steps of 5). Ties go to the number of intervals nearest [`IDEAL_INTERVALS`].
///
/// [`Axis::nice`] always includes 0 (bars, areas); [`Axis::span`] covers just the data
/// (lines, scatter plots, numeric x axes).
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

/// An axis with its length and number of intervals, while the best one is sought.
type Candidate = (f64, u32, Axis);

/// Mantissas of nice steps.
const MANTISSAS: [f64; 4] = [1.0, 2.0, 2.5, 5.0];

/// Most intervals of a value (y) axis.
pub(crate) const MAX_INTERVALS: u32 = 10;

/// Most intervals of a numeric x axis, whose labels sit side by side.
pub(crate) const X_INTERVALS: u32 = 6;

/// Of two equally short axes, the one with the number of intervals nearest this one wins.
const IDEAL_INTERVALS: u32 = 5;

/// Intervals of a preferred axis: 5 to 8 ticks.
const PREFERRED_INTERVALS: std::ops::RangeInclusive<u32> = 4..=7;

/// Most of a preferred axis left empty beyond the values.
const MAX_EMPTY: f64 = 0.15;

impl Axis {
    /// The axis for values between `min` and `max` (both finite; the range is widened to 0).
    pub(crate) fn nice(min: f64, max: f64) -> Self {
        let (lo, hi) = (min.min(0.0), max.max(0.0));
        // All zero (or too small to tell apart from zero): 0 .. 4.
        let zero = Self::with_step(1.0, 0, 4, 0);
        if (hi - lo).is_nan() || hi - lo < f64::MIN_POSITIVE * f64::from(MAX_INTERVALS) {
            return zero;
        }
        Self::fit(lo, hi, MAX_INTERVALS).unwrap_or(zero)
    }

    /// An axis from a nice tick at or below `min` to one at or above `max`, with at most
    /// `max_intervals` steps; zero is included only when the data comes near it.
    pub(crate) fn span(min: f64, max: f64, max_intervals: u32) -> Self {
        let (min, max) = if max > min {
            (min, max)
        } else if min == 0.0 {
            (-1.0, 1.0)
        } else {
            (min - min.abs() * 0.1, max + max.abs() * 0.1)
        };
        Self::fit(min, max, max_intervals).unwrap_or_else(|| Self::nice(min, max))
    }

    /// The shortest nice axis over `lo..hi` in at most `max_intervals` steps.
    fn fit(lo: f64, hi: f64, max_intervals: u32) -> Option<Self> {
        let raw = (hi - lo) / f64::from(max_intervals);
        if !raw.is_finite() || raw < f64::MIN_POSITIVE {
            return None;
        }
        // The shortest preferred axis, and the shortest of all.
        let (mut preferred, mut shortest): (Option<Candidate>, Option<Candidate>) = (None, None);
        let better = |length: f64, n: u32, best: &Option<Candidate>| match best {
            None => true,
            Some((l, bn, _)) => {
                length < l * (1.0 - 1e-9)
                    || (length <= l * (1.0 + 1e-9) && n.abs_diff(IDEAL_INTERVALS) < bn.abs_diff(IDEAL_INTERVALS))
            }
        };
        for (step, decimals) in nice_steps(raw) {
            let first = (lo / step + 1e-9).floor();
            let last = (hi / step - 1e-9).ceil();
            if last - first > f64::from(max_intervals) || first.abs() > 1e15 || last.abs() > 1e15 {
                continue;
            }
            let n = (last - first).max(1.0) as u32;
            let length = f64::from(n) * step;
            let axis = Self::with_step(step, first as i64, n, decimals);
            let empty = 1.0 - (hi - lo) / length;
            if PREFERRED_INTERVALS.contains(&n) && empty <= MAX_EMPTY + 1e-9 && better(length, n, &preferred) {
                preferred = Some((length, n, axis));
            }
            if better(length, n, &shortest) {
                shortest = Some((length, n, axis));
            }
        }
        preferred.or(shortest).map(|(_, _, axis)| axis)
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

    /// The label of tick `v` in a chart's number format (and unit).
    pub(crate) fn label_as(&self, v: f64, format: &super::format::ValueFormat) -> String {
        format.tick(v, self.decimals, self.label(v), self.scientific)
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
        .map(|(m, exp)| {
            // Divided rather than multiplied by a negative power: 5e-6, not 4.9999999999999996e-6.
            let step = if exp < 0 { m / 10f64.powi(-exp) } else { m * 10f64.powi(exp) };
            (step, decimals_of(m, exp))
        })
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

    // ---- axis and number formatting ---------------------------------------------------------

    fn tick_labels(min: f64, max: f64) -> Vec<String> {
        let axis = Axis::nice(min, max);
        axis.ticks().map(|v| axis.label(v)).collect()
    }

    fn top(max: f64) -> f64 {
        Axis::nice(0.0, max).hi
    }

    #[test]
    fn axis_ticks_are_nice_and_cover_the_values() {
        assert_eq!(tick_labels(0.0, 40.0), ["0", "10", "20", "30", "40"]);
        assert_eq!(tick_labels(0.0, 41.0), ["0", "5", "10", "15", "20", "25", "30", "35", "40", "45"]);
        assert_eq!(tick_labels(0.0, 7.0), ["0", "1", "2", "3", "4", "5", "6", "7"]);
        // 5 to 8 ticks when at most 15% of the axis stays empty: 0–1 in fifths, not tenths.
        assert_eq!(tick_labels(0.0, 0.9), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        assert_eq!(tick_labels(0.0, 3_456_789.0).last().map(String::as_str), Some("3,500,000"));
        assert_eq!(tick_labels(-5.0, 5.0), ["-5", "-2.5", "0", "2.5", "5"]);
        assert_eq!(tick_labels(0.0, 0.009), ["0", "2e-3", "4e-3", "6e-3", "8e-3", "1e-2"]);
        assert_eq!(tick_labels(0.0, 3e12), ["0", "5e11", "1e12", "1.5e12", "2e12", "2.5e12", "3e12"]);
        for (lo, hi) in [(0.0, 1.0), (-3.0, 7.0), (-123.4, 0.5), (0.0, 99_999.0), (-1e-5, 2e-5)] {
            let axis = Axis::nice(lo, hi);
            assert!(axis.lo <= lo && axis.hi >= hi, "{lo}..{hi}: {axis:?}");
            assert!(axis.ticks().any(|v| v == 0.0));
            let n = axis.ticks().count();
            assert!((3..=11).contains(&n), "{lo}..{hi}: {n} ticks");
        }
    }

    /// Issue 23: 11M drew a 20M axis, 113k a 200k one, 1,234 a 2,000 one.
    #[test]
    fn axis_top_is_the_first_nice_tick_at_or_above_the_maximum() {
        assert_eq!(top(11_000_000.0), 12_000_000.0);
        assert_eq!(top(113_000.0), 120_000.0);
        assert_eq!(top(1_234.0), 1_250.0);
        assert_eq!(tick_labels(0.0, 1_234.0), ["0", "250", "500", "750", "1,000", "1,250"]);
        // Over many maxima, at most a sixth of the plot (on average under a tenth) is
        // empty, and most axes have 5 to 8 ticks.
        let mut worst: f64 = 0.0;
        let mut total = 0.0;
        let mut count = 0.0;
        let mut readable = 0.0;
        for i in 1..=2000 {
            let max = 1.0 + f64::from(i) * 0.0045;
            let empty = 1.0 - max / top(max);
            worst = worst.max(empty);
            total += empty;
            count += 1.0;
            if (5..=8).contains(&Axis::nice(0.0, max).ticks().count()) {
                readable += 1.0;
            }
        }
        assert!(worst < 1.0 / 6.0, "worst {worst}");
        assert!(total / count < 0.08, "mean {}", total / count);
        assert!(readable / count > 0.85, "5 to 8 ticks in {} of the axes", readable / count);
    }
}
