//! The order of series in a legend when they come from a column's values: sorted, so the
//! same data gives the same legend and colours whatever order the rows came in.
//!
//! Numbers by value; anything else by its text, with runs of digits compared as numbers
//! (`r2` before `r10`); NULL ("(null)") last. Dates and timestamps sort by their ISO text,
//! which is their order.

use std::cmp::Ordering;

use super::value_text;
use crate::resultset::Value;

/// Where a series value goes in the legend.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SeriesKey {
    Number(f64),
    Text(String),
    Null,
}

impl SeriesKey {
    pub(crate) fn of(v: &Value) -> Self {
        match v {
            Value::Null => Self::Null,
            v if v.is_number() => v.as_f64().map_or_else(|| Self::Text(value_text(v)), Self::Number),
            v => Self::Text(value_text(v)),
        }
    }

    /// Numbers first, then text, then NULL; ties broken by the exact text so the order is
    /// total.
    pub(crate) fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Number(a), Self::Number(b)) => a.total_cmp(b),
            (Self::Text(a), Self::Text(b)) => natural(a, b).then_with(|| a.cmp(b)),
            (Self::Null, Self::Null) => Ordering::Equal,
            (Self::Number(_), _) | (Self::Text(_), Self::Null) => Ordering::Less,
            _ => Ordering::Greater,
        }
    }
}

/// Text order with runs of ASCII digits compared by their value.
fn natural(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (da, ra) = digits(a);
                let (db, rb) = digits(b);
                let (ta, tb) = (da.trim_start_matches('0'), db.trim_start_matches('0'));
                let ord = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if ord != Ordering::Equal {
                    return ord;
                }
                (a, b) = (ra, rb);
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                (a, b) = (&a[x.len_utf8()..], &b[y.len_utf8()..]);
            }
        }
    }
}

fn digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// Indices `0..keys.len()` in legend order.
pub(crate) fn sorted(keys: &[SeriesKey]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]).then(a.cmp(&b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legends_sort_numbers_then_text_naturally_then_null() {
        let values = [
            Value::Text("r10".into()),
            Value::Null,
            Value::Text("r2".into()),
            Value::Int(10),
            Value::Text("East".into()),
            Value::Float(2.5),
        ];
        let keys: Vec<SeriesKey> = values.iter().map(SeriesKey::of).collect();
        let names: Vec<String> = sorted(&keys).into_iter().map(|i| value_text(&values[i])).collect();
        assert_eq!(names, ["2.5", "10", "East", "r2", "r10", "(null)"]);
    }
}
