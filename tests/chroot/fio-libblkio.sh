#!/usr/bin/env bash
# tests/chroot/fio-libblkio.sh - run named fio jobs (libblkio engine, virtio-blk-vhost-user driver) from the
# tool chroot against a vhost-user-blk server's unix socket: no VM involved. Prints a markdown table.
#
#   tests/chroot/fio-libblkio.sh --socket PATH [options] [-- extra fio options]
#   tests/chroot/fio-libblkio.sh --qsd null|file [options] [-- extra fio options]
#
#   --socket PATH   a running server (vhostd, qsd, ...); PATH must be under /tmp (shared with the chroot)
#   --qsd null|file start the chroot's qemu-storage-daemon first: null-co (read-zeroes=on) or a 1 GiB file
#                   on /dev/shm with cache.direct=on,aio=io_uring; stopped (and the file deleted) at exit
#   --jobs LIST     job names (default: the performance jobs "rr4k1 rr4k32 rw4k32 sr128k8"); 'verify' =
#                   "vw4k32 vwmix vwmixv vw64k vo64k". The jobs are defined in tests/chroot/lib.sh.
#   --runtime S     seconds per performance job after a FIO_RAMP (2 s) ramp (default 10)
#   --out DIR       results: DIR/JOB.{json,cmd,out,rc} (default /tmp/vhostd-fio/<time>)
# Exit status 0 when every fio run exited 0 with no error. Needs root (the chroot).
set -uo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

SOCK="" QSD="" JOBS=$FIO_PERF_JOBS OUT="" EXTRA=()
while [ $# -gt 0 ]; do
    case $1 in
    --socket) SOCK=$2; shift 2 ;;
    --qsd) QSD=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --runtime) FIO_RUNTIME=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "fio-libblkio.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$JOBS" = verify ] && JOBS=$FIO_VERIFY_JOBS
[ -n "$SOCK" ] || [ -n "$QSD" ] || { echo "fio-libblkio.sh: give --socket PATH or --qsd null|file" >&2; exit 2; }
chroot_ensure || exit 1
OUT=${OUT:-/tmp/vhostd-fio/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
IMG=""
cleanup() {
    vm_cleanup
    [ -n "$IMG" ] && rm -f "$IMG"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$QSD" ]; then
    SOCK=$OUT/qsd.sock
    case $QSD in
    null) BDEV="driver=null-co,node-name=n0,size=1073741824,read-zeroes=on" ;;
    file)
        IMG=/dev/shm/vhostd-fio-$$.img
        fallocate -l 1G "$IMG"
        BDEV="driver=file,node-name=n0,filename=$IMG,cache.direct=on,aio=io_uring"
        ;;
    *) echo "fio-libblkio.sh: --qsd null|file" >&2; exit 2 ;;
    esac
    start_chroot_qsd "$SOCK" "$BDEV" 1 "$OUT/qsd.log" || exit 1
fi

FAIL=0 ARGS=()
for j in $JOBS; do
    rc=0
    run_fio "$SOCK" "$j" "$OUT" "${EXTRA[@]}" || rc=$?
    if [ $rc != 0 ]; then
        FAIL=1
        echo "fio-libblkio.sh: $j: fio exit code $rc; last lines of $OUT/$j.out:" >&2
        tail -5 "$OUT/$j.out" >&2
    fi
    ARGS+=("$j=$OUT/$j.json")
done
python3 "$CHROOT_DIR/fio-summary.py" "${ARGS[@]}"
echo "results in $OUT" >&2
exit $FAIL
