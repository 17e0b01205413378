//! The encrypted result cache: raw result sets kept on the agent's disk only, encrypted,
//! so that the same query within its max-age does not hit the customer's database again.
//!
//! - Entries live in `state_dir/cache/` (0700), one file per entry (0600), in the format of
//!   [`stream`]: chunked AES-256-GCM under a key derived from the cache key. Plaintext
//!   never touches the disk, not even in a temp file: the temp file holds ciphertext, is
//!   fsync'd and renamed into place.
//! - The index is `cache/index.db` (SQLite): entry hash, connection, creation and last
//!   use, size, and the id of the key the entry is sealed under. Entries under another
//!   key (after a key rotation) are deleted when the cache opens: crypto-shredding.
//! - The entry hash is SHA-256 over the connection's identity, the SQL and the typed
//!   parameters, domain-separated. It names the file; it reveals nothing of the query.
//! - A corrupt or tampered entry is deleted and reported as [`Lookup::Damaged`] (a miss
//!   for the caller, who writes an audit record); it never returns wrong data.
//! - Entries older than the longest max-age policy allows are deleted, not hidden, and a
//!   size cap evicts the least recently used.

pub mod rows;
pub mod stream;

use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use outpost_protocol::encoding::{b64_decode, b64_encode, hex};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value as Json;

use crate::resultset::{ResultSet, Value};

/// Directory in the state dir.
pub const CACHE_DIR: &str = "cache";
const INDEX: &str = "index.db";

/// Cache failures (I/O and index); a damaged entry is not an error but a [`Lookup`].
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// File system.
    #[error("cache {path}: {source}")]
    Io {
        /// Where.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The index.
    #[error("cache index: {0}")]
    Index(#[from] rusqlite::Error),
    /// Writing an entry.
    #[error("cache entry: {0}")]
    Entry(#[from] stream::StreamError),
    /// The index lock was poisoned.
    #[error("cache index lock poisoned")]
    Poisoned,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh entry.
    Hit(ResultSet),
    /// None, or too old.
    Miss,
    /// An entry existed but did not authenticate or parse; it has been deleted.
    Damaged(String),
}

/// `cache stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries.
    pub entries: u64,
    /// Bytes on disk.
    pub bytes: u64,
    /// Entries per connection.
    pub by_connection: Vec<(String, u64, u64)>,
}

/// The cache's index and files, without a key: enough to count, sweep and purge
/// (`outpost-agent cache stats|purge` work without the master key).
#[derive(Clone)]
pub struct Index {
    dir: PathBuf,
    db: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// The cache: the index plus the key entries are sealed under.
#[derive(Clone)]
pub struct Cache {
    idx: Index,
    key: Arc<zeroize::Zeroizing<[u8; 32]>>,
    key_id: String,
    max_bytes: u64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("dir", &self.idx.dir).field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl std::ops::Deref for Cache {
    type Target = Index;
    fn deref(&self) -> &Index {
        &self.idx
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.display().to_string(), source }
}

/// The entry hash of a query: SHA-256 over the connection's identity, the SQL and the
/// parameters, each length-prefixed under a context string.
pub fn entry_hash(connection_identity: &str, sql: &str, params_json: &str) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"outpost/cache-entry-hash/v1\0");
    for part in [connection_identity, sql, params_json] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn value_json(v: &Value) -> Json {
    use serde_json::json;
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        // The bit pattern: exact for every float, NaN and infinities included.
        Value::Float(f) => json!({ "f": f.to_bits() }),
        Value::Decimal(d) => json!({ "n": d }),
        Value::Text(s) => Json::from(s.as_str()),
        Value::Bytes(b) => json!({ "b": b64_encode(b) }),
        Value::Date(d) => json!({ "date": d.to_string() }),
        Value::Time(t) => json!({ "time": t.to_string() }),
        Value::Timestamp(t) => json!({ "ts": t.and_utc().timestamp_micros() }),
        Value::TimestampTz(t) => json!({ "tstz": t.timestamp_micros() }),
        Value::Uuid(u) => json!({ "uuid": hex(u) }),
        Value::Json(t) => json!({ "json": t }),
    }
}

fn json_value(j: &Json) -> Option<Value> {
    Some(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Int(n.as_i64()?),
        Json::String(s) => Value::Text(s.clone()),
        Json::Object(o) if o.len() == 1 => {
            let (tag, v) = o.iter().next()?;
            match (tag.as_str(), v) {
                ("f", Json::Number(n)) => Value::Float(f64::from_bits(n.as_u64()?)),
                ("n", Json::String(d)) => Value::Decimal(d.clone()),
                ("b", Json::String(b)) => Value::Bytes(b64_decode(b).ok()?),
                ("date", Json::String(d)) => Value::Date(d.parse().ok()?),
                ("time", Json::String(t)) => Value::Time(t.parse().ok()?),
                ("ts", Json::Number(n)) => {
                    Value::Timestamp(chrono::DateTime::from_timestamp_micros(n.as_i64()?)?.naive_utc())
                }
                ("tstz", Json::Number(n)) => Value::TimestampTz(chrono::DateTime::from_timestamp_micros(n.as_i64()?)?),
                ("uuid", Json::String(h)) => {
                    let bytes = outpost_protocol::encoding::unhex(h)?;
                    Value::Uuid(bytes.try_into().ok()?)
                }
                ("json", Json::String(t)) => Value::Json(t.clone()),
                _ => return None,
            }
        }
        _ => return None,
    })
}

impl Index {
    /// Opens (creating) the cache directory and index of `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Self, CacheError> {
        let dir = state_dir.join(CACHE_DIR);
        outpost_common::fsutil::create_private_dir(&dir).map_err(|e| CacheError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let path = dir.join(INDEX);
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path).map_err(io(&path))?;
        }
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A power cut may lose the last index changes; that is safe here: an entry file
        // the index does not know is deleted at the next open, and a lost `last_used`
        // only shifts LRU order. Entry files themselves are fsync'd before they count.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (
                hash TEXT PRIMARY KEY, connection TEXT NOT NULL, key_id TEXT NOT NULL,
                created_at INTEGER NOT NULL, last_used INTEGER NOT NULL, bytes INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS entries_by_use ON entries(last_used);",
        )?;
        Ok(Self { dir, db: Arc::new(Mutex::new(conn)) })
    }

    /// Whether `state_dir` has a cache.
    pub fn exists(state_dir: &Path) -> bool {
        state_dir.join(CACHE_DIR).join(INDEX).exists()
    }

    fn file(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.bin"))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, CacheError> {
        self.db.lock().map_err(|_| CacheError::Poisoned)
    }

    fn delete_where(&self, cond: &str, args: &[&dyn rusqlite::ToSql]) -> Result<usize, CacheError> {
        let hashes: Vec<String> = {
            let c = self.lock()?;
            let mut stmt = c.prepare(&format!("DELETE FROM entries WHERE {cond} RETURNING hash"))?;
            let rows = stmt.query_map(args, |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
            rows
        };
        for h in &hashes {
            let _ = std::fs::remove_file(self.file(h));
        }
        Ok(hashes.len())
    }

    fn delete_orphans(&self) -> Result<(), CacheError> {
        let known: std::collections::HashSet<String> = {
            let c = self.lock()?;
            let mut stmt = c.prepare("SELECT hash FROM entries")?;
            let rows = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            rows
        };
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let p = e.map_err(io(&self.dir))?.path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let stale_tmp = name.starts_with('.') && name.contains(".tmp");
            let orphan = name.strip_suffix(".bin").is_some_and(|h| !known.contains(h));
            if stale_tmp || orphan {
                let _ = std::fs::remove_file(&p);
            }
        }
        Ok(())
    }

    /// Deletes entries older than their connection's cap in `caps`, and every entry of
    /// a connection not in `caps` (removed from the config) or whose cap is 0.
    pub fn sweep(&self, caps: &std::collections::BTreeMap<String, u64>, now: i64) -> Result<usize, CacheError> {
        let connections: Vec<String> = {
            let c = self.lock()?;
            let mut stmt = c.prepare("SELECT DISTINCT connection FROM entries")?;
            let rows = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            rows
        };
        let mut deleted = 0;
        for conn in connections {
            let cap = caps.get(&conn).copied().unwrap_or(0);
            let cap = i64::try_from(cap).unwrap_or(i64::MAX);
            let cutoff = now.saturating_sub(cap);
            deleted += self.delete_where("connection = ?1 AND (?3 = 0 OR created_at < ?2)", &[&conn, &cutoff, &cap])?;
        }
        Ok(deleted)
    }

    /// Deletes every entry, or those of one connection.
    pub fn purge(&self, connection: Option<&str>) -> Result<usize, CacheError> {
        match connection {
            Some(c) => self.delete_where("connection = ?1", &[&c]),
            None => self.delete_where("1 = 1", &[]),
        }
    }

    /// Deletes every entry not sealed under `key_id`.
    pub fn shred_other_keys(&self, key_id: &str) -> Result<usize, CacheError> {
        self.delete_where("key_id != ?1", &[&key_id])
    }

    /// Counts and sizes.
    pub fn stats(&self) -> Result<Stats, CacheError> {
        let c = self.lock()?;
        let mut stmt = c.prepare(
            "SELECT connection, COUNT(*), COALESCE(SUM(bytes), 0) FROM entries GROUP BY connection ORDER BY connection",
        )?;
        let by_connection = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)))?
            .collect::<Result<Vec<_>, _>>()?;
        let entries = by_connection.iter().map(|c| c.1).sum();
        let bytes = by_connection.iter().map(|c| c.2).sum();
        Ok(Stats { entries, bytes, by_connection })
    }
}

impl Cache {
    /// Opens the cache in `state_dir` under `cache_key` (id `key_id`); entries sealed
    /// under any other key are deleted now.
    pub fn open(state_dir: &Path, cache_key: &[u8; 32], key_id: &str, max_bytes: u64) -> Result<Self, CacheError> {
        let idx = Index::open(state_dir)?;
        let cache =
            Self { idx, key: Arc::new(zeroize::Zeroizing::new(*cache_key)), key_id: key_id.to_owned(), max_bytes };
        let shredded = cache.shred_other_keys(&cache.key_id)?;
        if shredded > 0 {
            tracing::info!(entries = shredded, "Deleted cache entries sealed under a retired key.");
        }
        // Files the index does not know (a crash between rename and insert) are deleted too.
        cache.delete_orphans()?;
        Ok(cache)
    }

    /// Looks up `entry` no older than `max_age_secs`.
    pub fn get(&self, entry: [u8; 32], max_age_secs: u64, now: i64) -> Result<Lookup, CacheError> {
        let hash = hex(&entry);
        let created: Option<i64> = self
            .lock()?
            .prepare_cached("SELECT created_at FROM entries WHERE hash = ?1 AND key_id = ?2")?
            .query_row(params![hash, self.key_id], |r| r.get(0))
            .optional()?;
        let Some(created) = created else { return Ok(Lookup::Miss) };
        if now.saturating_sub(created) > i64::try_from(max_age_secs).unwrap_or(i64::MAX) {
            return Ok(Lookup::Miss);
        }
        let path = self.file(&hash);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            // Purged (by `cache purge` or a sweep) between the index lookup and now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.lock()?.execute("DELETE FROM entries WHERE hash = ?1", params![hash])?;
                return Ok(Lookup::Miss);
            }
            Err(e) => return Err(CacheError::Io { path: path.display().to_string(), source: e }),
        };
        match self.read(file, entry) {
            Ok(rs) => {
                self.lock()?.execute("UPDATE entries SET last_used = ?2 WHERE hash = ?1", params![hash, now])?;
                Ok(Lookup::Hit(rs))
            }
            Err(why) => {
                self.delete_where("hash = ?1", &[&hash])?;
                Ok(Lookup::Damaged(why))
            }
        }
    }

    fn read(&self, f: std::fs::File, entry: [u8; 32]) -> Result<ResultSet, String> {
        let reader = stream::EntryReader::new(BufReader::new(f), &self.key, entry).map_err(|e| e.to_string())?;
        let mut lines = BufReader::new(reader).lines();
        let head: Json = serde_json::from_str(&lines.next().ok_or("empty entry")?.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        let columns: Vec<String> =
            serde_json::from_value(head["columns"].clone()).map_err(|e| format!("columns: {e}"))?;
        let truncated = head["truncated"].as_bool().ok_or("truncated flag")?;
        // Entries written before the agent traced provenance have none: the job then
        // runs the query again when its connection has mask rules.
        let provenance = match head.get("provenance") {
            None | Some(Json::Null) => None,
            Some(p) => Some(serde_json::from_value(p.clone()).map_err(|e| format!("provenance: {e}"))?),
        };
        let mut rows = Vec::new();
        for line in lines {
            let line = line.map_err(|e| e.to_string())?;
            let cells: Vec<Json> = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            let row = cells.iter().map(json_value).collect::<Option<Vec<_>>>().ok_or("bad value")?;
            if row.len() != columns.len() {
                return Err("row width".into());
            }
            rows.push(row);
        }
        Ok(ResultSet { columns, rows, truncated, provenance })
    }

    /// Stores `rs` as `entry` for `connection`: encrypted into a temp file, fsync'd,
    /// renamed into place, then indexed; then evicts beyond the size cap. Returns the
    /// bytes written.
    pub fn put(&self, entry: [u8; 32], connection: &str, rs: &ResultSet, now: i64) -> Result<u64, CacheError> {
        let hash = hex(&entry);
        let path = self.file(&hash);
        let tmp = self.dir.join(format!(".{hash}.tmp.{}", outpost_protocol::ids::new_nonce()));
        let result = (|| -> Result<u64, CacheError> {
            use std::os::unix::fs::OpenOptionsExt;
            let f =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
            let mut w = stream::EntryWriter::new(BufWriter::new(f), &self.key, entry)?;
            let head =
                serde_json::json!({ "columns": rs.columns, "truncated": rs.truncated, "provenance": rs.provenance });
            let write = |w: &mut stream::EntryWriter<_>, j: &Json| -> Result<(), CacheError> {
                serde_json::to_writer(&mut *w, j).map_err(|e| CacheError::Io {
                    path: tmp.display().to_string(),
                    source: std::io::Error::other(e),
                })?;
                w.write_all(b"\n").map_err(io(&tmp))
            };
            write(&mut w, &head)?;
            for row in &rs.rows {
                write(&mut w, &Json::Array(row.iter().map(value_json).collect()))?;
            }
            let (buf, bytes) = w.finish()?;
            let f = buf
                .into_inner()
                .map_err(|e| CacheError::Io { path: tmp.display().to_string(), source: e.into_error() })?;
            f.sync_all().map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
            std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
            Ok(bytes)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        let bytes = result?;
        self.lock()?.execute(
            "INSERT OR REPLACE INTO entries (hash, connection, key_id, created_at, last_used, bytes)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![hash, connection, self.key_id, now, i64::try_from(bytes).unwrap_or(i64::MAX)],
        )?;
        self.evict()?;
        Ok(bytes)
    }

    /// Evicts least-recently-used entries until the total is within the size cap.
    fn evict(&self) -> Result<(), CacheError> {
        loop {
            let total: i64 = self.lock()?.query_row("SELECT COALESCE(SUM(bytes), 0) FROM entries", [], |r| r.get(0))?;
            if u64::try_from(total).unwrap_or(0) <= self.max_bytes {
                return Ok(());
            }
            let oldest: Option<String> = self
                .lock()?
                .query_row("SELECT hash FROM entries ORDER BY last_used, hash LIMIT 1", [], |r| r.get(0))
                .optional()?;
            match oldest {
                Some(h) => {
                    self.delete_where("hash = ?1", &[&h])?;
                }
                None => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
