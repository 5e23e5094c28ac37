#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What uzramd says when its backing store fails, and a backing server that
# comes back without the data.  uzramd runs in the foreground (so its log is
# a file) with --nbd-unix, 256 MiB, --mem-limit 16M, and nbdkit memory as
# the backing store, behind the error filter (EIO on every write while
# $TMPD/pwrite-err exists):
#
#   1. 32 MiB of random data go in; pages are written back; no error logged.
#   2. Writes fail on the server and 32 MiB more go in until ENOSPC: many
#      backing writes fail (bd_write_errors), but the log has one line per
#      5-second period with errors, not one per error.
#   3. The server is killed: reads of pages written back fail with EIO; the
#      log says once that the backing store is unreachable.
#   4. A new, empty nbdkit takes the socket: the log says it is reachable
#      again, and reads of the pages written back before still fail with
#      EIO, counted in bd_bad_sums (their seal does not match the zeros
#      the new server returns), not as zeros; every page that stayed in
#      memory reads back intact.
#
# The log lines come every 5 s at most, so the waits for them are bounded
# at 30 s.  No root needed.
#
#   test-writeback-log.sh UZRAMD UZRAMCTL WB-PAGES

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

WB_PAGES=${1:?usage: $0 UZRAMD UZRAMCTL WB-PAGES}

require_cmd nbdinfo python3
require_binaries
require_writeback
require_nbdkit memory error

make_tmpdir uzit
HALF=$((32 * MiB))
head -c $((2 * HALF)) /dev/urandom >"$TMPD/data"
BK_SOCK=$TMPD/bk.sock
BK_URI="nbd+unix:///?socket=$BK_SOCK"
nbdkit_start "$BK_SOCK" --filter=error memory 1G error=EIO \
    error-pwrite-rate=100% error-pwrite-file="$TMPD/pwrite-err"

# uzramd in the foreground, NBD only, its stderr the log.
DEV_NAME="uzlog-$$"
DEV_SOCK=$TMPD/ctl.sock
NBD_SOCK=$TMPD/nbd.sock
NBD_URI=$(nbd_unix_uri "$NBD_SOCK")
DEV_LOG=$TMPD/uzramd.log
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$TMPD/sanitizer" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$TMPD/sanitizer" \
    "$UZRAMD" --foreground --name "$DEV_NAME" --size 256M --nbd-unix "$NBD_SOCK" \
    --control "$DEV_SOCK" --mem-limit 16M --backing "$BK_URI" 2>"$DEV_LOG" &
DEV_PID=$!
cleanup_push "kill $DEV_PID 2>/dev/null; wait $DEV_PID 2>/dev/null || true"
if ! wait_for "[[ -S '$NBD_SOCK' && -S '$DEV_SOCK' ]] || ! pid_alive $DEV_PID" 30 ||
    ! pid_alive "$DEV_PID"; then
    cat "$DEV_LOG" >&2
    fail "uzramd --foreground did not become ready"
fi

# log_lines PATTERN: how many lines of the daemon's log match.
log_lines() { grep -cE "$1" "$DEV_LOG" || true; }
ERR_LINE="backing store [^ ]*: [0-9]+ write errors, [0-9]+ read errors in the last 5 s"

log "1. 32 MiB with a healthy server"
out=$("$WB_PAGES" write "$NBD_URI" "$TMPD/data" 0 "$HALF") || fail "wb-pages write could not run"
[[ $(pages_field "$out" error) == none ]] || fail "writing 32 MiB with a healthy backing server failed: $out"
(($(stat_field bd_count) > 0)) || fail "bd_count is 0 after 32 MiB went into 16 MiB"
(($(log_lines "backing store") == 0)) || fail "errors logged with a healthy server: $(<"$DEV_LOG")"

log "2. writes fail on the server"
touch "$TMPD/pwrite-err"
out=$("$WB_PAGES" write "$NBD_URI" "$TMPD/data" "$HALF" "$HALF") || fail "wb-pages write could not run"
[[ $(pages_field "$out" error) == ENOSPC ]] || fail "with the server refusing writes, no ENOSPC: $out"
end=$((HALF + $(pages_field "$out" written)))
wait_for "(( \$(log_lines '$ERR_LINE') >= 1 ))" 30 ||
    fail "no line about the write errors in the log: $(<"$DEV_LOG")"
errors=$(stat_field bd_write_errors)
# Let the period after the burst pass: no errors in it, no new line.
sleep 6
lines=$(log_lines "$ERR_LINE")
log "$errors backing write errors, $lines log lines: $(grep -E "$ERR_LINE" "$DEV_LOG" | head -n 3)"
((errors > lines)) || fail "$errors errors made $lines log lines: one per error, not per burst"
((lines <= 2)) || fail "one burst of errors made $lines log lines"
grep -qE "$ERR_LINE \(last: Input/output error\)" "$DEV_LOG" || fail "the log line does not name the error"
rm -f "$TMPD/pwrite-err"

log "3. the server is killed"
nbdkit_stop KILL
rm -f "$BK_SOCK"
bd_count=$(stat_field bd_count)
check 0 "$end"
(($(pages_field "$CHK" eio) == bd_count)) || fail "with the server gone, $bd_count pages are on it: $CHK"
wait_for "(( \$(log_lines 'backing store .*: unreachable') == 1 ))" 30 ||
    fail "no single 'unreachable' line in the log: $(<"$DEV_LOG")"

log "4. an empty server takes its place"
nbdkit_start "$BK_SOCK" memory 1G
# The next use reconnects (at most once a second); the log says so within
# a period.
for ((try = 1; try <= 15; try++)); do
    check 0 "$end"
    [[ $(json_bool "$(stat_json)" bd_connected) == true ]] && break
    sleep 1
done
wait_for "(( \$(log_lines 'backing store .*: reachable again') == 1 ))" 30 ||
    fail "no 'reachable again' line in the log: $(<"$DEV_LOG")"
check 0 "$end"
json=$(stat_json)
wb_log "$json"
bad_sums=$(json_int "$json" bd_bad_sums)
(($(pages_field "$CHK" mismatch) == 0)) ||
    fail "pages read back wrong from a server that lost them (zeros, not EIO?): $CHK"
(($(pages_field "$CHK" eio) == bd_count)) || fail "$bd_count pages were on the lost server: $CHK"
(($(pages_field "$CHK" ok) + bd_count == end / 4096)) || fail "pages kept in memory were lost: $CHK"
((bad_sums >= bd_count)) || fail "bd_bad_sums is $bad_sums after $bd_count pages came back wrong"

kill "$DEV_PID"
wait "$DEV_PID" || fail "uzramd exited $? on SIGTERM"
cleanup_pop
if compgen -G "$TMPD/sanitizer*" >/dev/null; then
    cat "$TMPD"/sanitizer* >&2
    fail "the sanitizer reported on uzramd"
fi
log "PASS"
