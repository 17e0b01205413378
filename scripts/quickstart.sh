#!/usr/bin/env bash
# Outpost quickstart: build, create a throw-away control plane and agent in a temp
# folder, enrol the agent with a one-time token, run both as separate processes talking
# mutual TLS on loopback, dispatch two jobs (a table and a bar chart) against the bundled
# SQLite sample data, and print where the rendered results are.
# Every process started here is stopped on exit, on Ctrl-C and on failure.
#
#   scripts/quickstart.sh [--keep | --no-keep]
#
# --keep     keep the control plane and the agent running afterwards, with the console's
#            address and a sign-in, until Ctrl-C (asked at a terminal when neither is given)
# --no-keep  stop both once the jobs are done (the default without a terminal)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR="$PWD"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

KEEP=ask
case "${1:-}" in
  --keep) KEEP=yes ;;
  --no-keep) KEEP=no ;;
  "") ;;
  -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
  *) echo "quickstart: unknown argument $1 (see --help)" >&2; exit 64 ;;
esac

command -v curl >/dev/null || die "curl is required (apt-get install curl)"

say "Building (cargo build --bins)"
cargo build --bins --quiet
CP="$ROOT_DIR/target/debug/outpost-control-plane"
AGENT="$ROOT_DIR/target/debug/outpost-agent"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/outpost-quickstart.XXXXXX")"
PIDS=()
cleanup() {
  local code=$?
  # A second Ctrl-C or SIGTERM must not cut the waits below short: that left the
  # control plane or the agent running after the script had ended.
  trap '' INT TERM
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$code" -ne 0 ]; then
    echo "quickstart failed; logs are in $WORK/*.log" >&2
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback port (nothing answers on it).
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port found"
}

# Waits (up to $3 seconds) for a line containing $2 in log file $1, while process $4 lives.
wait_for_log() {
  local deadline=$(( SECONDS + $3 ))
  until grep -q "$2" "$1" 2>/dev/null; do
    kill -0 "$4" 2>/dev/null || die "process $4 exited; see $1"
    [ "$SECONDS" -lt "$deadline" ] || die "timed out waiting for '$2' in $1"
    sleep 0.1
  done
}

AGENT_PORT=$(free_port)
API_PORT=$(free_port)
say "Control plane: init in $WORK/cp"
"$CP" init --data-dir "$WORK/cp" --hostname localhost > "$WORK/init.txt"
ADMIN_TOKEN=$(grep '^opat_' "$WORK/init.txt")
ADMIN_PASSWORD=$(sed -n '/^Console password of user "admin"/{n;p;}' "$WORK/init.txt")
cat > "$WORK/control-plane.yaml" <<YAML
data_dir: $WORK/cp
agent_listen: 127.0.0.1:$AGENT_PORT
api_listen: 127.0.0.1:$API_PORT
YAML
"$CP" serve --config "$WORK/control-plane.yaml" > "$WORK/control-plane.log" 2>&1 &
PIDS+=($!)
wait_for_log "$WORK/control-plane.log" "Control plane listening" 30 "${PIDS[-1]}"
echo "    agent listener 127.0.0.1:$AGENT_PORT (mutual TLS), API https://localhost:$API_PORT"

say "Agent: enrol with a one-time token"
cat > "$WORK/agent.yaml" <<YAML
state_dir: $WORK/agent
connections:
  sample:
    kind: sqlite
    path: sample.db
    sample: true
limits:
  max_rows: 1000
YAML
TOKEN=$("$CP" enrollment-token create --config "$WORK/control-plane.yaml" --agent demo-agent --ttl 10m 2>/dev/null)
printf '%s' "$TOKEN" | "$AGENT" --config "$WORK/agent.yaml" enroll --token - | sed 's/^/    /'
"$AGENT" --config "$WORK/agent.yaml" run > "$WORK/agent.log" 2>&1 &
PIDS+=($!)
wait_for_log "$WORK/agent.log" "Control plane reachable" 30 "${PIDS[-1]}"

api() { curl -sS --fail-with-body --cacert "$WORK/cp/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$@"; }
BASE="https://localhost:$API_PORT"
mkdir -p "$WORK/results"

dispatch() {
  api -X POST -H 'content-type: application/json' --data "$1" "$BASE/v1/jobs" | sed -E 's/.*"id":"([^"]+)".*/\1/'
}

say "Dispatching two jobs through the API"
TABLE_JOB=$(dispatch '{"agent":"demo-agent","connection":"sample",
  "sql":"SELECT region, COUNT(*) AS orders, ROUND(SUM(amount), 2) AS revenue FROM orders GROUP BY region ORDER BY revenue DESC",
  "render":{"kind":"table","format":"html"}}')
CHART_JOB=$(dispatch '{"agent":"demo-agent","connection":"sample",
  "sql":"SELECT region, ROUND(SUM(amount), 2) AS revenue FROM orders GROUP BY region ORDER BY region",
  "render":{"kind":"bar","x":"region","y":["revenue"],"title":"Revenue by region"}}')
echo "    table job $TABLE_JOB, chart job $CHART_JOB"

api "$BASE/v1/jobs/$TABLE_JOB/result?wait=30" -o "$WORK/results/revenue-by-region.html"
api "$BASE/v1/jobs/$CHART_JOB/result?wait=30" -o "$WORK/results/revenue-by-region.svg"
api "$BASE/v1/jobs/$CHART_JOB" > "$WORK/results/chart-job-status.json"

say "Done. Rendered results (only these left the agent):"
echo "    table: $WORK/results/revenue-by-region.html"
echo "    chart: $WORK/results/revenue-by-region.svg"
echo
echo "Look at them:"
echo "    cat $WORK/results/revenue-by-region.html"
echo "    xdg-open $WORK/results/revenue-by-region.svg     # or open it in any browser"
echo "    cat $WORK/results/chart-job-status.json"
echo "    cat $WORK/agent/audit.log                         # the agent's audit log"
echo "Logs: $WORK/control-plane.log $WORK/agent.log"

if [ "$KEEP" = ask ]; then
  KEEP=no
  if [ -t 0 ] && [ -t 1 ]; then
    read -r -p "Keep the control plane and the agent running, to look around in the console? [y/N] " answer
    case "$answer" in [yY]*) KEEP=yes ;; esac
  fi
fi
if [ "$KEEP" = yes ]; then
  echo
  say "Running until Ctrl-C"
  echo "    Console: https://localhost:$API_PORT/console/"
  echo "    Sign in as admin with the password $ADMIN_PASSWORD"
  echo "    The certificate is from a throw-away CA made just now ($WORK/cp/ca.crt): let your browser"
  echo "    trust it, or accept its warning for this address only."
  echo "    API: curl --cacert $WORK/cp/ca.crt -H 'Authorization: Bearer $ADMIN_TOKEN' https://localhost:$API_PORT/v1/agents"
  echo "    Everything stays in $WORK after Ctrl-C."
  # Ctrl-C (or SIGTERM) is the way out here, not a failure.
  trap 'exit 0' INT TERM
  while kill -0 "${PIDS[0]}" 2>/dev/null && kill -0 "${PIDS[1]}" 2>/dev/null; do
    wait -n "${PIDS[@]}" 2>/dev/null || true
  done
  die "the control plane or the agent stopped by itself; see $WORK/*.log"
fi
echo "Stopping the control plane and the agent."
