//! The SQLite connector: the embedded default (the bundled sample data set lives here).
//!
//! Each query opens the file with `SQLITE_OPEN_READ_ONLY`, sets `PRAGMA query_only`,
//! forbids `ATTACH` (limit of attached databases 0), refuses statements SQLite itself
//! does not call read-only, and runs in a blocking task with a progress handler that
//! interrupts it at the deadline.

use std::path::{Path, PathBuf};
use std::time::Instant;

use outpost_protocol::Param;
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use super::{QueryError, QueryLimits};
use crate::provenance::{Provenance, ResultProvenance, SourceColumn};
use crate::resultset::{ResultSet, Value};

/// The bundled sample data set.
const SAMPLE_SQL: &str = include_str!("../../sample/orders.sql");

/// Idle read-only connections kept per database; opening one costs a file open and
/// schema read, which is a noticeable part of a small job.
const MAX_IDLE: usize = 8;

/// A configured SQLite database with a small pool of idle read-only connections.
#[derive(Debug, Clone)]
pub struct SqliteConnector {
    path: PathBuf,
    idle: std::sync::Arc<std::sync::Mutex<Vec<Connection>>>,
}

fn db_err(e: rusqlite::Error) -> QueryError {
    let message = e.to_string();
    let readonly = matches!(
        &e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ReadOnly
    ) || message.contains("readonly")
        || message.contains("query_only");
    if readonly {
        QueryError::NotReadOnly { reason: message }
    } else {
        match e {
            rusqlite::Error::SqlInputError { error, msg, sql, offset } => {
                let position = usize::try_from(offset).ok().and_then(|o| sql.get(..o)).map(|s| s.chars().count() + 1);
                QueryError::Server(Box::new(super::ServerError {
                    message: msg,
                    number: Some(u32::try_from(error.extended_code).unwrap_or_default()),
                    position: position.and_then(|p| u32::try_from(p).ok()),
                    ..Default::default()
                }))
            }
            rusqlite::Error::SqliteFailure(f, Some(msg)) => QueryError::Server(Box::new(super::ServerError {
                message: msg,
                number: Some(u32::try_from(f.extended_code).unwrap_or_default()),
                ..Default::default()
            })),
            _ => QueryError::Database { message },
        }
    }
}

impl SqliteConnector {
    /// A connector for the file at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path, idle: Default::default() }
    }

    /// What makes two connections the same database, for the result cache's key.
    pub fn identity(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    /// Runs one read-only statement with typed parameters, within `limits`.
    pub async fn query(&self, sql: String, params: Vec<Param>, limits: QueryLimits) -> Result<ResultSet, QueryError> {
        let path = self.path.clone();
        let idle = std::sync::Arc::clone(&self.idle);
        tokio::task::spawn_blocking(move || {
            let pooled = idle.lock().ok().and_then(|mut v| v.pop());
            let mut conn = match pooled {
                Some(c) => c,
                None => open_read_only(&path)?,
            };
            let result = query_blocking(&mut conn, &sql, &params, &limits);
            // A connection whose query failed is still sound (read-only, no open
            // transaction); one whose open failed never got here.
            let _ = conn.progress_handler(0, None::<fn() -> bool>);
            let _ = conn.authorizer(None::<fn(rusqlite::hooks::AuthContext<'_>) -> rusqlite::hooks::Authorization>);
            if let Ok(mut v) = idle.lock() {
                if v.len() < MAX_IDLE {
                    v.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| QueryError::Task(e.to_string()))?
    }
}

fn open_read_only(path: &Path) -> Result<Connection, QueryError> {
    let open_err = |e: rusqlite::Error| QueryError::Open { path: path.display().to_string(), reason: e.to_string() };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(open_err)?;
    conn.pragma_update(None, "query_only", true).map_err(open_err)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0).map_err(open_err)?;
    Ok(conn)
}

fn query_blocking(
    conn: &mut Connection,
    sql: &str,
    params: &[Param],
    limits: &QueryLimits,
) -> Result<ResultSet, QueryError> {
    let deadline = Instant::now() + limits.timeout;
    let cancel = limits.cancel.clone();
    // Interrupts the statement at the deadline or when a user cancels the job.
    conn.progress_handler(1000, Some(move || Instant::now() >= deadline || cancel.is_cancelled())).map_err(db_err)?;
    let after_ms = u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX);
    let stopped = || {
        if limits.cancel.is_cancelled() {
            Some(QueryError::Cancelled)
        } else if Instant::now() >= deadline {
            Some(QueryError::Timeout { after_ms })
        } else {
            None
        }
    };

    // With mask rules, SQLite's authorizer lists every table column the statement
    // reads while it is compiled (through views and subqueries too).
    let reads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    if limits.provenance {
        let sink = std::sync::Arc::clone(&reads);
        conn.authorizer(Some(move |ctx: rusqlite::hooks::AuthContext<'_>| {
            if let rusqlite::hooks::AuthAction::Read { table_name, column_name } = ctx.action {
                // An empty column name is a read of no value (`count(*)`).
                if !column_name.is_empty() {
                    if let Ok(mut r) = sink.lock() {
                        r.push(SourceColumn {
                            schema: ctx.database_name.unwrap_or("main").to_owned(),
                            table: table_name.to_owned(),
                            column: column_name.to_owned(),
                        });
                    }
                }
            }
            rusqlite::hooks::Authorization::Allow
        }))
        .map_err(db_err)?;
    }
    let mut stmt = match conn.prepare(sql) {
        Ok(s) => s,
        Err(rusqlite::Error::MultipleStatement) => {
            return Err(QueryError::Database { message: "a job may run exactly one statement".into() })
        }
        Err(e) => return Err(stopped().unwrap_or_else(|| db_err(e))),
    };
    if !stmt.readonly() {
        return Err(QueryError::NotReadOnly { reason: "the statement writes to the database".into() });
    }
    bind(&mut stmt, params)?;
    let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    let provenance = if limits.provenance {
        let reads = reads.lock().map(|mut r| std::mem::take(&mut *r)).ok();
        // SQLite names the left-most SELECT's column as the origin of a compound
        // (UNION, INTERSECT, EXCEPT) column: with one anywhere, origins prove nothing.
        let plan = query_plan(conn, sql, params)?;
        let compound = plan.compound;
        let columns: Vec<Provenance> = (0..columns.len())
            .map(|i| {
                if compound {
                    Provenance::unknown("a compound SELECT (UNION, INTERSECT, EXCEPT)")
                } else {
                    origin(&stmt, i)
                }
            })
            .collect();
        let conditions = match reads.as_ref().filter(|_| limits.conditions) {
            Some(r) => {
                let mut c = conditions(r, &columns);
                if plan.sorts {
                    // Sorting or grouping by a result column's alias or number: by any
                    // of the result's plain columns, as far as the agent can tell.
                    let sources = columns
                        .iter()
                        .flat_map(|p| match p {
                            Provenance::Columns { sources } => sources.clone(),
                            Provenance::Unknown { .. } => Vec::new(),
                        })
                        .collect();
                    c.push(Provenance::columns(sources));
                }
                for index in &plan.indexes {
                    c.push(index_columns(conn, index, crate::provenance::may_order(sql))?);
                }
                Some(c)
            }
            None => None,
        };
        Some(ResultProvenance { columns, reads, conditions })
    } else {
        None
    };
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    let mut truncated = false;
    loop {
        let row = match rows.next() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => return Err(stopped().unwrap_or_else(|| db_err(e))),
        };
        if out.len() == limits.max_rows {
            truncated = true;
            break;
        }
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let v = match row.get_ref(i).map_err(db_err)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::Int(n),
                ValueRef::Real(f) => Value::Float(f),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            };
            values.push(v);
        }
        out.push(values);
    }
    Ok(ResultSet { columns, rows: out, truncated, provenance })
}

/// What the statement reads other than as the plain source of a result column: the
/// authorizer reports each column reference once as it is resolved, so every read left
/// after taking away one per result column that names it as its origin is a read in a
/// condition or an expression (conservative: an expression's reads count too).
fn conditions(reads: &[SourceColumn], columns: &[Provenance]) -> Vec<Provenance> {
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
struct PlanFacts {
    /// A compound SELECT anywhere.
    compound: bool,
    /// A temporary B-tree (sorting or grouping by a result column's alias or number,
    /// which SQLite does not report to the authorizer again).
    sorts: bool,
    /// The indexes scanned: reading one in order sorts by its columns.
    indexes: Vec<String>,
}

fn query_plan(conn: &Connection, sql: &str, params: &[Param]) -> Result<PlanFacts, QueryError> {
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
fn index_columns(conn: &Connection, name: &str, ordered: bool) -> Result<Provenance, QueryError> {
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
fn origin(stmt: &rusqlite::Statement<'_>, i: usize) -> Provenance {
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

/// Binds `$1..$N` by number (SQLite treats `$1` as a name) or, without such names, by position.
fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Param]) -> Result<(), QueryError> {
    let needed = stmt.parameter_count();
    let uses_dollar = (1..=needed).any(|i| stmt.parameter_name(i).is_some_and(|n| n.starts_with('$')));
    let mut bound = vec![false; needed];
    for (i, p) in params.iter().enumerate() {
        let number = i + 1;
        let index = if uses_dollar {
            match stmt.parameter_index(&format!("${number}")).map_err(db_err)? {
                Some(idx) => idx,
                None => {
                    return Err(QueryError::Param {
                        index: number,
                        reason: "the statement has no such parameter".into(),
                    })
                }
            }
        } else if number <= needed {
            number
        } else {
            return Err(QueryError::Param {
                index: number,
                reason: format!("the statement takes only {needed} parameter(s)"),
            });
        };
        let r = match p {
            Param::Null => stmt.raw_bind_parameter(index, rusqlite::types::Null),
            Param::Bool(b) => stmt.raw_bind_parameter(index, i64::from(*b)),
            Param::Int(n) => stmt.raw_bind_parameter(index, *n),
            Param::Float(f) => stmt.raw_bind_parameter(index, *f),
            Param::Text(t) => stmt.raw_bind_parameter(index, t.as_str()),
        };
        r.map_err(|e| QueryError::Param { index: number, reason: e.to_string() })?;
        bound[index - 1] = true;
    }
    if let Some(missing) = bound.iter().position(|b| !b) {
        let name = stmt.parameter_name(missing + 1).map(str::to_owned).unwrap_or_else(|| format!("?{}", missing + 1));
        return Err(QueryError::Param { index: missing + 1, reason: format!("no value given for {name}") });
    }
    Ok(())
}

/// Builds the sample database at `path` from the bundled SQL if the file does not exist:
/// written to a temp file in the same directory and renamed into place, mode 0600.
/// Returns whether it was created.
pub fn ensure_sample_db(path: &Path) -> Result<bool, QueryError> {
    if path.exists() {
        return Ok(false);
    }
    let err = |reason: String| QueryError::Open { path: path.display().to_string(), reason };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        outpost_common::fsutil::create_private_dir(dir).map_err(|e| err(e.to_string()))?;
    }
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| err(e.to_string()))?;
    }
    let build = || -> Result<(), rusqlite::Error> {
        let conn = Connection::open(&tmp)?;
        conn.execute_batch(&format!("BEGIN; {SAMPLE_SQL} COMMIT;"))?;
        conn.close().map_err(|(_, e)| e)
    };
    if let Err(e) = build() {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e.to_string()));
    }
    let synced = std::fs::File::open(&tmp).and_then(|f| f.sync_all());
    if let Err(e) = synced.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e.to_string()));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    const T: Duration = Duration::from_secs(5);

    fn sample() -> (tempfile::TempDir, SqliteConnector) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sample.db");
        assert!(ensure_sample_db(&path).expect("build"));
        (dir, SqliteConnector::new(path))
    }

    fn limits(max_rows: usize) -> QueryLimits {
        QueryLimits::new(max_rows, T)
    }

    #[tokio::test]
    async fn sample_db_is_built_once_with_mode_0600_and_has_orders() {
        let (dir, c) = sample();
        let path = dir.path().join("sample.db");
        assert!(!ensure_sample_db(&path).expect("second call"));
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        let rs =
            c.query("SELECT COUNT(DISTINCT region), COUNT(*) FROM orders".into(), vec![], limits(10)).await.expect("q");
        assert_eq!(rs.rows[0][0], Value::Int(4));
        assert!(matches!(rs.rows[0][1], Value::Int(n) if n > 100));
    }

    #[tokio::test]
    async fn select_returns_typed_values_and_columns() {
        let (_d, c) = sample();
        let rs = c
            .query("SELECT 1 AS i, 2.5 AS f, 'x' AS t, NULL AS n, x'00ff' AS b".into(), vec![], limits(10))
            .await
            .expect("query");
        assert_eq!(rs.columns, ["i", "f", "t", "n", "b"]);
        assert_eq!(
            rs.rows,
            vec![vec![
                Value::Int(1),
                Value::Float(2.5),
                Value::Text("x".into()),
                Value::Null,
                Value::Bytes(vec![0, 255])
            ]]
        );
    }

    #[tokio::test]
    async fn row_cap_reads_one_extra_row_and_marks_truncation() {
        let (_d, c) = sample();
        let rs = c.query("SELECT id FROM orders ORDER BY id".into(), vec![], limits(7)).await.expect("q");
        assert_eq!(rs.rows.len(), 7);
        assert!(rs.truncated);
        let rs = c.query("SELECT id FROM orders WHERE id <= 7".into(), vec![], limits(7)).await.expect("q");
        assert_eq!(rs.rows.len(), 7);
        assert!(!rs.truncated);
    }

    #[tokio::test]
    async fn writes_are_refused_and_nothing_changes() {
        let (dir, c) = sample();
        for sql in [
            "INSERT INTO orders (region, month, product, quantity, amount) VALUES ('X', '2025-01', 'p', 1, 1)",
            "UPDATE orders SET amount = 0",
            "DELETE FROM orders",
            "CREATE TABLE t (x)",
            "DROP TABLE orders",
            "PRAGMA journal_mode = DELETE",
        ] {
            let err = c.query(sql.into(), vec![], limits(10)).await.expect_err(sql);
            assert!(matches!(err, QueryError::NotReadOnly { .. }), "{sql}: {err}");
        }
        let rw = Connection::open(dir.path().join("sample.db")).expect("rw");
        let n: i64 = rw.query_row("SELECT COUNT(*) FROM orders WHERE amount > 0", [], |r| r.get(0)).expect("count");
        assert_eq!(n, 288);
    }

    #[test]
    fn the_database_itself_refuses_writes_on_an_agent_connection() {
        // Below the agent's own `readonly()` check: the connection as opened refuses
        // writes and attachments by itself.
        let (dir, _c) = sample();
        let conn = open_read_only(&dir.path().join("sample.db")).expect("open");
        for sql in ["DELETE FROM orders", "CREATE TABLE t (x)", "DROP TABLE orders", "UPDATE orders SET amount = 0"] {
            let err = conn.execute(sql, []).expect_err(sql);
            assert!(err.to_string().contains("readonly"), "{sql}: {err}");
        }
        let other = dir.path().join("other.db");
        let err = conn.execute(&format!("ATTACH DATABASE '{}' AS o", other.display()), []).expect_err("attach");
        assert!(err.to_string().contains("too many attached databases"), "{err}");
        assert!(!other.exists());
    }

    #[tokio::test]
    async fn attach_is_refused() {
        let (dir, c) = sample();
        let other = dir.path().join("other.db");
        let err = c
            .query(format!("ATTACH DATABASE '{}' AS o", other.display()), vec![], limits(10))
            .await
            .expect_err("attach");
        assert!(
            matches!(err, QueryError::NotReadOnly { .. } | QueryError::Database { .. } | QueryError::Server(_)),
            "{err}"
        );
        assert!(!other.exists());
    }

    #[tokio::test]
    async fn multiple_statements_are_refused() {
        let (_d, c) = sample();
        let err = c.query("SELECT 1; SELECT 2".into(), vec![], limits(10)).await.expect_err("two");
        assert!(err.to_string().contains("exactly one statement"), "{err}");
    }

    #[tokio::test]
    async fn dollar_params_bind_by_number_even_out_of_order() {
        let (_d, c) = sample();
        let rs = c
            .query(
                "SELECT $2 AS b, $1 AS a, $3 AS c".into(),
                vec![Param::Int(1), Param::Text("two".into()), Param::Bool(true)],
                limits(10),
            )
            .await
            .expect("q");
        assert_eq!(rs.rows[0], vec![Value::Text("two".into()), Value::Int(1), Value::Int(1)]);
    }

    #[tokio::test]
    async fn param_count_mismatch_is_an_error_naming_the_index() {
        let (_d, c) = sample();
        let err = c.query("SELECT $1, $2".into(), vec![Param::Int(1)], limits(10)).await.expect_err("missing");
        assert!(matches!(err, QueryError::Param { index: 2, .. }), "{err}");
        let err = c.query("SELECT $1".into(), vec![Param::Int(1), Param::Int(2)], limits(10)).await.expect_err("extra");
        assert!(matches!(err, QueryError::Param { index: 2, .. }), "{err}");
    }

    #[tokio::test]
    async fn runaway_query_times_out() {
        let (_d, c) = sample();
        let sql = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000000) SELECT COUNT(*) FROM n";
        let started = Instant::now();
        let err =
            c.query(sql.into(), vec![], QueryLimits::new(10, Duration::from_millis(200))).await.expect_err("timeout");
        assert!(matches!(err, QueryError::Timeout { after_ms: 200 }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20), "interrupted long after the deadline");
    }

    #[tokio::test]
    async fn pooled_connections_stay_read_only_and_usable_after_errors_and_timeouts() {
        let (_d, c) = sample();
        let slow = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000000) SELECT COUNT(*) FROM n";
        for _ in 0..3 {
            c.query(slow.into(), vec![], QueryLimits::new(1, Duration::from_millis(20))).await.expect_err("timeout");
            c.query("DELETE FROM orders".into(), vec![], limits(1)).await.expect_err("write");
            let rs = c.query("SELECT COUNT(*) FROM orders".into(), vec![], limits(1)).await.expect("read after errors");
            assert_eq!(rs.rows[0][0], Value::Int(288));
        }
        assert!(c.idle.lock().expect("lock").len() <= MAX_IDLE);
    }

    #[tokio::test]
    async fn missing_database_file_is_an_open_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.db");
        let err =
            SqliteConnector::new(missing.clone()).query("SELECT 1".into(), vec![], limits(1)).await.expect_err("open");
        assert!(matches!(err, QueryError::Open { .. }), "{err}");
        assert!(!missing.exists(), "a read-only open must not create the file");
    }
}

#[cfg(test)]
mod condition_tests {
    use super::*;
    use std::time::Duration;

    /// What each statement reads other than as a result column's plain source.
    #[tokio::test]
    async fn reads_left_after_the_result_columns_are_conditions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        {
            let c = Connection::open(&path).expect("open");
            c.execute_batch(
                "CREATE TABLE t(id INTEGER PRIMARY KEY, secret TEXT, region TEXT);
                 CREATE TABLE nums(n INTEGER);
                 CREATE INDEX t_secret ON t(secret);
                 CREATE INDEX t_region ON t(region);
                 CREATE VIEW v AS SELECT id, secret FROM t WHERE secret LIKE 'S%';
                 INSERT INTO t VALUES (1, 'S3CRET', 'north');
                 INSERT INTO nums VALUES (83);",
            )
            .expect("schema");
        }
        let conn = SqliteConnector::new(path);
        let secret_in_conditions = |sql: &'static str| {
            let conn = &conn;
            async move {
                let mut limits = QueryLimits::new(10, Duration::from_secs(5));
                limits.provenance = true;
                limits.conditions = true;
                let rs = conn.query(sql.into(), vec![], limits).await.expect(sql);
                let p = rs.provenance.expect("provenance");
                p.conditions.expect("conditions").iter().any(|c| match c {
                    Provenance::Columns { sources } => sources.iter().any(|s| s.column == "secret"),
                    Provenance::Unknown { .. } => true,
                })
            }
        };
        for sql in [
            "SELECT id FROM t WHERE secret LIKE 'S%'",
            "SELECT secret FROM t WHERE secret LIKE 'S%'",
            "SELECT c1.n FROM t a JOIN nums c1 ON c1.n = unicode(substr(a.secret, 1, 1))",
            "SELECT c1.n, a.secret FROM t a JOIN nums c1 ON c1.n = unicode(substr(a.secret, 1, 1))",
            "SELECT id FROM t a WHERE EXISTS (SELECT 1 FROM t b WHERE b.id = a.id AND b.secret > 'M')",
            "SELECT id FROM t ORDER BY secret",
            "SELECT id, secret FROM t ORDER BY secret",
            "SELECT id, secret AS s FROM t ORDER BY s",
            "SELECT secret FROM t ORDER BY 1",
            "SELECT secret, count(*) FROM t GROUP BY secret",
            "SELECT secret, count(*) FROM t GROUP BY 1",
            "SELECT id FROM v",
            "SELECT lower(secret) FROM t",
            "SELECT id FROM t INDEXED BY t_secret",
            "SELECT id, secret FROM t ORDER BY 2 DESC",
            "SELECT region, secret FROM t GROUP BY 1, 2",
        ] {
            assert!(secret_in_conditions(sql).await, "{sql}");
        }
        for sql in [
            "SELECT secret FROM t",
            "SELECT * FROM t",
            "SELECT id, secret FROM t WHERE id = 1",
            "SELECT id, region FROM t ORDER BY 2",
            "SELECT id FROM t WHERE region = 'north'",
            "SELECT id, secret FROM t",
        ] {
            assert!(!secret_in_conditions(sql).await, "{sql}");
        }
    }
}
