//! The writer's groups, its small changes on the caller's thread, and the readers.

use super::*;

fn db(dir: &Path) -> SqliteDb {
    let path = dir.join("t.db");
    let conn = Connection::open(&path).expect("open");
    conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER PRIMARY KEY);").expect("schema");
    SqliteDb::start(&path, conn).expect("start")
}

async fn values(db: &SqliteDb) -> Vec<i64> {
    db.read(|c| Ok(c.prepare("SELECT v FROM t ORDER BY v")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?))
        .await
        .expect("read")
}

/// Waits until the writer's thread has let go of the connection: it answers a change
/// before it does, and a small change sent in between would find the connection taken.
fn writer_done(db: &SqliteDb) {
    drop(db.writer.lock());
}

/// Changes sent together are committed together, and one that fails (or panics) is
/// undone alone, whether it ran in a group or on its caller's thread: the others stay, and each caller hears its own outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_change_in_a_group_is_undone_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path());
    let mut tasks = Vec::new();
    for v in 0..200_i64 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let change = move |c: &mut Connection| {
                c.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
                match v % 50 {
                    7 | 10 => Err(StoreError::Task("refused".into())),
                    8 | 9 => panic!("a bug in one change"),
                    _ => Ok(v),
                }
            };
            // Half of them small: run inline when the writer is idle, queued when not.
            if v % 2 == 0 {
                db.write(change).await
            } else {
                db.write_small(change).await
            }
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(v) => ok.push(v),
            Err(e) => assert!(e.to_string().contains("refused") || e.to_string().contains("panicked"), "{e}"),
        }
    }
    let expected: Vec<i64> = (0..200).filter(|v| !matches!(v % 50, 7..=10)).collect();
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

/// Small changes sent one at a time, with the writer idle, run on their caller's
/// thread; they are committed (a reader sees each) when the caller hears back.
#[tokio::test]
async fn a_small_change_runs_on_its_callers_thread_when_the_writer_is_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path());
    for v in 0..20_i64 {
        db.write_small(move |c| Ok(c.execute("INSERT INTO t (v) VALUES (?1)", [v])?)).await.expect("write");
        assert_eq!(values(&db).await.last(), Some(&v));
    }
    assert_eq!(db.inline_changes(), 20);
    // One that fails is undone, and the connection goes on.
    let refused = db
        .write_small(|c| {
            c.execute("INSERT INTO t (v) VALUES (100)", [])?;
            Err::<(), _>(StoreError::Task("refused".into()))
        })
        .await;
    assert!(refused.is_err());
    let panicked = db
        .write_small(|c| -> Result<(), StoreError> {
            c.execute("INSERT INTO t (v) VALUES (102)", [])?;
            panic!("a bug in one change")
        })
        .await;
    assert!(panicked.is_err_and(|e| e.to_string().contains("panicked")));
    db.write_small(|c| Ok(c.execute("INSERT INTO t (v) VALUES (101)", [])?)).await.expect("write");
    assert_eq!(values(&db).await.last(), Some(&101));
    assert!(!values(&db).await.contains(&100), "a refused change was kept");
    assert!(!values(&db).await.contains(&102), "a panicked change was kept");
    assert_eq!(db.inline_changes(), 23, "every change ran on its caller's thread");
}

/// A small change goes to the writer's thread when another change is in flight, when
/// the database was busy lately, and when the WAL is past the checkpointer's
/// threshold (its commit could be the one that copies the WAL).
#[tokio::test]
async fn a_small_change_goes_to_the_writer_when_the_database_is_not_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path());
    let small = |v: i64| db.write_small(move |c| Ok(c.execute("INSERT INTO t (v) VALUES (?1)", [v])?));
    // Another change in flight.
    let others = db.writer.load.arrive();
    assert_eq!(others, 0);
    let in_flight = InFlight(&db.writer.load);
    small(1).await.expect("write");
    assert_eq!(db.inline_changes(), 0, "ran inline beside another change");
    drop(in_flight);
    // Busy lately: changes found others in flight.
    for _ in 0..3 {
        assert_eq!((db.writer.load.arrive(), db.writer.load.arrive()), (0, 1));
        drop((InFlight(&db.writer.load), InFlight(&db.writer.load)));
    }
    small(2).await.expect("write");
    assert_eq!(db.inline_changes(), 0, "ran inline while the database was busy");
    let mut v = 3;
    while db.inline_changes() == 0 {
        small(v).await.expect("write");
        v += 1;
        assert!(v < 100, "never ran inline again");
    }
    // A WAL past the threshold: 5 MB in one change (the writer's), then a small one.
    db.write(|c| Ok(c.execute_batch("CREATE TABLE big (b BLOB); INSERT INTO big VALUES (zeroblob(5000000));")?))
        .await
        .expect("big write");
    assert!(db.checkpoints.behind(), "5 MB in the WAL is past the threshold");
    let before = db.inline_changes();
    small(1001).await.expect("write");
    assert_eq!(db.inline_changes(), before, "ran inline with the WAL past the threshold");
    assert!(values(&db).await.contains(&1001));
}

/// Changes that find others in flight make the database busy, and small changes then
/// go to the writer's thread to be grouped, until lone changes have been the rule
/// again for a while.
#[test]
fn small_changes_are_grouped_while_the_database_is_busy() {
    let load = Load::default();
    assert!(load.idle(0), "a new database is idle");
    assert!(!load.idle(1), "a change with another in flight is not run inline");
    // Two changes at once, three times: busy (each second one found the first).
    for _ in 0..3 {
        assert_eq!((load.arrive(), load.arrive()), (0, 1));
        drop((InFlight(&load), InFlight(&load)));
    }
    assert!(!load.idle(0), "busy after concurrent changes");
    // Lone changes bring it back to idle.
    let mut lone = 0;
    while !load.idle(0) {
        assert_eq!(load.arrive(), 0);
        drop(InFlight(&load));
        lone += 1;
        assert!(lone < 100, "never idle again");
    }
    assert!(lone > 3, "idle again after only {lone} lone changes");
}

/// While another process holds the database's write lock, a small change does not
/// wait on its caller's thread: it goes to the writer's thread, which waits for the
/// lock and then commits it.
#[tokio::test(flavor = "current_thread")]
async fn a_small_change_never_waits_for_a_lock_on_its_callers_thread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path());
    let other = Connection::open(dir.path().join("t.db")).expect("open");
    other.execute_batch("BEGIN IMMEDIATE; INSERT INTO t (v) VALUES (1);").expect("lock");
    let task = tokio::spawn({
        let db = db.clone();
        async move { db.write_small(|c| Ok(c.execute("INSERT INTO t (v) VALUES (2)", [])?)).await }
    });
    // The only thread of this runtime runs the task up to its wait for the writer's
    // answer and comes back; had the change waited for the lock here, this thread
    // would have been held for the busy timeout.
    let start = std::time::Instant::now();
    tokio::task::yield_now().await;
    assert!(start.elapsed() < BUSY_TIMEOUT / 2, "the caller's thread waited {:?} for the lock", start.elapsed());
    assert!(!task.is_finished(), "the change ended while another process held the write lock");
    assert_eq!(db.inline_changes(), 0);
    other.execute_batch("COMMIT").expect("commit");
    task.await.expect("task").expect("write");
    assert_eq!(values(&db).await, [1, 2]);
    // With the lock released and the writer idle, the next one runs inline again.
    writer_done(&db);
    db.write_small(|c| Ok(c.execute("INSERT INTO t (v) VALUES (3)", [])?)).await.expect("write");
    assert_eq!(db.inline_changes(), 1);
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
    let inside = db.write(|c| Ok(c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))?)).await;
    assert!(inside.is_err(), "a checkpoint inside a transaction should fail: {inside:?}");
    let busy =
        db.write_alone(|c| Ok(c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))?)).await;
    assert_eq!(busy.expect("checkpoint"), 0);
    assert_eq!(std::fs::metadata(dir.path().join("t.db-wal")).expect("wal").len(), 0, "WAL emptied");
    assert_eq!(values(&db).await, [2]);
}

/// A transaction left open on the writer's connection (a panic between changes, a failed
/// step after `BEGIN`) is rolled back before the next change, inline or grouped: nothing
/// in it is kept, and the next changes are committed.
#[tokio::test]
async fn a_transaction_left_open_is_rolled_back_before_the_next_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = db(dir.path());
    let leave_open =
        |v: i64| db.write_alone(move |c| Ok(c.execute_batch(&format!("BEGIN; INSERT INTO t (v) VALUES ({v});"))?));
    leave_open(1).await.expect("left open");
    writer_done(&db);
    db.write_small(|c| Ok(c.execute("INSERT INTO t (v) VALUES (2)", [])?)).await.expect("inline after");
    assert_eq!(db.inline_changes(), 1);
    leave_open(3).await.expect("left open");
    db.write(|c| Ok(c.execute("INSERT INTO t (v) VALUES (4)", [])?)).await.expect("grouped after");
    assert_eq!(values(&db).await, [2, 4]);
}
