//! The result cache's speed: the raw AES-256-GCM rate of the one provider (aws-lc-rs) at
//! 16 KiB and 1 MiB, to set beside `openssl speed -evp aes-256-gcm` in the same run
//! (scripts/bench.sh prints both); the chunked entry format on top of it; a whole cache
//! write (with fsync) and read of a 1 MB result; and a cache hit of a small result, the
//! cost a hit adds to a job.
#![allow(missing_docs)]

use std::io::{Read as _, Write as _};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use outpost_agent::cache::stream::{EntryReader, EntryWriter};
use outpost_agent::cache::{entry_hash, Cache, Lookup};
use outpost_agent::resultset::{ResultSet, Value};

const SIZES: [(usize, &str); 2] = [(16 * 1024, "16KiB"), (1024 * 1024, "1MiB")];

fn raw(c: &mut Criterion) {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
    let mut g = c.benchmark_group("aes-256-gcm (aws-lc-rs)");
    for (size, name) in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0x5au8; size];
        g.bench_function(BenchmarkId::new("seal", name), |b| {
            b.iter(|| {
                let tag = key
                    .seal_in_place_separate_tag(Nonce::assume_unique_for_key([1; 12]), Aad::from(&[0u8; 41]), &mut buf)
                    .expect("seal");
                let _ = std::hint::black_box(tag);
            })
        });
        let mut sealed = vec![0x5au8; size];
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key([1; 12]), Aad::from(&[0u8; 41]), &mut sealed)
            .expect("seal");
        sealed.extend_from_slice(tag.as_ref());
        g.bench_function(BenchmarkId::new("open", name), |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |s| {
                    let plain = key
                        .open_in_place(Nonce::assume_unique_for_key([1; 12]), Aad::from(&[0u8; 41]), s)
                        .expect("open");
                    std::hint::black_box(plain.len());
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn format(c: &mut Criterion) {
    let key = [7u8; 32];
    let entry = entry_hash("bench", "SELECT 1", "[]");
    let mut g = c.benchmark_group("cache entry format (64 KiB chunks, in memory)");
    for (size, name) in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let plain = vec![0x5au8; size];
        g.bench_function(BenchmarkId::new("write", name), |b| {
            b.iter(|| {
                let mut w = EntryWriter::new(Vec::with_capacity(size + 4096), &key, entry).expect("writer");
                w.write_all(&plain).expect("write");
                std::hint::black_box(w.finish().expect("finish"));
            })
        });
        let mut w = EntryWriter::new(Vec::new(), &key, entry).expect("writer");
        w.write_all(&plain).expect("write");
        let (sealed, _) = w.finish().expect("finish");
        let mut out = Vec::with_capacity(size);
        g.bench_function(BenchmarkId::new("read", name), |b| {
            b.iter(|| {
                out.clear();
                let mut r = EntryReader::new(sealed.as_slice(), &key, entry).expect("reader");
                r.read_to_end(&mut out).expect("read");
                std::hint::black_box(out.len());
            })
        });
    }
    g.finish();
}

/// About `bytes` of result: rows of an id, a 64-character text, a float and a NULL.
pub fn result_of(bytes: usize) -> ResultSet {
    let rows = bytes / 100;
    ResultSet {
        columns: vec!["id".into(), "note".into(), "amount".into(), "nothing".into()],
        rows: (0..rows)
            .map(|i| {
                vec![Value::Int(i as i64), Value::Text(format!("{i:064}")), Value::Float(i as f64 * 0.25), Value::Null]
            })
            .collect(),
        truncated: false,
        provenance: None,
    }
}

fn whole(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path(), &[7u8; 32], "bench", 1 << 34).expect("cache");
    let mut g = c.benchmark_group("cache (state dir on this disk)");
    g.sample_size(30);
    let big = result_of(1_000_000);
    let entry = entry_hash("bench", "SELECT big", "[]");
    let size = cache.put(entry, "bench", &big, 1).expect("put");
    g.throughput(Throughput::Bytes(size));
    g.bench_function("put 1 MB result (encrypt + fsync + rename + index)", |b| {
        b.iter(|| cache.put(entry, "bench", &big, 1).expect("put"))
    });
    g.bench_function("get 1 MB result (read + decrypt + decode into a result)", |b| {
        b.iter(|| match cache.get(entry, 600, 2).expect("get") {
            Lookup::Hit(rs) => std::hint::black_box(rs.rows.len()),
            other => panic!("{other:?}"),
        })
    });
    let small = result_of(5_000);
    let hit = entry_hash("bench", "SELECT small", "[]");
    cache.put(hit, "bench", &small, 1).expect("put");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cache hit: get of a 50-row result", |b| {
        b.iter(|| match cache.get(hit, 600, 2).expect("get") {
            Lookup::Hit(rs) => std::hint::black_box(rs.rows.len()),
            other => panic!("{other:?}"),
        })
    });
    g.finish();
}

criterion_group!(benches, raw, format, whole);
criterion_main!(benches);
