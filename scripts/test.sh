#!/usr/bin/env bash
# The one test command: format, lints, supply chain, every crate's tests, end-to-end tests.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

if command -v cargo-deny >/dev/null 2>&1; then
  step "cargo deny check bans licenses sources"
  cargo deny --locked check bans licenses sources
else
  echo "cargo-deny is not installed: run .ci/run (or cargo install --locked cargo-deny)" >&2
  exit 1
fi

ADVISORY_DB="${OUTPOST_ADVISORY_DB:-../shared/advisory-db}"
if command -v cargo-audit >/dev/null 2>&1 && [ -d "$ADVISORY_DB" ]; then
  step "cargo audit (offline database $ADVISORY_DB)"
  cargo audit --db "$ADVISORY_DB" --no-fetch --deny warnings
else
  echo "cargo-audit or the advisory database at $ADVISORY_DB is missing: run .ci/run" >&2
  exit 1
fi

command -v openssl >/dev/null 2>&1 || { echo "openssl is required by the TLS tests: run .ci/run (or apt-get install openssl)" >&2; exit 1; }
[ -x /usr/bin/tinyproxy ] || { echo "tinyproxy is required by the proxy tests: run .ci/run (or apt-get install tinyproxy)" >&2; exit 1; }

for tool in lintian rpmlint rpm cargo-deb cargo-generate-rpm systemd-analyze systemd-creds; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is required by the package tests: run .ci/run" >&2; exit 1; }
done

# The packages under a real systemd (scripts/guest-test.sh): a Debian 12 guest built by
# debootstrap, booted by qemu with systemd as PID 1.
for tool in debootstrap qemu-system-x86_64 mkfs.ext4; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is required by the guest test: run .ci/run (or apt-get install --no-install-recommends debootstrap qemu-system-x86 e2fsprogs)" >&2; exit 1; }
done

# The API is fuzzed against its OpenAPI document by schemathesis (tests/tests/e2e/openapi.rs):
# no 5xx, no status, content type or body outside docs/openapi.json.
command -v schemathesis >/dev/null 2>&1 || { echo "schemathesis is required by the API tests: run .ci/run (or python3 -m pip install 'schemathesis>=4,<5')" >&2; exit 1; }

# The console is tested in real Chromium driven by playwright-core, with single sign-on
# against a real oidc-provider (tests/tests/e2e/console.rs, tests/browser/).
[ -x "${OUTPOST_CHROMIUM:-/usr/bin/chromium}" ] || { echo "Chromium is required by the console tests: run .ci/run (or apt-get install chromium)" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "node is required by the console tests: run .ci/run (or apt-get install nodejs npm)" >&2; exit 1; }
[ -d tests/browser/node_modules/playwright-core ] && [ -d tests/browser/node_modules/oidc-provider ] || {
  echo "the console tests' npm packages are missing: run .ci/run (or: cd tests/browser && npm ci)" >&2; exit 1; }

# The query page's SQL editor (control-plane/assets/editor.js) is committed, built from
# control-plane/editor/package-lock.json: check it is exactly what that lockfile builds
# (npm ci from the registry, then esbuild; a few seconds).
step "console SQL editor bundle matches its lockfile"
scripts/build-editor.sh --check

# Real database servers: the connector tests run against them and never skip.
export OUTPOST_TEST_PG_URL="${OUTPOST_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
if ! pg_isready -q -d "$OUTPOST_TEST_PG_URL"; then
  echo "PostgreSQL is not reachable at $OUTPOST_TEST_PG_URL (set OUTPOST_TEST_PG_URL, or start the local server:" >&2
  echo "  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start)" >&2
  exit 1
fi

export OUTPOST_TEST_MYSQL_URL="${OUTPOST_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
mysql_hostport=$(printf '%s' "$OUTPOST_TEST_MYSQL_URL" | sed -E 's#^[a-z]+://([^@/]*@)?([^/:]+)(:([0-9]+))?.*#\2 \4#')
read -r mysql_host mysql_port <<<"$mysql_hostport"
if ! timeout 5 bash -c "exec 3<>/dev/tcp/$mysql_host/${mysql_port:-3306}" 2>/dev/null; then
  echo "MariaDB/MySQL is not reachable at $OUTPOST_TEST_MYSQL_URL (set OUTPOST_TEST_MYSQL_URL, or start the local server:" >&2
  echo "  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd)" >&2
  exit 1
fi

step "build binaries for the end-to-end tests"
cargo build --workspace --bins --locked

step "tests (unit, integration, end-to-end)"
export OUTPOST_BIN_DIR="$PWD/target/debug"
# The sign-in flood measures how the API answers while a thousand sign-ins hash at
# once: it runs afterwards, alone, as it did in its own test binary.
cargo test --workspace --locked --no-fail-fast -- --skip sign_in_flood::
step "end-to-end sign-in flood, alone"
cargo test --locked -p outpost-e2e --test e2e sign_in_flood::

# The foundation's end-to-end suite once more, with every control plane on a fresh
# PostgreSQL database (the run above used the embedded SQLite store). The replica test
# (tests/tests/e2e/replicas.rs) always runs on PostgreSQL.
step "end-to-end foundation suite on the PostgreSQL store"
OUTPOST_TEST_STORE=postgres cargo test --locked -p outpost-e2e --test e2e foundation::

# The .debs installed, started, sandboxed, reloaded, upgraded and purged under a real
# systemd (PID 1) in a Debian 12 guest under qemu: what no container here can check.
# About 4 minutes with the guest image cached in target/guest/, 7 without.
step "guest test: both .debs under systemd in a Debian 12 guest (qemu, TCG)"
scripts/guest-test.sh
