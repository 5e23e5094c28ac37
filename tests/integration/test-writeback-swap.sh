#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Swap on a device that is smaller in memory than what is swapped to it:
# test-swap.sh's run (swap-fill fills 512 MiB with a half-compressible
# pattern inside a 128 MiB cgroup v1 memory cgroup and verifies every word,
# so about 384 MiB go through the device) on a uzramd with --mem-limit 96M
# and --backing FILE.  The pattern compresses about 2:1, so what is swapped
# out (about 190 MiB compressed) cannot all stay in 96 MiB: the evict path
# has to move pages to the file while the kernel keeps swapping, and a swap
# write that finds the pool full must wait for it rather than fail (a
# failed swap write is an I/O error the kernel does not retry).
#
# Passes when swap-fill finds every word intact, the store wrote pages
# back (bd_writes > 0) and failed no request, and mem_used_total (sampled,
# and mem_used_max) stayed within the limit plus the slack tests/lib/writeback.sh
# explains.
#
# Cleanup order as in test-swap.sh: swapoff (which reads every page still
# on the device back in, some of them from the backing file) runs while the
# daemon is alive.
#
#   test-writeback-swap.sh UZRAMD UZRAMCTL SWAP-FILL

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

SWAP_FILL=${1:?usage: $0 UZRAMD UZRAMCTL SWAP-FILL}

require_root
require_fuse
require_cmd losetup mkswap swapon swapoff python3
require_binaries
require_writeback
require_memcg

make_tmpdir uzit
LIMIT=$((96 * MiB))
start_daemon 1G --mem-limit 96M --backing "$TMPD/backing.img"
attach_loop "$DEV_FILE"

swap_on_loop
sampler_start "$TMPD/samples"
swap_fill_in_cgroup "$SWAP_FILL" 512M 128M
sampler_stop

json=$(stat_json)
wb_log "$json"
(($(json_int "$json" bd_writes) > 0)) || fail "bd_writes is 0: nothing went to the backing file"
failed=$(($(json_int "$json" failed_reads) + $(json_int "$json" failed_writes)))
((failed == 0)) || fail "the store counted $failed failed reads/writes"
bd_errors=$(($(json_int "$json" bd_read_errors) + $(json_int "$json" bd_write_errors)))
((bd_errors == 0)) || fail "the backing file returned $bd_errors errors"
check_under_limit "$LIMIT" "swap-fill"

swapoff "$LOOPDEV" || fail "swapoff $LOOPDEV failed"
log "PASS"
