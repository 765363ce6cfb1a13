#!/usr/bin/env bash
# scripts/bench-guest.sh - guest fio numbers of vhostd next to qemu-storage-daemon's, on the same image.
#
#   scripts/bench-guest.sh [--rounds N] [--runtime SECS] [--backends 'vhostd qsd'] [--out DIR]
#
# Each round boots one guest per back-end (2 vCPUs, vhost-user-blk-pci num-queues=2) that runs
# tests/vm/fio/bench.fio: 4k randread qd32, 4k randwrite qd32, 128k seqread qd32, 4k randread qd1,
# RUNTIME s each after a 2 s ramp. Back-ends are interleaved and their order alternates per round,
# so drifts of the machine's load hit all of them. Both serve the same 1 GiB image file on disk
# (fully written once with zeroes), with 2 queues:
#   vhostd  bin/vhostd master with a file bdev on the image (config written to the socket dir)
#   qsd     qemu-storage-daemon --blockdev driver=file,filename=IMG,$QSD_OPTS --export vhost-user-blk,
#           num-queues=2. Default QSD_OPTS=aio=io_uring (page cache + io_uring), because vhostd's file
#           bdev uses the page cache (its log says so: the summary quotes that line); for O_DIRECT on
#           both sides use QSD_OPTS=cache.direct=on,aio=io_uring.
# Output: DIR/summary.md (median IOPS [min-max], median clat p50/p99, ratios to qsd, back-end CPU per
# guest I/O, other processes' CPU), raw guest output DIR/<backend>.<round>.out, logs *.log.
# Under TCG (no usable KVM) the emulated vCPUs bound everything: compare ratios only.
# Env: QSD_OPTS, IMG (default ./run/bench/disk.img), VHOSTD_JAR, VHOSTD_VMCACHE.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "$REPO/tests/vm/lib.sh"

ROUNDS=3 RUNTIME=10 BACKENDS="vhostd qsd" OUT=
QSD_OPTS=${QSD_OPTS:-aio=io_uring}
IMG=${IMG:-$REPO/run/bench/disk.img}
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-guest: unknown argument $1" >&2; exit 2 ;;
    esac
done
OUT=${OUT:-$REPO/run/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
trap vm_cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "bench-guest: $*" >&2; }

for b in $BACKENDS; do
    case $b in
    vhostd) ensure_jar || exit 1 ;;
    qsd) command -v qemu-storage-daemon >/dev/null || { say "qemu-storage-daemon not installed"; exit 1; } ;;
    *) say "unknown back-end $b (vhostd, qsd)"; exit 2 ;;
    esac
done
"$REPO/tests/vm/build-guest.sh" || exit 1
say "image $IMG (1 GiB, written once)"
make_img "$IMG" 1024
SOCKDIR=$(mktemp -d /tmp/vhostd-bench.XXXXXX) # short: a unix socket path has at most 107 bytes
trap 'vm_cleanup; rm -rf "$SOCKDIR"' EXIT
SOCK=$SOCKDIR/vhost.0.sock
F=$REPO/tests/vm/fio
: >"$OUT/runs.tsv"

# CPU of processes that are not ours: machine busy time (/proc/stat) minus our children's CPU time
# (bash 'times'; must run in this shell, not in $(...), or it sees no children).
cpu_busy_s() { awk '/^cpu /{printf "%.2f", ($2+$3+$4+$7+$8+$9)/100}' /proc/stat; }
children_cpu() {
    times >"$OUT/.times"
    CHILD_CPU=$(tail -1 "$OUT/.times" | awk '{ for (i=1;i<=2;i++) { split($i,a,/[ms]/); t+=a[1]*60+a[2] } printf "%.2f", t }')
}
NCPU=$(nproc)

for r in $(seq 1 "$ROUNDS"); do
    order=$BACKENDS
    [ $((r % 2)) = 0 ] && order=$(echo "$BACKENDS" | tr ' ' '\n' | tac | tr '\n' ' ')
    for b in $order; do
        tag=$b.$r
        say "round $r/$ROUNDS: $b"
        b0=$(cpu_busy_s)
        children_cpu
        k0=$CHILD_CPU
        t0=$EPOCHREALTIME
        if [ "$b" = vhostd ]; then
            write_vhostd_config "$SOCKDIR/vhostd.yaml" "$SOCKDIR" "$IMG" 1073741824 2
            start_vhostd "$SOCKDIR/vhostd.yaml" "$SOCK" "$OUT/$tag.backend.log" || { say "vhostd did not start"; exit 1; }
            BPID=$VHOSTD_PID
        else
            start_qsd "$SOCK" "driver=file,node-name=n0,filename=$IMG,$QSD_OPTS" 2 "$OUT/$tag.backend.log" ||
                { say "qemu-storage-daemon did not start"; exit 1; }
            BPID=$QSD_PID
        fi
        c0=$(tree_cpu_seconds "$BPID")
        grc=0
        "$REPO/tests/vm/run-guest.sh" --quiet --smp 2 --num-queues 2 --timeout $((RUNTIME * 4 * 3 + 240)) \
            --vhost-user-blk "$SOCK" --file "$F/guest-fio.sh" --file "$F/bench.fio" \
            --env "RUNTIME=$RUNTIME" --env "FIO_ARGS=--output-format=json" \
            --out "$OUT/$tag.out" --log "$OUT/$tag.log" -- sh /vm/guest-fio.sh bench.fio >/dev/null || grc=$?
        c1=$(tree_cpu_seconds "$BPID")
        stop_tree "$BPID" TERM 20 || say "$b did not stop within 20 s of SIGTERM (killed)"
        VM_PIDS=()
        b1=$(cpu_busy_s)
        children_cpu
        k1=$CHILD_CPU
        t1=$EPOCHREALTIME
        other=$(awk -v b0="$b0" -v b1="$b1" -v k0="$k0" -v k1="$k1" -v t0="$t0" -v t1="$t1" -v n="$NCPU" \
            'BEGIN { f = ((b1-b0) - (k1-k0)) / ((t1-t0) * n) * 100; if (f < 0) f = 0; printf "%.0f", f }')
        own=$(awk -v k0="$k0" -v k1="$k1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", (k1-k0) / (t1-t0) * 100 }')
        bcpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }')
        accel=$(sed -n 's/.* accel=\([a-z]*\) .*/\1/p' "$OUT/$tag.log" | tail -1)
        say "  guest rc=$grc, $b CPU ${bcpu}s, our CPU ${own}% of one core, other processes ${other}% of the machine; $(tail -1 "$OUT/$tag.log")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$b" "$r" "$OUT/$tag.out" "$grc" "$bcpu" "$own" "$other" "${accel:-?}" >>"$OUT/runs.tsv"
    done
done
rm -rf "$SOCKDIR" "$OUT/.times"

{
    echo "# guest fio: ${BACKENDS// / vs } ($(date -u +%FT%TZ))"
    echo
    echo "host $(uname -r), $(nproc) cpus, $(qemu-system-x86_64 --version | head -1), image $IMG, runtime ${RUNTIME}s per job"
    echo
    case " $BACKENDS " in *" qsd "*) echo "- qsd: --blockdev driver=file,filename=IMG,$QSD_OPTS" ;; esac
    case " $BACKENDS " in *" vhostd "*)
        echo "- vhostd: $(grep -h -m1 'bdev disk0:' "$OUT"/vhostd.1.backend.log 2>/dev/null | sed 's/^.*\] //')" ;;
    esac
    echo
    python3 "$REPO/tests/vm/fio-summary.py" "$OUT/runs.tsv"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
say "summary: $OUT/summary.md"
# exit status: 1 if a guest boot failed
awk -F'\t' '$4 != 0 {bad = 1} END {exit bad}' "$OUT/runs.tsv"
