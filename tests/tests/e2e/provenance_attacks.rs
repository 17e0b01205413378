//! Attacks on "masks by provenance" and on error scrubbing, end to end: a real control
//! plane, an enrolled agent and the real PostgreSQL, MariaDB and SQLite servers
//! (`OUTPOST_TEST_PG_URL`, `OUTPOST_TEST_MYSQL_URL`). A masked column holds a canary;
//! each attack is a job that tries to get it (or a value derived from it) out through
//! another column, a whole-row reference, an aggregate, a view, a function that runs SQL
//! of its own, the planner's statistics, session state, or an error message. Each one
//! must come back refused (`mask_unprovable`), masked, or failed with a scrubbed error;
//! the canary (or its lower-case, reversed, hex, base64 or MD5 form) is never in the
//! API's answer, the job's view (reason and message), any file of the control plane,
//! the control plane's log, the agent's log or its audit log.
//!
//! What is *not* stopped, and asserted as such so that a change is noticed: a masked
//! column used only in a predicate (`WHERE secret LIKE 'S%'`, a join condition) still
//! filters rows: an oracle on the value, which a join against a table of small integers
//! turns into the value's characters (`known_limitation_predicates_are_an_oracle`).
//! With `egress.masked_predicates: refuse` the same jobs are refused
//! (`mask_in_predicate`) on every database, while everyday queries on unmasked columns
//! and plain masked output still run (on MariaDB, which shows no conditions, every job
//! of such a connection is refused: asserted too).
//!
//! The agent connects as a least-privilege role made for each test (SELECT only).

use anyhow::{Context as _, Result};
use mysql_async::prelude::Queryable as _;
use outpost_e2e::pg::{schema, server, Server};
use outpost_e2e::{Agent, ControlPlane};

const CANARY: &str = "S3CRET-VALUE-42";

/// Every form of the canary that must never leave.
fn forbidden() -> Vec<String> {
    let lower = CANARY.to_lowercase();
    let reversed: String = CANARY.chars().rev().collect();
    let hex: String = CANARY.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        CANARY.to_owned(),
        lower,
        reversed.clone(),
        reversed.to_lowercase(),
        hex.clone(),
        hex.to_uppercase(),
        "UzNDUkVULVZBTFVFLTQy".to_owned(), // base64
        "S3CRET".to_owned(),
        "s3cret".to_owned(),
    ]
}

/// The first forbidden string in `text`, if any.
fn leak(text: &str, extra: &[String]) -> Option<String> {
    forbidden().into_iter().chain(extra.iter().cloned()).find(|f| text.contains(f.as_str()))
}

/// What became of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 200 and at least one column masked.
    Masked,
    /// 409, refused by the egress policy (the rule is checked separately).
    Refused,
    /// 409, the query failed in the database (the message is scrubbed).
    Failed,
    /// 200 and nothing masked.
    Clean,
}

/// One job's answer: the outcome, the body, the job's view.
struct Answer {
    outcome: Outcome,
    body: String,
    view: serde_json::Value,
}

async fn run(cp: &ControlPlane, connection: &str, sql: &str) -> Result<Answer> {
    let id = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": connection, "sql": sql,
            "render": { "kind": "table", "format": "json" }
        }))
        .await?;
    let (status, body) = cp.wait_result(&id).await?;
    let view = cp.job(&id).await?;
    let masked = view["stats"]["egress"]
        .as_array()
        .is_some_and(|a| a.iter().any(|d| d["action"] == "masked" && d["rule"] == "mask"));
    let outcome = match (status, view["reason"]["code"].as_str()) {
        (200, _) if masked => Outcome::Masked,
        (200, _) => Outcome::Clean,
        (409, Some("egress_refused")) => Outcome::Refused,
        // query_failed (scrubbed), or a type the renderer does not take.
        (409, Some(_)) => Outcome::Failed,
        other => anyhow::bail!("{sql}: unexpected {other:?}: {body}\n{view}"),
    };
    Ok(Answer { outcome, body, view })
}

/// Runs every attack on `connection`; each must come out as its `want` (any of them)
/// and leak nothing. A refusal must name `mask_unprovable` (or `mask`).
async fn attack(
    cp: &ControlPlane,
    connection: &str,
    attacks: &[(String, &[Outcome])],
    extra: &[String],
) -> Result<Vec<(String, Outcome)>> {
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    for (sql, want) in attacks {
        let a = run(cp, connection, sql).await?;
        eprintln!("{connection}: {:?}: {sql}", a.outcome);
        let view = a.view.to_string();
        if let Some(l) = leak(&a.body, extra).or_else(|| leak(&view, extra)) {
            failures.push(format!("LEAK {l:?}: {sql}\n  body: {}\n  view: {view}", a.body));
            continue;
        }
        if !want.contains(&a.outcome) {
            failures.push(format!("{sql}: got {:?}, wanted {want:?}\n  body: {}\n  view: {view}", a.outcome, a.body));
            continue;
        }
        if a.outcome == Outcome::Refused {
            let rules: Vec<&str> =
                a.view["stats"]["egress"].as_array().into_iter().flatten().filter_map(|d| d["rule"].as_str()).collect();
            if !rules.iter().any(|r| *r == "mask_unprovable" || *r == "mask") {
                failures.push(format!("{sql}: refused without a mask rule: {rules:?} {view}"));
            }
        }
        seen.push((sql.clone(), a.outcome));
    }
    anyhow::ensure!(failures.is_empty(), "{} attack(s) got through:\n{}", failures.len(), failures.join("\n"));
    Ok(seen)
}

/// After the agent has stopped: the canary is in no file of the control plane, nor in
/// either log or the agent's audit log.
fn check_files(cp: &ControlPlane, agent: &Agent, extra: &[String]) -> Result<()> {
    for f in outpost_e2e::files_under(&cp.data_dir)? {
        let text = String::from_utf8_lossy(&std::fs::read(&f)?).into_owned();
        assert!(leak(&text, extra).is_none(), "{} holds {:?}", f.display(), leak(&text, extra));
    }
    let log = cp.log_text();
    assert!(leak(&log, extra).is_none(), "the control plane's log holds {:?}", leak(&log, extra));
    let log = agent.log_text();
    assert!(leak(&log, extra).is_none(), "the agent's log holds {:?}:\n{log}", leak(&log, extra));
    let audit = std::fs::read_to_string(agent.state_dir.join("audit.log"))?;
    assert!(leak(&audit, extra).is_none(), "the audit log holds {:?}", leak(&audit, extra));
    Ok(())
}

/// With `masked_predicates: refuse`: each of `oracles` is refused with
/// `mask_in_predicate` and leaks nothing.
async fn refused_in_predicate(cp: &ControlPlane, connection: &str, oracles: &[String], extra: &[String]) -> Result<()> {
    let mut failures = Vec::new();
    for sql in oracles {
        let a = run(cp, connection, sql).await?;
        eprintln!("{connection}: {:?}: {sql}", a.outcome);
        let view = a.view.to_string();
        if let Some(l) = leak(&a.body, extra).or_else(|| leak(&view, extra)) {
            failures.push(format!("LEAK {l:?}: {sql}\n  body: {}\n  view: {view}", a.body));
            continue;
        }
        let rules: Vec<&str> =
            a.view["stats"]["egress"].as_array().into_iter().flatten().filter_map(|d| d["rule"].as_str()).collect();
        if a.outcome != Refused || !rules.contains(&"mask_in_predicate") {
            failures
                .push(format!("{sql}: got {:?} {rules:?}, wanted mask_in_predicate\n  body: {}", a.outcome, a.body));
        }
    }
    anyhow::ensure!(failures.is_empty(), "{} oracle(s) ran:\n{}", failures.len(), failures.join("\n"));
    Ok(())
}

/// The six-character join oracle of `known_limitation_predicates_are_an_oracle`, with
/// `code(expr)` giving a character's code point.
fn join_oracle(code: &str) -> String {
    let joins: Vec<String> =
        (1..=6).map(|i| format!("JOIN nums c{i} ON c{i}.n = {code}(substr(a.secret, {i}, 1))")).collect();
    let cols: Vec<String> = (1..=6).map(|i| format!("c{i}.n AS c{i}")).collect();
    format!("SELECT {} FROM t a {} WHERE a.id = 1", cols.join(", "), joins.join(" "))
}

use Outcome::{Clean, Failed, Masked, Refused};

/// Masked or refused: the value does not leave either way.
const HIDDEN: &[Outcome] = &[Masked, Refused];
/// Refused by policy or failed in the database (scrubbed).
const STOPPED: &[Outcome] = &[Refused, Failed];

fn pg_connection(s: &Server, name: &str, user: &str, egress: &str) -> String {
    format!(
        "  {name}:\n    kind: postgres\n    host: {}\n    port: {}\n    database: {}\n    user: {user}\n    \
         password_credential: warehouse\n    tls: disable\n    egress:\n{egress}",
        s.host(),
        s.port(),
        s.database()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_attacks_on_masks_and_errors_leak_nothing() -> Result<()> {
    let s = server()?;
    let db = schema(&s, "atk").await?;
    let n = db.name.clone();
    let reader = format!("{n}_r");
    db.admin
        .batch_execute(&format!(
            "CREATE TABLE {n}.t (id int, secret text, region text);
             INSERT INTO {n}.t VALUES (1, '{CANARY}', 'north');
             INSERT INTO {n}.t SELECT i, '{CANARY}', 'south' FROM generate_series(2, 50) AS i;
             CREATE TABLE {n}.nums (n int);
             INSERT INTO {n}.nums SELECT generate_series(0, 255);
             CREATE VIEW {n}.v AS SELECT id, secret AS contact FROM {n}.t;
             CREATE VIEW {n}.v2 AS SELECT id, upper(contact) AS c FROM {n}.v;
             CREATE MATERIALIZED VIEW {n}.mv AS SELECT id, secret AS contact FROM {n}.t;
             ANALYZE {n}.t;
             CREATE ROLE {reader} LOGIN;
             GRANT USAGE ON SCHEMA {n} TO {reader};
             GRANT SELECT ON ALL TABLES IN SCHEMA {n} TO {reader};
             ALTER ROLE {reader} SET search_path = {n};"
        ))
        .await?;
    let md5: String = db.admin.query_one(&format!("SELECT md5('{CANARY}')"), &[]).await?.get(0);
    let extra = vec![md5];
    let mask = format!("      mask:\n        - column: {n}.t.secret\n");
    let config = format!(
        "connections:\n{}{}{}",
        pg_connection(&s, "warehouse", &reader, &mask),
        pg_connection(&s, "lenient", &reader, &format!("      unprovable: mask\n{mask}")),
        pg_connection(&s, "strict", &reader, &format!("      masked_predicates: refuse\n{mask}")),
    );
    let root = tempfile::tempdir()?;
    let result = async {
        let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
        let a = |sql: &str, want: &'static [Outcome]| (sql.to_owned(), want);
        let attacks = vec![
            // Whole rows and JSON.
            a("SELECT row_to_json(x) AS j FROM t x", HIDDEN),
            a("SELECT to_jsonb(x.*) AS j FROM t x", HIDDEN),
            a("SELECT x::text AS j FROM t x", HIDDEN),
            a("SELECT (x).* FROM t x", HIDDEN),
            a("SELECT to_jsonb(x) ->> 'secret' AS j FROM t x", HIDDEN),
            a("SELECT row_to_json(s) AS j FROM (SELECT secret FROM t) s", HIDDEN),
            a("SELECT json_build_object('k', secret) AS j FROM t", HIDDEN),
            a("SELECT json_agg(secret) AS j FROM t", HIDDEN),
            a("SELECT (ROW(secret, 1)).f1 AS j FROM t", HIDDEN),
            // Aggregates and text functions.
            // An array does not render (unsupported_type); as text it is masked.
            a("SELECT array_agg(secret) AS j FROM t", &[Failed]),
            a("SELECT array_agg(secret)::text AS j FROM t", HIDDEN),
            a("SELECT string_agg(secret, ',') AS j FROM t", HIDDEN),
            a("SELECT format('%s', secret) AS j FROM t", HIDDEN),
            a("SELECT concat_ws('-', 'x', secret) AS j FROM t", HIDDEN),
            a("SELECT regexp_replace(secret, 'S', 's') AS j FROM t", HIDDEN),
            a("SELECT reverse(secret) AS j FROM t", HIDDEN),
            a("SELECT encode(convert_to(secret, 'UTF8'), 'base64') AS j FROM t", HIDDEN),
            a("SELECT encode(secret::bytea, 'hex') AS j FROM t", HIDDEN),
            a("SELECT md5(secret) AS j FROM t", HIDDEN),
            a("SELECT length(secret) AS j FROM t", HIDDEN),
            a("SELECT ascii(substr(secret, 1, 1)) AS j FROM t", HIDDEN),
            a("SELECT translate(secret, 'S', 'Z') AS j FROM t", HIDDEN),
            a("SELECT max(secret) AS j FROM t", HIDDEN),
            // Joins, lateral, windows, grouping, CTEs, VALUES, set-returning functions.
            a("SELECT l.x FROM t, LATERAL (SELECT t.secret AS x) l", HIDDEN),
            a("SELECT l.x FROM t, LATERAL (SELECT t.secret || '' AS x OFFSET 0) l", HIDDEN),
            a("SELECT first_value(secret) OVER () AS j FROM t", HIDDEN),
            a("SELECT lag(secret) OVER (ORDER BY id) AS j FROM t", HIDDEN),
            a("SELECT secret AS j, count(*) FROM t GROUP BY GROUPING SETS ((secret), ())", HIDDEN),
            a("SELECT coalesce(secret, region) AS j, count(*) FROM t GROUP BY ROLLUP (secret, region)", HIDDEN),
            a(
                "WITH RECURSIVE r(s, k) AS (SELECT secret, 1 FROM t WHERE id = 1 \
                 UNION ALL SELECT s, k + 1 FROM r WHERE k < 2) SELECT s AS j FROM r",
                HIDDEN,
            ),
            a(
                "WITH RECURSIVE r(s, k) AS (SELECT region, 1 FROM t WHERE id = 1 \
                 UNION ALL SELECT t.secret, k + 1 FROM r JOIN t ON t.id = 1 WHERE k < 2) SELECT s AS j FROM r",
                HIDDEN,
            ),
            a("SELECT vv.x AS j FROM t JOIN (VALUES (1, 'a')) AS vv(i, x) ON vv.i = t.id", &[Clean]),
            a("SELECT vv.x || t.secret AS j FROM t JOIN (VALUES (1, 'a')) AS vv(i, x) ON vv.i = t.id", HIDDEN),
            a("SELECT u AS j FROM t, unnest(ARRAY[secret]) AS u", HIDDEN),
            a("SELECT unnest(ARRAY[secret, region]) AS j FROM t", HIDDEN),
            a("SELECT (SELECT secret FROM t LIMIT 1) AS j", HIDDEN),
            a("SELECT id, (SELECT x.secret FROM t x WHERE x.id = t.id) AS j FROM t", HIDDEN),
            a("SELECT s AS j FROM (SELECT secret AS s FROM t UNION ALL SELECT region FROM t) q", HIDDEN),
            a("SELECT region AS j FROM t UNION SELECT secret FROM t", HIDDEN),
            a("SELECT region AS j FROM t INTERSECT SELECT secret FROM t", HIDDEN),
            // Views over the masked table: traced through, or refused.
            a("SELECT contact AS j FROM v", HIDDEN),
            a("SELECT lower(contact) AS j FROM v", HIDDEN),
            a("SELECT c AS j FROM v2", HIDDEN),
            a("SELECT contact AS j FROM mv", HIDDEN),
            a("SELECT upper(contact) AS j FROM mv", HIDDEN),
            a("SELECT contact || '' AS j, id FROM mv", HIDDEN),
            // The planner's statistics hold the column's most common values.
            a("SELECT most_common_vals::text AS j FROM pg_stats WHERE attname = 'secret'", HIDDEN),
            a("SELECT histogram_bounds::text AS j FROM pg_stats WHERE attname = 'secret'", HIDDEN),
            a("SELECT most_common_vals::text AS j FROM pg_stats WHERE attname = 'secret' AND tablename = 't'", HIDDEN),
            // Functions that run SQL given as text: the plan does not show what they read.
            a(&format!("SELECT query_to_xml('SELECT secret FROM {n}.t', true, false, '')::text AS j"), HIDDEN),
            a(&format!("SELECT table_to_xml('{n}.t', true, false, '')::text AS j"), HIDDEN),
            a(&format!("SELECT query_to_xml_and_xmlschema('SELECT secret FROM {n}.t', true, false, '')::text AS j"), HIDDEN),
            a(&format!("SELECT schema_to_xml('{n}', true, false, '')::text AS j"), HIDDEN),
            a(&format!("SELECT word AS j FROM ts_stat('SELECT to_tsvector(''simple'', secret) FROM {n}.t')"), HIDDEN),
            a(
                &format!(
                    "SELECT ts_rewrite('x'::tsquery, 'SELECT ''x''::tsquery, \
                     phraseto_tsquery(''simple'', secret) FROM {n}.t LIMIT 1')::text AS j"
                ),
                HIDDEN,
            ),
            a(&format!("SELECT region, query_to_xml('SELECT secret FROM {n}.t', true, false, '')::text AS j FROM t"), HIDDEN),
            // Session state carries a value from one expression to another.
            a("SELECT set_config('outpost.x', secret, false) AS j FROM t", HIDDEN),
            a(
                "SELECT set_config('outpost.x', secret, false) AS a, current_setting('outpost.x') AS j FROM t",
                HIDDEN,
            ),
            a("SELECT current_setting('outpost.x', true) AS j FROM t WHERE set_config('outpost.x', secret, false) <> ''", HIDDEN),
            a(
                "SELECT id, current_setting('outpost.y', true) AS j FROM t \
                 WHERE EXISTS (SELECT set_config('outpost.y', x.secret, false) FROM t x)",
                HIDDEN,
            ),
            // Errors that embed the value: failed, and scrubbed.
            a("SELECT CAST(secret AS int) AS j FROM t", STOPPED),
            a("SELECT secret::date AS j FROM t", STOPPED),
            a("SELECT secret::numeric AS j FROM t", STOPPED),
            a("SELECT secret::json AS j FROM t", STOPPED),
            a("SELECT secret::int[] AS j FROM t", STOPPED),
            a("SELECT ('{\"a\": ' || secret || '}')::jsonb AS j FROM t", STOPPED),
            // to_number skips what it cannot read: a value, masked.
            a("SELECT to_number(secret, '999') AS j FROM t", HIDDEN),
            a("SELECT set_config(secret, 'x', false) AS j FROM t", STOPPED),
            a("SELECT current_setting(secret) AS j FROM t", STOPPED),
            a("SELECT 1 / (CASE WHEN secret LIKE 'S%' THEN 0 ELSE 1 END) AS j FROM t", STOPPED),
            a("SELECT 1 / 0 AS j FROM t WHERE secret LIKE 'S%'", STOPPED),
            a("SELECT id FROM t WHERE secret::int > 0", STOPPED),
            a("SELECT id FROM t ORDER BY secret::int", STOPPED),
            a("SELECT id FROM t WHERE id = 1 AND jsonb_path_query('{}', secret::jsonpath) IS NOT NULL", STOPPED),
            a("SELECT xmlparse(content '<a>' || secret) AS j FROM t", STOPPED),
            a("SELECT to_timestamp(secret, 'YYYY') AS j FROM t", STOPPED),
            a("SELECT format(secret) AS j FROM t", HIDDEN),
            a("SELECT format('%' || secret, 1) AS j FROM t", STOPPED),
            a(&format!("SELECT query_to_xml('SELECT secret::int FROM {n}.t', true, false, '')::text AS j"), STOPPED),
        ];
        attack(&cp, "warehouse", &attacks, &extra).await?;
        // With `unprovable: mask`, the same tricks come back as ***, never as the value.
        let lenient: Vec<(String, &[Outcome])> = vec![
            a(&format!("SELECT query_to_xml('SELECT secret FROM {n}.t', true, false, '')::text AS j"), &[Masked]),
            a("SELECT most_common_vals::text AS j FROM pg_stats WHERE attname = 'secret'", &[Masked]),
            a("SELECT upper(contact) AS j FROM mv", &[Masked]),
            a(
                "SELECT current_setting('outpost.x', true) AS j FROM t WHERE set_config('outpost.x', secret, false) <> ''",
                &[Masked],
            ),
            a("SELECT region AS j FROM t UNION SELECT secret FROM t", &[Masked]),
        ];
        attack(&cp, "lenient", &lenient, &extra).await?;
        // Everyday queries still run untouched.
        let everyday: Vec<(String, &[Outcome])> = vec![
            a("SELECT region, count(*) AS n FROM t GROUP BY region ORDER BY region", &[Clean]),
            a("SELECT n, n * 2 AS twice FROM nums WHERE n < 3", &[Clean]),
            a("SELECT id, secret FROM t WHERE id = 1", &[Masked]),
        ];
        attack(&cp, "warehouse", &everyday, &extra).await?;
        known_limitation_predicates_are_an_oracle(&cp).await?;
        // `masked_predicates: refuse` closes the oracle: the secret in any condition
        // (filter, EXISTS, join, ORDER BY, GROUP BY, HAVING, window, IN, a view's or a
        // materialized view's column) refuses the job.
        let oracles: Vec<String> = [
            "SELECT count(*) AS n FROM t WHERE secret LIKE 'S3%'",
            "SELECT id FROM t WHERE secret LIKE 'S%'",
            "SELECT id, secret FROM t WHERE secret LIKE 'S%'",
            "SELECT id FROM t WHERE id = 1 AND EXISTS (SELECT 1 FROM t x WHERE x.secret > 'S')",
            "SELECT id FROM t ORDER BY secret",
            "SELECT id, secret FROM t ORDER BY secret",
            "SELECT id FROM t ORDER BY secret LIMIT 1",
            "SELECT count(*) AS n FROM t GROUP BY secret",
            "SELECT region, count(*) AS n FROM t GROUP BY region HAVING max(secret) > 'S'",
            "SELECT id, row_number() OVER (ORDER BY secret) AS r FROM t",
            "SELECT id, rank() OVER (PARTITION BY secret ORDER BY id) AS r FROM t",
            "SELECT n FROM nums WHERE n IN (SELECT ascii(secret) FROM t)",
            "SELECT n FROM nums WHERE n = (SELECT ascii(secret) FROM t LIMIT 1)",
            "SELECT id FROM t WHERE EXISTS (SELECT 1 FROM v WHERE v.id = t.id AND v.contact LIKE 'S%')",
            "SELECT id FROM mv WHERE contact LIKE 'S%'",
            "SELECT DISTINCT secret AS j FROM t",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([join_oracle("ascii")])
        .collect();
        refused_in_predicate(&cp, "strict", &oracles, &extra).await?;
        let everyday: Vec<(String, &[Outcome])> = vec![
            a("SELECT region, count(*) AS n FROM t GROUP BY region ORDER BY region", &[Clean]),
            a("SELECT n, n * 2 AS twice FROM nums WHERE n < 3 ORDER BY n", &[Clean]),
            a("SELECT t.id, nums.n FROM t JOIN nums ON nums.n = t.id WHERE t.region = 'north'", &[Clean]),
            a("SELECT id, secret FROM t WHERE id = 1", &[Masked]),
            a("SELECT secret AS j FROM t", &[Masked]),
            a("SELECT id, lower(secret) AS j FROM t WHERE region = 'south' ORDER BY id", &[Masked, Refused]),
        ];
        attack(&cp, "strict", &everyday, &extra).await?;
        agent.stop()?;
        check_files(&cp, &agent, &extra)
    }
    .await;
    db.drop_now().await?;
    let (admin, c) = s.config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(c);
    admin.batch_execute(&format!("DROP ROLE {reader}")).await?;
    result
}

/// KNOWN LIMITATION, pinned so that a change is noticed: masks follow where a result
/// column's *values* come from, not which rows a predicate lets through. A masked column
/// used only in `WHERE`, `EXISTS` or a join condition is not refused, so a job can test
/// it (one bit per job), and a join against any table of small integers turns it into
/// plain numbers: one character per joined column, every column a plain table column.
/// The canary never leaves verbatim, but it can be rebuilt. This is the default
/// (`masked_predicates: allow`); `masked_predicates: refuse` closes it (the `strict`
/// connections of each test), and SECURITY.md §11 says both.
async fn known_limitation_predicates_are_an_oracle(cp: &ControlPlane) -> Result<()> {
    let bit = run(cp, "warehouse", "SELECT count(*) AS n FROM t WHERE secret LIKE 'S3%'").await?;
    assert_eq!((bit.outcome, bit.body.contains("[[50]]")), (Clean, true), "{}", bit.body);
    let exists =
        run(cp, "warehouse", "SELECT id FROM t WHERE id = 1 AND EXISTS (SELECT 1 FROM t x WHERE x.secret > 'S')")
            .await?;
    assert_eq!((exists.outcome, exists.body.contains("[[1]]")), (Clean, true), "{}", exists.body);
    let joins: Vec<String> =
        (1..=6).map(|i| format!("JOIN nums c{i} ON c{i}.n = ascii(substr(a.secret, {i}, 1))")).collect();
    let cols: Vec<String> = (1..=6).map(|i| format!("c{i}.n AS c{i}")).collect();
    let sql = format!("SELECT {} FROM t a {} WHERE a.id = 1", cols.join(", "), joins.join(" "));
    let oracle = run(cp, "warehouse", &sql).await?;
    assert_eq!(oracle.outcome, Clean, "{}", oracle.body);
    let table: serde_json::Value = serde_json::from_str(&oracle.body)?;
    let rebuilt: String = table["rows"][0]
        .as_array()
        .context("a row")?
        .iter()
        .filter_map(|v| v.as_u64().and_then(|c| char::from_u32(c as u32)))
        .collect();
    assert_eq!(rebuilt, CANARY[..6], "the join oracle rebuilds the value's first characters");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_attacks_on_masks_and_errors_leak_nothing() -> Result<()> {
    let url = std::env::var("OUTPOST_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let opts = mysql_async::Opts::from_url(&url).with_context(|| format!("OUTPOST_TEST_MYSQL_URL {url:?}"))?;
    let mut admin = mysql_async::Conn::new(opts.clone()).await.with_context(|| {
        format!(
            "MariaDB/MySQL is not reachable at {url}: start it with \
             `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd` or set OUTPOST_TEST_MYSQL_URL"
        )
    })?;
    let tag = outpost_protocol::ids::new_nonce()[..8].to_ascii_lowercase();
    let (name, reader) = (format!("outpost_atk_{tag}"), format!("outpost_atk_r_{tag}"));
    for stmt in [
        format!("CREATE DATABASE {name}"),
        format!("CREATE TABLE {name}.t (id int, secret varchar(40), region varchar(20))"),
        format!("INSERT INTO {name}.t VALUES (1, '{CANARY}', 'north'), (2, '{CANARY}', 'south')"),
        format!("CREATE TABLE {name}.other (id int, secret varchar(40))"),
        format!("INSERT INTO {name}.other VALUES (1, 'public'), (3, 'also public')"),
        format!("CREATE VIEW {name}.v AS SELECT id, secret AS contact FROM {name}.t"),
        format!("ANALYZE TABLE {name}.t PERSISTENT FOR ALL"),
        format!("CREATE USER '{reader}'@'%'"),
        format!("GRANT SELECT ON {name}.* TO '{reader}'@'%'"),
    ] {
        admin.query_drop(stmt).await?;
    }
    let config = format!(
        "connections:\n  shop:\n    kind: mysql\n    host: {}\n    port: {}\n    database: {name}\n    user: {reader}\n    \
         tls: disable\n    egress:\n      mask:\n        - column: {name}.t.secret\n\
         \x20 shop_strict:\n    kind: mysql\n    host: {}\n    port: {}\n    database: {name}\n    user: {reader}\n    \
         tls: disable\n    egress:\n      masked_predicates: refuse\n      mask:\n        - column: {name}.t.secret\n",
        opts.ip_or_hostname(),
        opts.tcp_port(),
        opts.ip_or_hostname(),
        opts.tcp_port(),
    );
    let root = tempfile::tempdir()?;
    let result = async {
        let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
        let a = |sql: &str, want: &'static [Outcome]| (sql.to_owned(), want);
        let attacks = vec![
            a("SELECT secret AS j FROM t", &[Masked]),
            a("SELECT CONCAT(secret, '') AS j FROM t", HIDDEN),
            a("SELECT CONCAT_WS('-', region, secret) AS j FROM t", HIDDEN),
            a("SELECT GROUP_CONCAT(secret) AS j FROM t", HIDDEN),
            a("SELECT JSON_OBJECT('k', secret) AS j FROM t", HIDDEN),
            a("SELECT JSON_ARRAYAGG(secret) AS j FROM t", HIDDEN),
            a("SELECT HEX(secret) AS j FROM t", HIDDEN),
            a("SELECT TO_BASE64(secret) AS j FROM t", HIDDEN),
            a("SELECT MD5(secret) AS j FROM t", HIDDEN),
            a("SELECT REVERSE(secret) AS j FROM t", HIDDEN),
            a("SELECT id FROM (SELECT secret AS id FROM t) AS other", HIDDEN),
            a("SELECT s AS j FROM (SELECT secret AS s FROM t) AS d", HIDDEN),
            a("SELECT region AS j FROM t UNION SELECT secret FROM t", HIDDEN),
            a("SELECT secret AS j FROM other UNION ALL SELECT secret FROM t", HIDDEN),
            a("WITH c AS (SELECT secret AS s FROM t) SELECT s AS j FROM c", HIDDEN),
            a("SELECT (SELECT secret FROM t LIMIT 1) AS j FROM other", HIDDEN),
            a("SELECT contact AS j FROM v", HIDDEN),
            // `o.secret` is other's column (NULL where t has a row other lacks); the
            // merged USING column of a RIGHT JOIN is t's.
            a("SELECT o.secret AS j FROM other o RIGHT JOIN t USING (id, secret)", &[Clean]),
            a("SELECT secret AS j FROM other o RIGHT JOIN t USING (id, secret)", HIDDEN),
            a("SELECT secret AS j FROM other o LEFT JOIN t USING (id)", STOPPED), // ambiguous
            a("SELECT secret AS j FROM t NATURAL JOIN other", HIDDEN),
            a("SELECT @x := secret AS a, @x AS j FROM t", HIDDEN),
            a("SELECT id, @y AS j FROM t WHERE (@y := secret) IS NOT NULL", HIDDEN),
            a("SELECT FIRST_VALUE(secret) OVER () AS j FROM t", HIDDEN),
            // The persistent statistics (min/max values) are in mysql.column_stats, which
            // the least-privilege role cannot read.
            a("SELECT min_value AS j FROM mysql.column_stats WHERE column_name = 'secret'", STOPPED),
            // Errors that embed the value.
            a("SELECT EXTRACTVALUE(1, CONCAT(0x7e, secret)) AS j FROM t", STOPPED),
            a("SELECT UPDATEXML(1, CONCAT(0x7e, secret), 1) AS j FROM t", STOPPED),
            a("SELECT id FROM t WHERE EXTRACTVALUE(1, CONCAT(0x7e, secret)) IS NULL", STOPPED),
            a("SELECT EXP(~(SELECT secret FROM t LIMIT 1)) AS j", STOPPED),
            a("SELECT id FROM t WHERE EXP(~(SELECT secret FROM t LIMIT 1)) > 0", &[Failed, Refused, Clean]),
            a("SELECT CAST(secret AS SIGNED) AS j FROM t", STOPPED),
            a("SELECT id FROM t WHERE CAST(secret AS SIGNED) = 0", &[Clean, Failed]),
            a("SELECT JSON_KEYS(secret) AS j FROM t", STOPPED),
            a("SELECT id FROM t WHERE JSON_EXTRACT(secret, '$') IS NULL", &[Clean, Failed]),
            a("SELECT ST_GeomFromText(secret) AS j FROM t", STOPPED),
            a("SELECT id FROM t WHERE ST_GeomFromText(secret) IS NULL", &[Clean, Failed]),
            a("SELECT id FROM t WHERE secret = (SELECT 1 UNION SELECT 2)", &[Failed]),
            a("SELECT id FROM t WHERE GTID_SUBSET(secret, '1') = 1", &[Clean, Failed]),
            a("SELECT id FROM t WHERE id = 1 AND DATE(secret) IS NULL AND secret / 0 = 1", &[Clean, Failed]),
            a("SELECT id FROM t WHERE id = 1 AND REGEXP_SUBSTR('a', CONCAT('(', secret)) = ''", &[Clean, Failed]),
            a("SELECT id FROM t WHERE id = 1 AND COLUMN_JSON(secret) IS NULL", &[Clean, Failed]),
        ];
        attack(&cp, "shop", &attacks, &[]).await?;
        // Without `masked_predicates`, a predicate is an oracle here too.
        let bit = run(&cp, "shop", "SELECT id FROM t WHERE secret LIKE 'S3%' ORDER BY id").await?;
        assert_eq!((bit.outcome, bit.body.contains("[[1],[2]]")), (Clean, true), "{}", bit.body);
        // MariaDB shows no conditions: with `masked_predicates: refuse` every job of the
        // connection is refused, the everyday ones included.
        let oracles: Vec<String> = [
            "SELECT count(*) AS n FROM t WHERE secret LIKE 'S3%'",
            "SELECT id FROM t WHERE id = 1 AND EXISTS (SELECT 1 FROM t x WHERE x.secret > 'S')",
            "SELECT a.id FROM t a JOIN other o ON ASCII(SUBSTR(a.secret, 1, 1)) = o.id + 82",
            "SELECT id FROM t ORDER BY secret",
            "SELECT count(*) AS n FROM t GROUP BY secret",
            "SELECT id, region FROM t",
            "SELECT secret AS j FROM t",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        refused_in_predicate(&cp, "shop_strict", &oracles, &[]).await?;
        agent.stop()?;
        check_files(&cp, &agent, &[])
    }
    .await;
    admin.query_drop(format!("DROP USER '{reader}'@'%'")).await?;
    admin.query_drop(format!("DROP DATABASE {name}")).await?;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_attacks_on_masks_and_errors_leak_nothing() -> Result<()> {
    let root = tempfile::tempdir()?;
    let path = root.path().join("shop.db");
    {
        let db = rusqlite::Connection::open(&path)?;
        db.execute_batch(&format!(
            "CREATE TABLE t (id int, secret text, region text);
             INSERT INTO t VALUES (1, '{CANARY}', 'north'), (2, '{CANARY}', 'south');
             CREATE TABLE nums (n int);
             WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c WHERE n < 255) INSERT INTO nums SELECT n FROM c;
             CREATE VIEW v AS SELECT id, secret AS contact FROM t;
             CREATE INDEX t_secret ON t (secret);
             ANALYZE;"
        ))?;
    }
    let config = format!(
        "connections:\n  local:\n    kind: sqlite\n    path: {0}\n    egress:\n      mask:\n        - column: main.t.secret\n\
         \x20 strict:\n    kind: sqlite\n    path: {0}\n    egress:\n      masked_predicates: refuse\n      mask:\n        - column: main.t.secret\n",
        path.display()
    );
    let (cp, mut agent) = outpost_e2e::control_plane_and_agent(root.path(), &config).await?;
    let a = |sql: &str, want: &'static [Outcome]| (sql.to_owned(), want);
    let attacks = vec![
        a("SELECT secret AS j FROM t", &[Masked]),
        a("SELECT json_object('k', secret) AS j FROM t", HIDDEN),
        a("SELECT json_group_array(secret) AS j FROM t", HIDDEN),
        a("SELECT group_concat(secret) AS j FROM t", HIDDEN),
        a("SELECT printf('%s', secret) AS j FROM t", HIDDEN),
        a("SELECT format('%s', secret) AS j FROM t", HIDDEN),
        a("SELECT hex(secret) AS j FROM t", HIDDEN),
        a("SELECT lower(secret) AS j FROM t", HIDDEN),
        a("SELECT CAST(secret AS blob) AS j FROM t", HIDDEN),
        a("SELECT CAST(secret AS int) AS j FROM t", HIDDEN),
        a("SELECT contact AS j FROM v", HIDDEN),
        a("SELECT upper(contact) AS j FROM v", HIDDEN),
        a("SELECT s AS j FROM (SELECT secret AS s FROM t) q", HIDDEN),
        a("WITH c AS (SELECT secret AS s FROM t) SELECT s AS j FROM c", HIDDEN),
        a("WITH c AS MATERIALIZED (SELECT secret || '' AS s FROM t) SELECT s AS j FROM c", HIDDEN),
        a("SELECT region AS j FROM t UNION SELECT secret FROM t", HIDDEN),
        a("SELECT (SELECT secret FROM t LIMIT 1) AS j", HIDDEN),
        a("SELECT value AS j FROM t, json_each(json_array(secret))", HIDDEN),
        a("SELECT first_value(secret) OVER () AS j FROM t", HIDDEN),
        a("SELECT max(secret) AS j FROM t", HIDDEN),
        a("SELECT iif(id > 0, secret, 'x') AS j FROM t", HIDDEN),
        // The statistics tables hold no values here (no STAT4), only counts.
        a("SELECT stat AS j FROM sqlite_stat1", &[Clean, Failed]),
        // An error quoting a value.
        a("SELECT json(secret) AS j FROM t", STOPPED),
        a("SELECT json_extract(secret, '$') AS j FROM t", STOPPED),
        a("SELECT id FROM t WHERE json(secret) IS NOT NULL", STOPPED),
        a("SELECT id FROM t WHERE secret MATCH 'x'", STOPPED),
        a("SELECT id FROM t WHERE load_extension(secret) IS NULL", STOPPED),
    ];
    let result = attack(&cp, "local", &attacks, &[]).await;
    let strict = async {
        // The oracle works without the switch...
        let oracle = run(&cp, "local", &join_oracle("unicode")).await?;
        anyhow::ensure!(oracle.outcome == Clean && oracle.body.contains("[[83,51,67,82,69,84]]"), "{}", oracle.body);
        // ...and is refused with it, as is every other use of the secret in a condition.
        let oracles: Vec<String> = [
            "SELECT count(*) AS n FROM t WHERE secret LIKE 'S3%'",
            "SELECT id, secret FROM t WHERE secret LIKE 'S%'",
            "SELECT id FROM t WHERE id = 1 AND EXISTS (SELECT 1 FROM t x WHERE x.secret > 'S')",
            "SELECT id FROM t ORDER BY secret",
            "SELECT id, secret AS s FROM t ORDER BY s",
            "SELECT id, secret FROM t ORDER BY 2",
            "SELECT count(*) AS n FROM t GROUP BY secret",
            "SELECT id FROM t INDEXED BY t_secret",
            "SELECT id, row_number() OVER (ORDER BY secret) AS r FROM t",
            "SELECT id FROM v WHERE contact LIKE 'S%'",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([join_oracle("unicode")])
        .collect();
        refused_in_predicate(&cp, "strict", &oracles, &[]).await?;
        let everyday: Vec<(String, &[Outcome])> = vec![
            a("SELECT id, region FROM t WHERE id = 1", &[Clean]),
            a("SELECT region, count(*) AS n FROM t GROUP BY region", &[Clean]),
            a("SELECT n FROM nums WHERE n < 3 ORDER BY n", &[Clean]),
            a("SELECT secret AS j FROM t", &[Masked]),
            a("SELECT id, secret FROM t WHERE region = 'north'", &[Masked]),
        ];
        attack(&cp, "strict", &everyday, &[]).await.map(drop)
    }
    .await;
    agent.stop()?;
    result?;
    strict?;
    check_files(&cp, &agent, &[])
}
