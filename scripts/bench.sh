#!/usr/bin/env bash
# Benchmarks: end-to-end job latency and throughput through the real binaries on
# loopback (release build), and criterion micro-benchmarks of signing and verifying.
# Prints the machine it ran on. Record the figures in docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS="${JOBS:-1000}"
CLIENTS="${CLIENTS:-32}"
JOBS_PER_CLIENT="${JOBS_PER_CLIENT:-100}"

echo "==> machine"
echo "    $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "    $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(rustc --version)"

echo "==> building release binaries"
cargo build --release --bins --locked --quiet

echo "==> end-to-end: API dispatch -> agent (mTLS long-poll, verify, SQLite, render, audit) -> result with ?wait"
OUTPOST_BIN_DIR="$PWD/target/release" target/release/outpost-bench \
  --jobs "$JOBS" --clients "$CLIENTS" --jobs-per-client "$JOBS_PER_CLIENT"

echo "==> criterion: envelope sign / verify"
cargo bench --locked -p outpost-protocol --bench envelope -- --noplot 2>/dev/null | grep -E '^(sign|Envelope|peer)|time:'
