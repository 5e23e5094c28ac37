#!/bin/bash
# SPDX-License-Identifier: MIT
#
# One case of the VM suite: boot Debian's kernel in qemu on a root image
# made from the build tree, run guest/CASE.sh ARGS in it, and pass if the
# guest says pass and its kernel reported no oops, panic or hung task
# within DEADLINE seconds.
#
#   vm-test.sh [--name NAME] [--ref NAME] BUILD_ROOT MEM_MIB DEADLINE CASE [ARGS...]
#
# --name names the run: its console log is BUILD_ROOT/tests/vm/logs/NAME.log
# and the seconds the guest measured (VMTEST: FIGURE seconds=) go to
# NAME.seconds.  --ref names an earlier run of the same job on the
# kernel's zram: the time over zram's is printed, for information (the
# figures are checked by tools/bench/vm-swap-compare, never here).
#
# Exit 77 (skip) only where no VM can be started: qemu or the kernel
# package cannot be had.  The console's last lines are printed when the
# case fails.
set -uo pipefail
# shellcheck source=tests/lib/vm.sh
. "$(dirname "$0")/../lib/vm.sh"

name= ref=
while [[ ${1:-} == --* ]]; do
    case $1 in
        --name) name=$2; shift 2 ;;
        --ref) ref=$2; shift 2 ;;
        *) echo "$0: unknown option $1" >&2; exit 2 ;;
    esac
done
(($# >= 4)) || { echo "usage: $0 [--name NAME] [--ref NAME] BUILD_ROOT MEM_MIB DEADLINE CASE [ARGS...]" >&2; exit 2; }
build=$1 mem=$2 deadline=$3 case=$4
shift 4

if ! vm_prepare "$build"; then
    vm_say "SKIP: no VM can be started here"
    exit 77
fi
logs=$build/tests/vm/logs
mkdir -p "$logs"
if [[ -z $name ]]; then
    name=$case${*:+-$*}
    name=${name// /-}
fi
log=$logs/$name.log
rm -f "$logs/$name.seconds"
vm_say "$case $* (${mem} MiB, deadline ${deadline}s, $VM_ACCEL, kernel $VM_KVER): console in $log"
start=$SECONDS
rc=0
vm_boot "$log" "$deadline" "$mem" "$case" "$@" || rc=$?
((rc == 124 || rc == 137)) && vm_say "qemu killed at the deadline (${deadline}s)"
grep -E 'vmtest:|VMTEST:|swap-fill' "$log" | grep -v 'VMTEST: PROBE' >&2
vm_say "the VM ran $((SECONDS - start))s"
verdict=0
vm_judge "$log" || verdict=$?
seconds=$(vm_figure "$log" seconds)
if ((verdict == 0)) && [[ -n $seconds ]]; then
    echo "$seconds" >"$logs/$name.seconds"
    if [[ -n $ref && -s $logs/$ref.seconds ]]; then
        vm_say "$name took ${seconds}s, $ref $(cat "$logs/$ref.seconds")s: $(awk -v a="$seconds" \
            -v b="$(cat "$logs/$ref.seconds")" 'BEGIN {printf "%.2f", a / b}')x zram's time"
    fi
fi
if ((verdict == 1)); then
    vm_say "the console's last lines:"
    tail -n 60 "$log" >&2
fi
exit "$verdict"
