#!/usr/bin/env bash
# Builds the .deb and .rpm packages of outpost-agent and outpost-control-plane into
# target/package/, then checks them with lintian and rpmlint when those are installed.
# Installs cargo-deb and cargo-generate-rpm from crates.io when missing.
#
#   scripts/package.sh [--version V] [--profile release|dev] [--only deb|rpm]
#                      [--agent-only] [--no-lint]
#
# --version   package version (default: the workspace's), e.g. 0.1.1 or 0.1.0~rc1
# --profile   cargo profile whose binaries are packaged (default release); `dev` reuses
#             the test build, as the package tests do
# --only      build one format
# --agent-only  skip the control plane
# --no-lint   skip lintian/rpmlint
# Prints the path of each package built, one per line, last.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
profile=release
formats="deb rpm"
crates="agent control-plane"
lint=1
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --profile) profile="$2"; shift 2 ;;
    --only) formats="$2"; shift 2 ;;
    --agent-only) crates="agent"; shift ;;
    --no-lint) lint=0; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done
case "$version" in
  ''|*[!0-9A-Za-z.+~-]*) echo "package.sh: --version $version: use digits, letters and . + ~ -" >&2; exit 64 ;;
esac
case "$profile" in
  release) bindir=target/release ;;
  dev) bindir=target/debug ;;
  *) echo "package.sh: --profile must be release or dev" >&2; exit 64 ;;
esac

log() { printf '==> %s\n' "$*" >&2; }

for tool in cargo-deb cargo-generate-rpm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "installing $tool from crates.io"
    cargo install --locked --quiet "$tool"
  fi
done

log "building the binaries ($profile)"
if [ "$profile" = dev ]; then
  # The same feature set as scripts/test.sh's build, so nothing is rebuilt.
  cargo build --locked --workspace --bins >&2
else
  cargo build --locked --profile "$profile" -p outpost-agent -p outpost-control-plane --bins >&2
fi

out=target/package
mkdir -p "$out/agent" "$out/control-plane"
# The packaged agent.yaml: the example config, with the master key taken only from the
# systemd credential the package creates, and the schema where the package puts it.
sed -e 's/^  master_key: auto$/  master_key: systemd/' \
    -e 's#\$schema=agent.schema.json#$schema=/usr/share/outpost/agent.schema.json#' \
    configs/agent.yaml > "$out/agent/agent.yaml"
grep -q '^  master_key: systemd$' "$out/agent/agent.yaml" || { echo "package.sh: configs/agent.yaml has no 'master_key: auto' line to replace" >&2; exit 1; }
date=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
for crate in agent control-plane; do
  # A Debian changelog for the native package (lintian requires one): this version.
  printf 'outpost-%s (%s) stable; urgency=medium\n\n  * Release %s; changes: the project'"'"'s git history.\n\n -- Outpost developers <outpost@example.invalid>  %s\n' \
    "$crate" "$version" "$version" "$date" > "$out/$crate/changelog"
done
gzip -9n < packaging/agent/outpost-agent.1 > "$out/agent/outpost-agent.1.gz"
gzip -9n < packaging/control-plane/outpost-control-plane.1 > "$out/control-plane/outpost-control-plane.1.gz"

built=()
for crate in $crates; do
  pkg="outpost-$crate"
  for fmt in $formats; do
    case "$fmt" in
      deb)
        log "cargo deb $pkg $version"
        file=$(cargo deb --locked --no-build --strip --profile "$profile" -p "$pkg" --deb-version "$version" -o "$out/" | tail -1)
        if [ "$lint" = 1 ] && command -v lintian >/dev/null 2>&1; then
          log "lintian $file"
          # Errors fail the build; warnings are listed in packaging/README.md.
          lintian --fail-on error --suppress-tags-from-file packaging/lintian-suppressed "$file" >&2
        fi
        ;;
      rpm)
        log "cargo generate-rpm $pkg $version"
        # A stripped copy of the binary (the .deb's is stripped by cargo-deb).
        strip -o "$out/$crate/$pkg" "$bindir/$pkg"
        rpmver="${version//-/_}"
        rpmver="${rpmver//\~/_}"
        cargo generate-rpm -p "$crate" -o "$out/" -s "version = \"$rpmver\"" >&2
        file=$(ls -t "$out/$pkg"-"$rpmver"-*.rpm | head -1)
        if [ "$lint" = 1 ] && command -v rpmlint >/dev/null 2>&1; then
          log "rpmlint $file"
          rpmlint -c packaging/rpmlint.toml "$file" >&2 || { echo "package.sh: rpmlint found errors in $file" >&2; exit 1; }
        fi
        ;;
      *) echo "package.sh: unknown format $fmt" >&2; exit 64 ;;
    esac
    built+=("$file")
  done
done
printf '%s\n' "${built[@]}"
