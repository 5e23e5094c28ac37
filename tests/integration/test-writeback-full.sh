#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A full local tier: the backing file lives on a 32 MiB tmpfs, the device
# (256 MiB, --mem-limit 16M) is given 256 MiB of random data, which cannot
# compress: each page costs a whole page in memory and a whole block on the
# file, so about 16 + 32 MiB fit and no more.  Then
#   - the write fails, with ENOSPC, somewhere past what memory alone holds
#     (so writeback happened) and before the end;
#   - the store counted the backing file's refusals (bd_write_errors > 0)
#     and stayed within its memory limit;
#   - every byte written before the failure reads back identical, page by
#     page (wb-pages), whether it is in memory or on the file;
#   - a trim of the first 32 MiB frees memory and blocks, and the device
#     takes new data again: it kept serving throughout.
#
# Needs root for the tmpfs mount.  wb-pages is the client: it writes in
# 1 MiB requests and stops at the first failure, and checks page by page.
#
#   test-writeback-full.sh UZRAMD UZRAMCTL WB-PAGES

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

WB_PAGES=${1:?usage: $0 UZRAMD UZRAMCTL WB-PAGES}

require_root
require_cmd nbdinfo python3 mount umount
require_binaries
require_writeback

make_tmpdir uzit
mkdir "$TMPD/tier"
mount -t tmpfs -o size=32M,mode=0700 uzram-wb-test "$TMPD/tier" || fail "cannot mount a tmpfs on $TMPD/tier"
cleanup_push "umount '$TMPD/tier'"
LIMIT=$((16 * MiB))
DEVSIZE=$((256 * MiB))
head -c "$DEVSIZE" /dev/urandom >"$TMPD/data"

start_nbd_daemon 256M --mem-limit 16M --backing "$TMPD/tier/backing.img"

log "writing 256 MiB of random data into 16 MiB of memory and a 32 MiB tmpfs"
sampler_start "$TMPD/samples"
out=$("$WB_PAGES" write "$NBD_URI" "$TMPD/data" 0 "$DEVSIZE") || fail "wb-pages write could not run"
sampler_stop
log "write: $out"
written=$(pages_field "$out" written)
err=$(pages_field "$out" error)
[[ $err == ENOSPC ]] || fail "the write past memory and the backing file failed with $err, not ENOSPC"
((written < DEVSIZE)) || fail "all 256 MiB fit into 16 MiB of memory and a 32 MiB tmpfs"
# Memory alone holds under 16 MiB of random pages, the tmpfs 32 MiB: more
# than 32 MiB in means the file filled up (and memory was used as well).
((written > 32 * MiB)) || fail "only $((written / MiB)) MiB went in: the evict path did not fill the file"
require_alive "the failed write"
check_under_limit "$LIMIT" "the write"

json=$(stat_json)
wb_log "$json"
(($(json_int "$json" bd_write_errors) > 0)) || fail "bd_write_errors is 0 though the tmpfs is full"
(($(json_int "$json" bd_count) > 0)) || fail "bd_count is 0 though pages fit on the tmpfs"
(($(json_int "$json" failed_writes) > 0)) || fail "failed_writes is 0 after a write failed"
log "the backing file's last error: $(json_val "$json" bd_last_error)"

out=$("$WB_PAGES" check "$NBD_URI" "$TMPD/data" 0 "$written" "$TMPD/bad-pages") ||
    fail "wb-pages check could not run"
log "check: $out"
(($(pages_field "$out" ok) == written / 4096)) ||
    fail "of what was written before ENOSPC, not every page read back intact: $out ($(head -3 "$TMPD/bad-pages"))"
(($(stat_field bd_read_errors) == 0)) || fail "reads from the full backing file failed"

# Free the first 32 MiB (memory or blocks, wherever those pages are), and
# write 8 MiB again at its start.
out=$("$WB_PAGES" trim "$NBD_URI" 0 32M) || fail "wb-pages trim could not run"
[[ $(pages_field "$out" error) == none ]] || fail "trim failed: $out"
head -c $((8 * MiB)) /dev/urandom >"$TMPD/data2"
out=$("$WB_PAGES" write "$NBD_URI" "$TMPD/data2" 0 8M) || fail "wb-pages write could not run"
[[ $(pages_field "$out" error) == none ]] || fail "after a trim of 32 MiB, 8 MiB did not fit: $out"
out=$("$WB_PAGES" check "$NBD_URI" "$TMPD/data2" 0 8M) || fail "wb-pages check could not run"
(($(pages_field "$out" ok) == 2048)) || fail "the 8 MiB written after the trim read back wrong: $out"
out=$("$WB_PAGES" check "$NBD_URI" "$TMPD/data" 32M $((written - 32 * MiB))) ||
    fail "wb-pages check could not run"
(($(pages_field "$out" ok) == (written - 32 * MiB) / 4096)) ||
    fail "after the trim, the rest of the data did not read back intact: $out"

stop_nbd_daemon
log "PASS"
