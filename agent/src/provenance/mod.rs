//! Where a result column's values come from: the facts a connector establishes with the
//! database's own metadata and planner, so that a mask follows a column whatever it is
//! renamed to or wrapped in.
//!
//! Owns: the types ([`SourceColumn`], [`Provenance`], [`ResultProvenance`]) and the
//! reading of PostgreSQL's `EXPLAIN (VERBOSE, FORMAT JSON)` plan. It decides nothing:
//! the egress policy ([`crate::policy`]) turns these facts into masks and refusals.
//!
//! The rule everything here follows: when a fact cannot be established, say
//! [`Provenance::Unknown`], never "clean". Unknown is refused or masked by the policy
//! when the statement reads a masked column.
//!
//! Files: `plan` (reading PostgreSQL's plan document, and the provenance of a plan's
//! expression columns), `expression` (the column references in one deparsed expression).

mod expression;
mod plan;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use self::expression::{expression_refs, ExprRef, HIDDEN_INPUT_FUNCTIONS};
pub use self::plan::{expression_provenance, plan_facts, PlanError, PlanFacts, PlanRelation};

/// One column of a base table (or view) in the database.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceColumn {
    /// Schema (PostgreSQL), database (MySQL/MariaDB) or attached database (`main` in SQLite).
    pub schema: String,
    /// Table.
    pub table: String,
    /// Column.
    pub column: String,
}

impl std::fmt::Display for SourceColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.schema, self.table, self.column)
    }
}

/// Where one result column's values come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Provenance {
    /// Derived from these base columns and nothing else (none: a constant, `count(*)`).
    Columns {
        /// The columns, each once.
        sources: Vec<SourceColumn>,
    },
    /// The database could not tell (an expression the agent cannot trace, a subquery,
    /// a view on a server that hides its definition).
    Unknown {
        /// Why, for the egress decision.
        why: String,
    },
}

impl Provenance {
    /// Derived from `sources` only.
    pub fn columns(mut sources: Vec<SourceColumn>) -> Self {
        sources.sort();
        sources.dedup();
        Provenance::Columns { sources }
    }

    /// Not established, because `why`.
    pub fn unknown(why: impl Into<String>) -> Self {
        Provenance::Unknown { why: why.into() }
    }
}

/// What a connector established about a whole result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResultProvenance {
    /// One per result column, in order.
    pub columns: Vec<Provenance>,
    /// Every base column the statement may read (at least the columns of every table it
    /// scans), or `None` when the connector cannot tell.
    pub reads: Option<Vec<SourceColumn>>,
    /// What the statement reads other than as the plain source of a result column: the
    /// columns of its conditions (filters, join and index conditions, grouping, sort and
    /// window keys), each condition traced like a result column; `None` when the
    /// connector cannot tell (MySQL/MariaDB).
    #[serde(default)]
    pub conditions: Option<Vec<Provenance>>,
}

/// Whether `sql` may ask for rows in an order or grouped (`ORDER`, `GROUP`, `DISTINCT`,
/// `OVER`, `PARTITION`, `INDEXED` as a word anywhere, in a literal or comment too):
/// only then can an index scan's order be a decision on its columns rather than the
/// order rows happen to come in. Over-approximates, never misses such a clause.
pub fn may_order(sql: &str) -> bool {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| {
        ["ORDER", "GROUP", "DISTINCT", "OVER", "PARTITION", "INDEXED"].iter().any(|k| k.eq_ignore_ascii_case(w))
    })
}
