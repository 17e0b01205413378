//! PostgreSQL's binary NUMERIC: its exact decimal text, and the binary form of a decimal text.

const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// Why a binary NUMERIC could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumericError {
    /// Shorter than its header or its digits.
    #[error("numeric truncated")]
    Truncated,
    /// A sign word that is none of positive, negative, NaN or ±Infinity.
    #[error("numeric sign {sign:#x}")]
    Sign {
        /// The word found.
        sign: u16,
    },
    /// Its length does not match its digit count.
    #[error("numeric length")]
    Length,
    /// A base-10000 digit above 9999.
    #[error("numeric digit out of range")]
    Digit,
}

/// The exact decimal text of a binary NUMERIC (as PostgreSQL prints it, `dscale` digits
/// after the point).
pub fn numeric_text(raw: &[u8]) -> Result<String, NumericError> {
    let word = |i: usize| -> Result<u16, NumericError> {
        raw.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or(NumericError::Truncated)
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    match sign {
        NUMERIC_NAN => return Ok("NaN".into()),
        NUMERIC_PINF => return Ok("Infinity".into()),
        NUMERIC_NINF => return Ok("-Infinity".into()),
        0 | NUMERIC_NEG => {}
        _ => return Err(NumericError::Sign { sign }),
    }
    if raw.len() != 8 + 2 * ndigits {
        return Err(NumericError::Length);
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(8 + 2 * i)).collect::<Result<_, _>>()?;
    if digits.iter().any(|d| *d > 9999) {
        return Err(NumericError::Digit);
    }
    let digit = |k: i64| usize::try_from(k).ok().and_then(|k| digits.get(k).copied()).unwrap_or(0);
    let mut s = String::new();
    if sign == NUMERIC_NEG && ndigits > 0 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                s.push_str(&digit(k).to_string());
            } else {
                s.push_str(&format!("{:04}", digit(k)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut k = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

/// A parameter given for a NUMERIC that is not a plain decimal number (or too long).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a decimal number")]
pub struct NotDecimal {
    /// The text given.
    pub text: String,
}

/// The binary NUMERIC of a decimal text (`-12.340`, `1e3` is refused: plain notation only).
pub fn numeric_binary(text: &str) -> Result<Vec<u8>, NotDecimal> {
    let t = text.trim();
    let head = |sign: u16| [0u16, 0, sign, 0].iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
    match t {
        "NaN" => return Ok(head(NUMERIC_NAN)),
        "Infinity" => return Ok(head(NUMERIC_PINF)),
        "-Infinity" => return Ok(head(NUMERIC_NINF)),
        _ => {}
    }
    let bad = || NotDecimal { text: text.to_owned() };
    let (neg, unsigned) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if (int.is_empty() && frac.is_empty()) || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let dscale = u16::try_from(frac.len()).map_err(|_| bad())?;
    let int = int.trim_start_matches('0');
    let pad_left = (4 - int.len() % 4) % 4;
    let pad_right = (4 - frac.len() % 4) % 4;
    let all: String = "0".repeat(pad_left) + int + frac + &"0".repeat(pad_right);
    let mut groups: Vec<u16> = all
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).ok().and_then(|s| s.parse().ok()))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let mut weight = i64::try_from((pad_left + int.len()) / 4).map_err(|_| bad())? - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let ndigits = u16::try_from(groups.len()).map_err(|_| bad())?;
    let weight = i16::try_from(weight).map_err(|_| bad())?;
    let sign = if neg && !groups.is_empty() { NUMERIC_NEG } else { 0 };
    let mut out = Vec::with_capacity(8 + 2 * groups.len());
    for w in [ndigits, weight as u16, sign, dscale] {
        out.extend_from_slice(&w.to_be_bytes());
    }
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Ok(out)
}
