#!/usr/bin/env bash
# tests/chroot/setup.sh - build the vhostd tool chroot: Debian sid (minbase) with
#   - fio built WITH the libblkio engine (/usr/local/bin/fio; sid's packaged fio has no libblkio engine),
#   - QEMU 11.x: qemu-system-x86_64, qemu-storage-daemon, qemu-img, qemu-block-extra (block-blkio.so).
# The host (Debian 12) has neither libblkio nor a QEMU newer than 7.2. See tests/chroot/README.md.
#
#   tests/chroot/setup.sh                  build, or return at once when the stamp file says it is complete
#   tests/chroot/setup.sh --check          exit 0 if the chroot is complete, 1 if not (builds nothing)
#   tests/chroot/setup.sh --rebuild        delete the chroot and build it again
#   tests/chroot/setup.sh --keep-toolchain keep gcc & co. and the fio sources in the chroot (+~200 MB)
#
# Env: VHOSTD_CHROOT  the chroot directory (default /var/cache/vhostd-chroot/sid; a cache: safe to delete)
#      SUITE          Debian suite to bootstrap (default sid; the only one tried)
#      MIRROR         Debian mirror (default: the one this host's apt uses)
# Needs root and network access to the Debian mirror. Installs debootstrap on the host if missing.
# Exit status: 0 ready, 1 failed, 2 usage or no mirror configured, 3 the mirror is unreachable (checked
# before anything is built; tests skip on 3 and fail on anything else).
# Concurrent calls serialise on a lock file next to the chroot. Phase timings go to stderr and to
# $VHOSTD_CHROOT/.vhostd-chroot-build.log.
set -euo pipefail
# set -e exits with the failing command's status: keep 2 and 3 for the meanings above (only set on purpose).
EXIT_MEANT=""
keep_exit_meanings() {
    local rc=$?
    if [ "$rc" -gt 1 ] && [ "$rc" != "$EXIT_MEANT" ]; then exit 1; fi
}
trap keep_exit_meanings EXIT
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${VHOSTD_CHROOT:-/var/cache/vhostd-chroot/sid}
SUITE=${SUITE:-sid}
REBUILD=0 CHECK=0 KEEP_TOOLCHAIN=0
for a in "$@"; do
    case $a in
    --rebuild) REBUILD=1 ;;
    --check) CHECK=1 ;;
    --keep-toolchain) KEEP_TOOLCHAIN=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument $a" >&2; EXIT_MEANT=2; exit 2 ;;
    esac
done

KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# Runtime packages. Debian's fio stays installed: it pulls in the libraries our fio build links to.
PKGS="fio libblkio1 qemu-system-x86 qemu-utils qemu-block-extra"
# Only for building fio; purged afterwards unless --keep-toolchain.
BUILD_PKGS="build-essential pkg-config libblkio-dev libaio-dev zlib1g-dev"
STAMP=$ROOT/.vhostd-chroot-stamp
# Bump the recipe number whenever what this script builds changes: an old chroot is then rebuilt.
STAMP_TEXT="recipe 1 | $SUITE | $PKGS | fio-libblkio"

log() { # to stderr, and to the build log once the chroot directory exists
    local line
    line=$(printf '[setup %(%H:%M:%S)T] %s' -1 "$*")
    echo "$line" >&2
    if [ -d "$ROOT" ]; then echo "$line" >>"$ROOT/.vhostd-chroot-build.log"; fi
}
is_ready() { [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_TEXT" ]; }

if [ $CHECK = 1 ]; then
    if is_ready; then echo "chroot ready at $ROOT"; exit 0; fi
    echo "no complete chroot at $ROOT (run $0)"
    exit 1
fi
[ "$(id -u)" = 0 ] || { echo "setup.sh: needs root (debootstrap, chroot, mount namespaces)" >&2; exit 1; }

mkdir -p "$(dirname "$ROOT")"
exec 9>"$(dirname "$ROOT")/.$(basename "$ROOT").lock"
flock 9 # another setup.sh may be building the same chroot: wait for it

# Never delete anything while something is mounted below $ROOT (a bind mount would take host files with it).
assert_unmounted() {
    if findmnt -rn -o TARGET | grep -q "^$ROOT/"; then
        echo "setup.sh: something is mounted under $ROOT; refusing to delete it:" >&2
        findmnt -rn -o TARGET | grep "^$ROOT/" >&2
        exit 1
    fi
}

if [ $REBUILD = 1 ] && [ -d "$ROOT" ]; then
    assert_unmounted
    echo "[setup] removing $ROOT" >&2
    rm -rf --one-file-system "$ROOT"
fi

if is_ready; then
    echo "[setup] chroot ready at $ROOT ($SUITE $(cat "$ROOT/etc/debian_version"))" >&2
    exit 0
fi

# The mirror this host's apt uses for Debian itself: the first URI ending in /debian.
host_mirror() {
    local f
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] && awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f"
    done | head -1 | grep . && return 0
    [ -r /etc/apt/sources.list ] &&
        awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\/.*\/debian\/?$/) { print $i; exit } }' \
            /etc/apt/sources.list | head -1
}
MIRROR=${MIRROR:-$(host_mirror || true)}
[ -n "$MIRROR" ] || { echo "setup.sh: cannot find the host's Debian mirror; set MIRROR" >&2; EXIT_MEANT=2; exit 2; }
# Exit status 3 (and only then) means "the mirror cannot be reached": the integration tests skip on it, and
# fail on every other error. apt-helper is apt's own downloader, so apt's proxy settings apply.
probe=$(mktemp)
if ! /usr/lib/apt/apt-helper download-file "${MIRROR%/}/dists/$SUITE/InRelease" "$probe" >"$probe.log" 2>&1; then
    echo "setup.sh: the Debian mirror is unreachable: cannot fetch ${MIRROR%/}/dists/$SUITE/InRelease:" >&2
    grep -E '^(Err|E):' "$probe.log" | sed 's/^/  /' >&2
    rm -f "$probe" "$probe.log"
    EXIT_MEANT=3
    exit 3
fi
rm -f "$probe" "$probe.log"

T_START=$SECONDS
phase_t=$SECONDS
phase() { # phase NAME: log how long the previous phase took
    log "$1 ($((SECONDS - phase_t)) s)"
    phase_t=$SECONDS
}

if ! command -v debootstrap >/dev/null; then
    echo "[setup] apt-get install debootstrap (host)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    }
fi

if [ ! -f "$ROOT/.debootstrap-done" ]; then
    assert_unmounted
    rm -rf --one-file-system "$ROOT"
    mkdir -p "$ROOT"
    log "debootstrap --variant=minbase $SUITE $ROOT $MIRROR"
    # A private mount namespace: debootstrap's own /proc and /sys mounts vanish with it, even if it fails.
    unshare --mount --propagation private -- \
        debootstrap --variant=minbase --keyring="$KEYRING" "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 || {
        tail -30 "$ROOT.debootstrap.log" >&2
        echo "setup.sh: debootstrap failed (full log: $ROOT.debootstrap.log)" >&2
        exit 1
    }
    mv "$ROOT.debootstrap.log" "$ROOT/.debootstrap.log"
    touch "$ROOT/.debootstrap-done"
    phase "debootstrap done"
fi

# apt inside the chroot: no recommends, no service starts, the host's DNS, deb + deb-src of $SUITE.
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"
cat >"$ROOT/etc/apt/apt.conf.d/90vhostd" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
// The mirror may serve a frozen snapshot whose InRelease is past its Valid-Until date (sid's expires
// within days); apt refuses it without this. debootstrap does not check it.
Acquire::Check-Valid-Until "false";
APT
rm -f "$ROOT/etc/apt/sources.list"
cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb deb-src
URIs: $MIRROR
Suites: $SUITE
Components: main
Signed-By: $KEYRING
SRC
if [ ! -f "$ROOT$KEYRING" ]; then # Signed-By above names this file
    mkdir -p "$ROOT$(dirname "$KEYRING")"
    cp "$KEYRING" "$ROOT$KEYRING"
fi

in_chroot() { "$HERE/enter.sh" env DEBIAN_FRONTEND=noninteractive "$@"; }

log "apt-get install $PKGS"
in_chroot apt-get update -q >/dev/null
in_chroot apt-get install -y -q $PKGS >"$ROOT/.apt-install.log" 2>&1 || {
    tail -30 "$ROOT/.apt-install.log" >&2
    exit 1
}
phase "runtime packages installed"

if ! "$HERE/enter.sh" /usr/local/bin/fio --enghelp=libblkio >/dev/null 2>&1; then
    in_chroot dpkg-query -W -f '${Package}\n' | sort >"$ROOT/.pkgs-before-build"
    log "apt-get install $BUILD_PKGS; build fio with the libblkio engine into /usr/local/bin/fio"
    in_chroot apt-get install -y -q $BUILD_PKGS >>"$ROOT/.apt-install.log" 2>&1 || {
        tail -30 "$ROOT/.apt-install.log" >&2
        exit 1
    }
    phase "build packages installed"
    # Same upstream version as Debian's fio, from Debian's source package. --tar-only: a plain
    # `apt-get source` also wants fio_*.debian.tar.xz, which a mirror may answer with 404; the
    # upstream tarball (hash checked by apt against Sources) is all we need.
    "$HERE/enter.sh" /bin/sh -ec '
        mkdir -p /usr/local/src && cd /usr/local/src
        rm -rf fio-* fio_*
        apt-get source -q -o APT::Sandbox::User=root --download-only --tar-only fio >/dev/null
        tar xf fio_*.orig.tar.*
        cd fio-*/
        ./configure --prefix=/usr/local >../fio-configure.log
        grep -q "^libblkio engine *yes" ../fio-configure.log || { cat ../fio-configure.log; exit 1; }
        make -j"$(nproc)" >../fio-make.log 2>&1 || { tail -30 ../fio-make.log; exit 1; }
        make install >../fio-install.log 2>&1
        /usr/local/bin/fio --enghelp=libblkio >/dev/null' || {
        echo "setup.sh: fio build failed (logs in $ROOT/usr/local/src)" >&2
        exit 1
    }
    phase "fio built"
    if [ $KEEP_TOOLCHAIN = 0 ]; then
        in_chroot dpkg-query -W -f '${Package}\n' | sort >"$ROOT/.pkgs-after-build"
        # shellcheck disable=SC2046 # one word per package
        in_chroot apt-mark manual $(cat "$ROOT/.pkgs-before-build") >/dev/null
        # shellcheck disable=SC2046
        in_chroot apt-get purge -y -q $(comm -13 "$ROOT/.pkgs-before-build" "$ROOT/.pkgs-after-build") \
            >>"$ROOT/.apt-install.log" 2>&1
        "$HERE/enter.sh" /bin/sh -c 'cd /usr/local/src && rm -rf fio-*/ fio_*'
        phase "toolchain purged"
    fi
fi
# Still runs after the purge: every library our fio links to is present.
if "$HERE/enter.sh" ldd /usr/local/bin/fio | grep -q 'not found'; then
    "$HERE/enter.sh" ldd /usr/local/bin/fio >&2
    echo "setup.sh: /usr/local/bin/fio misses libraries" >&2
    exit 1
fi
"$HERE/enter.sh" /usr/local/bin/fio --enghelp=libblkio >/dev/null
in_chroot apt-get clean

echo "$STAMP_TEXT" >"$STAMP"
log "chroot ready at $ROOT: built in $((SECONDS - T_START)) s, $(du -sh --one-file-system "$ROOT" | cut -f1)"
"$HERE/enter.sh" dpkg-query -W fio libblkio1 qemu-system-x86 qemu-utils qemu-block-extra >&2
echo "/usr/local/bin/fio $("$HERE/enter.sh" /usr/local/bin/fio --version) (libblkio engine)" >&2
