#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Sealed blocks (doc/backing.md, "Sealed blocks"): whoever can read or
# write the backing file neither reads the pages in it nor makes uzramd
# return a page it did not write.  uzramd serves 256 KiB (64 pages) over
# NBD with --backing FILE (64 blocks); 32 pages of a recognisable text and
# 32 of random bytes (stored raw) go in, and `uzramctl writeback all` puts
# every one in the file, slot i in block i (next-fit from block 0), at
# file block i + 1 (block 0 is the header).  Then,
# with the daemon running:
#
#   1. the file holds no trace of the text (grep), though its blocks hold
#      data;
#   2. block 5 is overwritten with random bytes, block 40 (a raw page) is
#      replaced by wb-forge with a different block that has the same
#      unkeyed 24-bit checksum as the one there (the attack of issue 12,
#      which the old checksum let through as the user's data), and block
#      7's content is copied onto block 6 (a page replayed at another
#      index): pages 5, 40 and 6 read as EIO, counted in bd_bad_sums (3),
#      and the 61 others read back intact;
#   3. page 9 is written anew and written back, into block 9 again (the
#      only free block; next-fit has wrapped), and reads back; block 9's
#      older content, saved before, is put back (a replayed older write of
#      the same block): page 9 reads as EIO, and bd_bad_sums is 4.
#
# Data is written and checked through NBD (wb-pages), so no root is needed.
#
#   test-writeback-seal.sh UZRAMD UZRAMCTL WB-PAGES WB-FORGE

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

WB_PAGES=${1:?usage: $0 UZRAMD UZRAMCTL WB-PAGES WB-FORGE}
WB_FORGE=${2:?usage: $0 UZRAMD UZRAMCTL WB-PAGES WB-FORGE}

require_cmd nbdinfo python3 dd grep
require_binaries
require_writeback

make_tmpdir uzit
PG=4096
NPAGES=64
SIZE=$((NPAGES * PG))
TEXT=UZRAM-SEAL-PATTERN
BACKING=$TMPD/backing.img

# Page i of the first half: "UZRAM-SEAL-PATTERN-i " over and over
# (compressible, so the store writes compressed objects back, and
# recognisable in any of them); the second half: random, stored raw.
python3 -c '
import os, sys
pg, n, text = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = bytearray()
for i in range(n // 2):
    unit = ("%s-%d " % (text, i)).encode()
    out += (unit * (pg // len(unit) + 1))[:pg]
out += os.urandom(pg * (n - n // 2))
sys.stdout.buffer.write(out)' "$PG" "$NPAGES" "$TEXT" >"$TMPD/data"

# block N [FILE]: the store's 4 KiB block N of the backing file (after its
# header block), into FILE or stdout.
block() { dd if="$BACKING" bs=$PG skip=$(($1 + 1)) count=1 status=none ${2:+of="$2"}; }
# put_block N FILE: FILE's first 4 KiB into the store's block N of the backing file.
put_block() { dd if="$2" of="$BACKING" bs=$PG seek=$(($1 + 1)) count=1 conv=notrunc status=none; }
# check FILE OFF LEN: wb-pages check of [OFF, OFF + LEN) against FILE; prints its line.
check() {
    "$WB_PAGES" check "$NBD_URI" "$1" "$2" "$3" "$TMPD/bad" || fail "wb-pages check could not run"
}

start_nbd_daemon $SIZE --backing "$BACKING"
out=$("$WB_PAGES" write "$NBD_URI" "$TMPD/data" 0 $SIZE) || fail "wb-pages write could not run"
[[ $(pages_field "$out" error) == none ]] || fail "writing the pages failed: $out"
out=$("$UZRAMCTL" writeback "$DEV_SOCK" all) || fail "uzramctl writeback all failed: $out"
json=$(stat_json)
wb_log "$json"
(($(json_int "$json" bd_count) == NPAGES)) ||
    fail "bd_count is $(json_int "$json" bd_count), not all $NPAGES pages"
(($(json_int "$json" bd_meta_bytes) >= NPAGES * 24)) ||
    fail "bd_meta_bytes is $(json_int "$json" bd_meta_bytes): the seals of $NPAGES blocks take 24 bytes each"

# 1. No plaintext in the file, but data in every block.
log "grep the backing file for the text"
if grep -qa -- "$TEXT" "$BACKING"; then
    fail "the backing file holds the client's text in clear"
fi
zeros=$(head -c $PG /dev/zero | sha256sum)
for i in 0 5 9 40 $((NPAGES - 1)); do
    [[ $(block $i | sha256sum) != "$zeros" ]] || fail "block $i of the backing file is zeros"
done
block 9 "$TMPD/old9"

# 2. Forged pages and a page replayed at another index.
log "forge blocks 5 and 40, copy block 7 onto block 6"
head -c $PG /dev/urandom >"$TMPD/forged"
put_block 5 "$TMPD/forged"
block 40 "$TMPD/b40"
out=$("$WB_FORGE" "$BACKING" 41) || fail "wb-forge could not forge block 40"
log "wb-forge: $out"
cmp -s <(block 40) "$TMPD/b40" && fail "wb-forge left block 40 as it was"
block 7 "$TMPD/b7"
put_block 6 "$TMPD/b7"
out=$(check "$TMPD/data" 0 $SIZE)
log "$out"
[[ $(pages_field "$out" ok) == $((NPAGES - 3)) && $(pages_field "$out" eio) == 3 &&
    $(pages_field "$out" mismatch) == 0 && $(pages_field "$out" error) == 0 ]] ||
    fail "after forging blocks 5, 40 and replaying block 7 on block 6: $out (want ok=$((NPAGES - 3)) eio=3)"
[[ $(cut -d' ' -f1 "$TMPD/bad" | sort -n | tr '\n' ' ') == "5 6 40 " ]] ||
    fail "the pages that failed are not 5, 6 and 40: $(cat "$TMPD/bad")"
json=$(stat_json)
(($(json_int "$json" bd_bad_sums) == 3)) ||
    fail "bd_bad_sums is $(json_int "$json" bd_bad_sums), not 3"
require_alive "the forged reads"

# 3. An older write of the same block, put back.
log "rewrite page 9, write it back into block 9, then put block 9's older content back"
cp "$TMPD/data" "$TMPD/data2"
head -c $PG /dev/urandom | dd of="$TMPD/data2" bs=$PG seek=9 count=1 conv=notrunc status=none
out=$("$WB_PAGES" write "$NBD_URI" "$TMPD/data2" $((9 * PG)) $PG) || fail "wb-pages write could not run"
[[ $(pages_field "$out" error) == none ]] || fail "rewriting page 9 failed: $out"
out=$("$UZRAMCTL" writeback "$DEV_SOCK" all) || fail "uzramctl writeback all failed: $out"
(($(stat_field bd_count) == NPAGES)) || fail "page 9 was not written back again"
cmp -s <(block 9) "$TMPD/old9" && fail "block 9 still holds its older content: page 9 went elsewhere"
out=$(check "$TMPD/data2" $((9 * PG)) $PG)
[[ $(pages_field "$out" ok) == 1 ]] || fail "page 9, written back anew, does not read back: $out"
put_block 9 "$TMPD/old9"
out=$(check "$TMPD/data2" $((9 * PG)) $PG)
log "$out"
[[ $(pages_field "$out" eio) == 1 ]] || fail "block 9's older write, put back, was not refused: $out"
(($(stat_field bd_bad_sums) == 4)) || fail "bd_bad_sums is $(stat_field bd_bad_sums), not 4"
# The rest still reads back (pages 5, 6, 40 still fail).
out=$(check "$TMPD/data2" 0 $SIZE)
[[ $(pages_field "$out" ok) == $((NPAGES - 4)) && $(pages_field "$out" mismatch) == 0 ]] ||
    fail "after the replays: $out (want ok=$((NPAGES - 4)))"
require_alive "the replayed reads"
stop_nbd_daemon
log "ok"
