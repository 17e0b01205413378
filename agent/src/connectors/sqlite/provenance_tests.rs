//! Unit tests of what SQLite statements read in their conditions.

use super::*;
use std::time::Duration;

/// What each statement reads other than as a result column's plain source.
#[tokio::test]
async fn reads_left_after_the_result_columns_are_conditions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    {
        let c = Connection::open(&path).expect("open");
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, secret TEXT, region TEXT);
                 CREATE TABLE nums(n INTEGER);
                 CREATE INDEX t_secret ON t(secret);
                 CREATE INDEX t_region ON t(region);
                 CREATE VIEW v AS SELECT id, secret FROM t WHERE secret LIKE 'S%';
                 INSERT INTO t VALUES (1, 'S3CRET', 'north');
                 INSERT INTO nums VALUES (83);",
        )
        .expect("schema");
    }
    let conn = SqliteConnector::new(path);
    let secret_in_conditions = |sql: &'static str| {
        let conn = &conn;
        async move {
            let mut limits = QueryLimits::new(10, Duration::from_secs(5));
            limits.provenance = true;
            limits.conditions = true;
            let rs = conn.query(sql.into(), vec![], limits).await.expect(sql);
            let p = rs.provenance.expect("provenance");
            p.conditions.expect("conditions").iter().any(|c| match c {
                Provenance::Columns { sources } => sources.iter().any(|s| s.column == "secret"),
                Provenance::Unknown { .. } => true,
            })
        }
    };
    for sql in [
        "SELECT id FROM t WHERE secret LIKE 'S%'",
        "SELECT secret FROM t WHERE secret LIKE 'S%'",
        "SELECT c1.n FROM t a JOIN nums c1 ON c1.n = unicode(substr(a.secret, 1, 1))",
        "SELECT c1.n, a.secret FROM t a JOIN nums c1 ON c1.n = unicode(substr(a.secret, 1, 1))",
        "SELECT id FROM t a WHERE EXISTS (SELECT 1 FROM t b WHERE b.id = a.id AND b.secret > 'M')",
        "SELECT id FROM t ORDER BY secret",
        "SELECT id, secret FROM t ORDER BY secret",
        "SELECT id, secret AS s FROM t ORDER BY s",
        "SELECT secret FROM t ORDER BY 1",
        "SELECT secret, count(*) FROM t GROUP BY secret",
        "SELECT secret, count(*) FROM t GROUP BY 1",
        "SELECT id FROM v",
        "SELECT lower(secret) FROM t",
        "SELECT id FROM t INDEXED BY t_secret",
        "SELECT id, secret FROM t ORDER BY 2 DESC",
        "SELECT region, secret FROM t GROUP BY 1, 2",
    ] {
        assert!(secret_in_conditions(sql).await, "{sql}");
    }
    for sql in [
        "SELECT secret FROM t",
        "SELECT * FROM t",
        "SELECT id, secret FROM t WHERE id = 1",
        "SELECT id, region FROM t ORDER BY 2",
        "SELECT id FROM t WHERE region = 'north'",
        "SELECT id, secret FROM t",
    ] {
        assert!(!secret_in_conditions(sql).await, "{sql}");
    }
}
