#!/usr/bin/env bash
# Benchmarks: end-to-end job latency and throughput through the real binaries on
# loopback (release build), and criterion micro-benchmarks of signing and verifying.
# Prints the machine it ran on. Record the figures in docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS="${JOBS:-1000}"
CLIENTS="${CLIENTS:-32}"
JOBS_PER_CLIENT="${JOBS_PER_CLIENT:-100}"
OUTPOST_TEST_PG_URL_SHOWN="${OUTPOST_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"

echo "==> machine"
echo "    $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "    $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(rustc --version)"

echo "==> building release binaries"
cargo build --release --bins --locked --quiet

echo "==> end-to-end: API dispatch -> agent (mTLS long-poll, verify, SQLite, render, audit) -> result with ?wait"
OUTPOST_BIN_DIR="$PWD/target/release" target/release/outpost-bench \
  --jobs "$JOBS" --clients "$CLIENTS" --jobs-per-client "$JOBS_PER_CLIENT"

echo "==> PostgreSQL ($OUTPOST_TEST_PG_URL_SHOWN): a ${PG_ROWS:-1000000}-row query rendered as a downsampled line chart"
echo "    through the agent; peers psql -At and COPY ... TO STDOUT on the same server, same run"
OUTPOST_BIN_DIR="$PWD/target/release" target/release/outpost-bench-pg --rows "${PG_ROWS:-1000000}" --runs "${PG_RUNS:-5}"

echo "==> criterion: envelope sign / verify"
cargo bench --locked -p outpost-protocol --bench envelope -- --noplot 2>/dev/null | grep -E '^(sign|Envelope|peer)|time:'

echo "==> result cache: raw AES-256-GCM rate; peer: openssl speed -evp aes-256-gcm, same machine, same run"
for bytes in 16384 1048576; do
  printf '    openssl %s (%s-byte blocks): ' "$(openssl version | cut -d' ' -f1-2)" "$bytes"
  openssl speed -evp aes-256-gcm -bytes "$bytes" -seconds 3 2>/dev/null \
    | awk 'tolower($1) == "aes-256-gcm" { v = $NF; sub(/k$/, "", v); printf "%.0f MiB/s\n", v * 1000 / 1048576 }'
done
echo "    criterion (aws-lc-rs, the cache's cipher; entry format; whole cache):"
cargo bench --locked -p outpost-agent --bench cache -- --noplot 2>/dev/null | grep -E '^(aes|cache)|time:|thrpt:'

echo "==> result cache: whole write (encrypt + fsync) and read of 1 MB and 100 MB results, peak memory"
mkdir -p target
dir=$(mktemp -d target/cache-bench.XXXXXX)
cargo run --release --locked --quiet -p outpost-agent --example cache_bench -- "$dir" 1 100
rm -rf "$dir"

echo "==> replicas: ${REPLICA_CLIENTS:-32} concurrent API clients, each job POST /v1/jobs to pool:eu then GET .../result?wait=30"
echo "    on a kept-alive connection; two pooled agents (m1, m2); same run: SQLite 1 replica, PostgreSQL 1 replica,"
echo "    PostgreSQL 3 replicas sharing one database (clients round-robin, wake-ups cross replicas via LISTEN/NOTIFY)"
OUTPOST_BIN_DIR="$PWD/target/release" target/release/outpost-bench-replicas \
  --clients "${REPLICA_CLIENTS:-32}" --jobs-per-client "${REPLICA_JOBS_PER_CLIENT:-50}"

echo "==> idle agents: ${IDLE_AGENTS:-10000} simulated agents enrol over TLS and park one mutual-TLS HTTP/2 long-poll each"
echo "    on one control plane (${IDLE_STORE:-postgres} store); its RSS, peak RSS and open fds from /proc; then one job"
echo "    must come back on one agent's pending poll. Needs ulimit -n above the agent count (bench and control plane each)."
OUTPOST_BIN_DIR="$PWD/target/release" target/release/outpost-bench-idle \
  --agents "${IDLE_AGENTS:-10000}" --store "${IDLE_STORE:-postgres}"
