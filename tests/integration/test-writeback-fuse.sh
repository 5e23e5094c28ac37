#!/bin/bash
# SPDX-License-Identifier: MIT
#
# `uzramctl writeback` and `uzramctl recompress` on a device served through
# FUSE, with the reserve it has by default there (uzramd(8), SWAP).  With a
# reserve, a request's thread never makes its store context on the spot: it
# takes one of those made ahead (--threads of them).  FUSE runs more
# threads than that as soon as writes come in parallel (dd with 1 MiB
# direct writes does), and each keeps the context it took; the control
# server's job thread then found none and both jobs failed at once with
# ENOMEM ("failed before any page was written").  A job is not on the I/O
# path, so it makes its context if need be.
#
#   1. 16 MiB of random data (1 MiB direct writes) and 16 MiB of text go
#      in through the FUSE file; every page is marked idle.
#   2. recompress idle succeeds; recompress idle --bundle bundles pages of
#      the text (the cold tier through FUSE), which read back identical
#      through the file, each out of its bundle, still bundled after.
#   3. writeback all writes every page that holds data, bundled ones
#      included, and leaves no bundle.
#   4. The file reads back identical, now from the backing file.
#
#   test-writeback-fuse.sh UZRAMD UZRAMCTL

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

require_root
require_fuse
require_cmd cmp dd
require_binaries
require_writeback

make_tmpdir uzit
head -c $((16 * MiB)) /dev/urandom >"$TMPD/data"
# Text: compresses, and zstd may keep some of it recompressed.
python3 -c '
import sys
text = "".join("line %09d of a text that compresses well ...\n" % i for i in range(400000))
sys.stdout.write(text[:16 * 1024 * 1024])' >>"$TMPD/data"
start_daemon 64M --backing "$TMPD/backing.img" --recompress-algorithm zstd
(($(stat_field reserve) > 0)) || fail "no reserve: this test needs the default one"

dd if="$TMPD/data" of="$DEV_FILE" bs=1M oflag=direct conv=notrunc status=none ||
    fail "dd onto $DEV_FILE failed"
"$UZRAMCTL" idle "$DEV_SOCK" all >/dev/null || fail "uzramctl idle all failed"

out=$("$UZRAMCTL" recompress "$DEV_SOCK" idle 2>&1) || fail "uzramctl recompress idle: $out"
log "recompress idle: $out"
"$UZRAMCTL" idle "$DEV_SOCK" all >/dev/null || fail "uzramctl idle all failed"
out=$("$UZRAMCTL" recompress "$DEV_SOCK" idle --bundle 2>&1) || fail "uzramctl recompress idle --bundle: $out"
log "recompress idle --bundle: $out"
bundled=$(stat_field bundled_pages)
((bundled > 0)) || fail "recompress idle --bundle bundled no page of 16 MiB of text: $out"
cmp <(dd if="$DEV_FILE" bs=1M count=32 iflag=direct status=none) "$TMPD/data" ||
    fail "the device reads back different after bundling"
(($(stat_field bundle_reads) >= bundled)) ||
    fail "bundle_reads is $(stat_field bundle_reads) after reading $bundled bundled pages"
(($(stat_field bundled_pages) == bundled)) || fail "a first read through FUSE took pages out of bundles"

out=$("$UZRAMCTL" writeback "$DEV_SOCK" all --json 2>&1) || fail "uzramctl writeback all: $out"
log "writeback all: $out"
(($(json_int "$out" written) == 8192)) || fail "writeback all did not write all 8192 pages: $out"
(($(stat_field bd_count) == 8192)) || fail "bd_count is $(stat_field bd_count), not 8192"
(($(stat_field bundles) == 0 && $(stat_field bundled_pages) == 0)) ||
    fail "bundles left after writeback all: $(stat_field bundles) of $(stat_field bundled_pages) pages"

cmp <(dd if="$DEV_FILE" bs=1M count=32 iflag=direct status=none) "$TMPD/data" ||
    fail "the device reads back different from what was written"

stop_daemon
cleanup_pop
log "PASS"
