//! The in-memory result of a query: column names and typed values.
//!
//! Raw rows exist only here, in the agent's memory, between the connector and the
//! renderer. Nothing in this module writes to disk or to the network.

/// One database value, typed as the connector read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text.
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl Value {
    /// The value as a number, when it is one (integers widen to f64 for charts only).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
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
}
