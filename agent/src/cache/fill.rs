//! A cache miss that streams: each row goes to the renderer and, encoded, towards the
//! entry at the same time ([`Tee`]). Encoded rows travel in batches of one chunk (64 KiB)
//! through a bounded channel to a blocking thread that encrypts and writes them
//! ([`Filler`]), so the async runtime never waits on the disk and memory stays at a few
//! batches whatever the result's size. When the writer is behind, the connector waits
//! between rows ([`RowSink::room`]).
//!
//! Only [`Filler::commit`], after the query has ended well, makes the entry readable.
//! A result cut by an error, a refusal, a render error or a cancel drops the filler
//! instead: the writer then removes its temp file and nothing is indexed. The writer
//! also counts the bytes it received against those the encoder produced, so a batch
//! lost on the way (a wait cancelled) can never be committed as a shorter result.

use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::entry::PendingEntry;
use super::rows::RowEncoder;
use super::stream::CHUNK;
use super::{Cache, CacheError};
use crate::connectors::{QueryError, Room, RowSink};
use crate::provenance::ResultProvenance;
use crate::resultset::Value;

/// Batches in flight between the encoder and the writer.
const QUEUE: usize = 4;

enum Msg {
    Bytes(Zeroizing<Vec<u8>>),
    Commit { bytes: u64 },
}

/// The encoding side of an entry being written on a blocking thread.
pub struct Filler {
    tx: Option<mpsc::Sender<Msg>>,
    buf: Zeroizing<Vec<u8>>,
    enc: Option<RowEncoder>,
    provenance: Option<ResultProvenance>,
    /// Bytes handed to the channel (or to a wait for it).
    sent: u64,
    writer: Option<tokio::task::JoinHandle<Result<u64, CacheError>>>,
    broken: bool,
}

impl std::fmt::Debug for Filler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filler").field("sent", &self.sent).field("broken", &self.broken).finish_non_exhaustive()
    }
}

/// The writer thread: plaintext batches in, an entry committed only on a `Commit` that
/// accounts for every byte.
fn write(mut pending: PendingEntry, mut rx: mpsc::Receiver<Msg>) -> Result<u64, CacheError> {
    let mut received = 0u64;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Bytes(b) => {
                received += b.len() as u64;
                pending.write(&b)?;
            }
            Msg::Commit { bytes } if bytes == received => return pending.commit(),
            Msg::Commit { .. } => return Err(CacheError::Incomplete),
        }
    }
    Err(CacheError::Abandoned)
}

impl Cache {
    /// Starts writing `entry` of `connection` on a blocking thread (call from the async
    /// runtime); hand it the rows through a [`Tee`], then [`Filler::commit`].
    pub fn filler(&self, entry: [u8; 32], connection: &str, now: i64) -> Filler {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (cache, connection) = (self.clone(), connection.to_owned());
        let writer = tokio::task::spawn_blocking(move || write(cache.begin(entry, &connection, now)?, rx));
        Filler {
            tx: Some(tx),
            buf: Zeroizing::new(Vec::with_capacity(CHUNK + 1024)),
            enc: None,
            provenance: None,
            sent: 0,
            writer: Some(writer),
            broken: false,
        }
    }
}

impl Filler {
    fn take(&mut self) -> Zeroizing<Vec<u8>> {
        let batch = std::mem::replace(&mut self.buf, Zeroizing::new(Vec::with_capacity(CHUNK + 1024)));
        self.sent += batch.len() as u64;
        batch
    }

    /// Hands a full batch to the writer if the channel has room now.
    fn send_ready(&mut self) {
        let Filler { tx: Some(tx), buf, sent, broken: broken @ false, .. } = self else { return };
        if buf.len() < CHUNK {
            return;
        }
        match tx.try_reserve() {
            Ok(permit) => {
                let batch = std::mem::replace(buf, Zeroizing::new(Vec::with_capacity(CHUNK + 1024)));
                *sent += batch.len() as u64;
                permit.send(Msg::Bytes(batch));
            }
            Err(mpsc::error::TrySendError::Full(())) => {}
            // The writer gave up (the disk, the byte cap): the query goes on uncached.
            Err(mpsc::error::TrySendError::Closed(())) => *broken = true,
        }
    }

    fn provenance(&mut self, p: &ResultProvenance) {
        self.provenance = Some(p.clone());
    }

    fn columns(&mut self, columns: &[String]) {
        self.enc = Some(RowEncoder::start(&mut self.buf, columns, self.provenance.as_ref()));
    }

    fn row(&mut self, row: &[Value]) {
        if self.broken {
            return;
        }
        match self.enc.as_mut().map(|e| e.row(&mut self.buf, row)) {
            Some(Ok(())) => self.send_ready(),
            _ => self.broken = true,
        }
    }

    /// What to wait for before more rows, when the writer is a whole batch behind.
    fn room(&mut self) -> Option<Room> {
        self.send_ready();
        if self.broken || self.buf.len() < CHUNK {
            return None;
        }
        let tx = self.tx.clone()?;
        let batch = self.take();
        Some(Box::pin(async move {
            // A closed channel is seen at the next send or at commit.
            let _ = tx.send(Msg::Bytes(batch)).await;
        }))
    }

    /// After the whole result: writes the trailer and waits for the writer to commit.
    /// Returns the entry's bytes on disk.
    pub async fn commit(mut self, truncated: bool) -> Result<u64, CacheError> {
        let tx = self.tx.take();
        let writer = self.writer.take();
        let enc = self.enc.take();
        if let (false, Some(tx), Some(enc)) = (self.broken, tx, enc) {
            enc.finish(&mut self.buf, truncated);
            let batch = self.take();
            // A send that fails means the writer has stopped; its error is below.
            if tx.send(Msg::Bytes(batch)).await.is_ok() {
                let _ = tx.send(Msg::Commit { bytes: self.sent }).await;
            }
        }
        match writer {
            Some(w) => w.await.map_err(|e| CacheError::Task(e.to_string()))?,
            None => Err(CacheError::Abandoned),
        }
    }

    /// Gives the entry up and waits until the writer has removed its temp file.
    pub async fn abandon(mut self) {
        drop(self.tx.take());
        if let Some(w) = self.writer.take() {
            let _ = w.await;
        }
    }
}

/// The renderer's sink and the entry's filler side by side: every row goes to both.
pub struct Tee<'a> {
    /// The renderer's sink.
    pub inner: &'a mut dyn RowSink,
    /// The entry.
    pub filler: &'a mut Filler,
}

impl std::fmt::Debug for Tee<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee").field("filler", &self.filler).finish_non_exhaustive()
    }
}

impl RowSink for Tee<'_> {
    fn provenance(&mut self, provenance: ResultProvenance) -> Result<(), QueryError> {
        self.filler.provenance(&provenance);
        self.inner.provenance(provenance)
    }

    fn columns(&mut self, columns: &[String]) -> Result<(), QueryError> {
        self.inner.columns(columns)?;
        self.filler.columns(columns);
        Ok(())
    }

    fn row(&mut self, row: Vec<Value>, index: usize) -> Result<(), QueryError> {
        self.filler.row(&row);
        self.inner.row(row, index)
    }

    fn room(&mut self) -> Option<Room> {
        self.filler.room()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_does_not_account_for_every_byte_stores_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::open(dir.path(), &[1u8; 32], "k1", 1 << 30).expect("open");
        let entry = super::super::entry_hash("c", "lost", "[]");
        let pending = cache.begin(entry, "sample", 1).expect("begin");
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = tokio::task::spawn_blocking(move || write(pending, rx));
        let mut plain = Vec::new();
        RowEncoder::start(&mut plain, &["n".into()], None).finish(&mut plain, false);
        tx.send(Msg::Bytes(Zeroizing::new(plain.clone()))).await.expect("send");
        // One batch "lost" on the way: the encoder counted more than arrived.
        tx.send(Msg::Commit { bytes: plain.len() as u64 + 10 }).await.expect("send");
        assert!(matches!(writer.await.expect("join"), Err(CacheError::Incomplete)));
        assert_eq!(cache.stats().expect("stats").entries, 0);
        let left: Vec<_> = std::fs::read_dir(dir.path().join(super::super::CACHE_DIR))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp") || n.ends_with(".bin"))
            .collect();
        assert_eq!(left, Vec::<String>::new());
    }
}
