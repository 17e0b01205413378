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

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Wake-up registry.
#[derive(Debug)]
pub struct Hub {
    agents: Mutex<HashMap<String, Arc<Notify>>>,
    jobs: Mutex<HashMap<String, Arc<Notify>>>,
    /// Waiters for a job's end only: a lease does not wake them (a result waiter read the
    /// job again for nothing on every lease, issue 24).
    job_ends: Mutex<HashMap<String, Arc<Notify>>>,
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
            n.notify_waiters();
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

    /// The notifier a waiter for `job_id` waits on: woken by every change of the job, or
    /// with `end_only` only when it ends. Pair with [`Hub::release_job`].
    pub fn job(&self, job_id: &str, end_only: bool) -> Arc<Notify> {
        let map = if end_only { &self.job_ends } else { &self.jobs };
        Arc::clone(lock(map).entry(job_id.to_owned()).or_default())
    }

    /// Drops the registry entry when the last waiter leaves.
    pub fn release_job(&self, job_id: &str, end_only: bool, waiter: Arc<Notify>) {
        let mut map = lock(if end_only { &self.job_ends } else { &self.jobs });
        // One reference in the map, one held by this waiter.
        if Arc::strong_count(&waiter) <= 2 {
            map.remove(job_id);
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
            n.notify_waiters();
        }
    }

    /// Wakes everyone waiting for `job_id`, which has ended.
    pub fn job_done(&self, job_id: &str) {
        self.job_done_local(job_id);
        self.publish(Kind::JobDone, job_id);
    }

    fn job_done_local(&self, job_id: &str) {
        if let Some(n) = lock(&self.jobs).remove(job_id) {
            n.notify_waiters();
        }
        if let Some(n) = lock(&self.job_ends).remove(job_id) {
            n.notify_waiters();
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
        hub.release_job("j1", false, any);
        hub.release_job("j1", true, end);
        assert!(lock(&hub.jobs).is_empty() && lock(&hub.job_ends).is_empty(), "nothing left registered");
    }

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
