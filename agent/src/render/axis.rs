//! Value axes of "nice" ticks.

use super::TICK_INTERVALS;

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
}
