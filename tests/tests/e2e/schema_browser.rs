//! The schema browser end to end (issue 23): a real control plane and agent, the
//! agent's SQLite sample database and the real PostgreSQL (`OUTPOST_TEST_PG_URL`) and
//! MariaDB (`OUTPOST_TEST_MYSQL_URL`) servers. `GET /v1/agents/{agent}/connections/
//! {connection}/schema` signs a catalog job, the agent reads its database's metadata as
//! the connection's role and within its egress policy (masked columns marked), and the
//! control plane keeps the answer: a second request makes no job, `?refresh=true` does,
//! and a user the connection is not shared with is refused before anything runs.
//! A database that cannot be reached fails the test; nothing is skipped. The console's
//! schema panel is driven in Debian's Chromium (tests/browser/schema.mjs).

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context as _, Result};
use outpost_e2e::client::{call, ok_json, user_with_token};
use outpost_e2e::pg::{schema, server};
use outpost_e2e::{control_plane_and_agent, start_pair};
use serde_json::Value;

const SCHEMA: &str = "/v1/agents/edge-1/connections";

/// How many jobs the API lists for the caller.
async fn job_count(api: &outpost_e2e::client::Api) -> Result<usize> {
    let v = ok_json(api, "GET", "/v1/jobs?limit=1000", None).await?;
    Ok(v["jobs"].as_array().map_or(0, Vec::len))
}

/// The table `schema.name` of a schema answer.
fn table<'a>(answer: &'a Value, schema: &str, name: &str) -> Option<&'a Value> {
    answer["tables"].as_array()?.iter().find(|t| t["schema"] == schema && t["name"] == name)
}

/// `(name, type, masked)` of a table's columns.
fn columns(t: &Value) -> Vec<(String, String, bool)> {
    t["columns"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                    (s("name"), s("type"), c["masked"].as_bool().unwrap_or(false))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the cache and refresh behaviour on `connection`, starting from an answer
/// just fetched: a second request is served without a job, a refresh makes one.
async fn cache_then_refresh(api: &outpost_e2e::client::Api, connection: &str, first: &Value) -> Result<()> {
    ensure!(first["cached"] == false, "the first answer comes from a job: {first}");
    let jobs = job_count(api).await?;
    let again = ok_json(api, "GET", &format!("{SCHEMA}/{connection}/schema"), None).await?;
    ensure!(again["cached"] == true && again["job_id"] == first["job_id"], "second answer not cached: {again}");
    ensure!(again["tables"] == first["tables"], "the cached catalog differs");
    ensure!(job_count(api).await? == jobs, "a cached answer made a job");
    let fresh = ok_json(api, "GET", &format!("{SCHEMA}/{connection}/schema?refresh=true"), None).await?;
    ensure!(fresh["cached"] == false && fresh["job_id"] != first["job_id"], "refresh made no new job: {fresh}");
    ensure!(job_count(api).await? == jobs + 1, "refresh should make exactly one job");
    let job = ok_json(api, "GET", &format!("/v1/jobs/{}", fresh["job_id"].as_str().unwrap_or_default()), None).await?;
    ensure!(job["state"] == "succeeded" && job["content_type"] == "application/json", "catalog job: {job}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_schema_is_browsed_through_a_catalog_job_cached_and_shared_only() -> Result<()> {
    let root = tempfile::tempdir()?;
    // `extra_limits` lands at the end of agent.yaml: a top-level egress section.
    let egress = "egress:\n  mask:\n    - column: orders.amount\n";
    let (cp, agent) = start_pair(root.path(), "edge-1", egress, &[]).await?;
    let admin = cp.api()?;

    let first = ok_json(&admin, "GET", &format!("{SCHEMA}/sample/schema"), None).await?;
    let orders = table(&first, "main", "orders").context("orders listed")?;
    assert_eq!(orders["kind"], "table");
    let rows = orders["row_estimate"].as_i64().context("sqlite counts rows")?;
    assert!(rows > 0, "row estimate {rows}");
    let cols = columns(orders);
    let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(names, ["id", "region", "month", "product", "quantity", "amount"]);
    assert!(cols.contains(&("amount".into(), "REAL".into(), true)), "amount is masked: {cols:?}");
    assert!(cols.iter().filter(|c| c.2).count() == 1, "only amount is masked: {cols:?}");
    let view = table(&first, "main", "monthly_revenue").context("the view is listed")?;
    assert_eq!((view["kind"].as_str(), view["row_estimate"].is_null()), (Some("view"), true));
    assert_eq!(first["truncated"], false);

    cache_then_refresh(&admin, "sample", &first).await?;

    // Requests that arrive together make one catalog job; the others take its answer.
    let jobs = job_count(&admin).await?;
    let path = format!("{SCHEMA}/sample/schema?refresh=true");
    let (a, b, c) = tokio::join!(
        ok_json(&admin, "GET", &path, None),
        ok_json(&admin, "GET", &path, None),
        ok_json(&admin, "GET", &path, None)
    );
    let ids: std::collections::BTreeSet<String> =
        [a?, b?, c?].iter().map(|v| v["job_id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(ids.len(), 1, "one job for three requests at once: {ids:?}");
    assert_eq!(job_count(&admin).await?, jobs + 1);

    // The catalog left through the agent's ledger like any result.
    let recs = agent.audit_records()?;
    let catalog_recs: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "job" && r["outcome"] == "succeeded" && r["connection"] == "sample")
        .collect();
    assert_eq!(catalog_recs.len(), 3, "three catalog jobs in the agent's audit log");
    assert!(catalog_recs.iter().all(|r| r["body_sha256"].is_string() && r["bytes_sent"].as_u64() > Some(0)));

    // An editor whose connection is not shared: refused before the cache or a job.
    let ed = user_with_token(&admin, "ed", "editor").await?;
    let res = call(&ed, "GET", &format!("{SCHEMA}/sample/schema"), None).await?;
    assert_eq!(res.status, 403, "{}", res.text());
    assert!(res.text().contains("not shared with you"), "{}", res.text());
    let res = call(&ed, "GET", &format!("{SCHEMA}/sample/schema?refresh=true"), None).await?;
    assert_eq!(res.status, 403);
    assert_eq!(job_count(&ed).await?, 0);
    // Once shared, the same editor gets the kept catalog.
    let share = serde_json::json!({ "agent": "edge-1", "connection": "sample", "user": "ed" });
    ok_json(&admin, "POST", "/v1/shares", Some(&share)).await?;
    let shared = ok_json(&ed, "GET", &format!("{SCHEMA}/sample/schema"), None).await?;
    assert_eq!(shared["cached"], true);

    // Bad input is named.
    let res = call(&admin, "GET", &format!("{SCHEMA}/sample/schema?refresh=maybe"), None).await?;
    assert_eq!(res.status, 400, "{}", res.text());
    let res = call(&admin, "GET", &format!("{SCHEMA}/nope/schema"), None).await?;
    assert_eq!(res.status, 400, "{}", res.text());
    assert!(res.text().contains("no connection") || res.text().contains("nope"), "{}", res.text());

    // A stopped agent is offline: no job is made, and the kept catalog is still served.
    let mut agent = agent;
    agent.stop()?;
    let jobs = job_count(&admin).await?;
    let res = call(&admin, "GET", &format!("{SCHEMA}/sample/schema?refresh=true"), None).await?;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(res.json()?["code"], "agent_offline");
    assert_eq!(job_count(&admin).await?, jobs, "no job for an offline agent");
    assert_eq!(ok_json(&admin, "GET", &format!("{SCHEMA}/sample/schema"), None).await?["cached"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_lists_only_what_a_select_only_role_may_read() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "schemabr").await?;
    let t = &db.name;
    let role = format!("{t}_reader");
    db.admin
        .batch_execute(&format!(
            "CREATE TABLE {t}.customers (id int NOT NULL, name text, ssn text);
             INSERT INTO {t}.customers SELECT i, 'c' || i, '000-' || i FROM generate_series(1, 500) AS i;
             ANALYZE {t}.customers;
             CREATE TABLE {t}.orders (customer_id int, amount numeric(10,2));
             CREATE TABLE {t}.payroll (id int, salary numeric);
             CREATE TABLE {t}.partial (id int, secret text);
             CREATE VIEW {t}.big_customers AS SELECT id, name FROM {t}.customers WHERE id > 100;
             CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
             GRANT USAGE ON SCHEMA {t} TO {role};
             GRANT SELECT ON {t}.customers, {t}.orders, {t}.big_customers TO {role};
             GRANT SELECT (id) ON {t}.partial TO {role};"
        ))
        .await?;
    let result = async {
        // `locked`: the same database, whose policy keeps the catalog in.
        let config = format!(
            "connections:\n{}{}    egress:\n      allowed_kinds: [table, bar]\negress:\n  mask:\n    - column: {t}.customers.ssn\n",
            s.connection_yaml_as("warehouse", &role, false),
            s.connection_yaml_as("locked", &role, false),
        );
        let root = tempfile::tempdir()?;
        let (cp, _agent) = control_plane_and_agent(root.path(), &config).await?;
        let admin = cp.api()?;
        let first = ok_json(&admin, "GET", &format!("{SCHEMA}/warehouse/schema"), None).await?;
        let customers = table(&first, t, "customers").context("customers listed")?;
        assert_eq!(
            columns(customers),
            vec![
                ("id".into(), "integer".into(), false),
                ("name".into(), "text".into(), false),
                ("ssn".into(), "text".into(), true),
            ]
        );
        assert_eq!(customers["row_estimate"], 500, "reltuples after ANALYZE");
        assert_eq!(customers["columns"][0]["nullable"], false);
        let orders = table(&first, t, "orders").context("orders listed")?;
        assert_eq!(columns(orders)[1].1, "numeric(10,2)");
        assert!(table(&first, t, "payroll").is_none(), "a table the role cannot read is absent");
        let partial = table(&first, t, "partial").context("a column grant lists the table")?;
        assert_eq!(columns(partial), vec![("id".into(), "integer".into(), false)], "only the granted column");
        assert_eq!(table(&first, t, "big_customers").map(|v| v["kind"].clone()), Some("view".into()));
        assert!(
            first["tables"].as_array().is_some_and(|ts| ts.iter().all(|x| x["schema"] != "pg_catalog")),
            "no system schema"
        );
        cache_then_refresh(&admin, "warehouse", &first).await?;

        // The agent's policy has the last word: a signed catalog job is refused there.
        let res = call(&admin, "GET", &format!("{SCHEMA}/locked/schema"), None).await?;
        assert_eq!(res.status, 409, "{}", res.text());
        let v = res.json()?;
        assert_eq!((v["code"].as_str(), v["reason"].as_str()), (Some("catalog_failed"), Some("egress_refused")));
        assert!(v["message"].as_str().unwrap_or_default().contains("catalog results may not leave"), "{v}");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = db.admin.batch_execute(&format!("DROP SCHEMA {t} CASCADE; DROP ROLE IF EXISTS {role}")).await;
    result
}

/// tests/browser with its npm packages, and Debian's Chromium (or `OUTPOST_CHROMIUM`).
fn browser() -> Result<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    ensure!(
        dir.join("node_modules/playwright-core").is_dir(),
        "the browser tests need their npm packages: run `npm ci` in {}",
        dir.display()
    );
    let chromium =
        std::env::var_os("OUTPOST_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    ensure!(
        chromium.exists(),
        "no Chromium at {}: apt-get install chromium, or set OUTPOST_CHROMIUM",
        chromium.display()
    );
    Ok((dir, chromium))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_schema_panel_lists_tables_marks_masked_columns_and_inserts_names() -> Result<()> {
    let (dir, chromium) = browser()?;
    let root = tempfile::tempdir()?;
    let egress = "egress:\n  mask:\n    - column: orders.amount\n";
    let (cp, _agent) = start_pair(root.path(), "edge-1", egress, &[]).await?;
    let admin = cp.api()?;
    let password = "schema-pass-1234";
    let user = serde_json::json!({ "name": "ed", "role": "editor", "password": password });
    ok_json(&admin, "POST", "/v1/users", Some(&user)).await?;
    let share = serde_json::json!({ "agent": "edge-1", "connection": "sample", "user": "ed" });
    ok_json(&admin, "POST", "/v1/shares", Some(&share)).await?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    let out_path = root.path().join("schema.out.json");
    let cfg = serde_json::json!({
        "base_url": format!("https://localhost:{}", cp.api_addr.rsplit(':').next().unwrap_or_default()),
        "password": password,
        "chromium": chromium,
        "out": out_path,
        "screenshots": target.join("console-screenshots").join("schema"),
    });
    let cfg_path = root.path().join("schema.json");
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
    let out = std::process::Command::new("node")
        .arg(dir.join("schema.mjs"))
        .arg(&cfg_path)
        .current_dir(&dir)
        .output()
        .context("node (apt-get install nodejs)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    if !out.status.success() {
        bail!("schema.mjs failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let result: Value = serde_json::from_slice(&std::fs::read(&out_path)?)?;
    ensure!(result["ok"] == true, "{result}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_schema_lists_only_what_a_select_only_user_may_read() -> Result<()> {
    use mysql_async::prelude::Queryable as _;
    let url = std::env::var("OUTPOST_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let opts = mysql_async::Opts::from_url(&url).with_context(|| format!("OUTPOST_TEST_MYSQL_URL {url:?}"))?;
    let mut admin = mysql_async::Conn::new(opts.clone()).await.with_context(|| {
        format!(
            "MariaDB/MySQL is not reachable at {url}: start it with \
             `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd` or set OUTPOST_TEST_MYSQL_URL"
        )
    })?;
    let name = format!("outpost_schemabr_{}", &outpost_protocol::ids::new_nonce()[..12]);
    let reader = format!("schemabr_{}", &name[name.len() - 8..]);
    for stmt in [
        format!("CREATE DATABASE {name}"),
        format!("CREATE TABLE {name}.customers (id INT NOT NULL, email VARCHAR(80), ssn CHAR(11))"),
        format!("INSERT INTO {name}.customers VALUES (1, 'a@x', '000-00-0001'), (2, 'b@x', '000-00-0002')"),
        format!("ANALYZE TABLE {name}.customers"),
        format!("CREATE TABLE {name}.payroll (id INT, salary DECIMAL(10,2))"),
        format!("CREATE VIEW {name}.emails AS SELECT id, email FROM {name}.customers"),
        format!("CREATE USER '{reader}'@'%'"),
        format!("GRANT SELECT ON {name}.customers TO '{reader}'@'%'"),
        format!("GRANT SELECT ON {name}.emails TO '{reader}'@'%'"),
    ] {
        admin.query_drop(stmt).await?;
    }
    let result = async {
        let config = format!(
            "connections:\n  shop:\n    kind: mysql\n    host: {}\n    port: {}\n    database: {name}\n    user: {reader}\n    \
             tls: disable\n    egress:\n      mask:\n        - column: ssn\n",
            opts.ip_or_hostname(),
            opts.tcp_port(),
        );
        let root = tempfile::tempdir()?;
        let (cp, _agent) = control_plane_and_agent(root.path(), &config).await?;
        let admin_api = cp.api()?;
        let first = ok_json(&admin_api, "GET", &format!("{SCHEMA}/shop/schema"), None).await?;
        let customers = table(&first, &name, "customers").context("customers listed")?;
        assert_eq!(
            columns(customers),
            vec![
                ("id".into(), "int(11)".into(), false),
                ("email".into(), "varchar(80)".into(), false),
                ("ssn".into(), "char(11)".into(), true),
            ]
        );
        assert_eq!(customers["columns"][0]["nullable"], false);
        assert!(customers["row_estimate"].as_i64().is_some(), "TABLE_ROWS: {customers}");
        assert!(table(&first, &name, "payroll").is_none(), "a table the user cannot read is absent");
        assert_eq!(table(&first, &name, "emails").map(|v| v["kind"].clone()), Some("view".into()));
        assert!(
            first["tables"].as_array().is_some_and(|ts| ts.iter().all(|x| x["schema"] != "mysql")),
            "no system database"
        );
        cache_then_refresh(&admin_api, "shop", &first).await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = admin.query_drop(format!("DROP DATABASE {name}")).await;
    let _ = admin.query_drop(format!("DROP USER IF EXISTS '{reader}'@'%'")).await;
    result
}
