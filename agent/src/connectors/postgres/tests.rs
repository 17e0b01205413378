//! Unit tests of the PostgreSQL binary format: numerics and parameters.

use outpost_protocol::Param;
use tokio_postgres::types::Type;

use super::types::{decode, encode};
use super::{numeric_binary, numeric_text};
use crate::resultset::Value;

#[test]
fn numerics_round_trip_exactly_through_the_binary_format() {
    for text in [
        "0",
        "1",
        "-1",
        "10000",
        "12345678901234567890123456789012345678.123456789012345678901234567890",
        "0.00001234",
        "-0.5",
        "100.100",
        "9999.9999",
        "0.000",
        "NaN",
        "Infinity",
        "-Infinity",
    ] {
        let bin = numeric_binary(text).expect(text);
        assert_eq!(numeric_text(&bin).expect(text), text, "{text}");
    }
    assert_eq!(numeric_text(&numeric_binary("007.50").expect("leading zeros")).expect("text"), "7.50");
    assert_eq!(numeric_text(&numeric_binary("-0").expect("minus zero")).expect("text"), "0");
    for bad in ["", ".", "1e5", "1.2.3", "abc", "--1"] {
        assert!(numeric_binary(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn parameters_are_checked_against_the_type_the_server_expects() {
    assert_eq!(encode(&Param::Int(7), &Type::INT4).expect("int4"), Some(7i32.to_be_bytes().to_vec()));
    let said = |p: Param, ty: &Type| encode(&p, ty).expect_err("refused").to_string();
    assert_eq!(said(Param::Int(1 << 40), &Type::INT4), "1099511627776 does not fit int4");
    assert_eq!(said(Param::Text("x".into()), &Type::INT8), "the statement expects int8 here; the job gives text");
    assert_eq!(said(Param::Int(1), &Type::DATE), "the statement expects date here; give it as text (YYYY-MM-DD)");
    assert_eq!(said(Param::Text("1e3".into()), &Type::NUMERIC), "\"1e3\" is not a decimal number");
    assert!(said(Param::Text("{".into()), &Type::JSONB).starts_with("not JSON: EOF while parsing"));
    assert_eq!(said(Param::Text("abc".into()), &Type::UUID), "not a UUID");
    assert_eq!(encode(&Param::Null, &Type::UUID).expect("null"), None);
    let uuid = encode(&Param::Text("00112233-4455-6677-8899-aabbccddeeff".into()), &Type::UUID).expect("uuid");
    assert_eq!(
        decode(&Type::UUID, &uuid.expect("some")).expect("decode"),
        Value::Uuid(*b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff")
    );
    let ts = encode(&Param::Text("2024-02-29T12:34:56.789".into()), &Type::TIMESTAMP).expect("ts").expect("some");
    assert_eq!(
        crate::resultset::temporal_text(&decode(&Type::TIMESTAMP, &ts).expect("decode")).as_deref(),
        Some("2024-02-29T12:34:56.789")
    );
    assert_eq!(
        said(Param::Text("x".into()), &Type::INTERVAL),
        "the statement expects interval here, which job parameters cannot carry; cast it in the SQL, for example \
         $1::text::interval"
    );
}

/// A value the agent cannot read names what is wrong with it: the words follow the
/// column's name in the job's failure.
#[test]
fn undecodable_values_say_what_is_wrong() {
    let said = |ty: &Type, raw: &[u8]| decode(ty, raw).expect_err("undecodable").to_string();
    assert_eq!(said(&Type::INT4, &[0, 1]), "expected 4 bytes, got 2");
    assert_eq!(said(&Type::NUMERIC, &[0, 1]), "numeric truncated");
    assert_eq!(said(&Type::NUMERIC, &[0, 0, 0, 0, 0x12, 0x34, 0, 0]), "numeric sign 0x1234");
    assert_eq!(said(&Type::NUMERIC, &[0, 1, 0, 0, 0, 0, 0, 0]), "numeric length");
    assert_eq!(said(&Type::NUMERIC, &[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]), "numeric digit out of range");
    assert_eq!(said(&Type::TIMESTAMP, &(i64::MAX - 1).to_be_bytes()), "timestamp out of range");
    assert_eq!(said(&Type::TIME, &(-1i64).to_be_bytes()), "time out of range");
    assert_eq!(said(&Type::JSONB, &[2, b'{', b'}']), "unknown jsonb version");
    assert_eq!(said(&Type::TEXT, &[0xff]), "invalid utf-8 sequence of 1 bytes from index 0");
    assert_eq!(said(&Type::INTERVAL, &[0; 16]), "unsupported type");
    assert_eq!(numeric_text(&[0, 0, 0, 0, 0xC0, 0, 0, 0]).as_deref(), Ok("NaN"));
}
