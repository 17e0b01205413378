//! Chunked, streaming AES-256-GCM for cache entries.
//!
//! An entry file is a header followed by chunks:
//!
//! ```text
//! "OPCACHE1"  salt (32 bytes)
//! repeated:   final flag (top bit) | length of ciphertext + tag (u32 big-endian)  ciphertext+tag
//! ```
//!
//! Each entry has its own key, `HKDF-SHA256(cache key, salt, "outpost/cache-entry/v1")`,
//! so chunk nonces can be a counter: `chunk index (u64 BE) || final flag (u32 BE)`. The
//! associated data binds the entry's cache-key hash, the chunk index and the final flag:
//! a chunk moved to another entry or position, a dropped last chunk (truncation) or
//! trailing bytes after the final chunk all fail to decrypt. Plaintext is only ever in
//! memory, one chunk at a time; the writer encrypts as it goes.

use std::io::{Read, Write};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, MAX_TAG_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use zeroize::Zeroizing;

/// File magic and version.
pub const MAGIC: &[u8; 8] = b"OPCACHE1";
/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const SALT_LEN: usize = 32;
const FINAL_BIT: u32 = 1 << 31;

/// Why an entry could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// I/O.
    #[error("cache I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Not an entry file, or altered, truncated, reordered or swapped.
    #[error("cache entry does not authenticate: {0}")]
    Tampered(&'static str),
}

fn entry_key(cache_key: &[u8; 32], salt: &[u8]) -> Result<LessSafeKey, StreamError> {
    let prk = Salt::new(HKDF_SHA256, salt).extract(cache_key);
    let info: &[&[u8]] = &[b"outpost/cache-entry/v1"];
    let okm = prk.expand(info, &AES_256_GCM).map_err(|_| StreamError::Tampered("key derivation"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

fn nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[8..].copy_from_slice(&u32::from(last).to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn aad(entry: &[u8; 32], index: u64, last: bool) -> [u8; 41] {
    let mut a = [0u8; 41];
    a[..32].copy_from_slice(entry);
    a[32..40].copy_from_slice(&index.to_be_bytes());
    a[40] = u8::from(last);
    a
}

/// Encrypts a stream into `out` chunk by chunk. Call [`EntryWriter::finish`] to write the
/// final chunk; an entry without it does not read back.
pub struct EntryWriter<W: Write> {
    out: W,
    key: LessSafeKey,
    entry: [u8; 32],
    buf: Zeroizing<Vec<u8>>,
    index: u64,
    written: u64,
}

impl<W: Write> EntryWriter<W> {
    /// Starts an entry for the cache key hash `entry` under `cache_key`.
    pub fn new(mut out: W, cache_key: &[u8; 32], entry: [u8; 32]) -> Result<Self, StreamError> {
        let mut salt = [0u8; SALT_LEN];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| StreamError::Tampered("random generator"))?;
        out.write_all(MAGIC)?;
        out.write_all(&salt)?;
        let key = entry_key(cache_key, &salt)?;
        Ok(Self {
            out,
            key,
            entry,
            buf: Zeroizing::new(Vec::with_capacity(CHUNK + MAX_TAG_LEN)),
            index: 0,
            written: (MAGIC.len() + SALT_LEN) as u64,
        })
    }

    fn flush_chunk(&mut self, last: bool) -> Result<(), StreamError> {
        let n = nonce(self.index, last);
        self.key
            .seal_in_place_append_tag(n, Aad::from(aad(&self.entry, self.index, last)), &mut *self.buf)
            .map_err(|_| StreamError::Tampered("encryption"))?;
        let len = u32::try_from(self.buf.len()).map_err(|_| StreamError::Tampered("chunk size"))?;
        // The flag in the prefix only tells the reader which nonce to try; it is
        // authenticated through the nonce and the associated data.
        let prefix = len | if last { FINAL_BIT } else { 0 };
        self.out.write_all(&prefix.to_be_bytes())?;
        self.out.write_all(&self.buf)?;
        self.written += 4 + u64::from(len);
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Finishes the entry; returns the writer and the bytes written.
    pub fn finish(mut self) -> Result<(W, u64), StreamError> {
        self.flush_chunk(true)?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

impl<W: Write> Write for EntryWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            if self.buf.len() == CHUNK {
                self.flush_chunk(false).map_err(std::io::Error::other)?;
            }
            let take = (CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decrypts an entry chunk by chunk; yields an error at the first chunk that does not
/// authenticate, and at the end if the final chunk is missing or followed by more bytes.
pub struct EntryReader<R: Read> {
    input: R,
    key: LessSafeKey,
    entry: [u8; 32],
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    index: u64,
    done: bool,
}

impl<R: Read> EntryReader<R> {
    /// Opens an entry for the cache key hash `entry` under `cache_key`.
    pub fn new(mut input: R, cache_key: &[u8; 32], entry: [u8; 32]) -> Result<Self, StreamError> {
        let mut head = [0u8; 8 + SALT_LEN];
        input.read_exact(&mut head).map_err(|_| StreamError::Tampered("short header"))?;
        if &head[..8] != MAGIC {
            return Err(StreamError::Tampered("not a cache entry"));
        }
        let key = entry_key(cache_key, &head[8..])?;
        Ok(Self { input, key, entry, buf: Zeroizing::new(Vec::new()), pos: 0, index: 0, done: false })
    }

    /// Reads and opens the next chunk into `buf`; `false` at the end.
    fn next_chunk(&mut self) -> Result<bool, StreamError> {
        if self.done {
            let mut probe = [0u8; 1];
            if self.input.read(&mut probe)? != 0 {
                return Err(StreamError::Tampered("bytes after the final chunk"));
            }
            return Ok(false);
        }
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len).map_err(|_| StreamError::Tampered("truncated: final chunk missing"))?;
        let prefix = u32::from_be_bytes(len);
        let last = prefix & FINAL_BIT != 0;
        let len = (prefix & !FINAL_BIT) as usize;
        if !(MAX_TAG_LEN..=CHUNK + MAX_TAG_LEN).contains(&len) {
            return Err(StreamError::Tampered("bad chunk length"));
        }
        self.buf.resize(len, 0);
        self.input.read_exact(&mut self.buf).map_err(|_| StreamError::Tampered("truncated chunk"))?;
        let n = self
            .key
            .open_in_place(nonce(self.index, last), Aad::from(aad(&self.entry, self.index, last)), &mut self.buf)
            .map_err(|_| StreamError::Tampered("a chunk was altered, moved, swapped or cut"))?
            .len();
        self.buf.truncate(n);
        self.pos = 0;
        self.index += 1;
        self.done = last;
        Ok(true)
    }
}

impl<R: Read> Read for EntryReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if !self.next_chunk().map_err(std::io::Error::other)? {
                return Ok(0);
            }
        }
        let n = (self.buf.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [3u8; 32];
    const ENTRY: [u8; 32] = [5u8; 32];

    fn encrypt(data: &[u8], entry: [u8; 32]) -> Vec<u8> {
        let mut w = EntryWriter::new(Vec::new(), &KEY, entry).expect("writer");
        w.write_all(data).expect("write");
        w.finish().expect("finish").0
    }

    fn decrypt(file: &[u8], entry: [u8; 32]) -> Result<Vec<u8>, std::io::Error> {
        let mut r = EntryReader::new(file, &KEY, entry).map_err(std::io::Error::other)?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// Byte ranges of each chunk record (length prefix included) in a file.
    fn chunks(file: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut at = 8 + SALT_LEN;
        while at < file.len() {
            let len = (u32::from_be_bytes(file[at..at + 4].try_into().expect("len")) & !FINAL_BIT) as usize;
            out.push(at..at + 4 + len);
            at += 4 + len;
        }
        out
    }

    #[test]
    fn round_trips_at_chunk_boundaries_and_holds_no_plaintext() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17] {
            let d = data(n);
            let f = encrypt(&d, ENTRY);
            assert_eq!(decrypt(&f, ENTRY).expect("decrypt"), d, "{n} bytes");
        }
        let secret = b"canary-plaintext-never-on-disk".repeat(100);
        let f = encrypt(&secret, ENTRY);
        assert!(!f.windows(14).any(|w| w == b"canary-plainte"));
    }

    #[test]
    fn truncation_reordering_swapping_and_trailing_bytes_are_detected() {
        let d = data(3 * CHUNK + 10);
        let f = encrypt(&d, ENTRY);
        let c = chunks(&f);
        assert_eq!(c.len(), 4);
        // Drop the final chunk: the stream ends without a final flag.
        assert!(decrypt(&f[..c[3].start], ENTRY).is_err());
        // Swap two chunks.
        let mut swapped = f[..c[0].start].to_vec();
        swapped.extend_from_slice(&f[c[1].clone()]);
        swapped.extend_from_slice(&f[c[0].clone()]);
        swapped.extend_from_slice(&f[c[2].start..]);
        assert!(decrypt(&swapped, ENTRY).is_err());
        // Marking an earlier chunk final and cutting the rest.
        let mut cut = f[..c[2].end].to_vec();
        cut[c[2].start] |= 0x80;
        assert!(decrypt(&cut, ENTRY).is_err());
        // Trailing garbage after the final chunk.
        let mut longer = f.clone();
        longer.push(0);
        assert!(decrypt(&longer, ENTRY).is_err());
        // One flipped bit anywhere in a chunk.
        let mut flipped = f.clone();
        flipped[c[1].start + 100] ^= 1;
        assert!(decrypt(&flipped, ENTRY).is_err());
        // A chunk taken from another entry (same key, same position).
        let other = encrypt(&d, [6u8; 32]);
        let mut mixed = f[..c[1].start].to_vec();
        mixed.extend_from_slice(&other[chunks(&other)[1].clone()]);
        mixed.extend_from_slice(&f[c[2].start..]);
        assert!(decrypt(&mixed, ENTRY).is_err());
        // The whole file read as another entry.
        assert!(decrypt(&f, [6u8; 32]).is_err());
    }
}
