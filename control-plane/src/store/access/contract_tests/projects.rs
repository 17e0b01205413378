//! The contract of projects and their grants, the latest job of a project query, and
//! retention's purge, on both backends.

use super::*;

async fn projects_and_grants<S: AccessStore + Store>(s: &S) {
    s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
    s.create_user(user("u2", "ed", Role::Editor)).await.expect("add");
    s.create_user(user("u3", "vi", Role::Viewer)).await.expect("add");
    s.create_project(project("p1", "sales", "u2")).await.expect("p1");
    s.create_project(project("p2", "Costs", "u1")).await.expect("p2");
    s.create_project(project("p3", "sales", "u1")).await.expect("p3");
    let got = s.project("p1".into()).await.expect("q").expect("there");
    assert_eq!((got.owner.as_str(), got.owner_id.as_str()), ("ed", "u2"));
    assert_eq!(got.embed_origins, "[]", "no origins of its own until set");
    assert!(s.set_embed_origins("p1".into(), r#"["https://app.example"]"#.into()).await.expect("q"));
    assert!(!s.set_embed_origins("nope".into(), "[]".into()).await.expect("q"), "no such project");
    let got = s.project("p1".into()).await.expect("q").expect("there");
    assert_eq!(got.embed_origins, r#"["https://app.example"]"#);
    let listed = s.projects_for(Some("u2".into())).await.expect("q");
    assert_eq!(listed[0].0.embed_origins, r#"["https://app.example"]"#, "lists read it too");
    assert!(s.project("nope".into()).await.expect("q").is_none());

    let ids = |v: Vec<(ProjectRecord, Option<Grant>)>| v.into_iter().map(|(p, g)| (p.id, g)).collect::<Vec<_>>();
    assert_eq!(
        ids(s.projects_for(None).await.expect("q")),
        [("p2".into(), None), ("p1".into(), None), ("p3".into(), None)]
    );
    assert_eq!(ids(s.projects_for(Some("u2".into())).await.expect("q")), [("p1".into(), None)]);
    assert!(s.projects_for(Some("u3".into())).await.expect("q").is_empty());

    assert_eq!(s.set_project_grant("p3".into(), "vi".into(), Some(Grant::ViewApp)).await.expect("q"), Ok(()));
    assert_eq!(s.set_project_grant("p3".into(), "vi".into(), Some(Grant::ViewLogic)).await.expect("q"), Ok(()));
    assert_eq!(s.set_project_grant("p3".into(), "ed".into(), Some(Grant::Edit)).await.expect("q"), Ok(()));
    assert_eq!(
        s.set_project_grant("p3".into(), "nobody".into(), Some(Grant::Edit)).await.expect("q"),
        Err(AccessRefusal::NoUser { name: "nobody".into() })
    );
    assert_eq!(s.project_grant("p3".into(), "u3".into()).await.expect("q"), Some(Grant::ViewLogic));
    assert_eq!(s.project_grant("p1".into(), "u3".into()).await.expect("q"), None);
    assert_eq!(
        s.project_grants("p3".into()).await.expect("q"),
        [("ed".into(), Grant::Edit), ("vi".into(), Grant::ViewLogic)]
    );
    assert_eq!(ids(s.projects_for(Some("u3".into())).await.expect("q")), [("p3".into(), Some(Grant::ViewLogic))]);
    assert_eq!(
        ids(s.projects_for(Some("u2".into())).await.expect("q")),
        [("p1".into(), None), ("p3".into(), Some(Grant::Edit))]
    );
    assert_eq!(s.set_project_grant("p3".into(), "ed".into(), None).await.expect("q"), Ok(()));
    assert_eq!(s.project_grant("p3".into(), "u2".into()).await.expect("q"), None);

    assert_eq!(s.project("p1".into()).await.expect("q").expect("there").tiles_json, "[]", "no tiles until set");
    let tiles = r#"[{"text":"Revenue","w":12,"h":1},{"query":0,"w":6,"h":2}]"#;
    assert!(s
        .update_project("p1".into(), "Sales".into(), "[{\"sql\":\"x\"}]".into(), tiles.into(), "[]".into(), 9)
        .await
        .expect("q"));
    assert!(!s.update_project("nope".into(), "x".into(), "[]".into(), "[]".into(), "[]".into(), 9).await.expect("q"));
    let got = s.project("p1".into()).await.expect("q").expect("there");
    assert_eq!((got.name.as_str(), got.queries_json.as_str(), got.updated_at), ("Sales", "[{\"sql\":\"x\"}]", 9));
    assert_eq!(got.tiles_json, tiles, "tiles are stored with the queries");
    let listed = s.projects_for(Some("u2".into())).await.expect("q");
    assert_eq!((listed[0].0.tiles_json.as_str(), listed[0].1), (tiles, None), "lists read them too, and the grant");

    assert_eq!(s.bump_embed_epoch("p1".into()).await.expect("q"), Some(1));
    assert_eq!(s.bump_embed_epoch("p1".into()).await.expect("q"), Some(2));
    assert_eq!(s.bump_embed_epoch("nope".into()).await.expect("q"), None);
    assert_eq!(s.project("p1".into()).await.expect("q").expect("there").embed_epoch, 2);

    // Jobs of project queries: the newest per (query, customer), ties by insertion.
    add_signing_key(s).await;
    let origin = |customer: Option<&str>| JobOrigin {
        owner: Some("u2".into()),
        project_id: Some("p1".into()),
        query_index: Some(0),
        customer: customer.map(Into::into),
        filters: None,
    };
    assert_eq!(s.latest_project_job("p1".into(), 0, None, None, false).await.expect("q"), None);
    s.insert_job(new_job("j1", 10, 1000, origin(None))).await.expect("j1");
    s.insert_job(new_job("j2", 20, 1000, origin(None))).await.expect("j2");
    s.insert_job(new_job("j3", 20, 1000, origin(None))).await.expect("j3");
    s.insert_job(new_job("j4", 30, 1000, origin(Some("acme")))).await.expect("j4");
    s.insert_job(new_job("j5", 5, 1000, origin(Some("acme")))).await.expect("j5");
    assert_eq!(s.latest_project_job("p1".into(), 0, None, None, false).await.expect("q"), Some("j3".into()));
    assert_eq!(
        s.latest_project_job("p1".into(), 0, Some("acme".into()), None, false).await.expect("q"),
        Some("j4".into())
    );
    assert_eq!(s.latest_project_job("p1".into(), 0, Some("other".into()), None, false).await.expect("q"), None);
    assert_eq!(s.latest_project_job("p1".into(), 1, None, None, false).await.expect("q"), None);
    // Jobs that ran with dashboard filters are found by them only; those without, by none.
    let filtered = |key: &str| JobOrigin { filters: Some(key.into()), ..origin(None) };
    s.insert_job(new_job("f-us", 40, 1000, filtered("us"))).await.expect("f-us");
    s.insert_job(new_job("f-eu", 41, 1000, filtered("eu"))).await.expect("f-eu");
    let by = |key: Option<&str>| s.latest_project_job("p1".into(), 0, None, key.map(Into::into), false);
    assert_eq!(by(Some("us")).await.expect("q").as_deref(), Some("f-us"));
    assert_eq!(by(Some("eu")).await.expect("q").as_deref(), Some("f-eu"));
    assert_eq!(by(Some("apac")).await.expect("q"), None);
    assert_eq!(by(None).await.expect("q").as_deref(), Some("j3"), "no filters: the jobs that ran without");
    let rec = s.job("f-us".into(), 50, false).await.expect("q").expect("there");
    assert_eq!(rec.origin.filters.as_deref(), Some("us"), "a job's filters are read back");
    // Parameters are stored with the project, and kept by what changes other columns.
    let params = r#"[{"name":"region","label":"Region","kind":"choice","choices":["EU","US"],"default":"EU"}]"#;
    assert!(s
        .update_project("p1".into(), "Sales".into(), "[]".into(), tiles.into(), params.into(), 60)
        .await
        .expect("q"));
    assert!(s.set_project_schedule("p1".into(), None).await.expect("q"));
    assert_eq!(s.project("p1".into()).await.expect("q").expect("there").parameters_json, params);
    let listed = s.projects_for(Some("u2".into())).await.expect("q");
    assert_eq!(listed[0].0.parameters_json, params, "lists read them too");

    // A project's grants go with it.
    assert!(s.delete_project("p3".into()).await.expect("q"));
    assert!(!s.delete_project("p3".into()).await.expect("q"));
    assert_eq!(s.project_grant("p3".into(), "u3".into()).await.expect("q"), None);
    assert!(s.projects_for(Some("u3".into())).await.expect("q").is_empty());
}

async fn purge<S: AccessStore + Store>(s: &S) {
    s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
    add_signing_key(s).await;
    let none = JobOrigin::default;
    s.insert_job(new_job("ended-early", 10, 1000, none())).await.expect("job");
    s.insert_job(new_job("expired-unfinished", 10, 60, none())).await.expect("job");
    s.insert_job(new_job("ended-late", 10, 1000, none())).await.expect("job");
    s.insert_job(new_job("open", 10, 1000, none())).await.expect("job");
    s.cancel_job("ended-early".into(), 50).await.expect("cancel");
    s.cancel_job("ended-late".into(), 150).await.expect("cancel");
    s.create_session(session("gone", "u1", 500)).await.expect("session");
    s.create_session(session("kept", "u1", 501)).await.expect("session");

    assert_eq!(s.purge(100, 100, 500).await.expect("purge"), 2);
    for (id, kept) in [("ended-early", false), ("expired-unfinished", false), ("ended-late", true), ("open", true)] {
        assert_eq!(s.job(id.into(), 500, false).await.expect("q").is_some(), kept, "{id}");
    }
    assert!(s.session("gone".into(), 400, 10_000).await.expect("q").is_none(), "expired session purged");
    assert!(s.session("kept".into(), 400, 10_000).await.expect("q").is_some());
    assert_eq!(s.purge(100, 100, 500).await.expect("purge again"), 0);
}

/// A project query's newest successful result is kept past retention (until
/// `keep_results_after`), per customer; an older success, a newer failure and ad-hoc jobs
/// go at retention; the newest success is what a dashboard shows.
async fn a_projects_latest_result_outlives_retention_and_a_failed_refresh_does_not_replace_it<
    S: AccessStore + Store,
>(
    s: &S,
) {
    use outpost_protocol::{JobOutcome, ResultReport, ResultStats};
    s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
    add_signing_key(s).await;
    let token = crate::store::EnrolTokenRecord {
        id: "t".into(),
        agent: "edge".into(),
        pool: None,
        secret_sha256: "h".into(),
        created_at: 0,
        expires_at: 10_000,
    };
    s.create_enrol_token(token).await.expect("token");
    s.redeem_enrol_token("t".into(), "h".into(), "edge".into(), 1, 10_000).await.expect("db").expect("enrolled");
    let edge =
        crate::store::AgentPeer { name: "edge".into(), cert_issued_at: 1, pool: None, public_key: Arc::from(&[][..]) };
    let origin = |customer: Option<&str>| JobOrigin {
        owner: Some("u1".into()),
        project_id: Some("p1".into()),
        query_index: Some(0),
        customer: customer.map(Into::into),
        filters: None,
    };
    // (id, created, origin, succeeds)
    let runs = [
        ("r1", 10, origin(None), true),
        ("adhoc", 11, JobOrigin::default(), true),
        ("c1", 12, origin(Some("acme")), true),
        ("f1", 13, JobOrigin { filters: Some("us".into()), ..origin(None) }, true),
        ("r2", 20, origin(None), true),
        ("r3", 30, origin(None), false),
    ];
    for (id, created, o, _) in &runs {
        s.insert_job(new_job(id, *created, 1000, o.clone())).await.expect("insert");
    }
    assert_eq!(s.lease_jobs(edge.clone(), 31, 60, 10).await.expect("lease").jobs.len(), runs.len());
    for (id, created, _, ok) in &runs {
        let report = if *ok {
            ResultReport::succeeded(id, "application/json", b"{}", ResultStats::default())
        } else {
            ResultReport::refused(id, JobOutcome::Failed, "query_failed", "no".into(), ResultStats::default())
        };
        s.complete_job(edge.clone(), report, format!("h-{id}"), None, created + 1).await.expect("complete");
    }
    let latest = |customer: Option<&str>, ok: bool| {
        let customer = customer.map(Into::into);
        async move { s.latest_project_job("p1".into(), 0, customer, None, ok).await.expect("q") }
    };
    assert_eq!(latest(None, true).await.as_deref(), Some("r2"), "the newest success is shown");
    assert_eq!(latest(None, false).await.as_deref(), Some("r3"), "the newest run failed");
    assert_eq!(latest(Some("acme"), true).await.as_deref(), Some("c1"));

    // Everything ended by 100; newest successes kept while they ended after 0.
    assert_eq!(s.purge(100, 0, 500).await.expect("purge"), 3, "r1, r3 and the ad-hoc job go");
    // The newest success of each filter values is kept too.
    for (id, kept) in [("r1", false), ("adhoc", false), ("c1", true), ("f1", true), ("r2", true), ("r3", false)] {
        assert_eq!(s.job(id.into(), 500, false).await.expect("q").is_some(), kept, "{id}");
    }
    assert_eq!(latest(None, false).await.as_deref(), Some("r2"));
    // Past the longer retention they go too.
    assert_eq!(s.purge(100, 50, 500).await.expect("purge"), 3);
    assert_eq!(latest(None, true).await, None);
}

/// `results.keep_variants_per_tile`: per project query and customer, the ended jobs of the
/// filter sets run least recently beyond `keep` go; a default filter set, no filters at
/// all, another customer's or query's, and runs still open stay. The values of a filter
/// set no job refers to are forgotten once last used before `before`.
async fn filter_sets_beyond_the_bound_go_but_never_the_default<S: AccessStore + Store>(s: &S) {
    s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
    add_signing_key(s).await;
    let origin = |query: i64, customer: Option<&str>, filters: Option<&str>| JobOrigin {
        owner: Some("u1".into()),
        project_id: Some("p1".into()),
        query_index: Some(query),
        customer: customer.map(Into::into),
        filters: filters.map(Into::into),
    };
    // (id, created, origin, ended)
    let runs = [
        ("open-z", 0, origin(0, None, Some("z")), false),
        ("acme-a", 1, origin(0, Some("acme"), Some("a")), true),
        ("unfiltered", 2, origin(0, None, None), true),
        ("q1-a", 3, origin(1, None, Some("a")), true),
        ("default", 5, origin(0, None, Some("dflt")), true),
        ("a", 10, origin(0, None, Some("a")), true),
        ("b", 20, origin(0, None, Some("b")), true),
        ("c-old", 30, origin(0, None, Some("c")), true),
        ("c", 35, origin(0, None, Some("c")), true),
        ("d-open", 40, origin(0, None, Some("d")), false),
    ];
    for (id, created, o, ended) in &runs {
        s.insert_job(new_job(id, *created, 1000, o.clone())).await.expect("insert");
        if *ended {
            s.cancel_job((*id).into(), created + 1).await.expect("end");
        }
    }
    for (key, was_default) in [("dflt", true), ("a", false), ("b", false), ("c", false), ("d", false), ("z", false)] {
        let set = FilterSet {
            project_id: "p1".into(),
            filters: key.into(),
            values_json: format!("{{\"region\":\"{key}\"}}"),
            was_default,
            at: 1,
        };
        s.remember_filter_set(set).await.expect("remember");
    }
    // A repeat keeps was_default once set.
    let again = FilterSet {
        project_id: "p1".into(),
        filters: "dflt".into(),
        values_json: "{\"region\":\"dflt\"}".into(),
        was_default: false,
        at: 2,
    };
    s.remember_filter_set(again).await.expect("again");
    let values = |key: &str| s.filter_set_values("p1".into(), key.into());
    assert_eq!(values("a").await.expect("q").as_deref(), Some("{\"region\":\"a\"}"));
    assert_eq!(values("nope").await.expect("q"), None);

    // Kept: d (open, newest) and c; a and b go. Nothing else is ranked or ended-and-beyond.
    assert_eq!(s.drop_surplus_filter_sets(2, 0, 100).await.expect("drop"), 2, "a and b go");
    for (id, _, _, _) in &runs {
        let kept = !matches!(*id, "a" | "b");
        assert_eq!(s.job((*id).into(), 100, false).await.expect("q").is_some(), kept, "{id}");
    }
    assert_eq!(s.drop_surplus_filter_sets(2, 0, 100).await.expect("again"), 0, "nothing more beyond the bound");
    assert!(values("b").await.expect("q").is_some(), "values last used after `before` are kept");
    // Values no job refers to any more are forgotten; those of kept jobs stay.
    s.drop_surplus_filter_sets(2, 1000, 100).await.expect("forget");
    assert_eq!(values("b").await.expect("q"), None);
    for key in ["a", "c", "d", "dflt", "z"] {
        assert!(values(key).await.expect("q").is_some(), "{key} is still referred to");
    }
    // With the bound at 1, c goes too (d's run is still open); the default never does.
    assert_eq!(s.drop_surplus_filter_sets(1, 0, 100).await.expect("drop"), 2, "c and c-old go");
    assert!(s.job("default".into(), 100, false).await.expect("q").is_some());
    assert!(s.job("open-z".into(), 100, false).await.expect("q").is_some(), "an open run stays");
}

crate::store::testdb::on_both_backends!(
    projects_and_grants,
    purge,
    a_projects_latest_result_outlives_retention_and_a_failed_refresh_does_not_replace_it,
    filter_sets_beyond_the_bound_go_but_never_the_default,
);
