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

/// Every digit run of `text` that is not in `sql`, outside the parentheses that give the
/// SQLSTATE, error number and position.
fn foreign_numbers(text: &str, sql: &str) -> Vec<String> {
    let mut rest = text.to_owned();
    while let Some(open) = rest.find(" (") {
        let Some(close) = rest[open..].find(')').map(|c| open + c) else { break };
        if !rest[open..close].contains("SQLSTATE") {
            break;
        }
        rest.replace_range(open..=close, "");
    }
    rest.split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty() && !sql.contains(*n))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_errors_that_quote_a_row_are_scrubbed_whatever_the_function() -> Result<()> {
    use outpost_agent::connectors::postgres::PostgresConnector;
    use outpost_agent::connectors::{QueryLimits, ServerSettings};
    use outpost_agent::scrub::{outgoing, ErrorsMode, Known};
    let s = server()?;
    let db = schema(&s, "errq").await?;
    let t = &db.name;
    let reader = format!("outpost_err_reader_{}", &outpost_protocol::ids::new_nonce()[..8].to_ascii_lowercase());
    db.admin
        .batch_execute(&format!(
            "CREATE TABLE {t}.customers (id int, secret text, n bigint, d text);
             INSERT INTO {t}.customers VALUES (1, '{CANARY}', 9876543210, '2024-13-45');
             -- A customer's routines that raise with what they were given.
             CREATE FUNCTION {t}.check_secret(v text) RETURNS int LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'rejected %', v; END $$;
             CREATE FUNCTION {t}.check_code(v text) RETURNS int LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION USING MESSAGE = v, ERRCODE = upper(substr(v, 1, 5)); END $$;
             CREATE ROLE {reader} LOGIN;
             GRANT USAGE ON SCHEMA {t} TO {reader};
             GRANT SELECT ON {t}.customers TO {reader};
             GRANT EXECUTE ON FUNCTION {t}.check_secret(text), {t}.check_code(text) TO {reader};"
        ))
        .await?;
    let conn = PostgresConnector::new(ServerSettings {
        host: s.host(),
        port: s.port(),
        database: s.database().to_owned(),
        user: reader.clone(),
        password: None,
        tls_ca: None,
        pool_size: 2,
        allow_privileged: false,
    })
    .context("connector")?;
    let from = format!("FROM {t}.customers");
    let queries = [
        format!("SELECT id, CAST(secret AS int) AS n {from}"),
        format!("SELECT secret::uuid {from}"),
        format!("SELECT secret::inet::text {from}"),
        format!("SELECT secret::numeric {from}"),
        format!("SELECT secret::boolean {from}"),
        format!("SELECT secret::interval::text {from}"),
        format!("SELECT secret::json {from}"),
        format!("SELECT ('{{\"a\": ' || secret || '}}')::jsonb {from}"),
        format!("SELECT secret::regclass::text {from}"),
        format!("SELECT secret::bit(3)::text {from}"),
        format!("SELECT d::date {from}"),
        format!("SELECT to_date(secret, 'YYYY-MM') {from}"),
        format!("SELECT current_setting(secret) {from}"),
        format!("SELECT format(secret || '%z', 1) {from}"),
        format!("SELECT make_date(2024, (n % 7 + 13)::int, 1) {from}"),
        format!("SELECT chr((n % 1000)::int + 2000000) {from}"),
        format!("SELECT pg_read_file(secret) {from}"),
        format!("SELECT {t}.check_secret(secret) {from}"),
        format!("SELECT {t}.check_code(secret) {from}"),
    ];
    let mut quoted_in_full = 0;
    for sql in &queries {
        let err = conn
            .query(sql.clone(), vec![], QueryLimits::new(10, std::time::Duration::from_secs(10)))
            .await
            .err()
            .with_context(|| format!("{sql}: no error"))?;
        let known = Known::new(sql, &[]);
        let full = outgoing(ErrorsMode::Full, &err, &known);
        quoted_in_full += usize::from(full.message.to_uppercase().contains("S3CR"));
        for mode in [ErrorsMode::Scrubbed, ErrorsMode::CodeOnly] {
            let out = outgoing(mode, &err, &known);
            for text in [&out.message, &out.logged] {
                assert!(!text.to_uppercase().contains("S3CR"), "{sql}\n  full: {}\n  sent: {text}", full.message);
                assert!(!text.contains("2024-1"), "{sql}: {text}");
                // Numbers come from the SQL, or are the SQLSTATE, an error number or a position.
                assert_eq!(foreign_numbers(text, sql), Vec::<String>::new(), "{sql}: {text}");
            }
        }
    }
    // The checks could fail: most of these errors quote the value as the server wrote them.
    assert!(quoted_in_full >= 11, "only {quoted_in_full} errors quoted the canary");
    drop(conn);
    db.drop_now().await?;
    let (admin, c) = s.config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(c);
    admin.batch_execute(&format!("DROP ROLE {reader}")).await?;
    Ok(())
}
