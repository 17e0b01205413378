//! The PostgreSQL connector against a real server (`OUTPOST_TEST_PG_URL`, default the
//! local one): every type round-trips, every write is refused by the server, a timeout
//! leaves nothing running there, the row cap truncates, a killed session is replaced,
//! and a job runs end to end through the control plane on a PostgreSQL connection.
//!
//! Each test works in its own schema and drops it. If the server cannot be reached, the
//! test fails with how to start it; it never skips.

use std::time::Duration;

use anyhow::{Context, Result};
use outpost_agent::connectors::postgres::PostgresConnector;
use outpost_agent::connectors::{QueryError, QueryLimits, ServerSettings};
use outpost_agent::resultset::Value;
use outpost_protocol::Param;

use outpost_e2e::pg::{schema, server, Server};

fn connector(s: &Server, pool_size: usize) -> PostgresConnector {
    PostgresConnector::new(ServerSettings {
        host: s.host(),
        port: s.port(),
        database: s.database().to_owned(),
        user: s.user().to_owned(),
        password: s.config.get_password().map(|p| String::from_utf8_lossy(p).into_owned().into()),
        tls_ca: None,
        pool_size,
        // The test server's `postgres` user is a superuser (tests/tests/e2e/privileged_pg.rs
        // tests the refusal).
        allow_privileged: true,
    })
    .expect("connector")
}

fn limits(max_rows: usize, secs: u64) -> QueryLimits {
    QueryLimits::new(max_rows, Duration::from_secs(secs))
}

#[tokio::test]
async fn every_type_round_trips_exactly_and_parameters_are_typed() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "types").await?;
    let t = &db.name;
    db.admin
        .batch_execute(&format!(
            "CREATE TYPE {t}.mood AS ENUM ('calm', 'busy');
             CREATE TABLE {t}.every (
               i2 int2, i4 int4, i8 int8, n numeric, r4 float4, r8 float8, tx text, vc varchar(20),
               b bool, d date, tm time, ts timestamp, tz timestamptz, u uuid, j json, jb jsonb, by bytea,
               m {t}.mood, nothing int4);
             INSERT INTO {t}.every VALUES (
               -32768, 2147483647, -9223372036854775808,
               123456789012345678901234567890.123456789012345678901234567890, 1.5, 0.1,
               'ünïcode ''quoted''', 'short', true, '1999-12-31', '23:59:58.123456',
               '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789+02', '00112233-4455-6677-8899-aabbccddeeff',
               '{{\"a\": [1, 2.5]}}', '{{\"b\": null}}', '\\x00ff', 'busy', NULL);"
        ))
        .await?;
    let pg = connector(&s, 2);
    let rs = pg.query(format!("SELECT * FROM {t}.every"), vec![], limits(10, 10)).await?;
    let date = chrono::NaiveDate::from_ymd_opt(1999, 12, 31).context("date")?;
    let leap = chrono::NaiveDate::from_ymd_opt(2024, 2, 29).context("date")?;
    let ts = leap.and_hms_milli_opt(12, 34, 56, 789).context("ts")?;
    let want = vec![
        Value::Int(-32768),
        Value::Int(2_147_483_647),
        Value::Int(i64::MIN),
        Value::Decimal("123456789012345678901234567890.123456789012345678901234567890".into()),
        Value::Float(1.5),
        Value::Float(0.1),
        Value::Text("ünïcode 'quoted'".into()),
        Value::Text("short".into()),
        Value::Bool(true),
        Value::Date(date),
        Value::Time(chrono::NaiveTime::from_hms_micro_opt(23, 59, 58, 123_456).context("time")?),
        Value::Timestamp(ts),
        Value::TimestampTz((ts - chrono::TimeDelta::hours(2)).and_utc()),
        Value::Uuid(*b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff"),
        Value::Json(r#"{"a": [1, 2.5]}"#.into()),
        Value::Json(r#"{"b": null}"#.into()),
        Value::Bytes(vec![0x00, 0xff]),
        Value::Text("busy".into()),
        Value::Null,
    ];
    assert_eq!(rs.columns.len(), want.len());
    for ((column, got), want) in rs.columns.iter().zip(&rs.rows[0]).zip(&want) {
        assert_eq!(got, want, "column {column}");
    }

    // Parameters are bound in the type the server infers, never spliced into the SQL.
    let rs = pg
        .query(
            "SELECT $1::int4 + 1 AS a, $2::numeric * 2 AS b, $3::date AS c, $4::uuid AS d, $5::text AS e, $6::float8 AS f"
                .into(),
            vec![
                Param::Int(41),
                Param::Text("0.000000000000000000001".into()),
                Param::Text("2024-01-31".into()),
                Param::Text("00112233-4455-6677-8899-aabbccddeeff".into()),
                Param::Text("'; DROP TABLE x; --".into()),
                Param::Int(3),
            ],
            limits(10, 10),
        )
        .await?;
    assert_eq!(rs.rows[0][0], Value::Int(42));
    assert_eq!(rs.rows[0][1], Value::Decimal("0.000000000000000000002".into()));
    assert_eq!(rs.rows[0][2], Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 1, 31).context("d")?));
    assert_eq!(rs.rows[0][4], Value::Text("'; DROP TABLE x; --".into()));
    assert_eq!(rs.rows[0][5], Value::Float(3.0));
    let err = pg.query("SELECT $1::int4".into(), vec![Param::Text("x".into())], limits(1, 10)).await;
    assert!(matches!(&err, Err(QueryError::Param { index: 1, reason }) if reason.contains("int4")), "{err:?}");
    let err = pg.query("SELECT $1::int2".into(), vec![Param::Int(70_000)], limits(1, 10)).await;
    assert!(matches!(&err, Err(QueryError::Param { index: 1, .. })), "{err:?}");
    let err = pg.query("SELECT $1::int4, $2::int4".into(), vec![Param::Int(1)], limits(1, 10)).await;
    assert!(matches!(&err, Err(QueryError::Param { .. })), "{err:?}");

    // A type the agent cannot carry is named with its column, before any row is read.
    let err = pg.query("SELECT 1 AS ok, interval '1 day' AS span".into(), vec![], limits(1, 10)).await;
    match err {
        Err(QueryError::UnsupportedType { column, type_name }) => {
            assert_eq!((column.as_str(), type_name.as_str()), ("span", "interval"))
        }
        other => panic!("expected unsupported_type, got {other:?}"),
    }
    db.drop_now().await
}

#[tokio::test]
async fn the_server_refuses_every_write_and_nothing_changes() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "ro").await?;
    let t = &db.name;
    db.admin
        .batch_execute(&format!(
            "CREATE TABLE {t}.acct (id int PRIMARY KEY, v int);
             INSERT INTO {t}.acct VALUES (1, 10), (2, 20);
             CREATE SEQUENCE {t}.seq;
             CREATE FUNCTION {t}.sneaky() RETURNS int LANGUAGE sql AS 'INSERT INTO {t}.acct VALUES (3, 30) RETURNING 1';"
        ))
        .await?;
    // The test user is a superuser: only the read-only transaction stands in the way.
    let pg = connector(&s, 2);
    for sql in [
        format!("INSERT INTO {t}.acct VALUES (9, 90)"),
        format!("UPDATE {t}.acct SET v = 0"),
        format!("DELETE FROM {t}.acct"),
        format!("CREATE TABLE {t}.more (x int)"),
        format!("DROP TABLE {t}.acct"),
        format!("SELECT * FROM {t}.acct FOR UPDATE"),
        format!("SELECT {t}.sneaky()"),
        format!("SELECT nextval('{t}.seq')"),
        format!("WITH d AS (DELETE FROM {t}.acct RETURNING *) SELECT * FROM d"),
        format!("COPY (SELECT 1) TO PROGRAM 'touch /tmp/{t}'"),
        format!("COPY {t}.acct TO '/tmp/{t}'"),
        format!("DO $$ BEGIN EXECUTE 'COPY (SELECT 1) TO PROGRAM ''touch /tmp/{t}'''; END $$"),
    ] {
        let err = pg.query(sql.clone(), vec![], limits(10, 10)).await;
        assert!(matches!(&err, Err(QueryError::NotReadOnly { .. })), "{sql}: {err:?}");
    }
    assert!(!std::path::Path::new(&format!("/tmp/{t}")).exists(), "COPY TO PROGRAM ran");
    let multi = pg.query(format!("SELECT 1; DELETE FROM {t}.acct"), vec![], limits(10, 10)).await;
    assert!(matches!(multi, Err(QueryError::Database { .. } | QueryError::Server(_))), "{multi:?}");
    let rows = db.admin.query(&format!("SELECT id, v FROM {t}.acct ORDER BY id"), &[]).await?;
    let got: Vec<(i32, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![(1, 10), (2, 20)], "the table is unchanged");
    // The pooled session still works, and is read-only again for the next job.
    let rs = pg.query(format!("SELECT count(*) FROM {t}.acct"), vec![], limits(10, 10)).await?;
    assert_eq!(rs.rows[0][0], Value::Int(2));
    db.drop_now().await
}

#[tokio::test]
async fn a_timeout_cancels_the_query_on_the_server_and_the_row_cap_truncates() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "timeout").await?;
    let pg = connector(&s, 1);
    let marker = format!("outpost timeout probe {}", db.name);
    let started = std::time::Instant::now();
    let err = pg.query(format!("SELECT pg_sleep(60), '{marker}' AS marker"), vec![], limits(10, 1)).await;
    assert!(matches!(err, Err(QueryError::Timeout { after_ms: 1000 })), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let running = db
        .admin
        .query(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
            &[&marker],
        )
        .await?;
    assert_eq!(running[0].get::<_, i64>(0), 0, "the statement is gone from pg_stat_activity");

    // The cap: the server sends at most cap + 1 rows; the result says it was cut.
    let rs = pg.query("SELECT g FROM generate_series(1, 1000000) g".into(), vec![], limits(2500, 30)).await?;
    assert_eq!((rs.rows.len(), rs.truncated), (2500, true));
    assert_eq!(rs.rows[2499][0], Value::Int(2500));
    let rs = pg.query("SELECT g FROM generate_series(1, 2500) g".into(), vec![], limits(2500, 30)).await?;
    assert_eq!((rs.rows.len(), rs.truncated), (2500, false), "exactly the cap is not truncated");
    db.drop_now().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_share_at_most_pool_size_sessions() -> Result<()> {
    let s = server()?;
    let pg = connector(&s, 2);
    // Eight queries at once on a pool of two: all answer, from two server sessions.
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let pg = pg.clone();
            tokio::spawn(async move {
                pg.query("SELECT pg_backend_pid(), pg_sleep(0.05)::text".into(), vec![], limits(1, 10)).await
            })
        })
        .collect();
    let mut pids = std::collections::BTreeSet::new();
    for h in handles {
        let rs = h.await??;
        pids.insert(format!("{:?}", rs.rows[0][0]));
    }
    assert!(!pids.is_empty() && pids.len() <= 2, "sessions used: {pids:?}");
    Ok(())
}

#[tokio::test]
async fn a_session_the_server_killed_is_replaced() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "pool").await?;
    let pg = connector(&s, 1);
    let first = pg.query("SELECT pg_backend_pid()".into(), vec![], limits(1, 10)).await?;
    let Value::Int(pid) = first.rows[0][0] else { panic!("pid") };
    db.admin.query("SELECT pg_terminate_backend($1)", &[&i32::try_from(pid)?]).await?;
    let again = pg.query("SELECT pg_backend_pid()".into(), vec![], limits(1, 10)).await?;
    assert_ne!(again.rows[0][0], Value::Int(pid), "a new session answered");
    db.drop_now().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_end_to_end_on_a_postgres_connection() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "e2e").await?;
    let t = &db.name;
    db.admin
        .batch_execute(&format!(
            "CREATE TABLE {t}.sales (region text, amount numeric(12,2));
             INSERT INTO {t}.sales VALUES ('north', 10.25), ('north', 4.75), ('south', 7.10);"
        ))
        .await?;
    let root = tempfile::tempdir()?;
    let config = format!("connections:\n{}", s.connection_yaml("warehouse"));
    let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
    let id = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": "warehouse",
            "sql": format!("SELECT region, sum(amount) AS total FROM {t}.sales WHERE amount > $1 GROUP BY region ORDER BY region"),
            "params": [{ "type": "float", "value": 5.0 }],
            "render": { "kind": "table", "format": "json" }
        }))
        .await?;
    let (status, body) = cp.wait_result(&id).await?;
    assert_eq!(status, 200, "{body}");
    let table: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(table["rows"], serde_json::json!([["north", "10.25"], ["south", "7.10"]]), "{body}");
    agent.stop()?;
    // The test logs in as a superuser, allowed by allow_privileged: the agent says so.
    assert!(agent.log_text().contains("allowed by allow_privileged: true"), "{}", agent.log_text());
    db.drop_now().await
}

/// Whether a statement containing `marker` is running on the server (other than ours).
async fn running_on_server(db: &outpost_e2e::pg::Schema, marker: &str) -> Result<bool> {
    let rows = db
        .admin
        .query(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
            &[&marker],
        )
        .await?;
    Ok(rows[0].get::<_, i64>(0) > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cancelled_through_the_api_stops_its_query_on_the_server() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "cancel").await?;
    let root = tempfile::tempdir()?;
    // One job at a time: the cancel must reach an agent whose only slot is busy (it
    // polls for cancels alone then), and the next job must start as soon as it frees.
    let config = format!("connections:\n{}limits:\n  max_concurrent_jobs: 1\n", s.connection_yaml("warehouse"));
    let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
    let marker = format!("outpost cancel probe {}", db.name);
    let id = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": "warehouse",
            "sql": format!("SELECT pg_sleep(600)::text AS slept, '{marker}' AS marker"),
            "render": { "kind": "table", "format": "json" }
        }))
        .await?;
    outpost_e2e::eventually("the query runs on the server", Duration::from_secs(30), || {
        running_on_server(&db, &marker)
    })
    .await?;
    let asked = std::time::Instant::now();
    let (status, answer) = cp.cancel(&id).await?;
    assert_eq!((status, answer["state"].as_str()), (202, Some("cancelling")), "{answer}");
    let (status, body) = cp.wait_result(&id).await?;
    let took = asked.elapsed();
    assert_eq!(status, 409, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!((v["state"].as_str(), v["reason"].as_str()), (Some("cancelled"), Some("cancelled")), "{body}");
    // Far sooner than the 600 s sleep or the agent's 30 s statement timeout.
    assert!(took < Duration::from_secs(15), "the cancel took {took:?}");
    outpost_e2e::eventually("the query is gone from pg_stat_activity", Duration::from_secs(10), || async {
        Ok(!running_on_server(&db, &marker).await?)
    })
    .await?;
    let view = cp.job(&id).await?;
    assert_eq!(view["state"], "cancelled", "{view}");
    assert!(view["cancel_requested_at"].is_i64(), "{view}");
    // A job that has ended cannot be cancelled; the answer says how it ended.
    let (status, answer) = cp.cancel(&id).await?;
    assert_eq!((status, answer["code"].as_str()), (409, Some("job_final")), "{answer}");

    // The agent goes on serving: the next job on the same connection succeeds.
    let next = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": "warehouse", "sql": "SELECT 42 AS answer",
            "render": { "kind": "scalar", "column": "answer" }
        }))
        .await?;
    let (status, body) = cp.wait_result(&next).await?;
    assert_eq!(status, 200, "{body}");

    // A job cancelled before its agent took it is never delivered.
    agent.stop()?;
    let queued = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": "warehouse", "sql": "SELECT 1 AS one",
            "render": { "kind": "scalar", "column": "one" }
        }))
        .await?;
    let (status, answer) = cp.cancel(&queued).await?;
    assert_eq!((status, answer["state"].as_str()), (200, Some("cancelled")), "{answer}");
    agent.start_connected()?;
    let after = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": "warehouse", "sql": "SELECT 2 AS two",
            "render": { "kind": "scalar", "column": "two" }
        }))
        .await?;
    let (status, body) = cp.wait_result(&after).await?;
    assert_eq!(status, 200, "{body}");
    agent.stop()?;
    let records = agent.audit_records()?;
    let of = |job: &str| records.iter().filter(|r| r["job_id"] == job).cloned().collect::<Vec<_>>();
    let cancelled = of(&id);
    assert_eq!(cancelled.len(), 1, "{records:?}");
    assert_eq!(
        (&cancelled[0]["outcome"], &cancelled[0]["reason"], &cancelled[0]["body_sha256"]),
        (&serde_json::json!("cancelled"), &serde_json::json!("cancelled"), &serde_json::Value::Null),
        "{cancelled:?}"
    );
    assert!(of(&queued).is_empty(), "a job cancelled in the queue reached the agent: {records:?}");
    assert_eq!(of(&after).len(), 1);
    db.drop_now().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_may_ask_for_a_shorter_timeout_but_never_a_longer_one_than_its_connection() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "jobtimeout").await?;
    let root = tempfile::tempdir()?;
    // `short` allows 2 s; `warehouse` keeps the agent's 30 s default.
    let config = format!(
        "connections:\n{}{}    query_timeout_secs: 2\n",
        s.connection_yaml("warehouse"),
        s.connection_yaml("short")
    );
    let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
    let refused = cp
        .api()?
        .post_json(
            "/v1/jobs",
            &serde_json::json!({
                "agent": "edge-1", "connection": "warehouse", "sql": "SELECT 1 AS one",
                "render": { "kind": "scalar", "column": "one" }, "timeout_secs": 0
            }),
        )
        .await?;
    assert_eq!(refused.status, 400, "{}", refused.text());
    let message = refused.json()?["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.starts_with("timeout_secs: "), "{message}");
    let mut ended = Vec::new();
    for (connection, asked, marker) in [("warehouse", 1, "asks 1"), ("short", 3600, "asks 3600")] {
        let marker = format!("{marker} {}", db.name);
        let started = std::time::Instant::now();
        let id = cp
            .dispatch(serde_json::json!({
                "agent": "edge-1", "connection": connection, "timeout_secs": asked,
                "sql": format!("SELECT pg_sleep(60)::text AS slept, '{marker}' AS marker"),
                "render": { "kind": "table", "format": "json" }
            }))
            .await?;
        let (status, body) = cp.wait_result(&id).await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!((status, v["reason"].as_str()), (409, Some("query_timeout")), "{body}");
        ended.push((connection, started.elapsed(), v["message"].as_str().unwrap_or_default().to_owned()));
        assert!(!running_on_server(&db, &marker).await?, "{marker} still runs on the server");
    }
    assert!(ended[0].2.contains("1000 ms"), "{ended:?}");
    assert!(ended[1].2.contains("2000 ms"), "the connection's 2 s caps the job's 3600 s: {ended:?}");
    assert!(ended.iter().all(|(_, took, _)| *took < Duration::from_secs(15)), "{ended:?}");
    agent.stop()?;
    db.drop_now().await
}
