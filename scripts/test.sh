#!/usr/bin/env bash
# scripts/test.sh - THE test command: builds everything, runs the unit tests and the integration
# tests (a real QEMU guest running fio against bin/vhostd, see tests/vm/README.md).
#
#   scripts/test.sh [extra Maven arguments]        e.g. scripts/test.sh -Dit.test=MasterLifecycleIT
#
# Needs: a JDK 25 (JAVA_HOME, /usr/lib/jvm/temurin-25-jdk-amd64 or any /usr/lib/jvm/*25*), and for
# the guest tests qemu-system-x86_64 + the guest that tests/vm/build-guest.sh builds (it installs
# fio busybox-static cpio xz-utils when run as root). Without QEMU the guest test is skipped.
# As root it also builds the tool chroot of tests/chroot (Debian sid with fio + libblkio and QEMU 11.1,
# ~4 min once, then cached in /var/cache/vhostd-chroot) for LibblkioVerifyIT and Qemu11NvmeIT; those two
# are skipped only when not root or when the Debian mirror is unreachable (setup.sh exit status 3).
set -euo pipefail
cd "$(dirname "$0")/.."

jdk_major() { # DIR -> feature version of the JDK in DIR, 0 if none
    [ -x "$1/bin/java" ] || { echo 0; return; }
    local v
    v=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$1/release" 2>/dev/null || true)
    echo "${v:-0}"
}
if [ -z "${JAVA_HOME:-}" ] || [ "$(jdk_major "$JAVA_HOME")" -lt 25 ]; then
    JAVA_HOME=
    for d in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*25*; do
        if [ -d "$d" ] && [ "$(jdk_major "$d")" -ge 25 ]; then JAVA_HOME=$d; break; fi
    done
    [ -n "$JAVA_HOME" ] || { echo "test.sh: no JDK 25 found (set JAVA_HOME)" >&2; exit 1; }
fi
export JAVA_HOME PATH="$JAVA_HOME/bin:$PATH"
echo "test.sh: JAVA_HOME=$JAVA_HOME ($("$JAVA_HOME/bin/java" -version 2>&1 | head -1))"

if command -v qemu-system-x86_64 >/dev/null; then
    echo "test.sh: $(qemu-system-x86_64 --version | head -1)"
    tests/vm/build-guest.sh
else
    echo "test.sh: WARNING: qemu-system-x86_64 not installed: the guest integration test will be skipped" >&2
fi

if [ "$(id -u)" = 0 ]; then
    t0=$SECONDS rc=0
    tests/chroot/setup.sh || rc=$?
    case $rc in
    0) echo "test.sh: tool chroot ready ($((SECONDS - t0)) s)" ;;
    3) echo "test.sh: WARNING: the Debian mirror is unreachable: LibblkioVerifyIT and Qemu11NvmeIT will be skipped" >&2 ;;
    *) echo "test.sh: tests/chroot/setup.sh failed (exit status $rc)" >&2; exit 1 ;;
    esac
else
    echo "test.sh: WARNING: not root: no tool chroot, LibblkioVerifyIT and Qemu11NvmeIT will be skipped" >&2
fi

./mvnw -B verify -Pintegration "$@"
