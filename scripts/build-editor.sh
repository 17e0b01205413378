#!/usr/bin/env bash
# Builds the console's SQL editor (control-plane/assets/editor.js, committed) from
# control-plane/editor: CodeMirror 6 at the versions in its package-lock.json, bundled
# by esbuild into one self-contained script (control-plane/editor/build.mjs).
#
#   scripts/build-editor.sh           rebuild control-plane/assets/editor.js
#   scripts/build-editor.sh --check   fail unless the committed file is what the lockfile builds
#
# Needs Node.js and npm and the npm registry (`npm ci`); the same lockfile gives the
# same bytes, so the check runs in scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=control-plane/editor
asset=control-plane/assets/editor.js
check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) echo "usage: $0 [--check]" >&2; exit 64 ;;
esac

command -v npm >/dev/null 2>&1 || { echo "npm is required: apt-get install nodejs npm (.ci/run does)" >&2; exit 1; }
# Exactly the lockfile, with no install scripts (esbuild's only checks its binary, which
# comes as the @esbuild/<platform> package).
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)

if $check; then
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  node "$dir/build.mjs" "$tmp"
  if ! cmp -s "$tmp" "$asset"; then
    echo "$asset is not what $dir/package-lock.json builds: run scripts/build-editor.sh and commit it" >&2
    exit 1
  fi
  echo "$asset matches $dir/package-lock.json"
else
  node "$dir/build.mjs" "$asset"
  echo "wrote $asset ($(wc -c <"$asset") bytes)"
fi
