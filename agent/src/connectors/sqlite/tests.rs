//! Unit tests of the SQLite connector: read-only, limits, parameters, the sample database.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn sample() -> (tempfile::TempDir, SqliteConnector) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sample.db");
    assert!(ensure_sample_db(&path).expect("build"));
    (dir, SqliteConnector::new(path))
}

fn limits(max_rows: usize) -> QueryLimits {
    QueryLimits::new(max_rows, T)
}

#[tokio::test]
async fn sample_db_is_built_once_with_mode_0600_and_has_orders() {
    let (dir, c) = sample();
    let path = dir.path().join("sample.db");
    assert!(!ensure_sample_db(&path).expect("second call"));
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
    let rs =
        c.query("SELECT COUNT(DISTINCT region), COUNT(*) FROM orders".into(), vec![], limits(10)).await.expect("q");
    assert_eq!(rs.rows[0][0], Value::Int(4));
    assert!(matches!(rs.rows[0][1], Value::Int(n) if n > 100));
}

#[tokio::test]
async fn select_returns_typed_values_and_columns() {
    let (_d, c) = sample();
    let rs = c
        .query("SELECT 1 AS i, 2.5 AS f, 'x' AS t, NULL AS n, x'00ff' AS b".into(), vec![], limits(10))
        .await
        .expect("query");
    assert_eq!(rs.columns, ["i", "f", "t", "n", "b"]);
    assert_eq!(
        rs.rows,
        vec![vec![Value::Int(1), Value::Float(2.5), Value::Text("x".into()), Value::Null, Value::Bytes(vec![0, 255])]]
    );
}

#[tokio::test]
async fn row_cap_reads_one_extra_row_and_marks_truncation() {
    let (_d, c) = sample();
    let rs = c.query("SELECT id FROM orders ORDER BY id".into(), vec![], limits(7)).await.expect("q");
    assert_eq!(rs.rows.len(), 7);
    assert!(rs.truncated);
    let rs = c.query("SELECT id FROM orders WHERE id <= 7".into(), vec![], limits(7)).await.expect("q");
    assert_eq!(rs.rows.len(), 7);
    assert!(!rs.truncated);
}

#[tokio::test]
async fn writes_are_refused_and_nothing_changes() {
    let (dir, c) = sample();
    for sql in [
        "INSERT INTO orders (region, month, product, quantity, amount) VALUES ('X', '2025-01', 'p', 1, 1)",
        "UPDATE orders SET amount = 0",
        "DELETE FROM orders",
        "CREATE TABLE t (x)",
        "DROP TABLE orders",
        "PRAGMA journal_mode = DELETE",
    ] {
        let err = c.query(sql.into(), vec![], limits(10)).await.expect_err(sql);
        assert!(matches!(err, QueryError::NotReadOnly { .. }), "{sql}: {err}");
    }
    let rw = Connection::open(dir.path().join("sample.db")).expect("rw");
    let n: i64 = rw.query_row("SELECT COUNT(*) FROM orders WHERE amount > 0", [], |r| r.get(0)).expect("count");
    assert_eq!(n, 288);
}

#[test]
fn the_database_itself_refuses_writes_on_an_agent_connection() {
    // Below the agent's own `readonly()` check: the connection as opened refuses
    // writes and attachments by itself.
    let (dir, _c) = sample();
    let conn = open_read_only(&dir.path().join("sample.db")).expect("open");
    for sql in ["DELETE FROM orders", "CREATE TABLE t (x)", "DROP TABLE orders", "UPDATE orders SET amount = 0"] {
        let err = conn.execute(sql, []).expect_err(sql);
        assert!(err.to_string().contains("readonly"), "{sql}: {err}");
    }
    let other = dir.path().join("other.db");
    let err = conn.execute(&format!("ATTACH DATABASE '{}' AS o", other.display()), []).expect_err("attach");
    assert!(err.to_string().contains("too many attached databases"), "{err}");
    assert!(!other.exists());
}

#[tokio::test]
async fn attach_is_refused() {
    let (dir, c) = sample();
    let other = dir.path().join("other.db");
    let err =
        c.query(format!("ATTACH DATABASE '{}' AS o", other.display()), vec![], limits(10)).await.expect_err("attach");
    assert!(
        matches!(err, QueryError::NotReadOnly { .. } | QueryError::Database { .. } | QueryError::Server(_)),
        "{err}"
    );
    assert!(!other.exists());
}

#[tokio::test]
async fn multiple_statements_are_refused() {
    let (_d, c) = sample();
    let err = c.query("SELECT 1; SELECT 2".into(), vec![], limits(10)).await.expect_err("two");
    assert!(err.to_string().contains("exactly one statement"), "{err}");
}

#[tokio::test]
async fn dollar_params_bind_by_number_even_out_of_order() {
    let (_d, c) = sample();
    let rs = c
        .query(
            "SELECT $2 AS b, $1 AS a, $3 AS c".into(),
            vec![Param::Int(1), Param::Text("two".into()), Param::Bool(true)],
            limits(10),
        )
        .await
        .expect("q");
    assert_eq!(rs.rows[0], vec![Value::Text("two".into()), Value::Int(1), Value::Int(1)]);
}

#[tokio::test]
async fn param_count_mismatch_is_an_error_naming_the_index() {
    let (_d, c) = sample();
    let err = c.query("SELECT $1, $2".into(), vec![Param::Int(1)], limits(10)).await.expect_err("missing");
    assert!(matches!(err, QueryError::Param { index: 2, .. }), "{err}");
    let err = c.query("SELECT $1".into(), vec![Param::Int(1), Param::Int(2)], limits(10)).await.expect_err("extra");
    assert!(matches!(err, QueryError::Param { index: 2, .. }), "{err}");
}

#[tokio::test]
async fn runaway_query_times_out() {
    let (_d, c) = sample();
    let sql =
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000000) SELECT COUNT(*) FROM n";
    let started = Instant::now();
    let err = c.query(sql.into(), vec![], QueryLimits::new(10, Duration::from_millis(200))).await.expect_err("timeout");
    assert!(matches!(err, QueryError::Timeout { after_ms: 200 }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "interrupted long after the deadline");
}

#[tokio::test]
async fn pooled_connections_stay_read_only_and_usable_after_errors_and_timeouts() {
    let (_d, c) = sample();
    let slow =
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000000) SELECT COUNT(*) FROM n";
    for _ in 0..3 {
        c.query(slow.into(), vec![], QueryLimits::new(1, Duration::from_millis(20))).await.expect_err("timeout");
        c.query("DELETE FROM orders".into(), vec![], limits(1)).await.expect_err("write");
        let rs = c.query("SELECT COUNT(*) FROM orders".into(), vec![], limits(1)).await.expect("read after errors");
        assert_eq!(rs.rows[0][0], Value::Int(288));
    }
    assert!(c.idle.lock().expect("lock").len() <= MAX_IDLE);
}

#[tokio::test]
async fn missing_database_file_is_an_open_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.db");
    let err =
        SqliteConnector::new(missing.clone()).query("SELECT 1".into(), vec![], limits(1)).await.expect_err("open");
    assert!(matches!(err, QueryError::Open { .. }), "{err}");
    assert!(!missing.exists(), "a read-only open must not create the file");
}
