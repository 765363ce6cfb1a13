#!/bin/sh
# Runs inside the guest (busybox sh): discard-check.sh. Checks DISCARD and WRITE_ZEROES end to end:
# writes 8 MiB of random data at offset 0 of DEV, then
#   MiB 1: blkdiscard                        (VIRTIO_BLK_T_DISCARD)
#   MiB 3: fallocate -z  (util-linux, /vm)   (VIRTIO_BLK_T_WRITE_ZEROES, no unmap)
#   MiB 5: fallocate -p  (util-linux, /vm)   (VIRTIO_BLK_T_WRITE_ZEROES with unmap)
# and reads the 8 MiB back with O_DIRECT: MiB 3 and 5 must be zeroes; MiB 1 is printed (a discarded
# range is undefined for the driver, our file bdev punches a hole: zeroes); every other MiB must be
# what was written. Prints the queue limits the driver took from the config space, then
#   @@DISCARD-CHECK rc=N@@
# It also switches the cache to write through (the config space's writeback byte), writes and reads 1 MiB,
# and switches back.
DEV=${DEV:-/dev/vda}
B=${DEV#/dev/}
Q=/sys/block/$B/queue
for f in discard_max_bytes discard_granularity write_zeroes_max_bytes max_discard_segments \
         logical_block_size physical_block_size minimum_io_size optimal_io_size write_cache; do
    echo "@@QUEUE $f=$(cat $Q/$f 2>/dev/null)@@"
done
# the virtio device's negotiated feature bits as a 0/1 string, bit 0 first (bit 34: VIRTIO_F_RING_PACKED)
F=$(cat /sys/block/"$B"/device/features 2>/dev/null)
echo "@@VIRTIO features=$F packed=$(echo "$F" | cut -c35)@@"
echo "@@DEVICE cache_type=$(cat /sys/block/"$B"/cache_type 2>/dev/null)@@"
rc=0
fail() { echo "discard-check: FAIL: $*"; rc=1; }
dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 2>/dev/null || fail "urandom"
dd if=/dev/zero of=/tmp/zero bs=1M count=1 2>/dev/null
dd if=/tmp/pattern of="$DEV" bs=1M count=8 oflag=direct conv=fsync 2>/dev/null || fail "write pattern"
blkdiscard -o $((1 << 20)) -l $((1 << 20)) "$DEV" || fail "blkdiscard"
/vm/fallocate -z -o $((3 << 20)) -l $((1 << 20)) "$DEV" || fail "fallocate -z"
/vm/fallocate -p -o $((5 << 20)) -l $((1 << 20)) "$DEV" || fail "fallocate -p"
i=0
while [ $i -lt 8 ]; do
    dd if="$DEV" of=/tmp/got bs=1M skip=$i count=1 iflag=direct 2>/dev/null || fail "read MiB $i"
    dd if=/tmp/pattern of=/tmp/want bs=1M skip=$i count=1 2>/dev/null
    case $i in
    1)
        if cmp -s /tmp/got /tmp/zero; then echo "@@MIB 1 discarded: zeroes@@"; else echo "@@MIB 1 discarded: not zeroes@@"; fi
        ;;
    3 | 5) cmp -s /tmp/got /tmp/zero || fail "MiB $i is not zeroes after write zeroes" ;;
    *) cmp -s /tmp/got /tmp/want || fail "MiB $i changed" ;;
    esac
    i=$((i + 1))
done
# write-through (VIRTIO_BLK_F_CONFIG_WCE: the driver writes writeback = 0 into the config space), a write,
# read back, and back to writeback
if [ -w /sys/block/"$B"/cache_type ]; then
    echo "write through" >/sys/block/"$B"/cache_type || fail "cache_type write through"
    echo "@@DEVICE cache_type=$(cat /sys/block/"$B"/cache_type)@@"
    dd if=/tmp/pattern of="$DEV" bs=1M count=1 seek=7 skip=7 oflag=direct 2>/dev/null || fail "write-through write"
    dd if="$DEV" of=/tmp/got bs=1M skip=7 count=1 iflag=direct 2>/dev/null || fail "write-through read"
    dd if=/tmp/pattern of=/tmp/want bs=1M skip=7 count=1 2>/dev/null
    cmp -s /tmp/got /tmp/want || fail "write-through data"
    echo "write back" >/sys/block/"$B"/cache_type || fail "cache_type write back"
    echo "@@DEVICE cache_type=$(cat /sys/block/"$B"/cache_type)@@"
else
    fail "no writable cache_type (VIRTIO_BLK_F_CONFIG_WCE not negotiated?)"
fi
echo "@@DISCARD-CHECK rc=$rc@@"
exit $rc
