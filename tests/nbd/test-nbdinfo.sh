#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What nbdinfo sees: the size, every --can flag the issue lists, --is
# read-only with and without --read-only, the export list, and --map as the
# device changes:
#   empty                    one extent, hole+zero (3), over all of it
#   data written             data (0) exactly where written, rounded out to
#                            4 KiB pages (an unaligned write dirties whole
#                            pages), hole+zero elsewhere
#   zeros written by WRITE   zero (2), not a hole: a same-filled page
#   WRITE_ZEROES             a hole (3); with NO_HOLE zero (2) but no hole
#   trimmed                  hole+zero (3) again
# The map is compared page by page over the whole device (nbdinfo may split
# a run of one type in several extents), so an extent that is wrong
# anywhere fails the test.

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$0")/../lib/nbd.sh"

require_cmd nbdinfo python3
require_binaries
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO}

make_tmpdir uznbd
SIZE=$((64 * MiB))
start_nbd_daemon 64M

# ---- size and flags ---------------------------------------------------------

size=$(nbdinfo --size "$NBD_URI") || fail "nbdinfo --size failed"
[[ $size == "$SIZE" ]] || fail "nbdinfo --size says '$size', want $SIZE"

# can FLAG WANT: nbdinfo --can FLAG must exit WANT (0 yes, 2 no).
can() {
    local rc=0
    nbdinfo --can "$1" "$NBD_URI" || rc=$?
    [[ $rc == "$2" ]] || fail "nbdinfo --can $1 exited $rc, want $2"
}
is() {
    local rc=0
    nbdinfo --is "$1" "$NBD_URI" || rc=$?
    [[ $rc == "$2" ]] || fail "nbdinfo --is $1 exited $rc, want $2"
}
for flag in connect read write flush fua trim zero fast-zero df multi-conn cache structured-reply; do
    can "$flag" 0
done
is read-only 2

json=$(nbdinfo --json "$NBD_URI") || fail "nbdinfo --json failed"
python3 - "$json" "$SIZE" <<'EOF' || fail "nbdinfo --json: $json"
import json, sys
o = json.loads(sys.argv[1])
assert o["protocol"] == "newstyle-fixed", o["protocol"]
assert o["structured"] is True
ex = o["exports"]
assert len(ex) == 1, ex
e = ex[0]
assert e["export-size"] == int(sys.argv[2]), e["export-size"]
assert "base:allocation" in e.get("contexts", []), e.get("contexts")
for k in ("can_cache", "can_df", "can_fast_zero", "can_flush", "can_fua",
          "can_multi_conn", "can_trim", "can_zero"):
    assert e[k] is True, k
assert e["is_read_only"] is False
EOF

# The default export "" is listed.
list=$(nbdinfo --list --json "$NBD_URI") || fail "nbdinfo --list failed"
python3 -c '
import json, sys
o = json.loads(sys.argv[1])
names = [e["export-name"] for e in o["exports"]]
assert "" in names, names
' "$list" || fail "nbdinfo --list does not name the default export: $list"

# ---- the map ------------------------------------------------------------------

# check_map WHAT EXPECTED: the merged map of the whole device must be
# EXPECTED, "start:length:type ..." (bytes; types as nbdinfo: 0 data,
# 2 zero, 3 hole+zero; "z" for "2 or 3").
check_map() {
    local what=$1 want=$2 out
    out=$(nbdinfo --map --json "$NBD_URI") || fail "$what: nbdinfo --map failed"
    python3 - "$out" "$want" "$SIZE" <<'EOF' || fail "$what: the map is wrong"
import json, sys
got = json.loads(sys.argv[1])
size = int(sys.argv[3])
PAGE = 4096
# The type of every 4 KiB page, from nbdinfo's extents, which must tile the
# device on page boundaries (the store's slots).
pages = []
pos = 0
for e in got:
    if e["offset"] != pos:
        sys.exit("extent at %d, expected one at %d: %r" % (e["offset"], pos, got))
    if e["offset"] % PAGE or e["length"] % PAGE:
        sys.exit("extent %r is not on 4 KiB page boundaries" % (e,))
    pos += e["length"]
    pages += [e["type"]] * (e["length"] // PAGE)
if pos != size:
    sys.exit("the map covers %d bytes, not %d" % (pos, size))
def runs(types):
    out, start = [], 0
    for i in range(1, len(types) + 1):
        if i == len(types) or types[i] != types[start]:
            out.append("%d:%d:%s" % (start * PAGE, (i - start) * PAGE, types[start]))
            start = i
    return " ".join(out)
want = []
for w in sys.argv[2].split():
    s, l, t = w.split(":")
    want += [t] * (int(l) // PAGE)
if len(want) != len(pages):
    sys.exit("bad expectation: %d pages for a %d-page device" % (len(want), len(pages)))
for i, (w, t) in enumerate(zip(want, pages)):
    if (w == "z" and t not in (2, 3)) or (w != "z" and int(w) != t):
        sys.exit("page at %d is type %d, want %s\ngot  %s\nwant %s"
                 % (i * PAGE, t, w, runs(pages), sys.argv[2]))
EOF
}

M=$MiB
check_map "empty device" "0:$SIZE:3"

# Data at [1M, 2M) and an unaligned 4196 bytes at 8M+100, which touches
# the pages [8M, 8M+8K).
"$NBD_IO" "$NBD_URI" "write:1M:1M:0xab" "write:$((8 * M + 100)):4196:0xcd" ||
    fail "nbd-io: writing data failed"
check_map "after writing data" \
    "0:$M:3 $M:$M:0 $((2 * M)):$((6 * M)):3 $((8 * M)):8192:0 $((8 * M + 8192)):$((SIZE - 8 * M - 8192)):3"

# Zeros written with WRITE: same-filled pages, zero but not hole.
"$NBD_IO" "$NBD_URI" "write:16M:1M:0" || fail "nbd-io: writing zeros failed"
check_map "after writing zeros" \
    "0:$M:3 $M:$M:0 $((2 * M)):$((6 * M)):3 $((8 * M)):8192:0 $((8 * M + 8192)):$((8 * M - 8192)):3 $((16 * M)):$M:2 $((17 * M)):$((SIZE - 17 * M)):3"

# Overwrite the first data MiB with zeros: data becomes zero (2).
"$NBD_IO" "$NBD_URI" "write:1M:1M:0" || fail "nbd-io: overwriting with zeros failed"
check_map "after overwriting data with zeros" \
    "0:$M:3 $M:$M:2 $((2 * M)):$((6 * M)):3 $((8 * M)):8192:0 $((8 * M + 8192)):$((8 * M - 8192)):3 $((16 * M)):$M:2 $((17 * M)):$((SIZE - 17 * M)):3"

# Data again at [1M, 2M), then WRITE_ZEROES: reads as zero, and may trim.
"$NBD_IO" "$NBD_URI" "write:1M:1M:0xab" "zero:1M:1M" "read:1M:1M:0" ||
    fail "nbd-io: WRITE_ZEROES over data failed or did not read back as zeros"
# WRITE_ZEROES with NO_HOLE over data at [32M, 33M): reads as zero, and the
# spec forbids a hole there: zero-filled pages (2), which cost no memory.
"$NBD_IO" "$NBD_URI" "write:32M:1M:0x11" "zero-nohole:32M:1M" "read:32M:1M:0" ||
    fail "nbd-io: WRITE_ZEROES NO_HOLE failed or did not read back as zeros"
check_map "after WRITE_ZEROES" \
    "0:$M:3 $M:$M:3 $((2 * M)):$((6 * M)):3 $((8 * M)):8192:0 $((8 * M + 8192)):$((8 * M - 8192)):3 $((16 * M)):$M:2 $((17 * M)):$((15 * M)):3 $((32 * M)):$M:2 $((33 * M)):$((SIZE - 33 * M)):3"

# Trim everything written: one hole again.
"$NBD_IO" "$NBD_URI" "trim:0:$SIZE" "read:0:32M:0" "read:32M:32M:0" ||
    fail "nbd-io: trimming the device failed or it did not read back as zeros"
check_map "after trimming all" "0:$SIZE:3"

# A trim of part of a page leaves it data (its other bytes are kept).
"$NBD_IO" "$NBD_URI" "write:4M:8K:0x5e" "trim:$((4 * M + 100)):8000" \
    "read:$((4 * M)):100:0x5e" "read:$((4 * M + 100)):8000:0" "read:$((4 * M + 8100)):92:0x5e" ||
    fail "nbd-io: a partial-page trim changed the wrong bytes"

require_alive "the nbdinfo checks"

# ---- read-only -----------------------------------------------------------------

stop_nbd_daemon
start_nbd_daemon 64M --read-only
can write 2
is read-only 0
can connect 0
size=$(nbdinfo --size "$NBD_URI") || fail "nbdinfo --size failed on the read-only export"
[[ $size == "$SIZE" ]] || fail "nbdinfo --size says '$size' read-only, want $SIZE"
check_map "empty read-only device" "0:$SIZE:3"
stop_nbd_daemon
log "PASS"
