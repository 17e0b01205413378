//! What agent.yaml's egress policy can say: render kinds, column patterns and mask rules,
//! and how a pattern matches a result column or a table column.

use serde::Deserialize;

use crate::provenance::SourceColumn;

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
    pub(super) fn name(self) -> &'static str {
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
pub struct ColumnPattern(pub(super) String);

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
