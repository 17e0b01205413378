//! Reading PostgreSQL's `EXPLAIN (VERBOSE, FORMAT JSON)` document: the relations it
//! scans, its outputs and conditions, and where each output column comes from.

use super::expression::{calls_hidden_input, expression_refs, ExprRef};
use super::{Provenance, SourceColumn};

/// A relation as a PostgreSQL plan names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRelation {
    /// The alias the plan's expressions use (unique within one plan).
    pub alias: String,
    /// Schema.
    pub schema: String,
    /// Relation name.
    pub name: String,
}

/// What the agent reads out of one `EXPLAIN (VERBOSE, FORMAT JSON)` document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanFacts {
    /// The top node's output expressions, one per target column (junk columns after).
    pub outputs: Vec<String>,
    /// Every base relation scanned anywhere in the plan (views are expanded by the planner).
    pub relations: Vec<PlanRelation>,
    /// Whether the plan has sub-plans (InitPlan, SubPlan, CTE): their results appear in
    /// expressions as `$n` or `(SubPlan n)`, which the agent cannot trace.
    pub has_subplans: bool,
    /// Whether the plan combines several inputs into one column (UNION, INTERSECT,
    /// EXCEPT, a recursive CTE, a partitioned table): EXPLAIN prints such a column as
    /// the first input's expression only, so it says nothing about the others.
    pub set_operation: bool,
    /// Whether something other than a table is scanned (a function, a subquery, a CTE,
    /// VALUES): then an unqualified name may not be a table's column.
    pub other_scans: bool,
    /// Whether some node calls a function that runs SQL given as text or reads session
    /// state ([`HIDDEN_INPUT_FUNCTIONS`]): then the relations listed are not all the
    /// statement reads.
    pub hidden_reads: bool,
    /// Every expression of every node other than its output list: filters, join, hash,
    /// merge, index and recheck conditions, one-time filters, grouping, sort, presorted
    /// and cache keys, window run conditions, a function scan's call. Each reads its
    /// columns for a decision about rows, not as a result value.
    pub conditions: Vec<String>,
    /// The indexes scanned (`Index Name`): reading one in order sorts by its columns,
    /// and a partial one filters by its predicate, which the plan does not print.
    pub indexes: Vec<String>,
}

/// Plan node keys that hold names or settings, not expressions.
const NOT_EXPRESSIONS: [&str; 20] = [
    "Node Type",
    "Plans",
    "Output",
    "Relation Name",
    "Schema",
    "Alias",
    "Index Name",
    "Parent Relationship",
    "Subplan Name",
    "Join Type",
    "Strategy",
    "Partial Mode",
    "Scan Direction",
    "CTE Name",
    "Function Name",
    "Command",
    "Operation",
    "Cache Mode",
    "Sampling Method",
    "Custom Plan Provider",
];

/// Every string in `value` (strings, arrays and objects of them), for [`PlanFacts::conditions`].
fn collect_expressions(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_expressions(v, out)),
        serde_json::Value::Object(o) => o
            .iter()
            .filter(|(k, _)| !NOT_EXPRESSIONS.contains(&k.as_str()))
            .for_each(|(_, v)| collect_expressions(v, out)),
        _ => {}
    }
}

/// Why a plan could not be read; the provenance of its columns is then unknown, with
/// this as the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The answer holds no `Plan`.
    #[error("the EXPLAIN answer has no plan")]
    NoPlan,
    /// An entry of the top node's `Output` is not a string.
    #[error("an output is not text")]
    OutputNotText,
    /// More nodes than the agent reads.
    #[error("the plan is too large to read")]
    TooLarge,
}

/// Reads a PostgreSQL `EXPLAIN (VERBOSE, FORMAT JSON)` answer.
pub fn plan_facts(explain: &serde_json::Value) -> Result<PlanFacts, PlanError> {
    let top = explain.get(0).and_then(|p| p.get("Plan")).ok_or(PlanError::NoPlan)?;
    let outputs = match top.get("Output") {
        Some(serde_json::Value::Array(a)) => {
            a.iter().map(|o| o.as_str().map(str::to_owned).ok_or(PlanError::OutputNotText)).collect::<Result<_, _>>()?
        }
        _ => Vec::new(),
    };
    let mut facts = PlanFacts { outputs, ..PlanFacts::default() };
    let mut stack = vec![top];
    let mut nodes = 0usize;
    while let Some(node) = stack.pop() {
        nodes += 1;
        if nodes > 100_000 {
            return Err(PlanError::TooLarge);
        }
        if let (Some(name), Some(schema)) = (
            node.get("Relation Name").and_then(serde_json::Value::as_str),
            node.get("Schema").and_then(serde_json::Value::as_str),
        ) {
            let alias = node.get("Alias").and_then(serde_json::Value::as_str).unwrap_or(name);
            facts.relations.push(PlanRelation {
                alias: alias.to_owned(),
                schema: schema.to_owned(),
                name: name.to_owned(),
            });
        }
        if calls_hidden_input(node) {
            facts.hidden_reads = true;
        }
        collect_expressions(node, &mut facts.conditions);
        if let Some(index) = node.get("Index Name").and_then(serde_json::Value::as_str) {
            facts.indexes.push(index.to_owned());
        }
        if node.get("Relation Name").is_none() && node.get("Alias").is_some() {
            facts.other_scans = true;
        }
        if matches!(
            node.get("Node Type").and_then(serde_json::Value::as_str),
            Some("Append" | "Merge Append" | "SetOp" | "Recursive Union")
        ) {
            facts.set_operation = true;
        }
        if node.get("Subplan Name").is_some()
            || matches!(
                node.get("Parent Relationship").and_then(serde_json::Value::as_str),
                Some("InitPlan" | "SubPlan")
            )
        {
            facts.has_subplans = true;
        }
        if let Some(serde_json::Value::Array(children)) = node.get("Plans") {
            stack.extend(children.iter());
        }
    }
    Ok(facts)
}

/// The provenance of one expression column of a PostgreSQL plan: the base columns its
/// references name, or unknown when it names anything the agent cannot place.
/// `columns_of(schema, table)` lists a relation's columns (for `alias.*`).
pub fn expression_provenance(
    expr: &str,
    facts: &PlanFacts,
    columns_of: &dyn Fn(&str, &str) -> Option<Vec<String>>,
) -> Provenance {
    if facts.set_operation {
        return Provenance::unknown("a set operation (UNION, INTERSECT, EXCEPT, a recursive CTE or partitions)");
    }
    let only = match (facts.relations.as_slice(), facts.other_scans) {
        ([only], false) => Some(only),
        _ => None,
    };
    let mut sources = Vec::new();
    for r in expression_refs(expr) {
        let (qualifier, column) = match r {
            ExprRef::Opaque(what) => return Provenance::unknown(format!("a value the planner hides ({what})")),
            ExprRef::Bare(name) => match only {
                Some(rel) => (rel.alias.clone(), Some(name)),
                None => return Provenance::unknown(format!("an unqualified name ({name:?})")),
            },
            ExprRef::Column { qualifier, column } => (qualifier, Some(column)),
            ExprRef::WholeRow { qualifier } => (qualifier, None),
        };
        let Some(rel) = facts.relations.iter().find(|r| r.alias == qualifier) else {
            return Provenance::unknown(format!(
                "a column of {qualifier:?}, which is not a table (a subquery, CTE, function or set operation)"
            ));
        };
        match column {
            Some(column) => {
                sources.push(SourceColumn { schema: rel.schema.clone(), table: rel.name.clone(), column });
            }
            None => match columns_of(&rel.schema, &rel.name) {
                Some(all) => sources.extend(all.into_iter().map(|column| SourceColumn {
                    schema: rel.schema.clone(),
                    table: rel.name.clone(),
                    column,
                })),
                None => return Provenance::unknown(format!("the whole row of {qualifier:?}")),
            },
        }
    }
    Provenance::columns(sources)
}
