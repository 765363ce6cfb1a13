#!/usr/bin/env bash
# scripts/demo.sh - the README's first command: a QEMU guest doing verified I/O on vhostd.
#
#   scripts/demo.sh [--backend vhostd|qsd] [--verify-size 128M] [--runtime 10]
#
# 1. builds the jar if it is missing or older than the sources (./mvnw -B -q package -DskipTests)
#    and the test guest (tests/vm/build-guest.sh, cached);
# 2. writes ./run/demo/vhostd.yaml (file bdev ./run/demo/disk0.img, 1 GiB; one vhost-user-blk
#    controller with 2 queues) and starts bin/vhostd master on it;
# 3. boots a guest (2 vCPUs, vhost-user-blk-pci num-queues=2) that runs fio: 4k random writes at
#    iodepth 32 with crc32c checksums, read back and verified, then 10 s of 4k random reads;
# 4. prints fio's summary and PASS or FAIL, stops the master (SIGTERM).
# --backend qsd runs the same guest against qemu-storage-daemon on the same image (for comparison).
# Logs: ./run/demo/master.log, ./run/demo/guest.log.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "$REPO/tests/vm/lib.sh"

BACKEND=vhostd VERIFY_SIZE=128M RUNTIME=10
while [ $# -gt 0 ]; do
    case "$1" in
    --backend) BACKEND=$2; shift 2 ;;
    --verify-size) VERIFY_SIZE=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$BACKEND" in vhostd | qsd) ;; *) echo "demo.sh: --backend vhostd|qsd" >&2; exit 2 ;; esac

say() { echo "demo: $*"; }
trap vm_cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v qemu-system-x86_64 >/dev/null; then
    echo "demo: qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86 qemu-utils)" >&2
    exit 1
fi

# ---------------------------------------------------------------- build
[ "$BACKEND" = qsd ] || ensure_jar
"$REPO/tests/vm/build-guest.sh"

# ---------------------------------------------------------------- back-end
DEMO=$REPO/run/demo
mkdir -p "$DEMO"
IMG=$DEMO/disk0.img
[ -f "$IMG" ] || truncate -s 1G "$IMG"
SOCKDIR=$DEMO
# a unix socket path has at most 107 bytes
if [ ${#SOCKDIR} -gt 80 ]; then
    SOCKDIR=$(mktemp -d /tmp/vhostd-demo.XXXXXX)
    trap 'vm_cleanup; rm -rf "$SOCKDIR"' EXIT
fi
SOCK=$SOCKDIR/vhost.0.sock
T0=$SECONDS
if [ "$BACKEND" = vhostd ]; then
    write_vhostd_config "$DEMO/vhostd.yaml" "$SOCKDIR" "$IMG" 1073741824 2
    say "starting bin/vhostd master --config $DEMO/vhostd.yaml"
    : >"$DEMO/master.log"
    start_vhostd "$DEMO/vhostd.yaml" "$SOCK" "$DEMO/master.log" || { say "FAIL: vhostd did not become ready (log: $DEMO/master.log)"; exit 1; }
    BPID=$VHOSTD_PID
else
    say "starting qemu-storage-daemon on $IMG"
    : >"$DEMO/master.log"
    start_qsd "$SOCK" "driver=file,node-name=n0,filename=$IMG,cache.direct=on,aio=io_uring" 2 "$DEMO/master.log" ||
        { say "FAIL: qemu-storage-daemon did not start"; exit 1; }
    BPID=$QSD_PID
fi
say "$BACKEND (pid $BPID) ready in $((SECONDS - T0)) s, socket $SOCK"

# ---------------------------------------------------------------- guest
F=$REPO/tests/vm/fio
say "booting the guest: fio randwrite 4k iodepth 32 verify=crc32c size=$VERIFY_SIZE, then randread ${RUNTIME}s"
grc=0
"$REPO/tests/vm/run-guest.sh" --quiet --smp 2 --num-queues 2 --timeout 300 --vhost-user-blk "$SOCK" \
    --file "$F/guest-fio.sh" --file "$F/demo.fio" --env "VERIFY_SIZE=$VERIFY_SIZE" --env "RUNTIME=$RUNTIME" \
    --log "$DEMO/guest.log" --out "$DEMO/guest.out" --dmesg "$DEMO/guest.dmesg" \
    -- sh /vm/guest-fio.sh demo.fio || grc=$?

# ---------------------------------------------------------------- stop + verdict
say "stopping $BACKEND (SIGTERM)"
src=0
stop_tree "$BPID" TERM 20 || src=$?
VM_PIDS=()

problems=()
[ "$grc" = 0 ] || problems+=("guest rc=$grc (124 = timeout, 125 = QEMU error: see $DEMO/guest.log)")
grep -q 'err= 0' "$DEMO/guest.out" 2>/dev/null || problems+=("fio reported no 'err= 0'")
if grep -Eq 'err= *[1-9]|^verify:' "$DEMO/guest.out" 2>/dev/null; then problems+=("fio reported errors or bad data"); fi
if grep -q 'I/O error' "$DEMO/guest.dmesg" 2>/dev/null; then problems+=("I/O errors in the guest kernel log"); fi
[ "$src" = 0 ] || problems+=("$BACKEND did not stop within 20 s of SIGTERM (killed)")
grep -a '^qemu-system' "$DEMO/guest.log" 2>/dev/null | head -5 | sed 's/^/demo: QEMU said: /' || true
if [ ${#problems[@]} -eq 0 ]; then
    say "PASS: $VERIFY_SIZE written and verified (crc32c), ${RUNTIME}s of random reads, backend $BACKEND, $(tail -1 "$DEMO/guest.log" | sed 's/^run-guest: //')"
    exit 0
fi
for p in "${problems[@]}"; do say "  $p"; done
say "FAIL (logs: $DEMO/master.log $DEMO/guest.log)"
exit 1
