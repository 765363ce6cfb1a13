#!/usr/bin/env bash
# tests/chroot/qemu11-vhost-user-blk.sh - the project's test guest (tests/vm: PVH kernel + busybox/fio
# initramfs from tests/vm/build-guest.sh) booted by QEMU 11 from the tool chroot, with QEMU's OWN vhost-user
# front-end: -chardev socket,path=SOCK -device vhost-user-blk-pci,chardev=... (guest RAM in
# memory-backend-memfd,share=on, as run-guest.sh always sets it up). The host's QEMU 7.2 is what
# tests/vm/run-guest.sh runs by default; this runs the very same run-guest.sh with the chroot's QEMU instead.
#
#   tests/chroot/qemu11-vhost-user-blk.sh --out DIR [--no-trace] -- RUN-GUEST-OPTIONS... [--] GUEST-COMMAND
#
#   --out DIR      under /tmp (the chroot sees only the host's /tmp): the guest kernel (vmlinuz), the QEMU
#                  wrapper (qemu), run-guest.sh's temporary files, and vhost-user-trace.log
#   --no-trace     no QEMU tracing; by default QEMU runs with -trace 'vhost_user_*' -D DIR/vhost-user-trace.log,
#                  so every vhost-user message QEMU writes or reads is in that file (vhost_user_write:
#                  request id and flags), and QEMU's stderr keeps only real errors
#   everything after the first --: tests/vm/run-guest.sh options (--vhost-user-blk SOCK, --num-queues, --packed,
#                  --log, --out, --file, --env, ... and the guest command); SOCK must be under /tmp.
#                  --accel tcg and --kernel bzimage are added: the chroot's QEMU reads the kernel from DIR
#                  (the cached initramfs is read on the host side by run-guest.sh)
# Exit status: run-guest.sh's (the guest program's; 124 timeout, 125 QEMU or harness error); 2 on bad arguments
# or when the chroot or the guest cache is missing. Needs root (the chroot).
set -uo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
source "$CHROOT_DIR/../vm/lib.sh"

OUT="" TRACE=1
while [ $# -gt 0 ]; do
    case $1 in
    --out) OUT=$2; shift 2 ;;
    --no-trace) TRACE=0; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "qemu11-vhost-user-blk.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { echo "qemu11-vhost-user-blk: $*" >&2; }
[ -n "$OUT" ] || { say "--out DIR is required"; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
case $OUT in /tmp/*) ;; *) say "--out must be under /tmp (the chroot sees only the host's /tmp)"; exit 2 ;; esac
chroot_ensure || exit 2
CACHE=$(vm_cache_dir)
for f in vmlinuz initramfs.cpio probe.cpio; do
    [ -s "$CACHE/$f" ] || { say "$CACHE/$f missing: run tests/vm/build-guest.sh first"; exit 2; }
done

# The guest cache as run-guest.sh expects it: the kernel is opened by QEMU inside the chroot, so it must be
# under /tmp (hard link when /tmp is on the same file system, else a copy); the initramfs and the probe are
# read by run-guest.sh on the host.
VMC=$OUT/vmcache
mkdir -p "$VMC"
ln -f "$CACHE/vmlinuz" "$VMC/vmlinuz" 2>/dev/null || cp "$CACHE/vmlinuz" "$VMC/vmlinuz"
ln -sfn "$CACHE/initramfs.cpio" "$VMC/initramfs.cpio"
ln -sfn "$CACHE/probe.cpio" "$VMC/probe.cpio"

# Every exec: enter.sh, unshare, bash, chroot and env all exec(), so run-guest.sh's QEMU pid is QEMU's own.
TRACE_ARGS=""
[ "$TRACE" = 1 ] && TRACE_ARGS="-trace 'vhost_user_*' -D '$OUT/vhost-user-trace.log'"
cat >"$OUT/qemu" <<WRAP
#!/bin/sh
exec '$CHROOT_DIR/enter.sh' qemu-system-x86_64 $TRACE_ARGS "\$@"
WRAP
chmod +x "$OUT/qemu"

VHOSTD_VMCACHE=$VMC VHOSTD_VM_QEMU=$OUT/qemu TMPDIR=$OUT \
    "$CHROOT_DIR/../vm/run-guest.sh" --accel tcg --kernel bzimage "$@"
