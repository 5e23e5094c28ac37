#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Requests and clients no well-behaved NBD client produces, and after each
# one, proof that nothing else was disturbed: the daemon still runs, a new
# libnbd connection writes and reads back correctly, and 1 MiB written at
# the start (at 100 MiB, where no test writes) is unchanged.
#   nbd-bad edges   (libnbd, strict mode off) past the end, crossing it,
#                   offset overflow, zero lengths, unaligned I/O, unknown
#                   flags, a 33 MiB read, hole chunks and DF, 64 requests
#                   in flight answered in any order
#   nbd-raw TEST    (raw socket) every test it lists: option haggling,
#                   EXPORT_NAME, ABORT, unknown commands and flags, a 64 MiB
#                   write announcement, a 64 MiB read, a write or header cut
#                   off by a disconnect, broken magic and garbage, a 4 GiB
#                   option, a client that hangs up at once

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$0")/../lib/nbd.sh"

require_binaries
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO NBD-BAD NBD-RAW}
NBD_BAD=${2:?usage: $0 UZRAMD UZRAMCTL NBD-IO NBD-BAD NBD-RAW}
NBD_RAW=${3:?usage: $0 UZRAMD UZRAMCTL NBD-IO NBD-BAD NBD-RAW}

make_tmpdir uznbd
start_nbd_daemon 128M

# Data at 100 MiB that no test touches: it must survive them all.
"$NBD_IO" "$NBD_URI" "rand:100M:1M:77" || fail "writing the reference data failed"

# healthy AFTER: the daemon runs, and a fresh connection serves and sees
# the reference data.
round=0
healthy() {
    round=$((round + 1))
    require_alive "$1"
    "$NBD_IO" "$NBD_URI" "rand:120M:64K:$round" "check:120M:64K:$round" "check:100M:1M:77" ||
        fail "after $1, a new connection did not serve correctly"
}

"$NBD_BAD" edges "$NBD_URI" || fail "nbd-bad edges failed"
healthy "nbd-bad edges"

tests=$("$NBD_RAW" --list) || fail "nbd-raw --list failed"
for t in $tests; do
    log "nbd-raw $t"
    "$NBD_RAW" "$t" "$NBD_SOCK" || fail "nbd-raw $t failed"
    healthy "nbd-raw $t"
done

# All of them again at once, with libnbd clients working beside them.
pids=()
for t in $tests; do
    "$NBD_RAW" "$t" "$NBD_SOCK" >"$TMPD/raw-$t.out" 2>&1 &
    pids+=($!)
done
for i in 1 2 3 4; do
    "$NBD_IO" "$NBD_URI" "rand:$((i * 4))M:4M:$i" "check:$((i * 4))M:4M:$i" >"$TMPD/io-$i.out" 2>&1 &
    pids+=($!)
done
bad=0
for p in "${pids[@]}"; do
    wait "$p" || bad=$((bad + 1))
done
if ((bad)); then
    cat "$TMPD"/raw-*.out "$TMPD"/io-*.out >&2
    fail "$bad of the clients run at once failed"
fi
healthy "all the bad clients at once"

# The store counted the requests it refused, none as a failed write.
json=$(stat_json)
failed=$(($(json_int "$json" failed_reads) + $(json_int "$json" failed_writes)))
((failed == 0)) || fail "the store counted $failed failed reads/writes for refused requests"
stop_nbd_daemon
log "PASS"
