#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Writeback to a remote tier: `nbdkit memory 2G` on a Unix socket is the
# backing store of a 256 MiB device with --mem-limit 32M, with the policy
# and format that are not the defaults (--evict-policy zspage: eviction
# through zs_shrink(), seen in pages_evicted; --backing-format raw):
# test-writeback-file.sh runs the defaults.  256 MiB of real files go in
# with nbdcopy and
#   - mem_used_total (sampled, and mem_used_max) stays within the limit;
#   - pages went to the NBD server (bd_writes, bd_count > 0; bd_connected);
#   - the device reads back identical to the corpus.
# Then, the limit lifted so that only the verbs write back, the verbs with
# --recompress-algorithm zstd, each followed by a full read back (every
# page still identical):
#   idle all                  marks every slot with data (a count > 0);
#   recompress idle           keeps some zstd objects (recompressed > 0);
#   a full read               clears the marks: idle 3600 marks none;
#   idle all, writeback idle --limit 4M
#                             writes back at most 1024 pages, more than 0;
#   writeback huge, recompress huge --threshold 3000
#                             succeed.
#
# No root, FUSE or mount: NBD clients on both sides.

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

require_cmd nbdcopy nbdinfo sha256sum python3 tar
require_binaries
require_writeback
require_nbdkit memory

make_tmpdir uzit
corpus 256
want=$(sha256sum <"$CORPUS" | cut -d' ' -f1)
LIMIT=$((32 * MiB))
BK_SOCK=$TMPD/bk.sock

nbdkit_start "$BK_SOCK" memory 2G
start_nbd_daemon 256M --mem-limit 32M --backing "nbd+unix:///?socket=$BK_SOCK" \
    --evict-policy zspage --backing-format raw --recompress-algorithm zstd

json=$(stat_json)
wb_log "$json"
[[ $(json_bool "$json" bd_connected) == true ]] || fail "bd_connected is not true with nbdkit up"
# The server has 2 GiB; the store never needs more than the device's size.
(($(json_int "$json" bd_blocks) == 256 * MiB / 4096)) ||
    fail "bd_blocks is $(json_int "$json" bd_blocks), not the device's 65536 pages"

# readback WHAT: the whole device must equal the corpus.
readback() {
    local got
    got=$(nbdcopy "$NBD_URI" - | sha256sum | cut -d' ' -f1)
    [[ $got == "$want" ]] || fail "after $1 the device differs from the corpus (sha256 $got, want $want)"
}

copy_in "$LIMIT"

json=$(stat_json)
wb_log "$json"
(($(json_int "$json" bd_writes) > 0)) || fail "bd_writes is 0 after 256 MiB went into 32 MiB"
(($(json_int "$json" bd_count) > 0)) || fail "bd_count is 0 after 256 MiB went into 32 MiB"
# The zspage policy ran: zs_shrink() freed pool pages.
(($(json_int "$json" pages_evicted) > 0)) || fail "pages_evicted is 0 with --evict-policy zspage"
(($(json_int "$json" failed_writes) == 0)) || fail "writes failed with a healthy backing server"
(($(json_int "$json" bd_write_errors) == 0)) || fail "writes to a healthy backing server failed"

sampler_start "$TMPD/samples-read"
readback "the copy in"
sampler_stop
check_under_limit "$LIMIT" "the read back"
(($(stat_field bd_reads) > 0)) || fail "bd_reads is 0 after reading pages written back"

# ---- idle, recompress ----

# No limit from here on: the evict thread stays idle, so the counts below
# are the verbs' own.
"$UZRAMCTL" set "$DEV_SOCK" mem-limit=0 || fail "uzramctl set mem-limit=0 failed"

out=$("$UZRAMCTL" idle "$DEV_SOCK" all) || fail "uzramctl idle all failed: $out"
marked=$(page_count "$out") || fail "uzramctl idle all printed no count: $out"
log "idle all: $out"
((marked > 0)) || fail "idle all marked no slot on a full device"
(($(stat_field idle_pages) > 0)) || fail "idle_pages is 0 after idle all"

out=$("$UZRAMCTL" recompress "$DEV_SOCK" idle) || fail "uzramctl recompress idle failed: $out"
log "recompress idle: $out"
json=$(stat_json)
wb_log "$json"
(($(json_int "$json" recompressed) > 0)) ||
    fail "recompress idle with zstd kept no object from lz4-compressed real files"
readback "recompress idle"

# The read back touched every slot: none has been idle for an hour.
out=$("$UZRAMCTL" idle "$DEV_SOCK" 3600) || fail "uzramctl idle 3600 failed: $out"
marked=$(page_count "$out") || fail "uzramctl idle 3600 printed no count: $out"
((marked == 0)) || fail "idle 3600 marked $marked slots right after every slot was read"

# ---- writeback by hand ----

"$UZRAMCTL" idle "$DEV_SOCK" all >/dev/null || fail "uzramctl idle all failed"
before=$(stat_field bd_writes)
out=$("$UZRAMCTL" writeback "$DEV_SOCK" idle --limit 4M) ||
    fail "uzramctl writeback idle --limit 4M failed: $out"
log "writeback idle --limit 4M: $out"
after=$(stat_field bd_writes)
((after > before)) || fail "writeback idle wrote nothing (bd_writes $before -> $after)"
((after - before <= 4 * MiB / 4096)) ||
    fail "writeback idle --limit 4M wrote $((after - before)) pages, over 1024"

out=$("$UZRAMCTL" writeback "$DEV_SOCK" huge) || fail "uzramctl writeback huge failed: $out"
log "writeback huge: $out"
out=$("$UZRAMCTL" recompress "$DEV_SOCK" huge --threshold 3000) ||
    fail "uzramctl recompress huge --threshold 3000 failed: $out"
log "recompress huge --threshold 3000: $out"
readback "writeback idle and huge"

json=$(stat_json)
wb_log "$json"
(($(json_int "$json" failed_reads) == 0)) || fail "the store counted failed reads"
(($(json_int "$json" bd_read_errors) == 0)) || fail "reads from a healthy backing server failed"

stop_nbd_daemon
log "PASS"
