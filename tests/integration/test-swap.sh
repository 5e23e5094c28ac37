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

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$0")/../lib/uzramd.sh"

SWAP_FILL=${1:?usage: $0 UZRAMD UZRAMCTL SWAP-FILL}

require_root
require_fuse
require_cmd losetup mkswap swapon swapoff python3
require_binaries
require_memcg

make_tmpdir uzit
start_daemon 1G
attach_loop "$DEV_FILE"

swap_on_loop
before=$(stat_field orig_data_size)
swap_fill_in_cgroup "$SWAP_FILL" 512M 128M

json=$(stat_json)
after=$(json_int "$json" orig_data_size)
used_max=$(json_int "$json" mem_used_max)
failed=$(($(json_int "$json" failed_reads) + $(json_int "$json" failed_writes)))
log "orig_data_size $before -> $after, mem_used_max $used_max"
# Without swapon --discard the slots written stay stored after the pages
# come back, so orig_data_size shows what went through the device; should
# the kernel discard them anyway, mem_used_max still remembers (the pattern
# compresses about 2:1).
((after > 256 * MiB || used_max > 128 * MiB)) ||
    fail "orig_data_size $after, mem_used_max $used_max: the swap did not go to uzramd"
((failed == 0)) || fail "the store counted $failed failed reads/writes (reserve_misses $(json_int "$json" reserve_misses), limit_rejects $(json_int "$json" limit_rejects))"

swapoff "$LOOPDEV" || fail "swapoff $LOOPDEV failed"
log "PASS"
