#!/bin/sh
# Baked into the guest image by scripts/guest-test.sh (outpost-guest.service runs it at
# boot). Unpacks the payload disk the host attached (a tar on the virtio disk with serial
# "outpost-payload": the .debs, checks.sh, run.env) into /var/lib/outpost-guest (not
# /run: the initramfs mounts it noexec) and runs checks.sh there. Everything that
# changes from run to run is in the payload, so this file and the image change only with
# the image recipe.
set -u
results=/dev/ttyS1
fail() {
    printf 'not ok 1 - guest boot: %s\n1..1\n# outpost-guest end %s\n' "$1" "${RUN_ID:-unknown}" > "$results"
    exit 1
}
dev=/dev/disk/by-id/virtio-outpost-payload
# udev names the disk shortly after boot; wait for it (60 s at most).
deadline=$(( $(date +%s) + 60 ))
while [ ! -b "$dev" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { dev=/dev/vdb; break; }
    sleep 0.2
done
[ -b "$dev" ] || fail "no payload disk"
dir=/var/lib/outpost-guest
mkdir -p "$dir"
tar -xf "$dev" -C "$dir" || fail "cannot unpack the payload from $dev"
[ -f "$dir/checks.sh" ] || fail "the payload on $dev has no checks.sh: $(ls "$dir" | tr '\n' ' ')"
cd "$dir" && exec bash ./checks.sh "$results"
