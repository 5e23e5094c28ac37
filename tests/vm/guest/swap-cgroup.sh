#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Cases 1 and 2 (and 6, with zram): swap on KIND, then swap-fill writes and
# verifies SIZE twice inside a memory cgroup capped at LIMIT.  Passes when
# every word came back, most of SIZE went out to swap, and, once swap-fill
# has exited and the kernel has discarded its slots, what the device holds
# falls back.
#
#   swap-cgroup.sh nbd-unix|nbd-tcp|fuse|zram SIZE LIMIT
. /vmtest/lib.sh

kind=${1:?kind} size=${2:?size} limit=${3:?limit}
swap_setup "$kind"
[[ $kind == zram ]] || check_hardening "$kind"

hog "$size" 2 "$limit"
((HOG_RC == 0)) || fail "swap-fill exited $HOG_RC"
swapped=$(sed -n 's/.*vmswap_max_kb=\([0-9]*\).*/\1/p' "$HOG_OUT")
say "swap-fill had up to $((swapped / 1024)) MiB on swap"
# SIZE less the cgroup's room: most of it must have gone out.
((swapped * 1024 >= $(bytes "$size") / 2)) ||
    fail "only $swapped KiB went to swap: the case did not exercise swap"
figure seconds "$HOG_SECONDS"

# The kernel discards a swap slot when the page is freed (swapon
# --discard=pages): uzramd drops what it held for it.
peak=0
for i in $(seq 1 50); do
    held=$(orig_data_size)
    ((held > peak)) && peak=$held
    ((held < 16 * MiB)) && break
    sleep 0.2
done
say "after swap-fill: orig_data_size $held bytes"
((held < 16 * MiB)) || fail "orig_data_size stayed at $held bytes after swap-fill exited: discards did not reach the store"
if [[ $kind != zram ]]; then
    failed=$(( $(stat failed_reads) + $(stat failed_writes) ))
    ((failed == 0)) || fail "uzramd counted $failed failed reads or writes"
fi

swapoff "$SWAPDEV" || fail "swapoff $SWAPDEV"
[[ $kind == nbd-* ]] && { nbd-client -d /dev/nbd0 >/dev/null || fail "nbd-client -d"; }
check_no_hung_task
exit 0
