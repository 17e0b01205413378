//! The access store's contract: every scenario on SQLite and on a fresh PostgreSQL database.

//! Every scenario runs on both backends (SQLite and PostgreSQL), so they are held to
//! the same behaviour.

use std::future::Future;
use std::sync::Arc;

use super::*;
use crate::store::access::AuditFilter;
use crate::store::postgres::testdb::TestDb;
use crate::store::postgres::PgStore;
use crate::store::{JobOrigin, KeySetChange, NewJob, SigningKeyRecord, SqliteStore, Store};

fn user(id: &str, name: &str, role: Role) -> UserRecord {
    UserRecord {
        id: id.into(),
        name: name.into(),
        role,
        password_hash: None,
        created_at: 1,
        disabled_at: None,
        last_sign_in: None,
    }
}

fn session(h: &str, uid: &str, expires_at: i64) -> SessionRecord {
    SessionRecord {
        id_sha256: h.into(),
        user_id: uid.into(),
        csrf: "c".into(),
        created_at: 100,
        last_seen: 100,
        expires_at,
    }
}

fn disable() -> UserUpdate {
    UserUpdate { disabled: Some(true), ..Default::default() }
}

async fn on_sqlite<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<SqliteStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("dir");
    let s = SqliteStore::open(&dir.path().join("cp.db")).expect("open");
    scenario(Arc::new(s)).await;
}

/// Runs the scenario on a fresh database, which is dropped even when it fails.
async fn on_pg<F, Fut>(scenario: F)
where
    F: FnOnce(Arc<PgStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = TestDb::new().await;
    let result = tokio::spawn(scenario(Arc::new(db.store.clone()))).await;
    db.drop().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// One test per backend for a scenario `async fn name<S: AccessStore + Store>(s: Arc<S>)`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::on_sqlite(super::$name).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::on_pg(super::$name).await;
            }
        }
    )*};
}

on_both!(
    last_admin,
    last_admin_under_concurrent_changes,
    users_and_passwords,
    shares_and_groups,
    sessions,
    api_tokens,
    projects_and_grants,
    oidc,
    audit_log,
    purge,
    a_projects_latest_result_outlives_retention_and_a_failed_refresh_does_not_replace_it,
);

async fn last_admin<S: AccessStore>(s: Arc<S>) {
    assert!(s.create_user(user("u1", "root", Role::Admin)).await.expect("add"));
    assert!(!s.create_user(user("u9", "root", Role::Viewer)).await.expect("dup"));
    let e = s.update_user("root".into(), disable(), 5).await;
    assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
    let e = s.update_user("root".into(), UserUpdate { role: Some(Role::Editor), ..Default::default() }, 5).await;
    assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
    let root = s.user_by_name("root".into()).await.expect("get").expect("there");
    assert_eq!((root.role, root.disabled_at), (Role::Admin, None), "the refused change was rolled back");
    assert!(s.create_user(user("u2", "second", Role::Admin)).await.expect("add"));
    let u = s.update_user("root".into(), disable(), 5).await.expect("ok").expect("found");
    assert_eq!(u.disabled_at, Some(5));
    // Disabling again keeps the first time; enabling clears it.
    let u = s.update_user("root".into(), disable(), 9).await.expect("ok").expect("found");
    assert_eq!(u.disabled_at, Some(5));
    let e = s.update_user("second".into(), disable(), 6).await;
    assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
    let u = s
        .update_user("root".into(), UserUpdate { disabled: Some(false), ..Default::default() }, 7)
        .await
        .expect("ok")
        .expect("found");
    assert_eq!(u.disabled_at, None);
    assert!(s.update_user("nobody".into(), disable(), 5).await.expect("ok").is_none());
}

async fn last_admin_under_concurrent_changes<S: AccessStore>(s: Arc<S>) {
    // Each round starts with exactly two enabled admins, a and b; disabling one and
    // demoting the other at once must leave one.
    let mut survivor: Option<String> = None;
    for round in 0..10 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        s.create_user(user(&a, &a, Role::Admin)).await.expect("add");
        s.create_user(user(&b, &b, Role::Admin)).await.expect("add");
        if let Some(prev) = survivor.take() {
            s.update_user(prev, disable(), 5).await.expect("ok").expect("found");
        }
        let demote = UserUpdate { role: Some(Role::Viewer), ..Default::default() };
        let (ra, rb) = tokio::join!(s.update_user(a.clone(), disable(), 5), s.update_user(b.clone(), demote, 5));
        let refused = [&ra, &rb].iter().filter(|r| matches!(r, Err(StoreError::Conflict(_)))).count();
        assert_eq!(refused, 1, "round {round}: exactly one of two changes goes through: {ra:?} {rb:?}");
        assert!(ra.is_ok() || rb.is_ok(), "round {round}: {ra:?} {rb:?}");
        let admins: Vec<_> = s
            .users()
            .await
            .expect("users")
            .into_iter()
            .filter(|u| u.role == Role::Admin && u.disabled_at.is_none())
            .map(|u| u.name)
            .collect();
        let expected = if ra.is_ok() { &b } else { &a };
        assert_eq!(admins, std::slice::from_ref(expected), "round {round}");
        survivor = Some(expected.clone());
    }
}

async fn users_and_passwords<S: AccessStore>(s: Arc<S>) {
    assert!(s.create_user(user("u1", "root", Role::Admin)).await.expect("add"));
    let mut ed = user("u2", "ed", Role::Editor);
    ed.password_hash = Some("$argon2id$old".into());
    assert!(s.create_user(ed).await.expect("add"));
    assert!(s.create_user(user("u3", "Zed", Role::Viewer)).await.expect("add"));
    let names: Vec<_> = s.users().await.expect("users").into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["Zed", "ed", "root"], "byte order, like SQLite's BINARY");
    let got = s.user_by_id("u2".into()).await.expect("q").expect("there");
    assert_eq!(
        (got.name.as_str(), got.role, got.password_hash.as_deref()),
        ("ed", Role::Editor, Some("$argon2id$old"))
    );
    assert!(!format!("{got:?}").contains("argon2"), "Debug redacts the hash");
    assert!(s.user_by_id("nope".into()).await.expect("q").is_none());
    assert!(s.user_by_name("nope".into()).await.expect("q").is_none());

    s.record_sign_in("u2".into(), 77).await.expect("sign in");
    assert_eq!(s.user_by_name("ed".into()).await.expect("q").expect("there").last_sign_in, Some(77));

    // A new password ends the sessions; a role change does not.
    s.create_session(session("s1", "u2", 1000)).await.expect("session");
    let u = s
        .update_user("ed".into(), UserUpdate { role: Some(Role::Viewer), ..Default::default() }, 5)
        .await
        .expect("ok")
        .expect("found");
    assert_eq!((u.role, u.password_hash.as_deref()), (Role::Viewer, Some("$argon2id$old")));
    assert!(s.session("s1".into(), 101, 600).await.expect("q").is_some());
    let u = s
        .update_user("ed".into(), UserUpdate { password_hash: Some("$argon2id$new".into()), ..Default::default() }, 5)
        .await
        .expect("ok")
        .expect("found");
    assert_eq!((u.role, u.password_hash.as_deref()), (Role::Viewer, Some("$argon2id$new")));
    assert!(s.session("s1".into(), 102, 600).await.expect("q").is_none());
}

async fn shares_and_groups<S: AccessStore>(s: Arc<S>) {
    s.create_user(user("u1", "ed", Role::Editor)).await.expect("add");
    s.create_user(user("u2", "al", Role::Viewer)).await.expect("add");
    assert!(s.create_group("analysts".into(), 1).await.expect("group"));
    assert!(!s.create_group("analysts".into(), 2).await.expect("dup group"));
    let share = |id: &str, user: Option<&str>, group: Option<&str>| ShareRecord {
        id: id.into(),
        agent: "edge".into(),
        connection: "warehouse".into(),
        user: user.map(Into::into),
        group: group.map(Into::into),
        created_at: 1,
        created_by: "root".into(),
    };
    assert_eq!(s.add_share(share("s1", None, Some("analysts"))).await.expect("share"), Ok(()));
    assert_eq!(
        s.add_share(share("s2", None, Some("analysts"))).await.expect("dup"),
        Err("this connection is already shared with them".into())
    );
    assert_eq!(
        s.add_share(share("s3", Some("nobody"), None)).await.expect("unknown"),
        Err("no user \"nobody\"".into())
    );
    assert_eq!(s.add_share(share("s3", None, Some("nope"))).await.expect("unknown"), Err("no group \"nope\"".into()));
    assert!(s.shared_connections("u1".into()).await.expect("q").is_empty());
    s.set_group_member("analysts".into(), "ed".into(), true).await.expect("q").expect("member");
    s.set_group_member("analysts".into(), "ed".into(), true).await.expect("q").expect("member again");
    s.set_group_member("analysts".into(), "al".into(), true).await.expect("q").expect("member");
    assert_eq!(s.shared_connections("u1".into()).await.expect("q"), vec![("edge".into(), "warehouse".into())]);
    assert_eq!(s.set_group_member("nope".into(), "ed".into(), true).await.expect("q"), Err("no group \"nope\"".into()));
    assert_eq!(
        s.set_group_member("analysts".into(), "nobody".into(), true).await.expect("q"),
        Err("no user \"nobody\"".into())
    );
    assert!(s.create_group("Beta".into(), 3).await.expect("group"));
    let groups = s.groups().await.expect("groups");
    assert_eq!(
        groups,
        vec![
            GroupRecord { name: "Beta".into(), created_at: 3, members: vec![] },
            GroupRecord { name: "analysts".into(), created_at: 1, members: vec!["al".into(), "ed".into()] },
        ]
    );
    s.set_group_member("analysts".into(), "ed".into(), false).await.expect("q").expect("left");
    assert!(s.shared_connections("u1".into()).await.expect("q").is_empty());

    // Direct shares, the same pair through a user and a group counted once.
    assert_eq!(s.add_share(share("s4", Some("al"), None)).await.expect("share"), Ok(()));
    let mut other = share("s5", Some("al"), None);
    other.agent = "Core".into();
    assert_eq!(s.add_share(other).await.expect("share"), Ok(()));
    assert_eq!(
        s.shared_connections("u2".into()).await.expect("q"),
        vec![("Core".into(), "warehouse".into()), ("edge".into(), "warehouse".into())]
    );
    let listed: Vec<_> = s.shares().await.expect("shares").into_iter().map(|x| (x.id, x.user, x.group)).collect();
    assert_eq!(
        listed,
        vec![
            ("s5".into(), Some("al".into()), None),
            ("s1".into(), None, Some("analysts".into())),
            ("s4".into(), Some("al".into()), None),
        ]
    );
    assert!(s.delete_share("s4".into()).await.expect("delete"));
    assert!(!s.delete_share("s4".into()).await.expect("delete again"));
    // A group's shares and memberships go with it.
    assert!(s.delete_group("analysts".into()).await.expect("delete"));
    assert!(!s.delete_group("analysts".into()).await.expect("delete again"));
    assert_eq!(s.shared_connections("u2".into()).await.expect("q"), vec![("Core".into(), "warehouse".into())]);
    assert_eq!(s.shares().await.expect("shares").len(), 1);
}

async fn sessions<S: AccessStore>(s: Arc<S>) {
    s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
    s.create_user(user("u2", "ed", Role::Editor)).await.expect("add");
    s.create_session(session("a", "u2", 1000)).await.expect("a");
    let (got, u) = s.session("a".into(), 150, 60).await.expect("q").expect("live");
    assert_eq!((got.user_id.as_str(), got.csrf.as_str(), got.last_seen, u.name.as_str()), ("u2", "c", 100, "ed"));
    // Used at 150: idle until 210.
    let (got, _) = s.session("a".into(), 205, 60).await.expect("q").expect("live");
    assert_eq!(got.last_seen, 150, "the record read, before this use");
    assert!(s.session("a".into(), 300, 60).await.expect("q").is_none(), "idle");
    assert!(s.session("a".into(), 301, 600).await.expect("q").is_none(), "deleted when found idle");
    s.create_session(session("b", "u2", 1000)).await.expect("b");
    assert!(s.session("b".into(), 1000, 10_000).await.expect("q").is_none(), "absolute expiry");
    s.create_session(session("c", "u2", 1000)).await.expect("c");
    s.update_user("ed".into(), disable(), 120).await.expect("d");
    assert!(s.session("c".into(), 121, 600).await.expect("q").is_none(), "disabled");
    s.create_session(session("d", "u1", 1000)).await.expect("d");
    assert!(s.session("d".into(), 101, 600).await.expect("q").is_some());
    s.delete_session("d".into()).await.expect("delete");
    assert!(s.session("d".into(), 102, 600).await.expect("q").is_none(), "ended");
    s.delete_session("d".into()).await.expect("delete again");
    assert!(s.session("never".into(), 102, 600).await.expect("q").is_none());
}

async fn api_tokens<S: AccessStore>(s: Arc<S>) {
    s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
    s.create_user(user("u2", "ed", Role::Editor)).await.expect("add");
    let token = |id: &str, uid: &str, created_at: i64, expires_at: Option<i64>| ApiTokenRecord {
        id: id.into(),
        token_sha256: format!("hash-{id}"),
        user_id: uid.into(),
        user: String::new(),
        name: format!("label {id}"),
        scopes: "*".into(),
        created_at,
        expires_at,
        last_used: None,
        revoked_at: None,
    };
    s.add_token(token("t2", "u2", 10, Some(1000))).await.expect("add");
    s.add_token(token("t1", "u1", 10, None)).await.expect("add");
    s.add_token(token("t3", "u2", 5, Some(100))).await.expect("add");
    s.add_token(token("t9", "nobody", 5, None)).await.expect("an unknown user's token is not stored");
    assert!(s.token("t9".into()).await.expect("q").is_none());

    let (t, u) = s.token_auth("hash-t2".into(), 200).await.expect("q").expect("live");
    assert_eq!((t.id.as_str(), t.user.as_str(), t.last_used, u.name.as_str()), ("t2", "ed", None, "ed"));
    assert_eq!(s.token("t2".into()).await.expect("q").expect("there").last_used, Some(200));
    // Recorded to the minute.
    s.token_auth("hash-t2".into(), 250).await.expect("q").expect("live");
    assert_eq!(s.token("t2".into()).await.expect("q").expect("there").last_used, Some(200));
    s.token_auth("hash-t2".into(), 261).await.expect("q").expect("live");
    assert_eq!(s.token("t2".into()).await.expect("q").expect("there").last_used, Some(261));

    assert!(s.token_auth("hash-t3".into(), 100).await.expect("q").is_none(), "expired");
    assert!(s.token_auth("hash-t3".into(), 99).await.expect("q").is_some());
    assert!(s.token_auth("hash-t1".into(), 1 << 40).await.expect("q").is_some(), "no expiry");
    assert!(s.token_auth("hash-nope".into(), 1).await.expect("q").is_none());

    let all: Vec<_> = s.tokens(None).await.expect("q").into_iter().map(|t| t.id).collect();
    assert_eq!(all, ["t3", "t1", "t2"]);
    let mine: Vec<_> = s.tokens(Some("u2".into())).await.expect("q").into_iter().map(|t| t.id).collect();
    assert_eq!(mine, ["t3", "t2"]);

    assert!(s.revoke_token("t2".into(), 300).await.expect("revoke"));
    assert!(!s.revoke_token("t2".into(), 301).await.expect("again"));
    assert!(!s.revoke_token("nope".into(), 301).await.expect("unknown"));
    let t = s.token("t2".into()).await.expect("q").expect("there");
    assert_eq!((t.revoked_at, t.status(400)), (Some(300), "revoked"));
    assert!(s.token_auth("hash-t2".into(), 400).await.expect("q").is_none(), "revoked");

    s.update_user("ed".into(), disable(), 500).await.expect("ok").expect("found");
    assert!(s.token_auth("hash-t3".into(), 50).await.expect("q").is_none(), "user disabled");
}

async fn projects_and_grants<S: AccessStore + Store>(s: Arc<S>) {
    s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
    s.create_user(user("u2", "ed", Role::Editor)).await.expect("add");
    s.create_user(user("u3", "vi", Role::Viewer)).await.expect("add");
    let project = |id: &str, name: &str, owner: &str| ProjectRecord {
        id: id.into(),
        name: name.into(),
        owner_id: owner.into(),
        owner: String::new(),
        queries_json: "[]".into(),
        embed_epoch: 0,
        created_at: 1,
        updated_at: 1,
    };
    s.create_project(project("p1", "sales", "u2")).await.expect("p1");
    s.create_project(project("p2", "Costs", "u1")).await.expect("p2");
    s.create_project(project("p3", "sales", "u1")).await.expect("p3");
    let got = s.project("p1".into()).await.expect("q").expect("there");
    assert_eq!((got.owner.as_str(), got.owner_id.as_str()), ("ed", "u2"));
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
        Err("no user \"nobody\"".into())
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

    assert!(s.update_project("p1".into(), "Sales".into(), "[{\"sql\":\"x\"}]".into(), 9).await.expect("q"));
    assert!(!s.update_project("nope".into(), "x".into(), "[]".into(), 9).await.expect("q"));
    let got = s.project("p1".into()).await.expect("q").expect("there");
    assert_eq!((got.name.as_str(), got.queries_json.as_str(), got.updated_at), ("Sales", "[{\"sql\":\"x\"}]", 9));

    assert_eq!(s.bump_embed_epoch("p1".into()).await.expect("q"), Some(1));
    assert_eq!(s.bump_embed_epoch("p1".into()).await.expect("q"), Some(2));
    assert_eq!(s.bump_embed_epoch("nope".into()).await.expect("q"), None);
    assert_eq!(s.project("p1".into()).await.expect("q").expect("there").embed_epoch, 2);

    // Jobs of project queries: the newest per (query, customer), ties by insertion.
    add_signing_key(&*s).await;
    let origin = |customer: Option<&str>| JobOrigin {
        owner: Some("u2".into()),
        project_id: Some("p1".into()),
        query_index: Some(0),
        customer: customer.map(Into::into),
    };
    assert_eq!(s.latest_project_job("p1".into(), 0, None, false).await.expect("q"), None);
    s.insert_job(new_job("j1", 10, 1000, origin(None))).await.expect("j1");
    s.insert_job(new_job("j2", 20, 1000, origin(None))).await.expect("j2");
    s.insert_job(new_job("j3", 20, 1000, origin(None))).await.expect("j3");
    s.insert_job(new_job("j4", 30, 1000, origin(Some("acme")))).await.expect("j4");
    s.insert_job(new_job("j5", 5, 1000, origin(Some("acme")))).await.expect("j5");
    assert_eq!(s.latest_project_job("p1".into(), 0, None, false).await.expect("q"), Some("j3".into()));
    assert_eq!(s.latest_project_job("p1".into(), 0, Some("acme".into()), false).await.expect("q"), Some("j4".into()));
    assert_eq!(s.latest_project_job("p1".into(), 0, Some("other".into()), false).await.expect("q"), None);
    assert_eq!(s.latest_project_job("p1".into(), 1, None, false).await.expect("q"), None);

    // A project's grants go with it.
    assert!(s.delete_project("p3".into()).await.expect("q"));
    assert!(!s.delete_project("p3".into()).await.expect("q"));
    assert_eq!(s.project_grant("p3".into(), "u3".into()).await.expect("q"), None);
    assert!(s.projects_for(Some("u3".into())).await.expect("q").is_empty());
}

async fn add_signing_key<S: Store>(s: &S) {
    let key = SigningKeyRecord {
        key_id: "k1".into(),
        public_key: "AAAA".into(),
        status: "active".into(),
        created_at: 1,
        activated_at: Some(1),
        retired_at: None,
    };
    let change = KeySetChange {
        version: 1,
        statement_json: "{}".into(),
        keys: vec![key],
        resign: None,
        envelopes: None,
        now: 1,
    };
    s.commit_key_set(change).await.expect("key set");
}

fn new_job(id: &str, created_at: i64, expires_at: i64, origin: JobOrigin) -> NewJob {
    NewJob {
        id: id.into(),
        agent: "edge".into(),
        pool: None,
        connection: "warehouse".into(),
        envelope_json: "{}".into(),
        key_id: "k1".into(),
        created_at,
        expires_at,
        origin,
    }
}

async fn oidc<S: AccessStore>(s: Arc<S>) {
    s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
    s.create_user(user("u2", "ed", Role::Editor)).await.expect("add");
    let iss = "https://idp.example";
    assert!(!s.oidc_linked("u2".into(), iss.into()).await.expect("q"));
    assert!(s.oidc_user(iss.into(), "sub-1".into()).await.expect("q").is_none());
    assert!(s.link_oidc(iss.into(), "sub-1".into(), "u2".into(), 5).await.expect("link"));
    assert!(!s.link_oidc(iss.into(), "sub-1".into(), "u1".into(), 6).await.expect("taken"));
    assert_eq!(s.oidc_user(iss.into(), "sub-1".into()).await.expect("q").expect("linked").name, "ed");
    assert!(s.oidc_user("https://other".into(), "sub-1".into()).await.expect("q").is_none());
    assert!(s.oidc_linked("u2".into(), iss.into()).await.expect("q"));
    assert!(!s.oidc_linked("u2".into(), "https://other".into()).await.expect("q"));
    assert!(!s.oidc_linked("u1".into(), iss.into()).await.expect("q"));
    // Two subjects of one issuer on one user.
    assert!(s.link_oidc(iss.into(), "sub-2".into(), "u2".into(), 7).await.expect("link"));
    assert!(s.oidc_linked("u2".into(), iss.into()).await.expect("q"));
}

async fn audit_log<S: AccessStore>(s: Arc<S>) {
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
    let q = |f: AuditFilter| {
        let s = Arc::clone(&s);
        async move { actions(s.audit(AuditFilter { limit: 100, ..f }).await.expect("q")) }
    };
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
    let page = |after: Option<i64>| {
        let s = Arc::clone(&s);
        async move { s.audit(AuditFilter { after, limit: 2, ..Default::default() }).await.expect("q") }
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

async fn purge<S: AccessStore + Store>(s: Arc<S>) {
    s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
    add_signing_key(&*s).await;
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

/// A status out of `u16` range is a typed corruption, not a panic or a wrap.
#[tokio::test]
async fn an_out_of_range_audit_status_is_corrupt() {
    on_pg(|s| async move {
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

/// A project query's newest successful result is kept past retention (until
/// `keep_results_after`), per customer; an older success, a newer failure and ad-hoc jobs
/// go at retention; the newest success is what a dashboard shows.
async fn a_projects_latest_result_outlives_retention_and_a_failed_refresh_does_not_replace_it<
    S: AccessStore + Store,
>(
    s: Arc<S>,
) {
    use outpost_protocol::{JobOutcome, ResultReport, ResultStats};
    s.create_user(user("u1", "root", Role::Admin)).await.expect("add");
    add_signing_key(&*s).await;
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
    };
    // (id, created, origin, succeeds)
    let runs = [
        ("r1", 10, origin(None), true),
        ("adhoc", 11, JobOrigin::default(), true),
        ("c1", 12, origin(Some("acme")), true),
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
        let s = Arc::clone(&s);
        let customer = customer.map(Into::into);
        async move { s.latest_project_job("p1".into(), 0, customer, ok).await.expect("q") }
    };
    assert_eq!(latest(None, true).await.as_deref(), Some("r2"), "the newest success is shown");
    assert_eq!(latest(None, false).await.as_deref(), Some("r3"), "the newest run failed");
    assert_eq!(latest(Some("acme"), true).await.as_deref(), Some("c1"));

    // Everything ended by 100; newest successes kept while they ended after 0.
    assert_eq!(s.purge(100, 0, 500).await.expect("purge"), 3, "r1, r3 and the ad-hoc job go");
    for (id, kept) in [("r1", false), ("adhoc", false), ("c1", true), ("r2", true), ("r3", false)] {
        assert_eq!(s.job(id.into(), 500, false).await.expect("q").is_some(), kept, "{id}");
    }
    assert_eq!(latest(None, false).await.as_deref(), Some("r2"));
    // Past the longer retention they go too.
    assert_eq!(s.purge(100, 50, 500).await.expect("purge"), 2);
    assert_eq!(latest(None, true).await, None);
}
