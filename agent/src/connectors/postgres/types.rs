//! Values in PostgreSQL's binary format: decoding a column's bytes to a [`Value`],
//! encoding a job parameter for the type the server infers for its `$n`.

use bytes::BytesMut;
use outpost_protocol::Param;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type};

use super::numeric::{numeric_binary, numeric_text, NotDecimal, NumericError};
use crate::resultset::Value;

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_UNIX: i64 = 946_684_800;

/// A value in PostgreSQL's binary format, or NULL.
#[derive(Debug)]
pub(super) struct Encoded(pub(super) Option<Vec<u8>>);

impl ToSql for Encoded {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(b) => {
                out.extend_from_slice(b);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The raw binary bytes of a column; decoded by [`decode`].
pub(super) struct Raw<'a>(pub(super) &'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The type a value of `ty` is read as: the base type of a domain, text for an enum.
fn base(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base(inner),
        Kind::Enum(_) => &Type::TEXT,
        _ => ty,
    }
}

fn is_text(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN) || ty.name() == "citext"
}

/// Whether the agent can carry values of `ty`.
pub(super) fn decodable(ty: &Type) -> bool {
    let ty = base(ty);
    is_text(ty)
        || matches!(
            *ty,
            Type::VOID
                | Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::OID
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                | Type::CHAR
                | Type::BYTEA
                | Type::DATE
                | Type::TIME
                | Type::TIMESTAMP
                | Type::TIMESTAMPTZ
                | Type::UUID
                | Type::JSON
                | Type::JSONB
        )
}

/// Why a column's bytes could not be decoded; shown after the column's name and type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum DecodeError {
    /// Text (or JSON) that is not UTF-8.
    #[error(transparent)]
    NotUtf8(#[from] std::str::Utf8Error),
    /// A fixed-width value of the wrong width.
    #[error("expected {expected} bytes, got {got}")]
    Width {
        /// The type's width.
        expected: usize,
        /// The bytes received.
        got: usize,
    },
    /// A NUMERIC that is not well formed.
    #[error(transparent)]
    Numeric(#[from] NumericError),
    /// A date, time or timestamp outside what the agent can represent.
    #[error("{what} out of range")]
    OutOfRange {
        /// `date`, `time` or `timestamp`.
        what: &'static str,
    },
    /// A `jsonb` value whose version byte is not 1.
    #[error("unknown jsonb version")]
    JsonbVersion,
    /// A type the agent does not decode.
    #[error("unsupported type")]
    Unsupported,
}

fn be<const N: usize>(raw: &[u8]) -> Result<[u8; N], DecodeError> {
    raw.try_into().map_err(|_| DecodeError::Width { expected: N, got: raw.len() })
}

fn pg_instant(micros: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_micros(micros.checked_add(PG_EPOCH_UNIX * 1_000_000)?)
}

/// Decodes one value of `ty` from PostgreSQL's binary format.
pub(super) fn decode(ty: &Type, raw: &[u8]) -> Result<Value, DecodeError> {
    let ty = base(ty);
    if is_text(ty) {
        return Ok(Value::Text(std::str::from_utf8(raw)?.to_owned()));
    }
    Ok(match *ty {
        Type::VOID => Value::Null,
        Type::BOOL => Value::Bool(be::<1>(raw)?[0] != 0),
        Type::INT2 => Value::Int(i16::from_be_bytes(be(raw)?).into()),
        Type::INT4 => Value::Int(i32::from_be_bytes(be(raw)?).into()),
        Type::INT8 => Value::Int(i64::from_be_bytes(be(raw)?)),
        Type::OID => Value::Int(u32::from_be_bytes(be(raw)?).into()),
        Type::FLOAT4 => Value::Float(f32::from_be_bytes(be(raw)?).into()),
        Type::FLOAT8 => Value::Float(f64::from_be_bytes(be(raw)?)),
        Type::NUMERIC => Value::Decimal(numeric_text(raw)?),
        Type::CHAR => Value::Text(char::from(be::<1>(raw)?[0]).to_string()),
        Type::BYTEA => Value::Bytes(raw.to_vec()),
        Type::DATE => match i32::from_be_bytes(be(raw)?) {
            i32::MAX => Value::Text("infinity".into()),
            i32::MIN => Value::Text("-infinity".into()),
            days => Value::Date(
                chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
                    .and_then(|d| d.checked_add_signed(chrono::TimeDelta::days(days.into())))
                    .ok_or(DecodeError::OutOfRange { what: "date" })?,
            ),
        },
        Type::TIME => {
            let micros = i64::from_be_bytes(be(raw)?);
            let out_of_range = DecodeError::OutOfRange { what: "time" };
            let secs = u32::try_from(micros.div_euclid(1_000_000)).map_err(|_| out_of_range.clone())?;
            let nanos = u32::try_from(micros.rem_euclid(1_000_000) * 1000).map_err(|_| out_of_range.clone())?;
            Value::Time(chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos).ok_or(out_of_range)?)
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match i64::from_be_bytes(be(raw)?) {
            i64::MAX => Value::Text("infinity".into()),
            i64::MIN => Value::Text("-infinity".into()),
            micros => {
                let at = pg_instant(micros).ok_or(DecodeError::OutOfRange { what: "timestamp" })?;
                if *ty == Type::TIMESTAMPTZ {
                    Value::TimestampTz(at)
                } else {
                    Value::Timestamp(at.naive_utc())
                }
            }
        },
        Type::UUID => Value::Uuid(be(raw)?),
        Type::JSON => Value::Json(std::str::from_utf8(raw)?.to_owned()),
        Type::JSONB => match raw.split_first() {
            Some((1, doc)) => Value::Json(std::str::from_utf8(doc)?.to_owned()),
            _ => return Err(DecodeError::JsonbVersion),
        },
        _ => return Err(DecodeError::Unsupported),
    })
}

/// Why a job parameter cannot be sent for the type the server expects; the job fails
/// with `bad_parameter`, the parameter's number and this text.
#[derive(Debug, thiserror::Error)]
pub(super) enum EncodeError {
    /// The parameter's JSON type does not fit the statement's type.
    #[error("the statement expects {expects} here; the job gives {given}")]
    Mismatch {
        /// The type the server inferred.
        expects: String,
        /// The parameter's JSON type.
        given: &'static str,
    },
    /// This type is given as text in a stated form.
    #[error("the statement expects {expects} here; give it as text ({form})")]
    NotText {
        /// The type the server inferred.
        expects: String,
        /// The text form it takes.
        form: &'static str,
    },
    /// An integer too large for a smaller integer type.
    #[error("{value} does not fit {ty}")]
    DoesNotFit {
        /// The integer given.
        value: i64,
        /// `int2` or `int4`.
        ty: &'static str,
    },
    /// Not a plain decimal number for a NUMERIC.
    #[error(transparent)]
    NotDecimal(#[from] NotDecimal),
    /// Text for a JSON or JSONB that does not parse. The text repeats the parser's words
    /// on purpose: it is the reason the job's requester reads.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// A date, time or timestamp that does not parse in its form.
    #[error(transparent)]
    Temporal(#[from] chrono::ParseError),
    /// A date or time the binary format cannot hold.
    #[error("{what} out of range")]
    OutOfRange {
        /// `date` or `time`.
        what: &'static str,
    },
    /// PostgreSQL's epoch (2000-01-01) could not be built; cannot happen.
    #[error("epoch")]
    Epoch,
    /// Not 32 hex digits (dashes aside).
    #[error("not a UUID")]
    NotUuid,
    /// A type job parameters cannot carry at all.
    #[error(
        "the statement expects {ty} here, which job parameters cannot carry; cast it in the SQL, for example \
         $1::text::{ty}"
    )]
    Uncarried {
        /// The type the server inferred.
        ty: String,
    },
}

/// Encodes a job parameter for the type the server expects at its position.
pub(super) fn encode(p: &Param, ty: &Type) -> Result<Option<Vec<u8>>, EncodeError> {
    let ty = base(ty);
    let mismatch = || {
        let given = match p {
            Param::Null => "null",
            Param::Bool(_) => "bool",
            Param::Int(_) => "int",
            Param::Float(_) => "float",
            Param::Text(_) => "text",
        };
        Err(EncodeError::Mismatch { expects: ty.name().to_owned(), given })
    };
    let text = |form: &'static str| -> Result<&str, EncodeError> {
        match p {
            Param::Text(t) => Ok(t.as_str()),
            _ => Err(EncodeError::NotText { expects: ty.name().to_owned(), form }),
        }
    };
    if matches!(p, Param::Null) {
        return Ok(None);
    }
    if is_text(ty) {
        return match p {
            Param::Text(t) => Ok(Some(t.as_bytes().to_vec())),
            _ => mismatch(),
        };
    }
    let bytes = match (ty.clone(), p) {
        (Type::BOOL, Param::Bool(b)) => vec![u8::from(*b)],
        (Type::INT2, Param::Int(n)) => {
            i16::try_from(*n).map_err(|_| EncodeError::DoesNotFit { value: *n, ty: "int2" })?.to_be_bytes().to_vec()
        }
        (Type::INT4, Param::Int(n)) => {
            i32::try_from(*n).map_err(|_| EncodeError::DoesNotFit { value: *n, ty: "int4" })?.to_be_bytes().to_vec()
        }
        (Type::INT8, Param::Int(n)) => n.to_be_bytes().to_vec(),
        (Type::FLOAT4, Param::Float(f)) => (*f as f32).to_be_bytes().to_vec(),
        (Type::FLOAT4, Param::Int(n)) => (*n as f32).to_be_bytes().to_vec(),
        (Type::FLOAT8, Param::Float(f)) => f.to_be_bytes().to_vec(),
        (Type::FLOAT8, Param::Int(n)) => (*n as f64).to_be_bytes().to_vec(),
        (Type::NUMERIC, Param::Int(n)) => numeric_binary(&n.to_string())?,
        (Type::NUMERIC, Param::Float(f)) if f.is_finite() => numeric_binary(&f.to_string())?,
        (Type::NUMERIC, Param::Text(t)) => numeric_binary(t)?,
        (Type::JSON, Param::Text(t)) => {
            serde_json::from_str::<serde_json::Value>(t).map_err(EncodeError::NotJson)?;
            t.as_bytes().to_vec()
        }
        (Type::JSONB, Param::Text(t)) => {
            serde_json::from_str::<serde_json::Value>(t).map_err(EncodeError::NotJson)?;
            let mut b = vec![1];
            b.extend_from_slice(t.as_bytes());
            b
        }
        (Type::DATE, _) => {
            let d = chrono::NaiveDate::parse_from_str(text("YYYY-MM-DD")?, "%Y-%m-%d")?;
            let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).ok_or(EncodeError::Epoch)?;
            i32::try_from((d - epoch).num_days())
                .map_err(|_| EncodeError::OutOfRange { what: "date" })?
                .to_be_bytes()
                .to_vec()
        }
        (Type::TIME, _) => {
            let t = chrono::NaiveTime::parse_from_str(text("HH:MM:SS")?, "%H:%M:%S%.f")?;
            let micros =
                (t - chrono::NaiveTime::MIN).num_microseconds().ok_or(EncodeError::OutOfRange { what: "time" })?;
            micros.to_be_bytes().to_vec()
        }
        (Type::TIMESTAMP, _) => {
            let s = text("YYYY-MM-DDTHH:MM:SS")?;
            let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))?;
            (t.and_utc().timestamp_micros() - PG_EPOCH_UNIX * 1_000_000).to_be_bytes().to_vec()
        }
        (Type::TIMESTAMPTZ, _) => {
            let t = chrono::DateTime::parse_from_rfc3339(text("RFC 3339")?)?;
            (t.timestamp_micros() - PG_EPOCH_UNIX * 1_000_000).to_be_bytes().to_vec()
        }
        (Type::UUID, _) => {
            let h: String = text("8-4-4-4-12 hex digits")?.chars().filter(|c| *c != '-').collect();
            outpost_protocol::encoding::unhex(&h).filter(|b| b.len() == 16).ok_or(EncodeError::NotUuid)?
        }
        (t, _) if decodable(&t) => return mismatch(),
        _ => return Err(EncodeError::Uncarried { ty: ty.name().to_owned() }),
    };
    Ok(Some(bytes))
}
