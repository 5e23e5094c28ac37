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
# hung-task reports fail it.  DEVSIZE is the swap device's size (default
# lib.sh's SWAP_SIZE).
#
#   swap-pressure.sh nbd-unix|nbd-tcp|fuse|zram PCT pass|oom [ROUNDS [DEVSIZE]]
. /vmtest/lib.sh

kind=${1:?kind} pct=${2:?pct} expect=${3:?expect} rounds=${4:-1}
SWAP_SIZE=${5:-$SWAP_SIZE}
size=$(awk -v p="$pct" '/^MemTotal:/ {printf "%dM", $2 * p / 100 / 1024}' /proc/meminfo)
# The machine as uzramd(8) advises for swap (SWAP, "Two settings of the
# machine help"): vm.min_free_kbytes at 2% of RAM, for every kind, zram's
# reference too.  Set before uzramd starts, which reads it.  The kernel's
# default here is about 0.6% (2.9 MB): a realtime thread may go a quarter
# of that below the min watermark, 0.7 MB, for the refill and the NBD
# replies; at 2% that is 2.4 MB.
min_free=$(awk '/^MemTotal:/ {printf "%d", $2 * 2 / 100}' /proc/meminfo)
if (($(cat /proc/sys/vm/min_free_kbytes) < min_free)); then
    echo "$min_free" >/proc/sys/vm/min_free_kbytes || fail "cannot set vm.min_free_kbytes"
fi
say "vm.min_free_kbytes $(cat /proc/sys/vm/min_free_kbytes)"
swap_setup "$kind"
[[ $kind == zram ]] || check_hardening "$kind"
free -m

first=
# OOM kills so far: /proc/vmstat counts every one (Linux 4.13 and later).
oom_kills() { awk '$1 == "oom_kill" {print $2; found = 1} END {exit !found}' /proc/vmstat; }
for round in $(seq 1 "$rounds"); do
    kills0=$(oom_kills) || fail "/proc/vmstat has no oom_kill count"
    hog "$size" 2
    first=${first:-$HOG_SECONDS}
    figure "round$round" "$HOG_SECONDS"
    case $expect in
        pass)
            ((HOG_RC == 0)) || fail "round $round: swap-fill exited $HOG_RC"
            ;;
        oom)
            ((HOG_RC == 137)) || fail "swap-fill exited $HOG_RC, not killed by SIGKILL"
            # The kill is told by the kernel's count of OOM kills, not by its
            # log: over NBD every failed swap write logs a line, and within a
            # second those push "Killed process" out of the ring buffer.
            kills=$(($(oom_kills) - kills0))
            ((kills >= 1)) || fail "swap-fill got SIGKILL, but not from the OOM killer"
            say "OOM kills in round $round: $kills"
            # Read whole: a kernel log full of swap write errors makes
            # "dmesg | grep -q" fail on SIGPIPE under pipefail.
            klog=$(dmesg)
            if grep -Eq 'Killed process [0-9]* \((uzramd|nbd-client)\)' <<<"$klog"; then
                fail "the OOM killer killed the swap device's server"
            fi
            if [[ $kind != zram ]]; then
                kill -0 "$UZRAMD_PID" 2>/dev/null || fail "uzramd is gone: the OOM killer took the server"
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
