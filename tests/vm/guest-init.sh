#!/bin/sh
# /init of the test guest (packed by build-guest.sh; busybox sh as PID 1).
# Runs /vm/run.sh (put there by run-guest.sh in a cpio appended to the initramfs), prints
# its output between markers on the console (ttyS0), then the kernel log between markers,
# and powers off. Kernel command line:
#   vhostd_vm.timeout=SECS    guest-side watchdog: power off after SECS
#   vhostd_vm.wait=DEV[,DEV]  wait up to 10 s for these block devices before running
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
KVER=$(cat /etc/kernel-version)
while read -r m; do
    insmod "/lib/modules/$KVER/$m.ko" 2>/dev/null || echo "vm-init: insmod $m failed" >&2
done </etc/modules.order

TIMEOUT=0
WAIT=
for a in $(cat /proc/cmdline); do
    case "$a" in
    vhostd_vm.timeout=*) TIMEOUT=${a#*=} ;;
    vhostd_vm.wait=*) WAIT=$(echo "${a#*=}" | tr , ' ') ;;
    esac
done
if [ "$TIMEOUT" -gt 0 ] 2>/dev/null; then
    (
        sleep "$TIMEOUT"
        echo
        echo "===== VHOSTD-VM GUEST TIMEOUT after ${TIMEOUT}s ====="
        dmesg | tail -40
        poweroff -f
    ) &
fi
for d in $WAIT; do
    i=0
    while [ ! -b "$d" ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ -b "$d" ] || echo "vm-init: WARNING: $d did not appear" >&2
done
UP=$(cut -d' ' -f1 /proc/uptime)
echo "===== VHOSTD-VM OUTPUT BEGIN (guest uptime ${UP}s) ====="
if [ -f /vm/run.sh ]; then
    cd /vm && sh /vm/run.sh 2>&1
    rc=$?
else
    echo "vm-init: no /vm/run.sh"
    rc=127
fi
echo "===== VHOSTD-VM OUTPUT END rc=$rc ====="
echo "===== VHOSTD-VM DMESG BEGIN ====="
dmesg
echo "===== VHOSTD-VM DMESG END ====="
sync
poweroff -f
