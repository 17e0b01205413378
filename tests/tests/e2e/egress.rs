//! The agent's egress policy, end to end: a real control plane, an enrolled agent and
//! the real PostgreSQL server (`OUTPOST_TEST_PG_URL`). Jobs ask for more than the policy
//! allows; what arrives at the control plane is parsed and compared with the data, and
//! every decision is checked in the job's report and in the agent's audit log.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use outpost_e2e::control_plane_and_agent;
use outpost_e2e::pg::{schema, server};
use outpost_e2e::ControlPlane;

/// Dispatches a job on `connection` and returns (status, headers, body, job view).
async fn run(
    cp: &ControlPlane,
    connection: &str,
    sql: &str,
    render: serde_json::Value,
) -> Result<(u16, HashMap<String, String>, String, serde_json::Value)> {
    let id = cp
        .dispatch(serde_json::json!({ "agent": "edge-1", "connection": connection, "sql": sql, "render": render }))
        .await?;
    let api = cp.api()?;
    let res = api.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
    let headers = ["outpost-egress", "outpost-truncated", "outpost-rows-read"]
        .iter()
        .filter_map(|h| res.header(h).map(|v| ((*h).to_owned(), v)))
        .collect();
    let view = api.get(&format!("/v1/jobs/{id}")).await?.json()?;
    Ok((res.status, headers, res.text(), view))
}

/// The `(action, rule)` pairs of a job view's egress decisions.
fn decisions(view: &serde_json::Value) -> Vec<(String, String)> {
    view["stats"]["egress"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| (d["action"].as_str().unwrap_or("").to_owned(), d["rule"].as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn pair(a: &str, r: &str) -> (String, String) {
    (a.to_owned(), r.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_policy_truncates_masks_and_refuses_whatever_the_job_asks() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "egress").await?;
    let t = &db.name;
    db.admin
        .batch_execute(&format!(
            "CREATE TABLE {t}.customers (id int, name text, email text, ssn text, salary numeric(10,2));
             INSERT INTO {t}.customers
               SELECT i, 'customer ' || i, 'c' || (i % 4) || '@example.org', '000-00-' || (1000 + i), 1000 + i * 10
               FROM generate_series(1, 12) AS i;
             CREATE TABLE {t}.orders (customer_email text, amount int);
             INSERT INTO {t}.orders VALUES ('c1@example.org', 5), ('c2@example.org', 7);
             CREATE TABLE {t}.metrics (at timestamptz, value float8);
             INSERT INTO {t}.metrics
               SELECT timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute', sin(i / 50.0) * 10
               FROM generate_series(0, 9999) AS i;"
        ))
        .await?;

    let root = tempfile::tempdir()?;
    // Defaults for every connection, then three connections on the same server with
    // their own rules on top.
    let config = format!(
        "egress:\n  max_rows: 5\n  mask:\n    - column: '*email*'\n      with: hash\n\
         connections:\n{}    egress:\n      allowed_kinds: [table, bar, line, pie, scalar]\n      mask:\n        - column: ssn\n        - column: salary\n\
         {}    egress:\n      allow_raw_table: false\n      max_points: 300\n\
         {}    egress:\n      max_bytes: 1024\n",
        s.connection_yaml("warehouse"),
        s.connection_yaml("charts"),
        s.connection_yaml("tiny"),
    );
    let (cp, mut agent) = control_plane_and_agent(root.path(), &config).await?;

    // 1. A table asks for 12 rows: 5 leave, emails are keyed hashes, ssn is ***.
    let sql = format!("SELECT id, name, email, ssn FROM {t}.customers ORDER BY id");
    let (status, headers, body, view) = run(&cp, "warehouse", &sql, serde_json::json!({"kind": "table"})).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers.get("outpost-egress").map(String::as_str), Some("masked,truncated"));
    assert_eq!(decisions(&view), [pair("masked", "mask"), pair("truncated", "max_rows")]);
    let table: serde_json::Value = serde_json::from_str(&body)?;
    let rows = table["rows"].as_array().context("rows")?;
    assert_eq!(rows.len(), 5);
    assert_eq!(table["truncated"], true);
    let hash_of = |row: usize| rows[row][2].as_str().unwrap_or_default().to_owned();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], i + 1);
        assert_eq!(row[3], "***");
        let h = row[2].as_str().context("email")?;
        assert!(h.starts_with("h:") && h.len() == 18 && !h.contains('@'), "{h}");
    }
    // Customers 1 and 5 share c1@example.org: equal values, equal hashes.
    assert_eq!(hash_of(0), hash_of(4));
    assert_ne!(hash_of(0), hash_of(1));
    assert!(!body.contains("example.org") && !body.contains("000-00-"), "{body}");

    // 2. Another query over another table: the masked values still join.
    let sql = format!("SELECT customer_email, amount FROM {t}.orders ORDER BY amount");
    let (status, _, body, _) = run(&cp, "warehouse", &sql, serde_json::json!({"kind": "table"})).await?;
    assert_eq!(status, 200, "{body}");
    let orders: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(orders["rows"][0][0].as_str(), Some(hash_of(0).as_str()), "{body}");
    assert_eq!(orders["rows"][1][0].as_str(), Some(hash_of(1).as_str()), "{body}");

    // 3. A kind the connection does not allow, and a masked column drawn to scale:
    //    refused before the query, with the reason.
    let (status, _, body, view) =
        run(&cp, "warehouse", &sql, serde_json::json!({"kind": "scatter", "x": "amount", "y": ["amount"]})).await?;
    assert_eq!(status, 409, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(err["reason"], "egress_refused");
    assert!(err["message"].as_str().unwrap_or("").contains("scatter results may not leave"), "{body}");
    assert_eq!(decisions(&view), [pair("refused", "allowed_kinds")]);
    let sql_salary = format!("SELECT name, salary FROM {t}.customers");
    let (status, _, body, view) =
        run(&cp, "warehouse", &sql_salary, serde_json::json!({"kind": "bar", "x": "name", "y": ["salary"]})).await?;
    assert_eq!(status, 409, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body)?;
    assert!(err["message"].as_str().unwrap_or("").starts_with("column \"salary\" is masked"), "{body}");
    assert_eq!(decisions(&view), [pair("refused", "mask")]);
    // A bar chart of 12 rows where 5 may leave: refused after the query.
    let sql_n = format!("SELECT name, id FROM {t}.customers ORDER BY id");
    let (status, _, body, view) =
        run(&cp, "warehouse", &sql_n, serde_json::json!({"kind": "bar", "x": "name", "y": ["id"]})).await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(decisions(&view), [pair("refused", "max_rows")]);

    // 4. "charts": no raw tables; a 10 000-point line is downsampled to the 300-point
    //    budget, and the drawn points are the data.
    let (status, _, body, view) =
        run(&cp, "charts", &sql_n, serde_json::json!({"kind": "table", "format": "html"})).await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(decisions(&view), [pair("refused", "allow_raw_table")]);
    let sql_m = format!("SELECT at, value FROM {t}.metrics");
    let (status, headers, body, view) =
        run(&cp, "charts", &sql_m, serde_json::json!({"kind": "line", "x": "at", "y": ["value"], "title": "Sensor"}))
            .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers.get("outpost-egress").map(String::as_str), Some("downsampled"));
    assert_eq!(headers.get("outpost-rows-read").map(String::as_str), Some("10000"));
    assert_eq!(decisions(&view), [pair("downsampled", "max_points")]);
    let doc = roxmltree::Document::parse(&body)?;
    let path = doc.descendants().find(|n| n.attribute("class") == Some("series")).context("series path")?;
    let drawn: usize = path.attribute("data-points").context("data-points")?.parse()?;
    assert!((100..=300).contains(&drawn), "{drawn} points");
    let plot = doc.descendants().find(|n| n.attribute("class") == Some("plot")).context("plot")?;
    let attr = |k: &str| -> Result<f64> { Ok(plot.attribute(k).context("plot attribute")?.parse()?) };
    let (y_lo, y_hi, top, bottom) = (attr("data-y-min")?, attr("data-y-max")?, attr("data-top")?, attr("data-bottom")?);
    let ys: Vec<f64> = path
        .attribute("d")
        .context("d")?
        .split(['M', 'L'])
        .filter_map(|p| p.split_whitespace().nth(1).and_then(|y| y.parse::<f64>().ok()))
        .map(|py| y_hi - (py - top) / (bottom - top) * (y_hi - y_lo))
        .collect();
    // sin() reaches ±10 in these 10 000 rows, and min/max per interval keeps both peaks.
    let (lo, hi) = ys.iter().fold((f64::MAX, f64::MIN), |(l, h), y| (l.min(*y), h.max(*y)));
    assert!((hi - 10.0).abs() < 0.2 && (lo + 10.0).abs() < 0.2, "{lo}..{hi}");
    let labels: Vec<&str> =
        doc.descendants().filter(|n| n.attribute("class") == Some("x-label")).filter_map(|n| n.text()).collect();
    assert_eq!(labels.first(), Some(&"2026-01-01"), "{labels:?}");

    // 5. "tiny": 1 KiB may leave. A chart is refused after rendering; a scalar fits.
    let (status, _, body, view) =
        run(&cp, "tiny", &sql_n, serde_json::json!({"kind": "pie", "label": "name", "value": "id"})).await?;
    assert_eq!(status, 409, "{body}");
    let refused = decisions(&view);
    assert_eq!(refused.last(), Some(&pair("refused", "max_rows")), "{refused:?}");
    let sql_sum = format!("SELECT sum(salary) AS total FROM {t}.customers");
    let (status, _, body, _) = run(
        &cp,
        "tiny",
        &sql_sum,
        serde_json::json!({"kind": "scalar", "column": "total", "label": "Payroll", "decimals": 1, "unit": " EUR"}),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let scalar: serde_json::Value = serde_json::from_str(&body)?;
    // 12 × 1000 + 10 × (1 + … + 12) = 12 780.
    assert_eq!((scalar["value"].as_str(), scalar["formatted"].as_str()), (Some("12780.00"), Some("12,780.0 EUR")));
    let sql_small = format!("SELECT name, id FROM {t}.customers WHERE id <= 3 ORDER BY id");
    let (status, _, body, view) =
        run(&cp, "tiny", &sql_small, serde_json::json!({"kind": "pie", "label": "name", "value": "id"})).await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(decisions(&view), [pair("refused", "max_bytes")]);

    // Every decision is in the audit log, with the job's outcome.
    agent.stop()?;
    let records = agent.audit_records()?;
    let jobs: Vec<&serde_json::Value> = records.iter().filter(|r| r["event"] == "job").collect();
    assert_eq!(jobs.len(), 10);
    let rules = |r: &serde_json::Value| -> Vec<(String, String)> {
        r["egress"]
            .as_array()
            .map(|a| {
                a.iter().map(|d| pair(d["action"].as_str().unwrap_or(""), d["rule"].as_str().unwrap_or(""))).collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(rules(jobs[0]), [pair("masked", "mask"), pair("truncated", "max_rows")]);
    assert_eq!(
        (jobs[2]["outcome"].as_str(), rules(jobs[2])),
        (Some("rejected"), vec![pair("refused", "allowed_kinds")])
    );
    assert_eq!(
        (jobs[6]["outcome"].as_str(), rules(jobs[6])),
        (Some("succeeded"), vec![pair("downsampled", "max_points")])
    );
    assert_eq!((jobs[9]["outcome"].as_str(), rules(jobs[9])), (Some("failed"), vec![pair("refused", "max_bytes")]));
    // Refused results sent no body, only their reason's message; the ledger shows it.
    assert!(jobs
        .iter()
        .filter(|j| j["outcome"] != "succeeded")
        .all(|j| j["body_sha256"].is_null() && j["error_sha256"].is_string()));
    // The agent's whole state holds no raw value of a masked column.
    for f in outpost_e2e::files_under(&agent.state_dir)? {
        let bytes = std::fs::read(&f)?;
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("000-00-10"), "{} holds an ssn", f.display());
    }
    db.drop_now().await
}

/// Masks follow the column's source through the real agent: renamed, aggregated or
/// wrapped, a masked column's values never reach the API, the control plane's files or
/// the agent's state; a chart cannot draw one to scale under another name; a UNION the
/// agent cannot trace is refused with `mask_unprovable`. The agent connects as a
/// least-privilege role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masks_follow_the_source_column_whatever_the_query_calls_it() -> Result<()> {
    const CANARY: &str = "S3CRET-VALUE-42";
    let s = server()?;
    let db = schema(&s, "provenance").await?;
    let t = &db.name;
    let role = format!("{t}_reader");
    db.admin
        .batch_execute(&format!(
            "CREATE TABLE {t}.customers (id int, email text, secret text, region text);
             INSERT INTO {t}.customers
               SELECT i, 'c' || (i % 3) || '@example.org', '{CANARY}-' || i, CASE WHEN i % 2 = 0 THEN 'north' ELSE 'south' END
               FROM generate_series(1, 9) AS i;
             CREATE ROLE {role} LOGIN;
             GRANT USAGE ON SCHEMA {t} TO {role};
             GRANT SELECT ON ALL TABLES IN SCHEMA {t} TO {role};"
        ))
        .await?;
    let root = tempfile::tempdir()?;
    let connection =
        s.connection_yaml("warehouse").replace(&format!("user: {}\n", s.user()), &format!("user: {role}\n"));
    let config = format!(
        "egress:\n  mask:\n    - column: {t}.customers.secret\n    - column: email\n      with: hash\nconnections:\n{connection}"
    );
    let result = async {
        let (cp, mut agent) = control_plane_and_agent(root.path(), &config).await?;
        // 1. Grouped by a renamed e-mail column: labels are keyed hashes, counts stay.
        let sql = format!("SELECT email AS e, count(*) AS n FROM {t}.customers GROUP BY email ORDER BY 1");
        let (status, headers, body, view) =
            run(&cp, "warehouse", &sql, serde_json::json!({"kind": "bar", "x": "e", "y": ["n"]})).await?;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers.get("outpost-egress").map(String::as_str), Some("masked"));
        assert!(body.contains("h:") && !body.contains("example.org"), "{body}");
        let detail = view["stats"]["egress"][0]["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&format!("e (keyed hash, from {t}.customers.email)")), "{detail}");
        // 2. A table of the secret under another name, wrapped: ***.
        let sql = format!("SELECT id, lower(secret) AS contact, secret || '' AS c2 FROM {t}.customers ORDER BY id");
        let (status, _, body, _) = run(&cp, "warehouse", &sql, serde_json::json!({"kind": "table"})).await?;
        assert_eq!(status, 200, "{body}");
        let table: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(table["rows"][0], serde_json::json!([1, "***", "***"]), "{body}");
        // 3. A streamed line chart drawing a value derived from the secret: refused.
        let sql = format!("SELECT id, length(secret) AS n FROM {t}.customers ORDER BY id");
        let (status, _, body, view) =
            run(&cp, "warehouse", &sql, serde_json::json!({"kind": "line", "x": "id", "y": ["n"]})).await?;
        assert_eq!(status, 409, "{body}");
        assert_eq!(decisions(&view), [pair("refused", "mask")]);
        // 4. A UNION hides which branch a value came from: refused, not passed.
        let sql = format!("SELECT region FROM {t}.customers UNION SELECT secret FROM {t}.customers");
        let (status, _, body, view) = run(&cp, "warehouse", &sql, serde_json::json!({"kind": "table"})).await?;
        assert_eq!(status, 409, "{body}");
        assert_eq!(decisions(&view), [pair("refused", "mask_unprovable")]);
        assert!(!body.contains(CANARY), "{body}");
        // 5. Everyday queries over unmasked columns are untouched.
        let sql = format!("SELECT region, count(*) AS n FROM {t}.customers GROUP BY region ORDER BY region");
        let (status, headers, body, _) =
            run(&cp, "warehouse", &sql, serde_json::json!({"kind": "bar", "x": "region", "y": ["n"]})).await?;
        assert_eq!((status, headers.get("outpost-egress")), (200, None), "{body}");
        agent.stop()?;
        let audit = agent.audit_records()?;
        let rules: Vec<String> = audit
            .iter()
            .filter(|r| r["event"] == "job")
            .filter_map(|r| r["egress"][0]["rule"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(rules, ["mask", "mask", "mask", "mask_unprovable"]);
        // The canary is nowhere: not in the agent's state, log or audit log, nor in the
        // control plane's files.
        let mut files = outpost_e2e::files_under(&agent.state_dir)?;
        files.extend(outpost_e2e::files_under(root.path())?);
        for f in files {
            let text = String::from_utf8_lossy(&std::fs::read(&f)?).into_owned();
            assert!(!text.contains(CANARY) && !text.contains("example.org"), "{} holds a masked value", f.display());
        }
        anyhow::Ok(())
    }
    .await;
    db.admin.batch_execute(&format!("DROP SCHEMA {t} CASCADE; DROP ROLE {role};")).await?;
    result
}
