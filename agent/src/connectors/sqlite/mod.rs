//! The SQLite connector: the embedded default (the bundled sample data set lives here).
//!
//! Each query opens the file with `SQLITE_OPEN_READ_ONLY`, sets `PRAGMA query_only`,
//! forbids `ATTACH` (limit of attached databases 0), refuses statements SQLite itself
//! does not call read-only, and runs in a blocking task with a progress handler that
//! interrupts it at the deadline.
//!
//! Files: `provenance` (where result columns come from, and what conditions read: the
//! authorizer, column metadata and the query plan).

mod provenance;
#[cfg(test)]
mod provenance_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Instant;

use outpost_protocol::Param;
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use self::provenance::{conditions, index_columns, origin, query_plan};
use super::{QueryError, QueryLimits};
use crate::provenance::{Provenance, ResultProvenance, SourceColumn};
use crate::resultset::{ResultSet, Value};

/// The bundled sample data set.
const SAMPLE_SQL: &str = include_str!("../../../sample/orders.sql");

/// Idle read-only connections kept per database; opening one costs a file open and
/// schema read, which is a noticeable part of a small job.
const MAX_IDLE: usize = 8;

/// A configured SQLite database with a small pool of idle read-only connections.
#[derive(Debug, Clone)]
pub struct SqliteConnector {
    path: PathBuf,
    idle: std::sync::Arc<std::sync::Mutex<Vec<Connection>>>,
}

pub(super) fn db_err(e: rusqlite::Error) -> QueryError {
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
    let after_ms = limits.timeout_ms();
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

/// Binds `$1..$N` by number (SQLite treats `$1` as a name) or, without such names, by position.
pub(super) fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Param]) -> Result<(), QueryError> {
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
