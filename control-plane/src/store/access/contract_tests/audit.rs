//! The contract of the control plane's audit log, on both backends.

use super::*;

async fn audit_log<S: AccessStore>(s: &S) {
    let event = |at: i64, actor: &str, action: &str, outcome: &str, target: Option<&str>| AuditEvent {
        seq: 0,
        at,
        actor: actor.into(),
        credential: "password".into(),
        action: action.into(),
        target: target.map(Into::into),
        outcome: outcome.into(),
        status: 200,
        remote: None,
        detail: None,
    };
    let mut first = event(10, "root", "jobs.dispatch", "ok", Some("j1"));
    first.status = 65535;
    first.remote = Some("192.0.2.1".into());
    first.detail = Some(serde_json::json!({"connection": "warehouse", "rows": 3}));
    s.add_audit(first.clone()).await.expect("add");
    s.add_audit(event(20, "ed", "jobs.cancel", "denied", Some("j1"))).await.expect("add");
    s.add_audit(event(30, "root", "users.create", "ok", Some("ed"))).await.expect("add");
    s.add_audit(event(40, "root", "jobsx", "failed", None)).await.expect("add");
    s.add_audit(event(50, "anonymous", "JOBS.dispatch", "denied", None)).await.expect("add");

    let all = s.audit(AuditFilter { limit: 100, ..Default::default() }).await.expect("q");
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
    let stored = &all[0];
    assert_eq!(AuditEvent { seq: 0, ..stored.clone() }, first, "every field round-trips");
    assert_eq!(
        (all[1].target.as_deref(), all[3].target.as_deref(), all[3].remote.as_deref()),
        (Some("j1"), None, None)
    );

    let actions = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.action).collect::<Vec<_>>();
    let q = |f: AuditFilter| async move { actions(s.audit(AuditFilter { limit: 100, ..f }).await.expect("q")) };
    assert_eq!(
        q(AuditFilter { actor: Some("root".into()), ..Default::default() }).await,
        ["jobs.dispatch", "users.create", "jobsx"]
    );
    // A prefix ends in `.`; like SQLite's LIKE it ignores ASCII case.
    assert_eq!(
        q(AuditFilter { action: Some("jobs.".into()), ..Default::default() }).await,
        ["jobs.dispatch", "jobs.cancel", "JOBS.dispatch"]
    );
    assert_eq!(q(AuditFilter { action: Some("jobs".into()), ..Default::default() }).await, Vec::<String>::new());
    assert_eq!(q(AuditFilter { action: Some("jobs.cancel".into()), ..Default::default() }).await, ["jobs.cancel"]);
    assert_eq!(
        q(AuditFilter { outcome: Some("denied".into()), ..Default::default() }).await,
        ["jobs.cancel", "JOBS.dispatch"]
    );
    assert_eq!(
        q(AuditFilter { target: Some("j1".into()), ..Default::default() }).await,
        ["jobs.dispatch", "jobs.cancel"]
    );
    assert_eq!(
        q(AuditFilter { since: Some(20), until: Some(40), ..Default::default() }).await,
        ["jobs.cancel", "users.create"]
    );
    assert_eq!(
        q(AuditFilter {
            actor: Some("root".into()),
            action: Some("jobs.".into()),
            outcome: Some("ok".into()),
            ..Default::default()
        })
        .await,
        ["jobs.dispatch"]
    );

    // Paging: `after` the last seq of a page.
    let page = |after: Option<i64>| async move {
        s.audit(AuditFilter { after, limit: 2, ..Default::default() }).await.expect("q")
    };
    let p1 = page(None).await;
    assert_eq!(p1.iter().map(|e| e.at).collect::<Vec<_>>(), [10, 20]);
    let p2 = page(p1.last().map(|e| e.seq)).await;
    assert_eq!(p2.iter().map(|e| e.at).collect::<Vec<_>>(), [30, 40]);
    let p3 = page(p2.last().map(|e| e.seq)).await;
    assert_eq!(p3.iter().map(|e| e.at).collect::<Vec<_>>(), [50]);
    assert!(page(p3.last().map(|e| e.seq)).await.is_empty());
    assert!(s.audit(AuditFilter { limit: 0, ..Default::default() }).await.expect("q").is_empty());

    // `%`, `_` and `\` in a prefix match only themselves, not any character.
    for (at, action) in [(60, "a_b.x"), (61, "axb.x"), (62, "a%b.x"), (63, "azzb.x"), (64, "a\\b.x")] {
        s.add_audit(event(at, "root", action, "ok", None)).await.expect("add");
    }
    assert_eq!(q(AuditFilter { action: Some("a_b.".into()), ..Default::default() }).await, ["a_b.x"]);
    assert_eq!(q(AuditFilter { action: Some("a%b.".into()), ..Default::default() }).await, ["a%b.x"]);
    assert_eq!(q(AuditFilter { action: Some("a\\b.".into()), ..Default::default() }).await, ["a\\b.x"]);
    assert_eq!(q(AuditFilter { action: Some("%.".into()), ..Default::default() }).await, Vec::<String>::new());
}

/// A status out of `u16` range is a typed corruption, not a panic or a wrap.
#[tokio::test]
async fn an_out_of_range_audit_status_is_corrupt() {
    crate::store::testdb::on_postgres(|s| async move {
        let client = s.client().await.expect("client");
        client
            .execute(
                "INSERT INTO cloud_audit (at, actor, credential, action, outcome, status)
                 VALUES (1, 'root', 'cli', 'x', 'ok', 70000)",
                &[],
            )
            .await
            .expect("insert");
        let e = s.audit(AuditFilter { limit: 10, ..Default::default() }).await;
        assert!(matches!(e, Err(StoreError::Corrupt { table: "cloud_audit", .. })), "{e:?}");
    })
    .await;
}

crate::store::testdb::on_both_backends!(audit_log,);
