//! Schedules: the pattern, zone and interval checks and the next time across DST (unit),
//! and the scheduler's tick on a manual clock against a real control plane (SQLite store,
//! real dispatch): a due project's jobs go out once, the slot moves on, missed slots run
//! once, the per-agent share holds the rest back for later ticks, and a refused owner
//! moves the schedule on, audited.

use std::sync::Arc;

use chrono::{TimeZone, Utc};

use super::spec::{describe, parse_cron, parse_timezone, Schedule};
use crate::app::projects::ProjectQuery;
use crate::app::{self, App};
use crate::clock::Clock;
use crate::config::ControlPlaneConfig;
use crate::store::access::{AccessStore, AuditFilter, ProjectRecord, Role, UserRecord, UserUpdate};
use crate::store::{AgentPeer, EnrolTokenRecord, JobFilter, JobState, Store};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().expect("a UTC time").timestamp()
}

fn schedule(cron: &str, tz: &str) -> Schedule {
    Schedule { cron: cron.into(), timezone: tz.into(), customers: Vec::new() }
}

fn query(customer_param: Option<u16>) -> ProjectQuery {
    serde_json::from_value(serde_json::json!({
        "name": "q", "agent": "edge", "connection": "sample", "sql": "SELECT 1",
        "render": { "kind": "table" }, "customer_param": customer_param,
    }))
    .expect("query")
}

fn message<T: std::fmt::Debug>(r: Result<T, crate::http::ApiError>) -> String {
    r.expect_err("refused").message
}

#[test]
fn a_pattern_of_the_wrong_shape_is_refused_in_words() {
    assert_eq!(
        parse_cron("0 0 6 * * 1-5").expect_err("6 fields"),
        "6 fields given (seconds are not supported); use 5: minute hour day month weekday"
    );
    assert!(parse_cron("0 6 * *").expect_err("4").starts_with("4 fields given; use 5"));
    assert!(parse_cron("").expect_err("empty").contains("must not be empty"));
    let bad = parse_cron("61 6 * * *").expect_err("minute 61");
    assert_eq!(bad, "the minute field \"61\" is not valid (it takes 0-59): Number out of bounds");
    let bad = parse_cron("0 6 * * MON-FRY").expect_err("weekday");
    assert!(bad.starts_with("the weekday field \"MON-FRY\" is not valid (it takes 0-7 or SUN-SAT"), "{bad}");
    assert!(parse_cron("0 6 * * 1-5").is_ok());
    assert!(parse_cron("@daily").is_ok());
    let m = message(schedule("0 0 30 2 *", "UTC").check(&[query(None)], 300, utc(2026, 12, 7, 0, 0)));
    assert!(m.starts_with("schedule.cron: never matches"), "{m}");
}

#[test]
fn an_unknown_zone_is_refused_with_close_names() {
    assert!(parse_timezone("Europe/Berlin").is_ok());
    assert!(parse_timezone("UTC").is_ok());
    let m = parse_timezone("europe/berlin").expect_err("case");
    assert!(m.contains("\"Europe/Berlin\""), "{m}");
    let m = parse_timezone("Europe/Berln").expect_err("typo");
    assert!(m.contains("did you mean \"Europe/Berlin\""), "{m}");
    let m = parse_timezone("Berlin").expect_err("city");
    assert!(m.contains("\"Europe/Berlin\""), "{m}");
    let m = parse_timezone("Nowhere/Atall").expect_err("none");
    assert!(m.contains("is not an IANA time zone name (such as"), "{m}");
    let m = message(schedule("0 6 * * *", "CEST").parsed());
    assert!(m.starts_with("schedule.timezone: "), "{m}");
}

#[test]
fn a_pattern_that_runs_more_often_than_the_minimum_is_refused() {
    let now = utc(2026, 12, 7, 0, 0);
    let m = message(schedule("* * * * *", "UTC").check(&[query(None)], 300, now));
    assert_eq!(m, "schedule.cron: runs every 60 s; the least allowed is 300 s (schedules.min_interval_secs)");
    // Hourly at two minutes close together: the shortest gap counts.
    let m = message(schedule("0,2 * * * *", "UTC").check(&[query(None)], 300, now));
    assert!(m.contains("runs every 120 s"), "{m}");
    let (_, first) = schedule("*/5 * * * *", "UTC").check(&[query(None)], 300, now).expect("every 5 min");
    assert_eq!(first, Some(now + 300));
}

#[test]
fn customers_are_required_exactly_when_a_query_takes_one() {
    let now = utc(2026, 12, 7, 0, 0);
    let mut s = schedule("0 6 * * *", "UTC");
    let m = message(s.check(&[query(None), query(Some(1))], 300, now));
    assert!(m.starts_with("schedule.customers: this project's queries take the end customer id"), "{m}");
    s.customers = vec!["acme".into()];
    assert!(s.check(&[query(Some(1))], 300, now).is_ok());
    let m = message(s.check(&[query(None)], 300, now));
    assert!(m.starts_with("schedule.customers: no query of this project takes"), "{m}");
    s.customers = vec!["acme".into(), String::new()];
    assert!(message(s.check(&[query(Some(1))], 300, now)).starts_with("schedule.customers[1]: must be 1 to 128"));
    s.customers = vec!["acme".into(), "acme".into()];
    assert!(
        message(s.check(&[query(Some(1))], 300, now)).starts_with("schedule.customers[1]: \"acme\" is listed twice")
    );
    s.customers = (0..101).map(|i| format!("c{i}")).collect();
    assert!(message(s.check(&[query(Some(1))], 300, now)).starts_with("schedule.customers: give at most 100"));
}

#[test]
fn the_next_run_is_computed_in_the_zone_across_daylight_saving() {
    let berlin = schedule("0 6 * * *", "Europe/Berlin").parsed().expect("parses");
    // Winter: 06:00 CET is 05:00 UTC; spring forward (29 March 2026): 06:00 CEST is 04:00 UTC.
    assert_eq!(berlin.next_after(utc(2026, 3, 27, 12, 0)), Some(utc(2026, 3, 28, 5, 0)));
    assert_eq!(berlin.next_after(utc(2026, 3, 28, 5, 0)), Some(utc(2026, 3, 29, 4, 0)));
    // Fall back (25 October 2026): 06:00 CET is 05:00 UTC again.
    assert_eq!(berlin.next_after(utc(2026, 10, 24, 4, 0)), Some(utc(2026, 10, 25, 5, 0)));

    // A time that the spring-forward day skips (02:30) runs once that day, right after
    // the gap (03:00 CEST, 01:00 UTC), and at 02:30 again the next day.
    let night = schedule("30 2 * * *", "Europe/Berlin").parsed().expect("parses");
    let spring = night.next_after(utc(2026, 3, 28, 12, 0)).expect("runs");
    assert!(spring >= utc(2026, 3, 29, 1, 0) && spring < utc(2026, 3, 29, 2, 0), "spring-forward run at {spring}");
    assert_eq!(night.next_after(spring), Some(utc(2026, 3, 30, 0, 30)));
    // A time that the fall-back day has twice (02:30 CEST, then 02:30 CET) runs once.
    let first = night.next_after(utc(2026, 10, 24, 12, 0)).expect("runs");
    assert_eq!(first, utc(2026, 10, 25, 0, 30));
    assert_eq!(night.next_after(first), Some(utc(2026, 10, 26, 1, 30)));
}

#[test]
fn common_patterns_are_said_in_words() {
    assert_eq!(describe("0 6 * * 1-5"), "Every weekday at 06:00");
    assert_eq!(describe("30 7 * * *"), "Every day at 07:30");
    assert_eq!(describe("0 9 * * 1"), "Every Monday at 09:00");
    assert_eq!(describe("0 6 1 * *"), "On day 1 of every month at 06:00");
    assert_eq!(describe("15 * * * *"), "Every hour at minute 15");
    assert_eq!(describe("*/15 * * * *"), "Every 15 minutes");
    assert_eq!(describe("0 */2 * * *"), "Every 2 hours at minute 0");
    assert_eq!(describe("0 12 * 1,3,5 *"), "At 12:00, in January, March, and May");
}

// ---- The scheduler's tick on a manual clock ----

/// Monday 7 December 2026, 05:00 UTC.
pub(crate) fn t0() -> i64 {
    utc(2026, 12, 7, 5, 0)
}

/// A control plane made by `init` (SQLite), on a manual clock at [`t0`], with agent
/// `edge` (connection `sample`) and an editor `ed` it is shared with.
pub(crate) async fn setup(cap: u32) -> (tempfile::TempDir, Arc<App>, Clock, UserRecord) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("cp");
    app::init(&data, "cp.test", &[], None).await.expect("init");
    let mut cfg = ControlPlaneConfig::with_data_dir(data);
    cfg.jobs.ttl_secs = 3600;
    cfg.schedules.max_queued_per_agent = cap;
    let clock = Clock::manual(t0());
    let app = app::open_with_clock(cfg, clock.clone()).await.expect("open");
    let now = clock.now();
    let token = EnrolTokenRecord {
        id: "t-edge".into(),
        agent: "edge".into(),
        pool: None,
        secret_sha256: "h".into(),
        created_at: now,
        expires_at: now + 600,
    };
    app.store.create_enrol_token(token).await.expect("token");
    app.store
        .redeem_enrol_token("t-edge".into(), "h".into(), "edge".into(), now, now + 86_400)
        .await
        .expect("db")
        .expect("redeem");
    let peer = AgentPeer { name: "edge".into(), cert_issued_at: now, pool: None, public_key: Arc::from(&[][..]) };
    app.store.touch_agent(peer, now, Some("1.0.0".into()), Some(vec!["sample".into()])).await.expect("seen");
    let ed = UserRecord {
        id: "u-ed".into(),
        name: "ed".into(),
        role: Role::Editor,
        password_hash: None,
        created_at: now,
        disabled_at: None,
        last_sign_in: None,
    };
    assert!(app.store.create_user(ed.clone()).await.expect("user"));
    let share = crate::store::access::ShareRecord {
        id: "s1".into(),
        agent: "edge".into(),
        connection: "sample".into(),
        user: Some("ed".into()),
        group: None,
        created_at: now,
        created_by: "admin".into(),
    };
    app.store.add_share(share).await.expect("db").expect("share");
    (dir, app, clock, ed)
}

/// Stores project `id` of `queries`, owned by `owner`, on schedule `s` (set now).
async fn scheduled_project(app: &App, id: &str, owner: &UserRecord, queries: &[ProjectQuery], s: &Schedule) {
    let now = app.clock.now();
    let (_, first) = s.check(queries, app.cfg.schedules.min_interval_secs, now).expect("valid schedule");
    let p = ProjectRecord {
        id: id.into(),
        name: id.into(),
        owner_id: owner.id.clone(),
        owner: owner.name.clone(),
        queries_json: serde_json::to_string(queries).expect("json"),
        embed_epoch: 0,
        embed_origins: "[]".into(),
        tiles_json: "[]".into(),
        parameters_json: "[]".into(),
        created_at: now,
        updated_at: now,
        schedule: Some(app.schedule_state(s, first).expect("state")),
    };
    app.store.create_project(p).await.expect("project");
}

/// The project's jobs as (query, customer, state), oldest first.
async fn jobs_of(app: &App, project: &str) -> Vec<(i64, Option<String>, JobState)> {
    let mut all = app.store.jobs(JobFilter::default(), 1000, app.clock.now()).await.expect("jobs");
    all.retain(|j| j.origin.project_id.as_deref() == Some(project));
    all.sort_by_key(|j| j.created_at);
    all.into_iter().map(|j| (j.origin.query_index.unwrap_or(-1), j.origin.customer, j.state)).collect()
}

async fn next_run(app: &App, project: &str) -> (Option<i64>, i64) {
    let p = app.store.project(project.into()).await.expect("db").expect("project");
    let s = p.schedule.expect("scheduled");
    (s.next_run_at, s.done)
}

async fn schedule_audit(app: &App) -> Vec<(String, serde_json::Value)> {
    let f = AuditFilter { actor: Some(super::ACTOR.into()), limit: 100, ..Default::default() };
    app.store.audit(f).await.expect("audit").into_iter().map(|e| (e.outcome, e.detail.unwrap_or_default())).collect()
}

#[tokio::test]
async fn a_due_project_runs_once_as_its_owner_and_missed_slots_run_once() {
    let (_dir, app, clock, ed) = setup(4).await;
    scheduled_project(&app, "p1", &ed, &[query(None)], &schedule("0 6 * * 1-5", "Europe/Berlin")).await;
    // Monday 06:00 in Berlin is 05:00 UTC: t0 itself, so the first slot is next Tuesday's.
    let tuesday = utc(2026, 12, 8, 5, 0);
    assert_eq!(next_run(&app, "p1").await, (Some(tuesday), 0));

    assert_eq!(app.run_due(clock.now()).await.expect("tick").dispatched, 0, "nothing due yet");
    clock.set(tuesday);
    let tick = app.run_due(clock.now()).await.expect("tick");
    assert_eq!((tick.dispatched, tick.refused, tick.deferred), (1, 0, false));
    assert_eq!(next_run(&app, "p1").await, (Some(utc(2026, 12, 9, 5, 0)), 0), "on to Wednesday");
    assert_eq!(app.run_due(clock.now()).await.expect("tick").dispatched, 0, "the slot ran once");
    let jobs = app.store.jobs(JobFilter { owner: Some(ed.id.clone()), ..Default::default() }, 10, clock.now());
    assert_eq!(jobs.await.expect("jobs").len(), 1, "the job is the owner's");

    // Down from Tuesday to Saturday noon: Wednesday-Friday's slots run once, not three times,
    // and the next is Monday's (a weekday pattern).
    clock.set(utc(2026, 12, 12, 12, 0));
    assert_eq!(app.run_due(clock.now()).await.expect("tick").dispatched, 1);
    assert_eq!(next_run(&app, "p1").await, (Some(utc(2026, 12, 14, 5, 0)), 0));
    assert_eq!(jobs_of(&app, "p1").await.len(), 2);

    let audit = schedule_audit(&app).await;
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0].0, "ok");
    assert_eq!(audit[0].1["slot"], tuesday);
    assert_eq!(audit[0].1["jobs"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn the_per_agent_share_holds_jobs_back_for_later_ticks_and_loses_none() {
    let (_dir, app, clock, ed) = setup(4).await;
    let mut s = schedule("0 6 * * *", "UTC");
    s.customers = vec!["acme".into(), "globex".into(), "initech".into()];
    // One query for everyone and two per customer: 1 + 2 × 3 = 7 jobs a slot.
    let queries = [query(None), query(Some(1)), query(Some(1))];
    scheduled_project(&app, "p1", &ed, &queries, &s).await;
    let due = utc(2026, 12, 7, 6, 0);
    clock.set(due);

    let tick = app.run_due(clock.now()).await.expect("tick");
    assert_eq!((tick.dispatched, tick.deferred), (4, true), "four fit the agent's share");
    assert_eq!(next_run(&app, "p1").await, (Some(due), 4), "the slot is still due, four of it out");
    clock.advance(5);
    let tick = app.run_due(clock.now()).await.expect("tick");
    assert_eq!((tick.dispatched, tick.deferred), (0, true), "the share is full: nothing more, nothing lost");

    // The agent takes two: two more go out.
    let queued: Vec<String> = app
        .store
        .jobs(JobFilter { state: Some(JobState::Queued), ..Default::default() }, 10, clock.now())
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| j.id)
        .collect();
    for id in &queued[..2] {
        app.cancel_job(id).await.expect("cancel");
    }
    clock.advance(5);
    assert_eq!(app.run_due(clock.now()).await.expect("tick").dispatched, 2);
    assert_eq!(next_run(&app, "p1").await, (Some(due), 6));
    for id in &queued[2..] {
        app.cancel_job(id).await.expect("cancel");
    }
    // Interactive jobs waiting at the agent do not count against the refreshes' share.
    for _ in 0..5 {
        let req: crate::app::DispatchRequest = serde_json::from_value(serde_json::json!({
            "agent": "edge", "connection": "sample", "sql": "SELECT 2", "render": { "kind": "table" },
        }))
        .expect("request");
        let requester = outpost_protocol::Requester {
            user_id: ed.id.clone(),
            user: ed.name.clone(),
            via: "session".into(),
            project: None,
            query: None,
            customer: None,
        };
        app.dispatch(req, crate::store::JobOrigin::default(), requester, false).await.expect("ad-hoc job");
    }
    clock.advance(5);
    let tick = app.run_due(clock.now()).await.expect("tick");
    assert_eq!((tick.dispatched, tick.deferred), (1, false), "the last job of the slot");
    assert_eq!(next_run(&app, "p1").await, (Some(utc(2026, 12, 8, 6, 0)), 0), "on to the next day");

    let mut got: Vec<(i64, Option<String>)> = jobs_of(&app, "p1").await.into_iter().map(|(q, c, _)| (q, c)).collect();
    got.sort();
    let c = |s: &str| Some(s.to_owned());
    assert_eq!(
        got,
        [
            (0, None),
            (1, c("acme")),
            (1, c("globex")),
            (1, c("initech")),
            (2, c("acme")),
            (2, c("globex")),
            (2, c("initech"))
        ],
        "each job of the slot once"
    );
}

#[tokio::test]
async fn a_refused_owner_is_audited_and_the_schedule_moves_on() {
    let (_dir, app, clock, ed) = setup(4).await;
    scheduled_project(&app, "p1", &ed, &[query(None)], &schedule("0 6 * * *", "UTC")).await;
    let update = UserUpdate { disabled: Some(true), ..Default::default() };
    app.store.update_user("ed".into(), update, clock.now()).await.expect("db").expect("disabled");
    clock.set(utc(2026, 12, 7, 6, 0));
    let tick = app.run_due(clock.now()).await.expect("tick");
    assert_eq!((tick.dispatched, tick.refused), (0, 1));
    assert_eq!(next_run(&app, "p1").await, (Some(utc(2026, 12, 8, 6, 0)), 0), "no hot loop: on to the next slot");
    assert_eq!(app.run_due(clock.now()).await.expect("tick").refused, 0, "refused once a slot");
    assert!(jobs_of(&app, "p1").await.is_empty());
    let audit = schedule_audit(&app).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "denied");
    assert!(audit[0].1["reason"].as_str().unwrap_or_default().contains("owner is disabled"), "{audit:?}");

    // The owner back, the share gone: refused for the connection.
    let update = UserUpdate { disabled: Some(false), ..Default::default() };
    app.store.update_user("ed".into(), update, clock.now()).await.expect("db").expect("enabled");
    assert!(app.store.delete_share("s1".into()).await.expect("db"));
    clock.set(utc(2026, 12, 8, 6, 0));
    assert_eq!(app.run_due(clock.now()).await.expect("tick").refused, 1);
    let audit = schedule_audit(&app).await;
    assert!(audit[1].1["reason"].as_str().unwrap_or_default().contains("no longer has access to edge/sample"));
    assert_eq!(next_run(&app, "p1").await.0, Some(utc(2026, 12, 9, 6, 0)));
}

#[tokio::test]
async fn scheduled_runs_bind_the_parameters_defaults() {
    let (_dir, app, clock, ed) = setup(4).await;
    let q: ProjectQuery = serde_json::from_value(serde_json::json!({
        "name": "q", "agent": "edge", "connection": "sample", "sql": "SELECT $1, $2, $3",
        "render": { "kind": "table" }, "bind": { "1": "region", "2": "period.from", "3": "period.to" },
    }))
    .expect("query");
    scheduled_project(&app, "p1", &ed, std::slice::from_ref(&q), &schedule("0 6 * * *", "UTC")).await;
    let params = serde_json::json!([
        { "name": "region", "kind": "choice", "choices": ["EU", "US"], "default": "US" },
        { "name": "period", "kind": "date_range", "default": { "last_days": 7 } },
    ]);
    let params = crate::app::project_params::checked(params.as_array().expect("list")).expect("valid");
    let (queries, stored) = (serde_json::to_string(&[&q]).expect("json"), crate::app::project_params::to_json(&params));
    let stored = stored.expect("json");
    assert!(app
        .store
        .update_project("p1".into(), "p1".into(), queries, "[]".into(), stored, clock.now())
        .await
        .expect("db"));
    clock.set(utc(2026, 12, 8, 6, 0));
    assert_eq!(app.run_due(clock.now()).await.expect("tick").dispatched, 1);
    let all = app.store.jobs(JobFilter::default(), 10, clock.now()).await.expect("jobs");
    let job = all.iter().find(|j| j.origin.project_id.as_deref() == Some("p1")).expect("the scheduled job");
    let stored = app.store.job_envelope(job.id.clone()).await.expect("db").expect("envelope");
    let spec = crate::store::queue::open_spec(&app.results, &job.id, &stored).expect("spec");
    use outpost_protocol::Param;
    assert_eq!(
        spec.params,
        [Param::Text("US".into()), Param::Text("2026-12-02".into()), Param::Text("2026-12-08".into())],
        "the defaults, the last 7 days read on the run's day"
    );
    let defaults = crate::app::project_params::resolve(&params, None, app.today()).expect("defaults");
    assert_eq!(job.origin.filters, crate::app::project_params::filters_key(&q.bind, &defaults));
    assert!(job.origin.filters.is_some());
}

/// The region each scheduled run of query 0 bound (its `$1`), oldest first.
async fn bound_regions(app: &App, project: &str) -> Vec<outpost_protocol::Param> {
    let mut all = app.store.jobs(JobFilter::default(), 100, app.clock.now()).await.expect("jobs");
    all.retain(|j| j.origin.project_id.as_deref() == Some(project) && j.origin.query_index == Some(0));
    all.sort_by_key(|j| j.created_at);
    let mut out = Vec::new();
    for j in all {
        let stored = app.store.job_envelope(j.id.clone()).await.expect("db").expect("envelope");
        let spec = crate::store::queue::open_spec(&app.results, &j.id, &stored).expect("spec");
        out.extend(spec.params);
    }
    out
}

#[tokio::test]
async fn a_scheduled_run_binds_a_choice_filled_by_a_query_to_its_first_current_choice() {
    let (_dir, app, clock, ed) = setup(8).await;
    let tile: ProjectQuery = serde_json::from_value(serde_json::json!({
        "name": "sales", "agent": "edge", "connection": "sample", "sql": "SELECT sum(n) FROM s WHERE region = $1",
        "render": { "kind": "table" }, "bind": { "1": "region" },
    }))
    .expect("query");
    let source: ProjectQuery = serde_json::from_value(serde_json::json!({
        "name": "regions", "agent": "edge", "connection": "sample", "sql": "SELECT DISTINCT region FROM s",
        "render": { "kind": "table" },
    }))
    .expect("query");
    let queries = [tile, source];
    scheduled_project(&app, "p1", &ed, &queries, &schedule("0 6 * * *", "UTC")).await;
    let params = serde_json::json!([
        { "name": "region", "kind": "choice", "choices_from": { "query": 1, "column": "region" } },
    ]);
    let params = crate::app::project_params::checked(params.as_array().expect("list")).expect("valid");
    let stored = crate::app::project_params::to_json(&params).expect("json");
    let queries_json = serde_json::to_string(&queries).expect("json");
    assert!(app
        .store
        .update_project("p1".into(), "p1".into(), queries_json, "[]".into(), stored, clock.now())
        .await
        .expect("db"));

    // The first run, before the list has ever been filled: the empty text, and it runs.
    clock.set(utc(2026, 12, 7, 6, 0));
    assert_eq!(app.run_due(clock.now()).await.expect("tick").dispatched, 2);
    use outpost_protocol::Param;
    assert_eq!(bound_regions(&app, "p1").await, [Param::Text(String::new())]);

    // The agent answers the source query with its regions.
    let peer =
        AgentPeer { name: "edge".into(), cert_issued_at: clock.now(), pool: None, public_key: Arc::from(&[][..]) };
    let lease_secs = i64::try_from(app.cfg.jobs.lease_secs).expect("secs");
    let got = crate::store::queue::lease_deliverable(&app.store, &app.results, &peer, clock.now(), lease_secs, 10)
        .await
        .expect("lease");
    let mut all = app.store.jobs(JobFilter::default(), 10, clock.now()).await.expect("jobs");
    all.retain(|j| j.origin.query_index == Some(1));
    let source_job = all[0].id.clone();
    assert!(got.jobs.iter().any(|(id, _)| *id == source_job), "the source query was leased");
    let body = br#"{"columns":["region"],"rows":[["EU"],["US"],["EU"]]}"#;
    let report = outpost_protocol::ResultReport::succeeded(
        &source_job,
        "application/json",
        body,
        outpost_protocol::ResultStats::default(),
    );
    let sealed = Some(app.results.seal(&source_job, body));
    let sha = outpost_protocol::encoding::sha256_hex(body);
    app.store.complete_job(peer, report, sha, sealed, clock.now()).await.expect("result stored");

    // The next run binds the first current choice, as the dashboard shows it.
    clock.set(utc(2026, 12, 8, 6, 0));
    assert_eq!(app.run_due(clock.now()).await.expect("tick").dispatched, 2);
    assert_eq!(bound_regions(&app, "p1").await, [Param::Text(String::new()), Param::Text("EU".into())]);
    let audit = schedule_audit(&app).await;
    assert!(audit.iter().all(|(outcome, _)| outcome == "ok"), "{audit:?}");
}
