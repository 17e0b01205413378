//! MySQL/MariaDB's catalog: `information_schema.COLUMNS` and `TABLES`, with
//! `TABLES.TABLE_ROWS` as the row estimate (exact for MyISAM, an estimate for InnoDB,
//! NULL for views). `information_schema` shows a role only the objects it holds a
//! privilege on, and the connector refuses a role that holds more than reading, so what
//! is listed is what the role may `SELECT`. The system databases are left out.

/// Tables and views with their columns. Metadata comes back as text (`CAST … AS CHAR`):
/// some servers type these columns as binary strings.
pub(super) const CATALOG_SQL: &str = "SELECT CAST(c.TABLE_SCHEMA AS CHAR), CAST(c.TABLE_NAME AS CHAR), \
       CASE WHEN t.TABLE_TYPE = 'VIEW' THEN 'view' ELSE 'table' END, \
       CAST(c.COLUMN_NAME AS CHAR), CAST(c.COLUMN_TYPE AS CHAR), c.IS_NULLABLE = 'YES', \
       CAST(t.TABLE_ROWS AS SIGNED) \
     FROM information_schema.COLUMNS c \
     JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
     WHERE c.TABLE_SCHEMA NOT IN ('information_schema', 'mysql', 'performance_schema', 'sys') \
     ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_statement_is_one_statement_without_parameters() {
        assert!(!CATALOG_SQL.contains('?'), "no parameters: the job carries none");
        assert_eq!(CATALOG_SQL.matches(';').count(), 0);
        for system in ["'mysql'", "'sys'", "'performance_schema'", "'information_schema'"] {
            assert!(CATALOG_SQL.contains(system), "{system} left out");
        }
    }
}
