//! Estimated text widths, for layout without a font engine: labels are cut, rotated or
//! moved by how wide they would be drawn, not by how many characters they have.
//!
//! The widths are those of a Helvetica-like sans-serif face, rounded up, so an estimate
//! errs on the wide side: text laid out by it stays inside its box in common fonts.

/// Width, in ems, of `c` in a sans-serif face.
fn glyph_em(c: char) -> f64 {
    match c {
        'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '|' | '!' | '`' => 0.3,
        'f' | 't' | 'r' | 'I' | ' ' | '-' | '(' | ')' | '[' | ']' | '/' | '\\' | '"' | '{' | '}' | '*' => 0.38,
        '0'..='9' | '$' | '€' | '£' | '#' | '_' | '+' | '=' | '<' | '>' | '?' | '~' | '^' => 0.6,
        'm' | 'w' | 'M' | 'W' | '%' | '@' | '…' => 0.92,
        'A'..='Z' | '&' => 0.72,
        'a'..='z' => 0.58,
        c if is_wide(c) => 1.0,
        _ => 0.66,
    }
}

/// East Asian wide characters and emoji: a full em each.
fn is_wide(c: char) -> bool {
    matches!(u32::from(c),
        0x1100..=0x115F | 0x2E80..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6 | 0x1F300..=0x1FAFF | 0x20000..=0x3FFFD)
}

/// Estimated width in pixels of `s` drawn at `size` pixels.
pub(crate) fn text_width(s: &str, size: f64) -> f64 {
    s.chars().map(glyph_em).sum::<f64>() * size
}

/// `s` cut to at most `max` pixels wide at `size` pixels, the last character an ellipsis
/// when it was cut (an ellipsis alone when not even one character fits).
pub(crate) fn fit_width(s: &str, max: f64, size: f64) -> String {
    if text_width(s, size) <= max {
        return s.to_owned();
    }
    let budget = max - glyph_em('…') * size;
    let mut used = 0.0;
    let mut out = String::new();
    for c in s.chars() {
        used += glyph_em(c) * size;
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_letters_not_their_count() {
        assert!(text_width("illicit", 11.0) < text_width("MWMWMWM", 11.0) / 2.0);
        assert_eq!(text_width("", 11.0), 0.0);
        assert!((text_width("1,234", 10.0) - (4.0 * 6.0 + 3.0)).abs() < 1e-9);
    }

    #[test]
    fn fitting_cuts_with_an_ellipsis_only_when_needed() {
        assert_eq!(fit_width("north", 100.0, 11.0), "north");
        let cut = fit_width("Northern Europe and the Nordic countries", 100.0, 11.0);
        assert!(cut.ends_with('…') && cut.starts_with("Northern"), "{cut}");
        assert!(text_width(&cut, 11.0) <= 100.0, "{cut}");
        assert_eq!(fit_width("abc", 1.0, 11.0), "…");
    }
}
