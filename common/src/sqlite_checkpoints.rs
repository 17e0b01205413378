//! WAL checkpoints of a SQLite database on a thread of their own, beside its writer.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1,000
//! pages: that commit copies the WAL into the database file and waits for two `fsync`s
//! (the WAL's, then the database file's), and whatever waits for the commit waits too.
//! With `synchronous=NORMAL` no other commit waits for the disk, so that one commit in a
//! few hundred made the slowest requests of a job's path (issue 24: the p99 of a small
//! job). The control plane's store, and the agent's replay store and cache index, use it.
//!
//! Here the writer's WAL hook (called after every commit with the WAL's size; it replaces
//! the automatic checkpoint) wakes the checkpointer once the WAL holds
//! [`CHECKPOINT_PAGES`]. The checkpointer runs a `PASSIVE` checkpoint on its own
//! connection: it copies what no reader still needs and never blocks the writer or the
//! readers, who go on meanwhile. The first commit after a checkpoint that caught up starts
//! the WAL again from its beginning.
//!
//! Under a load that never pauses the checkpointer never catches up, and the WAL would
//! grow for as long as the load lasts. So a commit that finds [`WRITER_CHECKPOINT_PAGES`]
//! in the WAL copies the rest itself, as SQLite would have at the first threshold (most
//! of it is copied already; the `fsync`s are what it waits for). The WAL then starts again.
//!
//! What a crash keeps is unchanged: a commit is in the WAL either way, and a checkpoint
//! `fsync`s the WAL before it copies. A checkpoint that must run between changes (the
//! control plane's `TRUNCATE` after a retention purge, say) still runs on the writer.

use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};

/// Why the checkpointer could not start.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointerError {
    /// SQLite refused to open or configure the checkpointer's connection.
    #[error("{path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The database is not in WAL mode, where a checkpoint does nothing.
    #[error("{path}: journal mode {mode}, not WAL")]
    NotWal {
        /// The database file.
        path: String,
        /// The journal mode it is in.
        mode: String,
    },
    /// The thread could not be started.
    #[error("cannot start the WAL checkpointer: {0}")]
    Thread(std::io::Error),
}

/// WAL pages after which a commit wakes the checkpointer (SQLite's automatic default).
pub const CHECKPOINT_PAGES: c_int = 1000;
/// WAL pages after which the writer copies the rest itself.
pub const WRITER_CHECKPOINT_PAGES: c_int = 4 * CHECKPOINT_PAGES;

/// What the checkpoints did so far, for whoever must know (the tests, a debug log).
#[derive(Default)]
pub struct Checkpoints {
    counts: Mutex<Counts>,
    changed: Condvar,
    /// Held while a checkpoint runs: two at once are not waited for by SQLite, the second
    /// is refused as busy (and a `TRUNCATE` then leaves the WAL as it was).
    running: Mutex<()>,
    /// The WAL's size in pages after the writer's last commit.
    wal_pages: AtomicI32,
}

/// Checkpoints asked of the checkpointer, run by it, and run by the writer itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Checkpoints asked of the checkpointer.
    pub woken: u64,
    /// Checkpoints the checkpointer ran (or tried).
    pub ran: u64,
    /// Checkpoints the writer ran itself, past [`WRITER_CHECKPOINT_PAGES`].
    pub by_writer: u64,
}

impl Checkpoints {
    /// Runs `f`, a checkpoint the writer runs between its changes (a `TRUNCATE` that must
    /// leave nothing in the WAL), once the checkpointer's is done and none starts.
    pub fn alone<T>(&self, f: impl FnOnce() -> T) -> T {
        let _running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f()
    }

    /// Whether the WAL held [`CHECKPOINT_PAGES`] or more after the writer's last commit:
    /// the checkpointer has not caught up, and the next commits may copy it themselves.
    pub fn behind(&self) -> bool {
        self.wal_pages.load(Ordering::Relaxed) >= CHECKPOINT_PAGES
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        if let Ok(mut c) = self.counts.lock() {
            f(&mut c);
            self.changed.notify_all();
        }
    }

    /// Waits until the checkpointer has run every checkpoint asked of it and `until`
    /// holds, at most `limit`; returns the counts then.
    #[cfg(test)]
    pub fn wait(&self, until: impl Fn(&Counts) -> bool, limit: std::time::Duration) -> Counts {
        let Ok(counts) = self.counts.lock() else { return Counts::default() };
        self.changed
            .wait_timeout_while(counts, limit, |c| c.ran < c.woken || !until(c))
            .map(|(c, _)| *c)
            .unwrap_or_default()
    }
}

/// Opens the checkpointer's connection to `path`, starts its thread and hooks `writer`'s
/// commits to it. The thread ends when `writer` is closed (the hook, and with it the
/// only sender, is dropped).
pub fn start(path: &Path, writer: &mut Connection) -> Result<Arc<Checkpoints>, CheckpointerError> {
    let sqlite = |source| CheckpointerError::Sqlite { path: path.display().to_string(), source };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(sqlite)?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sqlite)?;
    // A connection learns the journal mode when it first reads the file; until then a
    // checkpoint does nothing (and says -1).
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).map_err(sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(CheckpointerError::NotWal { path: path.display().to_string(), mode });
    }
    // Until the writer's first commit the hook has not said how long the WAL is; a killed
    // process or the migrations may have left a long one. Its file's length says at most
    // how many frames it holds (the file is reused from its start, not cut).
    let checkpoints =
        Arc::new(Checkpoints { wal_pages: AtomicI32::new(wal_file_pages(path, writer)), ..Checkpoints::default() });
    // One wake-up waiting is enough: a checkpoint copies everything committed before it.
    let (wake, woken) = mpsc::sync_channel::<()>(1);
    let done = Arc::clone(&checkpoints);
    std::thread::Builder::new()
        .name("sqlite-checkpoints".into())
        .spawn(move || checkpointer(&conn, &woken, &done))
        .map_err(CheckpointerError::Thread)?;
    let counts = Arc::clone(&checkpoints);
    writer
        .wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
            counts.wal_pages.store(pages, Ordering::Relaxed);
            if pages >= WRITER_CHECKPOINT_PAGES {
                // When the checkpointer is at work the writer goes on: the next commit
                // tries again.
                if let Ok(_running) = counts.running.try_lock() {
                    if let Ok((log, copied)) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                        tracing::debug!(log, copied, "WAL checkpoint by the writer");
                        counts.count(|c| c.by_writer += 1);
                    }
                }
            } else if pages >= CHECKPOINT_PAGES && wake.try_send(()).is_ok() {
                counts.count(|c| c.woken += 1);
            }
            Ok(())
        }))
        .map_err(sqlite)?;
    Ok(checkpoints)
}

/// The frames the WAL file of `path` has room for: its length less the header, over a
/// frame's (a page and its 24-byte header). Zero without a WAL file.
fn wal_file_pages(path: &Path, writer: &Connection) -> c_int {
    let page_size = writer.pragma_query_value(None, "page_size", |r| r.get::<_, i64>(0));
    let Some(page_size) = page_size.ok().and_then(|p| u64::try_from(p).ok()) else {
        return CHECKPOINT_PAGES;
    };
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    c_int::try_from(len.saturating_sub(32) / (page_size + 24)).unwrap_or(c_int::MAX)
}

fn checkpointer(conn: &Connection, woken: &mpsc::Receiver<()>, checkpoints: &Checkpoints) {
    while woken.recv().is_ok() {
        let checkpoint = checkpoints.alone(|| conn.wal_checkpoint_v2(Some(rusqlite::MAIN_DB), CheckpointMode::PASSIVE));
        match checkpoint {
            Ok((log, copied)) if log >= 0 => tracing::debug!(log, copied, "WAL checkpoint"),
            // The next commit past the threshold tries again; meanwhile the WAL grows.
            Ok(_) => tracing::warn!("WAL checkpoint did not run: the database is not in WAL mode"),
            Err(e) => tracing::warn!("WAL checkpoint failed: {e}"),
        }
        checkpoints.count(|c| c.ran += 1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMIT: Duration = Duration::from_secs(30);

    struct Db {
        _dir: tempfile::TempDir,
        wal: std::path::PathBuf,
        writer: Connection,
        checkpoints: Arc<Checkpoints>,
        blob: Vec<u8>,
        page_size: i64,
    }

    impl Db {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("t.db");
            let mut writer = Connection::open(&path).expect("open");
            writer.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v BLOB);").expect("schema");
            let checkpoints = start(&path, &mut writer).expect("start");
            let page_size: i64 = writer.query_row("PRAGMA page_size", [], |r| r.get(0)).expect("page size");
            // Each row fills about a page; each commit writes it and the table's root.
            let blob = vec![7_u8; usize::try_from(page_size).expect("size") - 100];
            Db { wal: dir.path().join("t.db-wal"), _dir: dir, writer, checkpoints, blob, page_size }
        }

        fn commit_rows(&self, n: usize) {
            for _ in 0..n {
                self.writer.execute("INSERT INTO t (v) VALUES (?1)", [&self.blob]).expect("insert");
            }
        }

        fn wal_pages(&self) -> i64 {
            i64::try_from(std::fs::metadata(&self.wal).expect("wal").len()).expect("len") / self.page_size
        }

        fn rows(&self) -> i64 {
            self.writer.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count")
        }
    }

    /// Before the writer's first commit the WAL's length comes from its file: a WAL left
    /// long (here 1,500 pages, no checkpoint) counts as behind, no WAL file as empty.
    #[test]
    fn a_wal_left_long_counts_as_behind_until_the_first_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).expect("open");
        assert_eq!(wal_file_pages(&path, &conn), 0, "no WAL file yet");
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (v BLOB);")
            .expect("schema");
        for _ in 0..1_500 {
            conn.execute("INSERT INTO t (v) VALUES (zeroblob(3900))", []).expect("insert");
        }
        let pages = wal_file_pages(&path, &conn);
        assert!(pages >= 1_500, "{pages} pages");
        let mut writer = Connection::open(&path).expect("open");
        let checkpoints = start(&path, &mut writer).expect("start");
        assert!(checkpoints.behind(), "a long WAL left behind is not counted");
    }

    /// Commits that pause (as requests do) never wait for a checkpoint: each time the WAL
    /// passes the threshold the checkpointer copies it on its own connection, and the
    /// next commit starts the WAL again from its beginning.
    ///
    /// How far the WAL file grows before it starts again depends on how the checkpointer
    /// and the commits share the cores: on a loaded machine (CI) it reached 2,633 pages,
    /// past twice the threshold. The bound that says the WAL starts again is the writer's
    /// own threshold, far below the ~7,200 pages the six rounds would leave without it
    /// (and reaching it would also make the writer copy, which the test refuses).
    #[test]
    fn commits_with_pauses_leave_every_checkpoint_to_the_checkpointer() {
        let db = Db::new();
        for round in 1..=6 {
            // ~1,200 pages: past the threshold, far below the writer's own.
            db.commit_rows(600);
            let counts = db.checkpoints.wait(|c| c.ran >= round, LIMIT);
            assert!(counts.ran >= round, "checkpoint {round}: {counts:?}");
        }
        assert_eq!(db.checkpoints.wait(|_| true, LIMIT).by_writer, 0, "the writer waited for a checkpoint");
        assert!(
            db.wal_pages() < i64::from(WRITER_CHECKPOINT_PAGES),
            "the WAL grew to {} pages: it did not start again",
            db.wal_pages()
        );
        assert_eq!(db.rows(), 3_600, "every commit kept");
    }

    /// Under commits that never pause the checkpointer cannot catch up; the writer then
    /// copies the rest itself, so the WAL stays bounded (it would otherwise hold ~18,000
    /// pages here).
    #[test]
    fn commits_without_pause_keep_the_wal_bounded() {
        let db = Db::new();
        db.commit_rows(9_000);
        db.checkpoints.wait(|_| true, LIMIT);
        let bound = i64::from(WRITER_CHECKPOINT_PAGES + CHECKPOINT_PAGES);
        assert!(db.wal_pages() < bound, "the WAL grew to {} pages", db.wal_pages());
        assert_eq!(db.rows(), 9_000, "every commit kept");
    }

    /// A `TRUNCATE` checkpoint run through [`Checkpoints::alone`] right after a burst of
    /// commits (while the checkpointer is likely at work) is never refused as busy: it
    /// empties the WAL every time (retention's promise that deleted rows leave no copy).
    #[test]
    fn a_truncate_run_alone_empties_the_wal_while_the_checkpointer_works() {
        let db = Db::new();
        for round in 0..20 {
            db.commit_rows(1_500);
            let busy: i64 = db.checkpoints.alone(|| {
                db.writer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).expect("checkpoint")
            });
            assert_eq!(busy, 0, "round {round}: the TRUNCATE was refused as busy");
            assert_eq!(db.wal_pages(), 0, "round {round}: the WAL was not emptied");
        }
    }

    /// A file that is not in WAL mode is refused (a checkpoint there would do nothing).
    #[test]
    fn a_database_not_in_wal_mode_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let mut writer = Connection::open(&path).expect("open");
        writer.execute_batch("CREATE TABLE t (v BLOB);").expect("schema");
        let refused = start(&path, &mut writer).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("not WAL"), "{refused}");
    }
}
