//! Where a MySQL/MariaDB result's columns come from, as far as the server can prove it.
//!
//! The column definitions name an original table and column, but a derived table
//! aliased like a real table makes them lie (`SELECT id FROM (SELECT email AS id FROM
//! customers) AS orders` reports `orders.id`), and the server shows no expression
//! lineage. So a column counts as a plain table column only when
//!
//! 1. its definition names a schema, table and column, the table is a base table (not
//!    a view) and has that column (information_schema), and
//! 2. `EXPLAIN` of the statement, with derived-table merging switched off, shows one
//!    flat SELECT over base tables: no derived table, CTE, subquery or UNION.
//!
//! Anything else is [`Provenance::Unknown`], and what the statement reads is always
//! unknown here: with mask rules, such a column is refused or masked by the policy.

use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Statement, Value as MyValue};

use crate::provenance::{Provenance, ResultProvenance, SourceColumn};

/// Traces the columns of `stmt` (prepared from `sql`), with `params` bound.
pub(super) async fn trace(
    conn: &mut Conn,
    stmt: &Statement,
    sql: &str,
    params: &[MyValue],
) -> Result<ResultProvenance, mysql_async::Error> {
    let named: Vec<Option<SourceColumn>> = stmt
        .columns()
        .iter()
        .map(|c| {
            let (schema, table, column) = (c.schema_str(), c.org_table_str(), c.org_name_str());
            (!schema.is_empty() && !table.is_empty() && !column.is_empty()).then(|| SourceColumn {
                schema: schema.into_owned(),
                table: table.into_owned(),
                column: column.into_owned(),
            })
        })
        .collect();
    let flat = flat_plan(conn, sql, params).await?;
    let mut real = Vec::new();
    let wanted: Vec<&SourceColumn> = named.iter().flatten().collect();
    if flat && !wanted.is_empty() {
        let pairs = vec!["(?, ?)"; wanted.len()].join(", ");
        let mut args: Vec<MyValue> = Vec::with_capacity(wanted.len() * 2);
        for w in &wanted {
            args.push(w.schema.clone().into());
            args.push(w.table.clone().into());
        }
        real = conn
            .exec::<(String, String, String), _, _>(
                format!(
                    "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME FROM information_schema.COLUMNS c \
                     JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
                     WHERE t.TABLE_TYPE = 'BASE TABLE' AND (c.TABLE_SCHEMA, c.TABLE_NAME) IN ({pairs})"
                ),
                args,
            )
            .await?;
    }
    let is_real = |s: &SourceColumn| {
        real.iter().any(|(schema, table, column)| {
            schema == &s.schema && table == &s.table && column.eq_ignore_ascii_case(&s.column)
        })
    };
    let columns = named
        .into_iter()
        .map(|n| match n {
            Some(src) if flat && is_real(&src) => Provenance::columns(vec![src]),
            Some(src) if flat => {
                Provenance::unknown(format!("{}.{} is not a base table's column (a view?)", src.table, src.column))
            }
            Some(_) => Provenance::unknown("a column of a derived table, CTE, subquery or UNION"),
            None => Provenance::unknown("an expression (MySQL/MariaDB show no lineage for expressions)"),
        })
        .collect();
    // Nor what its conditions read: the server shows no lineage for them either.
    Ok(ResultProvenance { columns, reads: None, conditions: None })
}

/// Whether the statement is one flat SELECT over base tables, by its plan with derived
/// tables kept apart (the session's optimizer switch is restored afterwards).
async fn flat_plan(conn: &mut Conn, sql: &str, params: &[MyValue]) -> Result<bool, mysql_async::Error> {
    let before: Option<String> = conn.query_first("SELECT @@SESSION.optimizer_switch").await?;
    conn.query_drop("SET SESSION optimizer_switch = 'derived_merge=off'").await?;
    let plan = conn.exec_iter(format!("EXPLAIN {sql}"), params.to_vec()).await;
    let rows: Result<Vec<mysql_async::Row>, _> = match plan {
        Ok(r) => r.collect_and_drop().await,
        Err(e) => Err(e),
    };
    if let Some(before) = before {
        conn.exec_drop("SET SESSION optimizer_switch = ?", (before,)).await?;
    }
    // EXPLAIN of a view needs SHOW VIEW, which a least-privilege role lacks: a plan
    // the server will not show proves nothing, so nothing is trusted.
    let Ok(rows) = rows else { return Ok(false) };
    let flat = rows.iter().all(|row| {
        let select_type: Option<String> = row.get_opt(1).and_then(Result::ok);
        let table: Option<String> = row.get_opt(2).and_then(Result::ok);
        select_type.as_deref() == Some("SIMPLE") && !table.as_deref().unwrap_or("<").starts_with('<')
    });
    Ok(flat && !rows.is_empty())
}
