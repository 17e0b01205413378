//! Bounds the password hashing in flight. One Argon2id verification takes 19 MiB and
//! ~20 ms of a core: a thousand sign-ins at once, each given its own blocking thread,
//! would take gigabytes and starve everything else. Verifications run at most one per
//! core (at most four) at a time; a bounded number of
//! callers wait for a slot until a deadline, and the rest are told to come back
//! (`503` with `Retry-After`) at once. API calls with tokens never hash a password, so
//! they go on answering under such a flood.
//!
//! The hashing runs on threads of its own, one per slot, not on the runtime's blocking
//! pool: glibc keeps a freed 19 MiB Argon2 buffer in the malloc arena of the thread that
//! used it, and the blocking pool's changing threads each got an arena, so ten sign-ins
//! left ~220 MiB resident. With a fixed set of threads the buffers are reused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Callers allowed to wait for a slot; beyond that, refused at once.
const MAX_WAITING: usize = 64;
/// How long a caller waits for a slot.
const MAX_WAIT: Duration = Duration::from_secs(2);
/// Seconds a refused caller is asked to wait.
pub const RETRY_AFTER_SECS: u64 = 2;

/// Password hashing slots, shared by sign-in and password changes.
pub struct PasswordWork {
    slots: Arc<Semaphore>,
    /// Work for the hashing threads (one per slot); they end when this is dropped.
    work: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
    waiting: AtomicUsize,
    max_waiting: usize,
    max_wait: Duration,
}

impl std::fmt::Debug for PasswordWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordWork").field("free_slots", &self.slots.available_permits()).finish_non_exhaustive()
    }
}

/// No slot came free in time: the caller should try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Default for PasswordWork {
    /// One slot per core, at most four (4 × 19 MiB).
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self::new(cores.clamp(1, 4), MAX_WAITING, MAX_WAIT)
    }
}

impl PasswordWork {
    /// `slots` at once, `max_waiting` callers waiting at most `max_wait` each.
    pub fn new(slots: usize, max_waiting: usize, max_wait: Duration) -> Self {
        let (work, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for i in 0..slots {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new().name(format!("password-{i}")).spawn(move || loop {
                let next = queue.lock().map_err(|_| ()).and_then(|q| q.recv().map_err(|_| ()));
                match next {
                    Ok(job) => job(),
                    Err(()) => return,
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "Cannot start a password hashing thread.");
            }
        }
        Self { slots: Arc::new(Semaphore::new(slots)), work, waiting: AtomicUsize::new(0), max_waiting, max_wait }
    }

    /// Runs `f` (the hashing) on a blocking thread once a slot is free.
    pub async fn run<T, F>(&self, f: F) -> Result<T, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(Busy);
                }
                let got = tokio::time::timeout(self.max_wait, Arc::clone(&self.slots).acquire_owned()).await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                match got {
                    Ok(Ok(p)) => p,
                    _ => return Err(Busy),
                }
            }
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Box<dyn FnOnce() + Send> = Box::new(move || {
            let out = f();
            drop(permit);
            let _ = done.send(out);
        });
        self.work.send(job).map_err(|_| Busy)?;
        result.await.map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Never more than `slots` at once; a bounded number wait; the rest are refused at
    /// once; and the waiting ones are refused at their deadline (time paused, not waited).
    #[tokio::test(start_paused = true)]
    async fn at_most_slots_run_a_bounded_queue_waits_and_the_rest_are_refused() {
        let work = Arc::new(PasswordWork::new(2, 3, Duration::from_secs(2)));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (work, running, peak, gate) = (work.clone(), running.clone(), peak.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                work.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    // Held until the test lets it go (bounded, so a failing test ends).
                    let _ = gate.lock().map(|g| g.recv_timeout(Duration::from_secs(10)));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        // Until both slots' work has started (real threads) and the others have queued
        // or been refused.
        while running.load(Ordering::SeqCst) < 2 || tasks.iter().filter(|t| t.is_finished()).count() < 5 {
            tokio::task::yield_now().await;
            std::thread::yield_now();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        let (mut refused_at_once, mut pending) = (0, Vec::new());
        for t in tasks {
            if t.is_finished() {
                assert_eq!(t.await.expect("task"), Err(Busy));
                refused_at_once += 1;
            } else {
                pending.push(t);
            }
        }
        assert_eq!(refused_at_once, 5, "2 run, 3 wait, 5 are told to come back");
        // The deadline passes for the three waiting (the clock is paused: this jumps),
        // while both slots are still taken; then the two running end.
        tokio::time::advance(Duration::from_secs(3)).await;
        while pending.iter().filter(|t| t.is_finished()).count() < 3 {
            tokio::task::yield_now().await;
        }
        for _ in 0..2 {
            release.send(()).expect("release");
        }
        let outcomes: Vec<_> = futures_join(pending).await;
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 2, "the two that ran");
        assert_eq!(outcomes.iter().filter(|o| **o == Err(Busy)).count(), 3, "the waiting ones, at their deadline");
        assert_eq!(peak.load(Ordering::SeqCst), 2, "never more than the slots");
    }

    async fn futures_join(tasks: Vec<tokio::task::JoinHandle<Result<(), Busy>>>) -> Vec<Result<(), Busy>> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    }

    /// A caller that waits gets the slot once one is free (real time: the work runs on
    /// threads of its own).
    #[tokio::test]
    async fn a_waiting_caller_runs_when_a_slot_frees() {
        let work = Arc::new(PasswordWork::new(1, 4, Duration::from_secs(2)));
        let first = tokio::spawn({
            let work = work.clone();
            async move { work.run(|| std::thread::sleep(Duration::from_millis(20))).await }
        });
        tokio::task::yield_now().await;
        let second = work.run(|| 7).await;
        assert_eq!(second, Ok(7));
        assert_eq!(first.await.expect("task"), Ok(()));
    }
}
