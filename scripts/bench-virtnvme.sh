#!/usr/bin/env bash
# scripts/bench-virtnvme.sh - the VirtNvme hop alone: two JVMs, one queue pair in a memfd, a null device (issue #3,
# "Performance"). The parent JVM plays the master (formats the qpair, executes every command at once), the child
# JVM it starts plays the slave (submits 4 KiB READs and measures each round trip); the memfd and both eventfds go
# to the child over a unix socket with SCM_RIGHTS. Classes: virtnvme-shm/src/test/java/io/vhostd/shm/virtnvme/bench/.
#
#   scripts/bench-virtnvme.sh [--rounds N] [--scale F] [--idle-seconds S] [--max-phase-seconds S] [--spin-us US]
#                             [--phases LIST] [--jfr] [--pin | --also-pinned] [--out DIR] [--doc FILE | --no-doc]
#
# Each round starts a fresh pair of JVMs and runs these phases (--phases picks some, comma-separated):
#   poll-qd1, poll-qd32        both sides busy-spin: round-trip p50/p99/p99.9, ops/s; poll-qd32 is also the
#                              allocation window (10M round trips after 2M of warm-up)
#   adaptive-qd1, -qd32        both spin --spin-us (default 20, the daemon's vhostd.poll.spin.us) after their last
#                              work, then arm their event index and sleep on their eventfd
#   adaptive-qd1-10k, -1k      the same, paced at 10k and 1k commands/s: the eventfd wake-up cost
#   idle                       both up, adaptive, nothing submitted for --idle-seconds (10): CPU of each JVM
#   poll-qd32-jfr (--jfr)      the allocation window again with a JFR recording of allocation events on both
#                              sides (files in DIR/jfr/, DIR/pinned/jfr/; `jfr print --events
#                              jdk.ObjectAllocationSample FILE` shows what a thread allocated)
# --scale multiplies every op count (0.1 for a quick look). --pin runs the parent on CPU 0 and the child on CPU 1
# (taskset: every thread of each JVM). --also-pinned runs each round twice, unpinned then pinned (interleaved, so
# a drift of the machine's load hits both), and adds the pinned medians to the summary (DIR/pinned/).
#
# Output: DIR/round-N.tsv (every figure of every phase; pinned rounds in DIR/pinned/), DIR/uptime.txt (`uptime`
# before each round and after the last), DIR/summary.md: the medians of the rounds, per cell, as markdown; the
# same section replaces
# "## VirtNvme hop (two processes, null device)" in --doc (default docs/benchmarks.md; other sections are kept).
# Default DIR: run/bench-virtnvme/<time>. A default run (3 rounds) takes about 4 minutes; --also-pinned doubles it.
# Env: JAVA_HOME (default /usr/lib/jvm/temurin-25-jdk-amd64 when present), VHOSTD_BENCH_JAVA_OPTS (extra JVM options).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

ROUNDS=3 SCALE=1 IDLE_S=10 MAX_PHASE_S=30 SPIN_US=20 PHASES="" JFR=0 PIN=0 ALSO_PINNED=0 OUT="" DOC="$REPO/docs/benchmarks.md"
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --idle-seconds) IDLE_S=$2; shift 2 ;;
    --max-phase-seconds) MAX_PHASE_S=$2; shift 2 ;;
    --spin-us) SPIN_US=$2; shift 2 ;;
    --phases) PHASES=$2; shift 2 ;;
    --jfr) JFR=1; shift ;;
    --pin) PIN=1; shift ;;
    --also-pinned) ALSO_PINNED=1; shift ;;
    --out) OUT=$2; shift 2 ;;
    --doc) DOC=$2; shift 2 ;;
    --no-doc) DOC=""; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-virtnvme: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { echo "bench-virtnvme: $*" >&2; }

if [ -z "${JAVA_HOME:-}" ] && [ -x /usr/lib/jvm/temurin-25-jdk-amd64/bin/java ]; then
    export JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64
fi
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

OUT=${OUT:-$REPO/run/bench-virtnvme/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# test classes + the module's runtime dependencies; offline first, then with Maven Central. The classes are copied
# into DIR: other builds in this tree may clean virtnvme-shm/target while the rounds run.
say "building virtnvme-shm test classes"
build() {
    (cd "$REPO" && ./mvnw -B -q "$@" -pl virtnvme-shm test-compile dependency:build-classpath \
        -Dmdep.includeScope=runtime -Dmdep.outputFile="$OUT/classpath.txt")
}
copy_classes() {
    rm -rf "$OUT/classes" "$OUT/test-classes"
    cp -r "$REPO/virtnvme-shm/target/classes" "$OUT/classes" 2>/dev/null &&
        cp -r "$REPO/virtnvme-shm/target/test-classes" "$OUT/test-classes" 2>/dev/null &&
        [ -f "$OUT/classes/io/vhostd/shm/virtnvme/VirtNvmeQueuePair.class" ] &&
        [ -f "$OUT/test-classes/io/vhostd/shm/virtnvme/bench/VirtNvmeHopBench.class" ]
}
for attempt in 1 2 3; do
    { build -o || build; } && copy_classes && break
    [ "$attempt" = 3 ] && { say "could not build and copy the classes"; exit 1; }
    say "build or copy raced with another build; again"
done
CP="$OUT/classes:$OUT/test-classes:$(cat "$OUT/classpath.txt")"

# the daemon's flags (bin/vhostd): FFM native access, Agrona's jdk.internal.misc, ZGC; a small fixed heap
JVM_FLAGS=(--enable-native-access=ALL-UNNAMED --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
    --sun-misc-unsafe-memory-access=allow -XX:+UseZGC -Xms256m -Xmx256m)
# shellcheck disable=SC2206 # split on blanks on purpose
JVM_FLAGS+=(${VHOSTD_BENCH_JAVA_OPTS:-})
echo "${JVM_FLAGS[*]}" >"$OUT/jvm-flags.txt"

ARGS=(--scale "$SCALE" --idle-seconds "$IDLE_S" --max-phase-seconds "$MAX_PHASE_S" --spin-us "$SPIN_US")
[ -n "$PHASES" ] && ARGS+=(--phases "$PHASES")
[ "$PIN" = 1 ] && [ "$ALSO_PINNED" = 1 ] && { say "--pin and --also-pinned exclude each other"; exit 2; }

# one round: $1 round number, $2 output directory, $3 1 = pinned
run_round() {
    local parent=() extra=()
    if [ "$3" = 1 ]; then
        parent=(taskset -c 0)
        extra=(--child-taskset 1)
    fi
    if [ "$JFR" = 1 ]; then
        mkdir -p "$2/jfr"
        extra+=(--jfr "$2/jfr")
    fi
    "${parent[@]}" "$JAVA" "${JVM_FLAGS[@]}" -cp "$CP" io.vhostd.shm.virtnvme.bench.VirtNvmeHopBench \
        --round "$1" --out "$2/round-$1.tsv" "${ARGS[@]}" "${extra[@]}"
}

: >"$OUT/uptime.txt"
date -u '+%Y-%m-%d %H:%M UTC' >"$OUT/started.txt"
[ "$ALSO_PINNED" = 1 ] && mkdir -p "$OUT/pinned"
for round in $(seq 1 "$ROUNDS"); do
    echo "before round $round: $(uptime)" | tee -a "$OUT/uptime.txt" >&2
    run_round "$round" "$OUT" "$PIN"
    if [ "$ALSO_PINNED" = 1 ]; then
        echo "before round $round, pinned: $(uptime)" | tee -a "$OUT/uptime.txt" >&2
        run_round "$round" "$OUT/pinned" 1
    fi
done
echo "after round $ROUNDS: $(uptime)" | tee -a "$OUT/uptime.txt" >&2

REPORT=(--in "$OUT")
[ "$ALSO_PINNED" = 1 ] && REPORT+=(--pinned "$OUT/pinned")
[ -n "$DOC" ] && REPORT+=(--doc "$DOC")
"$JAVA" -cp "$CP" io.vhostd.shm.virtnvme.bench.HopReport "${REPORT[@]}"
say "results in $OUT"
