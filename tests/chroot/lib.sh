# shellcheck shell=bash
# tests/chroot/lib.sh - helpers for fio (libblkio engine) and qemu-storage-daemon from the tool chroot
# (source it; bash only). Sources tests/vm/lib.sh for the process helpers (start by PID, stop by PID).
#
#   chroot_ensure                          builds the chroot if needed (tests/chroot/setup.sh), quietly
#   fio_job_args NAME                      prints fio options of a named job (one per line), see FIO_JOBS
#   run_fio SOCK JOB OUTDIR [EXTRA...]     fio JOB in the chroot against vhost-user-blk SOCK;
#                                          OUTDIR/JOB.{json,cmd,rc}; returns fio's exit code
#   start_fio SOCK JOB OUTDIR [EXTRA...]   the same in the background -> FIO_PID (wait for it yourself)
#   start_chroot_qsd SOCK BLOCKDEV NQ LOG  the chroot's qemu-storage-daemon (QEMU 11) -> QSD_PID
#   write_vhostd_yaml FILE DIR BDEV_YAML NQ   vhostd config: bdev disk0 = BDEV_YAML, controller vhost.0
#   start_vhostd_master CONFIG SOCK LOG    bin/vhostd master; waits for "vhostd master ready" and SOCK
#                                          -> VHOSTD_PID (the master JVM; the slave JVM is its child)
#   pattern_write IMG JOB                  writes the region of pattern job JOB (ph64k) into IMG, on the host
#   pattern_check IMG JOB                  checks the region of pattern job JOB (pf64k) in IMG, on the host
#
# Env: FIO_RUNTIME (10 s), FIO_RAMP (2 s), FIO_VERIFY_SIZE (256M), VHOSTD_CHROOT (see setup.sh).
# Sockets must live under /tmp (the chroot sees the host's /tmp) and images under /dev/shm or /tmp.

CHROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../vm/lib.sh
source "$CHROOT_DIR/../vm/lib.sh"

FIO_RUNTIME=${FIO_RUNTIME:-10}
FIO_RAMP=${FIO_RAMP:-2}
FIO_VERIFY_SIZE=${FIO_VERIFY_SIZE:-256M}

# Named jobs. Performance jobs are time based (FIO_RAMP + FIO_RUNTIME seconds); verify jobs write
# FIO_VERIFY_SIZE and (except vw64k) read it back, checking a crc32c in every block (verify_fatal).
#   rr4k1   4k randread QD1        rr4k32  4k randread QD32
#   rw4k32  4k randwrite QD32      sr128k8 128k sequential read QD8
#   vw4k32  randwrite 4k QD32, then read back and verify
#   vwmix   randwrite 4k-128k QD16 (one size per I/O), then read back and verify
#   vwmixv  as vwmix with libblkio_vectored (iovec requests)
#   vw64k   sequential write 64k QD8, no read back (for vo64k)
#   vo64k   verify_only of what vw64k wrote: a second fio process, a new vhost-user connection
# Pattern jobs: data checked on both sides of the back-end. A pattern region holds, in every 64 KiB block at
# byte offset O of the image, the 16-byte unit TAG + O (little-endian u64) 4096 times: what fio's
# verify=pattern with verify_pattern="TAG"%o writes and expects (no header; %o is the block's file offset).
#   ph64k   the HOST wrote the region (pattern_write, before the back-end started); fio reads and checks it
#   pf64k   fio writes the region and reads it back; the host checks it (pattern_check, back-end stopped)
# Both sides must agree on the regions (dist/src/test/java/io/vhostd/dist/LibblkioVerifyIT.java mirrors them):
#   ph64k   offset 512 MiB, 64 MiB, TAG vhostd-H        pf64k   offset 640 MiB, 64 MiB, TAG vhostd-F
FIO_PERF_JOBS="rr4k1 rr4k32 rw4k32 sr128k8"
FIO_VERIFY_JOBS="vw4k32 vwmix vwmixv vw64k vo64k"
FIO_PATTERN_JOBS="ph64k pf64k"

# pattern_region JOB -> "OFFSET_MIB SIZE_MIB TAG" of a pattern job
pattern_region() {
    case $1 in
    ph64k) echo "512 64 vhostd-H" ;;
    pf64k) echo "640 64 vhostd-F" ;;
    *) echo "pattern_region: '$1' is not a pattern job" >&2; return 1 ;;
    esac
}

fio_job_args() {
    local timed="--time_based=1 --runtime=$FIO_RUNTIME --ramp_time=$FIO_RAMP"
    # verify_state_save=0: fio would leave a <job>-verify.state file in its working directory (the chroot's /)
    local verify="--time_based=0 --size=$FIO_VERIFY_SIZE --verify=crc32c --verify_fatal=1 --verify_state_save=0"
    local off size tag pattern
    case $1 in ph64k | pf64k)
        read -r off size tag < <(pattern_region "$1")
        # fio takes the quotes literally and parses them: "TAG" is a string, %o the block offset
        pattern="--time_based=0 --offset=${off}M --size=${size}M --verify=pattern --verify_pattern=\"$tag\"%o --verify_fatal=1 --verify_state_save=0"
        ;;
    esac
    case $1 in
    rr4k1) echo "--rw=randread --bs=4k --iodepth=1 $timed" ;;
    rr4k32) echo "--rw=randread --bs=4k --iodepth=32 $timed" ;;
    rw4k32) echo "--rw=randwrite --bs=4k --iodepth=32 $timed" ;;
    sr128k8) echo "--rw=read --bs=128k --iodepth=8 $timed" ;;
    vw4k32) echo "--rw=randwrite --bs=4k --iodepth=32 $verify --do_verify=1" ;;
    vwmix) echo "--rw=randwrite --bsrange=4k-128k --iodepth=16 $verify --do_verify=1" ;;
    vwmixv) echo "--rw=randwrite --bsrange=4k-128k --iodepth=16 $verify --do_verify=1 --libblkio_vectored=1" ;;
    vw64k) echo "--rw=write --bs=64k --iodepth=8 $verify --do_verify=0" ;;
    vo64k) echo "--rw=write --bs=64k --iodepth=8 $verify --verify_only=1" ;;
    ph64k) echo "--rw=read --bs=64k --iodepth=8 $pattern" ;; # a read-only job verifies every block it reads
    pf64k) echo "--rw=write --bs=64k --iodepth=8 $pattern --do_verify=1" ;;
    *) echo "fio_job_args: unknown job '$1'" >&2; return 1 ;;
    esac | tr ' ' '\n'
}

# _pattern IMG JOB write|check: the pattern region of JOB (see pattern_region) in IMG, through the host's file
_pattern() {
    local off size tag
    read -r off size tag < <(pattern_region "$2") || return 1
    python3 - "$1" "$off" "$size" "$tag" "$3" <<'PY'
import struct, sys
path, off_mib, size_mib, tag, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode(), sys.argv[5]
block, start = 65536, off_mib << 20
with open(path, "r+b" if mode == "write" else "rb") as f:
    f.seek(start)
    for o in range(start, start + (size_mib << 20), block):
        want = (tag + struct.pack("<Q", o)) * (block // 16)
        if mode == "write":
            f.write(want)
            continue
        got = f.read(block)
        if got != want:
            bad = next(i for i in range(len(want)) if i >= len(got) or got[i] != want[i])
            sys.exit(f"pattern_check: {path} byte {o + bad} (block at {o}) is {got[bad:bad + 16]!r}, wanted {want[bad:bad + 16]!r}")
    if mode == "write":
        f.flush()
PY
}
pattern_write() { _pattern "$1" "$2" write; }
pattern_check() { _pattern "$1" "$2" check; }

chroot_ensure() {
    "$CHROOT_DIR/setup.sh" --check >/dev/null 2>&1 && return 0
    echo "building the tool chroot (tests/chroot/setup.sh; a few minutes, once)" >&2
    "$CHROOT_DIR/setup.sh"
}

# _fio_cmd SOCK JOB OUTDIR [EXTRA...] -> FIO_CMD array
_fio_cmd() {
    local sock=$1 job=$2 out=$3 name=$2
    shift 3
    local spec
    spec=$(fio_job_args "$job") || return 1
    # vo64k reads what vw64k wrote: fio derives the verify pattern from the job name, so it must match.
    [ "$job" = vo64k ] && name=vw64k
    # No mem=/iomem=: fio then lets libblkio allocate the I/O buffers, in memory that libblkio
    # shares with the vhost-user back-end (memfd). fio sets libblkio's num-queues itself (1 per job).
    # shellcheck disable=SC2206 # one option per line
    FIO_CMD=(fio --name="$name" --ioengine=libblkio --libblkio_driver=virtio-blk-vhost-user
        --libblkio_path="$sock" --direct=1 --numjobs=1 --output-format=json --output="$out/$job.json"
        $spec "$@")
}

run_fio() {
    local out=$3 rc=0
    mkdir -p "$out"
    _fio_cmd "$@" || return 2
    echo "# $(cut -d' ' -f1-3 /proc/loadavg) loadavg; ${FIO_CMD[*]}" >"$out/$2.cmd"
    "$CHROOT_DIR/enter.sh" "${FIO_CMD[@]}" >"$out/$2.out" 2>&1 </dev/null || rc=$?
    echo "$rc" >"$out/$2.rc"
    return "$rc"
}

start_fio() {
    local out=$3
    mkdir -p "$out"
    _fio_cmd "$@" || return 2
    echo "# $(cut -d' ' -f1-3 /proc/loadavg) loadavg; ${FIO_CMD[*]}" >"$out/$2.cmd"
    "$CHROOT_DIR/enter.sh" "${FIO_CMD[@]}" >"$out/$2.out" 2>&1 </dev/null &
    FIO_PID=$!
}

# start_chroot_qsd SOCK BLOCKDEV_OPTS [NUM_QUEUES] [LOGFILE] -> QSD_PID (qsd's own PID: enter.sh execs).
# BLOCKDEV_OPTS defines node-name=n0, e.g. 'driver=null-co,node-name=n0,size=1073741824,read-zeroes=on'
# (size in bytes: qsd rejects '1G') or 'driver=file,node-name=n0,filename=IMG,cache.direct=on,aio=io_uring'.
start_chroot_qsd() {
    local sock=$1 bdev=$2 nq=${3:-1} log=${4:-/dev/null}
    rm -f "$sock"
    "$CHROOT_DIR/enter.sh" qemu-storage-daemon --blockdev "$bdev" \
        --export "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path=$sock,writable=on,num-queues=$nq" \
        >>"$log" 2>&1 </dev/null &
    QSD_PID=$!
    VM_PIDS+=("$QSD_PID")
    wait_unix_socket "$sock" "$QSD_PID" 30 || { tail -20 "$log" >&2; return 1; }
}

# write_vhostd_yaml FILE DIR BDEV_YAML [NUM_QUEUES]: BDEV_YAML is the flow mapping of bdev disk0 without
# its name, e.g. 'type: file, path: /dev/shm/x.img, size_bytes: 1073741824, direct: true' or
# 'type: "null", size_bytes: 1073741824' (quoted: a bare null is YAML's null, not a string).
# VHOSTD_SLAVE_JAVA_OPTS (space-separated), if set, becomes slave.java_opts (for A/B runs of slave JVM options).
write_vhostd_yaml() {
    local cfg=$1 dir=$2 bdev=$3 nq=${4:-2}
    mkdir -p "$dir"
    cat >"$cfg" <<EOF
run_dir: $dir/run
rpc_socket: $dir/rpc.sock
bdevs:
  - {name: disk0, $bdev}
controllers:
  - {name: vhost.0, type: vhost-user-blk, bdev: disk0, socket: $dir/vhost.0.sock, num_queues: $nq}
EOF
    if [ -n "${VHOSTD_SLAVE_JAVA_OPTS:-}" ]; then
        local o opts=""
        for o in $VHOSTD_SLAVE_JAVA_OPTS; do opts+="${opts:+, }\"$o\""; done
        echo "slave: {java_opts: [$opts]}" >>"$cfg"
    fi
}

# start_vhostd_master CONFIG SOCK [LOGFILE] -> VHOSTD_PID. Ready = the log says "vhostd master ready" and
# SOCK exists (no test connection: a vhost-user back-end should see only real front-ends).
start_vhostd_master() {
    local cfg=$1 sock=$2 log=${3:-/dev/null} secs=${VHOSTD_START_SECS:-60}
    rm -f "$sock"
    "$VM_REPO/bin/vhostd" master --config "$cfg" >>"$log" 2>&1 </dev/null &
    VHOSTD_PID=$!
    VM_PIDS+=("$VHOSTD_PID")
    local deadline=$((SECONDS + secs))
    while [ $SECONDS -lt $deadline ]; do
        if ! kill -0 "$VHOSTD_PID" 2>/dev/null; then
            echo "start_vhostd_master: vhostd exited before it was ready; log $log:" >&2
            tail -30 "$log" >&2
            return 1
        fi
        if grep -q 'vhostd master ready' "$log" 2>/dev/null && [ -S "$sock" ]; then
            return 0
        fi
        sleep 0.2
    done
    echo "start_vhostd_master: not ready after ${secs}s; log $log:" >&2
    tail -30 "$log" >&2
    return 1
}
