#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A remote tier that goes away and comes back: `nbdkit file` serving a
# persistent file on a Unix socket is the backing store of a 256 MiB device
# with --mem-limit 16M, given random (incompressible) data.
#
#   1. 64 MiB go in; pages were written back (bd_count > 0).
#   2. nbdkit is killed (SIGKILL: no goodbye on the socket).  Reading it
#      all back page by page, the pages on the server fail with EIO, and
#      exactly those (bd_count of them); every other page is intact; the
#      daemon lives and says bd_connected false.  A write of 64 MiB more
#      fails with ENOSPC once memory is truly full, and what it wrote before
#      failing reads back intact.
#   3. nbdkit starts again on the same socket and file.  Within a bounded
#      wait (the backing store retries at most once a second, on use), every
#      page reads back intact, bd_connected is true again, and the rest of
#      the second 64 MiB goes in.
#
# `nbdkit memory` would come back empty; the file plugin brings the data
# back, as a real far-memory server that restarted would.  No root needed.
#
#   test-writeback-disconnect.sh UZRAMD UZRAMCTL WB-PAGES

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

WB_PAGES=${1:?usage: $0 UZRAMD UZRAMCTL WB-PAGES}

require_cmd nbdinfo python3 truncate
require_binaries
require_writeback
require_nbdkit file

make_tmpdir uzit
LIMIT=$((16 * MiB))
HALF=$((64 * MiB))
head -c $((2 * HALF)) /dev/urandom >"$TMPD/data"
BK_SOCK=$TMPD/bk.sock
truncate -s 256M "$TMPD/remote.img"
nbdkit_start "$BK_SOCK" file "$TMPD/remote.img"
start_nbd_daemon 256M --mem-limit 16M --backing "nbd+unix:///?socket=$BK_SOCK"

log "1. 64 MiB with the server up"
wb_fill_half
[[ $(json_bool "$WB_JSON" bd_connected) == true ]] || fail "bd_connected is not true with the server up"

log "2. the server is killed"
nbdkit_stop KILL
rm -f "$BK_SOCK"
# With the server gone nothing moves between memory and it: the pages that
# fail are exactly those on it.
bd_count=$(stat_field bd_count)
check 0 "$HALF" "$TMPD/bad-pages"
eio=$(pages_field "$CHK" eio)
(($(pages_field "$CHK" mismatch) == 0)) || fail "pages read back wrong with the server gone"
(($(pages_field "$CHK" error) == 0)) || fail "pages failed with an error other than EIO: $CHK"
((eio > 0)) || fail "no page failed with the server gone and $bd_count pages on it"
((eio == bd_count)) || fail "$eio pages failed, but $bd_count are on the server"
(($(pages_field "$CHK" ok) + eio == HALF / 4096)) || fail "pages unaccounted for: $CHK"
require_alive "reads with the backing server gone"
json=$(stat_json)
wb_log "$json"
[[ $(json_bool "$json" bd_connected) == false ]] || fail "bd_connected is not false with the server gone"
(($(json_int "$json" bd_read_errors) > 0)) || fail "bd_read_errors is 0 after $eio pages failed"

sampler_start "$TMPD/samples"
out=$("$WB_PAGES" write "$NBD_URI" "$TMPD/data" "$HALF" "$HALF") || fail "wb-pages write could not run"
sampler_stop
log "write: $out"
[[ $(pages_field "$out" error) == ENOSPC ]] ||
    fail "with the server gone, 64 MiB more did not fail with ENOSPC: $out"
end=$((HALF + $(pages_field "$out" written)))
require_alive "writes with the backing server gone"
check_under_limit "$LIMIT" "the writes with the server gone"
check "$HALF" $((end - HALF))
(($(pages_field "$CHK" ok) == (end - HALF) / 4096)) ||
    fail "what was written with the server gone did not read back intact"

log "3. the server is back"
nbdkit_start "$BK_SOCK" file "$TMPD/remote.img"
# Every page written so far reads back intact, after a few tries at most:
# a read may come before the backing store's next reconnect.  Each try
# reads everything, so the bound is in tries, a second apart.
for ((try = 1; ; try++)); do
    check 0 "$end"
    (($(pages_field "$CHK" ok) == end / 4096)) && break
    ((try < 15)) || fail "after $try full reads with the server back, pages still fail"
    sleep 1
done
json=$(stat_json)
wb_log "$json"
[[ $(json_bool "$json" bd_connected) == true ]] || fail "bd_connected is not true with the server back"
out=$("$WB_PAGES" write "$NBD_URI" "$TMPD/data" "$end" $((2 * HALF - end))) || fail "wb-pages write could not run"
[[ $(pages_field "$out" error) == none ]] || fail "with the server back, the rest did not go in: $out"
check 0 $((2 * HALF))
(($(pages_field "$CHK" ok) == 2 * HALF / 4096)) || fail "the whole 128 MiB did not read back intact"

stop_nbd_daemon
log "PASS"
