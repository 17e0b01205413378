//! The plaintext of a cache entry: a result in a compact, typed, versioned binary
//! encoding, written and read one row at a time so that neither side holds the result.
//!
//! ```text
//! "OPROWS" version (1 byte, now 1)
//! header   column count (varint), each name (string), provenance (option, below)
//! rows     0x01, then one value per column; repeated
//! end      0x00, flags (1 byte: bit 0 = truncated at the row cap), row count (varint)
//! ```
//!
//! - varint: unsigned LEB128 (at most 10 bytes); signed integers are zigzag-mapped first.
//! - string: byte length (varint), then UTF-8 (checked when read); bytes likewise.
//! - value: a tag, then its payload: `0` NULL; `1` false; `2` true; `3` integer (signed
//!   varint); `4` float (its 8-byte IEEE 754 bit pattern, little-endian: exact, NaN
//!   payloads and -0.0 included); `5` decimal (string, its canonical text); `6` text
//!   (string); `7` bytes; `8` date (signed varint: days from 0001-01-01 CE, which is day
//!   1); `9` time (varint seconds from midnight, varint nanoseconds, a leap second's
//!   ≥ 10⁹); `10` timestamp and `11` timestamp with time zone (signed varint seconds
//!   from the Unix epoch, varint nanoseconds); `12` UUID (16 bytes); `13` JSON (string).
//! - provenance: `0` none, or `1` then the columns' provenance (count, each item), what
//!   the statement reads (option of a list of source columns) and its conditions (option
//!   of a list of items). An item is `0` + source columns (count, each schema, table,
//!   column as strings) or `1` + why (string); an option is `0`, or `1` + the value.
//!
//! The trailer's row count must match the rows read, and nothing may follow it. A
//! plaintext that starts with `{` is an entry of the JSON-lines format of earlier
//! agents, and one with another version byte is of another agent version: both are
//! [`RowsError::Outdated`], never guessed at. `agent/tests/data/cache-rows-v1.bin` pins
//! this format (see the golden test below); a change to it is a new version.

use std::io::Read;

use zeroize::Zeroizing;

use crate::provenance::{Provenance, ResultProvenance, SourceColumn};
use crate::resultset::Value;

/// Start of every entry's plaintext.
pub const MAGIC: &[u8; 6] = b"OPROWS";
/// The format version this agent writes and reads.
pub const VERSION: u8 = 1;

const ROW: u8 = 1;
const END: u8 = 0;
const TRUNCATED: u8 = 1;

/// Why an entry's rows could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    /// The entry's chunks (a chunk that does not authenticate, a cut or a read error).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Written by another version of the agent (JSON lines before version 1).
    #[error("written in another format ({0})")]
    Outdated(String),
    /// Authenticated but not a valid encoding: a bug, never data.
    #[error("malformed rows: {0}")]
    Malformed(&'static str),
}

/// What precedes the rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    /// Column names, in query order.
    pub columns: Vec<String>,
    /// Where each column's values come from, when the query was asked.
    pub provenance: Option<ResultProvenance>,
}

/// What follows the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Whether the connector stopped at the row cap with more rows left.
    pub truncated: bool,
    /// Rows in the entry.
    pub rows: u64,
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn signed(out: &mut Vec<u8>, v: i64) {
    varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn sources(out: &mut Vec<u8>, list: &[SourceColumn]) {
    varint(out, list.len() as u64);
    for s in list {
        for part in [&s.schema, &s.table, &s.column] {
            bytes(out, part.as_bytes());
        }
    }
}

fn items(out: &mut Vec<u8>, list: &[Provenance]) {
    varint(out, list.len() as u64);
    for p in list {
        match p {
            Provenance::Columns { sources: s } => {
                out.push(0);
                sources(out, s);
            }
            Provenance::Unknown { why } => {
                out.push(1);
                bytes(out, why.as_bytes());
            }
        }
    }
}

/// Appends the encoding of one value.
pub fn value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0),
        Value::Bool(b) => out.push(1 + u8::from(*b)),
        Value::Int(i) => {
            out.push(3);
            signed(out, *i);
        }
        Value::Float(f) => {
            out.push(4);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Decimal(d) => {
            out.push(5);
            bytes(out, d.as_bytes());
        }
        Value::Text(t) => {
            out.push(6);
            bytes(out, t.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(7);
            bytes(out, b);
        }
        Value::Date(d) => {
            use chrono::Datelike as _;
            out.push(8);
            signed(out, i64::from(d.num_days_from_ce()));
        }
        Value::Time(t) => {
            use chrono::Timelike as _;
            out.push(9);
            varint(out, u64::from(t.num_seconds_from_midnight()));
            varint(out, u64::from(t.nanosecond()));
        }
        Value::Timestamp(t) => {
            out.push(10);
            let t = t.and_utc();
            signed(out, t.timestamp());
            varint(out, u64::from(t.timestamp_subsec_nanos()));
        }
        Value::TimestampTz(t) => {
            out.push(11);
            signed(out, t.timestamp());
            varint(out, u64::from(t.timestamp_subsec_nanos()));
        }
        Value::Uuid(u) => {
            out.push(12);
            out.extend_from_slice(u);
        }
        Value::Json(j) => {
            out.push(13);
            bytes(out, j.as_bytes());
        }
    }
}

/// Writes an entry's plaintext into a caller's buffer, which the caller drains (into
/// the encrypting writer) whenever it likes.
#[derive(Debug)]
pub struct RowEncoder {
    columns: usize,
    rows: u64,
}

impl RowEncoder {
    /// Appends the magic, version and header.
    pub fn start(out: &mut Vec<u8>, columns: &[String], provenance: Option<&ResultProvenance>) -> Self {
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        varint(out, columns.len() as u64);
        for c in columns {
            bytes(out, c.as_bytes());
        }
        match provenance {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                items(out, &p.columns);
                match &p.reads {
                    None => out.push(0),
                    Some(r) => {
                        out.push(1);
                        sources(out, r);
                    }
                }
                match &p.conditions {
                    None => out.push(0),
                    Some(c) => {
                        out.push(1);
                        items(out, c);
                    }
                }
            }
        }
        Self { columns: columns.len(), rows: 0 }
    }

    /// Appends one row; a row of another width than the header is refused.
    pub fn row(&mut self, out: &mut Vec<u8>, row: &[Value]) -> Result<(), RowsError> {
        if row.len() != self.columns {
            return Err(RowsError::Malformed("a row's width differs from the columns'"));
        }
        out.push(ROW);
        for v in row {
            value(out, v);
        }
        self.rows += 1;
        Ok(())
    }

    /// Rows appended so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends the end marker and trailer.
    pub fn finish(self, out: &mut Vec<u8>, truncated: bool) -> Trailer {
        out.push(END);
        out.push(if truncated { TRUNCATED } else { 0 });
        varint(out, self.rows);
        Trailer { truncated, rows: self.rows }
    }
}

/// Plaintext read per refill of the decoder's buffer.
const READ: usize = 64 * 1024;

/// Reads an entry's plaintext row by row from `input` (the decrypting reader).
pub struct RowDecoder<R: Read> {
    input: R,
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    end: usize,
    columns: usize,
    rows: u64,
    trailer: Option<Trailer>,
    /// The last timestamp's day (from the Unix epoch) and its date.
    day: Option<(i64, chrono::NaiveDate)>,
}

impl<R: Read> std::fmt::Debug for RowDecoder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowDecoder").field("columns", &self.columns).field("rows", &self.rows).finish_non_exhaustive()
    }
}

impl<R: Read> RowDecoder<R> {
    /// Reads the magic, version and header.
    pub fn open(input: R) -> Result<(Self, Header), RowsError> {
        let mut d = Self {
            input,
            buf: Zeroizing::new(vec![0; READ]),
            pos: 0,
            end: 0,
            columns: 0,
            rows: 0,
            trailer: None,
            day: None,
        };
        if !d.fill(1)? {
            return Err(RowsError::Malformed("empty"));
        }
        if d.buf[0] == b'{' {
            return Err(RowsError::Outdated("JSON lines, before the binary row encoding".into()));
        }
        let magic = d.take(MAGIC.len())?;
        if magic != MAGIC {
            return Err(RowsError::Malformed("not a row encoding"));
        }
        let version = d.byte()?;
        if version != VERSION {
            return Err(RowsError::Outdated(format!("row encoding version {version}; this agent reads {VERSION}")));
        }
        let n = d.count()?;
        let columns = (0..n).map(|_| d.string()).collect::<Result<Vec<_>, _>>()?;
        let provenance = match d.byte()? {
            0 => None,
            1 => {
                let columns = d.items()?;
                let reads = if d.flag()? { Some(d.sources()?) } else { None };
                let conditions = if d.flag()? { Some(d.items()?) } else { None };
                Some(ResultProvenance { columns, reads, conditions })
            }
            _ => return Err(RowsError::Malformed("provenance flag")),
        };
        d.columns = columns.len();
        Ok((d, Header { columns, provenance }))
    }

    /// Makes at least `need` bytes available from `pos`; `false` when the input ends first.
    #[inline]
    fn fill(&mut self, need: usize) -> Result<bool, RowsError> {
        if self.end - self.pos >= need {
            return Ok(true);
        }
        self.refill(need)
    }

    #[cold]
    fn refill(&mut self, need: usize) -> Result<bool, RowsError> {
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        while self.end < need {
            let n = self.input.read(&mut self.buf[self.end..])?;
            if n == 0 {
                return Ok(false);
            }
            self.end += n;
        }
        Ok(true)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8], RowsError> {
        if !self.fill(n)? {
            return Err(RowsError::Malformed("cut short"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, RowsError> {
        if self.pos < self.end {
            let b = self.buf[self.pos];
            self.pos += 1;
            return Ok(b);
        }
        Ok(self.take(1)?[0])
    }

    fn flag(&mut self) -> Result<bool, RowsError> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RowsError::Malformed("flag")),
        }
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, RowsError> {
        // Most varints are whole in the buffer: read them from the slice.
        let here = &self.buf[self.pos..self.end];
        let mut v = 0u64;
        for (i, &b) in here.iter().take(10).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        if here.len() >= 10 {
            return Err(RowsError::Malformed("varint too long"));
        }
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(RowsError::Malformed("varint too long"))
    }

    fn signed(&mut self) -> Result<i64, RowsError> {
        let z = self.varint()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn count(&mut self) -> Result<usize, RowsError> {
        usize::try_from(self.varint()?).map_err(|_| RowsError::Malformed("count"))
    }

    fn u32(&mut self) -> Result<u32, RowsError> {
        u32::try_from(self.varint()?).map_err(|_| RowsError::Malformed("u32"))
    }

    /// A length-prefixed byte string; a long one is read straight from the input, so a
    /// length never decides an allocation by itself.
    fn bytes(&mut self) -> Result<Vec<u8>, RowsError> {
        let len = self.count()?;
        let here = (self.end - self.pos).min(len);
        if here == len || len <= READ {
            return Ok(self.take(len)?.to_vec());
        }
        let mut out = self.buf[self.pos..self.pos + here].to_vec();
        self.pos += here;
        let rest = (len - here) as u64;
        (&mut self.input).take(rest).read_to_end(&mut out)?;
        if out.len() != len {
            return Err(RowsError::Malformed("cut short"));
        }
        Ok(out)
    }

    fn string(&mut self) -> Result<String, RowsError> {
        String::from_utf8(self.bytes()?).map_err(|_| RowsError::Malformed("text that is not UTF-8"))
    }

    fn sources(&mut self) -> Result<Vec<SourceColumn>, RowsError> {
        let n = self.count()?;
        (0..n)
            .map(|_| Ok(SourceColumn { schema: self.string()?, table: self.string()?, column: self.string()? }))
            .collect()
    }

    fn items(&mut self) -> Result<Vec<Provenance>, RowsError> {
        let n = self.count()?;
        (0..n)
            .map(|_| match self.byte()? {
                0 => Ok(Provenance::Columns { sources: self.sources()? }),
                1 => Ok(Provenance::Unknown { why: self.string()? }),
                _ => Err(RowsError::Malformed("provenance kind")),
            })
            .collect()
    }

    fn seconds(&mut self) -> Result<chrono::DateTime<chrono::Utc>, RowsError> {
        let (secs, nanos) = (self.signed()?, self.u32()?);
        let (day, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
        // Timestamps in a column mostly fall on the day of the one before: the calendar
        // date is computed once per day, not once per value.
        let date = match self.day {
            Some((d, date)) if d == day => date,
            _ => {
                let date = i32::try_from(day + 719_163)
                    .ok()
                    .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
                    .ok_or(RowsError::Malformed("timestamp out of range"))?;
                self.day = Some((day, date));
                date
            }
        };
        let time = chrono::NaiveTime::from_num_seconds_from_midnight_opt(of_day, nanos)
            .ok_or(RowsError::Malformed("timestamp out of range"))?;
        Ok(date.and_time(time).and_utc())
    }

    fn value(&mut self) -> Result<Value, RowsError> {
        Ok(match self.byte()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Int(self.signed()?),
            4 => {
                let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| RowsError::Malformed("float"))?;
                Value::Float(f64::from_bits(u64::from_le_bytes(b)))
            }
            5 => Value::Decimal(self.string()?),
            6 => Value::Text(self.string()?),
            7 => Value::Bytes(self.bytes()?),
            8 => {
                let days = i32::try_from(self.signed()?).map_err(|_| RowsError::Malformed("date"))?;
                Value::Date(chrono::NaiveDate::from_num_days_from_ce_opt(days).ok_or(RowsError::Malformed("date"))?)
            }
            9 => {
                let (secs, nanos) = (self.u32()?, self.u32()?);
                let t = chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos);
                Value::Time(t.ok_or(RowsError::Malformed("time"))?)
            }
            10 => Value::Timestamp(self.seconds()?.naive_utc()),
            11 => Value::TimestampTz(self.seconds()?),
            12 => Value::Uuid(self.take(16)?.try_into().map_err(|_| RowsError::Malformed("uuid"))?),
            13 => Value::Json(self.string()?),
            _ => return Err(RowsError::Malformed("value tag")),
        })
    }

    /// Passes over a value without building it.
    fn skip_value(&mut self) -> Result<(), RowsError> {
        let fixed = match self.byte()? {
            0..=2 => 0,
            3 | 8 => {
                self.varint()?;
                0
            }
            4 => 8,
            12 => 16,
            9..=11 => {
                self.varint()?;
                self.varint()?;
                0
            }
            5 | 6 | 7 | 13 => self.count()?,
            _ => return Err(RowsError::Malformed("value tag")),
        };
        let here = (self.end - self.pos).min(fixed);
        self.pos += here;
        let rest = (fixed - here) as u64;
        if rest > 0 && std::io::copy(&mut (&mut self.input).take(rest), &mut std::io::sink())? != rest {
            return Err(RowsError::Malformed("cut short"));
        }
        Ok(())
    }

    /// The next row, or `None` after the last (the trailer is then read and checked).
    pub fn next_row(&mut self) -> Result<Option<Vec<Value>>, RowsError> {
        let mut row = Vec::with_capacity(self.columns);
        Ok(self.next_row_into(&mut row, None)?.then_some(row))
    }

    /// The next row into `row` (cleared first), reusing its allocation; with `wanted`,
    /// the values of the columns it marks `false` are passed over and stand as NULL.
    /// `false` after the last row.
    pub fn next_row_into(&mut self, row: &mut Vec<Value>, wanted: Option<&[bool]>) -> Result<bool, RowsError> {
        row.clear();
        if self.trailer.is_some() {
            return Ok(false);
        }
        match self.byte()? {
            ROW => {
                for i in 0..self.columns {
                    if wanted.is_some_and(|w| !w.get(i).copied().unwrap_or(true)) {
                        self.skip_value()?;
                        row.push(Value::Null);
                    } else {
                        row.push(self.value()?);
                    }
                }
                self.rows += 1;
                Ok(true)
            }
            END => {
                let flags = self.byte()?;
                if flags & !TRUNCATED != 0 {
                    return Err(RowsError::Malformed("trailer flags"));
                }
                if self.varint()? != self.rows {
                    return Err(RowsError::Malformed("the row count differs from the rows"));
                }
                self.trailer = Some(Trailer { truncated: flags & TRUNCATED != 0, rows: self.rows });
                Ok(false)
            }
            _ => Err(RowsError::Malformed("row marker")),
        }
    }

    /// After the last row: the trailer, once the input has ended right after it (for an
    /// entry, that is when its final chunk has authenticated with nothing after it).
    pub fn finish(mut self) -> Result<Trailer, RowsError> {
        let trailer = self.trailer.ok_or(RowsError::Malformed("rows left"))?;
        if self.pos != self.end || self.input.read(&mut [0u8; 1])? != 0 {
            return Err(RowsError::Malformed("bytes after the trailer"));
        }
        Ok(trailer)
    }
}

#[cfg(test)]
#[path = "rows_tests.rs"]
mod tests;
