//! PostgreSQL's job indexes hold only the rows their statements look for (schema 10): a
//! history of ended jobs is in none of the indexes that leases and expiries search, ad-hoc
//! jobs are not in the project index, open jobs not in the index of ended jobs; and the
//! statements still seek their rows through those indexes, retention's purge included.

use outpost_protocol::ids::new_job_id;

use super::*;

/// Live entries of each job index, after a vacuum has dropped the dead ones.
async fn index_entries(client: &deadpool_postgres::Object) -> std::collections::BTreeMap<String, i64> {
    client.batch_execute("VACUUM ANALYZE jobs").await.expect("vacuum");
    let rows = client
        .query(
            "SELECT c.relname::TEXT, c.reltuples::BIGINT FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = 'jobs'::regclass",
            &[],
        )
        .await
        .expect("indexes");
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// The plan of `sql`, as `EXPLAIN` prints it.
async fn plan(client: &deadpool_postgres::Object, sql: &str) -> String {
    let rows = client.query(&format!("EXPLAIN {sql}"), &[]).await.expect(sql);
    rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
}

#[tokio::test]
async fn ended_and_ad_hoc_jobs_stay_out_of_the_indexes_that_do_not_look_for_them() {
    crate::store::testdb::on_postgres(|store| async move {
        seed(&store).await;
        enrol_member(&store, "m1", "eu").await;
        let client = store.pool_for_tests().get().await.expect("client");
        // A history: 5,000 ended jobs of edge-1 and of the pool, none of a project.
        client
            .batch_execute(
                "INSERT INTO jobs (id, agent, pool, connection, state, envelope, created_at, expires_at, finished_at, key_id, owner)
                 SELECT 'old-' || n, CASE WHEN n % 2 = 0 THEN 'edge-1' ELSE 'm1' END,
                        CASE WHEN n % 2 = 0 THEN NULL ELSE 'eu' END, 'sample', 'succeeded', '{}', n, n + 300, n + 1,
                        'ed25519:test', 'u1'
                   FROM generate_series(1, 5000) AS n",
            )
            .await
            .expect("history");
        // Now open: one job of edge-1, one of the pool; one of them leased.
        let (own, pooled) = (new_job_id(), new_job_id());
        store.insert_job(job(&own, 9000)).await.expect("insert");
        store.insert_job(pool_job(&pooled, "eu")).await.expect("insert");
        assert_eq!(store.lease_jobs(peer("edge-1"), 6000, 60, 1).await.expect("lease").jobs.len(), 1);
        let entries = index_entries(&client).await;
        assert_eq!(entries["jobs_pkey"], 5002, "{entries:?}");
        assert_eq!(entries["jobs_by_agent_state"], 2, "only the open jobs: {entries:?}");
        assert_eq!(entries["jobs_by_pool_state"], 1, "only the pool's open job: {entries:?}");
        assert_eq!(entries["jobs_open"], 2, "{entries:?}");
        assert_eq!(entries["jobs_by_project"], 0, "no project job: {entries:?}");
        assert_eq!(entries["jobs_by_end"], 5000, "only the ended jobs: {entries:?}");

        // The statements that look for open jobs seek them in an index of open jobs only,
        // not through the history; the others in theirs.
        const OPEN: &[&str] = &["jobs_by_agent_state", "jobs_by_pool_state", "jobs_open"];
        for (what, sql, indexes) in [
            (
                "lease",
                "SELECT id FROM jobs WHERE ((agent = 'edge-1' AND pool IS NULL AND state IN ('queued', 'leased'))
                        OR (pool = 'eu' AND state IN ('queued', 'leased')))
                   AND expires_at >= 6000 AND cancel_requested_at IS NULL
                   AND (state = 'queued' OR (state = 'leased' AND lease_until < 6000))
                 ORDER BY created_at, id LIMIT 4",
                OPEN,
            ),
            (
                "cancel",
                "SELECT id FROM jobs WHERE agent = 'edge-1' AND state = 'leased' AND cancel_requested_at IS NOT NULL",
                OPEN,
            ),
            ("pool lease", "SELECT id FROM jobs WHERE pool = 'eu' AND state IN ('queued', 'leased')", OPEN),
            ("project", "SELECT id FROM jobs WHERE project_id = 'p1' AND query_index = 0", &["jobs_by_project"]),
        ] {
            let p = plan(&client, sql).await;
            assert!(!p.contains("Seq Scan") && indexes.iter().any(|i| p.contains(i)), "{what} does not seek {indexes:?}: {p}");
        }
        // Retention's own statement: each branch through its index, not the whole table.
        let purge = crate::store::access::postgres::retention::PURGE_JOBS_SQL.replace("$1", "10").replace("$2", "20");
        let p = plan(&client, &purge).await;
        assert!(
            !p.contains("Seq Scan on jobs  (") && p.contains("jobs_by_end") && p.contains("jobs_open"),
            "retention does not seek jobs_by_end and jobs_open: {p}"
        );
    })
    .await;
}
