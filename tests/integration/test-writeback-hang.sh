#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A remote tier that stops answering without going away (security finding
# 7): `nbdkit memory` on a Unix socket is the backing store of a 256 MiB
# device with --mem-limit 16M and --backing-timeout 2, given random
# (incompressible) data.  nbdkit is then stopped with SIGSTOP: its socket
# stays open, the kernel still queues connections to it, and nothing
# replies, as with a wedged server or a frozen machine.
#
#   1. 64 MiB go in; pages were written back (bd_count > 0).
#   2. nbdkit is stopped.  Reading it all back page by page comes to an
#      end: the pages on the server fail with EIO, and exactly those
#      (bd_count of them); every other page is intact; the daemon lives and
#      says bd_connected false.
#   3. nbdkit goes on (SIGCONT).  Within a bounded number of tries every
#      page reads back intact, and bd_connected is true again: the
#      reconnect still works, and the server kept the data.
#   4. nbdkit is stopped again.  One read of a page on it fails with EIO
#      within twice the timeout and 20 s.  nbdkit goes on, the daemon
#      reconnects, nbdkit is stopped once more, and while a read of a page
#      on it is waiting, SIGTERM stops uzramd within 30 s, more than twice
#      the timeout and 20 s.
#
# The bounds tell a hang from a wait, not fast from slow.  Without the
# deadline on backing requests, step 2's first read of a page on the
# server hangs for ever.  No root needed.
#
#   test-writeback-hang.sh UZRAMD UZRAMCTL WB-PAGES

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

WB_PAGES=${1:?usage: $0 UZRAMD UZRAMCTL WB-PAGES}

require_cmd nbdinfo python3 timeout
require_binaries
require_writeback
require_nbdkit memory

make_tmpdir uzit
TIMEOUT=2
# A single read: its own timeout, one more for what is ahead of it, and slack.
READ_BOUND=$((2 * TIMEOUT + 20))
# A whole pass over 64 MiB, page by page, while every second brings one
# reconnect try that waits out the timeout: seconds in all, but the bound
# is only there to turn a hang into a failure.
PASS_BOUND=300
HALF=$((64 * MiB))
head -c "$HALF" /dev/urandom >"$TMPD/data"
BK_SOCK=$TMPD/bk.sock

# nbdkit_all_in STATE: every thread of nbdkit is in STATE (T: stopped), or
# with !STATE, none is.  kill returns before a stop or a continue is done.
nbdkit_all_in() {
    local want=$1 stat s
    for stat in /proc/"$NBDKIT_PID"/task/*/stat; do
        read -r _ _ s _ <"$stat" || return 1
        case $want in
        '!'*) [[ $s != "${want#!}" ]] || return 1 ;;
        *) [[ $s == "$want" ]] || return 1 ;;
        esac
    done
}

nbdkit_pause() {
    kill -STOP "$NBDKIT_PID"
    wait_for "nbdkit_all_in T" 30 || fail "nbdkit did not stop on SIGSTOP"
}

nbdkit_resume() {
    kill -CONT "$NBDKIT_PID"
    wait_for "nbdkit_all_in '!T'" 30 || fail "nbdkit did not go on after SIGCONT"
}

# bounded_check SECS OFF LEN [LIST]: check, killed after SECS; fails the test
# if it was, naming the hang.
bounded_check() {
    local secs=$1 rc=0
    shift
    CHK=$(timeout "$secs" "$WB_PAGES" check "$NBD_URI" "$TMPD/data" "$@") || rc=$?
    ((rc != 124)) || fail "reading pages $1+$2 with the server stopped took over $secs s: a read hung"
    ((rc == 0)) || fail "wb-pages check could not run (exit $rc)"
    log "check $1 $2: $CHK"
}

nbdkit_start "$BK_SOCK" memory 256M
# Whatever happens, never leave a stopped nbdkit behind: SIGTERM waits for SIGCONT.
cleanup_push "kill -CONT \$NBDKIT_PID 2>/dev/null || true"
start_nbd_daemon 256M --mem-limit 16M --backing "nbd+unix:///?socket=$BK_SOCK" \
    --backing-timeout "$TIMEOUT"

log "1. 64 MiB with the server answering"
wb_fill_half

log "2. the server stops answering"
nbdkit_pause
# Nothing can move between memory and the server now: the pages that fail
# are exactly those on it.
bd_count=$(stat_field bd_count)
bounded_check "$PASS_BOUND" 0 "$HALF" "$TMPD/bad-pages"
eio=$(pages_field "$CHK" eio)
(($(pages_field "$CHK" mismatch) == 0)) || fail "pages read back wrong with the server stopped"
(($(pages_field "$CHK" error) == 0)) || fail "pages failed with an error other than EIO: $CHK"
((eio > 0)) || fail "no page failed with the server stopped and $bd_count pages on it"
((eio == bd_count)) || fail "$eio pages failed, but $bd_count are on the server"
(($(pages_field "$CHK" ok) + eio == HALF / 4096)) || fail "pages unaccounted for: $CHK"
require_alive "reads with the backing server stopped"
json=$(stat_json)
wb_log "$json"
[[ $(json_bool "$json" bd_connected) == false ]] ||
    fail "bd_connected is not false after requests to the stopped server timed out"
(($(json_int "$json" bd_read_errors) > 0)) || fail "bd_read_errors is 0 after $eio pages failed"

log "3. the server answers again"
nbdkit_resume
# Each try reads everything; one may come before the next reconnect.
for ((try = 1; ; try++)); do
    check 0 "$HALF"
    (($(pages_field "$CHK" ok) == HALF / 4096)) && break
    ((try < 15)) || fail "after $try full reads with the server answering again, pages still fail"
    sleep 1
done
json=$(stat_json)
wb_log "$json"
[[ $(json_bool "$json" bd_connected) == true ]] || fail "bd_connected is not true with the server back"

log "4. the server stops again: one read, then SIGTERM"
# The last page that failed in step 2: still on the server, since promotion
# after a second read only fills the room under the high watermark, a few
# hundred pages, which the pages read before it took.
last=$(tail -n 1 "$TMPD/bad-pages")
last=${last%% *}
[[ $last =~ ^[0-9]+$ ]] || fail "no page index at the end of $TMPD/bad-pages: '$last'"
nbdkit_pause
t0=$SECONDS
bounded_check "$READ_BOUND" $((last * 4096)) 4096
(($(pages_field "$CHK" eio) == 1)) ||
    fail "a read of page $last (on the stopped server) did not fail with EIO: $CHK"
log "the read of page $last failed with EIO after $((SECONDS - t0)) s"

# Back once more, and reconnected: the first page that failed in step 2
# reads back (and comes back into memory, as it was read before).
first=$(head -n 1 "$TMPD/bad-pages")
first=${first%% *}
nbdkit_resume
for ((try = 1; ; try++)); do
    check $((first * 4096)) 4096
    (($(pages_field "$CHK" ok) == 1)) && break
    ((try < 15)) || fail "page $first still fails after $try tries with the server answering"
    sleep 1
done

# A read that waits for the stopped server while the daemon is told to stop:
# it has its timeout to wait, and SIGTERM comes half a second into it.
nbdkit_pause
"$WB_PAGES" check "$NBD_URI" "$TMPD/data" $((last * 4096)) 4096 >"$TMPD/reader.out" 2>&1 &
reader=$!
cleanup_push "kill $reader 2>/dev/null; wait $reader 2>/dev/null || true"
sleep 0.5
pid_alive "$reader" || log "the read ended before SIGTERM: $(<"$TMPD/reader.out")"
t0=$SECONDS
# stop_daemon's bound, 30 s, is more than twice the timeout and 20 s.
stop_nbd_daemon
log "uzramd stopped $((SECONDS - t0)) s after SIGTERM"
wait "$reader" 2>/dev/null || true
log "the read: $(<"$TMPD/reader.out")"
cleanup_pop

nbdkit_resume
log "PASS"
