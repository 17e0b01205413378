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
//! Lookups by key that never change anything run on the pool's connections, on the
//! caller's own thread, in parallel with the writer (WAL readers see the last commit and
//! do not block it). Those connections are opened
//! read-only, so a change sent there by mistake fails instead of bypassing the writer.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use outpost_common::sqlite_checkpoints::{self, Checkpoints};
use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// Most changes committed together.
const MAX_GROUP: usize = 256;
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
    readers: Arc<Readers>,
    checkpoints: Arc<Checkpoints>,
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
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer(conn, &queue))
            .map_err(|e| StoreError::Task(format!("cannot start the database writer: {e}")))?;
        Ok(Self {
            changes,
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
        self.queue(false, f).await
    }

    /// Runs `f` on the writer's connection outside any transaction, after the changes
    /// queued before it are committed (for `PRAGMA wal_checkpoint`).
    pub async fn write_alone<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.queue(true, f).await
    }

    /// The checkpoints beside the writer: a checkpoint the writer runs itself between its
    /// changes goes through [`Checkpoints::alone`].
    pub fn checkpoints(&self) -> Arc<Checkpoints> {
        Arc::clone(&self.checkpoints)
    }

    async fn queue<T, F>(&self, alone: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
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
        self.changes
            .send(Change { alone, run })
            .map_err(|_| StoreError::Task("the database writer has stopped".into()))?;
        rx.await.map_err(|_| StoreError::Task("the database writer stopped before answering".into()))?
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
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
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

/// Takes the changes waiting, runs them in one transaction and commits them together
/// (a change that must run alone first commits those before it).
fn writer(mut conn: Connection, queue: &mpsc::Receiver<Change>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(c) => group.push(c),
                Err(_) => break,
            }
        }
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
mod tests {
    use super::*;

    fn db(dir: &Path) -> SqliteDb {
        let path = dir.join("t.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER PRIMARY KEY);").expect("schema");
        SqliteDb::start(&path, conn).expect("start")
    }

    async fn values(db: &SqliteDb) -> Vec<i64> {
        db.read(|c| {
            Ok(c.prepare("SELECT v FROM t ORDER BY v")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
        })
        .await
        .expect("read")
    }

    /// Changes sent together are committed together, and one that fails (or panics) is
    /// undone alone: the others stay, and each caller hears its own outcome.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_change_in_a_group_is_undone_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = db(dir.path());
        let mut tasks = Vec::new();
        for v in 0..200_i64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.write(move |c| {
                    c.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
                    match v % 50 {
                        7 => Err(StoreError::Task("refused".into())),
                        8 => panic!("a bug in one change"),
                        _ => Ok(v),
                    }
                })
                .await
            }));
        }
        let mut ok = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(v) => ok.push(v),
                Err(e) => assert!(e.to_string().contains("refused") || e.to_string().contains("panicked"), "{e}"),
            }
        }
        let expected: Vec<i64> = (0..200).filter(|v| !matches!(v % 50, 7 | 8)).collect();
        ok.sort_unstable();
        assert_eq!(ok, expected);
        // What a caller was told was committed is what a reader (another connection) sees.
        assert_eq!(values(&db).await, expected);
    }

    /// A caller hears back only after its change is committed: a read on another
    /// connection right after the answer sees it.
    #[tokio::test]
    async fn an_answered_change_is_visible_to_the_readers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = db(dir.path());
        for v in 0..20_i64 {
            db.write(move |c| Ok(c.execute("INSERT INTO t (v) VALUES (?1)", [v])?)).await.expect("write");
            assert_eq!(values(&db).await.last(), Some(&v));
        }
    }

    /// The readers cannot change the database, and a change that must run outside a
    /// transaction (a WAL checkpoint) can.
    #[tokio::test]
    async fn readers_are_read_only_and_a_checkpoint_runs_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = db(dir.path());
        let refused = db.read(|c| Ok(c.execute("INSERT INTO t (v) VALUES (1)", [])?)).await;
        assert!(refused.is_err(), "a reader wrote: {refused:?}");
        db.write(|c| Ok(c.execute("INSERT INTO t (v) VALUES (2)", [])?)).await.expect("write");
        let inside =
            db.write(|c| Ok(c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))?)).await;
        assert!(inside.is_err(), "a checkpoint inside a transaction should fail: {inside:?}");
        let busy =
            db.write_alone(|c| Ok(c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))?)).await;
        assert_eq!(busy.expect("checkpoint"), 0);
        assert_eq!(std::fs::metadata(dir.path().join("t.db-wal")).expect("wal").len(), 0, "WAL emptied");
        assert_eq!(values(&db).await, [2]);
    }
}
