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

use std::collections::BTreeSet;

use outpost_protocol::{ColumnRole, EgressAction, EgressDecision, RenderSpec};
use serde::Deserialize;

use crate::config::Bounded;
use crate::provenance::{Provenance, ResultProvenance, SourceColumn};
use crate::resultset::{ResultSet, Value};

/// Largest rendered body the control plane takes; also the highest `max_bytes`.
pub const MAX_BYTES: u64 = outpost_protocol::report::MAX_BODY_LEN as u64;

/// Points a chart draws at most, whatever the policy allows.
pub const MAX_CHART_POINTS: usize = 20_000;

/// A render kind, as policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RenderKind {
    /// Tables (JSON or HTML): raw rows, see also `allow_raw_table`.
    Table,
    /// One value.
    Scalar,
    /// Bar charts.
    Bar,
    /// Line charts.
    Line,
    /// Area charts.
    Area,
    /// Scatter plots.
    Scatter,
    /// Pie charts.
    Pie,
    /// A connection's catalog for the schema browser: schema, table and column names,
    /// types and row estimates (no values), masked columns marked. Leave it out of
    /// `allowed_kinds` to keep the catalog in.
    Catalog,
}

impl RenderKind {
    fn name(self) -> &'static str {
        match self {
            RenderKind::Table => "table",
            RenderKind::Scalar => "scalar",
            RenderKind::Bar => "bar",
            RenderKind::Line => "line",
            RenderKind::Area => "area",
            RenderKind::Scatter => "scatter",
            RenderKind::Pie => "pie",
            RenderKind::Catalog => "catalog",
        }
    }
}

/// How a masked value is replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaskWith {
    /// `***`.
    #[default]
    Stars,
    /// `h:` and 16 hex digits of HMAC-SHA256 of the value's text, keyed by this agent:
    /// equal values stay equal, so joins and group-bys of masked values line up.
    Hash,
}

/// A column pattern: `*` any run of characters, `?` one; case-insensitive; the whole
/// name must match. `column` matches a result column of that name and any table's
/// column of that name a result derives from; `table.column` and
/// `schema.table.column` (each part a pattern) match only the table columns a result
/// derives from, whatever the query calls them.
#[derive(Debug, Clone, PartialEq, Eq, schemars::JsonSchema)]
#[schemars(transparent)]
pub struct ColumnPattern(String);

impl<'de> Deserialize<'de> for ColumnPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.chars().count() > 128 || s.chars().any(char::is_control) {
            return Err(serde::de::Error::custom("a column pattern is 1 to 128 printable characters"));
        }
        if s.split('.').count() > 3 || s.split('.').any(str::is_empty) {
            return Err(serde::de::Error::custom(
                "a column pattern is `column`, `table.column` or `schema.table.column` (no empty part)",
            ));
        }
        Ok(Self(s.to_lowercase()))
    }
}

impl ColumnPattern {
    /// Whether a result column named `name` matches (an unqualified pattern only).
    pub fn matches(&self, name: &str) -> bool {
        !self.0.contains('.') && wildcard(&self.0, name)
    }

    /// Whether the table column `source` matches.
    pub fn matches_source(&self, source: &SourceColumn) -> bool {
        let parts: Vec<&str> = self.0.split('.').collect();
        match parts.as_slice() {
            [column] => wildcard(column, &source.column),
            [table, column] => wildcard(table, &source.table) && wildcard(column, &source.column),
            [schema, table, column] => {
                wildcard(schema, &source.schema) && wildcard(table, &source.table) && wildcard(column, &source.column)
            }
            _ => true,
        }
    }

    /// The pattern as written (lower-cased).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `name` matches the wildcard pattern `pattern` (already lower-cased).
fn wildcard(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    // Iterative wildcard match with one backtrack point: linear in practice.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// What happens to a result column whose source cannot be established, in a query
/// that reads a masked column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unprovable {
    /// The job is refused (`mask_unprovable`).
    #[default]
    Refuse,
    /// The column is masked with `***`.
    Mask,
}

/// What happens to a job that reads a masked column other than as the plain source of
/// a result column (in a filter, join, grouping, sort or window condition), where the
/// mask cannot hide it: which rows match is itself an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaskedPredicates {
    /// Runs (the default): masks cover result values only.
    #[default]
    Allow,
    /// The job is refused (`mask_in_predicate`), as is every job whose conditions the
    /// connector cannot read (on MySQL/MariaDB: every job of a connection with mask rules).
    Refuse,
}

/// One mask rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// Result columns whose name matches are masked.
    pub column: ColumnPattern,
    /// `stars` (default) or `hash`.
    #[serde(default)]
    pub with: MaskWith,
}

/// How one result column is masked, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMask {
    /// `***` or a keyed hash.
    pub with: MaskWith,
    /// Why: the rule's name pattern, the table column it derives from, or unprovable.
    pub why: String,
}

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

    /// Step 1: may a job with this render spec run at all?
    pub fn check_spec(&self, spec: &RenderSpec) -> Result<(), EgressDecision> {
        let kind = ALL_KINDS.into_iter().find(|k| k.name() == spec.kind()).unwrap_or(RenderKind::Table);
        if kind == RenderKind::Table && !self.allow_raw_table {
            return Err(refused(
                "allow_raw_table",
                "raw tables may not leave this network; ask for a chart or a scalar".into(),
            ));
        }
        if !self.allowed_kinds.contains(&kind) {
            let allowed: Vec<&str> = self.allowed_kinds.iter().map(|k| k.name()).collect();
            return Err(refused(
                "allowed_kinds",
                format!("{} results may not leave this network; allowed: {}", kind.name(), allowed.join(", ")),
            ));
        }
        for (column, role) in spec.columns() {
            if matches!(role, ColumnRole::Number | ColumnRole::Axis) {
                if let Some(rule) = self.mask_for(column) {
                    return Err(refused(
                        "mask",
                        format!(
                            "column {column:?} is masked (pattern {:?}); a chart would draw its values to scale",
                            rule.column.as_str()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the connector must find out where result columns come from.
    pub fn needs_provenance(&self) -> bool {
        !self.mask.is_empty()
    }

    /// Step 2a: which result columns are masked, and how: by name, or because their
    /// values derive from a masked table column (`provenance`, from the database's own
    /// metadata), whatever the query calls them. A column whose source is unknown, in
    /// a query that reads a masked column, is refused (`mask_unprovable`) or masked.
    pub fn column_masks(
        &self,
        columns: &[String],
        provenance: Option<&ResultProvenance>,
    ) -> Result<Vec<Option<ColumnMask>>, EgressDecision> {
        if self.mask.is_empty() {
            return Ok(vec![None; columns.len()]);
        }
        if self.masked_predicates == MaskedPredicates::Refuse {
            self.check_predicates(provenance)?;
        }
        let reads_masked = match provenance.and_then(|p| p.reads.as_ref()) {
            Some(reads) => reads.iter().find_map(|src| self.mask_for_source(src).map(|r| (src, r))),
            None => None,
        };
        let reads_unknown = provenance.is_none_or(|p| p.reads.is_none());
        let mut out = Vec::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            if let Some(rule) = self.mask_for(name) {
                out.push(Some(ColumnMask { with: rule.with, why: format!("name matches {:?}", rule.column.as_str()) }));
                continue;
            }
            let column = provenance.and_then(|p| p.columns.get(i));
            match column {
                Some(Provenance::Columns { sources }) => {
                    let hit = sources.iter().find_map(|src| self.mask_for_source(src).map(|r| (src, r)));
                    out.push(hit.map(|(src, rule)| ColumnMask { with: rule.with, why: format!("from {src}") }));
                }
                Some(Provenance::Unknown { why }) if reads_masked.is_none() && !reads_unknown => out.push(None),
                unknown => {
                    let why = match unknown {
                        Some(Provenance::Unknown { why }) => why.clone(),
                        _ => "the connector could not trace it".to_owned(),
                    };
                    let reads = match reads_masked {
                        Some((src, _)) => format!("the query reads masked column {src}"),
                        None => "the agent cannot tell which columns the query reads".to_owned(),
                    };
                    if self.unprovable == Unprovable::Refuse {
                        return Err(refused(
                            "mask_unprovable",
                            format!(
                                "the source of column {name:?} cannot be established ({why}) and {reads}; \
                                 name the column directly, or set egress.unprovable: mask"
                            ),
                        ));
                    }
                    out.push(Some(ColumnMask { with: MaskWith::Stars, why: "source unprovable".into() }));
                }
            }
        }
        Ok(out)
    }

    /// With `masked_predicates: refuse`: refuses (`mask_in_predicate`) a statement that
    /// reads a masked column in a condition, or whose conditions cannot be read while it
    /// reads (or may read) a masked column.
    pub fn check_predicates(&self, provenance: Option<&ResultProvenance>) -> Result<(), EgressDecision> {
        let refuse = |why: String| {
            Err(refused(
                "mask_in_predicate",
                format!(
                    "{why}; with egress.masked_predicates: refuse a masked column may only be returned (and masked), \
                     not filtered, joined, grouped or sorted on"
                ),
            ))
        };
        let Some(p) = provenance else {
            return refuse("the connector could not tell which columns the query reads".into());
        };
        let Some(conditions) = p.conditions.as_ref() else {
            return refuse("the agent cannot read this database's query conditions".into());
        };
        let reads_masked = p.reads.as_ref().and_then(|r| r.iter().find(|s| self.mask_for_source(s).is_some()));
        for c in conditions {
            match c {
                Provenance::Columns { sources } => {
                    if let Some(src) = sources.iter().find(|s| self.mask_for_source(s).is_some()) {
                        return refuse(format!("the query reads masked column {src} in a condition"));
                    }
                }
                Provenance::Unknown { why } => match (p.reads.as_ref(), reads_masked) {
                    (Some(_), None) => {}
                    (_, Some(src)) => {
                        return refuse(format!(
                            "a condition cannot be traced ({why}) and the query reads masked column {src}"
                        ))
                    }
                    (None, None) => {
                        return refuse(format!(
                        "a condition cannot be traced ({why}) and the agent cannot tell which columns the query reads"
                    ))
                    }
                },
            }
        }
        Ok(())
    }

    /// The rule covering the table column `source`, if any.
    pub fn mask_for_source(&self, source: &SourceColumn) -> Option<&MaskRule> {
        self.mask.iter().find(|r| r.column.matches_source(source))
    }

    /// Step 2b: a column drawn to scale (a chart's values or axis) may not be masked,
    /// since drawing would reveal it.
    pub fn check_drawn(
        &self,
        spec: &RenderSpec,
        columns: &[String],
        masks: &[Option<ColumnMask>],
    ) -> Result<(), EgressDecision> {
        for (column, role) in spec.columns() {
            if !matches!(role, ColumnRole::Number | ColumnRole::Axis) {
                continue;
            }
            let found = columns.iter().position(|c| c == column).and_then(|i| masks.get(i)).and_then(Option::as_ref);
            if let Some(mask) = found {
                return Err(refused(
                    "mask",
                    format!("column {column:?} is masked ({}); a chart would draw its values to scale", mask.why),
                ));
            }
        }
        Ok(())
    }

    /// Step 2c: replaces the values of masked columns. `key` is the keyed-hash key
    /// (needed when a `hash` rule applies). The decision says which columns and how.
    pub fn mask(&self, rs: &mut ResultSet, key: Option<&[u8; 32]>) -> Result<Option<EgressDecision>, EgressDecision> {
        let masks = self.column_masks(&rs.columns, rs.provenance.as_ref())?;
        self.apply_masks(rs, &masks, key)
    }

    /// Replaces the values of the columns `masks` names.
    pub fn apply_masks(
        &self,
        rs: &mut ResultSet,
        masks: &[Option<ColumnMask>],
        key: Option<&[u8; 32]>,
    ) -> Result<Option<EgressDecision>, EgressDecision> {
        let masked: Vec<(usize, &ColumnMask)> =
            masks.iter().enumerate().filter_map(|(i, m)| m.as_ref().map(|m| (i, m))).collect();
        if masked.is_empty() {
            return Ok(None);
        }
        let hmac_key = match (masked.iter().any(|(_, m)| m.with == MaskWith::Hash), key) {
            (true, Some(k)) => Some(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k)),
            (true, None) => return Err(refused("mask", "the keyed-hash key is not available (vault not open)".into())),
            (false, _) => None,
        };
        for row in &mut rs.rows {
            for &(i, m) in &masked {
                let Some(v) = row.get_mut(i) else { continue };
                if matches!(v, Value::Null) {
                    continue;
                }
                *v = Value::Text(match (m.with, &hmac_key) {
                    (MaskWith::Hash, Some(k)) => hash_text(k, &crate::render::value_text(v)),
                    _ => "***".to_owned(),
                });
            }
        }
        let how: Vec<String> = masked
            .iter()
            .map(|(i, m)| {
                let with = if m.with == MaskWith::Hash { "keyed hash" } else { "***" };
                let name = rs.columns.get(*i).map_or("?", String::as_str);
                if m.why.starts_with("name matches") {
                    format!("{name} ({with})")
                } else {
                    format!("{name} ({with}, {})", m.why)
                }
            })
            .collect();
        Ok(Some(EgressDecision {
            action: EgressAction::Masked,
            rule: "mask".into(),
            detail: truncate(format!("masked columns: {}", how.join(", "))),
        }))
    }

    /// The render limits for a spec: rows shown at most, and the chart point budget.
    /// Tables are cut so that their cells fit `max_points`.
    pub fn render_limits(&self, spec: &RenderSpec, columns: usize, job_max_rows: usize) -> (usize, usize) {
        let rows = match spec {
            RenderSpec::Table(_) => self.max_rows.min(self.max_points / columns.max(1)).max(1),
            _ => self.max_rows,
        };
        (rows.min(job_max_rows), self.chart_points())
    }

    /// The most points a line, area or scatter chart may draw.
    pub fn chart_points(&self) -> usize {
        self.max_points.min(MAX_CHART_POINTS)
    }

    /// Between the query and rendering: a bar or pie chart shows every row one by one,
    /// so one with more rows than may leave is refused (a table is cut instead; line,
    /// area and scatter charts are downsampled).
    pub fn check_rows(&self, spec: &RenderSpec, rows: usize) -> Result<(), EgressDecision> {
        if matches!(spec, RenderSpec::Bar(_) | RenderSpec::Pie(_)) && rows > self.max_rows {
            return Err(refused(
                "max_rows",
                format!("the chart would show {rows} rows one by one; at most {} may leave", self.max_rows),
            ));
        }
        Ok(())
    }

    /// Step 3: checks a rendering against the maxima. `rows_available` is what the
    /// result had; a table shown shorter because of this policy is a `truncated` decision.
    pub fn check_output(
        &self,
        spec: &RenderSpec,
        rendered: &crate::render::Rendered,
        rows_available: usize,
        columns: usize,
    ) -> Result<Vec<EgressDecision>, EgressDecision> {
        let mut decisions = Vec::new();
        if let RenderSpec::Table(t) = spec {
            let asked = t.max_rows.map_or(usize::MAX, |m| m as usize);
            let shown = rendered.rows_rendered;
            if shown < rows_available && shown < asked {
                let rule = if self.max_points / columns.max(1) < self.max_rows { "max_points" } else { "max_rows" };
                decisions.push(EgressDecision {
                    action: EgressAction::Truncated,
                    rule: rule.into(),
                    detail: format!("{shown} of {rows_available} rows may leave ({rule} of this connection's policy)"),
                });
            }
        }
        if rendered.points > self.max_points {
            return Err(refused(
                "max_points",
                format!("the result carries {} values; at most {} may leave", rendered.points, self.max_points),
            ));
        }
        if rendered.body.len() > self.max_bytes {
            return Err(refused(
                "max_bytes",
                format!("the rendered result is {} bytes; at most {} may leave", rendered.body.len(), self.max_bytes),
            ));
        }
        Ok(decisions)
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

/// `h:` and the first 16 hex digits of HMAC-SHA256(key, text).
fn hash_text(key: &aws_lc_rs::hmac::Key, text: &str) -> String {
    let tag = aws_lc_rs::hmac::sign(key, text.as_bytes());
    format!("h:{}", outpost_protocol::encoding::hex(&tag.as_ref()[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> ColumnPattern {
        ColumnPattern(p.to_lowercase())
    }

    #[test]
    fn patterns_match_whole_names_case_insensitively() {
        assert!(pattern("email").matches("EMAIL"));
        assert!(!pattern("email").matches("email2"));
        assert!(pattern("*email*").matches("customer_email_address"));
        assert!(pattern("ph?ne").matches("phone"));
        assert!(!pattern("ph?ne").matches("phne"));
        assert!(pattern("*").matches(""));
        assert!(pattern("a*b*c").matches("aXXbYYc"));
        assert!(!pattern("a*b*c").matches("aXXbYY"));
    }

    fn policy(yaml: &str) -> EgressPolicy {
        let s: EgressSection = serde_saphyr::from_str(yaml).expect("section parses");
        EgressPolicy::resolve(&s, None)
    }

    fn src(table: &str, column: &str) -> SourceColumn {
        SourceColumn { schema: "public".into(), table: table.into(), column: column.into() }
    }

    /// Provenance of columns of table `t`: `Some(column)` for a plain column, `None` for
    /// an untraceable one; the statement reads every named column.
    fn traced(columns: &[Option<&str>]) -> ResultProvenance {
        ResultProvenance {
            columns: columns
                .iter()
                .map(|c| match c {
                    Some(c) => Provenance::columns(vec![src("t", c)]),
                    None => Provenance::unknown("an expression"),
                })
                .collect(),
            reads: Some(columns.iter().flatten().map(|c| src("t", c)).collect()),
            conditions: Some(Vec::new()),
        }
    }

    #[test]
    fn masked_columns_in_conditions_are_refused_only_when_the_policy_says_so() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let allow = policy("mask:\n  - column: public.t.secret\n");
        let strict = policy("mask:\n  - column: public.t.secret\nmasked_predicates: refuse\n");
        assert_eq!(allow.masked_predicates, MaskedPredicates::Allow);
        assert_eq!(strict.masked_predicates, MaskedPredicates::Refuse);
        // `SELECT id FROM t WHERE secret LIKE 'S%'`: the default lets it run.
        let filtered = ResultProvenance {
            reads: Some(vec![src("t", "id"), src("t", "secret")]),
            conditions: Some(vec![Provenance::columns(vec![src("t", "secret")])]),
            ..traced(&[Some("id")])
        };
        assert_eq!(allow.column_masks(&names(&["id"]), Some(&filtered)).expect("allowed"), [None]);
        let err = strict.column_masks(&names(&["id"]), Some(&filtered)).expect_err("refused");
        assert_eq!(err.rule, "mask_in_predicate");
        assert!(err.detail.contains("public.t.secret in a condition"), "{}", err.detail);
        // Plain masked output, and conditions on unmasked columns, still run.
        let plain = ResultProvenance {
            conditions: Some(vec![Provenance::columns(vec![src("t", "id")])]),
            ..traced(&[Some("secret"), Some("id")])
        };
        let masks = strict.column_masks(&names(&["s", "id"]), Some(&plain)).expect("runs");
        assert_eq!(masks[0].as_ref().map(|m| m.why.as_str()), Some("from public.t.secret"));
        // A condition the agent cannot trace: refused when the statement reads (or may
        // read) a masked column, fine when it provably does not.
        let opaque = vec![Provenance::unknown("a sub-plan")];
        let with_secret = ResultProvenance { conditions: Some(opaque.clone()), ..filtered.clone() };
        assert_eq!(
            strict.column_masks(&names(&["id"]), Some(&with_secret)).expect_err("refused").rule,
            "mask_in_predicate"
        );
        let clean = ResultProvenance { conditions: Some(opaque.clone()), ..traced(&[Some("id")]) };
        assert!(strict.column_masks(&names(&["id"]), Some(&clean)).is_ok());
        let blind = ResultProvenance { reads: None, conditions: Some(opaque), ..traced(&[Some("id")]) };
        assert_eq!(strict.column_masks(&names(&["id"]), Some(&blind)).expect_err("refused").rule, "mask_in_predicate");
        // Conditions the connector cannot read (MySQL/MariaDB), or no provenance: refused.
        let mariadb = ResultProvenance { conditions: None, ..traced(&[Some("id")]) };
        assert_eq!(
            strict.column_masks(&names(&["id"]), Some(&mariadb)).expect_err("refused").rule,
            "mask_in_predicate"
        );
        assert!(allow.column_masks(&names(&["id"]), Some(&mariadb)).is_ok());
        assert_eq!(strict.column_masks(&names(&["id"]), None).expect_err("refused").rule, "mask_in_predicate");
        // Without mask rules the switch changes nothing.
        assert!(policy("masked_predicates: refuse\n").column_masks(&names(&["id"]), None).is_ok());
        // Per connection, over the defaults.
        let defaults: EgressSection = serde_saphyr::from_str("masked_predicates: refuse\n").expect("section");
        let own: EgressSection = serde_saphyr::from_str("masked_predicates: allow\n").expect("section");
        assert_eq!(EgressPolicy::resolve(&defaults, None).masked_predicates, MaskedPredicates::Refuse);
        assert_eq!(EgressPolicy::resolve(&defaults, Some(&own)).masked_predicates, MaskedPredicates::Allow);
        assert!(serde_saphyr::from_str::<EgressSection>("masked_predicates: maybe\n").is_err());
    }

    #[test]
    fn masks_follow_the_source_column_and_untraceable_columns_are_refused_or_masked() {
        let p = policy("mask:\n  - column: public.t.secret\n  - column: '*.email'\n    with: hash\n");
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // Renamed: the source decides, the name does not.
        let masks =
            p.column_masks(&names(&["contact", "n"]), Some(&traced(&[Some("secret"), Some("id")]))).expect("ok");
        assert_eq!(
            masks[0].as_ref().map(|m| (m.with, m.why.as_str())),
            Some((MaskWith::Stars, "from public.t.secret"))
        );
        assert_eq!(masks[1], None);
        // A qualified rule does not match a result column's name.
        let masks = p.column_masks(&names(&["secret"]), Some(&traced(&[Some("id")]))).expect("ok");
        assert_eq!(masks[0], None);
        // An expression in a statement that reads the masked column: refused...
        let mixed = ResultProvenance { reads: Some(vec![src("t", "secret")]), ..traced(&[None]) };
        let err = p.column_masks(&names(&["l"]), Some(&mixed)).expect_err("refused");
        assert_eq!(err.rule, "mask_unprovable");
        assert!(err.detail.contains("reads masked column public.t.secret"), "{}", err.detail);
        // ...or masked, if the policy says so.
        let lenient = policy("mask:\n  - column: public.t.secret\nunprovable: mask\n");
        let masks = lenient.column_masks(&names(&["l"]), Some(&mixed)).expect("masked");
        assert_eq!(masks[0].as_ref().map(|m| m.why.as_str()), Some("source unprovable"));
        // An expression over unmasked columns only is fine; unknown reads are not.
        let clean = ResultProvenance { reads: Some(vec![src("t", "region")]), ..traced(&[None]) };
        assert_eq!(p.column_masks(&names(&["n"]), Some(&clean)).expect("ok"), [None]);
        let blind = ResultProvenance { reads: None, ..traced(&[None]) };
        assert!(p.column_masks(&names(&["n"]), Some(&blind)).is_err());
        assert!(p.column_masks(&names(&["n"]), None).is_err(), "no provenance at all is never clean");
        // Without rules nothing is traced or refused.
        assert_eq!(policy("{}").column_masks(&names(&["n"]), None).expect("ok"), [None]);
        // A masked column may be a label but not drawn to scale.
        let bar: RenderSpec = serde_json::from_str(r#"{"kind":"bar","x":"contact","y":["n"]}"#).expect("spec");
        let masks =
            p.column_masks(&names(&["contact", "n"]), Some(&traced(&[Some("secret"), Some("id")]))).expect("ok");
        assert!(p.check_drawn(&bar, &names(&["contact", "n"]), &masks).is_ok());
        let drawn: RenderSpec = serde_json::from_str(r#"{"kind":"bar","x":"n","y":["contact"]}"#).expect("spec");
        assert_eq!(
            p.check_drawn(&drawn, &names(&["contact", "n"]), &masks).map_err(|d| d.rule),
            Err("mask".to_owned())
        );
    }

    #[test]
    fn qualified_patterns_match_each_part_and_bad_ones_are_refused() {
        let rule = |s: &str| serde_saphyr::from_str::<ColumnPattern>(s);
        let p = rule("sales.*.card_*").expect("pattern");
        assert!(p.matches_source(&SourceColumn {
            schema: "Sales".into(),
            table: "orders".into(),
            column: "card_no".into()
        }));
        assert!(!p.matches_source(&SourceColumn {
            schema: "hr".into(),
            table: "orders".into(),
            column: "card_no".into()
        }));
        assert!(!p.matches("card_no"), "a qualified pattern never matches a bare result name");
        assert!(rule("a.b.c.d").is_err());
        assert!(rule("a..b").is_err());
    }

    #[test]
    fn masking_replaces_values_and_hashes_equal_values_equally() {
        let p = policy("mask:\n  - column: '*email*'\n    with: hash\n  - column: ssn\n");
        let mut rs = ResultSet {
            columns: vec!["id".into(), "Email".into(), "ssn".into()],
            rows: vec![
                vec![Value::Int(1), Value::Text("a@x.org".into()), Value::Text("123".into())],
                vec![Value::Int(2), Value::Text("a@x.org".into()), Value::Null],
                vec![Value::Int(3), Value::Text("b@x.org".into()), Value::Int(456)],
            ],
            truncated: false,
            provenance: Some(traced(&[Some("id"), Some("email"), Some("ssn")])),
        };
        let key = [7u8; 32];
        let d = p.mask(&mut rs, Some(&key)).expect("masked").expect("a decision");
        assert_eq!(d.action, EgressAction::Masked);
        assert_eq!(d.detail, "masked columns: Email (keyed hash), ssn (***)");
        let email = |r: usize| match &rs.rows[r][1] {
            Value::Text(t) => t.clone(),
            v => panic!("{v:?}"),
        };
        assert_eq!(email(0), email(1));
        assert_ne!(email(0), email(2));
        assert!(email(0).starts_with("h:") && email(0).len() == 18, "{}", email(0));
        assert_eq!(rs.rows[0][2], Value::Text("***".into()));
        assert_eq!(rs.rows[1][2], Value::Null);
        assert_eq!(rs.rows[2][0], Value::Int(3));
        // Another key gives other hashes.
        let mut again = ResultSet {
            columns: vec!["email".into()],
            rows: vec![vec![Value::Text("a@x.org".into())]],
            truncated: false,
            provenance: Some(traced(&[Some("email")])),
        };
        p.mask(&mut again, Some(&[8u8; 32])).expect("masked");
        assert_ne!(again.rows[0][0], Value::Text(email(0)));
        // Without the key, a hash rule refuses rather than leaking.
        let mut no_key = ResultSet { columns: vec!["email".into()], rows: vec![], truncated: false, provenance: None };
        assert_eq!(p.mask(&mut no_key, None).map(|_| ()).map_err(|d| d.action), Err(EgressAction::Refused));
    }

    #[test]
    fn kinds_tables_and_masked_chart_values_are_checked_before_the_query() {
        let p = policy("allowed_kinds: [bar, table]\nallow_raw_table: false\nmask:\n  - column: salary\n");
        let table: RenderSpec = serde_json::from_str(r#"{"kind":"table"}"#).expect("spec");
        assert_eq!(p.check_spec(&table).map_err(|d| d.rule), Err("allow_raw_table".to_owned()));
        let line: RenderSpec = serde_json::from_str(r#"{"kind":"line","x":"t","y":["v"]}"#).expect("spec");
        let err = p.check_spec(&line).expect_err("refused");
        assert_eq!(
            (err.rule.as_str(), err.detail.as_str()),
            ("allowed_kinds", "line results may not leave this network; allowed: table, bar")
        );
        let bar: RenderSpec = serde_json::from_str(r#"{"kind":"bar","x":"name","y":["SALARY"]}"#).expect("spec");
        assert_eq!(p.check_spec(&bar).map_err(|d| d.rule), Err("mask".to_owned()));
        let bar: RenderSpec = serde_json::from_str(r#"{"kind":"bar","x":"salary","y":["n"]}"#).expect("spec");
        assert!(p.check_spec(&bar).is_ok(), "a masked label is drawn masked");
    }

    #[test]
    fn a_connection_overrides_fields_and_adds_masks() {
        let defaults: EgressSection = serde_saphyr::from_str("max_rows: 100\nmask:\n  - column: a\n").expect("parses");
        let own: EgressSection = serde_saphyr::from_str("max_bytes: 2048\nmask:\n  - column: b\n").expect("parses");
        let p = EgressPolicy::resolve(&defaults, Some(&own));
        assert_eq!((p.max_rows, p.max_bytes, p.max_points), (100, 2048, DEFAULT_MAX_POINTS as usize));
        assert!(p.mask_for("a").is_some() && p.mask_for("b").is_some());
        assert!(p.allow_raw_table && p.allowed_kinds.len() == ALL_KINDS.len());
        let bad = serde_saphyr::from_str::<EgressSection>("max_bytes: 10\n");
        assert!(bad.is_err());
    }
}
