#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The backing file's header (doc/backing.md, "The header"): a file that
# exists and holds data in its first block without uzram's header is not
# taken for a backing store by mistake.  Over NBD, no root needed:
#
#   1. a 64 KiB file of text: uzramd --backing FILE exits 1 with one line
#      naming the file and --backing-force, and the file is untouched;
#   2. with --backing-force it starts, and the file's first block is now
#      uzram's header (its magic), the text gone; stopped, the file stays;
#   2b. what the file held past its first block is gone (discarded at open);
#   3. that file, with the header, is adopted without --backing-force;
#      pages written back to it are discarded at a clean stop;
#   4. a file of zeros (truncate) is adopted without it too.
#
#   test-writeback-header.sh UZRAMD UZRAMCTL

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

require_cmd nbdinfo nbdcopy sha256sum truncate
require_binaries
require_writeback

make_tmpdir uzit
BACKING=$TMPD/kept.img
MAGIC=$(printf 'UZRAMBK\n' | od -An -tx1 | tr -d ' \n')
magic_of() { head -c 8 "$1" | od -An -tx1 | tr -d ' \n'; }

# 1. Refused.
for i in $(seq 2000); do echo "a user's file, line $i"; done | head -c 65536 >"$BACKING"
before=$(sha256sum <"$BACKING")
expect_start_error 1 "^uzramd: --backing $BACKING: .*--backing-force" --nbd-unix "$TMPD/bad.nbd" \
    --control "$TMPD/bad.sock" --size 1M --backing "$BACKING"
[[ $(grep -vc '^uzramd: warning: ' "$TMPD/err") == 1 ]] ||
    fail "a headerless file: not one line: $(<"$TMPD/err")"
log "refused: $(grep -v '^uzramd: warning: ' "$TMPD/err")"
[[ $(sha256sum <"$BACKING") == "$before" ]] || fail "the refused file was changed"

# 2. Forced.
start_nbd_daemon 1M --backing "$BACKING" --backing-force
[[ $(magic_of "$BACKING") == "$MAGIC" ]] || fail "no uzram header in the adopted file"
grep -qa "a user's file" <(head -c 4096 "$BACKING") && fail "the adopted file's first block still holds the text"
grep -qa "a user's file" "$BACKING" && fail "the adopted file still holds its text past the header (no discard at open)"
stop_nbd_daemon
[[ -f $BACKING ]] || fail "a file uzramd did not create was removed at stop"

# 3. With the header: adopted.  Pages written back to it are discarded at
# a clean stop: the kept file holds nothing past its header.
start_nbd_daemon 1M --backing "$BACKING"
head -c 262144 /dev/urandom >"$TMPD/pages"
nbdcopy --flush "$TMPD/pages" "$NBD_URI" || fail "nbdcopy into the device failed"
"$UZRAMCTL" writeback "$DEV_SOCK" all >/dev/null || fail "uzramctl writeback failed"
past_header() { tail -c +4097 "$BACKING" | tr -d '\0' | wc -c; }
(($(past_header) > 0)) || fail "nothing reached the backing file after a writeback"
stop_nbd_daemon
(($(past_header) == 0)) || fail "the kept file holds $(past_header) nonzero bytes after a clean stop (no discard at close)"

# 4. Zeros: adopted.
rm -f "$BACKING"
truncate -s 2M "$BACKING"
start_nbd_daemon 1M --backing "$BACKING"
[[ $(magic_of "$BACKING") == "$MAGIC" ]] || fail "no uzram header in the adopted file of zeros"
stop_nbd_daemon
log "ok"
