use super::*;

/// A reader that hands out at most `step` bytes per read: every refill boundary.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn encode(header: &Header, rows: &[Vec<Value>], truncated: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = RowEncoder::start(&mut out, &header.columns, header.provenance.as_ref());
    for r in rows {
        enc.row(&mut out, r).expect("row");
    }
    enc.finish(&mut out, truncated);
    out
}

fn decode(input: impl Read) -> Result<(Header, Vec<Vec<Value>>, Trailer), RowsError> {
    let (mut d, header) = RowDecoder::open(input)?;
    let mut rows = Vec::new();
    while let Some(r) = d.next_row()? {
        rows.push(r);
    }
    Ok((header, rows, d.finish()?))
}

/// Equal, floats compared by their bits (NaN is not equal to itself).
fn same(a: &[Vec<Value>], b: &[Vec<Value>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter().zip(y).all(|(u, v)| match (u, v) {
                    (Value::Float(f), Value::Float(g)) => f.to_bits() == g.to_bits(),
                    _ => u == v,
                })
        })
}

/// The fixed result of the golden file: every value type, edge values, NULLs, both
/// kinds of provenance.
fn golden_result() -> (Header, Vec<Vec<Value>>) {
    let date = chrono::NaiveDate::from_ymd_opt(1999, 12, 31).expect("date");
    let time = chrono::NaiveTime::from_hms_nano_opt(23, 59, 58, 123_456_789).expect("time");
    let leap = chrono::NaiveTime::from_hms_nano_opt(23, 59, 59, 1_500_000_000).expect("leap second");
    let src = |t: &str, c: &str| SourceColumn { schema: "public".into(), table: t.into(), column: c.into() };
    let header = Header {
        columns: ["n", "b", "i", "f", "d", "t", "raw", "day", "tod", "ts", "tstz", "id", "doc"]
            .map(str::to_owned)
            .to_vec(),
        provenance: Some(ResultProvenance {
            columns: vec![Provenance::columns(vec![src("orders", "id")]), Provenance::unknown("an expression")],
            reads: Some(vec![src("orders", "id"), src("orders", "email")]),
            conditions: None,
        }),
    };
    let rows = vec![
        vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Float(-0.0),
            Value::Decimal("-123456789012345678901234567890.000000001".into()),
            Value::Text("ünïcode \u{1f600} \0 end".into()),
            Value::Bytes(vec![0, 255, 7]),
            Value::Date(date),
            Value::Time(time),
            Value::Timestamp(date.and_time(time)),
            Value::TimestampTz(date.and_time(time).and_utc()),
            Value::Uuid([0xab; 16]),
            Value::Json(r#"{"a":[1,2.5,null]}"#.into()),
        ],
        vec![
            Value::Bool(false),
            Value::Null,
            Value::Int(i64::MAX),
            Value::Float(f64::from_bits(0x7ff8_0000_0000_0001)),
            Value::Decimal("NaN".into()),
            Value::Text(String::new()),
            Value::Bytes(Vec::new()),
            Value::Date(chrono::NaiveDate::MIN),
            Value::Time(leap),
            Value::Timestamp(chrono::NaiveDate::MAX.and_time(leap)),
            Value::TimestampTz(chrono::DateTime::UNIX_EPOCH),
            Value::Uuid([0; 16]),
            Value::Json("null".into()),
        ],
        (0..13).map(|i| if i % 2 == 0 { Value::Null } else { Value::Int(-i) }).collect(),
    ];
    (header, rows)
}

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cache-rows-v1.bin");

#[test]
fn the_golden_file_is_exactly_the_encoding_of_the_fixed_result_and_decodes_to_it() {
    let (header, rows) = golden_result();
    let bytes = encode(&header, &rows, true);
    if std::env::var_os("OUTPOST_WRITE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &bytes).expect("write the golden file");
    }
    let golden = std::fs::read(GOLDEN).expect("agent/tests/data/cache-rows-v1.bin");
    assert!(
        bytes == golden,
        "the row encoding changed: entries written by earlier agents would read differently. A deliberate \
         change is a new VERSION with its own golden file (OUTPOST_WRITE_GOLDEN=1 writes it)"
    );
    let (h, back, trailer) = decode(golden.as_slice()).expect("decode the golden file");
    assert_eq!(h, header);
    assert!(same(&back, &rows), "{back:?}");
    assert_eq!(trailer, Trailer { truncated: true, rows: 3 });
}

#[test]
fn every_value_comes_back_exactly_across_every_refill_boundary() {
    let (header, mut rows) = golden_result();
    let values = [0.1, 1.0 / 3.0, -0.0, f64::MIN_POSITIVE, f64::MAX, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
    for (i, f) in values.iter().enumerate() {
        let mut r = rows[2].clone();
        r[3] = Value::Float(*f);
        r[2] = Value::Int(1 << (i * 8));
        rows.push(r);
    }
    // A value longer than one refill, read straight from the input.
    let mut long = rows[0].clone();
    long[5] = Value::Text("é".repeat(100_000));
    long[6] = Value::Bytes((0..300_000u32).map(|i| i as u8).collect());
    rows.push(long);
    let bytes = encode(&header, &rows, false);
    for step in [1, 7, 4096, usize::MAX] {
        let (h, back, trailer) = decode(Trickle { data: &bytes, step }).expect("decode");
        assert_eq!(h, header);
        assert!(same(&back, &rows), "reads of {step} bytes");
        assert_eq!(trailer, Trailer { truncated: false, rows: rows.len() as u64 });
    }
    // No columns, no rows, no provenance.
    let empty = encode(&Header::default(), &[], false);
    let (h, back, trailer) = decode(empty.as_slice()).expect("decode");
    assert_eq!((h, back.len(), trailer.rows), (Header::default(), 0, 0));
}

#[test]
fn old_formats_are_outdated_and_anything_malformed_is_refused() {
    let legacy = b"{\"columns\":[\"n\"],\"truncated\":false,\"provenance\":null}\n[1]\n";
    assert!(matches!(decode(&legacy[..]), Err(RowsError::Outdated(_))));
    let (header, rows) = golden_result();
    let good = encode(&header, &rows, false);
    let mut other = good.clone();
    other[MAGIC.len()] = VERSION + 1;
    assert!(matches!(decode(other.as_slice()), Err(RowsError::Outdated(_))));
    let malformed = |bytes: &[u8]| matches!(decode(bytes), Err(RowsError::Malformed(_)));
    assert!(malformed(&[]));
    assert!(malformed(b"OPCACHE"));
    for cut in [3, 20, good.len() / 2, good.len() - 1] {
        assert!(malformed(&good[..cut]), "cut at {cut}");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(malformed(&longer), "a byte after the trailer");
    let mut count = good.clone();
    *count.last_mut().expect("count") += 1;
    assert!(malformed(&count), "a row count that is not the rows'");
    // Text that is not UTF-8.
    let mut out = Vec::new();
    let mut enc = RowEncoder::start(&mut out, &["t".into()], None);
    enc.row(&mut out, &[Value::Text("ab".into())]).expect("row");
    enc.finish(&mut out, false);
    let at = out.iter().rposition(|b| *b == b'a').expect("text");
    out[at] = 0xff;
    assert!(malformed(&out));
    // A row of the wrong width is refused when written.
    let mut enc = RowEncoder::start(&mut Vec::new(), &["a".into(), "b".into()], None);
    assert!(matches!(enc.row(&mut Vec::new(), &[Value::Null]), Err(RowsError::Malformed(_))));
}

#[test]
fn timestamps_come_back_exactly_on_every_day_before_and_after_the_epoch() {
    let mut at = -62_135_596_800i64; // 0001-01-01T00:00:00Z
    let mut rows = Vec::new();
    let (mut step, mut i) = (1i64, 0);
    while at < 253_402_300_799 {
        let t = chrono::DateTime::from_timestamp(at, (at.rem_euclid(1_000_000_000)) as u32).expect("in range");
        rows.push(vec![Value::TimestampTz(t), Value::Timestamp(t.naive_utc())]);
        // Same day, next day, far away: every branch of the day cache.
        step = (step * 7 + 13) % 400_000_000;
        i += 1;
        at += if i % 3 == 0 { step } else { step % 50_000 };
    }
    let header = Header { columns: vec!["tz".into(), "ts".into()], provenance: None };
    let bytes = encode(&header, &rows, false);
    let (_, back, _) = decode(bytes.as_slice()).expect("decode");
    assert!(rows.len() > 100 && same(&back, &rows), "{} rows", rows.len());
}
