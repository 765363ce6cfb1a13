#!/usr/bin/env bash
# systemd/install.sh - installs vhostd: the jar, the launchers, the systemd unit, the sysctl.d and tmpfiles.d
# snippets, the vhost-user back-end descriptor for QEMU/libvirt, the docs, and a default configuration.
#
#   systemd/install.sh [--prefix /usr] [--destdir DIR] [--sysconfdir /etc] [--jar FILE]
#
#   --prefix P      install under P (default /usr): P/lib/vhostd/vhostd.jar, P/bin/vhostd, P/bin/vhostctl,
#                   P/libexec/vhostd-user-blk, P/lib/systemd/system/vhostd.service, P/lib/sysctl.d/10-vhostd.conf,
#                   P/lib/tmpfiles.d/vhostd.conf, P/share/qemu/vhost-user/50-vhostd-blk.json, P/share/doc/vhostd/
#   --sysconfdir S  configuration directory (default /etc): S/vhostd/vhostd.yaml and S/default/vhostd, each
#                   written only when absent (an existing configuration is never overwritten)
#   --destdir D     stage everything under D (packaging, tests); paths inside the files stay those of --prefix,
#                   and nothing is reloaded
#   --jar FILE      the jar to install (default dist/target/vhostd.jar: ./mvnw -B -q package -DskipTests)
#
# Without --destdir, as root on a host booted with systemd, it also runs `systemctl daemon-reload` and
# `systemd-tmpfiles --create` for the new snippets; it neither enables nor starts the service.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
PREFIX=/usr
SYSCONFDIR=/etc
DESTDIR=
JAR=$REPO/dist/target/vhostd.jar

die() {
    echo "install.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --sysconfdir) [ $# -ge 2 ] || die "--sysconfdir needs a value"; SYSCONFDIR=$2; shift 2 ;;
        --sysconfdir=*) SYSCONFDIR=${1#*=}; shift ;;
        --destdir) [ $# -ge 2 ] || die "--destdir needs a value"; DESTDIR=$2; shift 2 ;;
        --destdir=*) DESTDIR=${1#*=}; shift ;;
        --jar) [ $# -ge 2 ] || die "--jar needs a value"; JAR=$2; shift 2 ;;
        --jar=*) JAR=${1#*=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

case $PREFIX in /*) ;; *) die "--prefix must be absolute: $PREFIX" ;; esac
case $SYSCONFDIR in /*) ;; *) die "--sysconfdir must be absolute: $SYSCONFDIR" ;; esac
PREFIX=${PREFIX%/}
SYSCONFDIR=${SYSCONFDIR%/}
[ -n "$PREFIX" ] || die "--prefix must not be /"
[ -f "$JAR" ] || die "no jar at $JAR: build it with (cd $REPO && ./mvnw -B -q package -DskipTests), or pass --jar"
if [ -n "$DESTDIR" ]; then
    mkdir -p "$DESTDIR"
    DESTDIR=$(cd "$DESTDIR" && pwd)
fi

BINDIR=$PREFIX/bin
LIBDIR=$PREFIX/lib/vhostd
LIBEXECDIR=$PREFIX/libexec
UNITDIR=$PREFIX/lib/systemd/system
SYSCTLDIR=$PREFIX/lib/sysctl.d
TMPFILESDIR=$PREFIX/lib/tmpfiles.d
VHOSTUSERDIR=$PREFIX/share/qemu/vhost-user
DOCDIR=$PREFIX/share/doc/vhostd

# sed replacement text: escape \, & and the | delimiter
sed_escape() {
    printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'
}

# put SRC DST MODE [SED-SCRIPT]: installs SRC at $DESTDIR/DST, rewritten by SED-SCRIPT when given
put() {
    local src=$1 dst=$DESTDIR$2 mode=$3 script=${4:-}
    mkdir -p "$(dirname "$dst")"
    if [ -n "$script" ]; then
        sed -e "$script" "$src" >"$dst.tmp.$$"
    else
        cp "$src" "$dst.tmp.$$"
    fi
    chmod "$mode" "$dst.tmp.$$"
    mv -f "$dst.tmp.$$" "$dst"
    echo "  $2"
}

# put_new SRC DST MODE: like put, but leaves an existing DST alone
put_new() {
    if [ -e "$DESTDIR$2" ]; then
        echo "  $2 (exists, kept)"
    else
        put "$@"
    fi
}

P=$(sed_escape "$PREFIX")
S=$(sed_escape "$SYSCONFDIR")
echo "install.sh: installing to ${DESTDIR:-/} (prefix $PREFIX, sysconfdir $SYSCONFDIR)"
put "$JAR" "$LIBDIR/vhostd.jar" 0644
# bin/vhostd looks for /usr/lib/vhostd/vhostd.jar; point it at this prefix
put "$REPO/bin/vhostd" "$BINDIR/vhostd" 0755 "s|/usr/lib/vhostd/vhostd.jar|$P/lib/vhostd/vhostd.jar|g"
put "$REPO/bin/vhostctl" "$BINDIR/vhostctl" 0755
put "$REPO/bin/vhostd-user-blk" "$LIBEXECDIR/vhostd-user-blk" 0755 \
    "s|^VHOSTD=.*|VHOSTD=$P/bin/vhostd|"
put "$REPO/systemd/vhostd.service" "$UNITDIR/vhostd.service" 0644 \
    "s|/usr/bin/vhostd |$P/bin/vhostd |;s|/etc/vhostd/|$S/vhostd/|g;s|/etc/default/vhostd|$S/default/vhostd|g;s|/usr/share/doc/vhostd/|$P/share/doc/vhostd/|g"
put "$REPO/systemd/vhostd.conf" "$SYSCTLDIR/10-vhostd.conf" 0644
put "$REPO/systemd/vhostd-tmpfiles.conf" "$TMPFILESDIR/vhostd.conf" 0644
put "$REPO/systemd/50-vhostd-blk.json" "$VHOSTUSERDIR/50-vhostd-blk.json" 0644 \
    "s|\"/usr/libexec/vhostd-user-blk\"|\"$P/libexec/vhostd-user-blk\"|"
put "$REPO/README.md" "$DOCDIR/README.md" 0644
put "$REPO/docs/libvirt.md" "$DOCDIR/libvirt.md" 0644
put_new "$REPO/systemd/vhostd.yaml" "$SYSCONFDIR/vhostd/vhostd.yaml" 0640
put_new "$REPO/systemd/vhostd.default" "$SYSCONFDIR/default/vhostd" 0644

if [ -z "$DESTDIR" ] && [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemd-tmpfiles --create "$TMPFILESDIR/vhostd.conf" || echo "install.sh: systemd-tmpfiles failed (see above)" >&2
    echo "install.sh: done. Next: edit $SYSCONFDIR/vhostd/vhostd.yaml, then systemctl enable --now vhostd"
    echo "  (the huge page pool of $SYSCTLDIR/10-vhostd.conf applies at boot, or now: systemctl restart systemd-sysctl)"
elif [ -n "$DESTDIR" ]; then
    echo "install.sh: done (staged under $DESTDIR; nothing reloaded)"
else
    echo "install.sh: done (not root or no running systemd: run systemctl daemon-reload yourself)"
fi
