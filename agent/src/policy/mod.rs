//! The local egress policy: what may leave this network, whatever a job asks.
//!
//! Written by the customer's security team in agent.yaml (`egress:` for every connection,
//! `connections.NAME.egress:` to change it for one), never by the control plane. It is
//! applied in three places around a job:
//!
//! 1. before the query: the render kind must be allowed (a raw `table` separately), and a
//!    column that a mask rule covers may not be drawn to scale (a chart's values or axis),
//!    since drawing would reveal it;
//! 2. between the query and rendering: masked columns are replaced, value by value, by
//!    `***` or by a keyed hash (HMAC-SHA256 under a key derived from the vault's data key,
//!    so equal values give equal hashes and joins of masked values still line up);
//! 3. after rendering, before upload: rows, data points and bytes are checked against
//!    the policy's maxima (tables are cut to fit; anything else over a limit is refused).
//!
//! Every decision becomes an [`EgressDecision`]: in the job's audit record and in the
//! report that the control plane shows the user.
//!
//! Files: `rules` (what agent.yaml can say: render kinds, column patterns, mask rules),
//! `masking` (which result columns are masked, and replacing their values), `limits`
//! (the checks before the query and after rendering: kinds, rows, points, bytes).

mod limits;
mod masking;
mod rules;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use outpost_protocol::{EgressAction, EgressDecision};
use serde::Deserialize;

pub use self::rules::{ColumnMask, ColumnPattern, MaskRule, MaskWith, MaskedPredicates, RenderKind, Unprovable};
use crate::config::Bounded;

/// Largest rendered body the control plane takes; also the highest `max_bytes`.
pub const MAX_BYTES: u64 = outpost_protocol::report::MAX_BODY_LEN as u64;

/// Points a chart draws at most, whatever the policy allows.
pub const MAX_CHART_POINTS: usize = 20_000;

/// `egress:` in agent.yaml, for every connection or for one. Unset fields take the
/// defaults (for a connection: the top-level `egress:`); `mask` rules add up.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EgressSection {
    /// Render kinds that may leave. Default: all.
    #[serde(default)]
    pub allowed_kinds: Option<BTreeSet<RenderKind>>,
    /// Whether raw rows may leave as a `table` at all. Default true.
    #[serde(default)]
    pub allow_raw_table: Option<bool>,
    /// Rows that may leave one by one (table rows, bars groups, pie slices). Default 10000.
    #[serde(default)]
    pub max_rows: Option<Bounded<1, 1_000_000>>,
    /// Values that may leave (table cells, bars, slices, chart points). Default 200000.
    #[serde(default)]
    pub max_points: Option<Bounded<1, 10_000_000>>,
    /// Bytes of one rendered result. Default and most: 4 MiB.
    #[serde(default)]
    pub max_bytes: Option<Bounded<1024, MAX_BYTES>>,
    /// Columns to mask, by name pattern.
    #[serde(default)]
    pub mask: Vec<MaskRule>,
    /// A result column whose source the database cannot show, in a query that reads a
    /// masked column: `refuse` the job (default) or `mask` the column.
    #[serde(default)]
    pub unprovable: Option<Unprovable>,
    /// A masked column read in a condition (`WHERE`, `EXISTS`, a join, `GROUP BY`,
    /// `ORDER BY`, a window) rather than returned: `allow` (default) or `refuse` the job.
    #[serde(default)]
    pub masked_predicates: Option<MaskedPredicates>,
    /// What of a failed job's database error text leaves: `scrubbed` (default: codes,
    /// position, and the message without fragments that are not in the job's SQL),
    /// `code_only`, or `full` (the text as is, values from rows included).
    #[serde(default)]
    pub errors: Option<crate::scrub::ErrorsMode>,
}

/// Default of `max_rows`.
pub const DEFAULT_MAX_ROWS: u64 = 10_000;
/// Default of `max_points`.
pub const DEFAULT_MAX_POINTS: u64 = 200_000;

/// The policy in force for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Kinds that may leave.
    pub allowed_kinds: BTreeSet<RenderKind>,
    /// Whether tables may leave.
    pub allow_raw_table: bool,
    /// Rows that may leave one by one.
    pub max_rows: usize,
    /// Values that may leave.
    pub max_points: usize,
    /// Bytes of one result.
    pub max_bytes: usize,
    /// Mask rules, the defaults' first.
    pub mask: Vec<MaskRule>,
    /// What happens to a column whose source cannot be established.
    pub unprovable: Unprovable,
    /// Whether a masked column read in a condition refuses the job.
    pub masked_predicates: MaskedPredicates,
    /// What of a failed job's error text leaves.
    pub errors: crate::scrub::ErrorsMode,
}

impl EgressPolicy {
    /// The policy of a connection: its own section over the defaults.
    pub fn resolve(defaults: &EgressSection, own: Option<&EgressSection>) -> Self {
        let pick = |f: fn(&EgressSection) -> Option<u64>, d: u64| own.and_then(f).or_else(|| f(defaults)).unwrap_or(d);
        let kinds = own.and_then(|o| o.allowed_kinds.clone()).or_else(|| defaults.allowed_kinds.clone());
        let mut mask = defaults.mask.clone();
        mask.extend(own.map(|o| o.mask.clone()).unwrap_or_default());
        Self {
            allowed_kinds: kinds.unwrap_or_else(|| ALL_KINDS.into_iter().collect()),
            allow_raw_table: own.and_then(|o| o.allow_raw_table).or(defaults.allow_raw_table).unwrap_or(true),
            max_rows: to_usize(pick(|s| s.max_rows.map(Bounded::get), DEFAULT_MAX_ROWS)),
            max_points: to_usize(pick(|s| s.max_points.map(Bounded::get), DEFAULT_MAX_POINTS)),
            max_bytes: to_usize(pick(|s| s.max_bytes.map(Bounded::get), MAX_BYTES)),
            mask,
            unprovable: own.and_then(|o| o.unprovable).or(defaults.unprovable).unwrap_or_default(),
            masked_predicates: own.and_then(|o| o.masked_predicates).or(defaults.masked_predicates).unwrap_or_default(),
            errors: own.and_then(|o| o.errors).or(defaults.errors).unwrap_or_default(),
        }
    }

    /// The mask rule covering `column`, if any (the first that matches).
    pub fn mask_for(&self, column: &str) -> Option<&MaskRule> {
        self.mask.iter().find(|r| r.column.matches(column))
    }

    /// Whether any rule masks with a keyed hash (the agent then needs the vault's key).
    pub fn needs_hash_key(&self) -> bool {
        self.mask.iter().any(|r| r.with == MaskWith::Hash)
    }

    /// Whether the connector must find out where result columns come from.
    pub fn needs_provenance(&self) -> bool {
        !self.mask.is_empty()
    }
}

const ALL_KINDS: [RenderKind; 8] = [
    RenderKind::Table,
    RenderKind::Scalar,
    RenderKind::Bar,
    RenderKind::Line,
    RenderKind::Area,
    RenderKind::Scatter,
    RenderKind::Pie,
    RenderKind::Catalog,
];

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn truncate(s: String) -> String {
    if s.chars().count() <= outpost_protocol::report::MAX_DECISION_DETAIL {
        s
    } else {
        s.chars().take(outpost_protocol::report::MAX_DECISION_DETAIL - 1).chain(std::iter::once('…')).collect()
    }
}

fn refused(rule: &str, detail: String) -> EgressDecision {
    EgressDecision { action: EgressAction::Refused, rule: rule.into(), detail: truncate(detail) }
}
