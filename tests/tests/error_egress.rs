//! Errors are egress, end to end: a real control plane, an enrolled agent, and the real
//! PostgreSQL and MariaDB servers (`OUTPOST_TEST_PG_URL`, `OUTPOST_TEST_MYSQL_URL`).
//!
//! A masked column holds a canary. A query makes the database quote it in an error
//! (PostgreSQL: a failed `CAST`; MariaDB: a customer's strict-cast routine that fails as
//! the server's own "Truncated incorrect INTEGER value" does, since MariaDB's `CAST` in a
//! `SELECT` only warns and the classic XPath error read needs a constant that the agent's
//! prepared statements never give). Under the default `egress.errors: scrubbed` the canary must not reach the
//! API's answer, any file of the control plane's data dir (SQLite database and WAL
//! included), the control plane's log, the agent's log or its audit log; the answer still
//! says what failed and, for a syntax error, where. `errors: full` does send it (so the
//! checks can fail), and `config audit` reports it.
//!
//! The agent connects as a least-privilege role each test creates (SELECT on one table).
//! If a server cannot be reached, the test fails with how to start it; it never skips.

use anyhow::{Context as _, Result};
use mysql_async::prelude::Queryable as _;
use outpost_e2e::pg::{schema, server, Server};
use outpost_e2e::{Agent, ControlPlane};

const CANARY: &str = "S3CRET-VALUE-42";

/// Dispatches a table job and returns (job id, HTTP status, answer).
async fn run(cp: &ControlPlane, connection: &str, sql: &str) -> Result<(String, u16, serde_json::Value)> {
    let id = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": connection, "sql": sql,
            "render": { "kind": "table", "format": "json" }
        }))
        .await?;
    let (status, body) = cp.wait_result(&id).await?;
    let answer = serde_json::from_str(&body).with_context(|| format!("answer {body:?}"))?;
    Ok((id, status, answer))
}

/// Runs a job that must fail; returns (job id, the message the API answers).
async fn failure(cp: &ControlPlane, connection: &str, sql: &str) -> Result<(String, String)> {
    let (id, status, answer) = run(cp, connection, sql).await?;
    anyhow::ensure!(status == 409 && answer["state"] == "failed", "{connection}: {sql}: {status} {answer}");
    assert_eq!(answer["reason"], "query_failed", "{answer}");
    Ok((id, answer["message"].as_str().context("message")?.to_owned()))
}

/// The files of the control plane's data dir that hold the canary.
fn control_plane_files_with_canary(cp: &ControlPlane) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for f in outpost_e2e::files_under(&cp.data_dir)? {
        let bytes = std::fs::read(&f)?;
        if bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()) {
            found.push(f.display().to_string());
        }
    }
    Ok(found)
}

/// Checks the audit record of failed job `id`: the message sent is counted and hashed,
/// and, when `scrubbed`, the decision to scrub it is stated (also in the job's view).
async fn check_ledger(cp: &ControlPlane, agent: &Agent, id: &str, message: &str, scrubbed: bool) -> Result<()> {
    let records = agent.audit_records()?;
    let rec = records.iter().find(|r| r["job_id"] == id).context("audit record")?;
    assert_eq!(rec["outcome"], "failed", "{rec}");
    assert_eq!(rec["bytes_sent"].as_u64(), Some(message.len() as u64), "{rec}");
    assert_eq!(rec["error_sha256"], outpost_protocol::encoding::sha256_hex(message.as_bytes()), "{rec}");
    assert!(rec["body_sha256"].is_null(), "{rec}");
    let is_errors = |d: &serde_json::Value| d["action"] == "masked" && d["rule"] == "errors";
    let in_audit = rec["egress"].as_array().is_some_and(|a| a.iter().any(is_errors));
    let view = cp.job(id).await?;
    let in_view = view["stats"]["egress"].as_array().is_some_and(|a| a.iter().any(is_errors));
    assert_eq!((in_audit, in_view), (scrubbed, scrubbed), "{rec}\n{view}");
    Ok(())
}

/// What must hold once the agent has stopped: no canary in its log or its audit log, nor
/// in the control plane's log.
fn check_logs(cp: &ControlPlane, agent: &Agent) -> Result<()> {
    let log = agent.log_text();
    assert!(log.contains("Job failed."), "{log}");
    assert!(!log.contains(CANARY), "the agent's log holds the canary:\n{log}");
    let audit = std::fs::read_to_string(agent.state_dir.join("audit.log"))?;
    assert!(!audit.contains(CANARY), "the audit log holds the canary:\n{audit}");
    assert!(!cp.log_text().contains(CANARY), "the control plane's log holds the canary");
    Ok(())
}

fn pg_connection(s: &Server, name: &str, user: &str, egress: &str) -> String {
    format!(
        "  {name}:\n    kind: postgres\n    host: {}\n    port: {}\n    database: {}\n    user: {user}\n    \
         password_credential: warehouse\n    tls: disable\n    egress:\n{egress}",
        s.host(),
        s.port(),
        s.database()
    )
}

const MASK: &str = "      mask:\n        - column: secret\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_error_never_carries_a_masked_value_out_unless_errors_full_says_so() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "err").await?;
    let t = &db.name;
    let reader = format!("outpost_err_reader_{}", &outpost_protocol::ids::new_nonce()[..8].to_ascii_lowercase());
    db.admin
        .batch_execute(&format!(
            "CREATE TABLE {t}.customers (id int, secret text);
             INSERT INTO {t}.customers VALUES (1, '{CANARY}');
             CREATE ROLE {reader} LOGIN;
             GRANT USAGE ON SCHEMA {t} TO {reader};
             GRANT SELECT ON {t}.customers TO {reader};"
        ))
        .await?;
    let root = tempfile::tempdir()?;
    let config = format!(
        "connections:\n{}{}{}{}",
        pg_connection(&s, "warehouse", &reader, MASK),
        pg_connection(&s, "terse", &reader, &format!("      errors: code_only\n{MASK}")),
        pg_connection(&s, "raw", &reader, &format!("      errors: full\n{MASK}")),
        pg_connection(&s, "plain", &reader, "      errors: full\n"),
    );
    let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
    let cast = format!("SELECT id, CAST(secret AS int) AS n FROM {t}.customers");

    // The masked value leaves neither in a result nor in an error.
    let (_, status, table) = run(&cp, "warehouse", &format!("SELECT id, secret FROM {t}.customers")).await?;
    assert_eq!((status, &table["rows"]), (200, &serde_json::json!([[1, "***"]])), "{table}");
    let (cast_id, message) = failure(&cp, "warehouse", &cast).await?;
    assert_eq!(message, "query failed: invalid input syntax for type integer: \"…\" (SQLSTATE 22P02)");
    check_ledger(&cp, &agent, &cast_id, &message, true).await?;
    // A syntax error still says what and where: the fragment came from the SQL.
    let (syntax_id, message) = failure(&cp, "warehouse", &format!("SELEC id FROM {t}.customers")).await?;
    assert_eq!(message, "query failed: syntax error at or near \"SELEC\" (SQLSTATE 42601, at character 1)");
    check_ledger(&cp, &agent, &syntax_id, &message, false).await?;
    // code_only: the code and SQLSTATE, no text.
    let (terse_id, message) = failure(&cp, "terse", &cast).await?;
    assert_eq!(message, "query failed (SQLSTATE 22P02); the error text is withheld (egress.errors: code_only)");
    check_ledger(&cp, &agent, &terse_id, &message, true).await?;
    let found = control_plane_files_with_canary(&cp)?;
    assert!(found.is_empty(), "the control plane stored the canary in {found:?}");

    // errors: full sends the text as the database wrote it, canary included.
    let (raw_id, message) = failure(&cp, "raw", &cast).await?;
    assert_eq!(message, format!("query failed: invalid input syntax for type integer: \"{CANARY}\" (SQLSTATE 22P02)"));
    check_ledger(&cp, &agent, &raw_id, &message, false).await?;
    agent.stop()?;
    // Even then, the agent's own logs hold the scrubbed text only.
    check_logs(&cp, &agent)?;

    // config audit: errors: full is a finding, HIGH where the connection masks columns.
    let (_, out, err) = agent.cli(&["config", "audit", "--json"], None, &[])?;
    let report: serde_json::Value = serde_json::from_str(&out).with_context(|| format!("{out}{err}"))?;
    let severity = |subject: &str| {
        report["findings"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["subject"] == subject))
            .map(|f| f["severity"].clone())
    };
    assert_eq!(severity("connections.raw.egress.errors"), Some(serde_json::json!("high")), "{report}");
    assert_eq!(severity("connections.plain.egress.errors"), Some(serde_json::json!("medium")), "{report}");
    assert_eq!(severity("connections.warehouse.egress.errors"), None, "{report}");
    let errors_of = |name: &str| {
        report["connections"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .map(|c| c["egress"]["errors"].clone())
    };
    assert_eq!(errors_of("terse"), Some(serde_json::json!("code_only")), "{report}");

    db.drop_now().await?;
    let (admin, conn) = s.config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    admin.batch_execute(&format!("DROP ROLE {reader}")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_error_never_carries_a_masked_value_out_unless_errors_full_says_so() -> Result<()> {
    let url = std::env::var("OUTPOST_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let opts = mysql_async::Opts::from_url(&url).with_context(|| format!("OUTPOST_TEST_MYSQL_URL {url:?}"))?;
    let mut admin = mysql_async::Conn::new(opts.clone()).await.with_context(|| {
        format!(
            "MariaDB/MySQL is not reachable at {url}: start it with \
             `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd` or set OUTPOST_TEST_MYSQL_URL"
        )
    })?;
    let tag = outpost_protocol::ids::new_nonce()[..8].to_ascii_lowercase();
    let (name, reader) = (format!("outpost_err_{tag}"), format!("outpost_err_reader_{tag}"));
    for stmt in [
        format!("CREATE DATABASE {name}"),
        format!("CREATE TABLE {name}.customers (id int, secret text)"),
        format!("INSERT INTO {name}.customers VALUES (1, '{CANARY}')"),
        // A customer's strict cast: fails as the server's own ER_TRUNCATED_WRONG_VALUE does.
        format!(
            "CREATE FUNCTION {name}.strict_int(s TEXT) RETURNS INT DETERMINISTIC BEGIN \
             IF s NOT REGEXP '^[0-9]+$' THEN \
             SET @m = CONCAT('Truncated incorrect INTEGER value: ''', s, ''''); \
             SIGNAL SQLSTATE '22007' SET MESSAGE_TEXT = @m, MYSQL_ERRNO = 1292; END IF; \
             RETURN CAST(s AS INT); END"
        ),
        // And one that raises the value as its whole message.
        format!(
            "CREATE FUNCTION {name}.check_secret(s TEXT) RETURNS INT DETERMINISTIC BEGIN \
             SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = s; RETURN 0; END"
        ),
        format!("CREATE USER '{reader}'@'%'"),
        format!("GRANT SELECT ON {name}.customers TO '{reader}'@'%'"),
        format!("GRANT EXECUTE ON FUNCTION {name}.strict_int TO '{reader}'@'%'"),
        format!("GRANT EXECUTE ON FUNCTION {name}.check_secret TO '{reader}'@'%'"),
    ] {
        admin.query_drop(stmt).await?;
    }
    let connection = |conn: &str, egress: &str| {
        format!(
            "  {conn}:\n    kind: mysql\n    host: {}\n    port: {}\n    database: {name}\n    user: {reader}\n    \
             tls: disable\n    egress:\n{egress}",
            opts.ip_or_hostname(),
            opts.tcp_port(),
        )
    };
    let config = format!(
        "connections:\n{}{}",
        connection("shop", MASK),
        connection("shop_raw", &format!("      errors: full\n{MASK}"))
    );
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
    let cast = "SELECT id, strict_int(secret) AS n FROM customers";

    let (cast_id, message) = failure(&cp, "shop", cast).await?;
    assert_eq!(message, "query failed: Truncated incorrect INTEGER value: '…' (error 1292, SQLSTATE 22007)");
    check_ledger(&cp, &agent, &cast_id, &message, true).await?;
    // A routine's SIGNAL: the message is all data, and its SQLSTATE may be too.
    let (signal_id, message) = failure(&cp, "shop", "SELECT check_secret(secret) AS c FROM customers").await?;
    assert_eq!(message, "query failed: … (error 1644, SQLSTATE withheld: set by a stored routine)");
    check_ledger(&cp, &agent, &signal_id, &message, true).await?;
    let (syntax_id, message) = failure(&cp, "shop", "SELEC id FROM customers").await?;
    assert!(message.contains("near 'SELEC id FROM customers' at line 1 (error 1064, SQLSTATE 42000)"), "{message}");
    check_ledger(&cp, &agent, &syntax_id, &message, false).await?;
    let found = control_plane_files_with_canary(&cp)?;
    assert!(found.is_empty(), "the control plane stored the canary in {found:?}");

    let (raw_id, message) = failure(&cp, "shop_raw", cast).await?;
    assert_eq!(
        message,
        format!("query failed: Truncated incorrect INTEGER value: '{CANARY}' (error 1292, SQLSTATE 22007)")
    );
    check_ledger(&cp, &agent, &raw_id, &message, false).await?;
    agent.stop()?;
    check_logs(&cp, &agent)?;
    admin.query_drop(format!("DROP USER '{reader}'@'%'")).await?;
    admin.query_drop(format!("DROP DATABASE {name}")).await?;
    Ok(())
}
