//! PostgreSQL's catalog: `pg_class`, `pg_attribute` and `pg_namespace`, with
//! `pg_class.reltuples` as the row estimate (negative until the table is first analysed
//! or vacuumed: unknown). A column is listed only when the role may `SELECT` it
//! (`has_column_privilege` is true for a table-wide grant too) in a schema it may use;
//! the system schemas are left out.

/// Tables (`r`, `p`, `f`) and views (`v`, `m`) with their readable columns.
pub(super) const CATALOG_SQL: &str = "SELECT n.nspname::text, c.relname::text, \
       CASE WHEN c.relkind IN ('v', 'm') THEN 'view' ELSE 'table' END, \
       a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, \
       CASE WHEN c.relkind IN ('v', 'm') OR c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') \
       AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
       AND has_schema_privilege(n.oid, 'USAGE') \
       AND has_column_privilege(c.oid, a.attnum, 'SELECT') \
     ORDER BY 1, 2, a.attnum";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_statement_lists_only_what_the_role_may_select() {
        // The e2e test (tests/tests/e2e/schema_browser.rs) runs it on a real server with a
        // role that cannot read one table; here: the privilege filters stay in place.
        assert!(CATALOG_SQL.contains("has_column_privilege(c.oid, a.attnum, 'SELECT')"));
        assert!(CATALOG_SQL.contains("has_schema_privilege(n.oid, 'USAGE')"));
        assert!(CATALOG_SQL.contains("NOT a.attisdropped"));
        assert!(!CATALOG_SQL.contains('$'), "no parameters: the job carries none");
        assert_eq!(CATALOG_SQL.matches(';').count(), 0, "one statement");
    }
}
