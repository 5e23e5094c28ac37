#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What `uzramctl writeback` and `uzramctl recompress` show while they run
# and when they end (uzramctl(8), "Long jobs"): a 64 MiB device over NBD,
# with zstd as its second codec and, as its backing store, nbdkit's memory
# plugin behind the delay filter (2 ms a write), so that writing back 1,024
# pages lasts at least two seconds, several of uzramctl's 200 ms ticks,
# whatever the machine.  Each step first writes the same 4 MiB of random
# pages through NBD (nbdcopy), so that all 1,024 are in memory again.
#
#   1. On a terminal (`script`): the progress line, "NAME: writeback: D of
#      1024 pages, R MB/s", redrawn in place (a carriage return before it),
#      then the summary, "NAME: 1024 pages written back (4M) in T s, R MB/s".
#   2. Not on a terminal: the summary alone, one line, no carriage return.
#   3. --json, on a terminal too: one JSON object and nothing else, with
#      written = selected = done = 1024 and bytes = 4 MiB.
#   4. recompress --json after `idle all`: selected and done count the idle
#      pages, recompressed at most as many.
#   5. The daemon's `progress` verb after the jobs: job=none, the last
#      job's figures.
#   6. `uzramctl set mem-limit=4K`, below what the device holds: set, with
#      a warning that pages go to the backing store.
# No root needed.
#
#   test-writeback-progress.sh UZRAMD UZRAMCTL

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

require_cmd nbdcopy nbdinfo python3 script
require_binaries
require_writeback
require_nbdkit memory delay

make_tmpdir uzit
PAGES=1024
head -c $((PAGES * 4096)) /dev/urandom >"$TMPD/data"
BK_SOCK=$TMPD/bk.sock
nbdkit_start "$BK_SOCK" --filter=delay memory 64M wdelay=2ms
start_nbd_daemon 64M --backing "$(nbd_unix_uri "$BK_SOCK")" --recompress-algorithm zstd

fill() {
    nbdcopy "$TMPD/data" "$NBD_URI" || fail "nbdcopy onto the device failed"
}

# 1. A terminal: progress lines, then the summary.
fill
out=$(script -qec "$UZRAMCTL writeback '$DEV_SOCK' all" /dev/null) ||
    fail "uzramctl writeback on a terminal failed: $out"
log "on a terminal: $(od -c <<<"$out" | head -n 3)"
prog_re="$DEV_NAME: writeback: [0-9]+ of $PAGES pages, [0-9]+\.[0-9] MB/s"
sum_re="$DEV_NAME: $PAGES pages written back \(4(\.0)?M\) in [0-9]+\.[0-9] s, [0-9]+\.[0-9] MB/s"
[[ $out =~ $'\r'$prog_re ]] || fail "no progress line on a terminal: $out"
last=${out##*$'\r'}
last=${last%$'\n'}
[[ $out =~ ${sum_re}$'\r'?$ ]] || fail "the summary is not last on a terminal: $out"
[[ -z $last || $last =~ ^($'\e'\[K)?$sum_re$ ]] || fail "after the progress, not the summary: '$last'"
(($(stat_field bd_count) == PAGES)) || fail "bd_count is $(stat_field bd_count), not $PAGES"

# 2. No terminal: the summary alone.
fill
out=$("$UZRAMCTL" writeback "$DEV_SOCK" all) || fail "uzramctl writeback failed: $out"
log "no terminal: $out"
[[ $out =~ ^$sum_re$ ]] || fail "not the summary alone without a terminal: '$out'"
[[ $out != *$'\r'* ]] || fail "a carriage return without a terminal: '$out'"

# 3. --json: the summary only, valid JSON, even on a terminal.
fill
out=$(script -qec "$UZRAMCTL writeback '$DEV_SOCK' all --json" /dev/null) ||
    fail "uzramctl writeback --json failed: $out"
out=${out//$'\r'/}
log "--json: $out"
json_int "$out" written >/dev/null || fail "writeback --json is not one JSON object: $out"
for k in written selected done; do
    (($(json_int "$out" $k) == PAGES)) || fail "writeback --json: $k is not $PAGES: $out"
done
(($(json_int "$out" bytes) == PAGES * 4096)) || fail "writeback --json: bytes: $out"
[[ $(json_val "$out" name) == "\"$DEV_NAME\"" ]] || fail "writeback --json: name: $out"
for k in seconds mb_per_s; do
    python3 -c 'import json, sys; v = json.loads(sys.argv[1])[sys.argv[2]]
sys.exit(not isinstance(v, (int, float)) or v < 0)' "$out" $k ||
        fail "writeback --json: $k is not a number: $out"
done

# 4. recompress --json: the idle pages tried, some kept or none.
fill
"$UZRAMCTL" idle "$DEV_SOCK" all >/dev/null || fail "uzramctl idle all failed"
out=$("$UZRAMCTL" recompress "$DEV_SOCK" idle --json) || fail "uzramctl recompress --json failed: $out"
log "recompress --json: $out"
(($(json_int "$out" selected) == PAGES)) || fail "recompress --json: selected: $out"
(($(json_int "$out" done) == PAGES)) || fail "recompress --json: done: $out"
(($(json_int "$out" recompressed) <= PAGES)) || fail "recompress --json: recompressed: $out"
out=$("$UZRAMCTL" recompress "$DEV_SOCK" idle) || fail "uzramctl recompress failed: $out"
log "recompress: $out"
[[ $out =~ ^$DEV_NAME:\ [0-9]+\ pages?\ recompressed\ \(.*\)(\ of\ [0-9]+\ tried)?\ in\ [0-9.]+\ s,\ [0-9.]+\ MB/s$ ]] ||
    fail "recompress: not its summary: '$out'"

# 5. The verb itself, between jobs.
out=$(printf 'progress\n' | python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.stdin.buffer.read())
print(s.makefile().readline().strip())' "$DEV_SOCK")
log "progress: $out"
[[ $out =~ ^ok\ job=none\ selected=[0-9]+\ done=[0-9]+$ ]] || fail "progress between jobs: '$out'"

# 6. (uzramctl set) A mem-limit below what the device holds: set, with one
#    warning that says the pages go to the backing store.
fill
"$UZRAMCTL" set "$DEV_SOCK" mem-limit=4K 2>"$TMPD/set.err" || fail "set mem-limit=4K: $(<"$TMPD/set.err")"
log "set mem-limit=4K: $(<"$TMPD/set.err")"
[[ $(wc -l <"$TMPD/set.err") == 1 ]] || fail "set mem-limit=4K: not one warning: $(<"$TMPD/set.err")"
grep -Eq "^uzramctl: $DEV_SOCK: mem-limit 4K is not above what the device holds \(.+\): pages go to the backing store until it holds under 80% of the limit, and writes that need memory wait for them$" \
    "$TMPD/set.err" || fail "set mem-limit=4K: $(<"$TMPD/set.err")"
(($(stat_field mem_limit) == 4096)) || fail "mem-limit=4K not set"
"$UZRAMCTL" set "$DEV_SOCK" mem-limit=0 || fail "set mem-limit=0"

stop_nbd_daemon
cleanup_pop
log "PASS"
