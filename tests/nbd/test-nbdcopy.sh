#!/bin/bash
# SPDX-License-Identifier: MIT
#
# nbdcopy of 256 MiB of real files (the corpus of tools/bench/corpus.sh, a
# tar of /usr/lib and /usr/share: code and text that compress the way real
# data does) into a 512 MiB device and back out, over the Unix socket and
# over TCP on loopback, both served by one daemon at once:
#   in over Unix, out over Unix (to a file) and out over TCP (to a pipe):
#     both equal to the corpus, and the device's other 256 MiB zeros;
#   trimmed, then in over TCP and out over Unix: equal again.
# nbdcopy uses several connections and many requests in flight on each, so
# this also checks that replies out of order reach the right request.

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$0")/../lib/nbd.sh"

require_cmd nbdcopy nbdinfo sha256sum python3 tar
require_binaries
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO}

make_tmpdir uznbd
corpus 256
CORPUS_SIZE=$((256 * MiB))
want=$(sha256sum <"$CORPUS" | cut -d' ' -f1)
zeros=$(head -c "$CORPUS_SIZE" /dev/zero | sha256sum | cut -d' ' -f1)
# The whole 512 MiB device after the copy in: the corpus, then zeros.
want_dev=$({ cat "$CORPUS"; head -c "$CORPUS_SIZE" /dev/zero; } | sha256sum | cut -d' ' -f1)

port=$(free_tcp_port) || fail "no free TCP port"
start_nbd_daemon 512M --nbd-tcp "127.0.0.1:$port" --tls=off
TCP_URI="nbd://127.0.0.1:$port/"
size=$(nbdinfo --size "$TCP_URI") || fail "nbdinfo over TCP ($TCP_URI) failed"
((size == 512 * MiB)) || fail "over TCP the size is $size, not 512 MiB"

# halves FILE: the sha256 of its first 256 MiB and of the rest.
halves() {
    local f=$1
    printf '%s %s\n' "$(head -c "$CORPUS_SIZE" "$f" | sha256sum | cut -d' ' -f1)" \
        "$(tail -c +$((CORPUS_SIZE + 1)) "$f" | sha256sum | cut -d' ' -f1)"
}

log "nbdcopy in over Unix"
nbdcopy --flush "$CORPUS" "$NBD_URI" || fail "nbdcopy $CORPUS $NBD_URI failed"
require_alive "nbdcopy in"

log "nbdcopy out over Unix"
nbdcopy "$NBD_URI" "$TMPD/out.raw" || fail "nbdcopy $NBD_URI out.raw failed"
[[ $(stat -c %s "$TMPD/out.raw") == $((512 * MiB)) ]] || fail "out.raw is not 512 MiB"
read -r first second < <(halves "$TMPD/out.raw")
[[ $first == "$want" ]] || fail "the corpus copied out over Unix differs (sha256 $first, want $want)"
[[ $second == "$zeros" ]] || fail "the device's unwritten half is not zeros"
rm -f "$TMPD/out.raw"

log "nbdcopy out over TCP"
got=$(nbdcopy "$TCP_URI" - | sha256sum | cut -d' ' -f1)
[[ $got == "$want_dev" ]] || fail "the corpus copied out over TCP differs (sha256 $got, want $want)"

# Trim, check it is empty, and copy in over TCP this time.
"$NBD_IO" "$NBD_URI" "trim:0:512M" || fail "trimming the device failed"
map=$(nbdinfo --map --totals --json "$NBD_URI") || fail "nbdinfo --map --totals failed"
python3 -c '
import json, sys
t = json.loads(sys.argv[1])
hole = sum(e["size"] for e in t if e["type"] & 1)
assert hole == 512 << 20, t
' "$map" || fail "after trimming it all the device is not all hole: $map"

log "nbdcopy in over TCP, out over Unix"
nbdcopy "$CORPUS" "$TCP_URI" || fail "nbdcopy $CORPUS $TCP_URI failed"
got=$(nbdcopy "$NBD_URI" - | sha256sum | cut -d' ' -f1)
[[ $got == "$want_dev" ]] || fail "the corpus copied in over TCP differs (sha256 $got, want $want)"

# The store agrees: 256 MiB of data stored, none of it failed.
json=$(stat_json)
orig=$(json_int "$json" orig_data_size)
failed=$(($(json_int "$json" failed_reads) + $(json_int "$json" failed_writes)))
log "orig_data_size $orig, compr_data_size $(json_int "$json" compr_data_size)"
((failed == 0)) || fail "the store counted $failed failed reads/writes"
((orig <= CORPUS_SIZE)) || fail "orig_data_size $orig is more than the corpus"
((orig >= CORPUS_SIZE / 2)) || fail "orig_data_size $orig: the corpus was not stored"
require_alive "the copies"
stop_nbd_daemon
log "PASS"
