//! Whole-cache timing and memory for large results, for scripts/bench.sh: writes (with
//! fsync) and reads back a result of each size given in MB, several times, and prints
//! the median times and the peak resident memory above the size before each step. A
//! read is measured twice: `get` rebuilds the result in memory (what a table needs),
//! `replay` hands the rows one at a time to a sink that keeps none (what a chart does).
//!
//! `cargo run --release -p outpost-agent --example cache_bench -- DIR 1 100`
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use outpost_agent::cache::{entry_hash, Cache, Lookup};
use outpost_agent::connectors::{QueryError, RowSink};
use outpost_agent::resultset::{ResultSet, Value};

/// Counts rows and keeps none.
struct Count(usize);

impl RowSink for Count {
    fn columns(&mut self, _: &[String]) -> Result<(), QueryError> {
        Ok(())
    }
    fn row(&mut self, row: Vec<Value>, _: usize) -> Result<(), QueryError> {
        std::hint::black_box(row);
        self.0 += 1;
        Ok(())
    }
}

const RUNS: usize = 5;

fn status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Resets the peak-RSS counter (VmHWM) to the current RSS.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn result_of(bytes: usize) -> ResultSet {
    ResultSet {
        columns: vec!["id".into(), "note".into(), "amount".into(), "nothing".into()],
        rows: (0..bytes / 100)
            .map(|i| {
                vec![Value::Int(i as i64), Value::Text(format!("{i:064}")), Value::Float(i as f64 * 0.25), Value::Null]
            })
            .collect(),
        truncated: false,
        provenance: None,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib(b: u64) -> f64 {
    b as f64 / 1_048_576.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: cache_bench DIR MB..."));
    let sizes: Vec<usize> = args.map(|a| a.parse().expect("size in MB")).collect();
    let cache = Cache::open(&dir, &[7u8; 32], "bench", 1 << 40).expect("cache");
    println!("idle RSS {:.1} MiB", mib(status("VmRSS:")));
    for mb in sizes {
        let rs = result_of(mb * 1_000_000);
        let entry = entry_hash("bench", &format!("SELECT {mb}"), "[]");
        let held = status("VmRSS:");
        let (mut put, mut get, mut put_peak, mut get_peak, mut bytes) = (vec![], vec![], 0, 0, 0);
        let (mut replay, mut replay_peak) = (vec![], 0);
        for _ in 0..RUNS {
            reset_peak();
            let base = status("VmRSS:");
            let t = Instant::now();
            bytes = cache.put(entry, "bench", &rs, 1).expect("put");
            put.push(t.elapsed());
            put_peak = put_peak.max(status("VmHWM:").saturating_sub(base));
            reset_peak();
            let base = status("VmRSS:");
            let t = Instant::now();
            let Lookup::Hit(back) = cache.get(entry, 600, 2).expect("get") else { panic!("miss") };
            get.push(t.elapsed());
            get_peak = get_peak.max(status("VmHWM:").saturating_sub(base));
            assert_eq!(back.rows.len(), rs.rows.len());
            drop(back);
            reset_peak();
            let base = status("VmRSS:");
            let t = Instant::now();
            let Lookup::Hit(found) = cache.open_entry(entry, 600, 2).expect("open") else { panic!("miss") };
            let mut count = Count(0);
            found.replay(&mut count, &|| false).expect("replay");
            replay.push(t.elapsed());
            replay_peak = replay_peak.max(status("VmHWM:").saturating_sub(base));
            assert_eq!(count.0, rs.rows.len());
        }
        // Where a read's time goes: the file through the page cache alone, then through
        // decryption as well (no parsing).
        let file = dir.join("cache").join(format!("{}.bin", outpost_protocol::encoding::hex(&entry)));
        let (mut plain_read, mut decrypt_read) = (vec![], vec![]);
        for _ in 0..RUNS {
            let t = Instant::now();
            std::io::copy(&mut std::fs::File::open(&file).expect("open"), &mut std::io::sink()).expect("read");
            plain_read.push(t.elapsed());
            let t = Instant::now();
            let f = std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(&file).expect("open"));
            let mut r = outpost_agent::cache::stream::EntryReader::new(f, &[7u8; 32], entry).expect("entry");
            std::io::copy(&mut r, &mut std::io::sink()).expect("decrypt");
            decrypt_read.push(t.elapsed());
        }
        let (plain_read, decrypt_read) = (median(plain_read), median(decrypt_read));
        println!(
            "{mb} MB entry: page-cache read {:.1} ms ({:.0} MiB/s); read + decrypt {:.1} ms ({:.0} MiB/s)",
            plain_read.as_secs_f64() * 1e3,
            mib(bytes) / plain_read.as_secs_f64(),
            decrypt_read.as_secs_f64() * 1e3,
            mib(bytes) / decrypt_read.as_secs_f64(),
        );
        let (put, get, replay) = (median(put), median(get), median(replay));
        println!(
            "{mb} MB result ({} rows, {:.1} MiB on disk, result held in memory {:.1} MiB): \
             put {:.1} ms ({:.0} MiB/s, incl. fsync), peak +{:.1} MiB; get {:.1} ms ({:.0} MiB/s), peak +{:.1} MiB; \
             replay {:.1} ms ({:.0} MiB/s), peak +{:.1} MiB",
            rs.rows.len(),
            mib(bytes),
            mib(held),
            put.as_secs_f64() * 1e3,
            mib(bytes) / put.as_secs_f64(),
            mib(put_peak),
            get.as_secs_f64() * 1e3,
            mib(bytes) / get.as_secs_f64(),
            mib(get_peak),
            replay.as_secs_f64() * 1e3,
            mib(bytes) / replay.as_secs_f64(),
            mib(replay_peak),
        );
    }
}
