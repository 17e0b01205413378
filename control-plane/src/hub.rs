//! Wake-ups: a queued job wakes its agent's long-poll at once, and a stored result wakes
//! the API callers waiting for it. No polling interval anywhere.
//!
//! With several replicas on PostgreSQL, every wake-up is also published (`NOTIFY`) and
//! each replica applies the others' to its own waiters ([`Hub::apply_remote`]): an agent
//! long-polling replica A wakes the moment a job is queued through replica B. A lost
//! notification costs latency, never a job: waiters always re-read the store, and a
//! replica whose listening connection broke wakes every waiter once it is back.
//!
//! Waiters follow the race-free pattern: take a `Notified` future, `enable()` it, check
//! the store, then await. A notification that arrives between the check and the await
//! is therefore not lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use outpost_protocol::{Reason, ResultReport, ResultStats};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{JobRecord, JobState};

/// How a job ended, as the replica that stored its result knows it. The result waiters on
/// this replica are handed it with their wake-up and answer from it: a job that ends here
/// is not read again from the store (issue 24). Waiters on other replicas are woken by the
/// published wake-up and read the store.
#[derive(Debug, Clone)]
pub struct JobEnd {
    /// The agent that reported it.
    agent: String,
    state: JobState,
    finished_at: i64,
    reason: Option<Reason>,
    stats: ResultStats,
    content_type: Option<String>,
    /// The rendered body as stored: sealed.
    sealed_body: Option<Vec<u8>>,
}

impl JobEnd {
    /// The end an accepted `report` stored (the fields the store's result statement
    /// writes, as a read gives them back).
    pub fn from_report(agent: &str, report: &ResultReport, sealed_body: Option<Vec<u8>>, now: i64) -> Self {
        Self {
            agent: agent.to_owned(),
            state: JobState::from(report.status),
            finished_at: now,
            reason: report.reason.clone(),
            stats: report.stats.clone(),
            content_type: report.content_type.clone(),
            sealed_body,
        }
    }

    /// `rec`, the same job as read before it ended (with its body asked for), as the store
    /// reads it now. Only what a result answer uses is exact: `attempts` and
    /// `cancel_requested_at` stay as they were read.
    pub fn apply(&self, mut rec: JobRecord) -> JobRecord {
        rec.agent.clone_from(&self.agent);
        rec.state = self.state;
        rec.finished_at = Some(self.finished_at);
        rec.reason.clone_from(&self.reason);
        rec.stats = Some(self.stats.clone());
        rec.content_type.clone_from(&self.content_type);
        rec.body.clone_from(&self.sealed_body);
        rec
    }
}

/// A waiter registered by [`Hub::job`]; it leaves the registry when dropped: the map entry
/// goes with its last waiter, and only if it is still the entry this waiter joined (a job
/// that ended took its entry out, and a later waiter may have made a new one).
pub struct JobWait<'h> {
    hub: &'h Hub,
    job_id: String,
    end_only: bool,
    waiter: Option<Arc<JobWaiter>>,
}

impl std::ops::Deref for JobWait<'_> {
    type Target = JobWaiter;

    fn deref(&self) -> &JobWaiter {
        self.waiter.as_deref().unwrap_or_else(|| unreachable!("taken only in drop"))
    }
}

impl Drop for JobWait<'_> {
    fn drop(&mut self) {
        let Some(waiter) = self.waiter.take() else { return };
        let mut map = lock(self.hub.job_map(self.end_only));
        let ours = map.get(&self.job_id).is_some_and(|e| Arc::ptr_eq(e, &waiter));
        // Dropped under the lock: two waiters leaving at once cannot both see the other.
        drop(waiter);
        if ours && map.get(&self.job_id).is_some_and(|e| Arc::strong_count(e) == 1) {
            map.remove(&self.job_id);
        }
    }
}

/// What a waiter for a job waits on: its wake-up and, when the job ended on this replica
/// and the waiter waits for the end, how it ended.
#[derive(Debug, Default)]
pub struct JobWaiter {
    notify: Notify,
    ended: std::sync::OnceLock<JobEnd>,
}

impl JobWaiter {
    /// The next wake-up ([`Notify::notified`]).
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// How the job ended, when it ended on this replica.
    pub fn ended(&self) -> Option<&JobEnd> {
        self.ended.get()
    }
}

/// Wake-up registry.
#[derive(Debug)]
pub struct Hub {
    agents: Mutex<HashMap<String, Arc<Notify>>>,
    jobs: Mutex<HashMap<String, Arc<JobWaiter>>>,
    /// Waiters for a job's end only: a lease does not wake them (a result waiter read the
    /// job again for nothing on every lease, issue 24).
    job_ends: Mutex<HashMap<String, Arc<JobWaiter>>>,
    revocations: Mutex<HashMap<String, CancellationToken>>,
    /// Where wake-ups for other replicas go (set when the store is shared).
    publisher: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<String>>,
    /// This replica's random id, so that it skips its own published wake-ups.
    origin: String,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            agents: Mutex::default(),
            jobs: Mutex::default(),
            job_ends: Mutex::default(),
            revocations: Mutex::default(),
            publisher: std::sync::OnceLock::new(),
            origin: outpost_protocol::encoding::hex(&outpost_protocol::ids::random_bytes::<8>()),
        }
    }
}

/// What a published wake-up asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Agent,
    JobChanged,
    JobDone,
    Revoke,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Agent => "a",
            Kind::JobChanged => "j",
            Kind::JobDone => "d",
            Kind::Revoke => "r",
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    /// From now on every wake-up is also sent on `tx` (as `origin kind name`) for the
    /// other replicas.
    pub fn publish_to(&self, tx: tokio::sync::mpsc::UnboundedSender<String>) {
        let _ = self.publisher.set(tx);
    }

    fn publish(&self, kind: Kind, name: &str) {
        if let Some(tx) = self.publisher.get() {
            let _ = tx.send(format!("{} {} {name}", self.origin, kind.tag()));
        }
    }

    /// Applies a wake-up another replica published; this replica's own are skipped.
    /// Returns whether the payload was understood.
    pub fn apply_remote(&self, payload: &str) -> bool {
        let mut parts = payload.splitn(3, ' ');
        let (Some(origin), Some(tag), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        if origin == self.origin {
            return true;
        }
        match tag {
            "a" => self.wake_agent_local(name),
            "j" => self.job_changed_local(name),
            "d" => self.job_done_local(name),
            "r" => self.revoke_local(name),
            _ => return false,
        }
        true
    }

    /// Wakes every waiter (each re-reads the store): after notifications may have been
    /// missed, e.g. while the listening connection was down.
    pub fn wake_all(&self) {
        for n in lock(&self.agents).values() {
            n.notify_waiters();
        }
        for n in lock(&self.jobs).values().chain(lock(&self.job_ends).values()) {
            n.notify.notify_waiters();
        }
    }

    /// The notifier an agent's long-polls wait on.
    pub fn agent(&self, name: &str) -> Arc<Notify> {
        Arc::clone(lock(&self.agents).entry(name.to_owned()).or_default())
    }

    /// Wakes every long-poll of `name` (an agent, or `pool:<name>` for every member), on
    /// every replica.
    pub fn wake_agent(&self, name: &str) {
        self.wake_agent_local(name);
        self.publish(Kind::Agent, name);
    }

    fn wake_agent_local(&self, name: &str) {
        if let Some(n) = lock(&self.agents).get(name) {
            n.notify_waiters();
        }
    }

    /// The registration of a waiter for `job_id`: woken by every change of the job, or with
    /// `end_only` only when it ends. It is undone when dropped, also when the request that
    /// waits is dropped half-way (its client went away).
    pub fn job(&self, job_id: &str, end_only: bool) -> JobWait<'_> {
        let waiter = Arc::clone(lock(self.job_map(end_only)).entry(job_id.to_owned()).or_default());
        JobWait { hub: self, job_id: job_id.to_owned(), end_only, waiter: Some(waiter) }
    }

    fn job_map(&self, end_only: bool) -> &Mutex<HashMap<String, Arc<JobWaiter>>> {
        if end_only {
            &self.job_ends
        } else {
            &self.jobs
        }
    }

    /// Cancelled when `agent` is revoked: its open connections are cut at once.
    pub fn revocation(&self, agent: &str) -> CancellationToken {
        lock(&self.revocations).entry(agent.to_owned()).or_default().clone()
    }

    /// Cuts the agent's connections and wakes its long-polls (which then see the
    /// revocation), on every replica.
    pub fn revoke(&self, agent: &str) {
        self.revoke_local(agent);
        self.publish(Kind::Revoke, agent);
    }

    fn revoke_local(&self, agent: &str) {
        if let Some(t) = lock(&self.revocations).remove(agent) {
            t.cancel();
        }
        self.wake_agent_local(agent);
    }

    /// Wakes those waiting on a job whose state changed but is not final (it was leased).
    pub fn job_changed(&self, job_id: &str) {
        self.job_changed_local(job_id);
        self.publish(Kind::JobChanged, job_id);
    }

    fn job_changed_local(&self, job_id: &str) {
        if let Some(n) = lock(&self.jobs).get(job_id) {
            n.notify.notify_waiters();
        }
    }

    /// Wakes everyone waiting for `job_id`, which has ended.
    pub fn job_done(&self, job_id: &str) {
        self.job_done_local(job_id);
        self.publish(Kind::JobDone, job_id);
    }

    /// Whether a result waiter on this replica waits for `job_id` (worth a [`JobEnd`]).
    pub fn awaits_end(&self, job_id: &str) -> bool {
        lock(&self.job_ends).contains_key(job_id)
    }

    /// [`Hub::job_done`] for a job whose result this replica stored: its result waiters
    /// here are handed `end` and need not read the job.
    pub fn job_ended(&self, job_id: &str, end: JobEnd) {
        if let Some(n) = lock(&self.job_ends).remove(job_id) {
            let _ = n.ended.set(end);
            n.notify.notify_waiters();
        }
        self.job_done(job_id);
    }

    fn job_done_local(&self, job_id: &str) {
        if let Some(n) = lock(&self.jobs).remove(job_id) {
            n.notify.notify_waiters();
        }
        if let Some(n) = lock(&self.job_ends).remove(job_id) {
            n.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_published_wake_up_reaches_the_other_replica_and_not_its_sender() {
        let (a, b) = (Hub::default(), Hub::default());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        a.publish_to(tx);
        let waiter = b.agent("edge-1");
        let notified = waiter.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        a.wake_agent("edge-1");
        let payload = rx.recv().await.expect("published");
        assert!(payload.ends_with(" a edge-1"), "{payload}");
        // The sender ignores its own echo; the other replica wakes its waiter.
        let own = a.agent("edge-1");
        let own_notified = own.notified();
        tokio::pin!(own_notified);
        own_notified.as_mut().enable();
        assert!(a.apply_remote(&payload));
        assert!(futures_now(own_notified.as_mut()).is_none(), "a replica must not wake on its own echo");
        assert!(b.apply_remote(&payload));
        notified.await;
        assert!(!b.apply_remote("garbage"));
    }

    #[tokio::test]
    async fn a_lease_wakes_the_waiters_for_any_change_and_only_the_end_wakes_result_waiters() {
        let hub = Hub::default();
        let (any, end) = (hub.job("j1", false), hub.job("j1", true));
        {
            let (any_n, end_n) = (any.notified(), end.notified());
            tokio::pin!(any_n, end_n);
            any_n.as_mut().enable();
            end_n.as_mut().enable();
            hub.job_changed("j1");
            assert!(futures_now(any_n.as_mut()).is_some(), "a state waiter wakes on the lease");
            assert!(futures_now(end_n.as_mut()).is_none(), "a result waiter does not");
            hub.job_done("j1");
            assert!(futures_now(end_n.as_mut()).is_some(), "the end wakes the result waiter");
        }
        drop((any, end));
        assert!(lock(&hub.jobs).is_empty() && lock(&hub.job_ends).is_empty(), "nothing left registered");
    }

    #[tokio::test]
    async fn a_waiter_leaves_the_registry_when_dropped_also_mid_wait_and_never_takes_a_newer_entry() {
        let hub = Hub::default();
        let (a, b) = (hub.job("j1", true), hub.job("j1", true));
        drop(a);
        assert!(hub.awaits_end("j1"), "b still waits");
        // A request dropped while it waits (its client went away) leaves nothing behind.
        let waiting = async {
            let w = hub.job("j2", true);
            w.notified().await;
        };
        {
            tokio::pin!(waiting);
            assert!(futures_now(waiting.as_mut()).is_none());
        }
        assert!(!hub.awaits_end("j2"), "a dropped request's entry stayed");
        // The job ends (its entry goes), a new waiter comes: the old one leaving must not
        // take the new one's entry.
        hub.job_done("j1");
        let c = hub.job("j1", true);
        drop(b);
        assert!(hub.awaits_end("j1"), "the newer waiter's entry was removed");
        drop(c);
        assert!(lock(&hub.job_ends).is_empty());
    }

    #[tokio::test]
    async fn an_end_stored_here_is_handed_to_result_waiters_only() {
        let hub = Hub::default();
        assert!(!hub.awaits_end("j1"), "nobody waits yet");
        let (any, end) = (hub.job("j1", false), hub.job("j1", true));
        assert!(hub.awaits_end("j1"));
        let report = outpost_protocol::ResultReport::succeeded("j1", "application/json", b"{}", ResultStats::default());
        hub.job_ended("j1", JobEnd::from_report("edge-1", &report, Some(b"sealed".to_vec()), 7));
        assert_eq!(end.ended().map(|e| e.state), Some(JobState::Succeeded));
        assert!(any.ended().is_none(), "a waiter for any change reads the job again");
        // A waiter that comes after the end reads the store.
        assert!(hub.job("j1", true).ended().is_none());
    }

    /// The record a result waiter builds from a handed-over end is the record the store
    /// reads once the job has ended, on both backends, for a success with a body, a
    /// failure with a reason, and a pool job read while still queued.
    async fn a_handed_over_end_is_what_the_store_reads_after<S: crate::store::Store>(store: &S) {
        use crate::store::contract_tests::{enrol_member, job, peer, pool_job};
        use outpost_protocol::ids::new_job_id;
        use outpost_protocol::{JobOutcome, ResultReport};
        let stats = ResultStats { rows_read: 3, bytes: 2, duration_ms: 4, ..ResultStats::default() };
        let success = |id: &str| ResultReport::succeeded(id, "image/svg+xml", b"<svg/>", stats.clone());
        let failure = |id: &str| ResultReport {
            job_id: id.to_owned(),
            status: JobOutcome::Failed,
            reason: Some(Reason { code: "query_failed".into(), message: "relation \"x\" does not exist".into() }),
            content_type: None,
            body: None,
            stats: stats.clone(),
            audit_head: None,
        };
        enrol_member(store, "m1", "eu").await;
        let pooled = |id: &str| pool_job(id, "eu");
        let direct = |id: &str| job(id, 5000);
        type Make<'a, T> = &'a (dyn Fn(&str) -> T + Sync);
        let cases: [(&str, Make<'_, crate::store::NewJob>, Make<'_, ResultReport>, bool); 3] = [
            ("edge-1", &direct, &success, true),
            ("edge-1", &direct, &failure, true),
            ("m1", &pooled, &success, false),
        ];
        for (n, (agent, new_job, report, read_leased)) in cases.into_iter().enumerate() {
            let id = new_job_id();
            store.insert_job(new_job(&id)).await.expect("insert");
            let mut member = peer(agent);
            member.pool = (agent == "m1").then(|| "eu".to_owned());
            let read = || async { store.job(id.clone(), 1003, true).await.expect("read").expect("job") };
            let queued = read().await;
            assert_eq!(store.lease_jobs(member.clone(), 1001, 60, 1).await.expect("lease").jobs.len(), 1, "case {n}");
            let before = if read_leased { read().await } else { queued };
            let report = report(&id);
            let sealed = report.body_bytes().expect("body").map(|b| [b"sealed:".as_slice(), &b].concat());
            let end = JobEnd::from_report(agent, &report, sealed.clone(), 1002);
            let done = store.complete_job(member, report, "hash".into(), sealed, 1002).await.expect("complete");
            assert_eq!(done, crate::store::CompleteOutcome::Accepted, "case {n}");
            let after = read().await;
            let mut handed = end.apply(before);
            // A job read while queued did not know how often it would be handed out.
            handed.attempts = after.attempts;
            assert_eq!(format!("{handed:?}"), format!("{after:?}"), "case {n}");
        }
    }

    crate::store::testdb::on_both_backends!(
        seed: crate::store::contract_tests::seed;
        a_handed_over_end_is_what_the_store_reads_after,
    );

    /// Polls a future once.
    fn futures_now<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = f;
        match std::pin::Pin::new(&mut f).poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}
