//! No privileged PostgreSQL sessions (issue 21, item 4), against the real server.
//!
//! The read-only transaction does not stop a superuser's volatile function that runs
//! `COPY … TO 'file'` or `TO PROGRAM`, nor `lo_export`, `pg_read_file` or
//! `pg_terminate_backend`. So: a superuser (or any role with privileges beyond reading)
//! is refused with `privileged_role`, naming the privilege, unless the connection says
//! `allow_privileged: true`; a least-privilege role is accepted and each of those
//! functions fails there; and whatever the role, a job leaves no session state (an
//! advisory lock, a setting) for the next one.
//!
//! Each test makes its own schema and `outpost_priv_*` roles and drops them. The server
//! runs on this machine, so the canary files the hostile functions would write are
//! checked here.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use outpost_agent::connectors::postgres::PostgresConnector;
use outpost_agent::connectors::{QueryError, QueryLimits, ServerSettings};
use outpost_agent::resultset::Value;
use outpost_e2e::pg::{schema, server, Schema, Server};

fn connector(s: &Server, user: &str, allow_privileged: bool, pool_size: usize) -> PostgresConnector {
    PostgresConnector::new(ServerSettings {
        host: s.host(),
        port: s.port(),
        database: s.database().to_owned(),
        user: user.to_owned(),
        password: s.config.get_password().map(|p| String::from_utf8_lossy(p).into_owned().into()),
        tls_ca: None,
        pool_size,
        allow_privileged,
    })
    .expect("connector")
}

fn limits() -> QueryLimits {
    QueryLimits::new(100, Duration::from_secs(10))
}

/// The hostile setup in `db`'s schema, made by the superuser: a table, a function that
/// writes a file with `COPY … TO`, one that runs a program with `COPY … TO PROGRAM`, and
/// a large object to export; the canary paths each would create.
struct Hostile {
    canaries: Vec<PathBuf>,
    jobs: Vec<String>,
    lo: u32,
}

async fn hostile(db: &Schema) -> Result<Hostile> {
    let t = &db.name;
    let base = format!("/tmp/outpost-priv-canary-{t}");
    let canaries: Vec<PathBuf> = ["copy", "program", "lo"].iter().map(|k| format!("{base}-{k}").into()).collect();
    db.admin
        .batch_execute(&format!(
            "CREATE TABLE {t}.facts (id int, v text);
             INSERT INTO {t}.facts VALUES (1, 'one'), (2, 'two');
             CREATE FUNCTION {t}.evil_copy() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
               BEGIN EXECUTE 'COPY (SELECT 1) TO ''{base}-copy'''; RETURN 1; END $$;
             CREATE FUNCTION {t}.evil_program() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
               BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch {base}-program'''; RETURN 1; END $$;"
        ))
        .await?;
    let lo: u32 = db.admin.query_one("SELECT lo_from_bytea(0, 'outpost canary')", &[]).await?.get(0);
    let admin_pid: i32 = db.admin.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    let jobs = vec![
        format!("SELECT {t}.evil_copy() AS n"),
        format!("SELECT {t}.evil_program() AS n"),
        format!("SELECT lo_export({lo}, '{base}-lo') AS n"),
        "SELECT pg_read_file('/etc/passwd') AS f".to_owned(),
        format!("SELECT pg_terminate_backend({admin_pid}) AS t"),
    ];
    Ok(Hostile { canaries, jobs, lo })
}

impl Hostile {
    fn assert_no_file(&self) {
        for c in &self.canaries {
            assert!(!c.exists(), "{} was written on the database server", c.display());
        }
    }

    fn remove_files(&self) {
        for c in &self.canaries {
            let _ = std::fs::remove_file(c);
        }
    }

    /// Unlinks the large object (dropping the schema does not) and drops the schema.
    async fn drop_with(self, db: Schema) -> Result<()> {
        db.admin.query_one("SELECT lo_unlink($1)", &[&self.lo]).await?;
        db.drop_now().await
    }
}

/// Creates login role `name` with `attributes`, and `grants` (`{r}` is the role).
async fn create_role(db: &Schema, name: &str, attributes: &str, grants: &str) -> Result<()> {
    db.admin.batch_execute(&format!("CREATE ROLE {name} LOGIN {attributes}")).await?;
    if !grants.is_empty() {
        db.admin.batch_execute(&grants.replace("{r}", name)).await?;
    }
    Ok(())
}

async fn drop_roles(db: &Schema, names: &[&str]) -> Result<()> {
    for name in names {
        db.admin.batch_execute(&format!("DROP OWNED BY {name}; DROP ROLE {name}")).await?;
    }
    Ok(())
}

/// The least-privilege recipe of docs/DATABASES.md, for `db`'s schema, plus EXECUTE on
/// the hostile functions (which PUBLIC has anyway).
fn reader_grants(s: &Server, t: &str) -> String {
    format!(
        "GRANT CONNECT ON DATABASE {} TO {{r}}; GRANT USAGE ON SCHEMA {t} TO {{r}};
         GRANT SELECT ON ALL TABLES IN SCHEMA {t} TO {{r}};
         GRANT EXECUTE ON FUNCTION {t}.evil_copy(), {t}.evil_program() TO {{r}};",
        s.database()
    )
}

#[tokio::test]
async fn a_superuser_is_refused_naming_superuser_and_its_hostile_jobs_write_nothing() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "priv_su").await?;
    let h = hostile(&db).await?;
    let pg = connector(&s, s.user(), false, 1);
    for sql in &h.jobs {
        match pg.query(sql.clone(), vec![], limits()).await {
            Err(e @ QueryError::PrivilegedRole { .. }) => {
                assert_eq!(e.code(), "privileged_role");
                let QueryError::PrivilegedRole { privileges } = &e else { unreachable!() };
                assert_eq!(privileges, &vec!["superuser".to_owned()], "{sql}");
                assert!(e.to_string().contains("allow_privileged: true"), "{e}");
            }
            other => panic!("{sql}: expected privileged_role, got {other:?}"),
        }
    }
    h.assert_no_file();
    db.admin.query_one("SELECT 1", &[]).await?; // pg_terminate_backend did not run.

    // The same role with allow_privileged: true is used, and the hole is real: the
    // function writes its file on the server. This is why `config audit` says HIGH.
    let allowed = connector(&s, s.user(), true, 1);
    let rs = allowed.query(format!("SELECT count(*) AS n FROM {}.facts", db.name), vec![], limits()).await?;
    assert_eq!(rs.rows[0][0], Value::Int(2));
    let wrote = allowed.query(h.jobs[0].clone(), vec![], limits()).await;
    let written = h.canaries[0].exists();
    h.remove_files();
    assert!(wrote.is_ok() && written, "the superuser's COPY TO file ran: {wrote:?}");
    h.drop_with(db).await
}

#[tokio::test]
async fn a_least_privilege_role_is_accepted_and_each_hostile_function_fails_writing_nothing() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "priv_ro").await?;
    let h = hostile(&db).await?;
    let role = format!("outpost_priv_ro_{}", &db.name[db.name.len() - 8..]);
    create_role(&db, &role, "", &reader_grants(&s, &db.name)).await?;
    let pg = connector(&s, &role, false, 1);
    let rs = pg.query(format!("SELECT id, v FROM {}.facts ORDER BY id", db.name), vec![], limits()).await?;
    assert_eq!(rs.rows.len(), 2, "the reader reads");
    for sql in &h.jobs {
        let err = pg.query(sql.clone(), vec![], limits()).await;
        match &err {
            Err(QueryError::Database { message }) => {
                assert!(message.contains("permission denied") || message.contains("must be"), "{sql}: {message}")
            }
            other => panic!("{sql}: expected the database to refuse it, got {other:?}"),
        }
    }
    h.assert_no_file();
    db.admin.query_one("SELECT 1", &[]).await?; // the admin session was not terminated.

    // A write granted while the session is pooled is seen at the next check (a minute
    // after the last one; `recheck_role` brings it forward), on the pooled session.
    db.admin.batch_execute(&format!("GRANT DELETE ON {}.facts TO {role}", db.name)).await?;
    pg.recheck_role();
    match pg.query("SELECT 1 AS one".into(), vec![], limits()).await {
        Err(QueryError::PrivilegedRole { privileges }) => {
            assert_eq!(privileges, vec![format!("DELETE on {}.facts", db.name)])
        }
        other => panic!("expected privileged_role after the grant, got {other:?}"),
    }
    drop_roles(&db, &[&role]).await?;
    h.drop_with(db).await
}

#[tokio::test]
async fn each_privilege_beyond_reading_is_named_in_the_refusal() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "priv_names").await?;
    let t = db.name.clone();
    db.admin.batch_execute(&format!("CREATE TABLE {t}.facts (id int)")).await?;
    let tag = &t[t.len() - 8..];
    let writer = format!("outpost_priv_w_{tag}");
    let files = format!("outpost_priv_f_{tag}");
    let creator = format!("outpost_priv_c_{tag}");
    let via = format!("outpost_priv_v_{tag}");
    let su = format!("outpost_priv_s_{tag}");
    let reader = format!("outpost_priv_r_{tag}");
    create_role(
        &db,
        &writer,
        "",
        &format!("GRANT USAGE ON SCHEMA {t} TO {{r}}; GRANT SELECT, INSERT, UPDATE ON {t}.facts TO {{r}}"),
    )
    .await?;
    create_role(
        &db,
        &files,
        "",
        "GRANT pg_read_server_files TO {r}; GRANT EXECUTE ON FUNCTION pg_read_file(text) TO {r}",
    )
    .await?;
    create_role(&db, &creator, "CREATEROLE", "").await?;
    db.admin.batch_execute(&format!("CREATE ROLE {su} SUPERUSER NOLOGIN")).await?;
    create_role(&db, &via, "NOINHERIT", &format!("GRANT {su} TO {{r}}")).await?;
    // docs/DATABASES.md's alternative recipe: pg_read_all_data reads every table, writes none.
    create_role(&db, &reader, "", "GRANT pg_read_all_data TO {r}").await?;
    let monitor = format!("outpost_priv_m_{tag}");
    create_role(&db, &monitor, "", "GRANT pg_monitor TO {r}").await?;
    let refused = |user: &str| {
        let pg = connector(&s, user, false, 1);
        async move {
            match pg.query("SELECT 1 AS one".into(), vec![], limits()).await {
                Err(QueryError::PrivilegedRole { privileges }) => privileges,
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(refused(&writer).await, vec![format!("INSERT, UPDATE on {t}.facts")]);
    assert_eq!(
        refused(&files).await,
        vec!["member of pg_read_server_files".to_owned(), "EXECUTE on pg_read_file(text)".to_owned()]
    );
    assert_eq!(refused(&creator).await, vec!["CREATEROLE".to_owned()]);
    assert_eq!(refused(&via).await, vec![format!("superuser (through role {su})")], "a NOINHERIT member may SET ROLE");
    assert_eq!(
        refused(&monitor).await,
        vec!["member of pg_monitor".to_owned(), "member of pg_read_all_stats".to_owned()],
        "other sessions' SQL text"
    );
    // The same roles are used when the connection allows them; a reader always is.
    assert!(connector(&s, &writer, true, 1).query("SELECT 1 AS one".into(), vec![], limits()).await.is_ok());
    let rs = connector(&s, &reader, false, 1)
        .query(format!("SELECT count(*) AS n FROM {t}.facts"), vec![], limits())
        .await?;
    assert_eq!(rs.rows[0][0], Value::Int(0));
    drop_roles(&db, &[&writer, &files, &creator, &via, &su, &reader, &monitor]).await?;
    db.drop_now().await
}

#[tokio::test]
async fn a_job_leaves_no_lock_or_setting_on_its_pooled_session() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "priv_reset").await?;
    let t = db.name.clone();
    db.admin
        .batch_execute(&format!(
            "CREATE TYPE {t}.mood AS ENUM ('calm', 'busy'); CREATE TYPE {t}.size AS ENUM ('s', 'm');"
        ))
        .await?;
    let role = format!("outpost_priv_reset_{}", &t[t.len() - 8..]);
    create_role(&db, &role, "", &format!("GRANT USAGE ON SCHEMA {t} TO {{r}}")).await?;
    // One session: every job below runs on it, one after the other.
    let pg = connector(&s, &role, false, 1);
    let pid = |rs: &outpost_agent::resultset::ResultSet| rs.rows[0].last().cloned();
    let first =
        pg.query("SELECT pg_advisory_lock(4242)::text AS l, pg_backend_pid() AS pid".into(), vec![], limits()).await?;
    // The job's session lock is gone: another session takes it at once.
    let taken: bool = db.admin.query_one("SELECT pg_try_advisory_lock(4242)", &[]).await?.get(0);
    assert!(taken, "the job's advisory lock outlived it");
    db.admin.query_one("SELECT pg_advisory_unlock(4242)", &[]).await?;
    pg.query(
        "SELECT set_config('application_name', 'dirty', false) AS a, set_config('search_path', 'nowhere', false) AS b, \
         pg_backend_pid() AS pid"
            .into(),
        vec![],
        limits(),
    )
    .await?;
    let after = pg
        .query(
            "SELECT current_setting('application_name') AS a, current_setting('search_path') AS b, pg_backend_pid() AS pid"
                .into(),
            vec![],
            limits(),
        )
        .await?;
    assert_eq!(pid(&after), pid(&first), "the same pooled session");
    assert_eq!(after.rows[0][0], Value::Text("outpost-agent".into()));
    assert_eq!(after.rows[0][1], Value::Text("\"$user\", public".into()));
    // Types looked up after a reset still decode (the reset keeps the client's own
    // prepared statements).
    for (sql, want) in [(format!("SELECT 'busy'::{t}.mood AS m"), "busy"), (format!("SELECT 'm'::{t}.size AS z"), "m")]
    {
        let rs = pg.query(sql, vec![], limits()).await?;
        assert_eq!(rs.rows[0][0], Value::Text(want.into()));
    }
    drop(pg);
    drop_roles(&db, &[&role]).await?;
    db.drop_now().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_a_superuser_connection_keeps_serving_and_a_reload_fixes_it() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "priv_e2e").await?;
    let h = hostile(&db).await?;
    let t = db.name.clone();
    let role = format!("outpost_priv_agent_{}", &t[t.len() - 8..]);
    create_role(&db, &role, "", &reader_grants(&s, &t)).await?;
    let conn = |name: &str, user: &str, extra: &str| {
        format!(
            "  {name}:\n    kind: postgres\n    host: {}\n    port: {}\n    database: {}\n    user: {user}\n    \
             password_credential: warehouse\n    tls: disable\n{extra}",
            s.host(),
            s.port(),
            s.database()
        )
    };
    let config = |su_user: &str| {
        format!(
            "connections:\n{}{}{}",
            conn("su", su_user, ""),
            conn("reader", &role, ""),
            conn("allowed", s.user(), "    allow_privileged: true\n")
        )
    };
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &config(s.user())).await?;
    // Checked at start, before any job: the operator reads it in the log.
    agent.process()?.wait_for_log("Jobs on this connection are refused", Duration::from_secs(30))?;
    let job = |connection: &str, sql: &str| {
        serde_json::json!({
            "agent": "edge-1", "connection": connection, "sql": sql,
            "render": { "kind": "table", "format": "json" }
        })
    };
    for sql in &h.jobs {
        let id = cp.dispatch(job("su", sql)).await?;
        let (status, body) = cp.wait_result(&id).await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!((status, v["reason"].as_str()), (409, Some("privileged_role")), "{sql}: {body}");
        assert!(v["message"].as_str().unwrap_or_default().contains("superuser"), "{body}");
        assert!(!body.contains("root:x:0:0"), "server file content: {body}");
    }
    h.assert_no_file();
    // The agent keeps serving its other connections.
    for connection in ["reader", "allowed"] {
        let id = cp.dispatch(job(connection, &format!("SELECT count(*) AS n FROM {t}.facts"))).await?;
        let (status, body) = cp.wait_result(&id).await?;
        assert_eq!(status, 200, "{connection}: {body}");
    }
    // The least-privilege connection runs the hostile jobs, and each fails in the database.
    for sql in &h.jobs {
        let id = cp.dispatch(job("reader", sql)).await?;
        let (status, body) = cp.wait_result(&id).await?;
        assert_eq!(status, 409, "{sql}: {body}");
        assert!(!body.contains("root:x:0:0") && !body.contains("privileged_role"), "{body}");
    }
    h.assert_no_file();
    let records = agent.audit_records()?;
    assert!(records.iter().any(|r| r["reason"] == "privileged_role" && r["connection"] == "su"), "{records:?}");

    // config audit: allow_privileged is a HIGH finding, on that connection only.
    let (code, out, _) = agent.cli(&["config", "audit"], None, &[])?;
    assert_eq!(code, 1, "a HIGH finding fails the audit: {out}");
    assert!(out.contains("[HIGH] connections.allowed.allow_privileged"), "{out}");
    assert!(!out.contains("connections.su.allow_privileged"), "{out}");
    // With --connections the report also says what the roles are, as connections test
    // finds them: the superuser connection that refuses jobs is a HIGH finding of its own.
    let (code, out, _) = agent.cli(&["config", "audit", "--connections", "--json"], None, &[])?;
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out)?;
    let checks = report["connection_checks"].as_array().context("connection_checks")?;
    let su = checks.iter().find(|c| c["name"] == "su").context("su checked")?;
    assert_eq!(su["ok"], false, "{su}");
    assert!(su["problem"].as_str().unwrap_or_default().contains("privileged_role"), "{su}");
    let finding =
        report["findings"].as_array().and_then(|f| f.iter().find(|f| f["subject"] == "connections.su")).cloned();
    assert_eq!(finding.map(|f| f["severity"].clone()), Some(serde_json::json!("high")), "{report}");
    let (_, text, _) = agent.cli(&["config", "audit", "--connections"], None, &[])?;
    assert!(text.contains("databases reached (as a job would):"), "{text}");

    // connections test: each connection reached as a job would be, no query of anyone's.
    let (code, out, err) = agent.cli(&["connections", "test"], None, &[])?;
    assert_eq!(code, 1, "the superuser connection cannot run a job: {out}{err}");
    let line = |name: &str| out.lines().find(|l| l.starts_with(&format!("{name} (postgres "))).unwrap_or_default();
    assert!(line("su").contains("FAILED") && line("su").contains("(superuser)"), "{out}");
    assert!(line("su").ends_with("(privileged_role)"), "{out}");
    for name in ["reader", "allowed"] {
        let l = line(name);
        assert!(l.contains(": OK — PostgreSQL "), "{out}");
        assert!(l.contains("TLS none") && l.contains("read-only transaction (transaction_read_only = on)"), "{l}");
    }
    assert!(line("reader").contains(&format!("user {role}")), "{out}");
    let (code, out, err) = agent.cli(&["connections", "test", "reader", "--json"], None, &[])?;
    assert_eq!(code, 0, "{out}{err}");
    let reports: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(reports.as_array().map(Vec::len), Some(1), "{reports}");
    assert_eq!((reports[0]["ok"].as_bool(), reports[0]["user"].as_str()), (Some(true), Some(role.as_str())));
    assert!(!out.contains("password"), "never a secret: {out}");
    let (code, _, err) = agent.cli(&["connections", "test", "nosuch"], None, &[])?;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("no connection \"nosuch\"") && err.contains("reader"), "{err}");

    // A reload that points `su` at the least-privilege role takes effect.
    std::fs::write(&agent.config, format!("state_dir: {}\n{}", agent.state_dir.display(), config(&role)))?;
    agent.process()?.signal("HUP")?;
    agent.process()?.wait_for_log("Reloaded agent.yaml", Duration::from_secs(30))?;
    let id = cp.dispatch(job("su", &format!("SELECT count(*) AS n FROM {t}.facts"))).await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "after the reload: {body}");
    agent.stop()?;
    h.assert_no_file();
    drop_roles(&db, &[&role]).await?;
    h.drop_with(db).await
}
