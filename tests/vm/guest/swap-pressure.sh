#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Case 3 (and 6, with zram): the whole machine under memory pressure, no
# cgroup.  swap-fill writes and verifies PCT% of the guest's RAM (MemTotal)
# twice, ROUNDS times in a row.
#   EXPECT=pass  every round must finish with every word right;
#   EXPECT=oom   PCT% is more than the guest can hold even compressed: the
#                OOM killer must kill swap-fill (not uzramd), and uzramd must
#                still answer.
# A hang never reaches the verdict: the host's deadline and the kernel's
# hung-task reports fail it.
#
#   swap-pressure.sh nbd-unix|nbd-tcp|fuse|zram PCT pass|oom [ROUNDS]
. /vmtest/lib.sh

kind=${1:?kind} pct=${2:?pct} expect=${3:?expect} rounds=${4:-1}
size=$(awk -v p="$pct" '/^MemTotal:/ {printf "%dM", $2 * p / 100 / 1024}' /proc/meminfo)
swap_setup "$kind"
[[ $kind == zram ]] || check_hardening "$kind"
free -m

first=
for round in $(seq 1 "$rounds"); do
    hog "$size" 2
    first=${first:-$HOG_SECONDS}
    figure "round$round" "$HOG_SECONDS"
    case $expect in
        pass)
            ((HOG_RC == 0)) || fail "round $round: swap-fill exited $HOG_RC"
            ;;
        oom)
            ((HOG_RC == 137)) || fail "swap-fill exited $HOG_RC, not killed by SIGKILL"
            dmesg | grep -q 'Killed process [0-9]* (swap-fill)' ||
                fail "the OOM killer did not kill swap-fill"
            if dmesg | grep -Eq 'Killed process [0-9]* \((uzramd|nbd-client)\)'; then
                fail "the OOM killer killed the swap device's server"
            fi
            ;;
    esac
    check_no_hung_task
done
# The first round's time: what the zram reference, one round, compares with.
figure seconds "$first"

if [[ $kind != zram ]]; then
    kill -0 "$UZRAMD_PID" 2>/dev/null || fail "uzramd is gone"
    uzramctl stat "$DEV" >/dev/null || fail "uzramd does not answer uzramctl stat"
    say "uzramd: failed_writes $(stat failed_writes) failed_reads $(stat failed_reads)"
fi
swapoff "$SWAPDEV" || fail "swapoff $SWAPDEV"
check_no_hung_task
exit 0
