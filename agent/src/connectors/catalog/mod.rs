//! Reading a connection's catalog for the schema browser (a `catalog` job).
//!
//! Owns: the metadata statements of each database kind and turning their rows into a
//! [`Catalog`]. The statements are the agent's own, fixed text (the job carries no SQL);
//! they run through the connector's ordinary path, so the read-only session, the
//! statement timeout, cancellation and the role check apply to them as to any job. Only
//! objects the connection's role may `SELECT` are listed (PostgreSQL: per column;
//! MySQL/MariaDB: what `information_schema` shows the role; SQLite: the whole file).
//! It refuses nothing itself: what the egress policy marks or keeps in is applied by the
//! job runner afterwards.
//!
//! Every statement returns the same seven columns, one row per column of a table, in
//! schema, table and column order: `schema, table, kind ('table'|'view'), column, type,
//! nullable, row_estimate`.

mod mysql;
mod postgres;
mod sqlite;

use outpost_protocol::catalog::{Catalog, CatalogColumn, CatalogTable, TableKind};

use super::{Connector, QueryError, QueryLimits};
use crate::resultset::{ResultSet, Value};

/// Caps on what is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogCaps {
    /// Tables and views at most.
    pub max_tables: usize,
    /// Columns over all tables at most.
    pub max_columns: usize,
}

/// Reads the catalog of `conn` within `caps` (and `limits`' timeout and cancellation;
/// its `max_rows` is replaced by the column cap). Every column comes back `masked:
/// false`: the policy marks them.
pub async fn read(conn: &Connector, caps: CatalogCaps, limits: QueryLimits) -> Result<Catalog, QueryError> {
    // One row per column, and one more to know that there were more.
    let limits = QueryLimits { max_rows: caps.max_columns, provenance: false, conditions: false, ..limits };
    match conn {
        Connector::Sqlite(c) => {
            let rs = c.query(sqlite::CATALOG_SQL.to_owned(), Vec::new(), limits.clone()).await?;
            let mut catalog = assemble(&rs, caps)?;
            sqlite::add_counts(c, &mut catalog, limits).await?;
            Ok(catalog)
        }
        Connector::Postgres(c) => assemble(&c.query(postgres::CATALOG_SQL.to_owned(), Vec::new(), limits).await?, caps),
        Connector::Mysql(c) => assemble(&c.query(mysql::CATALOG_SQL.to_owned(), Vec::new(), limits).await?, caps),
    }
}

/// Groups the rows of a catalog statement into tables, stopping at `caps`.
pub(crate) fn assemble(rs: &ResultSet, caps: CatalogCaps) -> Result<Catalog, QueryError> {
    let mut catalog = Catalog { tables: Vec::new(), truncated: rs.truncated };
    for (i, row) in rs.rows.iter().enumerate() {
        // One row is one column.
        if i >= caps.max_columns {
            catalog.truncated = true;
            break;
        }
        let bad = |what: &str| QueryError::Database { message: format!("catalog row {i}: {what}") };
        let [schema, table, kind, column, data_type, nullable, estimate] = row.as_slice() else {
            return Err(bad("expected 7 columns"));
        };
        let (Some(schema), Some(table), Some(column)) = (text(schema), text(table), text(column)) else {
            return Err(bad("a schema, table or column name is not text"));
        };
        let same = catalog.tables.last().is_some_and(|t| t.schema == schema && t.name == table);
        if !same {
            if catalog.tables.len() >= caps.max_tables {
                catalog.truncated = true;
                break;
            }
            catalog.tables.push(CatalogTable {
                schema,
                name: table,
                kind: if text(kind).as_deref() == Some("view") { TableKind::View } else { TableKind::Table },
                row_estimate: whole(estimate).filter(|n| *n >= 0),
                columns: Vec::new(),
            });
        }
        if let Some(t) = catalog.tables.last_mut() {
            t.columns.push(CatalogColumn {
                name: column,
                data_type: text(data_type).unwrap_or_default(),
                nullable: truthy(nullable).unwrap_or(true),
                masked: false,
            });
        }
    }
    Ok(catalog)
}

/// A text value (bytes as UTF-8, which MySQL may send for metadata).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::Text(s) => Some(s.clone()),
        Value::Bytes(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

/// A whole number from an integer, decimal or float value.
fn whole(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        // An estimate: rounding is fine, and `as` saturates.
        #[allow(clippy::cast_possible_truncation)]
        Value::Float(f) if f.is_finite() => Some(f.round() as i64),
        Value::Decimal(s) | Value::Text(s) => s.split('.').next().and_then(|w| w.parse().ok()),
        _ => None,
    }
}

/// A boolean from a boolean or an integer (MySQL and SQLite have no boolean type).
fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Int(n) => Some(*n != 0),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(schema: &str, table: &str, kind: &str, column: &str, nullable: Value, estimate: Value) -> Vec<Value> {
        vec![
            Value::Text(schema.into()),
            Value::Text(table.into()),
            Value::Text(kind.into()),
            Value::Text(column.into()),
            Value::Bytes(b"int".to_vec()),
            nullable,
            estimate,
        ]
    }

    fn rows(rows: Vec<Vec<Value>>, truncated: bool) -> ResultSet {
        ResultSet { columns: (0..7).map(|i| format!("c{i}")).collect(), rows, truncated, provenance: None }
    }

    const WIDE: CatalogCaps = CatalogCaps { max_tables: 100, max_columns: 100 };

    #[test]
    fn rows_group_into_tables_with_typed_columns_and_estimates() {
        let rs = rows(
            vec![
                row("public", "orders", "table", "id", Value::Bool(false), Value::Float(1234.4)),
                row("public", "orders", "table", "email", Value::Int(1), Value::Float(1234.4)),
                row("public", "v", "view", "n", Value::Bool(true), Value::Null),
                row("sales", "orders", "table", "id", Value::Int(0), Value::Float(-1.0)),
            ],
            false,
        );
        let c = assemble(&rs, WIDE).expect("assembles");
        assert!(!c.truncated);
        let names: Vec<(&str, &str, TableKind, Option<i64>)> =
            c.tables.iter().map(|t| (t.schema.as_str(), t.name.as_str(), t.kind, t.row_estimate)).collect();
        assert_eq!(
            names,
            vec![
                ("public", "orders", TableKind::Table, Some(1234)),
                ("public", "v", TableKind::View, None),
                // -1: never analysed.
                ("sales", "orders", TableKind::Table, None),
            ]
        );
        let orders = &c.tables[0].columns;
        assert_eq!((orders[0].name.as_str(), orders[0].data_type.as_str(), orders[0].nullable), ("id", "int", false));
        assert!(orders[1].nullable && !orders[1].masked);
    }

    #[test]
    fn caps_cut_the_catalog_and_say_so() {
        let many: Vec<Vec<Value>> =
            (0..5).map(|i| row("main", &format!("t{i}"), "table", "a", Value::Int(1), Value::Null)).collect();
        let c = assemble(&rows(many.clone(), false), CatalogCaps { max_tables: 2, max_columns: 100 }).expect("ok");
        assert_eq!((c.tables.len(), c.truncated), (2, true));
        let c = assemble(&rows(many.clone(), false), CatalogCaps { max_tables: 100, max_columns: 3 }).expect("ok");
        assert_eq!((c.column_count(), c.truncated), (3, true));
        // The connector stopped at its row cap: truncated even if every row fitted.
        let c = assemble(&rows(many, true), WIDE).expect("ok");
        assert!(c.truncated);
    }

    #[test]
    fn a_malformed_catalog_row_is_an_error_not_a_panic() {
        let e = assemble(&rows(vec![vec![Value::Int(1)]], false), WIDE).expect_err("short row");
        assert_eq!(e.to_string(), "query failed: catalog row 0: expected 7 columns");
        let e = assemble(&rows(vec![row("s", "t", "table", "c", Value::Null, Value::Null)], false), WIDE);
        assert!(e.is_ok(), "an unknown nullability reads as nullable");
    }
}
