#!/bin/bash
# SPDX-License-Identifier: MIT
#
# QEMU's NBD client (the block layer behind -drive file=nbd+unix://...):
#   qemu-io   pattern writes and reads, write -z, discard, aio writes in
#             flight together, unaligned I/O, and every result checked
#             (a failed `read -P` prints "Pattern verification failed")
#   qemu-img  map --output=json agrees with what was written;
#             convert -O raw of a file in and of the device out, and
#             compare of the device against the file.

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$0")/../lib/nbd.sh"

require_cmd qemu-io qemu-img python3 sha256sum
require_binaries
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO}

make_tmpdir uznbd
start_nbd_daemon 64M

# qio CMD...: qemu-io with one -c per argument; fails the test if qemu-io
# fails or says anything failed.  The output is left in $TMPD/qio.out.
qio() {
    local args=() c
    for c; do args+=(-c "$c"); done
    if ! qemu-io -f raw "$NBD_URI" "${args[@]}" >"$TMPD/qio.out" 2>&1; then
        cat "$TMPD/qio.out" >&2
        fail "qemu-io $* failed"
    fi
    if grep -Eqi 'fail|error|mismatch' "$TMPD/qio.out"; then
        cat "$TMPD/qio.out" >&2
        fail "qemu-io $* reported a failure"
    fi
}

# Patterns, write -z, discard: each range reads back what it should.
qio 'write -P 0xab 0 1M' 'read -P 0xab 0 1M' \
    'write -z 1M 1M' 'read -P 0 1M 1M' \
    'write -P 0x5c 2M 1M' 'discard 2M 1M' 'read -P 0 2M 1M' \
    'write -P 0x11 3M 64k' 'read -P 0x11 3M 64k' 'read -P 0 3136k 960k'
# A read -P with the wrong pattern must fail, or this test checks nothing.
if qemu-io -f raw "$NBD_URI" -c 'read -P 0xac 0 4k' >"$TMPD/neg.out" 2>&1 &&
    ! grep -q 'Pattern verification failed' "$TMPD/neg.out"; then
    fail "qemu-io read -P with a wrong pattern did not fail: qemu-io checks nothing here"
fi

# Unaligned: a 1-byte and a 3000-byte write across a page boundary.
qio 'write -P 0x77 4095 1' 'read -P 0x77 4095 1' 'read -P 0xab 4094 1' 'read -P 0xab 4096 1' \
    'write -P 0x66 8000 3000' 'read -P 0x66 8000 3000' 'read -P 0xab 11000 1'

# Many writes in flight (aio_write), then read back one by one.
cmds=()
for i in $(seq 0 31); do
    cmds+=("aio_write -P $((i + 1)) $((8 * MiB + i * 65536)) 64k")
done
cmds+=(aio_flush)
for i in $(seq 0 31); do
    cmds+=("read -P $((i + 1)) $((8 * MiB + i * 65536)) 64k")
done
qio "${cmds[@]}"

# qemu-img map: data where written, zero where written as zero or
# discarded or never written.
qemu-img map --output=json -f raw "$NBD_URI" >"$TMPD/map.json" || fail "qemu-img map failed"
python3 - "$TMPD/map.json" <<'EOF' || { cat "$TMPD/map.json" >&2; fail "qemu-img map is wrong"; }
import json, sys
M = 1 << 20
ext = json.load(open(sys.argv[1]))
def at(off):
    for e in ext:
        if e["start"] <= off < e["start"] + e["length"]:
            return e
    sys.exit("no extent at %d" % off)
def want(off, data, zero):
    e = at(off)
    if e["data"] != data or e["zero"] != zero:
        sys.exit("at %d: data %s zero %s, want data %s zero %s"
                 % (off, e["data"], e["zero"], data, zero))
want(0, True, False)              # 0xab
# write -z (qemu sends NO_HOLE without -u): zero; data or not.
if not at(M + 4096)["zero"]:
    sys.exit("the write -z range is not reported zero")
want(2 * M + 4096, False, True)   # discarded
want(3 * M, True, False)          # 0x11
want(4 * M, False, True)          # never written
want(8 * M, True, False)          # the aio writes
want(63 * M, False, True)
EOF

# ---- qemu-img convert and compare ----------------------------------------------

# A 32 MiB file: real data (this script's directory's neighbours), a hole,
# random data, zeros.
{
    head -c 8M /dev/urandom
    head -c 8M /dev/zero
    tar -cf - /usr/share/doc 2>/dev/null | head -c 8M || true
    head -c 4M /dev/urandom
} >"$TMPD/in.raw"
truncate -s 32M "$TMPD/in.raw"
"$NBD_IO" "$NBD_URI" "trim:0:64M" || fail "trimming the device failed"

qemu-img convert -n -f raw -O raw "$TMPD/in.raw" "$NBD_URI" ||
    fail "qemu-img convert in.raw -> $NBD_URI failed"
# compare checks the common 32 MiB and that the device's rest is zeros.
qemu-img compare -f raw -F raw "$TMPD/in.raw" "$NBD_URI" >"$TMPD/cmp.out" 2>&1 || {
    cat "$TMPD/cmp.out" >&2
    fail "qemu-img compare in.raw $NBD_URI: they differ"
}
qemu-img convert -f raw -O raw "$NBD_URI" "$TMPD/out.raw" ||
    fail "qemu-img convert $NBD_URI -> out.raw failed"
[[ $(stat -c %s "$TMPD/out.raw") == $((64 * MiB)) ]] || fail "out.raw is not 64 MiB"
[[ $(head -c 32M "$TMPD/out.raw" | sha256sum) == $(sha256sum <"$TMPD/in.raw") ]] ||
    fail "the first 32 MiB converted out differ from what was converted in"
cmp -s <(tail -c +$((32 * MiB + 1)) "$TMPD/out.raw") <(head -c 32M /dev/zero) ||
    fail "the device's last 32 MiB converted out are not zeros"

# compare must be able to fail: change one byte on the device.
"$NBD_IO" "$NBD_URI" "write:$((20 * MiB + 7)):1:0xfe" || fail "nbd-io write failed"
if qemu-img compare -f raw -F raw "$TMPD/in.raw" "$NBD_URI" >"$TMPD/cmp.out" 2>&1; then
    fail "qemu-img compare found no difference after a byte changed"
fi
# It names the start of the block that differs, not the byte.
at=$(sed -n 's/^Content mismatch at offset \([0-9]*\)!$/\1/p' "$TMPD/cmp.out")
if [[ -z $at ]] || ((at > 20 * MiB + 7 || at <= 19 * MiB)); then
    cat "$TMPD/cmp.out" >&2
    fail "qemu-img compare did not point at the changed byte ($((20 * MiB + 7)))"
fi
require_alive "qemu-io and qemu-img"
stop_nbd_daemon
log "PASS"
