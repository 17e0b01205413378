//! What a database role may do beyond reading, checked when a session opens.
//!
//! Owns: the catalog queries that list a PostgreSQL or MySQL/MariaDB role's privileges
//! beyond reading, and the verdict on a new session. The read-only transaction is the
//! first wall; it does not stop a superuser's volatile function that runs `COPY … TO
//! PROGRAM`, nor `lo_export`, `pg_read_file`, `pg_terminate_backend`, session advisory
//! locks or MariaDB's `LOAD_FILE()`. So a session whose role holds such a privilege is
//! refused ([`QueryError::PrivilegedRole`], code `privileged_role`, naming each
//! privilege) unless the connection says `allow_privileged: true`.
//!
//! Checked on every session a pool opens: at the agent's start (an eager check of each
//! connection, [`check_all_in_background`]), after each reload (which builds new
//! pools), and whenever a session replaces one the server closed; and again on a pooled
//! session when the last check is older than [`RECHECK_AFTER`], so a privilege granted
//! to the role later is seen within a minute without a reload. When the check itself
//! cannot run (a catalog query fails), the session is refused too, fail closed, with
//! code `role_unchecked`; `allow_privileged: true` skips the verdict, not the log line.
//!
//! PostgreSQL, for the login role and every role it is a member of (a member may become
//! that role with `set_config('role', …)`): SUPERUSER, CREATEROLE, CREATEDB,
//! REPLICATION, BYPASSRLS; membership in the predefined roles that reach outside the
//! database ([`PG_PREDEFINED`]); EXECUTE on the file, program and server-admin functions
//! that are not granted to PUBLIC by default ([`PG_FUNCTIONS`]); and INSERT, UPDATE,
//! DELETE or TRUNCATE on any table or view of the database (but `pg_settings`, whose
//! UPDATE every role has: it is `SET`). MySQL/MariaDB: every grant of
//! `SHOW GRANTS` (and of the roles it names) other than [`MYSQL_READ_PRIVILEGES`], at any
//! level, and `WITH GRANT OPTION`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;

use super::{QueryError, ServerSettings};

/// PostgreSQL's predefined roles whose members reach outside the database or other
/// sessions: files, programs, signals to other backends, writes everywhere, outbound
/// subscriptions, and other sessions' SQL text with its literals (`pg_read_all_stats`,
/// which `pg_monitor` includes: the counterpart of MySQL's PROCESS).
pub const PG_PREDEFINED: &[&str] = &[
    "pg_write_server_files",
    "pg_read_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
    "pg_write_all_data",
    "pg_create_subscription",
    "pg_read_all_stats",
    "pg_monitor",
];

/// Functions (any overload, any schema) that read or write server files, run as the OS
/// user, or administer the server. PostgreSQL does not grant them to PUBLIC; a role that
/// may run one was given it on purpose.
pub const PG_FUNCTIONS: &[&str] = &[
    "lo_import",
    "lo_export",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_file_write",
    "pg_file_rename",
    "pg_file_unlink",
    "pg_file_sync",
    "pg_logdir_ls",
    "dblink_connect_u",
];

/// MySQL/MariaDB privileges a reporting user may hold. Everything else (FILE, SUPER,
/// PROCESS, SHUTDOWN, RELOAD, CREATE USER, any write or DDL grant, the administrative
/// privileges of MariaDB 10.5+ and MySQL 8) refuses the connection.
pub const MYSQL_READ_PRIVILEGES: &[&str] = &["SELECT", "USAGE", "SHOW VIEW", "SHOW DATABASES", "EXECUTE"];

/// How old the last check of a pool's role may be before a pooled session is checked
/// again: a privilege granted later is seen this soon, for one check per pool at most
/// this often.
pub const RECHECK_AFTER: Duration = Duration::from_secs(60);

/// A pool's memory of its role's check.
#[derive(Debug, Default)]
pub struct RoleGuard {
    /// Whether a privileged role allowed by `allow_privileged` was logged (once per pool).
    reported: AtomicBool,
    /// When the role was last found acceptable.
    verified_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl RoleGuard {
    /// Whether a pooled session must be checked again before use.
    pub fn due(&self) -> bool {
        self.due_at(std::time::Instant::now())
    }

    fn due_at(&self, now: std::time::Instant) -> bool {
        let at = *self.verified_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        at.is_none_or(|t| now.saturating_duration_since(t) >= RECHECK_AFTER)
    }

    /// Makes the next pooled session be checked again before use.
    pub fn expire(&self) {
        *self.verified_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn verified(&self) {
        *self.verified_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
    }
}

/// Table names listed at most in a refusal; the count of the rest follows.
const MAX_TABLES_NAMED: usize = 5;
/// Roles followed at most through MySQL/MariaDB role grants.
const MAX_MYSQL_ROLES: usize = 16;

/// How long the catalog queries of one check may take; past it the check failed
/// (`role_unchecked`). They read small catalogs and take milliseconds.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a role's privileges could not be read; without `allow_privileged` the session is
/// then refused (`role_unchecked`) with this text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// The catalog queries failed; the text is the database error with its causes (the
    /// error is also kept as the source).
    #[error("{}", super::error_chain(.0.as_ref()))]
    Query(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// They took longer than [`CHECK_TIMEOUT`].
    #[error("the catalog queries took longer than {} s", CHECK_TIMEOUT.as_secs())]
    TimedOut,
}

impl CheckError {
    fn query(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        CheckError::Query(Arc::from(e.into()))
    }
}

/// The role's privileges beyond reading, as named in a refusal (empty when there are
/// none), or why they could not be read.
pub async fn postgres(client: &tokio_postgres::Client) -> Result<Vec<String>, CheckError> {
    match tokio::time::timeout(CHECK_TIMEOUT, postgres_privileges(client)).await {
        Ok(found) => found.map_err(CheckError::query),
        Err(_) => Err(CheckError::TimedOut),
    }
}

/// The role's privileges beyond reading, from `SHOW GRANTS` and the grants of the roles
/// it names (empty when there are none), or why they could not be read.
pub async fn mysql(conn: &mut mysql_async::Conn) -> Result<Vec<String>, CheckError> {
    match tokio::time::timeout(CHECK_TIMEOUT, mysql_privileges(conn)).await {
        Ok(found) => found.map_err(CheckError::query),
        Err(_) => Err(CheckError::TimedOut),
    }
}

async fn postgres_privileges(client: &tokio_postgres::Client) -> Result<Vec<String>, tokio_postgres::Error> {
    // The login role first, then each role it is a member of.
    let roles = client
        .query(
            "SELECT r.rolname, r.rolname = current_user, r.rolsuper, r.rolcreaterole, r.rolcreatedb, \
                    r.rolreplication, r.rolbypassrls \
             FROM pg_roles r WHERE pg_has_role(current_user, r.oid, 'MEMBER') \
             ORDER BY r.rolname = current_user DESC, r.rolname",
            &[],
        )
        .await?;
    let via = |name: &str, own: bool| if own { String::new() } else { format!(" (through role {name})") };
    // A superuser may do everything else; a member of a superuser role may become it.
    if let Some(r) = roles.iter().find(|r| r.get::<_, bool>(2)) {
        return Ok(vec![format!("superuser{}", via(r.get(0), r.get(1)))]);
    }
    let mut found = Vec::new();
    for r in &roles {
        let (name, own): (String, bool) = (r.get(0), r.get(1));
        let via = via(&name, own);
        for (i, attr) in [(3, "CREATEROLE"), (4, "CREATEDB"), (5, "REPLICATION"), (6, "BYPASSRLS")] {
            if r.get::<_, bool>(i) {
                found.push(format!("{attr}{via}"));
            }
        }
        if PG_PREDEFINED.contains(&name.as_str()) {
            found.push(format!("member of {name}"));
        }
    }
    let names: Vec<String> = PG_FUNCTIONS.iter().map(|s| (*s).to_owned()).collect();
    let functions = client
        .query(
            "SELECT DISTINCT p.oid::regprocedure::text FROM pg_proc p \
             WHERE p.proname = ANY($1) AND EXISTS ( \
               SELECT 1 FROM pg_roles m WHERE pg_has_role(current_user, m.oid, 'MEMBER') \
               AND has_function_privilege(m.oid, p.oid, 'EXECUTE')) \
             ORDER BY 1",
            &[&names],
        )
        .await?;
    found.extend(functions.iter().map(|r| format!("EXECUTE on {}", r.get::<_, String>(0))));
    let tables = client
        .query(
            "WITH m AS (SELECT oid FROM pg_roles WHERE pg_has_role(current_user, oid, 'MEMBER')) \
             SELECT c.oid::regclass::text, array_agg(p ORDER BY o) \
             FROM pg_class c \
             CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) WITH ORDINALITY AS w(p, o) \
             WHERE c.relkind IN ('r', 'p', 'v', 'f') AND c.oid <> 'pg_catalog.pg_settings'::regclass AND EXISTS ( \
               SELECT 1 FROM m WHERE has_table_privilege(m.oid, c.oid, p) \
               OR (p IN ('INSERT', 'UPDATE') AND has_any_column_privilege(m.oid, c.oid, p))) \
             GROUP BY c.oid ORDER BY 1",
            &[],
        )
        .await?;
    for r in tables.iter().take(MAX_TABLES_NAMED) {
        let privs: Vec<String> = r.get(1);
        found.push(format!("{} on {}", privs.join(", "), r.get::<_, String>(0)));
    }
    if tables.len() > MAX_TABLES_NAMED {
        found.push(format!("write privileges on {} more table(s)", tables.len() - MAX_TABLES_NAMED));
    }
    Ok(found)
}

async fn mysql_privileges(conn: &mut mysql_async::Conn) -> Result<Vec<String>, mysql_async::Error> {
    let mut found = Vec::new();
    let mut lines: Vec<String> = conn.query("SHOW GRANTS").await?;
    let mut seen_roles = Vec::new();
    while let Some(line) = lines.pop() {
        match parse_grant(&line) {
            Grant::Privileges { privileges, object, grant_option } => {
                for p in privileges {
                    if !MYSQL_READ_PRIVILEGES.contains(&p.as_str()) {
                        found.push(format!("{p} on {object}"));
                    }
                }
                if grant_option {
                    found.push(format!("GRANT OPTION on {object}"));
                }
            }
            Grant::Roles(roles) => {
                for role in roles {
                    if seen_roles.contains(&role) || seen_roles.len() >= MAX_MYSQL_ROLES {
                        continue;
                    }
                    // The role's name as the server printed it, quoted: safe to send back.
                    let more: Vec<String> = conn.query(format!("SHOW GRANTS FOR {role}")).await?;
                    lines.extend(more);
                    seen_roles.push(role);
                }
            }
            Grant::Other => {}
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// One line of `SHOW GRANTS`.
#[derive(Debug, PartialEq, Eq)]
enum Grant {
    /// `GRANT p1, p2 (col) ON object TO user [WITH GRANT OPTION]`.
    Privileges { privileges: Vec<String>, object: String, grant_option: bool },
    /// `GRANT role1, role2 TO user`: the roles, quoted as printed.
    Roles(Vec<String>),
    /// Anything else (never a privilege).
    Other,
}

/// Splits `text` at commas outside backquotes, quotes and parentheses.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let (mut depth, mut quote) = (0usize, None::<char>);
    for ch in text.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '`' | '\'' | '"') => quote = Some(ch),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut cur).trim().to_owned());
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        parts.push(cur.trim().to_owned());
    }
    parts
}

fn parse_grant(line: &str) -> Grant {
    let Some(rest) = line.strip_prefix("GRANT ") else { return Grant::Other };
    let Some((head, target)) = rest.split_once(" TO ") else { return Grant::Other };
    match head.split_once(" ON ") {
        Some((privs, object)) => Grant::Privileges {
            privileges: split_top_level(privs)
                .into_iter()
                // `SELECT (`a`, `b`)`: a column grant names its privilege first.
                .map(|p| p.split('(').next().unwrap_or_default().trim().to_ascii_uppercase())
                .filter(|p| !p.is_empty())
                .collect(),
            object: object.trim().to_owned(),
            grant_option: target.contains(" WITH GRANT OPTION"),
        },
        None => Grant::Roles(split_top_level(head)),
    }
}

/// The verdict on a session: `Ok` to use it (and `guard` notes the time), or why it is
/// refused. The log line of a privileged role allowed by `allow_privileged` appears once
/// per pool.
pub fn verdict(
    settings: &ServerSettings,
    scheme: &str,
    found: Result<Vec<String>, CheckError>,
    guard: &RoleGuard,
) -> Result<(), QueryError> {
    let database = settings.identity(scheme);
    let reported = &guard.reported;
    let verdict = match (found, settings.allow_privileged) {
        (Ok(privileges), _) if privileges.is_empty() => Ok(()),
        (Ok(privileges), true) => {
            if !reported.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    %database, ?privileges,
                    "This connection's role holds privileges beyond reading, allowed by allow_privileged: true. \
                     A job's function can write or read server files or signal other sessions; create a \
                     least-privilege role (docs/DATABASES.md)."
                );
            }
            Ok(())
        }
        (Err(reason), true) => {
            if !reported.swap(true, Ordering::Relaxed) {
                tracing::warn!(%database, error = %reason, "The role's privileges could not be checked; allowed by allow_privileged: true.");
            }
            Ok(())
        }
        (Ok(privileges), false) => Err(QueryError::PrivilegedRole { privileges }),
        (Err(reason), false) => Err(QueryError::RoleUnchecked { reason: reason.to_string() }),
    };
    if verdict.is_ok() {
        guard.verified();
    }
    verdict
}

/// Checks each server connection once now (opening its first session), so that a
/// refused role is in the log at start and after a reload, not only at its first job.
pub fn check_all_in_background(connections: &std::collections::HashMap<String, super::Connector>) {
    for (name, c) in connections {
        let (name, c) = (name.clone(), c.clone());
        if matches!(c, super::Connector::Sqlite(_)) {
            continue;
        }
        tokio::spawn(async move {
            match c.check_role().await {
                Ok(()) => tracing::info!(connection = %name, "Database role checked."),
                Err(e @ (QueryError::PrivilegedRole { .. } | QueryError::RoleUnchecked { .. })) => {
                    tracing::error!(connection = %name, reason = e.code(), error = %e, "Jobs on this connection are refused until its role is fixed and the agent reloaded.");
                }
                Err(e) => {
                    tracing::warn!(connection = %name, error = %e, "Could not open a session to check the database role; checked again at the first job.")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(allow_privileged: bool) -> ServerSettings {
        ServerSettings {
            host: "db".into(),
            port: 5432,
            database: "d".into(),
            user: "u".into(),
            password: None,
            tls_ca: None,
            pool_size: 1,
            allow_privileged,
        }
    }

    #[test]
    fn show_grants_lines_are_read_as_privileges_objects_and_roles() {
        assert_eq!(
            parse_grant("GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"),
            Grant::Privileges { privileges: vec!["ALL PRIVILEGES".into()], object: "*.*".into(), grant_option: true }
        );
        assert_eq!(
            parse_grant("GRANT SELECT (`a`, `b`), INSERT (`c`) ON `shop`.`t` TO `u`@`%`"),
            Grant::Privileges {
                privileges: vec!["SELECT".into(), "INSERT".into()],
                object: "`shop`.`t`".into(),
                grant_option: false
            }
        );
        assert_eq!(
            parse_grant("GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*ABC'"),
            Grant::Privileges { privileges: vec!["USAGE".into()], object: "*.*".into(), grant_option: false }
        );
        assert_eq!(
            parse_grant("GRANT `r1`,`r,2`@`%` TO `u`@`%`"),
            Grant::Roles(vec!["`r1`".into(), "`r,2`@`%`".into()])
        );
        assert_eq!(parse_grant("SET DEFAULT ROLE `r1` FOR `u`@`%`"), Grant::Other);
    }

    #[test]
    fn a_privileged_role_is_refused_unless_allowed_and_an_unchecked_one_fails_closed() {
        let reported = RoleGuard::default();
        let privileged = Ok(vec!["superuser".to_owned()]);
        match verdict(&settings(false), "postgres", privileged.clone(), &reported) {
            Err(e @ QueryError::PrivilegedRole { .. }) => {
                assert_eq!(e.code(), "privileged_role");
                assert!(e.to_string().contains("superuser") && e.to_string().contains("allow_privileged"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(verdict(&settings(true), "postgres", privileged, &reported).is_ok());
        assert!(verdict(&settings(false), "postgres", Ok(vec![]), &reported).is_ok());
        let unchecked = verdict(&settings(false), "mysql", Err(CheckError::query("permission denied")), &reported);
        assert!(matches!(&unchecked, Err(e) if e.code() == "role_unchecked"), "{unchecked:?}");
        assert!(
            unchecked.as_ref().is_err_and(|e| e.to_string().contains("permission denied")),
            "the database's words reach the refusal: {unchecked:?}"
        );
        assert_eq!(
            CheckError::TimedOut.to_string(),
            format!("the catalog queries took longer than {} s", CHECK_TIMEOUT.as_secs())
        );
        assert!(verdict(&settings(true), "mysql", Err(CheckError::TimedOut), &reported).is_ok());
    }

    #[test]
    fn a_pooled_session_is_checked_again_once_the_last_check_is_a_minute_old() {
        let guard = RoleGuard::default();
        assert!(guard.due(), "never checked");
        let before = std::time::Instant::now();
        verdict(&settings(false), "postgres", Ok(vec![]), &guard).expect("clean");
        assert!(!guard.due());
        assert!(!guard.due_at(before + RECHECK_AFTER - Duration::from_secs(1)));
        let later = std::time::Instant::now() + RECHECK_AFTER;
        assert!(guard.due_at(later));
        // A refusal does not count as a check passed.
        let _ = verdict(&settings(false), "postgres", Ok(vec!["superuser".into()]), &guard);
        assert!(guard.due_at(later));
    }
}
