//! Where a SQLite result's columns come from and what its conditions read: the
//! authorizer's reads, the column metadata SQLite keeps, and `EXPLAIN QUERY PLAN`.

use outpost_protocol::Param;
use rusqlite::{Connection, OptionalExtension as _};

use super::{bind, db_err};
use crate::connectors::QueryError;
use crate::provenance::{Provenance, SourceColumn};

/// What the statement reads other than as the plain source of a result column: the
/// authorizer reports each column reference once as it is resolved, so every read left
/// after taking away one per result column that names it as its origin is a read in a
/// condition or an expression (conservative: an expression's reads count too).
pub(super) fn conditions(reads: &[SourceColumn], columns: &[Provenance]) -> Vec<Provenance> {
    let mut left: Vec<&SourceColumn> = reads.iter().collect();
    for c in columns {
        if let Provenance::Columns { sources } = c {
            for s in sources {
                if let Some(i) = left.iter().position(|r| *r == s) {
                    left.remove(i);
                }
            }
        }
    }
    left.into_iter().map(|s| Provenance::columns(vec![s.clone()])).collect()
}

/// What `EXPLAIN QUERY PLAN` of the statement shows (views expanded).
#[derive(Default)]
pub(super) struct PlanFacts {
    /// A compound SELECT anywhere.
    pub(super) compound: bool,
    /// A temporary B-tree (sorting or grouping by a result column's alias or number,
    /// which SQLite does not report to the authorizer again).
    pub(super) sorts: bool,
    /// The indexes scanned: reading one in order sorts by its columns.
    pub(super) indexes: Vec<String>,
}

pub(super) fn query_plan(conn: &Connection, sql: &str, params: &[Param]) -> Result<PlanFacts, QueryError> {
    let mut plan = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).map_err(db_err)?;
    bind(&mut plan, params)?;
    let mut rows = plan.raw_query();
    let mut facts = PlanFacts::default();
    while let Some(row) = rows.next().map_err(db_err)? {
        let detail: String = row.get(3).map_err(db_err)?;
        if ["COMPOUND", "UNION", "INTERSECT", "EXCEPT", "LEFT-MOST"].iter().any(|w| detail.contains(w)) {
            facts.compound = true;
        }
        if detail.contains("TEMP B-TREE") {
            facts.sorts = true;
        }
        for marker in [" USING INDEX ", " USING COVERING INDEX "] {
            if let Some(at) = detail.find(marker) {
                let name = detail[at + marker.len()..].split_whitespace().next().unwrap_or_default();
                facts.indexes.push(name.to_owned());
            }
        }
    }
    Ok(facts)
}

/// The columns index `name` orders by, when the statement may ask for an order
/// (`ordered`: otherwise the order rows come in decides nothing); unknown for an
/// expression index, and always for a partial index (whose predicate filters rows by
/// columns the authorizer is not told of).
pub(super) fn index_columns(conn: &Connection, name: &str, ordered: bool) -> Result<Provenance, QueryError> {
    let found: Option<(String, String, Option<String>)> = conn
        .query_row(
            "SELECT 'main', tbl_name, sql FROM sqlite_master WHERE type = 'index' AND name = ?1 \
             UNION ALL SELECT 'temp', tbl_name, sql FROM sqlite_temp_master WHERE type = 'index' AND name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db_err)?;
    let Some((schema, table, sql)) = found else {
        return Ok(Provenance::unknown(format!("index {name:?} is not in the schema")));
    };
    if sql.is_some_and(|s| s.to_ascii_uppercase().contains(" WHERE ")) {
        return Ok(Provenance::unknown(format!("partial index {name:?}")));
    }
    if !ordered {
        return Ok(Provenance::columns(Vec::new()));
    }
    let mut stmt = conn.prepare("SELECT name FROM pragma_index_info(?1)").map_err(db_err)?;
    let names: Vec<Option<String>> =
        stmt.query_map([name], |r| r.get(0)).map_err(db_err)?.collect::<Result<_, _>>().map_err(db_err)?;
    let mut sources = Vec::new();
    for column in names {
        let Some(column) = column else {
            return Ok(Provenance::unknown(format!("index {name:?} on an expression")));
        };
        sources.push(SourceColumn { schema: schema.clone(), table: table.clone(), column });
    }
    Ok(Provenance::columns(sources))
}

/// Where result column `i` comes from: SQLite names the table column behind a plain
/// column reference (through views and subqueries) and nothing for an expression.
pub(super) fn origin(stmt: &rusqlite::Statement<'_>, i: usize) -> Provenance {
    let text = |c: &std::ffi::CStr| c.to_str().map(str::to_owned).ok();
    match stmt.column_metadata(i) {
        Ok(Some((db, table, column, ..))) => match (text(db), text(table), text(column)) {
            (Some(schema), Some(table), Some(column)) => {
                Provenance::columns(vec![SourceColumn { schema, table, column }])
            }
            _ => Provenance::unknown("a table or column name that is not UTF-8"),
        },
        Ok(None) => Provenance::unknown("an expression (SQLite names the source of plain columns only)"),
        Err(e) => Provenance::unknown(format!("SQLite could not describe it: {e}")),
    }
}
