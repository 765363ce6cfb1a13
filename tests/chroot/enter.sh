#!/usr/bin/env bash
# tests/chroot/enter.sh - run a command inside the vhostd tool chroot (default: an interactive bash).
#
#   tests/chroot/enter.sh [CMD [ARGS...]]
#
# Each call gets its own private mount namespace (unshare -m) in which /proc, /sys, /dev (recursively,
# so /dev/shm and /dev/pts come along) and the host's /tmp are mounted into the chroot. /tmp is the
# host's /tmp, so unix sockets under /tmp are reachable from both sides (vhostd on the host, fio or
# QEMU in the chroot). The mounts vanish with the command: nothing to unmount, and `rm -rf` of the
# chroot can never reach host files through a leftover bind mount.
#
# unshare, bash and chroot all exec(), so `enter.sh daemon ... &` leaves $! as the daemon's own PID.
# The command gets a clean environment (PATH, HOME, TERM, LANG); pass more with `enter.sh env FOO=bar cmd`.
# Env: VHOSTD_CHROOT (default /var/cache/vhostd-chroot/sid). Needs root (mount namespaces, chroot).
set -euo pipefail
ROOT=${VHOSTD_CHROOT:-/var/cache/vhostd-chroot/sid}
if [ ! -x "$ROOT/bin/sh" ]; then
    echo "enter.sh: no chroot at $ROOT; run $(dirname "$0")/setup.sh first" >&2
    exit 1
fi
[ $# -gt 0 ] || set -- /bin/bash -l
exec unshare --mount --propagation private -- /bin/bash -c '
set -e
R=$1; shift
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount --bind /tmp "$R/tmp"
exec chroot "$R" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 "$@"
' enter.sh "$ROOT" "$@"
