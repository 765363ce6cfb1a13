#!/bin/sh
# Runs inside the guest (busybox sh): guest-fio.sh JOBFILE... (files in /vm, see run-guest.sh --file).
# Runs each job file with fio, one after another, and prints after each one a line
#   @@FIO <jobfile> rc=<fio exit status>@@
# Env: DEV (default /dev/vda), FIO_ARGS (extra fio options, e.g. --output-format=json),
# plus whatever the job files read (${VAR} in a job file is taken from the environment).
DEV=${DEV:-/dev/vda}
export DEV
B=${DEV#/dev/}
[ -b "$DEV" ] || { echo "guest-fio: $DEV is not a block device"; ls /sys/block; exit 2; }
echo "@@GUEST kernel=$(uname -r) cpus=$(nproc) dev=$DEV size_mib=$(($(cat /sys/block/"$B"/size) / 2048)) queues=$(ls /sys/block/"$B"/mq | wc -l)@@"
rc=0
for j in "$@"; do
    # shellcheck disable=SC2086 # FIO_ARGS is a list of options
    fio --eta=never $FIO_ARGS "/vm/$j" 2>&1
    r=$?
    echo "@@FIO $j rc=$r@@"
    [ $r = 0 ] || rc=1
done
exit $rc
