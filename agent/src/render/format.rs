//! Numbers as people read them: thousands separators, rounding on the digits, units.

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
