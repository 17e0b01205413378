//! The encrypted result cache: raw result sets kept on the agent's disk only, encrypted,
//! so that the same query within its max-age does not hit the customer's database again.
//!
//! - Entries live in `state_dir/cache/` (0700), one file per entry (0600), in the format of
//!   [`stream`]: chunked AES-256-GCM under a key derived from the cache key; the plaintext
//!   is the binary row encoding of [`rows`]. Plaintext never touches the disk, not even in
//!   a temp file: the temp file holds ciphertext, is fsync'd and renamed into place.
//! - Neither side holds the whole result: a miss streams the rows into the renderer and,
//!   encoded, to a blocking writer thread at the same time ([`fill`]), and commits the
//!   entry only when the query ended well; a hit decrypts one chunk and decodes one row
//!   at a time into the renderer ([`entry::Entry::replay`]).
//! - The index is `cache/index.db` (SQLite): entry hash, connection, creation and last
//!   use, size, and the id of the key the entry is sealed under. Entries under another
//!   key (after a key rotation) are deleted when the cache opens: crypto-shredding.
//! - The entry hash is SHA-256 over the connection's identity, the SQL and the typed
//!   parameters, domain-separated. It names the file; it reveals nothing of the query.
//! - A corrupt or tampered entry is deleted and reported as [`Lookup::Damaged`] (a miss
//!   for the caller, who writes an audit record); it never returns wrong data. An entry
//!   of an earlier agent's format (JSON lines) is deleted and reported as
//!   [`Lookup::Outdated`], also a miss with an audit record.
//! - Entries older than the longest max-age policy allows are deleted, not hidden, and a
//!   size cap evicts the least recently used.

pub mod entry;
pub mod fill;
pub mod rows;
pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use outpost_protocol::encoding::hex;
use rusqlite::{params, Connection, OptionalExtension};

use crate::resultset::ResultSet;

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
    /// Encoding rows.
    #[error("cache entry: {0}")]
    Rows(#[from] rows::RowsError),
    /// The index lock was poisoned.
    #[error("cache index lock poisoned")]
    Poisoned,
    /// The entry grew past the cache's byte cap (`cache.max_bytes`); not stored.
    #[error("the result is larger than the cache's byte cap ({max_bytes} bytes); not stored")]
    TooLarge {
        /// The cap.
        max_bytes: u64,
    },
    /// The result did not end well (an error, a refusal, a cancel): nothing was stored.
    #[error("the result was not complete; nothing was stored")]
    Abandoned,
    /// Fewer bytes reached the writer than the encoder produced: nothing was stored.
    #[error("rows were lost on the way to the cache writer; nothing was stored")]
    Incomplete,
    /// The writer thread failed.
    #[error("cache writer: {0}")]
    Task(String),
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup<T = ResultSet> {
    /// A fresh entry.
    Hit(T),
    /// None, or too old.
    Miss,
    /// An entry existed but did not authenticate or decode; it has been deleted.
    Damaged(String),
    /// An entry in the format of an earlier agent (why); it has been deleted.
    Outdated(String),
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
        let mut conn = Connection::open(&path)?;
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
        // A job's cache lookup and fill commit here; none of them copies the WAL itself.
        outpost_common::sqlite_checkpoints::start(&path, &mut conn).map_err(|e| CacheError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
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

    /// Opens `entry` if one no older than `max_age_secs` exists, reading its header; its
    /// rows are read by [`entry::Entry::replay`]. Blocking.
    pub fn open_entry(&self, entry: [u8; 32], max_age_secs: u64, now: i64) -> Result<Lookup<entry::Entry>, CacheError> {
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
        match entry::Entry::open(self, hash.clone(), file, entry, now) {
            entry::Opened::Entry(e) => Ok(Lookup::Hit(e)),
            entry::Opened::Outdated(why) => {
                self.delete_where("hash = ?1", &[&hash])?;
                Ok(Lookup::Outdated(why))
            }
            entry::Opened::Damaged(why) => {
                self.delete_where("hash = ?1", &[&hash])?;
                Ok(Lookup::Damaged(why))
            }
        }
    }

    /// Looks up `entry` no older than `max_age_secs` and reads it whole (tests and
    /// benchmarks; jobs replay entries into their renderer instead).
    pub fn get(&self, entry: [u8; 32], max_age_secs: u64, now: i64) -> Result<Lookup, CacheError> {
        Ok(match self.open_entry(entry, max_age_secs, now)? {
            Lookup::Hit(e) => {
                let mut all = crate::connectors::Collect::default();
                match e.replay(&mut all, &|| false) {
                    Ok(trailer) => Lookup::Hit(ResultSet { truncated: trailer.truncated, ..all.0 }),
                    Err(entry::Replay::Damaged(why)) => Lookup::Damaged(why),
                    Err(entry::Replay::Sink(e)) => return Err(CacheError::Task(e.to_string())),
                }
            }
            Lookup::Miss => Lookup::Miss,
            Lookup::Damaged(why) => Lookup::Damaged(why),
            Lookup::Outdated(why) => Lookup::Outdated(why),
        })
    }

    /// Stores `rs` as `entry` for `connection`: encrypted into a temp file, fsync'd,
    /// renamed into place, then indexed; then evicts beyond the size cap. Returns the
    /// bytes written. Blocking.
    pub fn put(&self, entry: [u8; 32], connection: &str, rs: &ResultSet, now: i64) -> Result<u64, CacheError> {
        let mut pending = self.begin(entry, connection, now)?;
        let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(stream::CHUNK + 1024));
        let mut enc = rows::RowEncoder::start(&mut buf, &rs.columns, rs.provenance.as_ref());
        for row in &rs.rows {
            enc.row(&mut buf, row)?;
            if buf.len() >= stream::CHUNK {
                pending.write(&buf)?;
                buf.clear();
            }
        }
        enc.finish(&mut buf, rs.truncated);
        pending.write(&buf)?;
        pending.commit()
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
mod tests;
