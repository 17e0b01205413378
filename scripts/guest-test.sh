#!/usr/bin/env bash
# The packages under a real systemd: boots a Debian 12 (bookworm) guest with systemd as
# PID 1 under qemu (software emulation, TCG), installs the .debs that scripts/package.sh
# builds, and runs tests/guest/checks.sh inside it: install, init/enrol, start, the
# sandbox as the kernel applies it, notify/watchdog, TLS API, a job end to end, reload,
# stop, upgrade in place, remove and purge, for the agent and the control plane. What
# each check proves is listed at the top of tests/guest/checks.sh.
#
#   scripts/guest-test.sh [--no-package] [--image-only] [--timeout SECS] [--keep]
#
# --no-package  use the .debs already in target/package/ (named below) instead of
#               running scripts/package.sh
# --image-only  build (or find) the cached guest image and stop
# --timeout     deadline for the guest, seconds (default 1200)
# --keep        keep the payload disk (target/guest/run/payload.tar) when all passed
#               (the serial logs are always kept)
#
# The pristine image (debootstrap + mkfs.ext4 -d, no loop mount) is cached in
# target/guest/image-<hash of the recipe>/ (OUTPOST_GUEST_CACHE to put it elsewhere);
# a run boots it with snapshot=on, so it is never changed, and attaches the run's
# payload (.debs, checks.sh) as a second, read-only disk. The guest writes TAP lines to
# its second serial port (target/guest/run/results.log); its console is in
# target/guest/run/console.log. Exits 0 when every check passed (a `# TODO` check, a
# behaviour not landed yet, is reported but does not fail the run), 1 otherwise, 2 when
# a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

timeout_secs=${OUTPOST_GUEST_TIMEOUT:-1200}
package=1
image_only=0
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-package) package=0; shift ;;
    --image-only) image_only=1; shift ;;
    --timeout) timeout_secs="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "guest-test.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
  esac
done

log() { printf '==> guest: %s\n' "$*"; }
die() { printf 'guest-test.sh: %s\n' "$*" >&2; exit 1; }
started=$SECONDS

# ---------------------------------------------------------------------------------
# The image recipe. Anything that changes the pristine image is part of its cache key:
# this version, the suite, the packages, build_image's text and the two files baked in
# from tests/guest/.
RECIPE_VERSION=1
SUITE=bookworm
# systemd as PID 1 and its kernel; dbus, as on any standard install (systemd-run --wait
# --pipe, which OPERATIONS.md gives for the vault commands, needs the system bus); curl
# and ca-certificates to call the API over TLS; sqlite3 to make the database the agent
# reads; adduser and systemd are the packages' Depends (libc6, their $auto one, is in
# every base system).
GUEST_PACKAGES=systemd-sysv,udev,dbus,linux-image-amd64,initramfs-tools,kmod,adduser,curl,ca-certificates,sqlite3,procps,util-linux
CACHE=${OUTPOST_GUEST_CACHE:-target/guest}
RUN_DIR=$CACHE/run

need_tool() { # tool, Debian package
  command -v "$1" >/dev/null 2>&1 || {
    echo "guest-test.sh: $1 is required (apt-get install $2; .ci/run installs it)" >&2
    exit 2
  }
}
need_tool qemu-system-x86_64 qemu-system-x86
need_tool mkfs.ext4 e2fsprogs
need_tool tar tar
need_tool sha256sum coreutils
[ "$(id -u)" = 0 ] || { echo "guest-test.sh: debootstrap needs root (CI runs as root)" >&2; exit 2; }

# The Debian mirror this host uses (apt's sources), else deb.debian.org.
mirror() {
  if [ -n "${OUTPOST_GUEST_MIRROR:-}" ]; then echo "$OUTPOST_GUEST_MIRROR"; return; fi
  local m
  m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -E '^(deb|URIs:)' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -1 | tr -d ' ' || true)
  echo "${m:-http://deb.debian.org/debian}"
}

build_image() {
  need_tool debootstrap debootstrap
  local tmp="$CACHE/build.$$" rootfs
  rootfs="$(realpath -m "$tmp/rootfs")"
  # debootstrap mounts proc and sys in the tree while it installs; never leave them
  # (nor the half-built tree of a run that was stopped).
  unmount_under() {
    local m
    for m in $(awk -v r="$1/" 'index($2 "/", r) == 1 {print $2}' /proc/mounts | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
  }
  local stale
  for stale in "$CACHE"/build.*; do
    [ -d "$stale" ] || continue
    unmount_under "$(realpath "$stale")"
    rm -rf "$stale"
  done
  mkdir -p "$tmp"
  cleanup_build() { unmount_under "$rootfs"; rm -rf "$tmp"; }
  trap cleanup_build EXIT
  local t0=$SECONDS url
  url=$(mirror)
  log "building the guest image ($SUITE from $url; debootstrap log: $tmp/debootstrap.log)"
  # Twice at most: a download that failed half-way is not worth a red run.
  local attempt
  for attempt in 1 2; do
    if debootstrap --variant=minbase --include="$GUEST_PACKAGES" "$SUITE" "$rootfs" "$url" > "$tmp/debootstrap.log" 2>&1; then
      break
    fi
    tail -n 40 "$tmp/debootstrap.log" >&2
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 40 "$rootfs/debootstrap/debootstrap.log" >&2
    [ "$attempt" = 1 ] || die "debootstrap failed"
    log "debootstrap failed; once more from scratch"
    unmount_under "$rootfs"
    rm -rf "$rootfs"
  done
  log "debootstrap took $((SECONDS - t0)) s"
  echo outpost-guest > "$rootfs/etc/hostname"
  printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n127.0.1.1 outpost-guest\n' > "$rootfs/etc/hosts"
  printf 'LABEL=outpost-guest / ext4 rw,errors=remount-ro 0 0\n' > "$rootfs/etc/fstab"
  # A small initrd (the drivers of qemu's virtio disk and ext4, not "most" modules):
  # under emulation, every megabyte of it costs boot time.
  printf 'virtio_pci\nvirtio_blk\next4\ncrc32c_generic\n' >> "$rootfs/etc/initramfs-tools/modules"
  sed -i 's/^MODULES=.*/MODULES=list/' "$rootfs/etc/initramfs-tools/initramfs.conf"
  chroot "$rootfs" update-initramfs -u -k all >> "$tmp/debootstrap.log" 2>&1 || {
    tail -n 20 "$tmp/debootstrap.log" >&2; die "update-initramfs failed in the guest tree"; }
  # A machine id of its own, so the first boot is no "first boot" (no firstboot prompts).
  tr -d '-' < /proc/sys/kernel/random/uuid > "$rootfs/etc/machine-id"
  ln -sf /dev/null "$rootfs/etc/systemd/system/systemd-firstboot.service"
  install -D -m 0644 tests/guest/outpost-guest.service "$rootfs/etc/systemd/system/outpost-guest.service"
  mkdir -p "$rootfs/etc/systemd/system/multi-user.target.wants"
  ln -sf ../outpost-guest.service "$rootfs/etc/systemd/system/multi-user.target.wants/outpost-guest.service"
  install -D -m 0755 tests/guest/boot.sh "$rootfs/usr/local/lib/outpost-guest/boot.sh"
  # The guest has no network: nothing for apt to fetch, nothing to keep.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs/debootstrap"
  local kernel initrd
  kernel=$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -1)
  initrd=$(ls "$rootfs"/boot/initrd.img-* | sort -V | tail -1)
  [ -f "$kernel" ] && [ -f "$initrd" ] || die "no kernel or initrd in the guest's /boot"
  cp "$kernel" "$tmp/vmlinuz"
  cp "$initrd" "$tmp/initrd.img"
  unmount_under "$rootfs"
  # The tree plus room for the packages, their state and the journal.
  local size_mb
  size_mb=$(( $(du -sm "$rootfs" | cut -f1) + 1536 ))
  mkfs.ext4 -q -F -L outpost-guest -d "$rootfs" "$tmp/rootfs.raw" "${size_mb}M" > /dev/null
  rm -rf "$rootfs"
  printf 'suite %s\npackages %s\nmirror %s\nkernel %s\nbuilt %s\n' "$SUITE" "$GUEST_PACKAGES" "$url" \
    "$(basename "$kernel")" "$(date -u +%FT%TZ)" > "$tmp/recipe.txt"
  # Replace older images (another recipe) and publish this one at once.
  find "$CACHE" -maxdepth 1 -name 'image-*' -type d -exec rm -rf {} +
  mv "$tmp" "$IMAGE_DIR"
  trap - EXIT
  log "guest image ready in $((SECONDS - t0)) s: $IMAGE_DIR (${size_mb} MB, sparse)"
}

# The cache key: the recipe above, how the image is built (this function's text) and the
# files baked in.
key=$( { printf '%s\n' "$RECIPE_VERSION" "$SUITE" "$GUEST_PACKAGES"; declare -f build_image;
  cat tests/guest/outpost-guest.service tests/guest/boot.sh; } | sha256sum | cut -c1-16)
IMAGE_DIR=$CACHE/image-$key
mkdir -p "$CACHE"
if [ -f "$IMAGE_DIR/rootfs.raw" ] && [ -f "$IMAGE_DIR/vmlinuz" ] && [ -f "$IMAGE_DIR/initrd.img" ]; then
  log "cached guest image $IMAGE_DIR"
else
  build_image
fi
[ "$image_only" = 0 ] || exit 0

# ---------------------------------------------------------------------------------
# The packages: the test build's binaries, both packages, and a second build of the
# agent's at a higher version for the upgrade check.
UPGRADE_VERSION=0.1.1~guest
if [ "$package" = 1 ]; then
  log "building the packages (scripts/package.sh --profile dev --only deb --no-lint; log: $CACHE/package.log)"
  package() {
    scripts/package.sh --profile dev --only deb --no-lint "$@" 2>> "$CACHE/package.log" || {
      tail -n 30 "$CACHE/package.log" >&2; die "scripts/package.sh $* failed"; }
  }
  : > "$CACHE/package.log"
  mapfile -t debs < <(package | grep '\.deb$')
  mapfile -t upgrade < <(package --agent-only --version "$UPGRADE_VERSION" | grep '\.deb$')
else
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
  debs=("target/package/outpost-control-plane_${version}_amd64.deb" "target/package/outpost-agent_${version}_amd64.deb")
  upgrade=("target/package/outpost-agent_${UPGRADE_VERSION}_amd64.deb")
fi
cp_deb=$(printf '%s\n' "${debs[@]}" | grep '/outpost-control-plane_' | head -1 || true)
agent_deb=$(printf '%s\n' "${debs[@]}" | grep '/outpost-agent_' | head -1 || true)
upgrade_deb=${upgrade[0]:-}
for f in "$cp_deb" "$agent_deb" "$upgrade_deb"; do
  [ -n "$f" ] && [ -f "$f" ] || die "a package is missing (control plane: '$cp_deb', agent: '$agent_deb', upgrade: '$upgrade_deb')"
done

# ---------------------------------------------------------------------------------
# The run: a payload disk (a tar), the pristine image with snapshot=on, two serial ports.
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR/payload"
run_id="$(date +%s)-$$-$RANDOM"
cp tests/guest/checks.sh "$RUN_DIR/payload/checks.sh"
chmod 0755 "$RUN_DIR/payload/checks.sh"
cp "$cp_deb" "$RUN_DIR/payload/control-plane.deb"
cp "$agent_deb" "$RUN_DIR/payload/agent.deb"
cp "$upgrade_deb" "$RUN_DIR/payload/agent-upgrade.deb"
{
  printf 'RUN_ID=%q\n' "$run_id"
  printf 'CP_VERSION=%q\n' "$(dpkg-deb -f "$cp_deb" Version)"
  printf 'AGENT_VERSION=%q\n' "$(dpkg-deb -f "$agent_deb" Version)"
  printf 'UPGRADE_VERSION=%q\n' "$(dpkg-deb -f "$upgrade_deb" Version)"
} > "$RUN_DIR/payload/run.env"
tar -cf "$RUN_DIR/payload.tar" -C "$RUN_DIR/payload" .
: > "$RUN_DIR/results.log"
: > "$RUN_DIR/console.log"

accel=${OUTPOST_GUEST_ACCEL:-tcg}
log "booting the guest (qemu, $accel, 2 vCPUs, 2 GiB; deadline ${timeout_secs} s; console: $RUN_DIR/console.log)"
boot_t0=$SECONDS
qemu-system-x86_64 \
  -name outpost-guest -nodefaults -display none -no-reboot \
  -accel "$accel" -cpu max -smp 2 -m 2048 \
  -kernel "$IMAGE_DIR/vmlinuz" -initrd "$IMAGE_DIR/initrd.img" \
  -append "root=LABEL=outpost-guest rw console=ttyS0,115200 panic=-1 net.ifnames=0 systemd.show_status=1" \
  -drive "file=$IMAGE_DIR/rootfs.raw,format=raw,if=none,id=root,snapshot=on" \
  -device virtio-blk-pci,drive=root,serial=outpost-root \
  -drive "file=$RUN_DIR/payload.tar,format=raw,if=none,id=payload,readonly=on" \
  -device virtio-blk-pci,drive=payload,serial=outpost-payload \
  -device virtio-rng-pci \
  -serial "file:$RUN_DIR/console.log" -serial "file:$RUN_DIR/results.log" \
  > "$RUN_DIR/qemu.log" 2>&1 &
qemu_pid=$!
stop_qemu() {
  if kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
}
trap stop_qemu EXIT

# Stream the results as they come; stop at the end marker, when qemu exits, or at the deadline.
deadline=$(( SECONDS + timeout_secs ))
shown=0
outcome=
show_new() {
  local total
  total=$(wc -l < "$RUN_DIR/results.log")
  if [ "$total" -gt "$shown" ]; then
    sed -n "$((shown + 1)),${total}p" "$RUN_DIR/results.log" | tr -d '\r' | sed 's/^/    /'
    shown=$total
  fi
}
first_result=
while :; do
  if [ -z "$first_result" ] && [ -s "$RUN_DIR/results.log" ]; then
    first_result=$((SECONDS - boot_t0))
    log "the guest is up and checking (boot took about ${first_result} s)"
  fi
  show_new
  if grep -q "^# outpost-guest end $run_id" <(tr -d '\r' < "$RUN_DIR/results.log"); then outcome=finished; break; fi
  if ! kill -0 "$qemu_pid" 2>/dev/null; then outcome=exited; break; fi
  if [ "$SECONDS" -ge "$deadline" ]; then outcome=deadline; break; fi
  sleep 2
done
# The guest powers itself off after the end marker; give it a moment, then stop it.
poweroff_deadline=$(( SECONDS + 60 ))
while kill -0 "$qemu_pid" 2>/dev/null && [ "$SECONDS" -lt "$poweroff_deadline" ]; do sleep 1; done
stop_qemu
trap - EXIT
show_new
guest_secs=$((SECONDS - boot_t0))

results=$(tr -d '\r' < "$RUN_DIR/results.log")
passed=$(grep -cE '^ok [0-9]+' <<<"$results" || true)
failed=$(grep -E '^not ok [0-9]+' <<<"$results" | grep -vc '# TODO' || true)
todo=$(grep -E '^not ok [0-9]+' <<<"$results" | grep -c '# TODO' || true)
planned=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' <<<"$results" | tail -1)
echo
if [ "$outcome" != finished ] || [ -z "$planned" ] || [ $((passed + failed + todo)) -ne "$planned" ]; then
  case "$outcome" in
    deadline) echo "guest-test.sh: the guest did not finish within ${timeout_secs} s" >&2 ;;
    exited) echo "guest-test.sh: the guest stopped before its checks ended (qemu: $(tail -n 3 "$RUN_DIR/qemu.log" | tr '\n' ' '))" >&2 ;;
    *) echo "guest-test.sh: ${planned:-no} checks planned, $((passed + failed + todo)) reported" >&2 ;;
  esac
  echo "---- the last 60 lines of the guest's console ($RUN_DIR/console.log) ----" >&2
  tail -n 60 "$RUN_DIR/console.log" | tr -d '\r' >&2
  echo "guest-test.sh: wall time $((SECONDS - started)) s" >&2
  echo "guest: $passed passed, $((failed + 1)) failed"
  exit 1
fi
if [ "$todo" -gt 0 ]; then
  log "$todo check(s) marked TODO failed, as expected while the behaviour has not landed (see above)"
fi
if grep -qE '^ok [0-9]+ .*# TODO' <<<"$results"; then
  log "a TODO check passed this time (see above): if its behaviour has landed, its TODO condition in tests/guest/checks.sh can go"
fi
log "guest run ${guest_secs} s (boot ${first_result:-?} s), wall time $((SECONDS - started)) s; logs in $RUN_DIR"
if [ "$failed" -gt 0 ]; then
  echo "---- the journal of the failed run is at the end of $RUN_DIR/console.log ----" >&2
  echo "guest: $passed passed, $failed failed"
  exit 1
fi
[ "$keep" = 1 ] || rm -f "$RUN_DIR/payload.tar"
echo "guest: $passed passed, 0 failed"
