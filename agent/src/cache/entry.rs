//! One entry on its way in ([`PendingEntry`]: ciphertext into a temp file, committed by
//! fsync, rename and index, or removed) and on its way out ([`Entry`]: rows decrypted
//! chunk by chunk and decoded one at a time into a [`RowSink`]). Both are blocking: the
//! runner calls them on blocking threads.

use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

use outpost_protocol::encoding::hex;
use rusqlite::params;

use super::rows::{Header, RowDecoder, RowsError, Trailer};
use super::stream::{EntryReader, EntryWriter, CHUNK};
use super::{io, Cache, CacheError, Index};
use crate::connectors::{QueryError, RowSink};

/// An entry being written: ciphertext goes to a temp file (0600) as it comes; nothing is
/// readable until [`PendingEntry::commit`]. Dropped uncommitted, the temp file is removed.
pub struct PendingEntry {
    cache: Cache,
    hash: String,
    connection: String,
    now: i64,
    tmp: PathBuf,
    writer: Option<EntryWriter<BufWriter<std::fs::File>>>,
    plaintext: u64,
}

impl std::fmt::Debug for PendingEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingEntry").field("hash", &self.hash).field("tmp", &self.tmp).finish_non_exhaustive()
    }
}

impl Cache {
    /// Starts entry `entry` of `connection`, created at `now`.
    pub fn begin(&self, entry: [u8; 32], connection: &str, now: i64) -> Result<PendingEntry, CacheError> {
        use std::os::unix::fs::OpenOptionsExt;
        let hash = hex(&entry);
        let tmp = self.dir.join(format!(".{hash}.tmp.{}", outpost_protocol::ids::new_nonce()));
        let f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
        let mut pending = PendingEntry {
            cache: self.clone(),
            hash,
            connection: connection.to_owned(),
            now,
            tmp,
            writer: None,
            plaintext: 0,
        };
        // From here on, a failure drops `pending`, which removes the temp file.
        pending.writer = Some(EntryWriter::new(BufWriter::with_capacity(CHUNK + 64, f), &self.key, entry)?);
        Ok(pending)
    }
}

impl PendingEntry {
    /// Encrypts and writes more plaintext. An entry beyond the cache's byte cap is
    /// refused (it would be evicted at once).
    pub fn write(&mut self, plaintext: &[u8]) -> Result<(), CacheError> {
        use std::io::Write as _;
        self.plaintext += plaintext.len() as u64;
        if self.plaintext > self.cache.max_bytes {
            return Err(CacheError::TooLarge { max_bytes: self.cache.max_bytes });
        }
        let w = self.writer.as_mut().ok_or(CacheError::Abandoned)?;
        w.write_all(plaintext).map_err(io(&self.tmp))
    }

    /// Writes the final chunk, fsyncs, renames into place, fsyncs the directory, then
    /// indexes the entry and evicts beyond the byte cap. Returns the bytes on disk.
    pub fn commit(mut self) -> Result<u64, CacheError> {
        let w = self.writer.take().ok_or(CacheError::Abandoned)?;
        let (buf, bytes) = w.finish()?;
        let f = buf
            .into_inner()
            .map_err(|e| CacheError::Io { path: self.tmp.display().to_string(), source: e.into_error() })?;
        f.sync_all().map_err(io(&self.tmp))?;
        let path = self.cache.file(&self.hash);
        std::fs::rename(&self.tmp, &path).map_err(io(&path))?;
        let dir = &self.cache.dir;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
        self.cache.lock()?.execute(
            "INSERT OR REPLACE INTO entries (hash, connection, key_id, created_at, last_used, bytes)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![self.hash, self.connection, self.cache.key_id, self.now, i64::try_from(bytes).unwrap_or(i64::MAX)],
        )?;
        self.cache.evict()?;
        Ok(bytes)
    }
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        // Committed: the temp file is the entry now, under its own name; this finds nothing.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

type Decoder = RowDecoder<EntryReader<BufReader<std::fs::File>>>;

/// A fresh entry whose header has authenticated and been read; its rows are read by
/// [`Entry::replay`].
pub struct Entry {
    idx: Index,
    hash: String,
    now: i64,
    header: Header,
    rows: Box<Decoder>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("hash", &self.hash).field("columns", &self.header.columns).finish_non_exhaustive()
    }
}

/// Why a replay stopped.
#[derive(Debug)]
pub enum Replay {
    /// The entry did not authenticate or decode past its header; it has been deleted.
    /// Rows handed to the sink before this came from chunks that did authenticate, but
    /// the result is not whole: the caller discards the sink.
    Damaged(String),
    /// The sink refused a row or the columns, or the job was cancelled.
    Sink(QueryError),
}

/// What opening an entry found, before any row.
pub(super) enum Opened {
    Entry(Entry),
    Outdated(String),
    Damaged(String),
}

impl Entry {
    pub(super) fn open(cache: &Cache, hash: String, file: std::fs::File, entry: [u8; 32], now: i64) -> Opened {
        let reader = match EntryReader::new(BufReader::with_capacity(CHUNK + 64, file), &cache.key, entry) {
            Ok(r) => r,
            Err(e) => return Opened::Damaged(e.to_string()),
        };
        match RowDecoder::open(reader) {
            Ok((rows, header)) => {
                Opened::Entry(Entry { idx: cache.idx.clone(), hash, now, header, rows: Box::new(rows) })
            }
            Err(RowsError::Outdated(why)) => Opened::Outdated(why),
            Err(e) => Opened::Damaged(e.to_string()),
        }
    }

    /// The columns and their provenance.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Hands the entry's provenance, columns and rows to `sink`, decrypting one chunk and
    /// decoding one row at a time; `stop` is asked between rows (a cancelled job). The
    /// trailer once the final chunk has authenticated; then the entry counts as used.
    pub fn replay(mut self, sink: &mut dyn RowSink, stop: &dyn Fn() -> bool) -> Result<Trailer, Replay> {
        if let Some(p) = self.header.provenance.take() {
            sink.provenance(p).map_err(Replay::Sink)?;
        }
        sink.columns(&self.header.columns).map_err(Replay::Sink)?;
        let mut index = 0usize;
        let reads = sink.reads();
        let mut row = Vec::with_capacity(self.header.columns.len());
        let read = loop {
            // A sink that reads some columns only is lent each row, the others NULL;
            // one that keeps rows gets them.
            let more = match &reads {
                Some(wanted) => self.rows.next_row_into(&mut row, Some(wanted)),
                None => {
                    row = Vec::with_capacity(self.header.columns.len());
                    self.rows.next_row_into(&mut row, None)
                }
            };
            match more {
                Ok(true) => {
                    let given = match &reads {
                        Some(_) => sink.row_ref(&row, index),
                        None => sink.row(std::mem::take(&mut row), index),
                    };
                    given.map_err(Replay::Sink)?;
                    index += 1;
                    if index.is_multiple_of(1024) && stop() {
                        return Err(Replay::Sink(QueryError::Cancelled));
                    }
                }
                Ok(false) => break self.rows.finish(),
                Err(e) => break Err(e),
            }
        };
        match read {
            Ok(trailer) => {
                if let Ok(db) = self.idx.lock() {
                    let _ =
                        db.execute("UPDATE entries SET last_used = ?2 WHERE hash = ?1", params![self.hash, self.now]);
                }
                Ok(trailer)
            }
            Err(e) => {
                let _ = self.idx.delete_where("hash = ?1", &[&self.hash]);
                Err(Replay::Damaged(e.to_string()))
            }
        }
    }
}
