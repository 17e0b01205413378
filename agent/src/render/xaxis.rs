//! The horizontal axis of line, area and scatter charts: numbers, dates, times of day or
//! timestamps, with ticks at nice numbers or calendar steps. Seconds show `%H:%M:%S`,
//! minutes and hours `%H:%M`, days `%Y-%m-%d`, months `%Y-%m` and years `%Y`; under times
//! of day on a timestamp axis, a second line gives the date (with its year) at the first
//! tick and wherever the day changes.

use chrono::{Datelike as _, TimeZone as _, Timelike as _};

use super::axis::X_INTERVALS;
use super::Axis;
use crate::resultset::Value;

/// What the x column holds; every non-null x value must be of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum XKind {
    Number,
    Date,
    TimeOfDay,
    Timestamp,
    TimestampTz,
}

/// An x value as a coordinate: numbers as they are, temporal values in seconds (since
/// 1970-01-01 UTC, or since midnight for a time of day).
pub(super) fn x_coordinate(v: &Value) -> Option<(XKind, f64)> {
    Some(match v {
        Value::Int(_) | Value::Float(_) | Value::Decimal(_) => (XKind::Number, v.as_f64()?),
        Value::Date(d) => (XKind::Date, d.and_hms_opt(0, 0, 0)?.and_utc().timestamp() as f64),
        Value::Time(t) => {
            (XKind::TimeOfDay, f64::from(t.num_seconds_from_midnight()) + f64::from(t.nanosecond()) / 1e9)
        }
        Value::Timestamp(t) => (XKind::Timestamp, instant(t.and_utc())),
        Value::TimestampTz(t) => (XKind::TimestampTz, instant(*t)),
        _ => return None,
    })
}

fn instant(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9
}

/// The horizontal axis: its domain and labelled ticks.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct XAxis {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) ticks: Vec<(f64, String)>,
    /// Dates under the ticks' times of day.
    pub(super) dates: Vec<(f64, String)>,
}

/// Most ticks on a time axis.
const MAX_TIME_TICKS: f64 = 7.0;

/// Fixed time steps, seconds.
const TIME_STEPS: [i64; 21] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800,
    1_209_600,
];

/// Calendar steps, months.
const MONTH_STEPS: [i64; 9] = [1, 2, 3, 6, 12, 24, 60, 120, 600];

impl XAxis {
    pub(super) fn new(kind: XKind, lo: f64, hi: f64) -> Self {
        if kind == XKind::Number {
            let axis = Axis::span(lo, hi, X_INTERVALS);
            let ticks = axis.ticks().map(|v| (v, axis.label(v))).collect();
            return Self { lo: axis.lo, hi: axis.hi, ticks, dates: Vec::new() };
        }
        // A single instant gets a little room on each side.
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else if kind == XKind::Date {
            (lo - 86_400.0, hi + 86_400.0)
        } else {
            (lo - 30.0, hi + 30.0)
        };
        let span = hi - lo;
        let smallest = if kind == XKind::Date { 86_400 } else { 1 };
        for step in TIME_STEPS.into_iter().filter(|s| *s >= smallest) {
            if span / step as f64 <= MAX_TIME_TICKS {
                let first = (lo / step as f64).ceil() as i64;
                let last = (hi / step as f64).floor() as i64;
                let ticks: Vec<(f64, String)> =
                    (first..=last).map(|i| (i * step) as f64).map(|v| (v, time_label(kind, v, step))).collect();
                let dates = if has_date(kind) && step < 86_400 { day_changes(&ticks) } else { Vec::new() };
                return Self { lo, hi, ticks, dates };
            }
        }
        if kind == XKind::TimeOfDay {
            return Self { lo, hi, ticks: Vec::new(), dates: Vec::new() };
        }
        let months_span = span / (30.44 * 86_400.0);
        let step = MONTH_STEPS.into_iter().find(|m| months_span / *m as f64 <= MAX_TIME_TICKS).unwrap_or_else(|| {
            // Centuries: a multiple of 100 years.
            ((months_span / MAX_TIME_TICKS / 1200.0).ceil() as i64).max(1) * 1200
        });
        Self { lo, hi, ticks: month_ticks(lo, hi, step), dates: Vec::new() }
    }
}

/// Below the x labels, the height of the line of dates.
pub(super) const DATE_LINE: f64 = 13.0;

/// Whether values of `kind` have a date (times of day do not).
fn has_date(kind: XKind) -> bool {
    matches!(kind, XKind::Timestamp | XKind::TimestampTz)
}

/// The date (`%Y-%m-%d`) under the first tick and under every tick on another day than the
/// tick before it, so a time of day is never shown without its date.
fn day_changes(ticks: &[(f64, String)]) -> Vec<(f64, String)> {
    let mut out: Vec<(f64, String)> = Vec::new();
    let mut previous: Option<i64> = None;
    for &(v, _) in ticks {
        let day = (v as i64).div_euclid(86_400);
        if previous != Some(day) {
            if let Some(t) = chrono::DateTime::from_timestamp(day * 86_400, 0) {
                out.push((v, t.format("%Y-%m-%d").to_string()));
            }
        }
        previous = Some(day);
    }
    out
}

/// Ticks on the first day of every `step`-th month (counted from year 0) between `lo` and `hi`.
fn month_ticks(lo: f64, hi: f64, step: i64) -> Vec<(f64, String)> {
    let Some(start) = chrono::DateTime::from_timestamp(lo.floor() as i64, 0) else { return Vec::new() };
    let mut index = i64::from(start.year()) * 12 + i64::from(start.month0());
    index = index.div_euclid(step) * step;
    let mut ticks = Vec::new();
    // At most MAX_TIME_TICKS + 2 months are visited before passing `hi`.
    for _ in 0..16 {
        let (y, m) = (index.div_euclid(12), index.rem_euclid(12) + 1);
        let Some(t) =
            i32::try_from(y).ok().and_then(|y| chrono::Utc.with_ymd_and_hms(y, m as u32, 1, 0, 0, 0).single())
        else {
            break;
        };
        let v = t.timestamp() as f64;
        if v > hi {
            break;
        }
        if v >= lo {
            let label = if step % 12 == 0 { t.format("%Y").to_string() } else { t.format("%Y-%m").to_string() };
            ticks.push((v, label));
        }
        index += step;
    }
    ticks
}

fn time_label(kind: XKind, v: f64, step: i64) -> String {
    let secs = v as i64;
    if kind == XKind::TimeOfDay {
        let t = chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs.rem_euclid(86_400) as u32, 0)
            .unwrap_or_default();
        return t.format(if step < 60 { "%H:%M:%S" } else { "%H:%M" }).to_string();
    }
    let Some(t) = chrono::DateTime::from_timestamp(secs, 0) else { return String::new() };
    let fmt = if step >= 86_400 {
        "%Y-%m-%d"
    } else if step < 60 {
        "%H:%M:%S"
    } else {
        "%H:%M"
    };
    t.format(fmt).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dates(kind: XKind, lo: &str, hi: &str) -> Vec<String> {
        let p = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp() as f64).unwrap_or(f64::NAN);
        XAxis::new(kind, p(lo), p(hi)).dates.into_iter().map(|t| t.1).collect()
    }

    /// Issue 23: an hour-range axis showed `02:00` with no date.
    #[test]
    fn hour_ranges_show_the_date_at_the_first_tick_and_where_the_day_changes() {
        assert_eq!(dates(XKind::TimestampTz, "2024-03-01T10:00:00Z", "2024-03-01T13:00:00Z"), ["2024-03-01"]);
        assert_eq!(
            dates(XKind::Timestamp, "2024-03-01T22:00:00Z", "2024-03-02T03:00:00Z"),
            ["2024-03-01", "2024-03-02"]
        );
        let p = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp() as f64).unwrap_or(f64::NAN);
        let axis = XAxis::new(XKind::Timestamp, p("2024-03-01T22:00:00Z"), p("2024-03-02T03:00:00Z"));
        // The second date sits under the midnight tick.
        assert_eq!(axis.dates[1].0, p("2024-03-02T00:00:00Z"));
        assert!(axis.ticks.iter().any(|t| t.0 == axis.dates[1].0 && t.1 == "00:00"), "{:?}", axis.ticks);
        // Days and longer already name the date; times of day have none.
        assert!(dates(XKind::Date, "2024-03-01T00:00:00Z", "2024-03-05T00:00:00Z").is_empty());
        assert!(dates(XKind::TimeOfDay, "1970-01-01T01:00:00Z", "1970-01-01T03:00:00Z").is_empty());
    }

    fn labels(kind: XKind, lo: &str, hi: &str) -> Vec<String> {
        let p = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp() as f64).unwrap_or(f64::NAN);
        XAxis::new(kind, p(lo), p(hi)).ticks.into_iter().map(|t| t.1).collect()
    }

    #[test]
    fn time_axes_pick_calendar_steps_and_formats() {
        assert_eq!(
            labels(XKind::Timestamp, "2024-01-01T00:00:00Z", "2024-12-31T00:00:00Z"),
            ["2024-01", "2024-03", "2024-05", "2024-07", "2024-09", "2024-11"]
        );
        assert_eq!(
            labels(XKind::Date, "2024-03-01T00:00:00Z", "2024-03-05T00:00:00Z"),
            ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05"]
        );
        assert_eq!(
            labels(XKind::TimestampTz, "2024-03-01T10:00:00Z", "2024-03-01T13:00:00Z"),
            ["10:00", "10:30", "11:00", "11:30", "12:00", "12:30", "13:00"]
        );
        assert_eq!(
            labels(XKind::Timestamp, "2000-01-01T00:00:00Z", "2030-01-01T00:00:00Z"),
            ["2000", "2005", "2010", "2015", "2020", "2025", "2030"]
        );
        // Over several days, hours with the date (and year) below where the day changes.
        assert_eq!(
            labels(XKind::Timestamp, "2024-03-01T00:00:00Z", "2024-03-03T00:00:00Z"),
            ["00:00", "12:00", "00:00", "12:00", "00:00"]
        );
        assert_eq!(
            dates(XKind::Timestamp, "2024-03-01T00:00:00Z", "2024-03-03T00:00:00Z"),
            ["2024-03-01", "2024-03-02", "2024-03-03"]
        );
        // Two months: fortnights, not two month ticks.
        assert_eq!(
            labels(XKind::Date, "2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z"),
            ["2024-01-04", "2024-01-18", "2024-02-01", "2024-02-15", "2024-02-29"]
        );
        // Seconds.
        assert_eq!(
            labels(XKind::Timestamp, "2024-03-01T10:00:00Z", "2024-03-01T10:00:10Z"),
            ["10:00:00", "10:00:02", "10:00:04", "10:00:06", "10:00:08", "10:00:10"]
        );
        assert_eq!(dates(XKind::Timestamp, "2024-03-01T10:00:00Z", "2024-03-01T10:00:10Z"), ["2024-03-01"]);
    }
}
