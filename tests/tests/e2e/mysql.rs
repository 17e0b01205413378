//! The MySQL / MariaDB connector against a real server (`OUTPOST_TEST_MYSQL_URL`, default
//! the local MariaDB): types round-trip, every write is refused, a timeout leaves nothing
//! in the process list, the row cap truncates, `$n` parameters bind as data, and a
//! stacked bar chart runs end to end through the control plane on a MariaDB connection.
//!
//! Each test works in its own database and drops it. If the server cannot be reached, the
//! test fails with how to start it; it never skips.

use std::time::Duration;

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable as _;
use outpost_agent::connectors::mysql::MysqlConnector;
use outpost_agent::connectors::{QueryError, QueryLimits, ServerSettings};
use outpost_agent::resultset::Value;
use outpost_protocol::Param;

struct Db {
    opts: mysql_async::Opts,
    admin: mysql_async::Conn,
    name: String,
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
    let name = format!("outpost_{tag}_{}", &outpost_protocol::ids::new_nonce()[..12]);
    admin.query_drop(format!("CREATE DATABASE {name}")).await?;
    admin.query_drop(format!("USE {name}")).await?;
    Ok(Db { opts, admin, name })
}

impl Db {
    fn connector(&self, pool_size: usize) -> MysqlConnector {
        MysqlConnector::new(ServerSettings {
            host: self.opts.ip_or_hostname().to_owned(),
            port: self.opts.tcp_port(),
            database: self.name.clone(),
            user: self.opts.user().unwrap_or("root").to_owned(),
            password: self.opts.pass().map(|p| p.to_owned().into()),
            tls_ca: None,
            pool_size,
            // The test server's `root` is privileged (tests/tests/e2e/privileged_mysql.rs
            // tests the refusal).
            allow_privileged: true,
        })
        .expect("connector")
    }

    async fn drop_now(mut self) -> Result<()> {
        self.admin.query_drop(format!("DROP DATABASE {}", self.name)).await?;
        Ok(())
    }
}

fn limits(max_rows: usize, secs: u64) -> QueryLimits {
    QueryLimits::new(max_rows, Duration::from_secs(secs))
}

#[tokio::test]
async fn types_round_trip_and_parameters_bind_as_data() -> Result<()> {
    let mut db = database("types").await?;
    db.admin
        .query_drop(
            "CREATE TABLE every (
               ti TINYINT, si SMALLINT, i INT, bi BIGINT, ubi BIGINT UNSIGNED, dec_ DECIMAL(40,20),
               f FLOAT, d DOUBLE, vc VARCHAR(40), tx TEXT, b BOOLEAN, dt DATE, tm TIME(6),
               dtm DATETIME(6), ts TIMESTAMP(6) NULL, bl BLOB, vb VARBINARY(8), e ENUM('calm','busy'),
               j JSON, nothing INT)",
        )
        .await?;
    db.admin
        .query_drop(
            "INSERT INTO every VALUES (-128, -32768, -2147483648, -9223372036854775808, 18446744073709551615,
               12345678901234567890.12345678901234567890, 1.5, 0.1, 'ünïcode ''quoted''', 'long text', TRUE,
               '1999-12-31', '23:59:58.123456', '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789',
               x'00ff', x'0102', 'busy', '{\"a\": [1, 2.5]}', NULL)",
        )
        .await?;
    let my = db.connector(2);
    let rs = my.query("SELECT * FROM every".into(), vec![], limits(10, 10)).await?;
    let leap = chrono::NaiveDate::from_ymd_opt(2024, 2, 29).context("date")?;
    let ts = leap.and_hms_milli_opt(12, 34, 56, 789).context("ts")?;
    let want = [
        Value::Int(-128),
        Value::Int(-32768),
        Value::Int(-2_147_483_648),
        Value::Int(i64::MIN),
        Value::Decimal("18446744073709551615".into()),
        Value::Decimal("12345678901234567890.12345678901234567890".into()),
        Value::Float(1.5),
        Value::Float(0.1),
        Value::Text("ünïcode 'quoted'".into()),
        Value::Text("long text".into()),
        Value::Int(1),
        Value::Date(chrono::NaiveDate::from_ymd_opt(1999, 12, 31).context("date")?),
        Value::Time(chrono::NaiveTime::from_hms_micro_opt(23, 59, 58, 123_456).context("time")?),
        Value::Timestamp(ts),
        Value::Timestamp(ts),
        Value::Bytes(vec![0x00, 0xff]),
        Value::Bytes(vec![0x01, 0x02]),
        Value::Text("busy".into()),
        // MariaDB's JSON is LONGTEXT with a check; the text comes back as stored.
        Value::Text("{\"a\": [1, 2.5]}".into()),
        Value::Null,
    ];
    assert_eq!(rs.columns.len(), want.len(), "{:?}", rs.columns);
    for ((column, got), want) in rs.columns.iter().zip(&rs.rows[0]).zip(&want) {
        assert_eq!(got, want, "column {column}");
    }

    let rs = my
        .query(
            "SELECT $2 AS b, $1 + 1 AS a, CONCAT('$1 is ', $1) AS c, $3 AS inj".into(),
            vec![Param::Int(41), Param::Text("second".into()), Param::Text("'; DROP TABLE every; --".into())],
            limits(10, 10),
        )
        .await?;
    assert_eq!(rs.rows[0][0], Value::Text("second".into()));
    assert_eq!(rs.rows[0][1], Value::Int(42));
    assert_eq!(rs.rows[0][2], Value::Text("$1 is 41".into()));
    assert_eq!(rs.rows[0][3], Value::Text("'; DROP TABLE every; --".into()));
    let err = my.query("SELECT $1, $2".into(), vec![Param::Int(1)], limits(1, 10)).await;
    assert!(matches!(err, Err(QueryError::Param { .. })), "{err:?}");
    db.drop_now().await
}

#[tokio::test]
async fn the_server_refuses_every_write_and_nothing_changes() -> Result<()> {
    let mut db = database("ro").await?;
    db.admin.query_drop("CREATE TABLE acct (id INT PRIMARY KEY, v INT) ENGINE=InnoDB").await?;
    db.admin.query_drop("INSERT INTO acct VALUES (1, 10), (2, 20)").await?;
    let outfile = format!("/tmp/{}.out", db.name);
    // root may do anything: only the read-only transaction and the rows-only rule stand in the way.
    let my = db.connector(2);
    for sql in [
        "INSERT INTO acct VALUES (9, 90)".to_owned(),
        "UPDATE acct SET v = 0".into(),
        "DELETE FROM acct".into(),
        "REPLACE INTO acct VALUES (1, 0)".into(),
        "CREATE TABLE more (x INT)".into(),
        "DROP TABLE acct".into(),
        "CREATE TEMPORARY TABLE tmp (x INT)".into(),
        "SELECT * FROM acct FOR UPDATE".into(),
        format!("SELECT * FROM acct INTO OUTFILE '{outfile}'"),
        "SET GLOBAL max_connections = 1".into(),
    ] {
        let err = my.query(sql.clone(), vec![], limits(10, 10)).await;
        assert!(matches!(&err, Err(QueryError::NotReadOnly { .. })), "{sql}: {err:?}");
    }
    assert!(!std::path::Path::new(&outfile).exists(), "INTO OUTFILE wrote a file");
    let rows: Vec<(i32, i32)> = db.admin.query("SELECT id, v FROM acct ORDER BY id").await?;
    assert_eq!(rows, vec![(1, 10), (2, 20)], "the table is unchanged");
    let tables: Vec<String> = db.admin.query("SHOW TABLES").await?;
    assert_eq!(tables, vec!["acct".to_owned()], "no table was created or dropped");
    let rs = my.query("SELECT COUNT(*) FROM acct".into(), vec![], limits(10, 10)).await?;
    assert_eq!(rs.rows[0][0], Value::Int(2), "the pooled session still answers");
    db.drop_now().await
}

#[tokio::test]
async fn a_timeout_kills_the_query_on_the_server_and_the_row_cap_truncates() -> Result<()> {
    let mut db = database("timeout").await?;
    let my = db.connector(1);
    let marker = format!("outpost timeout probe {}", db.name);
    let started = std::time::Instant::now();
    let err = my.query(format!("SELECT SLEEP(60) AS s, '{marker}' AS m"), vec![], limits(10, 1)).await;
    assert!(matches!(err, Err(QueryError::Timeout { after_ms: 1000 })), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let running: Vec<i64> = db
        .admin
        .exec(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE CONCAT('%', ?, '%') AND ID <> CONNECTION_ID()",
            (marker.clone(),),
        )
        .await?;
    assert_eq!(running, vec![0], "the statement is gone from the process list");

    db.admin.query_drop("CREATE TABLE big (n INT PRIMARY KEY)").await?;
    db.admin
        .query_drop("INSERT INTO big SELECT seq FROM seq_1_to_100000")
        .await
        .or_else(|_| Ok::<(), mysql_async::Error>(()))?;
    let count: Vec<i64> = db.admin.query("SELECT COUNT(*) FROM big").await?;
    if count[0] == 0 {
        // MySQL has no sequence engine: fill with a recursive CTE.
        db.admin
            .query_drop(
                "INSERT INTO big WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100000) SELECT n FROM s",
            )
            .await?;
    }
    let rs = my.query("SELECT n FROM big ORDER BY n".into(), vec![], limits(2500, 30)).await?;
    assert_eq!((rs.rows.len(), rs.truncated), (2500, true));
    assert_eq!(rs.rows[2499][0], Value::Int(2500));
    let rs = my.query("SELECT n FROM big WHERE n <= 2500".into(), vec![], limits(2500, 30)).await?;
    assert_eq!((rs.rows.len(), rs.truncated), (2500, false), "exactly the cap is not truncated");
    db.drop_now().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stacked_bar_chart_runs_end_to_end_on_a_mariadb_connection() -> Result<()> {
    let mut db = database("e2e").await?;
    db.admin
        .query_drop(
            "CREATE TABLE sales (region VARCHAR(20), year INT, amount DECIMAL(10,2));
             INSERT INTO sales VALUES ('north', 2024, 10.50), ('north', 2025, 4.25), ('south', 2024, 7.00),
                                      ('south', 2025, 1.75), ('east', 2025, 3.00);",
        )
        .await?;
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &e2e_config(&db)).await?;
    let sql = "SELECT region, SUM(CASE WHEN year = $1 THEN amount ELSE 0 END) AS y2024, \
               SUM(CASE WHEN year = $2 THEN amount ELSE 0 END) AS y2025 FROM sales GROUP BY region ORDER BY region";
    let id = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": "shop", "sql": sql,
            "params": [{"type": "int", "value": 2024}, {"type": "int", "value": 2025}],
            "render": {"kind": "bar", "x": "region", "y": ["y2024", "y2025"], "stacked": true, "title": "Sales"}
        }))
        .await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "{body}");
    let doc = roxmltree::Document::parse(&body)?;
    let bars: Vec<(String, String, String)> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("bar"))
        .map(|n| {
            let a = |k| n.attribute(k).unwrap_or_default().to_owned();
            (a("data-label"), a("data-series"), a("data-value"))
        })
        .collect();
    let expected = [
        ("east", "y2024", "0.00"),
        ("east", "y2025", "3.00"),
        ("north", "y2024", "10.50"),
        ("north", "y2025", "4.25"),
        ("south", "y2024", "7.00"),
        ("south", "y2025", "1.75"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(bars, expected);
    // Stacked: each region's two bars share one x.
    let xs: Vec<&str> =
        doc.descendants().filter(|n| n.attribute("class") == Some("bar")).filter_map(|n| n.attribute("x")).collect();
    assert!(xs[0] == xs[1] && xs[2] == xs[3] && xs[0] != xs[2], "{xs:?}");
    agent.stop()?;
    let records = agent.audit_records()?;
    let last_job = records.iter().rev().find(|r| r["event"] == "job");
    assert_eq!(last_job.map(|r| r["outcome"].clone()), Some(serde_json::json!("succeeded")));
    db.drop_now().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_share_at_most_pool_size_sessions() -> Result<()> {
    let db = database("pool").await?;
    let my = db.connector(2);
    // Eight queries at once on a pool of two: all answer, from two server sessions.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let my = my.clone();
            tokio::spawn(async move {
                my.query("SELECT CONNECTION_ID() AS id, SLEEP(0.05) AS s".into(), vec![], limits(1, 10)).await
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for h in handles {
        let rs = h.await??;
        ids.insert(format!("{:?}", rs.rows[0][0]));
    }
    assert!(!ids.is_empty() && ids.len() <= 2, "sessions used: {ids:?}");
    db.drop_now().await
}

#[tokio::test]
async fn a_session_the_server_killed_is_replaced() -> Result<()> {
    let mut db = database("killed").await?;
    let my = db.connector(1);
    let first = my.query("SELECT CONNECTION_ID() AS id".into(), vec![], limits(1, 10)).await?;
    let Value::Int(id) = first.rows[0][0] else { panic!("connection id {:?}", first.rows[0][0]) };
    db.admin.query_drop(format!("KILL {id}")).await?;
    let again = my.query("SELECT CONNECTION_ID() AS id".into(), vec![], limits(1, 10)).await?;
    assert_ne!(again.rows[0][0], Value::Int(id), "a new session answered");
    db.drop_now().await
}

/// The agent's connection to the test database, as `root`: privileged, so it says
/// `allow_privileged: true` (tests/tests/e2e/privileged_mysql.rs tests the refusal).
fn e2e_config(db: &Db) -> String {
    format!(
        "connections:\n  shop:\n    kind: mysql\n    host: {}\n    port: {}\n    database: {}\n    user: {}\n    \
         tls: disable\n    allow_privileged: true\n",
        db.opts.ip_or_hostname(),
        db.opts.tcp_port(),
        db.name,
        db.opts.user().unwrap_or("root"),
    )
}

/// Whether a statement containing `marker` is in the server's process list (not ours).
async fn in_process_list(admin: &mut mysql_async::Conn, marker: &str) -> Result<bool> {
    let n: Vec<i64> = admin
        .exec(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE CONCAT('%', ?, '%') AND ID <> CONNECTION_ID()",
            (marker,),
        )
        .await?;
    Ok(n.first().copied().unwrap_or(0) > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_through_the_api_is_killed_on_the_server() -> Result<()> {
    let db = database("cancel").await?;
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &e2e_config(&db)).await?;
    let marker = format!("outpost cancel probe {}", db.name);
    let id = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": "shop",
            "sql": format!("SELECT SLEEP(600) AS slept, '{marker}' AS marker"),
            "render": { "kind": "table", "format": "json" }
        }))
        .await?;
    let admin = tokio::sync::Mutex::new(mysql_async::Conn::new(db.opts.clone()).await?);
    outpost_e2e::eventually("the query runs on the server", Duration::from_secs(30), || async {
        in_process_list(&mut *admin.lock().await, &marker).await
    })
    .await?;
    let (status, answer) = cp.cancel(&id).await?;
    assert_eq!((status, answer["state"].as_str()), (202, Some("cancelling")), "{answer}");
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 409, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!((v["state"].as_str(), v["reason"].as_str()), (Some("cancelled"), Some("cancelled")), "{body}");
    outpost_e2e::eventually("the query is gone from the process list", Duration::from_secs(10), || async {
        Ok(!in_process_list(&mut *admin.lock().await, &marker).await?)
    })
    .await?;
    agent.stop()?;
    let records = agent.audit_records()?;
    let rec = records.iter().find(|r| r["job_id"] == id.as_str()).context("audit record")?;
    assert_eq!((&rec["outcome"], &rec["body_sha256"]), (&serde_json::json!("cancelled"), &serde_json::Value::Null));
    drop(admin);
    db.drop_now().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_mariadb_result_streams_into_a_downsampled_line_chart() -> Result<()> {
    let mut db = database("stream").await?;
    let rows = 200_000;
    db.admin.query_drop("CREATE TABLE series (t DATETIME PRIMARY KEY, v DOUBLE)").await?;
    // One spike, at row 123456: downsampling must keep it.
    db.admin
        .query_drop(format!(
            "INSERT INTO series SELECT TIMESTAMPADD(SECOND, seq, '2026-01-01'), \
             IF(seq = 123456, 1000, MOD(seq, 7)) FROM seq_1_to_{rows}"
        ))
        .await?;
    let root = tempfile::tempdir()?;
    let config = format!("{}\nlimits:\n  max_rows: 1000000\n", e2e_config(&db));
    let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
    let id = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": "shop", "sql": "SELECT t, v FROM series ORDER BY t",
            "render": { "kind": "line", "x": "t", "y": ["v"], "max_points": 1000 }
        }))
        .await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "{body}");
    let doc = roxmltree::Document::parse(&body)?;
    let plot = doc.descendants().find(|n| n.attribute("class") == Some("plot")).context("plot group")?;
    let y_max: f64 = plot.attribute("data-y-max").context("data-y-max")?.parse()?;
    assert!(y_max >= 1000.0, "the spike survived downsampling (y max {y_max})");
    let view = cp.job(&id).await?;
    assert_eq!(view["stats"]["rows_read"], rows, "{view}");
    let egress = view["stats"]["egress"].as_array().context("egress")?;
    assert!(egress.iter().any(|d| d["action"] == "downsampled"), "the downsampling is stated: {view}");
    agent.stop()?;
    db.drop_now().await
}
