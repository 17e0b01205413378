//! Numbers as people read them: thousands separators, rounding on the digits, units, and
//! a chart's number format (plain, compact, percent, currency).

use outpost_protocol::NumberFormat;

/// `-1234567.891` with 2 decimals → `-1,234,567.89`. `text` is a plain decimal number
/// (`-?digits(.digits)?`); anything else (`NaN`, exponents) is returned as it is.
pub(crate) fn format_number(text: &str, decimals: Option<u8>) -> String {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return text.to_owned();
    }
    let (int, frac) = match decimals {
        None => (int.to_owned(), frac.to_owned()),
        Some(d) => round_digits(int, frac, usize::from(d)),
    };
    let mut out = String::with_capacity(int.len() + int.len() / 3 + frac.len() + 2);
    if neg && (int.bytes().any(|b| b != b'0') || frac.bytes().any(|b| b != b'0')) {
        out.push('-');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    out
}

/// A unit as it follows a number: a word or code (`EUR`, `ms`, `kg`) after a no-break space,
/// so that `43,725,380 EUR` never reads `43,725,380EUR` nor wraps between the two; a symbol
/// (`%`, `€`, `‰`) or a unit that brings its own spacing (` EUR`) as it is.
pub(crate) fn unit_suffix(unit: &str) -> String {
    match unit.chars().next() {
        Some(c) if c.is_alphabetic() => format!("\u{a0}{unit}"),
        _ => unit.to_owned(),
    }
}

/// How a chart writes its values: the job's `format`, `unit` and `decimals`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ValueFormat {
    pub(crate) kind: NumberFormat,
    pub(crate) unit: Option<String>,
    pub(crate) decimals: Option<u8>,
}

impl ValueFormat {
    pub(crate) fn new(kind: NumberFormat, unit: Option<&str>, decimals: Option<u8>) -> Self {
        Self { kind, unit: unit.map(str::to_owned), decimals }
    }

    /// A value in a tooltip or legend, exact: `text` is its own decimal text (as a table
    /// shows it), `v` the number. Grouped, rounded to `decimals`, then the unit.
    pub(crate) fn value(&self, text: &str, v: f64) -> String {
        let plain_text = if is_plain_decimal(text) { text.to_owned() } else { plain_number(v) };
        match self.kind {
            NumberFormat::Plain | NumberFormat::Compact => self.with_unit(format_number(&plain_text, self.decimals)),
            NumberFormat::Currency => self.with_unit(format_number(&plain_text, Some(self.decimals.unwrap_or(2)))),
            NumberFormat::Percent => {
                let shifted = shift_decimal(&plain_text, 2);
                let shown = match self.decimals {
                    Some(d) => format_number(&shifted, Some(d)),
                    // At most two decimals of a percent unless asked: 25.34%.
                    None if shifted.split_once('.').is_some_and(|(_, f)| f.len() > 2) => {
                        format_number(&shifted, Some(2))
                    }
                    None => format_number(&shifted, None),
                };
                format!("{shown}%")
            }
        }
    }

    /// A tick of a value axis whose ticks need `decimals` decimals (`scientific`: the
    /// plain label is in scientific notation and is kept so).
    pub(crate) fn tick(&self, v: f64, decimals: usize, plain: String, scientific: bool) -> String {
        if v == 0.0 {
            return match self.kind {
                NumberFormat::Percent => "0%".to_owned(),
                _ => self.with_unit("0".to_owned()),
            };
        }
        match self.kind {
            NumberFormat::Plain | NumberFormat::Currency => self.with_unit(plain),
            NumberFormat::Compact => self.with_unit(compact(v, decimals).unwrap_or(plain)),
            // Tiny or huge percentages in scientific notation: 1e-5%.
            NumberFormat::Percent if decimals > 4 || (scientific && v.abs() >= 1e8) => {
                let s = format!("{:.2e}", v * 100.0);
                match s.split_once('e') {
                    Some((mantissa, exponent)) => format!("{}e{exponent}%", trim_zeros(mantissa.to_owned())),
                    None => format!("{s}%"),
                }
            }
            NumberFormat::Percent => {
                let text = trim_zeros(format!("{:.*}", decimals.saturating_sub(2), v * 100.0));
                format!("{}%", format_number(&text, None))
            }
        }
    }

    /// A single value shown large (a scalar): as [`ValueFormat::value`], except that
    /// `compact` shortens it to three significant digits (or `decimals`): `43.7M`.
    pub(crate) fn headline(&self, text: &str, v: f64) -> String {
        if self.kind != NumberFormat::Compact || v.abs() < 1e3 || v.abs() >= 1e15 {
            return self.value(text, v);
        }
        // Rounded to three significant digits first, so 999,999 is 1M, not 1,000k.
        let v = match self.decimals {
            None => {
                let f = 10f64.powi(2 - v.abs().log10().floor() as i32);
                (v * f).round() / f
            }
            Some(_) => v,
        };
        let (scale, suffix) = COMPACT.iter().find(|(s, _, _)| v.abs() >= *s).map_or((1.0, ""), |(s, x, _)| (*s, *x));
        let scaled = v / scale;
        let decimals = match self.decimals {
            Some(d) => usize::from(d),
            None if scaled.abs() < 9.995 => 2,
            None if scaled.abs() < 99.95 => 1,
            None => 0,
        };
        let text = format!("{scaled:.decimals$}");
        let text = if self.decimals.is_some() { text } else { trim_zeros(text) };
        self.with_unit(format!("{}{suffix}", format_number(&text, None)))
    }

    fn with_unit(&self, mut s: String) -> String {
        if let Some(u) = &self.unit {
            s.push_str(&unit_suffix(u));
        }
        s
    }
}

/// Suffixes of compact numbers, by powers of a thousand.
const COMPACT: [(f64, &str, usize); 4] = [(1e12, "T", 12), (1e9, "B", 9), (1e6, "M", 6), (1e3, "k", 3)];

/// `12500000` with ticks of 0 decimals → `12.5M`; below a thousand as it is. `None` when
/// beyond what the suffixes cover (a thousand trillion) or too small to need one.
fn compact(v: f64, decimals: usize) -> Option<String> {
    let a = v.abs();
    if a >= 1e15 {
        return None;
    }
    for (scale, suffix, exp) in COMPACT {
        if a >= scale {
            // Exact for the axis's step: its decimals plus the digits the suffix moves.
            let text = trim_zeros(format!("{:.*}", decimals + exp, v / scale));
            return Some(format!("{}{suffix}", format_number(&text, None)));
        }
    }
    (decimals <= 2).then(|| format_number(&trim_zeros(format!("{v:.decimals$}")), None))
}

/// `"2.50"` → `"2.5"`, `"3.00"` → `"3"`.
fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Whether `text` is `-?digits(.digits)?`.
fn is_plain_decimal(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit())
}

/// A plain decimal text of `v`, without exponent (`1e-7` → `0.0000001`).
fn plain_number(v: f64) -> String {
    let s = v.to_string();
    if is_plain_decimal(&s) {
        s
    } else {
        trim_zeros(format!("{v:.12}"))
    }
}

/// The decimal point of a plain decimal text moved `by` places right: times 10^by, exactly.
fn shift_decimal(text: &str, by: usize) -> String {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let mut frac: String = frac.to_owned();
    while frac.len() < by {
        frac.push('0');
    }
    let (moved, rest) = frac.split_at(by);
    let int = format!("{int}{moved}");
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let sign = if neg { "-" } else { "" };
    if rest.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{rest}")
    }
}

/// Rounds `int.frac` to `d` decimals, half away from zero, on the digits.
fn round_digits(int: &str, frac: &str, d: usize) -> (String, String) {
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes().chain(std::iter::repeat(b'0')).take(d)).collect();
    let round_up = frac.as_bytes().get(d).is_some_and(|b| *b >= b'5');
    if round_up {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - d;
    let int = String::from_utf8_lossy(&digits[..split]).trim_start_matches('0').to_owned();
    let int = if int.is_empty() { "0".to_owned() } else { int };
    (int, String::from_utf8_lossy(&digits[split..]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_and_rounded_on_their_digits() {
        assert_eq!(format_number("1234567", None), "1,234,567");
        assert_eq!(format_number("-1234567.891", Some(2)), "-1,234,567.89");
        assert_eq!(format_number("0.005", Some(2)), "0.01");
        assert_eq!(format_number("999.995", Some(2)), "1,000.00");
        assert_eq!(format_number("12", Some(3)), "12.000");
        assert_eq!(format_number("-0.001", Some(2)), "0.00");
        assert_eq!(
            format_number("123456789012345678901234567890.125", Some(2)),
            "123,456,789,012,345,678,901,234,567,890.13"
        );
        assert_eq!(format_number("NaN", Some(2)), "NaN");
        assert_eq!(format_number("1e10", None), "1e10");
    }

    fn f(kind: NumberFormat, unit: Option<&str>, decimals: Option<u8>) -> ValueFormat {
        ValueFormat::new(kind, unit, decimals)
    }

    /// Issue 23: tooltips showed `8690173.57`; formats and units are the job's choice.
    #[test]
    fn chart_values_follow_the_format_unit_and_decimals() {
        let plain = ValueFormat::default();
        assert_eq!(plain.value("8690173.57", 8_690_173.57), "8,690,173.57");
        assert_eq!(f(NumberFormat::Plain, None, Some(0)).value("8690173.57", 0.0), "8,690,174");
        assert_eq!(f(NumberFormat::Plain, Some("EUR"), None).value("43725380", 0.0), "43,725,380\u{a0}EUR");
        assert_eq!(f(NumberFormat::Currency, Some("EUR"), None).value("43725380", 0.0), "43,725,380.00\u{a0}EUR");
        assert_eq!(f(NumberFormat::Percent, None, None).value("0.2534", 0.2534), "25.34%");
        assert_eq!(f(NumberFormat::Percent, None, None).value("0.25", 0.25), "25%");
        assert_eq!(f(NumberFormat::Percent, None, None).value("0.123456", 0.0), "12.35%");
        assert_eq!(f(NumberFormat::Percent, None, Some(0)).value("-0.255", 0.0), "-26%");
        assert_eq!(f(NumberFormat::Percent, None, None).value("12", 12.0), "1,200%");
        // A float whose text has an exponent is written out.
        assert_eq!(plain.value("1e-7", 1e-7), "0.0000001");
        // Compact shortens axis ticks; a tooltip stays exact.
        assert_eq!(f(NumberFormat::Compact, None, None).value("1234567", 0.0), "1,234,567");
    }

    #[test]
    fn a_compact_headline_keeps_three_significant_digits() {
        let c = f(NumberFormat::Compact, None, None);
        assert_eq!(c.headline("43725380", 43_725_380.0), "43.7M");
        assert_eq!(c.headline("1234", 1_234.0), "1.23k");
        assert_eq!(c.headline("1000", 1_000.0), "1k");
        assert_eq!(c.headline("999", 999.0), "999");
        assert_eq!(c.headline("-2500000000", -2.5e9), "-2.5B");
        assert_eq!(c.headline("999999", 999_999.0), "1M");
        assert_eq!(
            f(NumberFormat::Compact, Some("EUR"), Some(2)).headline("43725380", 43_725_380.0),
            "43.73M\u{a0}EUR"
        );
        assert_eq!(f(NumberFormat::Percent, None, Some(1)).headline("0.253", 0.253), "25.3%");
    }

    #[test]
    fn axis_ticks_follow_the_format() {
        let c = f(NumberFormat::Compact, None, None);
        let tick =
            |fmt: &ValueFormat, v: f64, d: usize| fmt.tick(v, d, format_number(&format!("{v:.d$}"), None), false);
        assert_eq!(tick(&c, 12_500_000.0, 0), "12.5M");
        assert_eq!(tick(&c, 1_250.0, 0), "1.25k");
        assert_eq!(tick(&c, -2_000_000_000.0, 0), "-2B");
        assert_eq!(tick(&c, 3e12, 0), "3T");
        assert_eq!(tick(&c, 250.0, 0), "250");
        assert_eq!(tick(&c, 0.5, 1), "0.5");
        assert_eq!(tick(&c, 0.0, 0), "0");
        assert_eq!(tick(&f(NumberFormat::Compact, Some("EUR"), None), 2e6, 0), "2M\u{a0}EUR");
        let p = f(NumberFormat::Percent, None, None);
        assert_eq!(tick(&p, 0.05, 2), "5%");
        assert_eq!(tick(&p, 0.025, 3), "2.5%");
        assert_eq!(tick(&p, 1.5, 1), "150%");
        assert_eq!(tick(&p, 0.0, 1), "0%");
        // Ticks of 2.5 points (decimals 3, which a plain axis writes in scientific notation).
        assert_eq!(p.tick(0.125, 3, "1.25e-1".to_owned(), true), "12.5%");
        assert_eq!(p.tick(0.000_01, 6, "1e-5".to_owned(), true), "1e-3%");
        assert_eq!(tick(&f(NumberFormat::Currency, Some("USD"), None), 1000.0, 0), "1,000\u{a0}USD");
    }

    /// Issue 23: `"unit": "EUR"` rendered `43,725,380EUR`.
    #[test]
    fn word_units_get_a_no_break_space_and_symbols_stay_attached() {
        assert_eq!(unit_suffix("EUR"), "\u{a0}EUR");
        assert_eq!(unit_suffix("ms"), "\u{a0}ms");
        assert_eq!(unit_suffix("%"), "%");
        assert_eq!(unit_suffix("€"), "€");
        assert_eq!(unit_suffix(" EUR"), " EUR");
    }
}
