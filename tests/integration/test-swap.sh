#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Swap on uzramd: mkswap and swapon (highest priority) on a loop device
# over the FUSE file, then swap-fill fills 512 MiB with a half-compressible
# pattern inside a cgroup v1 memory cgroup capped at 128 MiB, so that at
# least 384 MiB must go through the device, and verifies every word.
#
# Only swap-fill is in the cgroup: the daemon serving the swap stays outside
# it, as it would in real use (it must never wait for the memory it is
# being asked to free).
#
# Cleanup order matters here more than anywhere: swapoff has to read every
# page still on the device back in, so it runs first, while the daemon is
# alive; killing the daemon under an active swap area would leave swapoff
# (and any process with pages out there) stuck.
#
#   test-swap.sh UZRAMD UZRAMCTL SWAP-FILL

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

SWAP_FILL=${1:?usage: $0 UZRAMD UZRAMCTL SWAP-FILL}

require_root
require_fuse
require_cmd losetup mkswap swapon swapoff python3
require_binaries
memcg=/sys/fs/cgroup/memory
[[ -f $memcg/memory.limit_in_bytes ]] || skip "needs the cgroup v1 memory controller at $memcg"

kill_cgroup() {
    local pid
    [[ -d $1 ]] || return 0
    while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$1/cgroup.procs"
    wait_for "[[ -z \$(cat '$1/cgroup.procs') ]]" 30
}

make_tmpdir
start_daemon 1G
attach_loop "$DEV_FILE"

mkswap "$LOOPDEV" >/dev/null || fail "mkswap $LOOPDEV failed"
swapon -p 32767 "$LOOPDEV" || fail "swapon $LOOPDEV failed"
cleanup_push "! grep -q '^$LOOPDEV ' /proc/swaps || swapoff '$LOOPDEV'"
grep -q "^$LOOPDEV " /proc/swaps || fail "$LOOPDEV is not in /proc/swaps after swapon"

cg="$memcg/uzram-test-$$"
mkdir "$cg" || fail "cannot create the cgroup $cg"
cleanup_push "kill_cgroup '$cg'; rmdir '$cg'"
echo 128M >"$cg/memory.limit_in_bytes"
echo 100 >"$cg/memory.swappiness"

before=$(stat_field orig_data_size)
log "running swap-fill --size 512M in a 128 MiB cgroup"
rc=0
# The wrapper puts itself in the cgroup and then becomes swap-fill, so that
# nothing else (not this shell) is charged to it.
# shellcheck disable=SC2016
sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cg" \
    "$SWAP_FILL" --size 512M --seed "$$" >"$TMPD/swap-fill.out" || rc=$?
cat "$TMPD/swap-fill.out" >&2
((rc == 0)) || fail "swap-fill exited $rc (a word came back wrong, or it was killed)"

swapped_kb=$(sed -n 's/.*vmswap_max_kb=\([0-9]*\).*/\1/p' "$TMPD/swap-fill.out")
[[ -n $swapped_kb ]] || fail "swap-fill printed no vmswap_max_kb"
json=$(stat_json)
after=$(json_int "$json" orig_data_size)
used_max=$(json_int "$json" mem_used_max)
failed=$(($(json_int "$json" failed_reads) + $(json_int "$json" failed_writes)))
log "swap-fill had up to $((swapped_kb / 1024)) MiB swapped; orig_data_size $before -> $after, mem_used_max $used_max"
((swapped_kb * 1024 > 256 * MiB)) || fail "swap-fill swapped only $swapped_kb KiB: the test did not exercise swap"
# Without swapon --discard the slots written stay stored after the pages
# come back, so orig_data_size shows what went through the device; should
# the kernel discard them anyway, mem_used_max still remembers (the pattern
# compresses about 2:1).
((after > 256 * MiB || used_max > 128 * MiB)) ||
    fail "orig_data_size $after, mem_used_max $used_max: the swap did not go to uzramd"
((failed == 0)) || fail "the store counted $failed failed reads/writes"
grep -q "^$LOOPDEV " /proc/swaps || fail "$LOOPDEV left /proc/swaps during the run"

swapoff "$LOOPDEV" || fail "swapoff $LOOPDEV failed"
log "PASS"
