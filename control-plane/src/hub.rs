//! In-process wake-ups: a queued job wakes its agent's long-poll at once, and a stored
//! result wakes the API callers waiting for it. No polling interval anywhere.
//!
//! Waiters follow the race-free pattern: take a `Notified` future, `enable()` it, check
//! the store, then await. A notification that arrives between the check and the await
//! is therefore not lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Wake-up registry.
#[derive(Debug, Default)]
pub struct Hub {
    agents: Mutex<HashMap<String, Arc<Notify>>>,
    jobs: Mutex<HashMap<String, Arc<Notify>>>,
    revocations: Mutex<HashMap<String, CancellationToken>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    /// The notifier an agent's long-polls wait on.
    pub fn agent(&self, name: &str) -> Arc<Notify> {
        Arc::clone(lock(&self.agents).entry(name.to_owned()).or_default())
    }

    /// Wakes every long-poll of `name`.
    pub fn wake_agent(&self, name: &str) {
        if let Some(n) = lock(&self.agents).get(name) {
            n.notify_waiters();
        }
    }

    /// The notifier a result waiter for `job_id` waits on; pair with [`Hub::release_job`].
    pub fn job(&self, job_id: &str) -> Arc<Notify> {
        Arc::clone(lock(&self.jobs).entry(job_id.to_owned()).or_default())
    }

    /// Drops the registry entry when the last waiter leaves.
    pub fn release_job(&self, job_id: &str, waiter: Arc<Notify>) {
        let mut map = lock(&self.jobs);
        // One reference in the map, one held by this waiter.
        if Arc::strong_count(&waiter) <= 2 {
            map.remove(job_id);
        }
    }

    /// Cancelled when `agent` is revoked: its open connections are cut at once.
    pub fn revocation(&self, agent: &str) -> CancellationToken {
        lock(&self.revocations).entry(agent.to_owned()).or_default().clone()
    }

    /// Cuts the agent's connections and wakes its long-polls (which then see the revocation).
    pub fn revoke(&self, agent: &str) {
        if let Some(t) = lock(&self.revocations).remove(agent) {
            t.cancel();
        }
        self.wake_agent(agent);
    }

    /// Wakes everyone waiting for `job_id`.
    /// Wakes those waiting on a job whose state changed but is not final (it was leased).
    pub fn job_changed(&self, job_id: &str) {
        if let Some(n) = lock(&self.jobs).get(job_id) {
            n.notify_waiters();
        }
    }

    pub fn job_done(&self, job_id: &str) {
        if let Some(n) = lock(&self.jobs).remove(job_id) {
            n.notify_waiters();
        }
    }
}
