use super::*;
use crate::resultset::Value;

#[test]
fn every_value_type_comes_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path(), &[1u8; 32], "k1", 1 << 30).expect("open");
    let date = chrono::NaiveDate::from_ymd_opt(1999, 12, 31).expect("date");
    let time = chrono::NaiveTime::from_hms_micro_opt(23, 59, 58, 123_456).expect("time");
    let row = vec![
        Value::Null,
        Value::Bool(true),
        Value::Int(i64::MIN),
        Value::Float(-0.0),
        Value::Decimal("-123456789012345678901234567890.000000001".into()),
        Value::Decimal("NaN".into()),
        Value::Text("ünïcode \u{1f600}".into()),
        Value::Bytes(vec![0, 255]),
        Value::Date(date),
        Value::Time(time),
        Value::Timestamp(date.and_time(time)),
        Value::TimestampTz(date.and_time(time).and_utc()),
        Value::Uuid([0xab; 16]),
        Value::Json(r#"{"a":[1,2.5,null]}"#.into()),
    ];
    let set = ResultSet {
        columns: (0..row.len()).map(|i| format!("c{i}")).collect(),
        rows: vec![row.clone()],
        truncated: false,
        provenance: None,
    };
    let entry = entry_hash("c", "types", "[]");
    cache.put(entry, "sample", &set, 1).expect("put");
    let Lookup::Hit(back) = cache.get(entry, 60, 2).expect("get") else { panic!("miss") };
    for (got, want) in back.rows[0].iter().zip(&row) {
        match (got, want) {
            (Value::Float(a), Value::Float(b)) => assert_eq!(a.to_bits(), b.to_bits()),
            _ => assert_eq!(got, want),
        }
    }
}

#[test]
fn floats_survive_bit_for_bit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path(), &[1u8; 32], "k1", 1 << 30).expect("open");
    let values = [0.1, 1.0 / 3.0, -0.0, f64::MIN_POSITIVE, f64::MAX, f64::INFINITY, f64::NAN];
    let set = ResultSet {
        columns: vec!["f".into()],
        rows: values.iter().map(|f| vec![Value::Float(*f)]).collect(),
        truncated: false,
        provenance: None,
    };
    let entry = entry_hash("c", "floats", "[]");
    cache.put(entry, "sample", &set, 1).expect("put");
    let Lookup::Hit(back) = cache.get(entry, 60, 2).expect("get") else { panic!("miss") };
    for (row, want) in back.rows.iter().zip(values) {
        let Value::Float(got) = row[0] else { panic!("not a float") };
        assert_eq!(got.to_bits(), want.to_bits());
    }
}

fn rs(canary: &str, rows: usize) -> ResultSet {
    ResultSet {
        columns: vec!["id".into(), "note".into(), "amount".into(), "raw".into(), "nothing".into()],
        rows: (0..rows)
            .map(|i| {
                vec![
                    Value::Int(i as i64),
                    Value::Text(format!("{canary}-{i}")),
                    Value::Float(i as f64 / 3.0),
                    Value::Bytes(vec![0, 1, 2]),
                    Value::Null,
                ]
            })
            .collect(),
        truncated: true,
        provenance: None,
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").path()).collect()
}

#[test]
fn a_stored_result_comes_back_exactly_and_no_file_holds_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path(), &[1u8; 32], "k1", 1 << 30).expect("open");
    let entry = entry_hash("sqlite:/data/x.db", "SELECT 1", "[]");
    let original = rs("canary-9d2e", 5000);
    cache.put(entry, "sample", &original, 100).expect("put");
    match cache.get(entry, 60, 150).expect("get") {
        Lookup::Hit(back) => {
            assert_eq!((&back.columns, back.truncated, back.rows.len()), (&original.columns, true, 5000));
            let diff = back.rows.iter().zip(&original.rows).position(|(a, b)| a != b);
            assert_eq!(diff, None, "first differing row");
        }
        other => panic!("expected a hit, got {other:?}"),
    }
    assert!(matches!(cache.get(entry, 10, 150).expect("get"), Lookup::Miss), "older than max-age");
    for f in files(&dir.path().join(CACHE_DIR)) {
        let bytes = std::fs::read(&f).expect("read");
        assert!(!bytes.windows(11).any(|w| w == b"canary-9d2e"), "{} holds plaintext", f.display());
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join(CACHE_DIR)).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let entry_file = dir.path().join(CACHE_DIR).join(format!("{}.bin", hex(&entry)));
    assert_eq!(std::fs::metadata(&entry_file).expect("meta").permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_tampered_entry_is_deleted_and_reported_never_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path(), &[1u8; 32], "k1", 1 << 30).expect("open");
    let entry = entry_hash("c", "SELECT 1", "[]");
    cache.put(entry, "sample", &rs("x", 10), 100).expect("put");
    let file = dir.path().join(CACHE_DIR).join(format!("{}.bin", hex(&entry)));
    let mut bytes = std::fs::read(&file).expect("read");
    let at = bytes.len() - 20;
    bytes[at] ^= 1;
    std::fs::write(&file, bytes).expect("write");
    assert!(matches!(cache.get(entry, 60, 101).expect("get"), Lookup::Damaged(_)));
    assert!(!file.exists(), "the damaged entry is deleted");
    assert!(matches!(cache.get(entry, 60, 101).expect("get"), Lookup::Miss));
}

#[test]
fn another_key_shreds_old_entries_and_the_size_cap_evicts_the_least_recently_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path(), &[1u8; 32], "k1", 1 << 30).expect("open");
    let (a, b) = (entry_hash("c", "a", "[]"), entry_hash("c", "b", "[]"));
    let size = cache.put(a, "sample", &rs("x", 100), 100).expect("put a");
    cache.put(b, "other", &rs("x", 100), 101).expect("put b");
    assert_eq!(cache.stats().expect("stats").entries, 2);
    assert_eq!(cache.purge(Some("other")).expect("purge"), 1);
    drop(cache);
    let rotated = Cache::open(dir.path(), &[2u8; 32], "k2", size * 2 + size / 2).expect("reopen");
    assert_eq!(rotated.stats().expect("stats"), Stats::default(), "entries under k1 are deleted");
    assert_eq!(
        files(&dir.path().join(CACHE_DIR)).iter().filter(|f| f.extension().is_some_and(|e| e == "bin")).count(),
        0
    );
    let c = entry_hash("c", "c", "[]");
    rotated.put(a, "sample", &rs("x", 100), 200).expect("a");
    rotated.put(b, "sample", &rs("x", 100), 201).expect("b");
    assert!(matches!(rotated.get(a, 600, 202).expect("use a"), Lookup::Hit(_)));
    rotated.put(c, "sample", &rs("x", 100), 203).expect("c");
    // b was the least recently used.
    assert!(matches!(rotated.get(b, 600, 204).expect("b"), Lookup::Miss));
    assert!(matches!(rotated.get(a, 600, 204).expect("a"), Lookup::Hit(_)));
    let caps = std::collections::BTreeMap::from([("sample".to_owned(), 50)]);
    assert_eq!(rotated.sweep(&caps, 300).expect("sweep"), 2, "older than 50 s are deleted");
    assert_eq!(rotated.stats().expect("stats").entries, 0);
    for at in [400, 401] {
        rotated.put(entry_hash("c", &at.to_string(), "[]"), "sample", &rs("x", 1), at).expect("put");
    }
    rotated.put(entry_hash("c", "gone", "[]"), "removed", &rs("x", 1), 440).expect("put");
    assert_eq!(rotated.sweep(&caps, 451).expect("sweep"), 2, "one too old, one of a removed connection");
    let off = std::collections::BTreeMap::from([("sample".to_owned(), 0)]);
    assert_eq!(rotated.sweep(&off, 451).expect("sweep"), 1, "a cap of 0 keeps nothing");
}

fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    files(&dir.join(CACHE_DIR))
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n.to_string_lossy().contains(".tmp")))
        .collect()
}

/// Streams `set` through a tee into `inner` and a filler, as a miss does.
async fn stream(
    cache: &Cache,
    entry: [u8; 32],
    set: &ResultSet,
    inner: &mut dyn crate::connectors::RowSink,
) -> fill::Filler {
    let mut filler = cache.filler(entry, "sample", 100);
    {
        let mut tee = fill::Tee { inner, filler: &mut filler };
        let sink: &mut dyn crate::connectors::RowSink = &mut tee;
        if let Some(p) = &set.provenance {
            sink.provenance(p.clone()).expect("provenance");
        }
        sink.columns(&set.columns).expect("columns");
        for (i, row) in set.rows.iter().enumerate() {
            sink.row(row.clone(), i).expect("row");
            if let Some(room) = sink.room() {
                room.await;
            }
        }
    }
    filler
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_miss_reaches_the_renderer_and_the_entry_and_only_a_whole_result_is_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path(), &[1u8; 32], "k1", 1 << 30).expect("open");
    let mut original = rs("canary-77aa", 20_000);
    original.provenance = Some(crate::provenance::ResultProvenance {
        columns: vec![crate::provenance::Provenance::unknown("test"); 5],
        reads: None,
        conditions: None,
    });
    // Whole: the renderer saw every row, and the entry gives them back.
    let entry = entry_hash("c", "whole", "[]");
    let mut renderer = crate::connectors::Collect::default();
    let filler = stream(&cache, entry, &original, &mut renderer).await;
    let bytes = filler.commit(true).await.expect("commit");
    assert_eq!(renderer.0.rows, original.rows);
    assert_eq!(
        cache.stats().expect("stats"),
        Stats { entries: 1, bytes, by_connection: vec![("sample".into(), 1, bytes)] }
    );
    let Lookup::Hit(back) = cache.get(entry, 60, 101).expect("get") else { panic!("miss") };
    assert_eq!(back, original);
    // Cut (an error, a refusal, a cancel): the filler is dropped and nothing is stored.
    let cut = entry_hash("c", "cut", "[]");
    let filler = stream(&cache, cut, &original, &mut crate::connectors::Collect::default()).await;
    filler.abandon().await;
    assert!(matches!(cache.get(cut, 60, 101).expect("get"), Lookup::Miss));
    assert_eq!(cache.stats().expect("stats").entries, 1);
    assert_eq!(tmp_files(dir.path()), Vec::<PathBuf>::new());
    // Beyond the byte cap: the writer gives up, the renderer still gets every row.
    let small = Cache::open(dir.path(), &[1u8; 32], "k1", 100_000).expect("open");
    let big = entry_hash("c", "big", "[]");
    let mut renderer = crate::connectors::Collect::default();
    let filler = stream(&small, big, &original, &mut renderer).await;
    assert!(matches!(filler.commit(false).await, Err(CacheError::TooLarge { .. })));
    assert_eq!(renderer.0.rows.len(), 20_000);
    assert!(matches!(small.get(big, 60, 101).expect("get"), Lookup::Miss));
    assert_eq!(tmp_files(dir.path()), Vec::<PathBuf>::new());
    for f in files(&dir.path().join(CACHE_DIR)) {
        let bytes = std::fs::read(&f).expect("read");
        assert!(!bytes.windows(11).any(|w| w == b"canary-77aa"), "{} holds plaintext", f.display());
    }
}

#[test]
fn a_damage_found_mid_replay_deletes_the_entry_after_authentic_rows_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path(), &[1u8; 32], "k1", 1 << 30).expect("open");
    let entry = entry_hash("c", "SELECT many", "[]");
    let original = rs("x", 20_000);
    cache.put(entry, "sample", &original, 100).expect("put");
    let file = dir.path().join(CACHE_DIR).join(format!("{}.bin", hex(&entry)));
    let mut bytes = std::fs::read(&file).expect("read");
    assert!(bytes.len() > 3 * stream::CHUNK, "several chunks");
    let at = bytes.len() - 20;
    bytes[at] ^= 1;
    std::fs::write(&file, bytes).expect("write");
    let Lookup::Hit(found) = cache.open_entry(entry, 60, 101).expect("open") else { panic!("the header reads") };
    let mut renderer = crate::connectors::Collect::default();
    let Err(entry::Replay::Damaged(_)) = found.replay(&mut renderer, &|| false) else { panic!("damage not seen") };
    // What reached the renderer came from chunks that authenticated: a prefix, never altered.
    assert!(!renderer.0.rows.is_empty() && renderer.0.rows.len() < original.rows.len());
    assert_eq!(renderer.0.rows[..], original.rows[..renderer.0.rows.len()]);
    assert!(!file.exists(), "the damaged entry is deleted");
    assert!(matches!(cache.get(entry, 60, 101).expect("get"), Lookup::Miss));
}

#[test]
fn an_entry_of_the_json_lines_format_is_outdated_deleted_and_a_miss() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path(), &[1u8; 32], "k1", 1 << 30).expect("open");
    let entry = entry_hash("c", "SELECT old", "[]");
    // What the previous agent wrote: JSON lines in the same encrypted chunks.
    let file = dir.path().join(CACHE_DIR).join(format!("{}.bin", hex(&entry)));
    let mut w = stream::EntryWriter::new(std::fs::File::create(&file).expect("create"), &[1u8; 32], entry).expect("w");
    w.write_all(b"{\"columns\":[\"n\"],\"truncated\":false,\"provenance\":null}\n[1]\n[{\"f\":4607182418800017408}]\n")
        .expect("write");
    w.finish().expect("finish");
    cache
        .lock()
        .expect("lock")
        .execute(
            "INSERT INTO entries (hash, connection, key_id, created_at, last_used, bytes) VALUES (?1, 'sample', 'k1', 100, 100, 1)",
            params![hex(&entry)],
        )
        .expect("index");
    assert!(matches!(cache.get(entry, 60, 101).expect("get"), Lookup::Outdated(_)));
    assert!(!file.exists(), "the outdated entry is deleted");
    assert_eq!(cache.stats().expect("stats").entries, 0);
    assert!(matches!(cache.get(entry, 60, 101).expect("get"), Lookup::Miss));
}
