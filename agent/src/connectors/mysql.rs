//! The MySQL / MariaDB connector (mysql_async; TLS through rustls with aws-lc-rs).
//!
//! Every query runs in `START TRANSACTION READ ONLY` and ends in `ROLLBACK`, so the
//! server refuses writes, `SELECT … FOR UPDATE` and temporary tables. DDL would commit
//! the transaction implicitly and `SELECT … INTO OUTFILE` writes a file. Neither returns
//! rows, and the connector runs only statements that return rows: it prepares the
//! statement first (which does not run it) and refuses one that returns none.
//!
//! The server stops the statement at the timeout: `max_statement_time` on MariaDB,
//! `max_execution_time` on MySQL. If it has not answered shortly after, the connector
//! sends `KILL QUERY` on another session and discards this one. `sql_select_limit`
//! caps the rows the server sends at the row cap plus one. Parameters are written `$1`,
//! `$2`, … in the job, as for every database. They are rewritten to `?` outside quoted
//! text and comments and bound in the binary protocol, never spliced into the SQL.
//! Sessions come from a pool (`pool_size`). Each new session's role is checked first
//! ([`super::privileges`]): a role with privileges beyond reading is refused unless the
//! connection allows it. A session is reset (`COM_RESET_CONNECTION`: user variables,
//! `GET_LOCK` locks, session settings, temporary tables) before it goes back, and a
//! session that cannot be reset is closed.
//! Rows go to the job's [`RowSink`](super::RowSink) as they are read, so a chart of a
//! large result never holds it all. A job cancelled by a user is stopped on the server
//! with `KILL QUERY` from another session, as at the timeout.

use std::time::Duration;

use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Value as MyValue};
use outpost_protocol::Param;
use secrecy::ExposeSecret as _;

use super::common::{check_param_count, returns_no_rows, CappedRows, Permits};
use super::{QueryError, QueryLimits, ServerSettings};
use crate::resultset::{ResultSet, Value};

/// How long after the statement timeout the client stops waiting and kills the query.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// The collation id of binary strings.
const BINARY_CHARSET: u16 = 63;

/// A configured MySQL or MariaDB database with its pool: at most `pool_size` sessions,
/// each reset (`COM_RESET_CONNECTION`) before it is used again, idle ones checked with a
/// ping and replaced when the server dropped them.
#[derive(Clone)]
pub struct MysqlConnector {
    settings: std::sync::Arc<ServerSettings>,
    opts: mysql_async::Opts,
    idle: std::sync::Arc<std::sync::Mutex<Vec<Conn>>>,
    /// One permit per session: a job holds one from checkout to checkin.
    permits: std::sync::Arc<Permits>,
    /// The role's last check ([`super::privileges`]).
    role: std::sync::Arc<super::privileges::RoleGuard>,
}

impl std::fmt::Debug for MysqlConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConnector").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn db_err(e: &mysql_async::Error) -> QueryError {
    if let mysql_async::Error::Server(s) = e {
        return match s.code {
            // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
            1792 => QueryError::NotReadOnly { reason: s.message.clone() },
            _ => QueryError::Server(Box::new(super::ServerError {
                message: s.message.clone(),
                sqlstate: Some(s.state.clone()),
                // ER_SIGNAL_EXCEPTION, or SQLSTATE 45000: a stored routine's SIGNAL.
                custom_code: s.code == 1644 || s.state == "45000",
                number: Some(u32::from(s.code)),
                position: None,
            })),
        };
    }
    QueryError::Database { message: e.to_string() }
}

/// MariaDB's `max_statement_time` (1969) and MySQL's `max_execution_time` (3024) stops.
fn is_timeout(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if s.code == 1969 || s.code == 3024)
}

impl MysqlConnector {
    /// A connector; sessions open on first use. Fails if the CA file is unusable.
    pub fn new(settings: ServerSettings) -> Result<Self, QueryError> {
        let mut opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(settings.host.clone())
            .tcp_port(settings.port)
            .db_name(Some(settings.database.clone()))
            .user(Some(settings.user.clone()))
            .pass(settings.password.as_ref().map(|p| p.expose_secret().to_owned()))
            .prefer_socket(false);
        if let Some(ca) = &settings.tls_ca {
            // Read now, so that an unusable CA file is a start-up error, not a job's.
            settings.tls()?;
            opts = opts.ssl_opts(Some(
                mysql_async::SslOpts::default()
                    .with_root_certs(vec![ca.clone().into()])
                    .with_disable_built_in_roots(true),
            ));
        }
        let permits = std::sync::Arc::new(Permits::new(settings.pool_size));
        Ok(Self {
            opts: opts.into(),
            idle: std::sync::Arc::default(),
            settings: std::sync::Arc::new(settings),
            permits,
            role: std::sync::Arc::default(),
        })
    }

    /// What makes two connections the same database, for the result cache's key.
    pub fn identity(&self) -> String {
        self.settings.identity("mysql")
    }

    /// An idle session that still answers, or a new one.
    async fn conn(&self) -> Result<Conn, QueryError> {
        loop {
            let idle = self.idle.lock().map_or(None, |mut v| v.pop());
            let Some(mut conn) = idle else { break };
            if !self.role.due() && conn.ping().await.is_ok() {
                return Ok(conn);
            }
            if self.role.due() {
                // The last check is old: check the role again on this session. One that
                // cannot answer is dropped; a new one is checked as it opens.
                if let Ok(found) = super::privileges::mysql(&mut conn).await {
                    super::privileges::verdict(&self.settings, "mysql", Ok(found), &self.role)?;
                    return Ok(conn);
                }
            }
            tracing::debug!("A pooled MySQL/MariaDB session stopped answering; opening a new one.");
        }
        let mut conn = Conn::new(self.opts.clone()).await.map_err(|e| {
            self.settings.open_error(match &e {
                mysql_async::Error::Server(s) => s.message.clone(),
                other => super::error_chain(other),
            })
        })?;
        let found = super::privileges::mysql(&mut conn).await;
        if let Err(refused) = super::privileges::verdict(&self.settings, "mysql", found, &self.role) {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.disconnect()).await;
            return Err(refused);
        }
        Ok(conn)
    }

    /// Makes the next job check the role again on its pooled session, as it would a
    /// minute after the last check.
    pub fn recheck_role(&self) {
        self.role.expire();
    }

    /// Opens a session if none is pooled (checking the role) and pools it.
    pub async fn check_role(&self) -> Result<(), QueryError> {
        let _permit = self.permits.take().await?;
        let conn = self.conn().await?;
        self.checkin(conn).await;
        Ok(())
    }

    /// Returns a session to the pool after resetting it; a session that cannot be reset
    /// is closed.
    async fn checkin(&self, mut conn: Conn) {
        match conn.reset().await {
            Ok(true) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(conn);
                }
            }
            // A server without COM_RESET_CONNECTION (MySQL before 5.7.3, MariaDB before
            // 10.2.4): the session is not reused.
            Ok(false) => {
                tracing::debug!("The server cannot reset a session; closed.");
                let _ = tokio::time::timeout(Duration::from_secs(2), conn.disconnect()).await;
            }
            Err(e) => tracing::debug!(error = %e, "A MySQL/MariaDB session could not be reset; closed."),
        }
    }

    /// Runs one read-only statement with typed parameters, within `limits`.
    pub async fn query(&self, sql: String, params: Vec<Param>, limits: QueryLimits) -> Result<ResultSet, QueryError> {
        let mut all = super::Collect::default();
        let truncated = self.query_into(sql, params, limits, &mut all).await?;
        Ok(ResultSet { truncated, ..all.0 })
    }

    /// Runs the statement, handing each row to `sink` as the server sends it; whether
    /// the row cap cut the result.
    pub async fn query_into(
        &self,
        sql: String,
        params: Vec<Param>,
        limits: QueryLimits,
        sink: &mut dyn super::RowSink,
    ) -> Result<bool, QueryError> {
        let _permit = self.permits.take_or_cancel(&limits.cancel).await?;
        let (sql, order) = rewrite_params(&sql).map_err(|e| QueryError::Param { index: 0, reason: e.to_string() })?;
        check_param_count(params.len(), order.iter().copied().max().unwrap_or(0))?;
        let bound: Vec<MyValue> = order.iter().map(|n| bind(&params[n - 1])).collect();
        let after_ms = limits.timeout_ms();
        let mut conn = self.conn().await?;
        let id = conn.id();
        let run =
            tokio::time::timeout(limits.timeout + KILL_GRACE, run(&mut conn, &sql, bound, &limits, after_ms, sink));
        let result = tokio::select! {
            r = run => r.map_err(|_| QueryError::Timeout { after_ms }),
            () = limits.cancel.cancelled() => Err(QueryError::Cancelled),
        };
        match result {
            Ok(r) => {
                self.checkin(conn).await;
                r
            }
            Err(stopped) => {
                // The server did not stop the statement by itself, or a user stopped the
                // job: kill it there from another session, and close this one rather
                // than reuse it.
                match self.conn().await {
                    Ok(mut other) => {
                        match other.query_drop(format!("KILL QUERY {id}")).await {
                            Ok(()) => tracing::info!("Killed the query on the MySQL/MariaDB server."),
                            Err(e) => tracing::warn!(error = %e, "Could not kill the query on the server."),
                        }
                        self.checkin(other).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "Could not reach the server to kill the query."),
                }
                let _ = tokio::time::timeout(Duration::from_secs(2), conn.disconnect()).await;
                Err(stopped)
            }
        }
    }
}

async fn run(
    conn: &mut Conn,
    sql: &str,
    params: Vec<MyValue>,
    limits: &QueryLimits,
    after_ms: u64,
    sink: &mut dyn super::RowSink,
) -> Result<bool, QueryError> {
    let err = |e: mysql_async::Error| if is_timeout(&e) { QueryError::Timeout { after_ms } } else { db_err(&e) };
    let mariadb = conn.server_version() >= (10, 0, 0) && conn.server_version() < (20, 0, 0);
    let limit = limits.max_rows + 1;
    let setup = if mariadb {
        format!("SET SESSION max_statement_time = {:.3}, SESSION sql_select_limit = {limit}", after_ms as f64 / 1000.0)
    } else {
        format!("SET SESSION max_execution_time = {after_ms}, SESSION sql_select_limit = {limit}")
    };
    conn.query_drop(setup).await.map_err(err)?;
    conn.query_drop("START TRANSACTION READ ONLY").await.map_err(err)?;
    let stmt = conn.prep(sql).await.map_err(err)?;
    let cols = stmt.columns();
    if cols.is_empty() {
        let _ = conn.query_drop("ROLLBACK").await;
        return Err(returns_no_rows("DDL, SELECT … INTO OUTFILE, SET and other statements are refused"));
    }
    let columns: Vec<String> = cols.iter().map(|c| c.name_str().into_owned()).collect();
    for c in cols.iter() {
        if !decodable(c.column_type()) {
            let _ = conn.query_drop("ROLLBACK").await;
            return Err(QueryError::UnsupportedType {
                column: c.name_str().into_owned(),
                type_name: format!("{:?}", c.column_type()).trim_start_matches("MYSQL_TYPE_").to_ascii_lowercase(),
            });
        }
    }
    if limits.provenance {
        let traced = super::mysql_provenance::trace(conn, &stmt, sql, &params).await.map_err(err)?;
        sink.provenance(traced)?;
    }
    sink.columns(&columns)?;
    let mut rows = CappedRows::new(sink, limits.max_rows);
    {
        let mut result = conn.exec_iter(&stmt, params).await.map_err(err)?;
        while let Some(row) = result.next().await.map_err(err)? {
            if rows.full() {
                // Dropping the result reads and discards what is left, at most one row
                // here (sql_select_limit) unless the query has a LIMIT of its own.
                break;
            }
            let raw = row.unwrap_raw();
            let mut values = Vec::with_capacity(cols.len());
            for (i, c) in cols.iter().enumerate() {
                let v = raw.get(i).cloned().flatten().unwrap_or(MyValue::NULL);
                values.push(decode(c, v).map_err(|reason| QueryError::Database {
                    message: format!("column {:?}: {reason}", c.name_str()),
                })?);
            }
            // A sink that stops (a render error) ends the job; the session is reset
            // before it is used again, which ends the transaction.
            rows.push(values).await?;
        }
    }
    let truncated = rows.truncated();
    conn.query_drop("ROLLBACK").await.map_err(err)?;
    conn.close(stmt).await.map_err(err)?;
    Ok(truncated)
}

fn bind(p: &Param) -> MyValue {
    match p {
        Param::Null => MyValue::NULL,
        Param::Bool(b) => MyValue::Int(i64::from(*b)),
        Param::Int(n) => MyValue::Int(*n),
        Param::Float(f) => MyValue::Double(*f),
        Param::Text(t) => MyValue::Bytes(t.as_bytes().to_vec()),
    }
}

fn decodable(t: ColumnType) -> bool {
    !matches!(t, ColumnType::MYSQL_TYPE_GEOMETRY | ColumnType::MYSQL_TYPE_UNKNOWN)
}

/// Why a column's value could not be decoded; shown after the column's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum DecodeError {
    /// Text (or a decimal, or JSON) that is not UTF-8.
    #[error(transparent)]
    NotUtf8(#[from] std::string::FromUtf8Error),
    /// A DATETIME whose time of day does not exist.
    #[error("time of day out of range")]
    TimeOfDay,
}

fn text(bytes: Vec<u8>) -> Result<String, DecodeError> {
    Ok(String::from_utf8(bytes)?)
}

/// Decodes one value of column `c` from the binary protocol.
fn decode(c: &mysql_async::Column, v: MyValue) -> Result<Value, DecodeError> {
    use ColumnType as T;
    let t = c.column_type();
    Ok(match v {
        MyValue::NULL => Value::Null,
        MyValue::Int(n) => Value::Int(n),
        MyValue::UInt(n) => i64::try_from(n).map(Value::Int).unwrap_or_else(|_| Value::Decimal(n.to_string())),
        MyValue::Float(f) => Value::Float(f.into()),
        MyValue::Double(f) => Value::Float(f),
        MyValue::Bytes(b) => match t {
            T::MYSQL_TYPE_DECIMAL | T::MYSQL_TYPE_NEWDECIMAL => Value::Decimal(text(b)?),
            T::MYSQL_TYPE_JSON => Value::Json(text(b)?),
            T::MYSQL_TYPE_BIT => Value::Bytes(b),
            // A binary string from a table column (BLOB, VARBINARY) is bytes. From an
            // expression, MySQL often labels text binary too (a bare `SELECT ?`): text
            // when it is valid UTF-8.
            _ if c.character_set() == BINARY_CHARSET && !c.flags().contains(ColumnFlags::ENUM_FLAG) => {
                if c.org_table_str().is_empty() {
                    String::from_utf8(b).map(Value::Text).unwrap_or_else(|e| Value::Bytes(e.into_bytes()))
                } else {
                    Value::Bytes(b)
                }
            }
            _ => Value::Text(text(b)?),
        },
        MyValue::Date(y, mo, d, h, mi, s, us) => {
            let date = chrono::NaiveDate::from_ymd_opt(y.into(), mo.into(), d.into());
            match (t, date) {
                (T::MYSQL_TYPE_DATE, Some(date)) => Value::Date(date),
                (_, Some(date)) => Value::Timestamp(
                    date.and_hms_micro_opt(h.into(), mi.into(), s.into(), us).ok_or(DecodeError::TimeOfDay)?,
                ),
                // MySQL's zero dates (0000-00-00) have no calendar value.
                (_, None) => Value::Text(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")),
            }
        }
        MyValue::Time(neg, days, h, mi, s, us) => {
            match chrono::NaiveTime::from_hms_micro_opt(h.into(), mi.into(), s.into(), us) {
                Some(time) if !neg && days == 0 => Value::Time(time),
                // A duration beyond a day, or negative: MySQL's TIME is an interval.
                _ => {
                    let hours = u64::from(days) * 24 + u64::from(h);
                    let sign = if neg { "-" } else { "" };
                    Value::Text(format!("{sign}{hours:02}:{mi:02}:{s:02}"))
                }
            }
        }
    })
}

/// Why a MySQL statement's parameters could not be rewritten; the job fails with
/// `bad_parameter` and this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamSyntaxError {
    /// A `?` outside quotes: MySQL's own placeholder, ambiguous beside `$n`.
    #[error("write parameters as $1, $2, … (a `?` outside quotes is ambiguous)")]
    QuestionMark,
    /// `$` and digits that do not make a number.
    #[error("bad parameter {text}")]
    BadNumber {
        /// The text, `$` included.
        text: String,
    },
    /// `$0`.
    #[error("parameters are numbered from $1")]
    Zero,
}

/// Rewrites `$1`, `$2`, … outside quoted text and comments to `?`; returns the new SQL
/// and, for each `?` in order, the parameter number it stands for.
pub fn rewrite_params(sql: &str) -> Result<(String, Vec<usize>), ParamSyntaxError> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut order = Vec::new();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'#' => i = sql[i..].find('\n').map_or(b.len(), |n| i + n),
            b'-' if b.get(i + 1) == Some(&b'-') => i = sql[i..].find('\n').map_or(b.len(), |n| i + n),
            b'/' if b.get(i + 1) == Some(&b'*') => i = sql[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2),
            b'?' => return Err(ParamSyntaxError::QuestionMark),
            b'$' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let start = i;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n: usize = sql[start + 1..i]
                    .parse()
                    .map_err(|_| ParamSyntaxError::BadNumber { text: sql[start..i].to_owned() })?;
                if n == 0 {
                    return Err(ParamSyntaxError::Zero);
                }
                out.push_str(&sql[copied..start]);
                out.push('?');
                copied = i;
                order.push(n);
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    Ok((out, order))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_parameters_become_placeholders_outside_quotes_and_comments() {
        let (sql, order) =
            rewrite_params("SELECT '$1', \"$2\", `$3`, $2 -- $9\n + $1 # $8\n /* $7 */ FROM t WHERE a = $10")
                .expect("rewrite");
        assert_eq!(sql, "SELECT '$1', \"$2\", `$3`, ? -- $9\n + ? # $8\n /* $7 */ FROM t WHERE a = ?");
        assert_eq!(order, vec![2, 1, 10]);
        let (sql, order) = rewrite_params(r"SELECT 'it\'s $1', $1").expect("escaped quote");
        assert_eq!((sql.as_str(), order), (r"SELECT 'it\'s $1', ?", vec![1]));
        assert_eq!(rewrite_params("SELECT ?"), Err(ParamSyntaxError::QuestionMark));
        assert_eq!(
            ParamSyntaxError::QuestionMark.to_string(),
            "write parameters as $1, $2, … (a `?` outside quotes is ambiguous)"
        );
        assert_eq!(
            rewrite_params("SELECT $0").map_err(|e| e.to_string()),
            Err("parameters are numbered from $1".into())
        );
        let huge = format!("SELECT ${}", "9".repeat(40));
        assert_eq!(rewrite_params(&huge).map_err(|e| e.to_string()), Err(format!("bad parameter ${}", "9".repeat(40))));
        assert_eq!(rewrite_params("SELECT '?'").expect("quoted").0, "SELECT '?'");
    }

    /// Text that is not UTF-8 is refused with the decoder's own words (they follow the
    /// column's name in the job's failure).
    #[test]
    fn text_that_is_not_utf8_says_where() {
        assert_eq!(text(b"ok".to_vec()), Ok("ok".to_owned()));
        let e = text(vec![b'a', 0xff]).expect_err("not UTF-8");
        assert_eq!(e.to_string(), "invalid utf-8 sequence of 1 bytes from index 1");
        assert_eq!(DecodeError::TimeOfDay.to_string(), "time of day out of range");
    }
}
