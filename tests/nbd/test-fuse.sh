#!/bin/bash
# SPDX-License-Identifier: MIT
#
# One device, two front ends at once: the FUSE file and the NBD socket
# serve the same store.  What is written through one reads back through
# the other, a trim over NBD reads as zeros in the file, and the NBD map
# sees what the file wrote.  Needs root and /dev/fuse (the FUSE mount);
# the other NBD tests do not.

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$0")/../lib/nbd.sh"

require_root
require_fuse
require_cmd nbdinfo python3 dd cmp
require_binaries
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO}

make_tmpdir uznbd
NBD_SOCK=$TMPD/nbd.sock
NBD_URI=$(nbd_unix_uri "$NBD_SOCK")
start_daemon 64M --nbd-unix "$NBD_SOCK"
[[ -S $NBD_SOCK ]] || fail "uzramd returned before its NBD socket existed"

# NBD -> FUSE -> NBD: seeded data written over NBD is read through the
# file, the range trimmed over NBD, the bytes the file gave written back
# through it, and checked over NBD: only exact bytes survive the round trip.
"$NBD_IO" "$NBD_URI" "rand:0:3M:9" || fail "writing over NBD failed"
dd if="$DEV_FILE" bs=1M count=3 iflag=direct status=none >"$TMPD/via-fuse" ||
    fail "reading the FUSE file failed"
"$NBD_IO" "$NBD_URI" "trim:0:3M" "read:0:3M:0" || fail "trim over NBD failed"
dd if="$TMPD/via-fuse" of="$DEV_FILE" bs=1M oflag=direct conv=notrunc status=none ||
    fail "writing the FUSE file failed"
"$NBD_IO" "$NBD_URI" "check:0:3M:9" ||
    fail "the FUSE file did not give back exactly what NBD wrote"

# FUSE -> NBD: a pattern written through the file, checked over NBD.
python3 -c 'import sys; sys.stdout.buffer.write(b"\xa5" * (1 << 20))' >"$TMPD/a5"
dd if="$TMPD/a5" of="$DEV_FILE" bs=1M seek=8 oflag=direct conv=notrunc status=none ||
    fail "writing the FUSE file failed"
"$NBD_IO" "$NBD_URI" "read:8M:1M:0xa5" || fail "what the FUSE file wrote does not read back over NBD"

# A trim over NBD reads as zeros through the file.
"$NBD_IO" "$NBD_URI" "trim:8M:1M" || fail "trim over NBD failed"
cmp -s <(dd if="$DEV_FILE" bs=1M skip=8 count=1 iflag=direct status=none) <(head -c 1M /dev/zero) ||
    fail "the range trimmed over NBD does not read as zeros through the FUSE file"

# The NBD map sees what was written: data in [0, 3M), hole at 8M.
map=$(nbdinfo --map --json "$NBD_URI") || fail "nbdinfo --map failed"
python3 -c '
import json, sys
m = json.loads(sys.argv[1])
def t(off):
    for e in m:
        if e["offset"] <= off < e["offset"] + e["length"]:
            return e["type"]
assert t(0) == 0 and t((3 << 20) - 1) == 0, m
assert t(8 << 20) == 3, m
' "$map" || fail "nbdinfo --map disagrees with the FUSE writes: $map"
require_alive "using both front ends"
stop_nbd_daemon
log "PASS"
