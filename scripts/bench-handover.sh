#!/usr/bin/env bash
# scripts/bench-handover.sh - the guest-visible stall of a slave handover (issue #4): fio (libblkio engine,
# virtio-blk-vhost-user, from the tool chroot, tests/chroot/) runs 4k random read/write QD32 against a running
# vhostd master while the script does N rolling upgrades (RPC slave_upgrade) and N slave kills (SIGKILL of the
# serving slave; the warm standby takes over). fio logs, per 10 ms window, the longest completion latency it saw
# (--write_lat_log with --log_max_value=1 --log_avg_msec=10, Unix-epoch timestamps).
#
#   scripts/bench-handover.sh [--upgrades N] [--kills N] [--master-kills N] [--interval S] [--bdev file|null]
#                             [--out DIR]
#
# Per event it prints the daemon's own figure (upgrade: pause_us of the RPC result = old slave stopped fetching ->
# new slave fetches; kill: the master's "resumed ... us after slave died" = death noticed -> the standby's queues back
# on its data path, resumed_ns of its session_adopted) and
# the longest fio completion latency that ended in a window around the event ([start - 10 ms, end + 100 ms],
# start/end: the RPC call / the kill and the master's resumed line), then p50 / p99 / max over the events of
# each kind. --master-kills N (default 0) adds N master kills (SIGKILL of the master alone; a new master is started
# at once and re-adopts the serving slave, issue #4 "master restart"; the daemon figure is kill -> "re-adopted" in
# the new master's log, so it includes the new JVM's start). Upgrades, kills and master kills alternate, --interval seconds apart (default 3; each waits until the standby is
# ready first, so a JVM start is never inside a measurement); fio runs from 10 s before the first event (warm-up)
# to 2 s after the last. Baseline: the same figure over every 10 ms window with no event in the second before it.
# A second figure per event, "during": the longest latency from 10 ms before the pause (upgrade) or the kill to
# 20 ms after its end (upgrade: the new slave fetches; kill: the bench saw the master's resumed line), and beside it
# the same figure at times with no event within a second (a start every 37 ms, the kind's median span): what the
# machine's own noise gives over a window that long.
#
# Output: DIR/summary.md (also printed), DIR/events.tsv, DIR/daemon.log, DIR/fio/. Default DIR:
# run/bench-handover/<time>. Needs root (the chroot) and a JDK 25; dist/target/vhostd.jar is built when missing.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "$REPO/tests/chroot/lib.sh"

UPGRADES=10 KILLS=10 MASTER_KILLS=0 INTERVAL=3 BDEV=file OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --upgrades) UPGRADES=$2; shift 2 ;;
    --kills) KILLS=$2; shift 2 ;;
    --master-kills) MASTER_KILLS=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --bdev) BDEV=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-handover: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { echo "bench-handover: $*" >&2; }
ensure_jar || exit 1
chroot_ensure || exit 1

OUT=${OUT:-$REPO/run/bench-handover/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# fio runs in the chroot, which sees the host's /tmp: the socket and fio's logs live there (short paths)
WORK=$(mktemp -d /tmp/vhostd-ho.XXXXXX)
SIZE_BYTES=1073741824
IMG=/dev/shm/vhostd-ho-$$.img
cleanup() {
    vm_cleanup
    rm -f "$IMG"
    cp -r "$WORK"/. "$OUT"/ 2>/dev/null
    rm -rf "$WORK"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case $BDEV in
file)
    fallocate -l "$SIZE_BYTES" "$IMG" || exit 1
    write_vhostd_yaml "$WORK/vhostd.yaml" "$WORK" "type: file, path: $IMG, size_bytes: $SIZE_BYTES, direct: true" 2
    ;;
null) write_vhostd_yaml "$WORK/vhostd.yaml" "$WORK" "type: \"null\", size_bytes: $SIZE_BYTES" 2 ;;
*) say "--bdev file or null"; exit 2 ;;
esac
LOG=$WORK/daemon.log
START=$(date '+%F %T') UPTIME0=$(uptime)
start_vhostd_master "$WORK/vhostd.yaml" "$WORK/vhost.0.sock" "$LOG" || exit 1
MASTER_PID=$VHOSTD_PID

# fio runs until the events are done (plus 2 s), then gets SIGINT (it ends the job and writes its output); the
# runtime is only a bound
RUNTIME=3600
say "$UPTIME0"
say "vhostd pid $MASTER_PID, $BDEV bdev; fio 4k randrw QD32; $UPGRADES upgrades, $KILLS kills, ${INTERVAL}s apart"
# the named jobs of lib.sh have no latency log: this one is spelled out here
FIO_CMD=(fio --name=handover --ioengine=libblkio --libblkio_driver=virtio-blk-vhost-user
    --libblkio_path="$WORK/vhost.0.sock" --direct=1 --numjobs=1 --rw=randrw --bs=4k --iodepth=32
    --time_based=1 --runtime="$RUNTIME" --size=1g --write_lat_log="$WORK/fio/handover" --log_avg_msec=10
    --log_max_value=1 --log_unix_epoch=1 --output-format=json --output="$WORK/fio/handover.json")
mkdir -p "$WORK/fio"
"$CHROOT_DIR/enter.sh" "${FIO_CMD[@]}" >"$WORK/fio/handover.out" 2>&1 </dev/null &
FIO_PID=$!
VM_PIDS+=("$FIO_PID")

echo "$MASTER_PID" >"$WORK/master.pid"
python3 - "$WORK" "$UPGRADES" "$KILLS" "$INTERVAL" "$FIO_PID" "$MASTER_KILLS" "$REPO" <<'PY'
import json, os, re, signal, socket, subprocess, sys, time

work, upgrades, kills, interval, fio_pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
master_kills, repo = int(sys.argv[6]), sys.argv[7]
log = os.path.join(work, "daemon.log")
master_pid = int(open(os.path.join(work, "master.pid")).read())
masters = []  # the masters this script started (children: reaped here)

def rpc(method, params=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(120)
    s.connect(os.path.join(work, "rpc.sock"))
    s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    answer = json.loads(buf)
    if "error" in answer:
        raise RuntimeError(method + ": " + json.dumps(answer["error"]))
    return answer["result"]

def count(pattern):
    with open(log, errors="replace") as f:
        return len(re.findall(pattern, f.read()))

def wait_count(pattern, n, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if count(pattern) >= n:
            return True
        time.sleep(0.02)
    return False

def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

def gone(pid):
    # exited: no /proc entry, or a zombie its parent has not reaped yet
    try:
        st = open("/proc/%d/stat" % pid).read()
    except OSError:
        return True
    return st[st.rfind(")") + 2] in "ZX"

# epoch - CLOCK_MONOTONIC, to place the daemon's monotonic timestamps on fio's epoch timeline
mono_to_epoch_ns = time.time_ns() - time.monotonic_ns()
STANDBY = r"standby slave \S+ \(pid \d+\) ready"
RESUMED = r"resumed (\d+) session\(s\) (\d+) us after"
NOTICED = r"died \(noticed at (\d+) ns monotonic"
standbys = 1
wait_count(STANDBY, standbys)
time.sleep(10)  # fio's warm-up (JIT, page faults)
events = []
# alternate: u k m u k m ...
order = []
while upgrades or kills or master_kills:
    if upgrades:
        order.append("upgrade"); upgrades -= 1
    if kills:
        order.append("kill"); kills -= 1
    if master_kills:
        order.append("master-kill"); master_kills -= 1
for i, kind in enumerate(order, 1):
    if not alive(fio_pid):
        print("fio ended early", file=sys.stderr)
        break
    # a standby must be ready: its JVM start is not part of what is measured
    wait_count(STANDBY, standbys)
    time.sleep(interval)
    if kind == "upgrade":
        t0 = time.time_ns()
        result = rpc("slave_upgrade")
        t1 = time.time_ns()
        daemon_us = result["controllers"][0]["pause_us"]
        with open(log, errors="replace") as f:
            stopped = [int(x) for x in re.findall(r"stopped fetching at (\d+) ns monotonic", f.read())]
        start = stopped[-1] + mono_to_epoch_ns if stopped else t0
        end = start + daemon_us * 1000
        events.append((i, kind, daemon_us, start, end, t0, t1))
    elif kind == "master-kill":
        before = count(r"re-adopted: it serves")
        t0 = time.time_ns()
        os.kill(master_pid, signal.SIGKILL)
        for m in masters:
            if m.pid == master_pid:
                m.wait()
        while not gone(master_pid):
            time.sleep(0.001)
        p = subprocess.Popen([os.path.join(repo, "bin/vhostd"), "master", "--config", os.path.join(work, "vhostd.yaml")],
                             stdout=open(log, "a"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        masters.append(p)
        master_pid = p.pid
        open(os.path.join(work, "master.pid"), "w").write(str(master_pid))
        if not wait_count(r"re-adopted: it serves", before + 1, 60):
            print("no re-adoption after master kill %d" % i, file=sys.stderr)
            break
        t1 = time.time_ns()
        daemon_us = (t1 - t0) // 1000
        events.append((i, kind, daemon_us, t0, t1, t0, t1))
    else:
        serving = rpc("vhost_get_controllers")[0]["slave_pid"]
        before = count(RESUMED)
        t0 = time.time_ns()
        m0 = time.monotonic_ns()
        os.kill(serving, signal.SIGKILL)
        if not wait_count(RESUMED, before + 1, 60):
            print("no handover after kill %d" % i, file=sys.stderr)
            break
        t1 = time.time_ns()
        with open(log, errors="replace") as f:
            text = f.read()
        daemon_us = int(re.findall(RESUMED, text)[-1][1])
        # SIGKILL -> the master noticed the death (its TASKSTATS exit record, or the process gone)
        noticed = re.findall(NOTICED, text)
        if noticed:
            notice_us = (int(noticed[-1]) - m0) // 1000
            print("kill %d: death noticed %d us after the SIGKILL" % (i, notice_us), file=sys.stderr)
            with open(os.path.join(work, "notice.tsv"), "a") as f:
                f.write("%d\t%d\n" % (i, notice_us))
        events.append((i, kind, daemon_us, t0, t0 + daemon_us * 1000, t0, t1))
    standbys += 1
    print("%s %d: daemon %d us" % (kind, i, daemon_us), file=sys.stderr)
time.sleep(2)
if alive(fio_pid):
    os.kill(fio_pid, signal.SIGINT)
with open(os.path.join(work, "events.tsv"), "w") as f:
    f.write("# n\tkind\tdaemon_us\tstart_epoch_ns\tend_epoch_ns\tcall_ns\treturn_ns\n")
    for e in events:
        f.write("\t".join(str(x) for x in e) + "\n")
PY
PYRC=$?
MASTER_PID=$(cat "$WORK/master.pid")
wait "$FIO_PID"
FIO_RC=$?
UPTIME1=$(uptime)
stop_tree "$MASTER_PID" TERM 20 || say "vhostd needed SIGKILL to stop"

{
    echo "# bench-handover: guest-visible stall per slave handover (fio libblkio 4k randrw QD32)"
    echo
    echo "- started $START; $BDEV bdev (1 GiB$([ "$BDEV" = file ] && echo ', /dev/shm, O_DIRECT')), 2 queues, fio 1 job"
    echo "- machine: $(nproc) CPUs, $(uname -r); load at start: ${UPTIME0#*load average: }, at end: ${UPTIME1#*load average: }"
    echo "- vhostd $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null)$(git -C "$REPO" diff --quiet 2>/dev/null || echo '+dirty'); fio exit status $FIO_RC (ended by SIGINT after the last event)"
    echo
    python3 - "$WORK" <<'PY'
import glob, json, sys

work = sys.argv[1]
events = []
for line in open(work + "/events.tsv"):
    if line.startswith("#") or not line.strip():
        continue
    n, kind, daemon_us, start, end, call, ret = line.split("\t")
    events.append((int(n), kind, int(daemon_us), int(start), int(end), int(call), int(ret)))
# --log_max_value with --log_avg_msec: per 10 ms window the longest latency (ns) of the I/Os completed in it
windows = []  # (epoch ms, max lat ns)
for path in glob.glob(work + "/fio/handover_lat.*.log"):
    for line in open(path):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2:
            windows.append((int(parts[0]), int(parts[1])))
windows.sort()

def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]

import bisect
times = [t for t, lat in windows]

def longest(lo, hi):
    """The longest latency (ms) of the 10 ms windows whose time is in [lo, hi] (epoch ms)."""
    i, j = bisect.bisect_left(times, lo), bisect.bisect_right(times, hi)
    return max([lat for t, lat in windows[i:j]] or [0]) / 1e6

rows = []
event_ms = []
for n, kind, daemon_us, start, end, call, ret in events:
    lo = min(start, call) // 1_000_000 - 10
    hi = max(end, ret) // 1_000_000 + 100
    event_ms.append((lo - 1000, hi))
    # during: from 10 ms before the pause (upgrade) / the kill to 20 ms after its end (upgrade: the new slave fetches;
    # kill: the bench saw the resumed line), the I/Os the pause held up; the whole window adds the upgrade's prepare
    # phase (RPC call -> pause) and 100 ms after the RPC's answer
    end_ms = (end if kind == "upgrade" else max(end, ret)) // 1_000_000
    rows.append((n, kind, daemon_us, longest(lo, hi), longest(start // 1_000_000 - 10, end_ms + 20),
                 end_ms - start // 1_000_000))
print("| # | event | daemon (us) | longest fio completion latency: whole window / during (ms) |")
print("|---:|---|---:|---:|")
for n, kind, daemon_us, worst_ms, during_ms, span in rows:
    print("| %d | %s | %d | %.2f / %.2f |" % (n, kind, daemon_us, worst_ms, during_ms))
print()
print("| event | count | daemon p50 / p99 / max (ms) | fio longest latency, whole window: p50 / p99 / max (ms) "
      "| during: p50 / p99 / max (ms) | no event, same span as during: p50 / p90 / p99 (ms) |")
print("|---|---:|---|---|---|---|")
for kind in ("upgrade", "kill", "master-kill"):
    d = [r[2] / 1000.0 for r in rows if r[1] == kind]
    f = [r[3] for r in rows if r[1] == kind]
    g = [r[4] for r in rows if r[1] == kind]
    if d:
        # the same figure at times with no event within a second of the window: a start every 37 ms, the kind's
        # median span
        span = pct([r[5] for r in rows if r[1] == kind], 50)
        starts = range(times[0] + 2000, times[-1] - 2000 - span, 37) if times else []
        b = [longest(t - 10, t + span + 20) for t in starts
             if not any(t - 10 <= hi + 1000 and lo <= t + span + 20 for lo, hi in event_ms)]
        print("| %s | %d | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f (%d, %d ms) |" % (
            kind, len(d), pct(d, 50), pct(d, 99), max(d), pct(f, 50), pct(f, 99), max(f), pct(g, 50), pct(g, 99),
            max(g), pct(b, 50), pct(b, 90), pct(b, 99), len(b), span + 30))
quiet = [lat / 1e6 for t, lat in windows if not any(lo <= t <= hi for lo, hi in event_ms)]
if quiet:
    print("| (no event) | %d windows | | %.2f / %.2f / %.2f | | |" % (len(quiet), pct(quiet, 50), pct(quiet, 99), max(quiet)))
try:
    notice = sorted(int(l.split()[1]) / 1000.0 for l in open(work + "/notice.tsv"))
    print()
    print("Slave kill: SIGKILL -> the master noticed the death (ms): p50 %.2f / p99 %.2f / max %.2f (%d kills)" % (
        pct(notice, 50), pct(notice, 99), max(notice), len(notice)))
except OSError:
    pass
try:
    # fio prints "terminating on signal 2" (the SIGINT that ends it) before the JSON
    t = open(work + "/fio/handover.json").read()
    j = json.loads(t[t.find("{"):])["jobs"][0]
    print()
    print("fio: %.0f read + %.0f write IOPS over the whole run, err=%d" % (j["read"]["iops"], j["write"]["iops"], j["error"]))
    open(work + "/fio/err", "w").write(str(j["error"]))
except Exception as e:
    print("fio JSON unreadable: %s" % e)
PY
} >"$WORK/summary.md"
cat "$WORK/summary.md"
say "results in $OUT"
# fio exits non-zero after the SIGINT that ends it: its own error count decides
[ $PYRC = 0 ] && [ "$(cat "$WORK/fio/err" 2>/dev/null)" = 0 ]
