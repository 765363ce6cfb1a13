# shellcheck shell=bash
# lib.sh - helpers for the vhostd guest harness (source it; bash only).
#
# Every process started through these helpers is remembered by PID and stopped by PID
# in vm_cleanup (no pkill by name: other work may run the same programs on this host).
#
#   vm_cache_dir                         prints the guest cache dir (kernel + initramfs)
#   make_img PATH SIZE_MIB               fully written raw image (no sparse extents)
#   wait_unix_socket PATH PID SECS       waits until PATH accepts a connection (PID must stay alive)
#   start_qsd SOCK BLOCKDEV NQ LOG       qemu-storage-daemon vhost-user-blk export  -> QSD_PID
#   write_vhostd_config FILE DIR IMG SIZE_BYTES NQ   one file bdev + one vhost-user-blk controller
#   start_vhostd CONFIG SOCK LOG         bin/vhostd master --config CONFIG, waits for SOCK -> VHOSTD_PID
#   stop_tree PID [SIGNAL] [SECS]        signal PID, wait for it and every descendant it had
#   tree_cpu_seconds PID                 CPU time (user+sys, incl. reaped children) of PID and its descendants
#   vm_java_home                         prints a JDK 25+ home (JAVA_HOME, temurin-25, /usr/lib/jvm/*25*)
#   ensure_jar                           builds dist/target/vhostd.jar if missing or older than the sources
#   vm_cleanup                           stop everything started above (use: trap vm_cleanup EXIT)

VM_DIR=${VM_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
VM_REPO=${VM_REPO:-$(cd "$VM_DIR/../.." && pwd)}
VM_PIDS=()

vm_cache_dir() {
    if [ -n "${VHOSTD_VMCACHE:-}" ]; then
        echo "$VHOSTD_VMCACHE"
    elif [ "$(id -u)" = 0 ] || [ -w /var/cache/vhostd-vm ]; then
        echo /var/cache/vhostd-vm
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/vhostd-vm"
    fi
}

# make_img PATH SIZE_MIB: written with zeroes so both back-ends of a benchmark see allocated blocks
make_img() {
    [ -f "$1" ] && [ "$(stat -c %s "$1")" = $(($2 * 1048576)) ] && return 0
    mkdir -p "$(dirname "$1")"
    dd if=/dev/zero of="$1" bs=1M count="$2" status=none conv=fsync
}

# wait_unix_socket PATH PID SECS: ready = the socket file exists and a connect() succeeds.
# Fails at once if PID dies (its log tells why) and after SECS at the latest.
wait_unix_socket() {
    local path=$1 pid=$2 secs=${3:-60}
    local deadline=$((SECONDS + secs))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$pid" 2>/dev/null || { echo "wait_unix_socket: process $pid exited before $path was ready" >&2; return 1; }
        if [ -S "$path" ] && python3 -c 'import socket,sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(2); s.connect(sys.argv[1]); s.close()' "$path" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "wait_unix_socket: $path not ready after ${secs}s" >&2
    return 1
}

# start_qsd SOCK BLOCKDEV_OPTS [NUM_QUEUES] [LOGFILE] -> QSD_PID.  BLOCKDEV_OPTS defines node-name=n0, e.g.
#   'driver=file,node-name=n0,filename=/path/disk.img,cache.direct=on,aio=io_uring'
start_qsd() {
    local sock=$1 bdev=$2 nq=${3:-2} log=${4:-/dev/null}
    rm -f "$sock"
    qemu-storage-daemon --blockdev "$bdev" \
        --export "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path=$sock,writable=on,num-queues=$nq" \
        >>"$log" 2>&1 </dev/null &
    QSD_PID=$!
    VM_PIDS+=("$QSD_PID")
    wait_unix_socket "$sock" "$QSD_PID" 30 || { tail -20 "$log" >&2; return 1; }
}

# write_vhostd_config FILE RUN_DIR IMG SIZE_BYTES NUM_QUEUES: the daemon's YAML with one
# file bdev (disk0) and one vhost-user-blk controller (vhost.0, socket RUN_DIR/vhost.0.sock).
write_vhostd_config() {
    local cfg=$1 dir=$2 img=$3 size=$4 nq=${5:-2}
    mkdir -p "$dir"
    cat >"$cfg" <<EOF
run_dir: $dir/run
rpc_socket: $dir/rpc.sock
bdevs:
  - {name: disk0, type: file, path: $img, size_bytes: $size}
controllers:
  - {name: vhost.0, type: vhost-user-blk, bdev: disk0, socket: $dir/vhost.0.sock, num_queues: $nq}
EOF
}

# start_vhostd CONFIG SOCK [LOGFILE] -> VHOSTD_PID (bin/vhostd execs java, so this is the master's pid)
start_vhostd() {
    local cfg=$1 sock=$2 log=${3:-/dev/null}
    "$VM_REPO/bin/vhostd" master --config "$cfg" >>"$log" 2>&1 </dev/null &
    VHOSTD_PID=$!
    VM_PIDS+=("$VHOSTD_PID")
    wait_unix_socket "$sock" "$VHOSTD_PID" "${VHOSTD_START_SECS:-60}" || { tail -30 "$log" >&2; return 1; }
}

# descendants PID: every live descendant pid (from /proc/<pid>/task/*/children)
descendants() {
    local c
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        echo "$c"
        descendants "$c"
    done
}

# stop_tree PID [SIGNAL] [SECS]: send SIGNAL (TERM) to PID only, wait up to SECS (15) for PID and
# every descendant it had at that moment to exit, then SIGKILL what is left. Returns 1 if
# something had to be killed (a clean shutdown would have stopped it).
stop_tree() {
    local pid=$1 sig=${2:-TERM} secs=${3:-15} p left rc=0
    local tree=("$pid" $(descendants "$pid"))
    kill -s "$sig" "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + secs))
    while :; do
        left=()
        for p in "${tree[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
        [ ${#left[@]} -eq 0 ] && break
        if [ $SECONDS -ge $deadline ]; then
            echo "stop_tree: still running ${secs}s after SIG$sig to $pid: ${left[*]} -> SIGKILL" >&2
            for p in "${left[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
            rc=1
            break
        fi
        sleep 0.1
    done
    wait "$pid" 2>/dev/null || true
    return $rc
}

# tree_cpu_seconds PID: utime+stime+cutime+cstime of PID and of every live descendant (/proc/<pid>/stat
# fields 14-17; the part after the last ')' starts at field 3)
tree_cpu_seconds() {
    local hz p
    hz=$(getconf CLK_TCK)
    for p in "$1" $(descendants "$1"); do
        cat /proc/"$p"/stat 2>/dev/null | sed 's/.*) //'
        echo
    done | awk -v hz="$hz" 'NF >= 15 {t += $12 + $13 + $14 + $15} END {printf "%.2f", t / hz}'
}

vm_java_home() {
    local d
    for d in "${JAVA_HOME:-}" /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*25*; do
        if [ -n "$d" ] && [ -x "$d/bin/java" ] && grep -qs '^JAVA_VERSION="\(2[5-9]\|[3-9][0-9]\)' "$d/release"; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

# ensure_jar: (re)build dist/target/vhostd.jar when it is missing or older than a pom or a source file
# (nothing to do when VHOSTD_JAR is set)
ensure_jar() {
    [ -n "${VHOSTD_JAR:-}" ] && return 0
    local jar=$VM_REPO/dist/target/vhostd.jar
    if [ -f "$jar" ] && [ -z "$(find "$VM_REPO/pom.xml" "$VM_REPO"/*/pom.xml "$VM_REPO"/*/src -newer "$jar" -type f 2>/dev/null | head -1)" ]; then
        return 0
    fi
    local jh
    jh=$(vm_java_home) || { echo "ensure_jar: no JDK 25 found (set JAVA_HOME)" >&2; return 1; }
    echo "building $jar (./mvnw -B -q package -DskipTests, JAVA_HOME=$jh)" >&2
    (cd "$VM_REPO" && JAVA_HOME=$jh ./mvnw -B -q package -DskipTests)
}

vm_cleanup() {
    local p
    for p in "${VM_PIDS[@]}"; do
        if kill -0 "$p" 2>/dev/null; then stop_tree "$p" TERM 15 || true; fi
    done
    VM_PIDS=()
    return 0
}
