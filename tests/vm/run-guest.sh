#!/bin/bash
# run-guest.sh - boot the test guest (see build-guest.sh) in QEMU with disks attached over
# vhost-user-blk (unix socket) and/or QEMU's built-in virtio-blk, run a shell command or
# script in it, print its output between markers, power off.
#
#   run-guest.sh [options] [--] 'guest shell command ...'
#
# Disks (in the order given -> /dev/vda, /dev/vdb, ...):
#   --vhost-user-blk SOCK   vhost-user-blk-pci on unix socket SOCK (the back-end must be listening)
#   --virtio-blk FILE       QEMU's own virtio-blk-pci on FILE (raw, aio=io_uring, cache=none, iothread);
#                           FILE 'null-co[:BYTES]' = QEMU's null-co driver (reads return zeroes)
# Disk options (all disks):
#   --num-queues N          virtqueues per disk (default: --smp)
#   --queue-size N          virtqueue size (default: QEMU's; 128 for vhost-user-blk in QEMU 7.2)
#   --packed                packed virtqueues (device property packed=on, VIRTIO_F_RING_PACKED); the
#                           back-end must offer the feature or QEMU silently falls back to split rings
#   --reconnect SECS        vhost-user chardev reconnect=SECS (default: none)
# Guest program:
#   [--] CMD                shell command line run by busybox sh in the guest (cwd /vm)
#   --script FILE           run FILE (sh) before CMD
#   --file SRC[:NAME]       copy SRC into the guest as /vm/NAME (repeatable)
#   --env VAR=VALUE         export VAR in the guest (repeatable)
# VM:
#   --smp N (2)  --mem SIZE (1G)  --cpu MODEL  --append 'kernel args'
#   --accel auto|kvm|tcg    default auto (env VHOSTD_VM_ACCEL): boots a probe guest with KVM once and
#                           uses KVM only if it really boots (result cached), else TCG
#   --kernel pvh|bzimage    boot the uncompressed vmlinux via PVH (default) or the bzImage
#   --timeout SECS          wall-clock limit for QEMU (default 300); the guest also powers itself off
#                           SECS-15 s after its init starts (if SECS > 30)
#   --qmp SOCK              QMP server on unix socket SOCK
#   --incoming URI          start as a migration destination
#   --pidfile FILE          QEMU pid file
#   --qemu-arg ARG          extra raw QEMU argument (repeatable)
# Output:
#   --log FILE              console + QEMU stderr (default: a temp file, deleted when rc=0)
#   --out FILE              only the guest program's output (between the markers)
#   --dmesg FILE            the guest kernel log, taken after the program ended
#   --quiet                 do not echo the console; print the guest program's output at the end
#   --dry-run               print the QEMU command line and exit
# Exit status: the guest program's exit status; 124 = timed out (host limit or guest watchdog);
#              125 = harness or QEMU error (no END marker: QEMU failed to start, the back-end
#              refused the connection or broke the vhost-user protocol, ...).
# Env: VHOSTD_VMCACHE (guest cache dir, see lib.sh), VHOSTD_VM_ACCEL, VHOSTD_VM_QEMU, TMPDIR.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
CACHE=$(vm_cache_dir)
QEMU=${VHOSTD_VM_QEMU:-qemu-system-x86_64}
SMP=2 MEM=1G ACCEL=${VHOSTD_VM_ACCEL:-auto} CPU='' APPEND='' KERNEL=pvh
TIMEOUT=300 NUMQ='' QSIZE='' RECONNECT='' PACKED=0
QMP='' INCOMING='' PIDFILE='' LOG='' OUT='' DMESG='' QUIET=0 DRYRUN=0 SCRIPT='' CMD=''
DISKS=() FILES=() EXTRA=() ENVS=()

die() {
    echo "run-guest: ERROR: $*" >&2
    exit 125
}
usage() {
    sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
    --vhost-user-blk) DISKS+=("vub:$2"); shift 2 ;;
    --virtio-blk) DISKS+=("vblk:$2"); shift 2 ;;
    --num-queues) NUMQ=$2; shift 2 ;;
    --queue-size) QSIZE=$2; shift 2 ;;
    --packed) PACKED=1; shift ;;
    --reconnect) RECONNECT=$2; shift 2 ;;
    --script) SCRIPT=$2; shift 2 ;;
    --file) FILES+=("$2"); shift 2 ;;
    --env) ENVS+=("$2"); shift 2 ;;
    --smp) SMP=$2; shift 2 ;;
    --mem) MEM=$2; shift 2 ;;
    --accel) ACCEL=$2; shift 2 ;;
    --cpu) CPU=$2; shift 2 ;;
    --append) APPEND=$2; shift 2 ;;
    --kernel) KERNEL=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --qmp) QMP=$2; shift 2 ;;
    --incoming) INCOMING=$2; shift 2 ;;
    --pidfile) PIDFILE=$2; shift 2 ;;
    --qemu-arg) EXTRA+=("$2"); shift 2 ;;
    --log) LOG=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --dmesg) DMESG=$2; shift 2 ;;
    --quiet) QUIET=1; shift ;;
    --dry-run) DRYRUN=1; shift ;;
    -h | --help) usage 0 ;;
    --) shift; CMD="$*"; break ;;
    -*) echo "run-guest: unknown option $1" >&2; usage 125 >&2 ;;
    *) CMD="$*"; break ;;
    esac
done
[ -n "$CMD$SCRIPT" ] || die "no guest command or --script given"
[ -n "$NUMQ" ] || NUMQ=$SMP
command -v "$QEMU" >/dev/null || die "$QEMU not found (apt-get install qemu-system-x86)"
for f in vmlinuz initramfs.cpio probe.cpio; do
    [ -s "$CACHE/$f" ] || die "$CACHE/$f missing: run tests/vm/build-guest.sh first"
done
KIMG="$CACHE/vmlinuz"
[ "$KERNEL" = pvh ] && [ -s "$CACHE/vmlinux" ] && KIMG="$CACHE/vmlinux"

RUNDIR=$(mktemp -d "${TMPDIR:-/tmp}/vhostd-vm.XXXXXX")
QPID=
cleanup() {
    if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then kill "$QPID" 2>/dev/null; fi
    rm -rf "$RUNDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------ machine / accelerator
# vhost-user needs guest RAM in a shareable fd: memfd + share=on, named by the machine.
MACHINE_ARGS=(-machine q35,memory-backend=mem0 -m "$MEM" -smp "$SMP"
    -object "memory-backend-memfd,id=mem0,size=$MEM,share=on"
    -nodefaults -no-user-config -display none -no-reboot)

probe_kvm() { # prints kvm or tcg; cached per (host kernel, QEMU, guest kernel, cpu model)
    local key res=tcg
    key="$(uname -r)|$("$QEMU" --version | head -1)|$(stat -c %Y "$KIMG")|${CPU:-host}"
    if [ -f "$CACHE/accel.cache" ] && [ "$(head -1 "$CACHE/accel.cache")" = "$key" ]; then
        sed -n 2p "$CACHE/accel.cache"
        return
    fi
    # Only a real boot tells: on some hosts /dev/kvm opens and QEMU starts, but a stock kernel
    # cannot run (e.g. a nested "PVM" KVM without VMX/SVM).
    if [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        if timeout -k 2 30 "$QEMU" -accel kvm -cpu "${CPU:-host}" "${MACHINE_ARGS[@]}" -serial stdio \
            -kernel "$KIMG" -initrd "$CACHE/probe.cpio" -append "console=ttyS0 quiet panic=-1" </dev/null 2>&1 |
            grep -aq VHOSTD-VM-PROBE-OK; then
            res=kvm
        fi
    fi
    printf '%s\n%s\n' "$key" "$res" >"$CACHE/accel.cache.$$" && mv "$CACHE/accel.cache.$$" "$CACHE/accel.cache"
    echo "$res"
}
case "$ACCEL" in
auto) ACCEL=$(probe_kvm) ;;
kvm | tcg) ;;
*) die "--accel must be auto, kvm or tcg" ;;
esac
if [ "$ACCEL" = kvm ]; then
    ACCEL_ARGS=(-accel kvm -cpu "${CPU:-host}")
else
    ACCEL_ARGS=(-accel tcg,thread=multi -cpu "${CPU:-max}")
fi

# ------------------------------------------------------------ disks
DISK_ARGS=() WAIT=() n=0 letters=abcdefghijklmnop
for d in "${DISKS[@]}"; do
    kind=${d%%:*} arg=${d#*:}
    case "$kind" in
    vub)
        copt="socket,id=vubc$n,path=$arg"
        [ -n "$RECONNECT" ] && copt+=",reconnect=$RECONNECT"
        dopt="vhost-user-blk-pci,id=vub$n,chardev=vubc$n,num-queues=$NUMQ"
        [ -n "$QSIZE" ] && dopt+=",queue-size=$QSIZE"
        [ "$PACKED" = 1 ] && dopt+=",packed=on"
        DISK_ARGS+=(-chardev "$copt" -device "$dopt")
        [ "$DRYRUN" = 1 ] || [ -S "$arg" ] || die "vhost-user socket $arg does not exist (start the back-end first)"
        ;;
    vblk)
        case "$arg" in
        null-co | null-co:*)
            sz=${arg#null-co}
            sz=${sz#:}
            DISK_ARGS+=(-blockdev "null-co,node-name=drv$n,size=${sz:-1073741824},read-zeroes=on")
            ;;
        *)
            [ -e "$arg" ] || die "$arg does not exist"
            DISK_ARGS+=(-drive "file=$arg,format=raw,if=none,id=drv$n,aio=io_uring,cache=none")
            ;;
        esac
        dopt="virtio-blk-pci,id=vblk$n,drive=drv$n,num-queues=$NUMQ,iothread=iot$n"
        [ -n "$QSIZE" ] && dopt+=",queue-size=$QSIZE"
        [ "$PACKED" = 1 ] && dopt+=",packed=on"
        DISK_ARGS+=(-object "iothread,id=iot$n" -device "$dopt")
        ;;
    esac
    WAIT+=("/dev/vd${letters:$n:1}")
    n=$((n + 1))
done

# ------------------------------------------------------------ guest program (appended cpio)
# The kernel unpacks concatenated cpio archives in order, so /vm/run.sh and the --file's
# land on top of the cached initramfs without rebuilding it.
mkdir -p "$RUNDIR/x/vm"
{
    echo "#!/bin/sh"
    for e in "${ENVS[@]}"; do printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"; done
    if [ -n "$SCRIPT" ]; then
        [ -f "$SCRIPT" ] || die "script $SCRIPT not found"
        cat "$SCRIPT"
        echo
    fi
    [ -n "$CMD" ] && echo "$CMD"
} >"$RUNDIR/x/vm/run.sh"
for f in "${FILES[@]}"; do
    src=${f%%:*} name=${f#*:}
    [ "$name" = "$f" ] && name=$(basename "$src")
    [ -e "$src" ] || die "--file $src not found"
    mkdir -p "$(dirname "$RUNDIR/x/vm/$name")"
    cp -r "$src" "$RUNDIR/x/vm/$name"
done
(cd "$RUNDIR/x" && find . | cpio -o -H newc --quiet -R 0:0) >"$RUNDIR/extra.cpio"
cat "$CACHE/initramfs.cpio" "$RUNDIR/extra.cpio" >"$RUNDIR/initrd.cpio"

GT=$((TIMEOUT > 30 ? TIMEOUT - 15 : TIMEOUT))
KARGS="console=ttyS0 quiet panic=-1 mitigations=off vhostd_vm.timeout=$GT"
[ ${#WAIT[@]} -gt 0 ] && KARGS+=" vhostd_vm.wait=$(IFS=,; echo "${WAIT[*]}")"
[ -n "$APPEND" ] && KARGS+=" $APPEND"

ARGS=("${ACCEL_ARGS[@]}" "${MACHINE_ARGS[@]}" -serial stdio
    -kernel "$KIMG" -initrd "$RUNDIR/initrd.cpio" -append "$KARGS"
    "${DISK_ARGS[@]}")
[ -n "$QMP" ] && ARGS+=(-qmp "unix:$QMP,server=on,wait=off")
[ -n "$INCOMING" ] && ARGS+=(-incoming "$INCOMING")
[ -n "$PIDFILE" ] && ARGS+=(-pidfile "$PIDFILE")
ARGS+=("${EXTRA[@]}")

if [ "$DRYRUN" = 1 ]; then
    printf '%q ' "$QEMU" "${ARGS[@]}"
    echo
    exit 0
fi

# ------------------------------------------------------------ run
KEEPLOG=1
if [ -z "$LOG" ]; then
    LOG=$(mktemp "${TMPDIR:-/tmp}/vhostd-vm-log.XXXXXX")
    KEEPLOG=0
fi
: >"$LOG"
{
    printf 'run-guest: accel=%s smp=%s mem=%s disks=%s timeout=%ss\nrun-guest: %q' \
        "$ACCEL" "$SMP" "$MEM" "${DISKS[*]:-none}" "$TIMEOUT" "$QEMU"
    printf ' %q' "${ARGS[@]}"
    echo
} >>"$LOG"
T0=$EPOCHREALTIME TB=
FIFO="$RUNDIR/console"
mkfifo "$FIFO"
# stdin from /dev/null: with -serial stdio QEMU would otherwise take over the terminal
timeout -k 5 "$TIMEOUT" "$QEMU" "${ARGS[@]}" </dev/null >"$FIFO" 2>&1 &
QPID=$!
while IFS= read -r line || [ -n "$line" ]; do
    printf '%s\n' "$line" >>"$LOG"
    [ "$QUIET" = 1 ] || printf '%s\n' "$line"
    case "$line" in *"===== VHOSTD-VM OUTPUT BEGIN"*) TB=$EPOCHREALTIME ;; esac
done <"$FIFO"
wait "$QPID"
QRC=$?
QPID=
T1=$EPOCHREALTIME

section() { # BEGIN-regex END-regex: lines strictly between the two markers
    tr -d '\r' <"$LOG" | awk -v b="$1" -v e="$2" '$0 ~ e {on=0} on {print} $0 ~ b {on=1}'
}
OUTTXT=$(section '===== VHOSTD-VM OUTPUT BEGIN' '===== VHOSTD-VM OUTPUT END')
if ! grep -aq '===== VHOSTD-VM OUTPUT BEGIN' "$LOG" && grep -aq '===== VHOSTD-VM OUTPUT END' "$LOG"; then
    # migration destination: the BEGIN marker was printed on the source
    OUTTXT=$(tr -d '\r' <"$LOG" | sed -n '/^run-guest: /d; /===== VHOSTD-VM OUTPUT END/q; p')
fi
rc=$(tr -d '\r' <"$LOG" | sed -n 's/.*===== VHOSTD-VM OUTPUT END rc=\([0-9]*\) =====.*/\1/p' | tail -1)
if [ -z "$rc" ]; then
    if [ "$QRC" = 124 ] || [ "$QRC" = 137 ] || grep -aq 'VHOSTD-VM GUEST TIMEOUT' "$LOG"; then rc=124; else rc=125; fi
fi
[ -n "$OUT" ] && printf '%s\n' "$OUTTXT" >"$OUT"
[ -n "$DMESG" ] && section '===== VHOSTD-VM DMESG BEGIN' '===== VHOSTD-VM DMESG END' >"$DMESG"
[ "$QUIET" = 1 ] && printf '%s\n' "$OUTTXT"
boot=$(tr -d '\r' <"$LOG" | sed -n 's/.*VHOSTD-VM OUTPUT BEGIN (guest uptime \([0-9.]*\)s).*/\1/p' | head -1)
wall=$(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.2f", b-a}')
tb=
[ -n "$TB" ] && tb=$(awk -v a="$T0" -v b="$TB" 'BEGIN{printf "%.2f", b-a}')
summary="run-guest: rc=$rc qemu_rc=$QRC accel=$ACCEL guest_uptime_at_start=${boot:-?}s host_time_to_start=${tb:-?}s wall=${wall}s"
echo "$summary" >>"$LOG"
if [ "$rc" = 125 ] || [ "$rc" = 124 ]; then
    grep -a '^qemu-system' "$LOG" | tail -8 | sed 's/^/run-guest: /' >&2
fi
if [ "$KEEPLOG" = 0 ] && [ "$rc" = 0 ]; then
    rm -f "$LOG"
    echo "$summary" >&2
else
    echo "$summary log=$LOG" >&2
fi
exit "$rc"
