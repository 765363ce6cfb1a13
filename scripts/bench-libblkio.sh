#!/usr/bin/env bash
# scripts/bench-libblkio.sh - vhostd next to qemu-storage-daemon, measured with fio's libblkio engine (driver
# virtio-blk-vhost-user) straight over the vhost-user socket: no VM, so the numbers are the back-end's and
# fio's, not a TCG guest's. fio 3.41 + libblkio and QEMU 11 come from the tool chroot (tests/chroot/).
#
#   scripts/bench-libblkio.sh [--rounds N] [--runtime S] [--ramp S] [--warmup S] [--backends LIST]
#                             [--jobs LIST] [--num-queues N] [--out DIR]
#
# Back-ends (--backends, default "vhostd-file qsd-file qsd-null"), each serving 1 GiB:
#   vhostd-file  bin/vhostd master, file bdev on /dev/shm, direct: $VHOSTD_DIRECT (default true = O_DIRECT, as qsd)
#   vhostd-null  bin/vhostd master, bdev {type: "null"} (once vhostd has null bdevs, #3)
#   qsd-file     the chroot's qemu-storage-daemon, driver=file on /dev/shm, cache.direct=on,aio=io_uring
#   qsd-null     the chroot's qemu-storage-daemon, driver=null-co,read-zeroes=on
# A vhostd back-end may carry a statistics mode (issue #5) as a suffix, e.g. "vhostd-null@nostats vhostd-null
# vhostd-null@hist vhostd-null@trace" compares them in the same interleaved rounds: @nostats the slave counts
# nothing (-Dvhostd.stats.count=false), none = counters only (the default), @hist + latency histograms
# (bdev_enable_histogram), @trace + histograms and the trace ring (trace_start).
# All export one vhost-user-blk device with --num-queues (default 2) queues; fio uses one (1 job).
# Jobs (--jobs, default "rr4k1 rr4k32 rw4k32 sr128k8"; defined in tests/chroot/lib.sh): 4k randread QD1,
# 4k randread QD32, 4k randwrite QD32, 128k sequential read QD8; each --ramp (2) + --runtime (10) seconds.
#
# Rounds are interleaved: each round starts every back-end in turn (the order reverses every other round,
# so a drift of the machine's load hits all of them), runs an unrecorded --warmup (10 s) 4k randread QD32
# (JIT: vhostd's C1/C2 threads are busy for ~10 s under load; page faults), then the jobs, then stops it (SIGTERM). Per job, the back-end's CPU time (utime +
# stime from /proc/PID/stat of the daemon and every descendant: for vhostd the master JVM and its slave
# JVM) is read at two moments inside fio's steady state (ramp + 0.5 s after fio starts, and 1 s before it
# should end); CPU seconds per million I/Os = that CPU time / (fio's IOPS * the window's wall time).
# The machine's busy time in the same window gives "others' CPU" (neither the daemon nor fio).
#
# Output: DIR/summary.md (also printed), DIR/runs.tsv, DIR/<backend>.<round>/{JOB.json,...,daemon.log}.
# Default DIR: run/bench-libblkio/<time>. A full default run takes about 10 minutes.
# Needs root (the chroot: built by tests/chroot/setup.sh on first use) and a JDK 25 for vhostd
# (dist/target/vhostd.jar is built when missing or stale; VHOSTD_JAR overrides it).
# Env: VHOSTD_DIRECT (vhostd file bdev 'direct', default true), VHOSTD_CHROOT.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "$REPO/tests/chroot/lib.sh"

ROUNDS=3 WARMUP=10 NQ=2 OUT="" BACKENDS="vhostd-file qsd-file qsd-null" JOBS=$FIO_PERF_JOBS
VHOSTD_DIRECT=${VHOSTD_DIRECT:-true}
SIZE_BYTES=1073741824
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --runtime) FIO_RUNTIME=$2; shift 2 ;;
    --ramp) FIO_RAMP=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --num-queues) NQ=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-libblkio: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { echo "bench-libblkio: $*" >&2; }
[ "$FIO_RUNTIME" -ge 3 ] || { say "--runtime must be at least 3 s"; exit 2; }
for j in $JOBS; do
    fio_job_args "$j" | grep -q -- '--time_based=1' || { say "job $j is not a timed job"; exit 2; }
done
for b in $BACKENDS; do
    case $b in
    vhostd-file | vhostd-null | vhostd-file@* | vhostd-null@*)
        case ${b#*@} in "$b" | nostats | hist | trace) ;; *) say "unknown statistics mode in $b"; exit 2 ;; esac
        ensure_jar || exit 1
        ;;
    qsd-file | qsd-null) ;;
    *) say "unknown back-end $b (vhostd-file vhostd-null qsd-file qsd-null)"; exit 2 ;;
    esac
done
chroot_ensure || exit 1

OUT=${OUT:-$REPO/run/bench-libblkio/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# fio writes its JSON from inside the chroot, which sees only the host's /tmp: results go to a work dir
# under /tmp and are copied to OUT. Short, too: a unix socket path has at most 107 bytes.
WORK=$(mktemp -d /tmp/vhostd-bl.XXXXXX)
IMGS=()
cleanup() {
    vm_cleanup
    rm -f "${IMGS[@]}"
    cp -r "$WORK"/. "$OUT"/ 2>/dev/null
    rm -rf "$WORK"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Each file back-end gets its own 1 GiB image on /dev/shm, allocated once here (in this shell, so that
# cleanup knows them) and kept over the rounds.
declare -A IMG_OF
for b in $BACKENDS; do
    case $b in
    *-file | *-file@*)
        IMG_OF[$b]=/dev/shm/vhostd-bl-$$-$b.img
        IMGS+=("${IMG_OF[$b]}")
        fallocate -l "$SIZE_BYTES" "${IMG_OF[$b]}" || exit 1
        ;;
    esac
done

# start_backend BACKEND DIR -> DPID, DSOCK
start_backend() {
    local b=$1 dir=$2 img mode=
    case $b in *@*) mode=${b#*@} ;; esac
    case $b in
    vhostd-*)
        if [ "${b%@*}" = vhostd-file ]; then
            img=${IMG_OF[$b]}
            write_vhostd_yaml "$dir/vhostd.yaml" "$dir" \
                "type: file, path: $img, size_bytes: $SIZE_BYTES, direct: $VHOSTD_DIRECT" "$NQ"
        else
            write_vhostd_yaml "$dir/vhostd.yaml" "$dir" "type: \"null\", size_bytes: $SIZE_BYTES" "$NQ"
        fi
        DSOCK=$dir/vhost.0.sock
        if [ "$mode" = nostats ]; then
            VHOSTD_JAVA_OPTS="${VHOSTD_JAVA_OPTS:-} -Dvhostd.stats.count=false" \
                start_vhostd_master "$dir/vhostd.yaml" "$DSOCK" "$dir/daemon.log" || return 1
        else
            start_vhostd_master "$dir/vhostd.yaml" "$DSOCK" "$dir/daemon.log" || return 1
        fi
        DPID=$VHOSTD_PID
        case $mode in
        hist | trace)
            "$REPO/bin/vhostctl" --socket "$dir/rpc.sock" rpc bdev_enable_histogram '{"name":"disk0","enable":true}' \
                >>"$dir/daemon.log" 2>&1 || return 1
            ;;
        esac
        if [ "$mode" = trace ]; then
            "$REPO/bin/vhostctl" --socket "$dir/rpc.sock" rpc trace_start '{}' >>"$dir/daemon.log" 2>&1 || return 1
        fi
        ;;
    qsd-file)
        img=${IMG_OF[$b]}
        DSOCK=$dir/qsd.sock
        start_chroot_qsd "$DSOCK" "driver=file,node-name=n0,filename=$img,cache.direct=on,aio=io_uring" "$NQ" \
            "$dir/daemon.log" || return 1
        DPID=$QSD_PID
        ;;
    qsd-null)
        DSOCK=$dir/qsd.sock
        start_chroot_qsd "$DSOCK" "driver=null-co,node-name=n0,size=$SIZE_BYTES,read-zeroes=on" "$NQ" \
            "$dir/daemon.log" || return 1
        DPID=$QSD_PID
        ;;
    esac
}

cpu_busy_s() { awk '/^cpu /{printf "%.2f", ($2+$3+$4+$7+$8)/100}' /proc/stat; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a - b}'; }

# measure_job BACKEND ROUND JOB DIR: one fio run, CPU sampled inside its steady state -> a runs.tsv line
measure_job() {
    local b=$1 r=$2 j=$3 dir=$4 c0 c1 b0 b1 t0 t1 rc=0
    start_fio "$DSOCK" "$j" "$dir"
    sleep "$(awk -v r="$FIO_RAMP" 'BEGIN{print r + 0.5}')"
    c0=$(tree_cpu_seconds "$DPID") b0=$(cpu_busy_s) t0=$EPOCHREALTIME
    sleep "$((FIO_RUNTIME - 1))"
    c1=$(tree_cpu_seconds "$DPID") b1=$(cpu_busy_s) t1=$EPOCHREALTIME
    wait "$FIO_PID" || rc=$?
    echo "$rc" >"$dir/$j.rc"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$b" "$r" "$j" "$OUT/$b.$r/$j.json" "$rc" "$(fsub "$c1" "$c0")" \
        "$(fsub "$t1" "$t0")" "$(fsub "$b1" "$b0")" "$(cut -d' ' -f1 /proc/loadavg)" >>"$OUT/runs.tsv"
    if [ $rc != 0 ]; then
        say "  $j: fio exit code $rc:"
        tail -5 "$dir/$j.out" >&2
        return 1
    fi
    say "  $j: $(python3 -c 'import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.find("{"):])["jobs"][0]
print("{:,.0f} IOPS".format(j["read"]["iops"] + j["write"]["iops"]))' "$dir/$j.json" 2>&1 | tail -1)"
}

START=$(date '+%F %T') T0=$SECONDS
UPTIME0=$(uptime)
printf '# backend\tround\tjob\tjson\tfio_rc\tdaemon_cpu_s\twindow_s\tmachine_busy_s\tloadavg1\n' >"$OUT/runs.tsv"
say "back-ends '$BACKENDS', jobs '$JOBS', $ROUNDS rounds, ${FIO_RAMP}+${FIO_RUNTIME} s per job; results in $OUT"
say "$UPTIME0"
FAILED=0
for r in $(seq 1 "$ROUNDS"); do
    order=$BACKENDS
    [ $((r % 2)) = 0 ] && order=$(echo "$BACKENDS" | tr ' ' '\n' | tac | tr '\n' ' ')
    for b in $order; do
        dir=$WORK/$b.$r
        mkdir -p "$dir"
        say "round $r/$ROUNDS: $b"
        if ! start_backend "$b" "$dir"; then
            say "$b did not start (log $OUT/$b.$r/daemon.log)"
            FAILED=1
            continue
        fi
        # the processes whose CPU is counted: the daemon and its descendants (vhostd: master + slave JVM)
        ps -o pid,ppid,etimes,args -p "$({ echo "$DPID"; descendants "$DPID"; } | paste -sd, -)" | cut -c1-200 >"$dir/pids.txt"
        if [ "$WARMUP" -gt 0 ]; then
            FIO_RUNTIME=$WARMUP FIO_RAMP=0 run_fio "$DSOCK" rr4k32 "$dir/warmup" >/dev/null 2>&1 ||
                say "  warm-up fio failed ($OUT/$b.$r/warmup/rr4k32.out)"
        fi
        for j in $JOBS; do
            if ! kill -0 "$DPID" 2>/dev/null; then
                say "  $b died; skipping the rest of this round"
                FAILED=1
                break
            fi
            measure_job "$b" "$r" "$j" "$dir" || FAILED=1
        done
        stop_tree "$DPID" TERM 20 || say "  $b needed SIGKILL to stop"
    done
done
UPTIME1=$(uptime)
cp -r "$WORK"/. "$OUT"/

{
    echo "# bench-libblkio: fio (libblkio, virtio-blk-vhost-user) against vhost-user-blk back-ends"
    echo
    echo "- started $START, took $((SECONDS - T0)) s; $ROUNDS rounds, interleaved; ${FIO_RAMP} s ramp + ${FIO_RUNTIME} s per job, 1 fio job, ${WARMUP} s warm-up per daemon start"
    echo "- machine: $(nproc) CPUs, $(uname -r); load at start: ${UPTIME0#*load average: }, at end: ${UPTIME1#*load average: }"
    echo "- fio $("$CHROOT_DIR/enter.sh" fio --version) (tool chroot), $("$CHROOT_DIR/enter.sh" qemu-storage-daemon --version | head -1)"
    echo "- vhostd $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet 2>/dev/null || echo '+dirty'), ${VHOSTD_JAR:-dist/target/vhostd.jar}; file bdev direct: $VHOSTD_DIRECT"
    echo "- every back-end: 1 GiB, vhost-user-blk, $NQ queues; files on /dev/shm"
    echo
    python3 "$CHROOT_DIR/fio-summary.py" --bench "$OUT/runs.tsv"
    echo
    echo "IOPS: median [min-max] over rounds; 'IOPS / qsd': ratio of medians to qsd with the same kind of bdev."
    echo "clat: fio completion latency, median of the per-round p50 / p99. CPU s / M I/O: CPU seconds (user+system)"
    echo "per million I/Os, the daemon's (all its processes) and fio's. others' CPU: busy time of the rest of the"
    echo "machine during the measurement window, in % of one CPU (this machine has $(nproc))."
} >"$OUT/summary.md"
python3 "$CHROOT_DIR/fio-summary.py" --bench "$OUT/runs.tsv" >/dev/null || FAILED=1
cat "$OUT/summary.md"
say "results in $OUT"
exit $FAILED
