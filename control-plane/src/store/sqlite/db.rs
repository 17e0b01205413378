//! The embedded database's connections: one writer thread that commits in groups, and a
//! small pool of read-only connections beside it.
//!
//! Every change runs on the writer's connection, in order. Changes that arrive while the
//! writer is busy are run together, each inside its own savepoint (an error undoes that
//! change alone), and committed once: under load one commit carries many changes, so the
//! WAL receives each touched page once per group instead of once per change. A caller
//! hears back only after the commit, so nothing is acknowledged (an audit record, a
//! queued job) that a crash could take back, other than what `synchronous=NORMAL` already
//! allows (a power cut may lose the last commits; a killed process loses nothing
//! committed).
//!
//! A small change by key (a job queued, leased or finished; an audit record) runs on the
//! caller's own thread instead when the database is idle: no other change in flight, few
//! lately ([`Load`]), the writer's connection free, and the WAL small enough that its
//! commit cannot be the one that copies it ([`Checkpoints::behind`]). It is then one
//! change in one transaction, without the two thread hand-offs, which were a fifth of a small job's
//! time when requests come one at a time (issue 24). Under load every change goes to the
//! writer's thread: the hand-off's delay is what lets changes gather into one commit, and
//! a commit per change cost a fifth of the throughput when tried. A small change never
//! waits on its caller's thread for a lock: when another process holds the database's
//! write lock, it goes to the writer's thread like any other.
//!
//! Lookups by key that never change anything run on the pool's connections, on the
//! caller's own thread, in parallel with the writer (WAL readers see the last commit and
//! do not block it). Those connections are opened
//! read-only, so a change sent there by mistake fails instead of bypassing the writer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use outpost_common::sqlite_checkpoints::{self, Checkpoints};
use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// Most changes committed together.
const MAX_GROUP: usize = 256;
/// How long a statement waits for another connection's lock (the writer's, a reader's,
/// another process's) before it fails as busy.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read-only connections, opened as needed and kept: each one parses the schema and
/// prepares its statements once, so they are not opened and closed per read.
const MAX_READERS: usize = 4;

/// Runs one change on the writer's connection (or, when the group could not begin, only
/// hears why) and returns how it tells its caller the outcome once the group's commit is
/// known (`None`: committed).
struct Change {
    /// Run outside any transaction (a WAL checkpoint cannot run inside one).
    alone: bool,
    run: Run,
}
type Run = Box<dyn FnOnce(Result<&mut Connection, &str>) -> Answer + Send>;
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// The writer's queue and the read-only pool of one database file.
#[derive(Clone)]
pub struct SqliteDb {
    changes: mpsc::Sender<Change>,
    writer: Arc<Writer>,
    readers: Arc<Readers>,
    checkpoints: Arc<Checkpoints>,
}

/// The writer's connection, which its thread and a small change's caller take in turn.
struct Writer {
    conn: Mutex<Connection>,
    /// Changes sent to the writer's thread that it has not taken yet.
    queued: AtomicUsize,
    /// How busy the database is, which decides where a small change runs.
    load: Load,
    /// Changes run on their caller's thread.
    inline: AtomicU64,
}

impl Writer {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A change's panic is caught inside it; a poisoned lock only means a panic
        // between changes, and a transaction it left open is rolled back before the next.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection that may be in use.
    permits: Arc<tokio::sync::Semaphore>,
}

impl SqliteDb {
    /// Hands `conn` (opened, configured and migrated) to a new writer thread, with its
    /// checkpoints on a thread of their own ([`outpost_common::sqlite_checkpoints`]).
    pub fn start(path: &Path, mut conn: Connection) -> Result<Self, StoreError> {
        let checkpoints = sqlite_checkpoints::start(path, &mut conn).map_err(|e| StoreError::Task(e.to_string()))?;
        let (changes, queue) = mpsc::channel::<Change>();
        let writer = Arc::new(Writer {
            conn: Mutex::new(conn),
            queued: AtomicUsize::new(0),
            load: Load::default(),
            inline: AtomicU64::new(0),
        });
        let thread_writer = Arc::clone(&writer);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_groups(&thread_writer, &queue))
            .map_err(|e| StoreError::Task(format!("cannot start the database writer: {e}")))?;
        Ok(Self {
            changes,
            writer,
            checkpoints,
            readers: Arc::new(Readers {
                path: path.to_owned(),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            }),
        })
    }

    /// Runs `f` on the writer's connection and returns its result once it is committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.queue(Mode::Group, f).await
    }

    /// [`write`](Self::write) for a small change by key (a few rows found by an index):
    /// run on the caller's thread, in a transaction of its own, when the database is idle
    /// (no other change in flight and few lately, nothing queued, the writer's connection
    /// free, the WAL under the checkpointer's threshold, no other process holding the
    /// write lock); otherwise sent to the writer's thread. Anything that scans or may
    /// touch many rows goes through [`write`](Self::write), so that no caller's thread is
    /// held long.
    pub async fn write_small<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.queue(Mode::Small, f).await
    }

    /// Runs `f` on the writer's connection outside any transaction, after the changes
    /// queued before it are committed (for `PRAGMA wal_checkpoint`).
    pub async fn write_alone<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.queue(Mode::Alone, f).await
    }

    /// The checkpoints beside the writer: a checkpoint the writer runs itself between its
    /// changes goes through [`Checkpoints::alone`].
    pub fn checkpoints(&self) -> Arc<Checkpoints> {
        Arc::clone(&self.checkpoints)
    }

    async fn queue<T, F>(&self, mode: Mode, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let alone = mode == Mode::Alone;
        let others = self.writer.load.arrive();
        let _in_flight = InFlight(&self.writer.load);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let run = Box::new(move |c: Result<&mut Connection, &str>| -> Answer {
            let result = match c {
                Ok(c) if alone => caught(c, f),
                Ok(c) => in_savepoint(c, f),
                Err(e) => Err(StoreError::Task(format!("cannot begin a transaction: {e}"))),
            };
            Box::new(move |commit_failed: Option<&str>| {
                let result = match (result, commit_failed) {
                    (Ok(_), Some(e)) => Err(StoreError::Task(format!("commit failed: {e}"))),
                    (r, _) => r,
                };
                let _ = tx.send(result);
            })
        });
        let change = Change { alone, run };
        let change = match mode {
            Mode::Small if self.writer.load.idle(others) => self.try_inline(change).err(),
            Mode::Small | Mode::Group | Mode::Alone => Some(change),
        };
        if let Some(change) = change {
            self.writer.queued.fetch_add(1, Ordering::SeqCst);
            self.changes.send(change).map_err(|_| {
                self.writer.queued.fetch_sub(1, Ordering::SeqCst);
                StoreError::Task("the database writer has stopped".into())
            })?;
        }
        rx.await.map_err(|_| StoreError::Task("the database writer stopped before answering".into()))?
    }

    /// Runs `change` on the caller's thread when nothing is queued for the writer and its
    /// connection is free; hands it back otherwise. Its answer is sent before this returns.
    fn try_inline(&self, change: Change) -> Result<(), Change> {
        if self.writer.queued.load(Ordering::SeqCst) != 0 {
            return Err(change);
        }
        let mut conn = match self.writer.conn.try_lock() {
            Ok(conn) => conn,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(change),
        };
        // A commit past the checkpointer's threshold may copy the WAL and wait for its
        // `fsync`s: the writer's thread does that, not a caller's. Read under the lock,
        // after the last commit on this connection (a group's, say).
        if self.checkpoints.behind() {
            return Err(change);
        }
        end_stale_transaction(&conn);
        // Never wait on the caller's thread: with another process's write lock held (a
        // CLI command), `BEGIN IMMEDIATE` fails at once and the writer's thread waits.
        let begun = conn.busy_timeout(Duration::ZERO).and_then(|()| run_cached(&conn, "BEGIN IMMEDIATE"));
        let restored = conn.busy_timeout(BUSY_TIMEOUT);
        if begun.is_err() || restored.is_err() {
            end_stale_transaction(&conn);
            return Err(change);
        }
        let answer = (change.run)(Ok(&mut conn));
        commit(&conn, &mut true, &mut vec![answer]);
        self.writer.inline.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many changes ran on their caller's thread.
    #[cfg(test)]
    pub(crate) fn inline_changes(&self) -> u64 {
        self.writer.inline.load(Ordering::Relaxed)
    }

    /// Runs `f` on a read-only connection, beside the writer, on the caller's thread.
    ///
    /// Only for lookups by key (a token, a job, an agent, the active key): each takes a
    /// few microseconds from a prepared statement, less than handing it to a blocking
    /// thread and back did (under load the hand-offs, not the reads, were a fifth of the
    /// control plane's CPU time). A WAL reader never waits for the writer. Anything that
    /// scans goes through the writer's thread ([`write`](Self::write)) or its own task.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = &self.readers;
        let _permit =
            readers.permits.acquire().await.map_err(|_| StoreError::Task("the reader pool is closed".into()))?;
        let idle = readers.idle.lock().map_err(|_| StoreError::Task("reader pool poisoned".into()))?.pop();
        let conn = match idle {
            Some(c) => c,
            None => open_reader(&readers.path)?,
        };
        let result = f(&conn);
        if let Ok(mut idle) = readers.idle.lock() {
            idle.push(conn);
        }
        result
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    plan_once(&conn)?;
    Ok(conn)
}

/// Keeps each cached statement's plan for good: SQLite (3.54 here) marks a statement for
/// recompilation when a bound value might change its plan (a parameter compared with
/// `=`, for one), and rusqlite clears the bindings of every statement it puts back in its
/// cache, which then recompiles it at the next step. That was every store query on every
/// call: 14% of the control plane's CPU time under load went to parsing the API-token
/// check again. Our plans never depend on bound values (there are no `sqlite_stat`
/// tables and no `LIKE ?`), so the query-planner stability guarantee costs nothing.
pub(super) fn plan_once(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Runs `f`; a panic in it is an error for its caller, not the end of the writer.
fn caught<T, F>(c: &mut Connection, f: F) -> Result<T, StoreError>
where
    F: FnOnce(&mut Connection) -> Result<T, StoreError>,
{
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(c)))
        .unwrap_or_else(|_| Err(StoreError::Task("a database change panicked".into())))
}

/// Runs `f` inside a savepoint: released when it succeeds, undone when it fails or panics.
fn in_savepoint<T, F>(c: &mut Connection, f: F) -> Result<T, StoreError>
where
    F: FnOnce(&mut Connection) -> Result<T, StoreError>,
{
    run_cached(c, "SAVEPOINT change")?;
    let result = caught(c, f);
    if result.is_err() {
        run_cached(c, "ROLLBACK TO change")?;
    }
    run_cached(c, "RELEASE change")?;
    result
}

/// Runs one statement from the connection's cache: the writer's transaction statements
/// run for every change, and `execute_batch` would parse them each time.
fn run_cached(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// How busy the database is: the changes in flight, and a moving average of how many
/// others each change found in flight when it arrived (in 1/1024ths, weight 1/16).
#[derive(Default)]
struct Load {
    in_flight: AtomicUsize,
    busy: AtomicU32,
}

impl Load {
    /// Above this average (1/8 of a change) the database is busy.
    const BUSY: u32 = 1024 / 8;

    /// Counts a change in; returns how many others are in flight.
    fn arrive(&self) -> usize {
        let others = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let seen = u32::try_from(others.min(64)).unwrap_or(64) * 1024;
        // A lost update between two arrivals only skews an estimate.
        let old = self.busy.load(Ordering::Relaxed);
        self.busy.store(old - old / 16 + seen / 16, Ordering::Relaxed);
        others
    }

    /// Whether a change that found `others` in flight may run on its caller's thread.
    fn idle(&self, others: usize) -> bool {
        others == 0 && self.busy.load(Ordering::Relaxed) < Self::BUSY
    }
}

/// Counts a change out when it is answered or its caller gives up.
struct InFlight<'a>(&'a Load);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a change is run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// On the writer's thread, in a savepoint of the group it arrives with.
    Group,
    /// On the caller's thread when the writer is idle, else as `Group`.
    Small,
    /// On the writer's thread, outside any transaction.
    Alone,
}

/// Takes the changes waiting, runs them in one transaction and commits them together
/// (a change that must run alone first commits those before it).
fn write_groups(writer: &Writer, queue: &mpsc::Receiver<Change>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(c) => group.push(c),
                Err(_) => break,
            }
        }
        // Taken under the connection's lock: until then a small change's caller sees
        // these queued and leaves its change to this thread, after them.
        let mut conn = writer.lock();
        writer.queued.fetch_sub(group.len(), Ordering::SeqCst);
        end_stale_transaction(&conn);
        let mut open = Vec::new();
        let mut begun = false;
        for change in group {
            if change.alone {
                commit(&conn, &mut begun, &mut open);
                (change.run)(Ok(&mut conn))(None);
                continue;
            }
            if !begun {
                if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
                    (change.run)(Err(&e.to_string()))(None);
                    continue;
                }
                begun = true;
            }
            open.push((change.run)(Ok(&mut conn)));
        }
        commit(&conn, &mut begun, &mut open);
    }
}

/// Rolls back a transaction that nothing will commit: one left open by a panic between
/// changes or by a failed step after `BEGIN`. A group begins on a connection with none.
fn end_stale_transaction(conn: &Connection) {
    if !conn.is_autocommit() {
        tracing::warn!("A database transaction was left open; it is rolled back.");
        let _ = run_cached(conn, "ROLLBACK");
    }
}

/// Commits the open group and tells each of its changes how that went.
fn commit(conn: &Connection, begun: &mut bool, open: &mut Vec<Answer>) {
    if !std::mem::take(begun) {
        return;
    }
    let committed = run_cached(conn, "COMMIT").map_err(|e| e.to_string());
    if committed.is_err() {
        let _ = run_cached(conn, "ROLLBACK");
    }
    for answer in open.drain(..) {
        answer(committed.as_ref().err().map(String::as_str));
    }
}

#[cfg(test)]
#[path = "db_tests.rs"]
mod tests;
