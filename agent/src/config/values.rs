//! Checked values of agent.yaml: integers whose range is part of the type, and connection names.

use serde::Deserialize;

/// An integer that must lie in `MIN..=MAX`; the range is part of the type, so a bad
/// value is reported by the parser with its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "u64")]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub(super) u64);

/// A number outside its field's range; the parser puts the file, line and field before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be between {min} and {max}, got {got}")]
pub struct OutOfRange {
    /// Smallest allowed.
    pub min: u64,
    /// Largest allowed.
    pub max: u64,
    /// The value given.
    pub got: u64,
}

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for Bounded<MIN, MAX> {
    type Error = OutOfRange;
    fn try_from(v: u64) -> Result<Self, OutOfRange> {
        if (MIN..=MAX).contains(&v) {
            Ok(Self(v))
        } else {
            Err(OutOfRange { min: MIN, max: MAX, got: v })
        }
    }
}

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// The value.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// A connection name: short, lower-case, safe in logs and paths.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String")]
pub struct ConnectionName(String);

/// A connection name outside the allowed characters. The text repeats the rule's words
/// on purpose: the parser prints this error alone, after the file, line and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection name {name:?}: {source}")]
pub struct BadConnectionName {
    /// The name given.
    pub name: String,
    /// The rule it breaks.
    #[source]
    pub source: outpost_protocol::job::InvalidName,
}

impl TryFrom<String> for ConnectionName {
    type Error = BadConnectionName;
    fn try_from(s: String) -> Result<Self, BadConnectionName> {
        match outpost_protocol::job::validate_name(&s) {
            Ok(()) => Ok(Self(s)),
            Err(source) => Err(BadConnectionName { name: s, source }),
        }
    }
}

impl ConnectionName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
