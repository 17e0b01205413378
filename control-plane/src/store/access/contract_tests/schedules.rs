//! The contract of project schedules on both backends: set and remove, the due list,
//! the compare-and-set claim (two claims racing for one slot: exactly one wins), and the
//! refresh jobs counted against an agent's share.

use super::*;
use crate::store::access::{ScheduleClaim, ScheduleState};

fn scheduled(id: &str, schedule: Option<ScheduleState>) -> ProjectRecord {
    ProjectRecord { schedule, ..project(id, id, "u1") }
}

fn state(next: i64) -> ScheduleState {
    ScheduleState { json: r#"{"cron":"0 6 * * *","timezone":"UTC"}"#.into(), next_run_at: Some(next), done: 0 }
}

fn claim(id: &str, due: i64, done: i64, next: Option<i64>, new_done: i64) -> ScheduleClaim {
    ScheduleClaim { project_id: id.into(), due, done, next_run_at: next, new_done }
}

async fn schedules_set_due_and_claimed<S: AccessStore>(s: &S) {
    s.create_user(user("u1", "ed", Role::Editor)).await.expect("add");
    s.create_project(scheduled("p1", Some(state(100)))).await.expect("p1");
    s.create_project(scheduled("p2", None)).await.expect("p2");
    s.create_project(scheduled("p3", Some(state(50)))).await.expect("p3");
    assert_eq!(s.project("p1".into()).await.expect("q").expect("there").schedule, Some(state(100)));
    assert_eq!(s.project("p2".into()).await.expect("q").expect("there").schedule, None);
    assert_eq!(s.next_schedule_at().await.expect("q"), Some(50));

    let due = |now: i64| async move {
        s.due_projects(now, 10).await.expect("q").into_iter().map(|p| p.id).collect::<Vec<_>>()
    };
    assert!(due(49).await.is_empty());
    assert_eq!(due(100).await, ["p3", "p1"], "the longest due first");
    assert_eq!(s.due_projects(100, 1).await.expect("q").len(), 1, "at most the limit");

    // A slot partly out (3 jobs), then finished and moved on.
    assert!(s.claim_schedule(claim("p3", 50, 0, Some(50), 3)).await.expect("q"));
    assert!(!s.claim_schedule(claim("p3", 50, 0, Some(50), 3)).await.expect("q"), "that view is stale");
    let got = s.project("p3".into()).await.expect("q").expect("there").schedule.expect("scheduled");
    assert_eq!((got.next_run_at, got.done), (Some(50), 3));
    assert!(s.claim_schedule(claim("p3", 50, 3, Some(150), 0)).await.expect("q"));
    assert_eq!(due(100).await, ["p1"]);
    assert_eq!(s.next_schedule_at().await.expect("q"), Some(100));
    // A pattern with no next time: off the due list for good.
    assert!(s.claim_schedule(claim("p1", 100, 0, None, 0)).await.expect("q"));
    assert_eq!(due(i64::MAX).await, ["p3"]);
    assert!(!s.claim_schedule(claim("p2", 0, 0, Some(1), 0)).await.expect("q"), "no schedule: nothing to claim");

    // Set anew (due again), and removed.
    assert!(s.set_project_schedule("p1".into(), Some(state(120))).await.expect("q"));
    assert_eq!(s.project("p1".into()).await.expect("q").expect("there").schedule, Some(state(120)));
    assert!(s.set_project_schedule("p3".into(), None).await.expect("q"));
    assert_eq!(s.project("p3".into()).await.expect("q").expect("there").schedule, None);
    assert_eq!(due(i64::MAX).await, ["p1"]);
    assert!(!s.set_project_schedule("nope".into(), None).await.expect("q"));
    let listed = s.projects_for(None).await.expect("q");
    assert_eq!(listed.iter().find(|(p, _)| p.id == "p1").and_then(|(p, _)| p.schedule.clone()), Some(state(120)));

    // The dashboard's tiles sit beside the schedule: writing either keeps the other.
    let tiles = r#"[{"text":"Daily","w":12,"h":1},{"query":0,"w":6,"h":2}]"#;
    assert!(s.update_project("p1".into(), "p1".into(), "[]".into(), tiles.into(), "[]".into(), 9).await.expect("q"));
    let got = s.project("p1".into()).await.expect("q").expect("there");
    assert_eq!((got.schedule, got.tiles_json.as_str()), (Some(state(120)), tiles), "an edit keeps the schedule");
    assert!(s.set_project_schedule("p1".into(), Some(state(130))).await.expect("q"));
    let due_p1 = s.due_projects(130, 10).await.expect("q");
    assert_eq!(due_p1.iter().map(|p| p.tiles_json.as_str()).collect::<Vec<_>>(), [tiles], "a schedule keeps the tiles");
}

async fn two_claims_race_for_one_slot_and_exactly_one_wins<S: AccessStore>(s: &S) {
    s.create_user(user("u1", "ed", Role::Editor)).await.expect("add");
    for round in 0..10_i64 {
        let id = format!("p{round}");
        s.create_project(scheduled(&id, Some(state(100)))).await.expect("project");
        // Two replicas read the same due slot and both try to move it.
        let (a, b) = tokio::join!(
            s.claim_schedule(claim(&id, 100, 0, Some(200), 0)),
            s.claim_schedule(claim(&id, 100, 0, Some(200), 0))
        );
        let won = [a.expect("a"), b.expect("b")];
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}: exactly one claim wins: {won:?}");
    }
}

async fn refresh_jobs_queued_per_agent_or_pool<S: AccessStore + Store>(s: &S) {
    add_signing_key(s).await;
    let refresh = |q: i64| JobOrigin {
        owner: Some("u1".into()),
        project_id: Some("p1".into()),
        query_index: Some(q),
        customer: None,
        filters: None,
    };
    s.insert_job(new_job("r1", 10, 1000, refresh(0))).await.expect("r1");
    s.insert_job(new_job("r2", 10, 1000, refresh(1))).await.expect("r2");
    s.insert_job(new_job("adhoc", 10, 1000, JobOrigin::default())).await.expect("adhoc");
    let mut pooled = new_job("r3", 10, 1000, refresh(2));
    pooled.agent = String::new();
    pooled.pool = Some("etl".into());
    s.insert_job(pooled).await.expect("r3");
    assert_eq!(s.queued_refresh_jobs("edge".into(), None).await.expect("q"), 2, "ad-hoc jobs do not count");
    assert_eq!(s.queued_refresh_jobs("other".into(), None).await.expect("q"), 0);
    assert_eq!(s.queued_refresh_jobs("pool:etl".into(), Some("etl".into())).await.expect("q"), 1);
    s.cancel_job("r1".into(), 20).await.expect("cancel");
    assert_eq!(s.queued_refresh_jobs("edge".into(), None).await.expect("q"), 1, "only waiting jobs count");
}

crate::store::testdb::on_both_backends!(
    schedules_set_due_and_claimed,
    two_claims_race_for_one_slot_and_exactly_one_wins,
    refresh_jobs_queued_per_agent_or_pool,
);
