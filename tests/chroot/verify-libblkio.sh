#!/usr/bin/env bash
# tests/chroot/verify-libblkio.sh - data-integrity test of a vhost-user-blk back-end with no VM: fio from the
# tool chroot (libblkio engine, virtio-blk-vhost-user driver) writes with verify=crc32c and reads back, and
# checks data against the host's view of the image in both directions (pattern jobs).
#
#   tests/chroot/verify-libblkio.sh [--server vhostd|qsd | --socket PATH] [--jobs LIST] [--direct true|false] [--out DIR]
#
#   --server vhostd  (default) bin/vhostd master with a file bdev: a 1 GiB file on /dev/shm, 2 queues
#   --server qsd     the chroot's qemu-storage-daemon (QEMU 11) on the same kind of file, as a control
#   --socket PATH    a back-end that is already running (PATH under /tmp): no image, no server is started.
#                    The host side of the pattern jobs is then the caller's: write the ph64k region into the
#                    image before, check the pf64k region after the back-end stopped (pattern_write/pattern_check
#                    in lib.sh; dist/src/test/java/io/vhostd/dist/LibblkioVerifyIT.java does it in Java)
#   --jobs LIST      default "vw4k32 vwmix vwmixv vw64k vo64k ph64k pf64k" (see tests/chroot/lib.sh):
#                    randwrite 4k QD32; randwrite 4k-128k QD16, plain and with iovecs; a 64k sequential
#                    write and, in a second fio process over a new connection, its verify_only read back;
#                    fio reads a pattern the host wrote (ph64k); fio writes a pattern the host reads (pf64k)
#   --direct B       vhostd's bdev 'direct' key (default false); qsd always runs cache.direct=on,aio=io_uring
#   --out DIR        results and the daemon log (default /tmp/vhostd-verify/<time>; must be under /tmp)
# Prints one line per check (PASS/FAIL JOB; with a server of its own also 'PASS host-check pf64k', made after
# the server stopped) and 'verify-libblkio: N passed, N failed' at the end; on a failure also the end of fio's
# output and of the daemon log. Exit status 0 when every check passed, 1 if one failed, 2 on bad arguments or
# when the server did not start. Needs root (the chroot) and, for vhostd, a JDK 25 (dist/target/vhostd.jar is
# built when missing or stale; VHOSTD_JAR overrides it).
set -uo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

SERVER=vhostd SOCK="" JOBS="$FIO_VERIFY_JOBS $FIO_PATTERN_JOBS" DIRECT=false OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --server) SERVER=$2; shift 2 ;;
    --socket) SOCK=$2; SERVER=external; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --direct) DIRECT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "verify-libblkio.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { echo "verify-libblkio: $*" >&2; }
has_job() { case " $JOBS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
chroot_ensure || exit 2
OUT=${OUT:-/tmp/vhostd-verify/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
case $OUT in /tmp/*) ;; *) say "--out must be under /tmp (the chroot sees only the host's /tmp)"; exit 2 ;; esac
IMG=""
cleanup() {
    vm_cleanup
    [ -n "$IMG" ] && rm -f "$IMG"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DPID=""
if [ "$SERVER" != external ]; then
    IMG=/dev/shm/vhostd-verify-$$.img
    fallocate -l 1G "$IMG"
    if has_job ph64k; then pattern_write "$IMG" ph64k || exit 2; fi
fi
LOG=$OUT/$SERVER.log
case $SERVER in
vhostd)
    ensure_jar || exit 2
    SOCK=$OUT/vhost.0.sock
    write_vhostd_yaml "$OUT/vhostd.yaml" "$OUT" "type: file, path: $IMG, size_bytes: 1073741824, direct: $DIRECT" 2
    start_vhostd_master "$OUT/vhostd.yaml" "$SOCK" "$LOG" || exit 2
    DPID=$VHOSTD_PID
    ;;
qsd)
    SOCK=$OUT/qsd.sock
    start_chroot_qsd "$SOCK" "driver=file,node-name=n0,filename=$IMG,cache.direct=on,aio=io_uring" 2 "$LOG" || exit 2
    DPID=$QSD_PID
    ;;
external)
    case $SOCK in /tmp/*) ;; *) say "--socket must be under /tmp (the chroot sees only the host's /tmp)"; exit 2 ;; esac
    [ -S "$SOCK" ] || { say "--socket $SOCK is not a unix socket"; exit 2; }
    ;;
*) say "--server vhostd|qsd, or --socket PATH"; exit 2 ;;
esac
say "$SERVER${DPID:+ (pid $DPID)} on $SOCK${IMG:+, image $IMG}; results in $OUT"

pass=0 fail=0
for j in $JOBS; do
    t0=$SECONDS rc=0
    run_fio "$SOCK" "$j" "$OUT" || rc=$?
    if [ $rc = 0 ]; then
        pass=$((pass + 1))
        echo "PASS $j ($((SECONDS - t0)) s): $(fio_job_args "$j" | tr '\n' ' ')"
    else
        fail=$((fail + 1))
        echo "FAIL $j ($((SECONDS - t0)) s): fio exit code $rc; $(fio_job_args "$j" | tr '\n' ' ')"
        echo "--- fio output ($OUT/$j.out, last 15 lines):"
        tail -15 "$OUT/$j.out"
        if [ -n "$DPID" ] && ! kill -0 "$DPID" 2>/dev/null; then echo "--- $SERVER (pid $DPID) is no longer running"; fi
    fi
done
if [ -n "$DPID" ] && has_job pf64k; then
    # What fio wrote must be in the image file once the back-end has stopped (SIGTERM: a clean shutdown).
    if ! stop_tree "$DPID" TERM 30; then
        fail=$((fail + 1))
        echo "FAIL stop: $SERVER (pid $DPID) did not stop within 30 s of SIGTERM"
    elif out=$(pattern_check "$IMG" pf64k 2>&1); then
        pass=$((pass + 1))
        echo "PASS host-check pf64k: $IMG holds the pattern fio wrote (read on the host after $SERVER stopped)"
    else
        fail=$((fail + 1))
        echo "FAIL host-check pf64k: $out"
    fi
fi
if [ $fail != 0 ] && [ -n "$DPID" ]; then
    echo "--- $SERVER log ($LOG, last 40 lines):"
    tail -40 "$LOG"
fi
echo "verify-libblkio against $SERVER:"
echo "verify-libblkio: $pass passed, $fail failed"
[ $fail = 0 ]
