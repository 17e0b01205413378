//! The contract of users (and the last enabled admin), groups and shares, sessions, API
//! tokens and single sign-on identities, on both backends.

use super::*;

async fn last_admin<S: AccessStore>(s: &S) {
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

async fn last_admin_under_concurrent_changes<S: AccessStore>(s: &S) {
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

async fn users_and_passwords<S: AccessStore>(s: &S) {
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

async fn shares_and_groups<S: AccessStore>(s: &S) {
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
    assert_eq!(s.add_share(share("s2", None, Some("analysts"))).await.expect("dup"), Err(AccessRefusal::AlreadyShared));
    assert_eq!(
        s.add_share(share("s3", Some("nobody"), None)).await.expect("unknown"),
        Err(AccessRefusal::NoUser { name: "nobody".into() })
    );
    assert_eq!(
        s.add_share(share("s3", None, Some("nope"))).await.expect("unknown"),
        Err(AccessRefusal::NoGroup { name: "nope".into() })
    );
    assert!(s.shared_connections("u1".into()).await.expect("q").is_empty());
    s.set_group_member("analysts".into(), "ed".into(), true).await.expect("q").expect("member");
    s.set_group_member("analysts".into(), "ed".into(), true).await.expect("q").expect("member again");
    s.set_group_member("analysts".into(), "al".into(), true).await.expect("q").expect("member");
    assert_eq!(s.shared_connections("u1".into()).await.expect("q"), vec![("edge".into(), "warehouse".into())]);
    assert_eq!(
        s.set_group_member("nope".into(), "ed".into(), true).await.expect("q"),
        Err(AccessRefusal::NoGroup { name: "nope".into() })
    );
    assert_eq!(
        s.set_group_member("analysts".into(), "nobody".into(), true).await.expect("q"),
        Err(AccessRefusal::NoUser { name: "nobody".into() })
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

async fn sessions<S: AccessStore>(s: &S) {
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

async fn api_tokens<S: AccessStore>(s: &S) {
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

async fn oidc<S: AccessStore>(s: &S) {
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

crate::store::testdb::on_both_backends!(
    last_admin,
    last_admin_under_concurrent_changes,
    users_and_passwords,
    shares_and_groups,
    sessions,
    api_tokens,
    oidc,
);
