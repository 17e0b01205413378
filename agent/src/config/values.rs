//! Checked values of agent.yaml: integers whose range is part of the type, and connection names.

use serde::Deserialize;

/// An integer that must lie in `MIN..=MAX`; the range is part of the type, so a bad
/// value is reported by the parser with its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "u64")]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub(super) u64);

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for Bounded<MIN, MAX> {
    type Error = String;
    fn try_from(v: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("must be between {MIN} and {MAX}, got {v}"))
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

impl TryFrom<String> for ConnectionName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        outpost_protocol::job::validate_name(&s).map_err(|e| format!("connection name {s:?}: {e}"))?;
        Ok(Self(s))
    }
}

impl ConnectionName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
