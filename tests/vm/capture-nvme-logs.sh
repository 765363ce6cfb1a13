#!/bin/bash
# capture-nvme-logs.sh - capture a REAL NVMe SMART / Health Information log page (Get Log Page,
# LID 02h) and Identify Controller data (CNS 01h) from QEMU's emulated NVMe controller
# (-device nvme), with nvme-cli run inside the test guest. Used to make the decoder fixtures of
# master/src/test/resources/nvme/ (see docs/observability.md).
#
#   tests/vm/capture-nvme-logs.sh [OUTDIR]      (default: master/src/test/resources/nvme)
#
# Env: NVME_EXTRA_PROPS     more -device nvme properties, e.g. smart_critical_warning=5 (QEMU sets
#                           the SMART log's Critical Warning byte from it)
#      NVME_CAPTURE_PREFIX  file name prefix (default: qemu)
#      NVME_CAPTURE_JAVA    1 (default when a JDK 25 and virtnvme-shm/target/classes are there): also read both
#                           pages in the same boot through vhostd's own binding (io.vhostd.shm.linux.NvmeIoctl,
#                           run by tests/vm/NvmeIoctlDump.java on a jlink'ed java.base runtime) and fail unless
#                           they equal nvme-cli's bytes; 0 skips this check
# The checked-in fixtures are the output of
#   tests/vm/capture-nvme-logs.sh
#   NVME_EXTRA_PROPS=smart_critical_warning=5 NVME_CAPTURE_PREFIX=qemu-warn tests/vm/capture-nvme-logs.sh
#
# Writes into OUTDIR (qemu = the prefix):
#   qemu-smart-log.bin       512 bytes, `nvme smart-log /dev/nvme0 -b`
#   qemu-smart-log.txt       `nvme smart-log /dev/nvme0` (nvme-cli's text layout)
#   qemu-smart-log.json      `nvme smart-log /dev/nvme0 -o json`
#   qemu-id-ctrl.bin         4096 bytes, `nvme id-ctrl /dev/nvme0 -b`
#   qemu-id-ctrl.txt         `nvme id-ctrl /dev/nvme0`
#   qemu-capture-info.txt         QEMU / nvme-cli versions, the QEMU device line, the guest's I/O
#
# Before the dumps the guest writes 8 MiB and reads 4 MiB with O_DIRECT (fio, psync, 128 KiB),
# so the data-unit and command counters are not zero. The default guest (build-guest.sh) is not
# changed: nvme-cli (Debian package nvme-cli, installed on the host when missing and we are root)
# and the libraries it links that the guest lacks go in through run-guest.sh's appended cpio
# (--file ...:lib/...), found with LD_LIBRARY_PATH=/vm/lib. The raw pages cross the serial
# console as hex (`od -An -v -tx1`) between markers and are turned back into bytes here.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${1:-$REPO/master/src/test/resources/nvme}
P=${NVME_CAPTURE_PREFIX:-qemu}
log() { echo "capture-nvme-logs: $*" >&2; }
die() {
    echo "capture-nvme-logs: ERROR: $*" >&2
    exit 1
}

if ! command -v nvme >/dev/null; then
    [ "$(id -u)" = 0 ] || die "nvme-cli is not installed (apt-get install nvme-cli)"
    log "apt-get install nvme-cli"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nvme-cli >/dev/null
fi
NVME=$(command -v nvme)
"$HERE/build-guest.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nvme-capture.XXXXXX")
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"' EXIT
truncate -s 64M "$WORK/nvme.img"

# run-guest.sh copies with cp -r, which keeps symlinks: pass the resolved files
FILES=(--file "$(readlink -f "$NVME"):nvme")
while read -r lib; do
    FILES+=(--file "$(readlink -f "$lib"):lib/$(basename "$lib")")
done < <(ldd "$NVME" | awk '$2=="=>" && $3 ~ /^\// {print $3}')

# vhostd's binding in the guest: a java.base-only runtime (cached), the virtnvme-shm classes, the dumper
JAVA_CHECK=${NVME_CAPTURE_JAVA:-auto}
SHM_CLASSES=$REPO/virtnvme-shm/target/classes
if [ "$JAVA_CHECK" = auto ]; then
    JAVA_CHECK=0
    if JH=$(bash -c "source '$HERE/lib.sh'; vm_java_home") && [ -f "$SHM_CLASSES/io/vhostd/shm/linux/NvmeIoctl.class" ]; then
        JAVA_CHECK=1
    fi
fi
if [ "$JAVA_CHECK" = 1 ]; then
    JH=$(bash -c "source '$HERE/lib.sh'; vm_java_home") || die "no JDK 25 for NVME_CAPTURE_JAVA=1"
    [ -f "$SHM_CLASSES/io/vhostd/shm/linux/NvmeIoctl.class" ] ||
        die "virtnvme-shm is not built (./mvnw -pl virtnvme-shm install -DskipTests)"
    CACHE=$(bash -c "source '$HERE/lib.sh'; vm_cache_dir")
    JRE="$CACHE/jre-java.base"
    if [ ! -x "$JRE/bin/java" ] || [ "$JH/release" -nt "$JRE/release" ]; then
        log "jlink java.base -> $JRE"
        rm -rf "$JRE"
        "$JH/bin/jlink" --add-modules java.base --strip-debug --no-header-files --no-man-pages \
            --compress=zip-6 --output "$JRE"
    fi
    mkdir -p "$WORK/dump"
    "$JH/bin/javac" -cp "$SHM_CLASSES" -d "$WORK/dump" "$HERE/NvmeIoctlDump.java"
    FILES+=(--file "$JRE:jre" --file "$SHM_CLASSES:shm" --file "$WORK/dump:dump")
    while read -r lib; do
        FILES+=(--file "$(readlink -f "$lib"):lib/$(basename "$lib")")
    done < <(ldd "$JRE/bin/java" "$JRE/lib/server/libjvm.so" | awk '$2=="=>" && $3 ~ /^\// && $3 !~ /jre/ {print $3}' | sort -u)
fi

cat >"$WORK/guest.sh" <<'EOF'
export LD_LIBRARY_PATH=/vm/lib
i=0
while [ ! -c /dev/nvme0 ] || [ ! -b /dev/nvme0n1 ]; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "no /dev/nvme0n1"; exit 1; }
    sleep 0.1
done
fio --name=w --filename=/dev/nvme0n1 --rw=write --bs=128k --size=8M --direct=1 --ioengine=psync \
    --output-format=terse >/dev/null || exit 1
fio --name=r --filename=/dev/nvme0n1 --rw=read --bs=128k --size=4M --direct=1 --ioengine=psync \
    --output-format=terse >/dev/null || exit 1
/vm/nvme version || exit 1
echo "@@SMART-BIN-BEGIN@@"; /vm/nvme smart-log /dev/nvme0 -b | od -An -v -tx1; echo "@@SMART-BIN-END@@"
echo "@@SMART-TXT-BEGIN@@"; /vm/nvme smart-log /dev/nvme0; echo "@@SMART-TXT-END@@"
echo "@@SMART-JSON-BEGIN@@"; /vm/nvme smart-log /dev/nvme0 -o json; echo "@@SMART-JSON-END@@"
echo "@@IDCTRL-BIN-BEGIN@@"; /vm/nvme id-ctrl /dev/nvme0 -b | od -An -v -tx1; echo "@@IDCTRL-BIN-END@@"
echo "@@IDCTRL-TXT-BEGIN@@"; /vm/nvme id-ctrl /dev/nvme0; echo "@@IDCTRL-TXT-END@@"
echo "@@SMART-BIN2-BEGIN@@"; /vm/nvme smart-log /dev/nvme0 -b | od -An -v -tx1; echo "@@SMART-BIN2-END@@"
if [ -x /vm/jre/bin/java ]; then
    /vm/jre/bin/java --enable-native-access=ALL-UNNAMED -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -cp /vm/shm:/vm/dump NvmeIoctlDump /dev/nvme0 || exit 1
fi
EOF

DEVICE="nvme,serial=VHOSTD0001,drive=nvm0${NVME_EXTRA_PROPS:+,$NVME_EXTRA_PROPS}"
log "booting the guest with -device $DEVICE"
"$HERE/run-guest.sh" --quiet --timeout 240 --mem 2G --out "$WORK/out.txt" \
    --qemu-arg -drive --qemu-arg "file=$WORK/nvme.img,format=raw,if=none,id=nvm0" \
    --qemu-arg -device --qemu-arg "$DEVICE" \
    "${FILES[@]}" --file "$WORK/guest.sh:guest.sh" -- sh /vm/guest.sh >/dev/null ||
    die "guest failed (rc=$?); output: $(cat "$WORK/out.txt" 2>/dev/null)"

section() { # NAME: the lines between @@NAME-BEGIN@@ and @@NAME-END@@
    awk -v b="@@$1-BEGIN@@" -v e="@@$1-END@@" '$0 == e {on=0} on {print} $0 == b {on=1}' "$WORK/out.txt"
}
unhex() { # NAME FILE SIZE
    section "$1" | xxd -r -p >"$2"
    [ "$(stat -c %s "$2")" = "$3" ] || die "$1: $(stat -c %s "$2") bytes, expected $3"
}
mkdir -p "$OUT"
unhex SMART-BIN "$OUT/$P-smart-log.bin" 512
unhex SMART-BIN2 "$WORK/smart2.bin" 512
unhex IDCTRL-BIN "$OUT/$P-id-ctrl.bin" 4096
# the text was printed between the two binary dumps: both must agree, or the text is not the
# same page
cmp -s "$OUT/$P-smart-log.bin" "$WORK/smart2.bin" || die "the SMART log changed between the dumps"
JAVA_RESULT="not run (NVME_CAPTURE_JAVA=0)"
if [ "$JAVA_CHECK" = 1 ]; then
    unhex VHOSTD-SMART-BIN "$WORK/vhostd-smart.bin" 512
    unhex VHOSTD-IDCTRL-BIN "$WORK/vhostd-idctrl.bin" 4096
    cmp "$WORK/vhostd-smart.bin" "$OUT/$P-smart-log.bin" || die "NvmeIoctl's SMART log differs from nvme-cli's"
    cmp "$WORK/vhostd-idctrl.bin" "$OUT/$P-id-ctrl.bin" || die "NvmeIoctl's Identify Controller differs from nvme-cli's"
    JAVA_RESULT="io.vhostd.shm.linux.NvmeIoctl read both pages in the same boot: byte-identical to nvme-cli's"
    log "$JAVA_RESULT"
fi
section SMART-TXT >"$OUT/$P-smart-log.txt"
section SMART-JSON >"$OUT/$P-smart-log.json"
section IDCTRL-TXT >"$OUT/$P-id-ctrl.txt"
{
    echo "captured: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "qemu: $(qemu-system-x86_64 --version | head -1)"
    echo "nvme-cli (host package): $(dpkg-query -W -f='${Version}' nvme-cli 2>/dev/null || echo '?')"
    echo "nvme-cli (guest): $(grep -m1 '^nvme version' "$WORK/out.txt" || true)"
    echo "device: -drive file=nvme.img(64 MiB raw),format=raw,if=none,id=nvm0 -device $DEVICE"
    echo "guest kernel: $(cat "$(bash -c "source '$HERE/lib.sh'; vm_cache_dir")/build.stamp" | sed -n 's/^kpkg=//p')"
    echo "guest I/O before the dumps: fio psync O_DIRECT 128 KiB: write 8 MiB, then read 4 MiB (offset 0)"
    echo "vhostd binding check: $JAVA_RESULT"
} >"$OUT/$P-capture-info.txt"
log "wrote $OUT/$P-{smart-log.bin,smart-log.txt,smart-log.json,id-ctrl.bin,id-ctrl.txt,capture-info.txt}"
