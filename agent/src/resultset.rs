//! The in-memory result of a query: column names and typed values.
//!
//! Raw rows exist only here, in the agent's memory, between the connector and the
//! renderer. Nothing in this module writes to disk or to the network.

/// One database value, typed as the connector read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// An exact decimal (NUMERIC, DECIMAL) in canonical text form (`-12.3400`, `NaN`):
    /// never carried through a float, except to place it on a chart.
    Decimal(String),
    /// Text.
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A calendar date.
    Date(chrono::NaiveDate),
    /// A time of day without a time zone.
    Time(chrono::NaiveTime),
    /// A timestamp without a time zone.
    Timestamp(chrono::NaiveDateTime),
    /// An instant (timestamp with time zone), in UTC.
    TimestampTz(chrono::DateTime<chrono::Utc>),
    /// A UUID.
    Uuid([u8; 16]),
    /// A JSON document, as text.
    Json(String),
}

impl Value {
    /// The value as a number, when it is one. Integers and decimals widen to f64 for
    /// charts only; tables show the exact value.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Decimal(d) => d.parse().ok(),
            _ => None,
        }
    }

    /// Whether it is a number (integer, float or decimal).
    pub fn is_number(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Float(_) | Value::Decimal(_))
    }

    /// The type's name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
            Value::Uuid(_) => "uuid",
            Value::Json(_) => "json",
        }
    }
}

/// The canonical hyphenated form of a UUID.
pub fn uuid_text(u: &[u8; 16]) -> String {
    let h = outpost_protocol::encoding::hex(u);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Text of a temporal value: ISO 8601 dates and times, RFC 3339 with `Z` for instants;
/// fractional seconds only when present.
pub fn temporal_text(v: &Value) -> Option<String> {
    use chrono::SecondsFormat;
    Some(match v {
        Value::Date(d) => d.format("%Y-%m-%d").to_string(),
        Value::Time(t) => t.format("%H:%M:%S%.f").to_string(),
        Value::Timestamp(t) => t.format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
        Value::TimestampTz(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        _ => return None,
    })
}

/// Rows read by a connector, at most the row cap, with a flag when more existed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultSet {
    /// Column names, in query order.
    pub columns: Vec<String>,
    /// Rows; each has `columns.len()` values.
    pub rows: Vec<Vec<Value>>,
    /// Whether the connector stopped at the row cap with more rows left.
    pub truncated: bool,
    /// Where each column's values come from, when the connector was asked to find out
    /// (a connection with mask rules).
    pub provenance: Option<crate::provenance::ResultProvenance>,
}
