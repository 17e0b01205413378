//! No privileged MySQL/MariaDB sessions (issue 21, item 4), against the real server.
//!
//! `root` reads server files with `LOAD_FILE()` inside a read-only transaction. So a
//! user with any grant beyond reading (FILE, PROCESS, SUPER, any write, GRANT OPTION, at
//! any level, directly or through a role) is refused with `privileged_role`, naming
//! the grant, unless the connection says `allow_privileged: true`; a `SELECT`-only user
//! is accepted and gets nothing from `LOAD_FILE` nor writes with `INTO OUTFILE`; and a
//! job leaves no named lock or user variable on its pooled session.
//!
//! Each test makes its own database and `outpost_priv_*` users and drops them. The
//! server runs on this machine, so the canary file `INTO OUTFILE` would write is
//! checked here.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use mysql_async::prelude::Queryable as _;
use outpost_agent::connectors::mysql::MysqlConnector;
use outpost_agent::connectors::{QueryError, QueryLimits, ServerSettings};
use outpost_agent::resultset::Value;

struct Db {
    opts: mysql_async::Opts,
    admin: mysql_async::Conn,
    name: String,
    users: Vec<String>,
}

async fn database(tag: &str) -> Result<Db> {
    let url = std::env::var("OUTPOST_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let opts = mysql_async::Opts::from_url(&url).with_context(|| format!("OUTPOST_TEST_MYSQL_URL {url:?}"))?;
    let mut admin = mysql_async::Conn::new(opts.clone()).await.with_context(|| {
        format!(
            "MariaDB/MySQL is not reachable at {url}: start it with \
             `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd` or set OUTPOST_TEST_MYSQL_URL"
        )
    })?;
    let name = format!("outpost_priv_{tag}_{}", &outpost_protocol::ids::new_nonce()[..10]);
    admin.query_drop(format!("CREATE DATABASE {name}")).await?;
    admin.query_drop(format!("CREATE TABLE {name}.facts (id INT, v VARCHAR(10))")).await?;
    admin.query_drop(format!("INSERT INTO {name}.facts VALUES (1, 'one'), (2, 'two')")).await?;
    Ok(Db { opts, admin, name, users: Vec::new() })
}

impl Db {
    /// A user `outpost_priv_<suffix>` (empty password) with `grants` (`{u}` is the
    /// user, `{db}` the database).
    async fn user(&mut self, suffix: &str, grants: &[&str]) -> Result<String> {
        let user = format!("outpost_priv_{suffix}_{}", &self.name[self.name.len() - 6..]);
        self.admin.query_drop(format!("CREATE USER '{user}'@'%'")).await?;
        self.users.push(format!("'{user}'@'%'"));
        for g in grants {
            self.admin.query_drop(g.replace("{u}", &format!("'{user}'@'%'")).replace("{db}", &self.name)).await?;
        }
        Ok(user)
    }

    fn connector(&self, user: &str, allow_privileged: bool, pool_size: usize) -> MysqlConnector {
        MysqlConnector::new(ServerSettings {
            host: self.opts.ip_or_hostname().to_owned(),
            port: self.opts.tcp_port(),
            database: self.name.clone(),
            user: user.to_owned(),
            password: if user == self.root() { self.opts.pass().map(|p| p.to_owned().into()) } else { None },
            tls_ca: None,
            pool_size,
            allow_privileged,
        })
        .expect("connector")
    }

    fn root(&self) -> &str {
        self.opts.user().unwrap_or("root")
    }

    fn canary(&self) -> PathBuf {
        format!("/tmp/outpost-priv-canary-{}-outfile", self.name).into()
    }

    /// The hostile jobs: a server file read, and a file written.
    fn hostile(&self) -> Vec<String> {
        vec![
            "SELECT LOAD_FILE('/etc/passwd') AS f".to_owned(),
            format!("SELECT id FROM {}.facts INTO OUTFILE '{}'", self.name, self.canary().display()),
        ]
    }

    async fn drop_now(mut self) -> Result<()> {
        for u in &self.users {
            self.admin.query_drop(format!("DROP USER IF EXISTS {u}")).await?;
        }
        self.admin.query_drop(format!("DROP DATABASE {}", self.name)).await?;
        Ok(())
    }
}

fn limits() -> QueryLimits {
    QueryLimits::new(100, Duration::from_secs(10))
}

fn has_server_file(rs: &outpost_agent::resultset::ResultSet) -> bool {
    format!("{:?}", rs.rows).contains("root:x:0:0")
}

#[tokio::test]
async fn root_is_refused_naming_its_grants_and_its_hostile_jobs_read_and_write_nothing() -> Result<()> {
    let db = database("root").await?;
    let my = db.connector(db.root(), false, 1);
    for sql in db.hostile() {
        match my.query(sql.clone(), vec![], limits()).await {
            Err(e @ QueryError::PrivilegedRole { .. }) => {
                assert_eq!(e.code(), "privileged_role");
                let text = e.to_string();
                assert!(text.contains("ALL PRIVILEGES on *.*") && text.contains("GRANT OPTION on *.*"), "{text}");
            }
            other => panic!("{sql}: expected privileged_role, got {other:?}"),
        }
    }
    assert!(!db.canary().exists(), "INTO OUTFILE wrote on the server");

    // With allow_privileged: true the hole is real: root reads /etc/passwd. This is why
    // `config audit` says HIGH. INTO OUTFILE stays refused (it returns no rows).
    let allowed = db.connector(db.root(), true, 1);
    let rs = allowed.query(db.hostile()[0].clone(), vec![], limits()).await?;
    assert!(has_server_file(&rs), "root's LOAD_FILE read the server's file");
    let err = allowed.query(db.hostile()[1].clone(), vec![], limits()).await;
    assert!(matches!(err, Err(QueryError::NotReadOnly { .. })), "{err:?}");
    assert!(!db.canary().exists(), "INTO OUTFILE wrote on the server");
    db.drop_now().await
}

#[tokio::test]
async fn a_select_only_user_is_accepted_and_gets_no_server_file() -> Result<()> {
    let mut db = database("ro").await?;
    let reader = db.user("ro", &["GRANT SELECT ON {db}.* TO {u}"]).await?;
    let my = db.connector(&reader, false, 1);
    let rs = my.query(format!("SELECT id, v FROM {}.facts ORDER BY id", db.name), vec![], limits()).await?;
    assert_eq!(rs.rows.len(), 2, "the reader reads");
    let rs = my.query(db.hostile()[0].clone(), vec![], limits()).await?;
    assert_eq!(rs.rows[0][0], Value::Null, "LOAD_FILE without FILE gives NULL");
    let err = my.query(db.hostile()[1].clone(), vec![], limits()).await;
    assert!(err.is_err(), "{err:?}");
    assert!(!db.canary().exists(), "INTO OUTFILE wrote on the server");

    // FILE granted while the session is pooled is seen at the next check (a minute after
    // the last one; `recheck_role` brings it forward), on the pooled session.
    db.admin.query_drop(format!("GRANT FILE ON *.* TO '{reader}'@'%'")).await?;
    my.recheck_role();
    match my.query(db.hostile()[0].clone(), vec![], limits()).await {
        Err(QueryError::PrivilegedRole { privileges }) => assert_eq!(privileges, vec!["FILE on *.*".to_owned()]),
        other => panic!("expected privileged_role after the grant, got {other:?}"),
    }
    db.drop_now().await
}

#[tokio::test]
async fn each_grant_beyond_reading_is_named_directly_or_through_a_role() -> Result<()> {
    let mut db = database("names").await?;
    let role = format!("outpost_priv_role_{}", &db.name[db.name.len() - 6..]);
    db.admin.query_drop(format!("CREATE ROLE {role}")).await?;
    db.admin.query_drop(format!("GRANT DELETE ON {}.* TO {role}", db.name)).await?;
    let grant_role = format!("GRANT {role} TO {{u}}");
    let default_role = format!("SET DEFAULT ROLE {role} FOR {{u}}");
    let cases = [
        ("ins", vec!["GRANT SELECT, INSERT ON {db}.* TO {u}"], vec![format!("INSERT on `{}`.*", db.name)]),
        (
            "file",
            vec!["GRANT SELECT ON {db}.* TO {u}", "GRANT FILE, PROCESS ON *.* TO {u}"],
            vec!["FILE on *.*".to_owned(), "PROCESS on *.*".to_owned()],
        ),
        (
            "col",
            vec!["GRANT SELECT, UPDATE (v) ON {db}.facts TO {u}"],
            vec![format!("UPDATE on `{}`.`facts`", db.name)],
        ),
        (
            "opt",
            vec!["GRANT SELECT ON {db}.* TO {u} WITH GRANT OPTION"],
            vec![format!("GRANT OPTION on `{}`.*", db.name)],
        ),
        (
            "viarole",
            vec!["GRANT SELECT ON {db}.* TO {u}", grant_role.as_str(), default_role.as_str()],
            vec![format!("DELETE on `{}`.*", db.name)],
        ),
    ];
    for (suffix, grants, want) in cases {
        let user = db.user(suffix, &grants).await?;
        match db.connector(&user, false, 1).query("SELECT 1 AS one".into(), vec![], limits()).await {
            Err(QueryError::PrivilegedRole { privileges }) => assert_eq!(privileges, want, "{suffix}"),
            other => panic!("{suffix}: expected privileged_role, got {other:?}"),
        }
        // Allowed, the same user is used.
        db.connector(&user, true, 1).query("SELECT 1 AS one".into(), vec![], limits()).await?;
    }
    db.admin.query_drop(format!("DROP ROLE {role}")).await?;
    db.drop_now().await
}

#[tokio::test]
async fn a_job_leaves_no_named_lock_or_user_variable_on_its_pooled_session() -> Result<()> {
    let mut db = database("reset").await?;
    let reader = db.user("reset", &["GRANT SELECT ON {db}.* TO {u}"]).await?;
    let lock = format!("outpost_priv_lock_{}", db.name);
    // One session: both jobs run on it.
    let my = db.connector(&reader, false, 1);
    let first = my
        .query(
            format!("SELECT GET_LOCK('{lock}', 0) AS l, @outpost_v := 5 AS v, CONNECTION_ID() AS id"),
            vec![],
            limits(),
        )
        .await?;
    assert_eq!(first.rows[0][0], Value::Int(1), "the job took the lock");
    let free: Option<i64> = db.admin.query_first(format!("SELECT IS_FREE_LOCK('{lock}')")).await?;
    assert_eq!(free, Some(1), "the job's named lock outlived it");
    let next = my.query("SELECT @outpost_v AS v, CONNECTION_ID() AS id".into(), vec![], limits()).await?;
    assert_eq!(next.rows[0][1], first.rows[0][2], "the same pooled session");
    assert_eq!(next.rows[0][0], Value::Null, "the user variable outlived the job");
    db.drop_now().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_root_keeps_serving_and_a_reload_fixes_it() -> Result<()> {
    let mut db = database("e2e").await?;
    let reader = db.user("agent", &["GRANT SELECT ON {db}.* TO {u}"]).await?;
    let conn = |name: &str, user: &str, extra: &str| {
        format!(
            "  {name}:\n    kind: mysql\n    host: {}\n    port: {}\n    database: {}\n    user: {user}\n    \
             tls: disable\n{extra}",
            db.opts.ip_or_hostname(),
            db.opts.tcp_port(),
            db.name
        )
    };
    let config = |root_user: &str| {
        format!(
            "connections:\n{}{}{}",
            conn("root", root_user, ""),
            conn("reader", &reader, ""),
            conn("allowed", db.root(), "    allow_privileged: true\n")
        )
    };
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &config(db.root())).await?;
    agent.process()?.wait_for_log("Jobs on this connection are refused", Duration::from_secs(30))?;
    let job = |connection: &str, sql: &str| {
        serde_json::json!({
            "agent": "edge-1", "connection": connection, "sql": sql,
            "render": { "kind": "table", "format": "json" }
        })
    };
    for sql in db.hostile() {
        let id = cp.dispatch(job("root", &sql)).await?;
        let (status, body) = cp.wait_result(&id).await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!((status, v["reason"].as_str()), (409, Some("privileged_role")), "{sql}: {body}");
        assert!(v["message"].as_str().unwrap_or_default().contains("ALL PRIVILEGES on *.*"), "{body}");
    }
    // The reader's LOAD_FILE answers NULL: no server file in the answer.
    let id = cp.dispatch(job("reader", &db.hostile()[0])).await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("root:x:0:0"), "{body}");
    let id = cp.dispatch(job("allowed", "SELECT 1 AS one")).await?;
    assert_eq!(cp.wait_result(&id).await?.0, 200);
    assert!(!db.canary().exists(), "INTO OUTFILE wrote on the server");

    let (code, out, _) = agent.cli(&["config", "audit"], None, &[])?;
    assert_eq!(code, 1, "a HIGH finding fails the audit: {out}");
    assert!(out.contains("[HIGH] connections.allowed.allow_privileged"), "{out}");
    // connections test: root refused naming its grants, the reader reached read-only.
    let (code, out, err) = agent.cli(&["connections", "test"], None, &[])?;
    assert_eq!(code, 1, "{out}{err}");
    let line = |name: &str| out.lines().find(|l| l.starts_with(&format!("{name} (mysql "))).unwrap_or_default();
    assert!(line("root").contains("FAILED") && line("root").ends_with("(privileged_role)"), "{out}");
    let r = line("reader");
    assert!(r.contains(": OK — ") && r.contains("MariaDB") && r.contains(&format!("user {reader}@")), "{out}");
    assert!(r.contains("TLS none") && r.contains("read-only transaction"), "{out}");

    std::fs::write(&agent.config, format!("state_dir: {}\n{}", agent.state_dir.display(), config(&reader)))?;
    agent.process()?.signal("HUP")?;
    agent.process()?.wait_for_log("Reloaded agent.yaml", Duration::from_secs(30))?;
    let id = cp.dispatch(job("root", &format!("SELECT count(*) AS n FROM {}.facts", db.name))).await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "after the reload: {body}");
    agent.stop()?;
    db.drop_now().await
}
