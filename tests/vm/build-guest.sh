#!/bin/bash
# build-guest.sh - build the test guest (kernel + initramfs with busybox and fio) from Debian
# packages only: linux-image-amd64 (downloaded with apt-get download, never installed),
# busybox-static and fio (installed on the host if missing, then copied into the initramfs).
#
# Output, in the cache dir ($VHOSTD_VMCACHE, default /var/cache/vhostd-vm; ~/.cache/vhostd-vm
# when not root):
#   vmlinux          uncompressed kernel (ELF with a PVH note: QEMU boots it directly, ~2 s faster under TCG)
#   vmlinuz          the same kernel as bzImage (fallback)
#   initramfs.cpio   busybox + fio (+ every library it links) + virtio/nvme modules + /init (guest-init.sh)
#   probe.cpio       tiny busybox-only initramfs: run-guest.sh boots it once to find out whether KVM works
#   build.stamp      inputs of the last build; unchanged inputs -> the script exits at once
#
# Idempotent: about 1 s when up to date, 15-30 s for a full build.
# Env: VHOSTD_VMCACHE      cache dir
#      VHOSTD_VM_KPKG      kernel package (default: the one linux-image-amd64 depends on)
#      VHOSTD_VM_FORCE=1   rebuild even if the stamp matches
#      VHOSTD_VM_OFFLINE=1 never call apt-get (fail if something is missing)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
CACHE=$(vm_cache_dir)
log() { echo "build-guest: $*" >&2; }
die() {
    echo "build-guest: ERROR: $*" >&2
    exit 1
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -w 600 9 || die "cannot lock $CACHE/.lock"

# ---------------------------------------------------------------- host packages
apt_updated=0
apt_update_once() {
    [ "$apt_updated" = 1 ] && return 0
    [ "${VHOSTD_VM_OFFLINE:-0}" = 1 ] && die "offline mode and something is missing"
    log "apt-get update"
    apt-get update -q >/dev/null
    apt_updated=1
}
need_pkgs=()
for p in fio busybox-static cpio xz-utils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing host packages: ${need_pkgs[*]} (apt-get install them as root)"
    apt_update_once
    log "apt-get install ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# ---------------------------------------------------------------- kernel package
resolve_kpkg() {
    apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ && !done {print $2; done=1}'
}
KPKG=${VHOSTD_VM_KPKG:-}
if [ -z "$KPKG" ]; then
    KPKG=$(resolve_kpkg || true)
    if [ -z "$KPKG" ] && [ "${VHOSTD_VM_OFFLINE:-0}" != 1 ] && [ "$(id -u)" = 0 ]; then
        apt_update_once
        KPKG=$(resolve_kpkg || true)
    fi
    if [ -z "$KPKG" ] && [ -f "$CACHE/build.stamp" ]; then
        KPKG=$(awk -F= '/^kpkg=/{print $2}' "$CACHE/build.stamp") # offline: keep the last one
    fi
    [ -n "$KPKG" ] || die "cannot resolve the kernel package behind linux-image-amd64 (apt-get update?)"
fi
KVER_PKG=$(apt-cache policy "$KPKG" 2>/dev/null | awk '/Candidate:/{print $2}')
[ -n "$KVER_PKG" ] && [ "$KVER_PKG" != "(none)" ] || KVER_PKG=unknown

STAMP="kpkg=$KPKG
kpkg_version=$KVER_PKG
fio=$(dpkg-query -W -f='${Version}' fio)
busybox=$(dpkg-query -W -f='${Version}' busybox-static)
script=$(cat "$0" "$HERE/guest-init.sh" | sha256sum | cut -c1-16)"

if [ "${VHOSTD_VM_FORCE:-0}" != 1 ] && [ -f "$CACHE/build.stamp" ] && [ "$(cat "$CACHE/build.stamp")" = "$STAMP" ] &&
    [ -s "$CACHE/vmlinuz" ] && [ -s "$CACHE/initramfs.cpio" ] && [ -s "$CACHE/probe.cpio" ]; then
    log "up to date ($CACHE, $KPKG $KVER_PKG)"
    exit 0
fi

log "building into $CACHE (kernel package $KPKG $KVER_PKG)"
T0=$SECONDS
WORK="$CACHE/work"
rm -rf "$WORK"
mkdir -p "$WORK/kpkg" "$CACHE/debs"

deb=$(ls "$CACHE"/debs/"${KPKG}"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ] || { [ "$KVER_PKG" != unknown ] && ! echo "$deb" | grep -qF "_${KVER_PKG//:/%3a}_"; }; then
    [ "${VHOSTD_VM_OFFLINE:-0}" = 1 ] && die "offline mode and no cached $KPKG .deb"
    rm -f "$CACHE"/debs/"${KPKG}"_*.deb
    log "apt-get download $KPKG"
    # apt-get download as root warns that the _apt sandbox user cannot write here: harmless
    (cd "$CACHE/debs" && apt-get download -q "$KPKG" >/dev/null 2>&1) ||
        {
            apt_update_once
            (cd "$CACHE/debs" && apt-get download -q "$KPKG" >/dev/null 2>&1)
        } || die "apt-get download $KPKG failed"
    deb=$(ls "$CACHE"/debs/"${KPKG}"_*.deb | head -1)
fi
log "extracting $(basename "$deb")"
dpkg-deb -x "$deb" "$WORK/kpkg"
VMLINUZ=$(ls "$WORK"/kpkg/boot/vmlinuz-* | head -1)
KVER=${VMLINUZ##*/vmlinuz-}
KCONFIG="$WORK/kpkg/boot/config-$KVER"
MODDIR="$WORK/kpkg/lib/modules/$KVER"
[ -d "$MODDIR" ] || MODDIR="$WORK/kpkg/usr/lib/modules/$KVER"
[ -d "$MODDIR" ] || die "no module dir for $KVER"

# ---------------------------------------------------------------- modules
# Drivers the guest needs: '=m' ones are packed with their dependencies (read from each
# module's .modinfo 'depends=' field, packed in dependency order); '=y' ones need nothing.
uncompress() {
    case "$1" in
    *.ko.xz) xz -dc "$1" ;;
    *.ko.zst) zstd -qdc "$1" ;;
    *.ko.gz) gzip -dc "$1" ;;
    *) cat "$1" ;;
    esac
}
declare -A MODFILE=()
while IFS= read -r f; do
    b=$(basename "$f")
    b=${b%%.ko*}
    MODFILE[${b//-/_}]=$f
done < <(find "$MODDIR" -name '*.ko*')
modinfo_field() { # file field
    uncompress "$1" | tr '\0' '\n' | awk -F= -v k="$2" '$1==k && !done {sub(/^[^=]*=/,""); print; done=1}'
}
declare -A SEEN=()
ORDER=()
add_mod() { # depth-first: dependencies first
    local m=${1//-/_}
    [ -n "${SEEN[$m]:-}" ] && return 0
    SEEN[$m]=1
    local f=${MODFILE[$m]:-}
    [ -n "$f" ] || die "module $m not found in $KPKG"
    local d
    d=$(modinfo_field "$f" depends)
    local IFS=,
    for x in $d; do [ -n "$x" ] && add_mod "$x"; done
    ORDER+=("$m")
}
WANT="VIRTIO_PCI:virtio_pci VIRTIO_BLK:virtio_blk BLK_DEV_NVME:nvme VIRTIO_CONSOLE:virtio_console FW_CFG_SYSFS:qemu_fw_cfg"
for w in $WANT; do
    sym=${w%%:*} mod=${w##*:}
    val=$(awk -F= -v s="CONFIG_$sym" '$1==s{print $2}' "$KCONFIG")
    case "$val" in
    y) log "CONFIG_$sym=y (built in)" ;;
    m) add_mod "$mod" ;;
    *) log "WARNING: CONFIG_$sym not set in $KVER" ;;
    esac
done

# ---------------------------------------------------------------- initramfs tree
R="$WORK/root"
mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,run,mnt,etc,root,vm,usr/bin,usr/sbin,usr/lib,usr/lib64}
# Debian 12 is merged-/usr: keep the /lib paths that ldd prints valid
ln -s usr/lib "$R/lib"
ln -s usr/lib64 "$R/lib64"
mkdir -p "$R/usr/lib/modules/$KVER"
cp /bin/busybox "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do
    [ "$a" = busybox ] || [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"
done
cp /usr/bin/fio "$R/usr/bin/fio"
copy_lib() {
    local src=$1 dst="$R$1"
    case "$src" in /lib/* | /lib64/*) dst="$R/usr$1" ;; esac
    mkdir -p "$(dirname "$dst")"
    [ -e "$dst" ] || cp -L "$src" "$dst"
}
while read -r lib; do copy_lib "$lib"; done < <(ldd /usr/bin/fio | awk '$2=="=>" && $3 ~ /^\//{print $3} $1 ~ /^\/lib64\//{print $1}')
# the tree must run fio and busybox on its own (chroot needs root; skipped otherwise)
if [ "$(id -u)" = 0 ]; then
    chroot "$R" /usr/bin/fio --version >/dev/null || die "fio does not run inside the initramfs tree (missing libs?)"
    chroot "$R" /bin/sh -c 'echo ok' >/dev/null || die "busybox sh does not run inside the initramfs tree"
fi
: >"$R/etc/modules.order"
for m in "${ORDER[@]}"; do
    uncompress "${MODFILE[$m]}" >"$R/usr/lib/modules/$KVER/$m.ko"
    echo "$m" >>"$R/etc/modules.order"
done
echo "$KVER" >"$R/etc/kernel-version"
cp "$HERE/guest-init.sh" "$R/init"
chmod 755 "$R/init"
echo "root:x:0:0:root:/root:/bin/sh" >"$R/etc/passwd"
(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) >"$WORK/initramfs.cpio"

# tiny probe initramfs: prints a marker and powers off
P="$WORK/probe"
mkdir -p "$P"/{bin,proc}
cp /bin/busybox "$P/bin/busybox"
cat >"$P/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "VHOSTD-VM-PROBE-OK uptime=$(/bin/busybox cut -d' ' -f1 /proc/uptime)"
/bin/busybox poweroff -f
EOF
chmod 755 "$P/init"
(cd "$P" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) >"$WORK/probe.cpio"

# Uncompressed ELF vmlinux for PVH direct boot: skips the in-guest xz decompressor and the
# real-mode setup. The xz stream starts at the first xz magic in the bzImage; xz complains
# about the data that follows the stream, the output is complete anyway.
off=$(LC_ALL=C grep -aboP '\xfd7zXZ\x00' "$VMLINUZ" | head -1 | cut -d: -f1 || true)
if [ -n "$off" ]; then
    tail -c +$((off + 1)) "$VMLINUZ" | xz -dc 2>/dev/null >"$WORK/vmlinux" || true
fi
if [ -s "$WORK/vmlinux" ] && [ "$(head -c4 "$WORK/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] &&
    grep -q '^CONFIG_PVH=y' "$KCONFIG"; then
    mv "$WORK/vmlinux" "$CACHE/vmlinux"
else
    log "WARNING: no PVH-bootable vmlinux; run-guest.sh will boot the bzImage (slower)"
    rm -f "$CACHE/vmlinux"
fi

# ---------------------------------------------------------------- publish
cp "$VMLINUZ" "$CACHE/vmlinuz.new" && mv "$CACHE/vmlinuz.new" "$CACHE/vmlinuz"
cp "$KCONFIG" "$CACHE/kernel.config"
mv "$WORK/initramfs.cpio" "$CACHE/initramfs.cpio"
mv "$WORK/probe.cpio" "$CACHE/probe.cpio"
rm -f "$CACHE/accel.cache" # new kernel: probe KVM again
echo "$STAMP" >"$CACHE/build.stamp"
rm -rf "$WORK"
log "done in $((SECONDS - T0)) s: kernel $KVER, modules: ${ORDER[*]}, initramfs $(du -h "$CACHE/initramfs.cpio" | cut -f1)"
