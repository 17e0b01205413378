//! The answer of a catalog job ([`crate::RenderSpec::Catalog`]): what the schema
//! browser shows of a connection.
//!
//! Only names, declared types, nullability, row estimates and whether the agent masks a
//! column travel: never a value from a row. The agent builds it from its database's own
//! metadata, limited to what the connection's role may `SELECT` and to its egress
//! policy; the control plane parses it with this type (unknown fields refused) before it
//! keeps or shows it.

use serde::{Deserialize, Serialize};

/// Content type of a catalog result.
pub const CATALOG_CONTENT_TYPE: &str = "application/json";

/// Longest name (schema, table, column) or type text kept, characters; longer ones are
/// refused by [`Catalog::check`].
pub const MAX_CATALOG_NAME: usize = 256;

/// A connection's catalog, as the agent sends it.
///
/// ```json
/// {"tables": [{"schema": "public", "name": "orders", "kind": "table", "row_estimate": 1200,
///   "columns": [{"name": "id", "type": "integer", "nullable": false, "masked": false}]}],
///  "truncated": false}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Tables and views, by schema then name.
    pub tables: Vec<CatalogTable>,
    /// Whether the job's `max_tables`/`max_columns` (or the agent's `max_points`) cut
    /// the list short.
    pub truncated: bool,
}

/// One table or view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogTable {
    /// Schema (PostgreSQL), database (MySQL/MariaDB) or `main` (SQLite).
    pub schema: String,
    /// Table name.
    pub name: String,
    /// `table` or `view`.
    pub kind: TableKind,
    /// Rows, as the database estimates them (PostgreSQL `pg_class.reltuples`,
    /// MySQL/MariaDB `TABLE_ROWS`, SQLite a count capped at
    /// [`SQLITE_COUNT_CAP`]); `null` when unknown (never analysed, a view).
    pub row_estimate: Option<i64>,
    /// Columns the role may read, in table order.
    pub columns: Vec<CatalogColumn>,
}

/// Whether an object is a table or a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TableKind {
    /// A table (also a partitioned or foreign table).
    Table,
    /// A view or materialised view.
    View,
}

/// Highest count a SQLite catalog gives as a row estimate; a larger table says this.
pub const SQLITE_COUNT_CAP: i64 = 100_000;

/// One column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogColumn {
    /// Column name.
    pub name: String,
    /// Declared type, as the database names it (`integer`, `varchar(40)`, `TEXT`).
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether it may hold NULL.
    pub nullable: bool,
    /// Whether a mask rule of the agent's egress policy covers it: its values leave only
    /// as `***` or a keyed hash.
    pub masked: bool,
}

/// A name or type in a catalog that is empty, too long or not printable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: 1 to {MAX_CATALOG_NAME} printable characters")]
pub struct CatalogError {
    /// Where (`tables[3].columns[0].name`).
    pub place: String,
}

impl Catalog {
    /// Checks what serde cannot: names are present, short and printable. The error
    /// names the offending place (`tables[3].columns[0].name: ...`).
    pub fn check(&self) -> Result<(), CatalogError> {
        let text = |place: String, v: &str, may_be_empty: bool| {
            if (!may_be_empty && v.is_empty())
                || v.chars().count() > MAX_CATALOG_NAME
                || v.chars().any(char::is_control)
            {
                Err(CatalogError { place })
            } else {
                Ok(())
            }
        };
        for (i, t) in self.tables.iter().enumerate() {
            text(format!("tables[{i}].schema"), &t.schema, true)?;
            text(format!("tables[{i}].name"), &t.name, false)?;
            for (j, c) in t.columns.iter().enumerate() {
                text(format!("tables[{i}].columns[{j}].name"), &c.name, false)?;
                text(format!("tables[{i}].columns[{j}].type"), &c.data_type, true)?;
            }
        }
        Ok(())
    }

    /// Columns over all tables.
    pub fn column_count(&self) -> usize {
        self.tables.iter().map(|t| t.columns.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_has_a_stable_documented_shape() {
        let c = Catalog {
            tables: vec![CatalogTable {
                schema: "public".into(),
                name: "orders".into(),
                kind: TableKind::Table,
                row_estimate: Some(1200),
                columns: vec![CatalogColumn {
                    name: "id".into(),
                    data_type: "integer".into(),
                    nullable: false,
                    masked: false,
                }],
            }],
            truncated: false,
        };
        let json = serde_json::to_string(&c).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"tables":[{"schema":"public","name":"orders","kind":"table","row_estimate":1200,"columns":[{"name":"id","type":"integer","nullable":false,"masked":false}]}],"truncated":false}"#
        );
        assert_eq!(serde_json::from_str::<Catalog>(&json).ok(), Some(c.clone()));
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.column_count(), 1);
    }

    #[test]
    fn a_catalog_refuses_unknown_fields_and_bad_names() {
        assert!(serde_json::from_str::<Catalog>(r#"{"tables":[],"truncated":false,"rows":[[1]]}"#).is_err());
        let bad: Catalog = serde_json::from_str(
            r#"{"tables":[{"schema":"s","name":"t","kind":"view","row_estimate":null,
                "columns":[{"name":"a\nb","type":"int","nullable":true,"masked":true}]}],"truncated":true}"#,
        )
        .expect("parses");
        assert_eq!(
            bad.check().map_err(|e| e.to_string()),
            Err("tables[0].columns[0].name: 1 to 256 printable characters".into())
        );
    }
}
