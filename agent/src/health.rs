//! `outpost-agent connections test`: reach each configured database the way a job would
//! (same settings, credentials from the vault, TLS, the privileged-role check) and say
//! what was found — server version, the user the agent is, the TLS in use, whether the
//! session is read-only — without running any user query. Nothing leaves the host.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::connectors::{Connector, QueryLimits};
use crate::resultset::Value;

/// How long one connection's test may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What one connection's test found.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    /// The connection's name in agent.yaml.
    pub name: String,
    /// `sqlite`, `postgres` or `mysql`.
    pub kind: &'static str,
    /// Where it points (user@host:port/database, or the file); never a password.
    pub target: String,
    /// Whether a job could run on it now.
    pub ok: bool,
    /// The server's own version string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The database user the agent is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The TLS version in use, or `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// How the session is kept from writing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<String>,
    /// Why a job could not run (the agent's words, with the error code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The agent's own probe per kind: facts about the session, no table read.
fn probe(c: &Connector) -> (&'static str, &'static str) {
    match c {
        Connector::Sqlite(_) => ("sqlite", "SELECT 'SQLite ' || sqlite_version() AS server"),
        Connector::Postgres(_) => (
            "postgres",
            "SELECT 'PostgreSQL ' || current_setting('server_version') AS server, current_user::text AS \"user\", \
             current_setting('transaction_read_only') AS read_only, \
             COALESCE((SELECT s.version FROM pg_catalog.pg_stat_ssl s WHERE s.pid = pg_catalog.pg_backend_pid() AND s.ssl), 'none') AS tls",
        ),
        Connector::Mysql(_) => (
            "mysql",
            "SELECT VERSION() AS server, CURRENT_USER() AS user, \
             COALESCE((SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_version'), '') AS tls",
        ),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Text(s) | Value::Decimal(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Tests one connection: the role check a job's session gets, then the probe.
pub async fn test(name: &str, c: &Connector) -> ConnectionReport {
    let (kind, sql) = probe(c);
    let mut r = ConnectionReport {
        name: name.to_owned(),
        kind,
        target: c.identity(),
        ok: false,
        server: None,
        user: None,
        tls: None,
        read_only: None,
        problem: None,
    };
    let checked = tokio::time::timeout(TEST_TIMEOUT, async {
        c.check_role().await?;
        c.query(sql.to_owned(), Vec::new(), QueryLimits::new(1, TEST_TIMEOUT)).await
    })
    .await;
    let rs = match checked {
        Err(_) => {
            r.problem = Some(format!("no answer within {} s", TEST_TIMEOUT.as_secs()));
            return r;
        }
        Ok(Err(e)) => {
            r.problem = Some(format!("{} ({})", e, e.code()));
            return r;
        }
        Ok(Ok(rs)) => rs,
    };
    let row: BTreeMap<&str, String> = match rs.rows.first() {
        Some(row) => rs.columns.iter().map(String::as_str).zip(row.iter().map(text)).collect(),
        None => BTreeMap::new(),
    };
    r.ok = true;
    r.server = row.get("server").cloned();
    r.user = row.get("user").cloned();
    r.tls = match kind {
        "sqlite" => None,
        _ => Some(row.get("tls").filter(|t| !t.is_empty()).cloned().unwrap_or_else(|| "none".into())),
    };
    r.read_only = Some(match kind {
        "sqlite" => "the file is opened read-only".into(),
        "postgres" if row.get("read_only").map(String::as_str) == Some("on") => {
            "read-only transaction (transaction_read_only = on)".into()
        }
        "postgres" => {
            r.ok = false;
            r.problem = Some("the session is not read-only (transaction_read_only is off)".into());
            "NO".into()
        }
        _ => "read-only transaction (START TRANSACTION READ ONLY)".into(),
    });
    r
}

/// One report as a line a person reads.
pub fn describe(r: &ConnectionReport) -> String {
    let mut out = format!("{} ({} {}): ", r.name, r.kind, r.target);
    if r.ok {
        out.push_str("OK");
    } else {
        out.push_str("FAILED");
    }
    let mut facts = Vec::new();
    if let Some(s) = &r.server {
        facts.push(s.clone());
    }
    if let Some(u) = &r.user {
        facts.push(format!("user {u}"));
    }
    if let Some(t) = &r.tls {
        facts.push(format!("TLS {t}"));
    }
    if let Some(ro) = &r.read_only {
        facts.push(ro.clone());
    }
    if let Some(p) = &r.problem {
        facts.push(p.clone());
    }
    if !facts.is_empty() {
        out.push_str(" — ");
        out.push_str(&facts.join("; "));
    }
    out
}
