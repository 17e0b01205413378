//! Running a job's SQL against a configured database.
//!
//! Owns: opening connections, binding typed parameters, streaming rows up to the row
//! cap plus one (to know whether the result was truncated), and the statement timeout.
//! Read-only is enforced by the database itself, not by inspecting SQL text: SQLite
//! files are opened read-only with `query_only`. It refuses: writes of any kind, more
//! than one statement, attaching other databases, parameter counts that do not match,
//! and queries that outlive their timeout.

pub mod catalog;
mod common;
pub mod mysql;
mod mysql_provenance;
pub mod postgres;
pub mod privileges;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

/// Where and how to reach a database server (PostgreSQL, MySQL/MariaDB).
#[derive(Clone)]
pub struct ServerSettings {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// User name.
    pub user: String,
    /// Password from the vault, if any.
    pub password: Option<SecretString>,
    /// TLS, trusting only the CAs in this PEM file (server name checked against `host`);
    /// `None` for no TLS.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Sessions kept at most, also the queries run at once.
    pub pool_size: usize,
    /// Whether a role with privileges beyond reading may be used (`allow_privileged`);
    /// see [`privileges`].
    pub allow_privileged: bool,
}

impl std::fmt::Debug for ServerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("tls_ca", &self.tls_ca)
            .field("pool_size", &self.pool_size)
            .field("allow_privileged", &self.allow_privileged)
            .finish()
    }
}

impl ServerSettings {
    /// `scheme://user@host:port/database`: names the database, never the password.
    pub fn identity(&self, scheme: &str) -> String {
        format!("{scheme}://{}@{}:{}/{}", self.user, self.host, self.port, self.database)
    }

    /// `host:port/database`, for errors.
    pub fn address(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }

    /// Why this server could not be opened.
    pub(crate) fn open_error(&self, reason: String) -> QueryError {
        QueryError::Open { path: self.address(), reason }
    }

    /// The TLS config built from `tls_ca` (`None` without TLS); an unusable CA file is
    /// an error now, at start-up, not a job's.
    pub(crate) fn tls(&self) -> Result<Option<Arc<rustls::ClientConfig>>, QueryError> {
        self.tls_ca.as_deref().map(tls_config).transpose().map_err(|e| self.open_error(e.to_string()))
    }
}

/// Why a connection's `tls_ca` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DbTlsError {
    /// The file cannot be read as PEM. The text repeats the reader's words on purpose:
    /// the connection's open error carries this error alone.
    #[error("{}: {source}", .path.display())]
    Pem {
        /// The CA file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// It holds no certificate this TLS stack can use.
    #[error("{}: no CA certificate in it", .path.display())]
    NoCa {
        /// The CA file.
        path: std::path::PathBuf,
    },
    /// The TLS stack refused its own defaults (cannot happen with aws-lc-rs).
    #[error(transparent)]
    Protocol(#[from] rustls::Error),
}

/// A TLS client config for a database server: aws-lc-rs, TLS 1.2+, the CAs in `ca_file`.
pub fn tls_config(ca_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, DbTlsError> {
    use rustls_pki_types::pem::PemObject as _;
    let pem = |source| DbTlsError::Pem { path: ca_file.to_owned(), source };
    let mut roots = rustls::RootCertStore::empty();
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca_file)
        .map_err(pem)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(DbTlsError::NoCa { path: ca_file.to_owned() });
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Bounds on one query.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Rows read at most; one more is read to detect truncation.
    pub max_rows: usize,
    /// Statement timeout.
    pub timeout: Duration,
    /// Cancelled when the control plane asks to stop the job: the query is stopped on
    /// the server (PostgreSQL cancel request, `KILL QUERY`, SQLite interrupt).
    pub cancel: tokio_util::sync::CancellationToken,
    /// Whether to find out where each result column comes from (the connection has
    /// mask rules): the database's metadata, and on PostgreSQL its planner, in the same
    /// read-only transaction before the query runs.
    pub provenance: bool,
    /// With `provenance`: also find what the statement reads in its conditions (filters,
    /// joins, grouping, order), for `egress.masked_predicates: refuse`. On PostgreSQL
    /// that reads the plan of every statement, so it is asked only when the policy
    /// needs it.
    pub conditions: bool,
}

impl QueryLimits {
    /// Limits that nothing cancels but the timeout.
    pub fn new(max_rows: usize, timeout: Duration) -> Self {
        Self {
            max_rows,
            timeout,
            cancel: tokio_util::sync::CancellationToken::new(),
            provenance: false,
            conditions: false,
        }
    }

    /// The statement timeout in milliseconds.
    pub(crate) fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Why a query did not produce a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The database could not be opened.
    #[error("cannot open database {path}: {reason}")]
    Open {
        /// Path or address.
        path: String,
        /// Why.
        reason: String,
    },
    /// The statement would write, or the database refused a write.
    #[error("refused: the connection is read-only ({reason})")]
    NotReadOnly {
        /// The database's or the agent's reason.
        reason: String,
    },
    /// The database reported an error.
    #[error("query failed: {message}")]
    Database {
        /// The database's message.
        message: String,
    },
    /// The database server reported an error, in its parts: its message, SQLSTATE, error
    /// number and position. What of it leaves the agent is the egress policy's
    /// (`egress.errors`, see [`crate::scrub`]).
    #[error("query failed: {0}")]
    Server(Box<ServerError>),
    /// The statement ran past its timeout and was interrupted.
    #[error("query cancelled after the {after_ms} ms statement timeout")]
    Timeout {
        /// The timeout.
        after_ms: u64,
    },
    /// The control plane asked to stop the job; the query was stopped on the server.
    #[error("query cancelled at a user's request; the database server stopped it")]
    Cancelled,
    /// A parameter does not fit the statement.
    #[error("parameter ${index}: {reason}")]
    Param {
        /// 1-based index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// The consumer of the rows stopped reading (its own error says why).
    #[error("{0}")]
    Sink(String),
    /// The egress policy refused the result before any row was read.
    #[error("{}", .0.detail)]
    Refused(outpost_protocol::EgressDecision),
    /// A value of a type the agent cannot carry.
    #[error("column {column:?} has unsupported type {type_name}")]
    UnsupportedType {
        /// Column name.
        column: String,
        /// Database type name.
        type_name: String,
    },
    /// The blocking task failed.
    #[error("internal error: {0}")]
    Task(String),
    /// The connection's database role holds privileges beyond reading and the
    /// connection does not say `allow_privileged: true`.
    #[error(
        "refused: this connection's database role holds privileges beyond reading ({}); connect as a \
         least-privilege role (docs/DATABASES.md), or set allow_privileged: true on the connection in agent.yaml",
        privileges.join(", ")
    )]
    PrivilegedRole {
        /// Each privilege, as `INSERT, UPDATE on public.orders`, `superuser`, `FILE on *.*`.
        privileges: Vec<String>,
    },
    /// The role's privileges could not be checked, so the session is not used (fail closed).
    #[error(
        "refused: this connection's database role could not be checked for privileges beyond reading ({reason}); \
         fix the cause, or set allow_privileged: true on the connection in agent.yaml"
    )]
    RoleUnchecked {
        /// Why the check failed.
        reason: String,
    },
}

impl QueryError {
    /// A stable short name for reports and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Open { .. } => "connection_failed",
            QueryError::NotReadOnly { .. } => "read_only_violation",
            QueryError::Database { .. } | QueryError::Server(_) => "query_failed",
            QueryError::Timeout { .. } => "query_timeout",
            QueryError::Cancelled => "cancelled",
            QueryError::Param { .. } => "bad_parameter",
            QueryError::UnsupportedType { .. } => "unsupported_type",
            QueryError::Task(_) => "internal",
            QueryError::Sink(_) => "render_failed",
            QueryError::Refused(_) => "egress_refused",
            QueryError::PrivilegedRole { .. } => "privileged_role",
            QueryError::RoleUnchecked { .. } => "role_unchecked",
        }
    }
}

/// An error as the database server reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    /// The server's primary message, as it wrote it (it may quote values from rows).
    pub message: String,
    /// The five-character SQLSTATE, when the server gives one.
    pub sqlstate: Option<String>,
    /// Whether `sqlstate` may have been chosen by a user's code (PostgreSQL: not one of
    /// the codes the server defines, as `RAISE … USING ERRCODE` allows; MySQL/MariaDB:
    /// a `SIGNAL`), so that it can carry data.
    pub custom_code: bool,
    /// The server's error number (MySQL/MariaDB; SQLite's extended result code).
    pub number: Option<u32>,
    /// Where in the SQL text the error is, in characters from 1.
    pub position: Option<u32>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        let mut parts = Vec::new();
        if let Some(n) = self.number {
            parts.push(if self.sqlstate.is_some() { format!("error {n}") } else { format!("SQLite error {n}") });
        }
        if let Some(s) = &self.sqlstate {
            parts.push(format!("SQLSTATE {s}"));
        }
        if let Some(p) = self.position {
            parts.push(format!("at character {p}"));
        }
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// An error with its causes, `outer: inner: innermost`: a TLS failure says why (an
/// unknown issuer, a name the certificate is not valid for), not only that it failed.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// What a connector waits for before it reads more rows: a sink's room for them.
pub type Room = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Where rows go as they are read, so that a consumer that summarises them (a
/// downsampled chart) never holds the whole result.
pub trait RowSink: Send {
    /// Where the result's columns come from, once, before [`RowSink::columns`], when
    /// the query was asked to find out ([`QueryLimits::provenance`]).
    fn provenance(&mut self, provenance: crate::provenance::ResultProvenance) -> Result<(), QueryError> {
        let _ = provenance;
        Ok(())
    }
    /// The result's column names, once, before any row.
    fn columns(&mut self, columns: &[String]) -> Result<(), QueryError>;
    /// One row, in order; `index` counts from 0.
    fn row(&mut self, row: Vec<crate::resultset::Value>, index: usize) -> Result<(), QueryError>;
    /// Asked after each row: `Some` when the sink hands rows on to another thread (the
    /// result cache's writer) that is behind. The connector awaits it before the next row,
    /// so memory stays bounded without blocking the async runtime; a cancel or timeout
    /// still ends the wait.
    fn room(&mut self) -> Option<Room> {
        None
    }
    /// Which columns the sink reads, asked once after [`RowSink::columns`]; `None`: all.
    /// A source that can pass over values cheaply (a cache entry) then lends each row
    /// through [`RowSink::row_ref`], with NULL in the columns not read.
    fn reads(&self) -> Option<Vec<bool>> {
        None
    }
    /// One row, lent: a sink that only looks at rows (a chart) takes it without an
    /// allocation per row. By default a copy goes to [`RowSink::row`].
    fn row_ref(&mut self, row: &[crate::resultset::Value], index: usize) -> Result<(), QueryError> {
        self.row(row.to_vec(), index)
    }
}

/// The sink that keeps every row: a [`ResultSet`](crate::resultset::ResultSet).
#[derive(Debug, Default)]
pub struct Collect(pub crate::resultset::ResultSet);

impl RowSink for Collect {
    fn provenance(&mut self, provenance: crate::provenance::ResultProvenance) -> Result<(), QueryError> {
        self.0.provenance = Some(provenance);
        Ok(())
    }

    fn columns(&mut self, columns: &[String]) -> Result<(), QueryError> {
        self.0.columns = columns.to_vec();
        Ok(())
    }

    fn row(&mut self, row: Vec<crate::resultset::Value>, _: usize) -> Result<(), QueryError> {
        self.0.rows.push(row);
        Ok(())
    }
}

/// A configured database of any kind.
#[derive(Debug, Clone)]
pub enum Connector {
    /// A SQLite file.
    Sqlite(sqlite::SqliteConnector),
    /// A PostgreSQL server.
    Postgres(postgres::PostgresConnector),
    /// A MySQL or MariaDB server.
    Mysql(mysql::MysqlConnector),
}

impl Connector {
    /// Runs one read-only statement with typed parameters, within `limits`.
    pub async fn query(
        &self,
        sql: String,
        params: Vec<outpost_protocol::Param>,
        limits: QueryLimits,
    ) -> Result<crate::resultset::ResultSet, QueryError> {
        match self {
            Connector::Sqlite(c) => c.query(sql, params, limits).await,
            Connector::Postgres(c) => c.query(sql, params, limits).await,
            Connector::Mysql(c) => c.query(sql, params, limits).await,
        }
    }

    /// Runs one statement like [`Connector::query`], handing each row to `sink` as it is
    /// read; whether the row cap cut the result. PostgreSQL and MySQL/MariaDB stream
    /// (memory stays bounded by the sink); SQLite reads the capped result first.
    pub async fn query_into(
        &self,
        sql: String,
        params: Vec<outpost_protocol::Param>,
        limits: QueryLimits,
        sink: &mut dyn RowSink,
    ) -> Result<bool, QueryError> {
        let rs = match self {
            Connector::Postgres(c) => return c.query_into(sql, params, limits, sink).await,
            Connector::Mysql(c) => return c.query_into(sql, params, limits, sink).await,
            Connector::Sqlite(c) => c.query(sql, params, limits).await?,
        };
        if let Some(p) = rs.provenance {
            sink.provenance(p)?;
        }
        sink.columns(&rs.columns)?;
        for (i, row) in rs.rows.into_iter().enumerate() {
            common::hand_on(&mut *sink, row, i).await?;
        }
        Ok(rs.truncated)
    }

    /// Opens a session now if none is pooled, which checks the role's privileges
    /// ([`privileges`]); `Ok` for SQLite.
    pub async fn check_role(&self) -> Result<(), QueryError> {
        match self {
            Connector::Sqlite(_) => Ok(()),
            Connector::Postgres(c) => c.check_role().await,
            Connector::Mysql(c) => c.check_role().await,
        }
    }

    /// What makes two connections the same database, for the result cache's key.
    pub fn identity(&self) -> String {
        match self {
            Connector::Sqlite(c) => c.identity(),
            Connector::Postgres(c) => c.identity(),
            Connector::Mysql(c) => c.identity(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{tls_config, DbTlsError};

    /// A `tls_ca` that holds no certificate is refused at start-up, naming the file.
    #[test]
    fn a_ca_file_without_a_certificate_is_refused_with_its_path() {
        let path = std::env::temp_dir().join(format!("outpost-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").expect("write");
        let e = tls_config(&path).expect_err("no CA");
        assert!(matches!(e, DbTlsError::NoCa { .. }), "{e:?}");
        assert_eq!(e.to_string(), format!("{}: no CA certificate in it", path.display()));
        let _ = std::fs::remove_file(&path);
        let missing = tls_config(&path).expect_err("missing");
        assert!(missing.to_string().starts_with(&format!("{}: ", path.display())), "{missing}");
    }
}
