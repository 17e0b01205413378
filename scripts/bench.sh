#!/usr/bin/env bash
# Benchmarks: end-to-end job latency and throughput through the real binaries on
# loopback (release build), and criterion micro-benchmarks of signing and verifying.
# Prints the machine it ran on. Record the figures in docs/BENCHMARKS.md.
#
# BENCH_SECTIONS (comma-separated, default all): e2e, pg, cache-chart, criterion, cache,
# cache-entry, replicas, idle, dashboard (dashboard: a project of 12 current tiles opened in
# Chromium, first paint beside the sign-in page, and a refresh of its 12 tiles; cache-entry is the whole-entry part of cache: put, get and
# replay of 1 MB and 100 MB results, with peak memory; cache-chart is a 1,000,000-row
# cached line chart through the agent, first run and second run, beside psql -At).
# `scripts/bench.sh --quick` is BENCH_SECTIONS=e2e,pg,cache-chart,cache-entry,dashboard with
# JOBS=300, JOBS_PER_CLIENT=30 and PG_RUNS=3: every
# change to the job path runs it and records its figures in docs/BENCHMARKS.md. BENCH_CONTENDERS chooses the e2e section's contenders
# (default sqlite,sqlite-expr,sqlite-masked,pg,pg-masked; the pg ones need PostgreSQL at
# OUTPOST_TEST_PG_URL). OUTPOST_BIN_DIR: the release binaries (default target/release).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--quick" ]; then
  BENCH_SECTIONS="${BENCH_SECTIONS:-e2e,pg,cache-chart,cache-entry,dashboard}"
  JOBS="${JOBS:-300}"
  JOBS_PER_CLIENT="${JOBS_PER_CLIENT:-30}"
  PG_RUNS="${PG_RUNS:-3}"
fi
SECTIONS=",${BENCH_SECTIONS:-e2e,pg,cache-chart,criterion,cache,replicas,idle,dashboard},"
want() { [[ "$SECTIONS" == *",$1,"* ]]; }
export OUTPOST_BIN_DIR="${OUTPOST_BIN_DIR:-$PWD/target/release}"

JOBS="${JOBS:-1000}"
CLIENTS="${CLIENTS:-32}"
JOBS_PER_CLIENT="${JOBS_PER_CLIENT:-100}"
OUTPOST_TEST_PG_URL_SHOWN="${OUTPOST_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"

echo "==> machine"
echo "    $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "    $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(rustc --version)"
echo "    commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'), load average $(cut -d' ' -f1-3 /proc/loadavg) before the run"

echo "==> building release binaries"
cargo build --release --bins --locked --quiet

if want e2e; then
echo "==> end-to-end: API dispatch -> agent (mTLS long-poll, verify, query, render, audit) -> result with ?wait"
echo "    small table jobs, interleaved: the SQLite sample as before; with an expression column; on a connection"
echo "    with a mask rule (provenance asked of the database first); the same on PostgreSQL ($OUTPOST_TEST_PG_URL_SHOWN)"
echo "    as a SELECT-only role, without and with a mask rule; peer GET /v1/agents in the same run"
"$OUTPOST_BIN_DIR/outpost-bench" --jobs "$JOBS" --clients "$CLIENTS" --jobs-per-client "$JOBS_PER_CLIENT" \
  --contenders "${BENCH_CONTENDERS:-sqlite,sqlite-expr,sqlite-masked,pg,pg-masked}"
fi

if want pg; then
echo "==> PostgreSQL ($OUTPOST_TEST_PG_URL_SHOWN): a ${PG_ROWS:-1000000}-row query rendered as a downsampled line chart"
echo "    through the agent (SELECT-only role; without and with a mask rule on an unrelated column);"
echo "    peers psql -At and COPY ... TO STDOUT on the same server, same run"
"$OUTPOST_BIN_DIR/outpost-bench-pg" --rows "${PG_ROWS:-1000000}" --runs "${PG_RUNS:-5}"
fi

if want cache-chart; then
echo "==> PostgreSQL ($OUTPOST_TEST_PG_URL_SHOWN): a ${PG_ROWS:-1000000}-row line chart that asks for the result cache,"
echo "    with a 64-character text column read but not drawn: first run (miss: rows into the chart and the"
echo "    encrypted entry), second run (hit: rows from the entry), the same job without the cache, and psql -At"
echo "    on the same query, interleaved; the agent's VmHWM reset before and read after each run"
"$OUTPOST_BIN_DIR/outpost-bench-pg" --mode cache-chart --rows "${PG_ROWS:-1000000}" --runs "${PG_RUNS:-5}"
fi

if want criterion; then
echo "==> criterion: envelope sign / verify"
cargo bench --locked -p outpost-protocol --bench envelope -- --noplot 2>/dev/null | grep -E '^(sign|Envelope|peer)|time:'
fi

if want cache; then

echo "==> result cache: raw AES-256-GCM rate; peer: openssl speed -evp aes-256-gcm, same machine, same run"
for bytes in 16384 1048576; do
  printf '    openssl %s (%s-byte blocks): ' "$(openssl version | cut -d' ' -f1-2)" "$bytes"
  openssl speed -evp aes-256-gcm -bytes "$bytes" -seconds 3 2>/dev/null \
    | awk 'tolower($1) == "aes-256-gcm" { v = $NF; sub(/k$/, "", v); printf "%.0f MiB/s\n", v * 1000 / 1048576 }'
done
echo "    criterion (aws-lc-rs, the cache's cipher; entry format; whole cache):"
cargo bench --locked -p outpost-agent --bench cache -- --noplot 2>/dev/null | grep -E '^(aes|cache)|time:|thrpt:'

fi

if want cache || want cache-entry; then
echo "==> result cache: whole write (encrypt + fsync), read into a result (get) and streamed read (replay) of 1 MB"
echo "    and 100 MB results, peak memory"
mkdir -p target
dir=$(mktemp -d target/cache-bench.XXXXXX)
cargo run --release --locked --quiet -p outpost-agent --example cache_bench -- "$dir" 1 100
rm -rf "$dir"
fi

if want replicas; then

echo "==> replicas: ${REPLICA_CLIENTS:-32} concurrent API clients, each job POST /v1/jobs to pool:eu then GET .../result?wait=30"
echo "    on a kept-alive connection; two pooled agents (m1, m2); same run: SQLite 1 replica, PostgreSQL 1 replica,"
echo "    PostgreSQL 3 replicas sharing one database (clients round-robin, wake-ups cross replicas via LISTEN/NOTIFY);"
echo "    then PostgreSQL's floor on the same server (durable single-row inserts, reads by primary key) and the"
echo "    most one PostgreSQL replica could reach beside SQLite with its server at that floor"
"$OUTPOST_BIN_DIR/outpost-bench-replicas" \
  --clients "${REPLICA_CLIENTS:-32}" --jobs-per-client "${REPLICA_JOBS_PER_CLIENT:-50}"
fi

if want idle; then

echo "==> idle agents: ${IDLE_AGENTS:-10000} simulated agents enrol over TLS and park one mutual-TLS HTTP/2 long-poll each"
echo "    on one control plane (${IDLE_STORE:-postgres} store); its RSS, peak RSS and open fds from /proc; then one job"
echo "    must come back on one agent's pending poll. Needs ulimit -n above the agent count (bench and control plane each)."
"$OUTPOST_BIN_DIR/outpost-bench-idle" \
  --agents "${IDLE_AGENTS:-10000}" --store "${IDLE_STORE:-postgres}"
fi

if want dashboard; then
echo "==> dashboard: a project of 12 tiles with current results opened in Chromium (first contentful paint and load,"
echo "    10 opens), peer: the sign-in page opened the same way; then a refresh of the 12 tiles on one agent,"
echo "    wall time beside the slowest tile's own query time; then 12 tiles on PostgreSQL that each wait"
echo "    ${DASHBOARD_TILE_WAIT_MS:-50} ms (pg_sleep, a warehouse's latency), with pool_size 12 and with the default 4"
echo "    (needs chromium, tests/browser's npm ci and the PostgreSQL server)"
"$OUTPOST_BIN_DIR/outpost-bench-dashboard" --opens "${DASHBOARD_OPENS:-10}" --refreshes "${DASHBOARD_REFRESHES:-5}" \
  --tile-wait-ms "${DASHBOARD_TILE_WAIT_MS:-50}"
fi
