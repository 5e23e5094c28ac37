#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Case 4 of the VM suite: systemd as PID 1.  The guest is the host's own
# Debian (its / read-only over 9p, under an overlay on a fresh state disk:
# see tests/lib/vm.sh), booted twice on the same state disk:
#
#   1. guest/systemd.sh install: meson install from the build tree,
#      /etc/uzram/swap0.conf, systemctl enable uzramd@swap0 uzram-swap@swap0,
#      power off;
#   2. guest/systemd.sh check: swap is on after the boot, a reload applies
#      a changed mem-limit, systemctl stop undoes everything; then swap is
#      started again and the machine powered off with it on.
#
# Each boot passes as a vm-test.sh case does (vm_judge: the guest says pass,
# no oops, panic or hung task, within DEADLINE seconds).  The second boot
# must also power off cleanly with the uzram swap on: after the verdict, the
# guest's journal (read from the state disk) and the console must show no
# unit failing or timing out, no swapoff failing, no I/O error and nothing
# left busy.
#
#   vm-systemd.sh [--name NAME] BUILD_ROOT MEM_MIB DEADLINE
#
# The consoles go to BUILD_ROOT/tests/vm/logs/NAME-install.log and
# NAME-check.log; the state disk, NAME.state.img, is kept when the case
# fails or VM_KEEP_STATE=1 (debugfs reads it).  Exit 77 (skip) only where no VM can be started.
set -uo pipefail
# shellcheck source=tests/lib/vm.sh
. "$(dirname "$0")/../lib/vm.sh"

name=systemd
while [[ ${1:-} == --* ]]; do
    case $1 in
        --name) name=$2; shift 2 ;;
        *) echo "$0: unknown option $1" >&2; exit 2 ;;
    esac
done
(($# == 3)) || { echo "usage: $0 [--name NAME] BUILD_ROOT MEM_MIB DEADLINE" >&2; exit 2; }
mem=$2 deadline=$3
build=$(cd "$1" && pwd -P) || exit 1

if ! vm_sd_prepare "$build"; then
    vm_say "SKIP: no VM can be started here"
    exit 77
fi
logs=$build/tests/vm/logs
mkdir -p "$logs" || exit 1
state=$logs/$name.state.img
stage=$(mktemp -d "$logs/$name.stage.XXXXXX") || exit 1
trap 'rm -rf "$stage"' EXIT

# Where meson installs, for the guest to find the example configuration.
read -r prefix datadir < <(meson introspect --buildoptions "$build" |
    /usr/bin/python3 -c 'import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
print(o["prefix"], o["datadir"])') || { vm_say "meson introspect $build failed"; exit 1; }

# The units the host's administrator enabled (a database, timers that run
# apt, a getty...) are no part of this case: masked on the state disk, with
# the serial console's getty, which would write a login prompt amid the
# verdict, and SysV scripts that would start what no unit describes.
sd_masks() {
    local f n
    for f in /etc/systemd/system/*.wants/*; do
        [[ -L $f ]] && echo "${f##*/}"
    done
    for f in /etc/rc[2345].d/S*; do
        [[ -e $f ]] || continue
        n=${f##*/S[0-9][0-9]}
        [[ -e /lib/systemd/system/$n.service || -e /etc/systemd/system/$n.service ]] || echo "$n.service"
    done
    echo serial-getty@ttyS0.service
}

# The upper layer at the first boot.  /lib is a link to usr/lib on the
# host's Debian: the modules' link goes under usr/lib.
(
    set -e
    cd "$stage"
    # var/log/journal: the journal persists on the state disk, for a look
    # at a failure (debugfs -R 'rdump /upper/var/log/journal DIR', then
    # journalctl -D DIR).
    mkdir -p vmtest etc/systemd/system/multi-user.target.wants usr/lib/modules var/log/journal
    cp "$VM_GUEST_DIR"/{lib.sh,systemd.sh,systemd-job.sh} vmtest/
    chmod 0755 vmtest/*.sh
    printf 'BUILD=%q\nPREFIX=%q\nDATADIR=%q\n' "$build" "$prefix" "$datadir" >vmtest/env
    install -m 0644 "$VM_GUEST_DIR/vmtest.service" etc/systemd/system/vmtest.service
    ln -s /etc/systemd/system/vmtest.service etc/systemd/system/multi-user.target.wants/
    for unit in $(sd_masks | sort -u); do
        ln -sfn /dev/null "etc/systemd/system/$unit"
    done
    ln -s "$VM_MODULES" "usr/lib/modules/$VM_KVER"
) || { vm_say "staging the state disk failed"; exit 1; }
vm_sd_state "$state" "$stage" || exit 1

# shutdown_trouble LOG: what went wrong at the poweroff after the verdict.
# The guest's journal on the state disk has it all (a unit whose stop
# failed or timed out shows on the console as "Stopped"); the console adds
# what the kernel said after the journal closed, and systemd-shutdown's
# errors.  Without debugfs and journalctl here, the console alone.
shutdown_trouble() {
    local log=$1 dir=$stage/journal
    local errors='Failed with result|Failed deactivating|swapoff failed|[Tt]imed out|I/O error|Read-error'
    rm -rf "$dir" && mkdir -p "$dir" || return 0
    if debugfs -R "rdump /upper/var/log/journal $dir" "$state" >/dev/null 2>&1 &&
        [[ -d $dir/journal ]]; then
        journalctl -D "$dir/journal" -b 0 -o short-monotonic --no-pager 2>/dev/null |
            sed -n '/VMTEST: RESULT/,$p' | grep -E "$errors"
    fi
    sed -n '/VMTEST: RESULT/,$p' "$log" | sed 's/\x1b\[[0-9;]*[mK]//g' | tr '\r' '\n' |
        grep -E "FAILED|Could not|Unable to|busy|$errors"
}

# boot PHASE: boot the state disk with the case's PHASE; 0 if it passed.
boot() {
    local phase=$1 log=$logs/$name-$1.log rc=0 verdict=0 start=$SECONDS trouble
    vm_say "$name $phase (${mem} MiB, deadline ${deadline}s, $VM_ACCEL, kernel $VM_KVER): console in $log"
    vm_sd_boot "$log" "$deadline" "$mem" "$state" systemd "$phase" || rc=$?
    ((rc == 124 || rc == 137)) && vm_say "qemu killed at the deadline (${deadline}s)"
    grep -E 'vmtest:|VMTEST:' "$log" | grep -v 'VMTEST: PROBE' >&2
    vm_say "the VM ran $((SECONDS - start))s"
    vm_judge "$log" || verdict=$?
    if ((verdict == 0)) && [[ $phase == check ]]; then
        trouble=$(shutdown_trouble "$log")
        if [[ -n $trouble ]]; then
            vm_say "the poweroff with uzram swap on went wrong:"
            printf '%s\n' "$trouble" >&2
            verdict=1
        fi
    fi
    if ((verdict == 0)) && ((rc != 0)); then
        vm_say "qemu exited $rc: the guest did not power off by itself"
        verdict=1
    fi
    if ((verdict == 1)); then
        vm_say "the console's last lines:"
        tail -n 80 "$log" >&2
    fi
    return "$verdict"
}

verdict=0
boot install && boot check || verdict=$?
if ((verdict == 0)) && [[ -z ${VM_KEEP_STATE:-} ]]; then
    rm -f "$state"
else
    vm_say "the state disk is kept: $state"
fi
exit "$verdict"
