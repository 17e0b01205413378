//! SQLite's catalog: `sqlite_schema` and `pragma_table_info`, and a capped count of each
//! table's rows as its estimate (SQLite keeps none unless `ANALYZE` ran, and a count
//! of a small file is cheap; the cap bounds the cost of a large one).

use outpost_protocol::catalog::{Catalog, TableKind, SQLITE_COUNT_CAP};

use crate::connectors::sqlite::SqliteConnector;
use crate::connectors::{QueryError, QueryLimits};
use crate::resultset::Value;

/// Tables and views of the main database (SQLite's own `sqlite_*` tables left out).
pub(super) const CATALOG_SQL: &str = "SELECT 'main', m.name, m.type, p.name, p.type, p.\"notnull\" = 0, NULL \
     FROM sqlite_schema AS m, pragma_table_info(m.name) AS p \
     WHERE m.type IN ('table', 'view') AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
     ORDER BY m.name, p.cid";

/// Tables counted in one statement (SQLite allows 500 terms in a compound SELECT).
const COUNTS_PER_STATEMENT: usize = 200;

/// Sets each table's `row_estimate` to its row count, capped at [`SQLITE_COUNT_CAP`].
pub(super) async fn add_counts(
    c: &SqliteConnector,
    catalog: &mut Catalog,
    limits: QueryLimits,
) -> Result<(), QueryError> {
    let tables: Vec<usize> =
        catalog.tables.iter().enumerate().filter(|(_, t)| t.kind == TableKind::Table).map(|(i, _)| i).collect();
    for chunk in tables.chunks(COUNTS_PER_STATEMENT) {
        let names: Vec<&str> = chunk.iter().filter_map(|i| catalog.tables.get(*i)).map(|t| t.name.as_str()).collect();
        let limits = QueryLimits { max_rows: chunk.len(), ..limits.clone() };
        let rs = c.query(count_sql(&names), Vec::new(), limits).await?;
        for (row, i) in rs.rows.iter().zip(chunk) {
            if let (Some(Value::Int(n)), Some(t)) = (row.first(), catalog.tables.get_mut(*i)) {
                t.row_estimate = Some(*n);
            }
        }
    }
    Ok(())
}

/// One statement counting the rows of `tables`, in order, each capped.
fn count_sql(tables: &[&str]) -> String {
    tables
        .iter()
        .map(|t| {
            format!("SELECT (SELECT count(*) FROM (SELECT 1 FROM main.{} LIMIT {SQLITE_COUNT_CAP}))", quote_ident(t))
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// `"name"`, with inner quotes doubled: a table name read from the file is never SQL.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::connectors::catalog::{read, CatalogCaps};
    use crate::connectors::Connector;

    fn db(sql: &str) -> (tempfile::TempDir, Connector) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(sql).expect("schema");
        (dir, Connector::Sqlite(SqliteConnector::new(path)))
    }

    const CAPS: CatalogCaps = CatalogCaps { max_tables: 100, max_columns: 1000 };

    #[tokio::test]
    async fn sqlite_catalog_lists_tables_views_columns_and_counts() {
        let (_dir, conn) =
            db("CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, \"odd \"\"name\" REAL);
             INSERT INTO customers (email) VALUES ('a@x'), ('b@x'), ('c@x');
             CREATE TABLE \"we\"\"ird\" (x);
             CREATE VIEW big AS SELECT id FROM customers;");
        let c = read(&conn, CAPS, QueryLimits::new(1, Duration::from_secs(5))).await.expect("catalog");
        assert!(!c.truncated);
        let tables: Vec<(&str, TableKind, Option<i64>)> =
            c.tables.iter().map(|t| (t.name.as_str(), t.kind, t.row_estimate)).collect();
        assert_eq!(
            tables,
            vec![
                ("big", TableKind::View, None),
                ("customers", TableKind::Table, Some(3)),
                ("we\"ird", TableKind::Table, Some(0))
            ]
        );
        let cols: Vec<(&str, &str, bool)> =
            c.tables[1].columns.iter().map(|c| (c.name.as_str(), c.data_type.as_str(), c.nullable)).collect();
        assert_eq!(cols, vec![("id", "INTEGER", true), ("email", "TEXT", false), ("odd \"name", "REAL", true)]);
        assert!(c.tables.iter().all(|t| t.schema == "main"));
    }

    #[tokio::test]
    async fn sqlite_counts_stop_at_the_cap() {
        let (_dir, conn) = db(&format!(
            "CREATE TABLE n (v); WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {})
             INSERT INTO n SELECT i FROM s;",
            SQLITE_COUNT_CAP + 5
        ));
        let c = read(&conn, CAPS, QueryLimits::new(1, Duration::from_secs(20))).await.expect("catalog");
        assert_eq!(c.tables[0].row_estimate, Some(SQLITE_COUNT_CAP));
    }

    #[test]
    fn table_names_are_quoted_not_interpolated() {
        assert_eq!(quote_ident("a\"; DROP TABLE x; --"), "\"a\"\"; DROP TABLE x; --\"");
        let sql = count_sql(&["a", "b"]);
        assert_eq!(sql.matches("UNION ALL").count(), 1);
    }
}
