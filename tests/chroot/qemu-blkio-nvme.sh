#!/usr/bin/env bash
# tests/chroot/qemu-blkio-nvme.sh - QEMU 11 (from the tool chroot) as a vhost-user-blk client through its
# libblkio block driver: a TCG guest whose emulated NVMe controller (-device nvme) is backed by
# -blockdev driver=virtio-blk-vhost-user, so every guest NVMe read/write goes nvme -> blkio -> vhost-user ->
# the back-end (vhostd or qemu-storage-daemon). The host's QEMU 7.2 has no such block driver.
#
#   tests/chroot/qemu-blkio-nvme.sh [--server vhostd|qsd | --socket PATH] [--linux] [--guest-script FILE]
#                                   [--no-memfd] [--timeout S] [--out DIR]
#
#   --server vhostd  (default) bin/vhostd master, file bdev on a 64 MiB image on /dev/shm
#   --server qsd     the chroot's qemu-storage-daemon on the same kind of image
#   --socket PATH    a back-end that is already running (PATH under /tmp); nothing is started, no image is
#                    made: preparing and checking the image is the caller's (Qemu11NvmeIT does)
#   (default guest)  SeaBIOS boots a 512-byte boot sector from the NVMe namespace; the sector prints
#                    VHOSTD-NVME-BOOTSECTOR-OK on the serial port (about 2 s under TCG)
#   --linux          Debian's cloud kernel (NVMe built in) + busybox. The init waits for /dev/nvme0n1, prints
#                    the controller (model=, serial=, sectors=, lbs=), runs the guest script with busybox sh,
#                    prints the guest kernel's nvme/error lines and '@@GUEST-END rc=N@@', and powers off.
#                    The default guest script checks the boot-sector marker at LBA 0 of /dev/nvme0n1, writes
#                    8 MiB of random data at 1 MiB with O_DIRECT, reads it back and compares; the script then
#                    compares the guest's md5 with the image's (not with --socket). The kernel and
#                    busybox-static are fetched once with apt-get download into the chroot's /opt/guest (~50 MB)
#   --guest-script FILE   (implies --linux) run FILE in the guest instead (copied into the initramfs as
#                    /vm/test.sh); the exit status of this script is FILE's
#   --no-memfd       anonymous guest RAM instead of memory-backend-memfd,share=on (QEMU's blkio driver then
#                    bounces through its own shared buffers)
#   --timeout S      seconds to wait for the guest (default 60, with --linux 240)
#   --out DIR        results: qemu.cmd, qemu.log (QEMU's stderr), serial.log, seabios.log, server.log
#                    (default /tmp/vhostd-nvme/<time>; must be under /tmp)
# Exit status 0 when the boot sector's marker appears, or with --linux when the guest script exited 0 (and,
# for the default script, the md5s match); 1 otherwise; 2 on bad arguments or when the server did not start.
# Needs root (the chroot) and, for vhostd, a JDK 25.
set -uo pipefail
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

SERVER=vhostd SOCK="" MEMFD=1 LINUX=0 GUEST_SCRIPT="" TIMEOUT="" OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --server) SERVER=$2; shift 2 ;;
    --socket) SOCK=$2; SERVER=external; shift 2 ;;
    --linux) LINUX=1; shift ;;
    --guest-script) GUEST_SCRIPT=$2; LINUX=1; shift 2 ;;
    --no-memfd) MEMFD=0; shift ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "qemu-blkio-nvme.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { echo "qemu-blkio-nvme: $*" >&2; }
if [ -n "$GUEST_SCRIPT" ] && [ ! -f "$GUEST_SCRIPT" ]; then say "--guest-script $GUEST_SCRIPT: no such file"; exit 2; fi
chroot_ensure || exit 2
ROOT=${VHOSTD_CHROOT:-/var/cache/vhostd-chroot/sid}
OUT=${OUT:-/tmp/vhostd-nvme/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
case $OUT in /tmp/*) ;; *) say "--out must be under /tmp (the chroot sees only the host's /tmp)"; exit 2 ;; esac
IMG=""
cleanup() {
    vm_cleanup
    [ -n "$IMG" ] && rm -f "$IMG"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$SERVER" != external ]; then
    # 16-bit boot sector: DS=0; SI=msg; out each byte to COM1 (0x3f8); cli; hlt.
    python3 - "$OUT/bootsector.bin" <<'PY'
import sys
msg = b"\r\nVHOSTD-NVME-BOOTSECTOR-OK read via nvme -> blkio -> vhost-user\r\n\0"
code = bytes([0x31, 0xC0, 0x8E, 0xD8, 0xBE, 0x16, 0x7C, 0xBA, 0xF8, 0x03,
              0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8, 0xFA, 0xF4, 0xEB, 0xFC])
sec = bytearray(512)
sec[:22] = code
sec[22:22 + len(msg)] = msg
sec[510:] = b"\x55\xAA"
open(sys.argv[1], "wb").write(sec)
PY
    IMG=/dev/shm/vhostd-nvme-$$.img
    fallocate -l 64M "$IMG"
    dd if="$OUT/bootsector.bin" of="$IMG" conv=notrunc status=none
fi

case $SERVER in
vhostd)
    ensure_jar || exit 2
    SOCK=$OUT/vhost.0.sock
    write_vhostd_yaml "$OUT/vhostd.yaml" "$OUT" "type: file, path: $IMG, size_bytes: 67108864" 1
    start_vhostd_master "$OUT/vhostd.yaml" "$SOCK" "$OUT/server.log" || exit 2
    ;;
qsd)
    SOCK=$OUT/qsd.sock
    start_chroot_qsd "$SOCK" "driver=file,node-name=n0,filename=$IMG,cache.direct=on,aio=io_uring" 1 \
        "$OUT/server.log" || exit 2
    ;;
external)
    case $SOCK in /tmp/*) ;; *) say "--socket must be under /tmp (the chroot sees only the host's /tmp)"; exit 2 ;; esac
    [ -S "$SOCK" ] || { say "--socket $SOCK is not a unix socket"; exit 2; }
    ;;
*) say "--server vhostd|qsd, or --socket PATH"; exit 2 ;;
esac

# guest_ensure: Debian's cloud kernel and busybox-static, unpacked once into the chroot's /opt/guest
# (G/vmlinuz, G/root/usr/bin/busybox). Concurrent runs serialise on G.lock.
G=$ROOT/opt/guest # the host's view of the chroot's /opt/guest
guest_ensure() {
    mkdir -p "$G"
    (
        flock 8
        [ -f "$G/vmlinuz" ] && [ -x "$G/root/usr/bin/busybox" ] && exit 0
        say "fetching Debian's cloud kernel and busybox-static into $G (once)"
        "$CHROOT_DIR/enter.sh" /bin/sh -ec '
            mkdir -p /opt/guest/debs && cd /opt/guest/debs
            rm -f ./*.deb ../vmlinuz
            k=$(apt-cache depends linux-image-cloud-amd64 | sed -n "s/.*Depends: \(linux-image-.*-cloud-amd64\)$/\1/p" | head -1)
            b=$(apt-cache depends "$k" | sed -n "s/.*Depends: \(linux-binary-.*\)$/\1/p" | head -1)
            apt-get download -q -o APT::Sandbox::User=root "${b:-$k}" busybox-static >/dev/null
            rm -rf ../root && mkdir ../root
            for d in *.deb; do dpkg-deb -x "$d" ../root; done
            rm -f ./*.deb
            apt-get clean
            cp ../root/usr/lib/modules/*/vmlinuz ../vmlinuz.partial 2>/dev/null || cp ../root/boot/vmlinuz-* ../vmlinuz.partial
            mv ../vmlinuz.partial ../vmlinuz'
    ) 8>"$G.lock"
}

# make_initrd DIR: DIR/initrd.cpio.gz = busybox + the init below + /vm/test.sh (GUEST_SCRIPT or the default)
make_initrd() {
    local d=$1/initrd
    rm -rf "$d" && mkdir -p "$d/bin" "$d/proc" "$d/sys" "$d/dev" "$d/tmp" "$d/vm"
    cp "$G/root/usr/bin/busybox" "$d/bin/busybox"
    cat >"$d/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "@@GUEST-UP@@ $(uname -r)"
i=0
while [ ! -b /dev/nvme0n1 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done # the NVMe probe is asynchronous
ls -l /dev/nvme*
echo "model=$(cat /sys/class/nvme/nvme0/model) serial=$(cat /sys/class/nvme/nvme0/serial) sectors=$(cat /sys/block/nvme0n1/size) lbs=$(cat /sys/block/nvme0n1/queue/logical_block_size)"
dmesg -n 1 # later kernel messages would land in the middle of the script's output lines on the console
rc=0
sh /vm/test.sh || rc=$?
dmesg | grep -i -E 'nvme|error' | sed 's/^/dmesg: /'
echo "@@GUEST-END rc=$rc@@"
poweroff -f
INIT
    chmod +x "$d/init"
    if [ -n "$GUEST_SCRIPT" ]; then
        cp "$GUEST_SCRIPT" "$d/vm/test.sh"
    else
        cat >"$d/vm/test.sh" <<'TEST'
dd if=/dev/nvme0n1 bs=512 count=1 2>/dev/null | grep -a -o VHOSTD-NVME-BOOTSECTOR-OK | sed 's/^/LBA0: /'
dd if=/dev/urandom of=/tmp/pat bs=1M count=8 2>/dev/null
dd if=/tmp/pat of=/dev/nvme0n1 bs=1M seek=1 oflag=direct conv=fsync 2>&1 | tail -1
echo 3 > /proc/sys/vm/drop_caches
dd if=/dev/nvme0n1 of=/tmp/back bs=1M skip=1 count=8 iflag=direct 2>&1 | tail -1
cmp /tmp/pat /tmp/back && echo "@@NVME-RW-OK@@ md5=$(md5sum < /tmp/pat | cut -d' ' -f1)"
TEST
    fi
    "$CHROOT_DIR/enter.sh" /bin/sh -ec 'cd "$1" && find . | /opt/guest/root/usr/bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 >../initrd.cpio.gz' \
        sh "$d"
}

if [ "$MEMFD" = 1 ]; then
    MEM=(-M q35,memory-backend=mem0 -object memory-backend-memfd,id=mem0,size=512M,share=on)
else
    MEM=(-M q35)
fi
BOOT=() MARK=VHOSTD-NVME-BOOTSECTOR-OK WAIT=${TIMEOUT:-60} BOOTIDX=,bootindex=0
if [ "$LINUX" = 1 ]; then
    guest_ensure || exit 2
    make_initrd "$OUT" || exit 2
    BOOT=(-kernel /opt/guest/vmlinuz -initrd "$OUT/initrd.cpio.gz" -append "console=ttyS0 panic=-1 rdinit=/init")
    # -kernel's option ROM takes bootindex 0
    MARK="@@GUEST-END rc=" WAIT=${TIMEOUT:-240} BOOTIDX=""
fi
CMD=(qemu-system-x86_64 -accel tcg -cpu max -m 512M "${MEM[@]}" "${BOOT[@]}"
    -nodefaults -no-user-config -display none -no-reboot
    -serial "file:$OUT/serial.log"
    -chardev "file,id=dbg,path=$OUT/seabios.log" -device isa-debugcon,iobase=0x402,chardev=dbg
    -blockdev "driver=virtio-blk-vhost-user,node-name=vub0,path=$SOCK,cache.direct=on"
    -device "nvme,serial=vhostd0,drive=vub0$BOOTIDX")
echo "# ${CMD[*]}" >"$OUT/qemu.cmd"
"$CHROOT_DIR/enter.sh" "${CMD[@]}" >"$OUT/qemu.log" 2>&1 </dev/null &
QEMU_PID=$!
VM_PIDS=("$QEMU_PID" "${VM_PIDS[@]}") # stopped first
T0=$SECONDS
rc=1
while [ $((SECONDS - T0)) -lt "$WAIT" ]; do
    if grep -q "$MARK" "$OUT/serial.log" 2>/dev/null; then rc=0; break; fi
    kill -0 "$QEMU_PID" 2>/dev/null || break
    sleep 0.5
done
if [ "$LINUX" = 1 ] && [ $rc = 0 ]; then
    # the guest powers off right after the marker: wait for QEMU to exit, so that it has closed the back-end
    for _ in $(seq 100); do kill -0 "$QEMU_PID" 2>/dev/null || break; sleep 0.1; done
    grep -a -q '@@GUEST-END rc=0@@' "$OUT/serial.log" || rc=1
fi
echo "--- qemu stderr:"
cat "$OUT/qemu.log"
if [ "$LINUX" = 0 ]; then
    echo "--- SeaBIOS (NVMe / boot lines):"
    grep -a -E 'NVMe|nvme|Booting|boot' "$OUT/seabios.log" | head -20
fi
echo "--- guest serial:"
if [ "$LINUX" = 1 ] && [ -z "$GUEST_SCRIPT" ]; then
    tr -d '\r' <"$OUT/serial.log" | grep -a -E '@@|nvme|LBA0|model=|records|copied'
    gmd5=$(tr -d '\r' <"$OUT/serial.log" | sed -n 's/.*@@NVME-RW-OK@@ md5=\([0-9a-f]*\).*/\1/p')
    [ -n "$gmd5" ] || rc=1
    if [ "$rc" = 0 ] && [ -n "$IMG" ]; then
        hmd5=$(dd if="$IMG" bs=1M skip=1 count=8 status=none | md5sum | cut -d' ' -f1)
        echo "guest md5=$gmd5 image md5=$hmd5"
        [ "$gmd5" = "$hmd5" ] || rc=1
    fi
elif [ "$LINUX" = 1 ]; then
    tr -d '\r' <"$OUT/serial.log" | sed -n '/@@GUEST-UP@@/,$p'
else
    tr -d '\r' <"$OUT/serial.log"
fi
if [ $rc != 0 ] && [ -f "$OUT/server.log" ]; then
    echo "--- $SERVER log (last 30 lines):"
    tail -30 "$OUT/server.log"
fi
echo "qemu-blkio-nvme ($SERVER, after $((SECONDS - T0)) s): $([ $rc = 0 ] && echo PASS || echo FAIL)"
exit $rc
