#!/bin/sh
# Runs inside the guest (busybox sh): cache-mode-phases.sh MODE... (CacheModeHandoverIT). One phase per argument,
# numbered from 1; MODE is "wt" (switch the disk to write through), "wb" (switch to write back) or "keep".
# Before phase N the guest waits until the host has written the line "go N" into the disk's last 4 KiB (read with
# O_DIRECT, so it comes from the back-end: the host's way to say "I am done with my checks and my handover").
# Phase N sets the cache mode (the driver writes the config space's writeback byte: VHOST_USER_SET_CONFIG), reads
# it back and writes WRITE_MIB MiB of random data with O_DIRECT at MiB N * 16, then prints
#   @@WROTE n=N rc=<dd exit status> cache_type=<what /sys/block/vda/cache_type reads>@@
# Env: DEV (default /dev/vda), WRITE_MIB (default 4), GO_TIMEOUT_S (default 120, per phase).
DEV=${DEV:-/dev/vda}
B=${DEV#/dev/}
CT=/sys/block/$B/cache_type
WRITE_MIB=${WRITE_MIB:-4}
GO_TIMEOUT_S=${GO_TIMEOUT_S:-120}
[ -w "$CT" ] || { echo "cache-mode-phases: $CT is not writable (VIRTIO_BLK_F_CONFIG_WCE not negotiated?)"; exit 2; }
SECTORS=$(cat /sys/block/"$B"/size)
GO_BLOCK=$((SECTORS / 8 - 1))
dd if=/dev/urandom of=/tmp/pattern bs=1M count="$WRITE_MIB" 2>/dev/null || exit 2
echo "@@READY cache_type=$(cat "$CT")@@"
n=1
rc=0
for mode in "$@"; do
    waited=0
    while [ "$(dd if="$DEV" bs=4096 skip="$GO_BLOCK" count=1 iflag=direct 2>/dev/null | head -n 1)" != "go $n" ]; do
        waited=$((waited + 1))
        [ $waited -le $((GO_TIMEOUT_S * 5)) ] || { echo "cache-mode-phases: no 'go $n' from the host"; exit 3; }
        sleep 0.2
    done
    case $mode in
    wt) echo "write through" >"$CT" || rc=1 ;;
    wb) echo "write back" >"$CT" || rc=1 ;;
    esac
    dd if=/tmp/pattern of="$DEV" bs=1M count="$WRITE_MIB" seek=$((n * 16)) oflag=direct 2>/dev/null
    w=$?
    [ $w = 0 ] || rc=1
    echo "@@WROTE n=$n rc=$w cache_type=$(cat "$CT")@@"
    n=$((n + 1))
done
exit $rc
