#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A remote tier that returns I/O errors: nbdkit memory behind its error
# filter, with EIO on every write while $TMPD/pwrite-err exists and on
# every read while $TMPD/pread-err exists (nbdkit-error-filter(1)).  The
# device is 256 MiB with --mem-limit 16M; the data is random (incompressible
# pages, so the arithmetic of what fits is simple).
#
#   1. No errors: 64 MiB go in; pages were written back (bd_count > 0).
#   2. Writes fail on the server: 64 MiB more do not fit; the write fails
#      with ENOSPC once memory is truly full (after waiting for an eviction
#      that cannot succeed), bd_write_errors > 0, and everything written so
#      far reads back intact: the pages the evict path failed to move are
#      still in memory.
#   3. Reads fail on the server too: reading it all back page by page, the
#      pages that are on the server fail with EIO, and only those: none of
#      phase 2's (they never reached the server), bd_count of them;
#      every other page is intact; the daemon keeps serving.
#   4. Errors off: every page reads back intact, and the rest of the second
#      64 MiB now goes in (eviction works again).
#
# No root needed.  wb-pages is the client (1 MiB writes that stop at the
# first failure; reads page by page).
#
#   test-writeback-ioerr.sh UZRAMD UZRAMCTL WB-PAGES

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

WB_PAGES=${1:?usage: $0 UZRAMD UZRAMCTL WB-PAGES}

require_cmd nbdinfo python3
require_binaries
require_writeback
require_nbdkit memory error

make_tmpdir uzit
LIMIT=$((16 * MiB))
HALF=$((64 * MiB))
head -c $((2 * HALF)) /dev/urandom >"$TMPD/data"
BK_SOCK=$TMPD/bk.sock
nbdkit_start "$BK_SOCK" --filter=error memory 1G error=EIO \
    error-pwrite-rate=100% error-pwrite-file="$TMPD/pwrite-err" \
    error-pread-rate=100% error-pread-file="$TMPD/pread-err"
start_nbd_daemon 256M --mem-limit 16M --backing "nbd+unix:///?socket=$BK_SOCK"

log "1. 64 MiB with a healthy server"
wb_fill_half

log "2. writes fail on the server"
touch "$TMPD/pwrite-err"
sampler_start "$TMPD/samples"
out=$("$WB_PAGES" write "$NBD_URI" "$TMPD/data" "$HALF" "$HALF") || fail "wb-pages write could not run"
sampler_stop
log "write: $out"
[[ $(pages_field "$out" error) == ENOSPC ]] ||
    fail "with the server refusing writes, 64 MiB more did not fail with ENOSPC: $out"
written=$(pages_field "$out" written)
end=$((HALF + written))
require_alive "writes failing on the backing server"
check_under_limit "$LIMIT" "the failing writes"
json=$(stat_json)
wb_log "$json"
(($(json_int "$json" bd_write_errors) > 0)) || fail "bd_write_errors is 0 with the server refusing writes"
check 0 "$end"
(($(pages_field "$CHK" ok) == end / 4096)) || fail "with writes failing, data written before did not read back intact"

log "3. reads fail on the server too"
touch "$TMPD/pread-err"
# From now on nothing moves between memory and the server: no write to it
# and no read from it succeeds.  So the pages that fail are exactly those
# on it.
bd_count=$(stat_field bd_count)
check 0 "$end" "$TMPD/bad-pages"
eio=$(pages_field "$CHK" eio)
ok=$(pages_field "$CHK" ok)
(($(pages_field "$CHK" mismatch) == 0)) || fail "pages read back wrong with the server refusing reads"
(($(pages_field "$CHK" error) == 0)) || fail "pages failed with an error other than EIO: $CHK"
((eio > 0)) || fail "no page failed though the server refuses reads and $bd_count pages are on it"
((eio == bd_count)) || fail "$eio pages failed, but $bd_count are on the server"
((ok + eio == end / 4096)) || fail "pages unaccounted for: $CHK"
# Only pages of phase 1 can be on the server: phase 2's never got there.
bad_max=$(sort -n "$TMPD/bad-pages" | tail -n 1 | cut -d' ' -f1)
((bad_max < HALF / 4096)) || fail "page $bad_max, written while the server refused writes, failed to read"
require_alive "reads failing on the backing server"
json=$(stat_json)
wb_log "$json"
(($(json_int "$json" bd_read_errors) > 0)) || fail "bd_read_errors is 0 after $eio pages failed"

log "4. the server is healthy again"
rm -f "$TMPD/pread-err" "$TMPD/pwrite-err"
check 0 "$end"
(($(pages_field "$CHK" ok) == end / 4096)) || fail "with the errors gone, not every page read back intact"
out=$("$WB_PAGES" write "$NBD_URI" "$TMPD/data" "$end" $((2 * HALF - end))) || fail "wb-pages write could not run"
[[ $(pages_field "$out" error) == none ]] || fail "with the server healthy again, the rest did not go in: $out"
check 0 $((2 * HALF))
(($(pages_field "$CHK" ok) == 2 * HALF / 4096)) || fail "the whole 128 MiB did not read back intact"
json=$(stat_json)
wb_log "$json"

stop_nbd_daemon
log "PASS"
