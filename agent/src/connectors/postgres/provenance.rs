//! Where a PostgreSQL result's columns come from, asked of the server itself inside the
//! job's read-only transaction, before the query runs.
//!
//! 1. A plain column reference, however aliased, carries its table's OID and attribute
//!    number in the statement's RowDescription (PostgreSQL follows it through
//!    subqueries and CTEs); one catalog query names them.
//! 2. Any other column (an expression, an aggregate, a column of a view, a UNION) is
//!    read from the planner: `EXPLAIN (VERBOSE, FORMAT JSON)` of the same statement
//!    with the same parameters prints each output as an expression over the scanned
//!    tables' columns (views expanded). See [`crate::provenance`] for what is trusted.
//! 3. What the statement reads: every column of every table the plan scans, and of
//!    their parents (partitions, inheritance), so a rule on a parent covers its parts.
//! 4. What it reads in conditions (for `masked_predicates: refuse`): every expression
//!    of every plan node other than its output (filters, join/hash/merge/index
//!    conditions, grouping, sort and window keys), the sort keys carried past the
//!    result's columns, and the columns of every index scanned (its order, and a
//!    partial index's predicate, are conditions the plan does not print).
//!
//! Nothing here runs the statement; EXPLAIN without ANALYZE only plans it.

use std::collections::{BTreeMap, HashMap};

use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{Statement, Transaction};

use crate::provenance::{
    expression_provenance, may_order, plan_facts, PlanFacts, Provenance, ResultProvenance, SourceColumn,
};

/// Relations whose columns are derived from others the planner does not show.
const DERIVED_STORE: &str = "m";

/// Whether relation `schema.name` of kind `relkind` stores values copied from other
/// relations' columns that the plan does not name: a materialized view, or the
/// planner's statistics (`pg_stats`, a view over `pg_statistic`, lists a column's most
/// common values; `pg_stats_ext` reads `pg_statistic_ext_data`).
fn derived_store(relkind: &str, schema: &str, name: &str) -> bool {
    relkind == DERIVED_STORE || (schema == "pg_catalog" && matches!(name, "pg_statistic" | "pg_statistic_ext_data"))
}
/// Relations the planner expands: their columns are traced through the plan.
const VIEW: &str = "v";

/// A relation's columns, and those of its ancestors, keyed by (schema, name).
type Family = HashMap<(String, String), Vec<SourceColumn>>;

/// Relations, by (schema, name), whose columns hold values copied from others.
type Stored = std::collections::HashSet<(String, String)>;

/// Names the relations and columns of table OIDs: (oid, relkind, schema, table, attnum, column).
const COLUMNS_SQL: &str = "SELECT c.oid, c.relkind::text, n.nspname::text, c.relname::text, a.attnum, a.attname::text \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
             WHERE c.oid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped";

/// The columns of every named relation and of its ancestors (inheritance, partitions).
const FAMILY_SQL: &str = "WITH RECURSIVE rel(leaf, oid) AS ( \
               SELECT c.oid, c.oid FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               JOIN unnest($1::text[], $2::text[]) AS u(s, r) ON n.nspname = u.s AND c.relname = u.r \
               UNION SELECT rel.leaf, i.inhparent FROM pg_catalog.pg_inherits i JOIN rel ON i.inhrelid = rel.oid) \
             SELECT ln.nspname::text, lc.relname::text, lc.relkind::text, n.nspname::text, c.relname::text, a.attname::text \
             FROM rel \
             JOIN pg_catalog.pg_class lc ON lc.oid = rel.leaf \
             JOIN pg_catalog.pg_namespace ln ON ln.oid = lc.relnamespace \
             JOIN pg_catalog.pg_class c ON c.oid = rel.oid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
             WHERE a.attnum > 0 AND NOT a.attisdropped";

/// The columns an index orders or filters by, by index name (any schema): its key
/// columns, or every column of its table when it has expressions or a predicate; and
/// whether it is partial (it filters rows by a condition the plan does not print).
const INDEX_SQL: &str = "SELECT n.nspname::text, t.relname::text, a.attname::text, i.indpred IS NOT NULL \
             FROM pg_catalog.pg_class ic \
             JOIN pg_catalog.pg_index i ON i.indexrelid = ic.oid \
             JOIN pg_catalog.pg_class t ON t.oid = i.indrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid \
             WHERE ic.relname = ANY($1::text[]) AND a.attnum > 0 AND NOT a.attisdropped \
               AND (a.attnum = ANY(i.indkey::int2[]) OR i.indexprs IS NOT NULL OR i.indpred IS NOT NULL)";

/// The catalog statements, prepared once per session (their plans are kept: planning the
/// ancestors' query costs more than running it).
pub(super) struct Catalog {
    columns: Statement,
    family: Statement,
    indexes: Statement,
}

impl Catalog {
    /// Prepares both statements on `client` (one pipelined round trip).
    pub(super) async fn prepare(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        let (columns, family, indexes) = tokio::try_join!(
            client.prepare_typed(COLUMNS_SQL, &[Type::OID_ARRAY]),
            client.prepare_typed(FAMILY_SQL, &[Type::TEXT_ARRAY, Type::TEXT_ARRAY]),
            client.prepare_typed(INDEX_SQL, &[Type::TEXT_ARRAY]),
        )?;
        Ok(Self { columns, family, indexes })
    }
}

/// Traces the columns of `stmt` (prepared from `sql` in `tx`), with `params` bound.
pub(super) async fn trace(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    stmt: &Statement,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    with_conditions: bool,
) -> Result<ResultProvenance, tokio_postgres::Error> {
    let columns = stmt.columns();
    let oids: Vec<u32> = columns
        .iter()
        .filter_map(|c| c.table_oid().filter(|o| *o != 0))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // Round trips and planning are the cost here: the catalog statements are prepared
    // once per session, EXPLAIN is sent typed (parse, bind and execute in one message)
    // and the catalog lookup and EXPLAIN go out together (tokio-postgres pipelines
    // concurrent queries on one connection).
    let lookup = async {
        if oids.is_empty() {
            return Ok(Vec::new());
        }
        tx.query(&catalog.columns, &[&oids]).await
    };
    let explain_sql = format!("EXPLAIN (VERBOSE, FORMAT JSON) {sql}");
    let typed: Vec<(&(dyn ToSql + Sync), Type)> =
        params.iter().zip(stmt.params()).map(|(p, ty)| (*p, ty.clone())).collect();
    let explain = || tx.query_typed(&explain_sql, &typed);
    // What the statement reads in its conditions (filters, joins, grouping, order) only
    // the plan shows: with `with_conditions` it is always read. Otherwise only a column
    // without a table (an expression) needs it, whatever the catalog says.
    let needs_plan = with_conditions || columns.iter().any(|c| c.table_oid().is_none_or(|o| o == 0));
    let (catalog_rows, mut plan_rows) = if needs_plan {
        let (c, e) = tokio::try_join!(lookup, explain())?;
        (c, Some(e))
    } else {
        (lookup.await?, None)
    };
    // (oid, attnum) -> (relkind, source)
    let mut direct: HashMap<(u32, i16), (String, SourceColumn)> = HashMap::new();
    for r in catalog_rows {
        let source = SourceColumn { schema: r.try_get(2)?, table: r.try_get(3)?, column: r.try_get(5)? };
        direct.insert((r.try_get(0)?, r.try_get(4)?), (r.try_get(1)?, source));
    }
    let mut out: Vec<Option<Provenance>> = columns
        .iter()
        .map(|c| match (c.table_oid(), c.column_id()) {
            (Some(oid), Some(att)) if oid != 0 => match direct.get(&(oid, att)) {
                Some((kind, _)) if kind == VIEW => None,
                Some((kind, src)) if derived_store(kind, &src.schema, &src.table) => Some(Provenance::unknown(
                    format!("a column of {}.{}, which stores values of other columns", src.schema, src.table),
                )),
                Some((_, src)) => Some(Provenance::columns(vec![src.clone()])),
                None => None,
            },
            _ => None,
        })
        .collect();
    if !with_conditions && out.iter().all(Option::is_some) {
        // Every column is a plain table column: nothing else can reach the result.
        let reads = out
            .iter()
            .flatten()
            .flat_map(|p| match p {
                Provenance::Columns { sources } => sources.clone(),
                Provenance::Unknown { .. } => Vec::new(),
            })
            .collect();
        let any_unknown = out.iter().flatten().any(|p| matches!(p, Provenance::Unknown { .. }));
        return Ok(ResultProvenance {
            columns: out.into_iter().flatten().collect(),
            reads: (!any_unknown).then_some(reads),
            conditions: None,
        });
    }
    let plan_rows = match plan_rows.take() {
        Some(rows) => rows,
        None => explain().await?,
    };
    let plan: Option<serde_json::Value> =
        plan_rows.first().and_then(|r| r.try_get::<_, Json<'_>>(0).ok()).and_then(|j| serde_json::from_slice(j.0).ok());
    let facts = match plan.as_ref().map(plan_facts) {
        Some(Ok(f)) => f,
        Some(Err(why)) => return Ok(unknown_rest(out, &format!("the plan could not be read: {why}"))),
        None => return Ok(unknown_rest(out, "the server gave no plan")),
    };
    let (family, stored) = family(tx, catalog, &facts).await?;
    let columns_of = |schema: &str, table: &str| -> Option<Vec<String>> {
        family.get(&(schema.to_owned(), table.to_owned())).map(|cols| {
            cols.iter().filter(|c| c.schema == schema && c.table == table).map(|c| c.column.clone()).collect()
        })
    };
    for (i, slot) in out.iter_mut().enumerate() {
        if slot.is_some() {
            continue;
        }
        let traced = match facts.outputs.get(i) {
            Some(expr) => expression_provenance(expr, &facts, &columns_of),
            None => Provenance::unknown("the plan does not list this column"),
        };
        let traced = match traced {
            Provenance::Columns { sources } => {
                match sources.iter().find(|s| stored.contains(&(s.schema.clone(), s.table.clone()))) {
                    Some(s) => Provenance::unknown(format!(
                        "derived from {}.{}, which stores values of other columns",
                        s.schema, s.table
                    )),
                    None => Provenance::Columns { sources },
                }
            }
            unknown => unknown,
        };
        *slot = Some(with_ancestors(traced, &family));
    }
    // A materialized view's (or the statistics') data came from columns the plan cannot
    // show, and a function that runs SQL given as text reads what the plan does not
    // list: what the statement reads is then unknown.
    let reads = (stored.is_empty() && !facts.hidden_reads).then(|| family.values().flatten().cloned().collect());
    let conditions = match with_conditions {
        true => Some(conditions(tx, catalog, &facts, may_order(sql), columns.len(), &family, &stored).await?),
        false => None,
    };
    Ok(ResultProvenance { columns: out.into_iter().flatten().collect(), reads, conditions })
}

/// What the statement reads in its conditions: each condition expression of the plan,
/// the top node's outputs beyond the result's (sort and grouping keys carried up), the
/// columns of every partial index scanned and, when the statement may ask for an order
/// (`ordered`, [`may_order`]), of every index scanned; traced like result columns.
async fn conditions(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    facts: &PlanFacts,
    ordered: bool,
    result_columns: usize,
    family: &Family,
    stored: &Stored,
) -> Result<Vec<Provenance>, tokio_postgres::Error> {
    let columns_of = |schema: &str, table: &str| -> Option<Vec<String>> {
        family.get(&(schema.to_owned(), table.to_owned())).map(|cols| {
            cols.iter().filter(|c| c.schema == schema && c.table == table).map(|c| c.column.clone()).collect()
        })
    };
    let mut out = Vec::new();
    if facts.hidden_reads {
        out.push(Provenance::unknown("a function that runs SQL given as text or reads session state"));
    }
    let exprs = facts.conditions.iter().chain(facts.outputs.iter().skip(result_columns));
    for expr in exprs {
        let traced = match expression_provenance(expr, facts, &columns_of) {
            Provenance::Columns { sources } => {
                match sources.iter().find(|s| stored.contains(&(s.schema.clone(), s.table.clone()))) {
                    Some(s) => Provenance::unknown(format!(
                        "a condition on {}.{}, which stores values of other columns",
                        s.schema, s.table
                    )),
                    None => Provenance::Columns { sources },
                }
            }
            unknown => unknown,
        };
        out.push(with_ancestors(traced, family));
    }
    if !facts.indexes.is_empty() {
        let names: Vec<String> = facts.indexes.clone();
        let rows = tx.query(&catalog.indexes, &[&names]).await?;
        let mut sources = Vec::new();
        for r in rows {
            let partial: bool = r.try_get(3)?;
            if ordered || partial {
                sources.push(SourceColumn { schema: r.try_get(0)?, table: r.try_get(1)?, column: r.try_get(2)? });
            }
        }
        out.push(with_ancestors(Provenance::columns(sources), family));
    }
    Ok(out)
}

/// The columns still untraced become unknown; so does what the statement reads.
fn unknown_rest(out: Vec<Option<Provenance>>, why: &str) -> ResultProvenance {
    ResultProvenance {
        columns: out.into_iter().map(|p| p.unwrap_or_else(|| Provenance::unknown(why))).collect(),
        reads: None,
        conditions: None,
    }
}

/// Adds, for each source column of a partition or child table, the same column of
/// each ancestor, so that a rule on the parent table covers it.
fn with_ancestors(p: Provenance, family: &Family) -> Provenance {
    match p {
        Provenance::Columns { sources } => {
            let mut all = sources.clone();
            for s in &sources {
                if let Some(cols) = family.get(&(s.schema.clone(), s.table.clone())) {
                    all.extend(cols.iter().filter(|c| c.column == s.column).cloned());
                }
            }
            Provenance::columns(all)
        }
        unknown => unknown,
    }
}

/// The columns of every relation the plan scans and of its ancestors, by scanned
/// relation; and those of them that store other columns' values ([`derived_store`]).
async fn family(
    tx: &Transaction<'_>,
    catalog: &Catalog,
    facts: &PlanFacts,
) -> Result<(Family, Stored), tokio_postgres::Error> {
    let mut family = Family::new();
    let mut stored = Stored::new();
    if facts.relations.is_empty() {
        return Ok((family, stored));
    }
    let unique: BTreeMap<(String, String), ()> =
        facts.relations.iter().map(|r| ((r.schema.clone(), r.name.clone()), ())).collect();
    let (schemas, names): (Vec<String>, Vec<String>) = unique.into_keys().unzip();
    let rows = tx.query(&catalog.family, &[&schemas, &names]).await?;
    for r in rows {
        let (schema, name, kind): (String, String, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        if derived_store(&kind, &schema, &name) {
            stored.insert((schema.clone(), name.clone()));
        }
        let source = SourceColumn { schema: r.try_get(3)?, table: r.try_get(4)?, column: r.try_get(5)? };
        family.entry((schema, name)).or_default().push(source);
    }
    Ok((family, stored))
}

/// A `json` value in the binary protocol: its text.
struct Json<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Json<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Json(raw))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::TEXT
    }
}

#[cfg(test)]
mod tests {
    use super::derived_store;

    #[test]
    fn materialized_views_and_the_planner_statistics_store_other_columns_values() {
        assert!(derived_store("m", "public", "mv"));
        assert!(derived_store("r", "pg_catalog", "pg_statistic"));
        assert!(derived_store("r", "pg_catalog", "pg_statistic_ext_data"));
        assert!(!derived_store("r", "public", "pg_statistic"));
        assert!(!derived_store("r", "public", "t"));
        assert!(!derived_store("v", "pg_catalog", "pg_stats"));
    }
}
