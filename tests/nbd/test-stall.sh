#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What a client that does not read its replies, or does nothing at all, can
# take from the others (the project's security finding 3), through raw
# clients (nbd-stall.py):
#   --send-timeout 10    with --threads 2, a client with a small receive
#                        buffer sends large READs (512 KiB: served in job
#                        buffers) and never reads: its replies queue
#                        (nbd_queued_bytes), yet another client's 1 MiB
#                        read is answered while it is still connected (it
#                        holds one job buffer at most, not both), then the
#                        stalled client is dropped (nbd_send_timeouts 1),
#                        its queued bytes go, and the data written before
#                        reads back whole.  Before the fix the other read
#                        hung (timeout 60: a hang detector, not a timing);
#                        without the cap on job buffers it waits for the
#                        drop, and nbd_send_timeouts is 1 already
#   --idle-timeout 2     a client in transmission that sends nothing is
#                        disconnected (within 30 s) and counted
#                        (nbd_idle_timeouts); with the default (no idle
#                        timeout) one stays connected for 5 s

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$0")/../lib/nbd.sh"

require_cmd nbdinfo
require_cmd timeout
require_binaries
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO}
# Never python3 from PATH: a virtual environment's could be anything.
PY=/usr/bin/python3
[[ -x $PY ]] || skip "needs $PY"
STALL=$(dirname "$0")/nbd-stall.py

make_tmpdir uznbd

# ---- --send-timeout -----------------------------------------------------------
start_nbd_daemon 64M --threads 2 --send-timeout 10
"$NBD_IO" "$NBD_URI" "rand:0:8M:21" || fail "the first client's write failed"

"$PY" "$STALL" "$NBD_SOCK" 8 $((512 * 1024)) "$TMPD/stall-ready" &
stall_pid=$!
cleanup_push "kill $stall_pid 2>/dev/null || true"
wait_for "[[ -s '$TMPD/stall-ready' ]] || ! pid_alive $stall_pid" 60 || true
[[ -s $TMPD/stall-ready ]] || fail "the stalling client did not send its reads"
# Its replies wait for a reader that never comes: visible in the statistics.
wait_for '(( $(stat_value nbd_queued_bytes) >= 512 * 1024 ))' 60 ||
    fail "the stalled client's replies do not show in nbd_queued_bytes"

timeout 60 "$NBD_IO" "$NBD_URI" "check:0:1M:21" ||
    fail "while a client did not read its replies, another client's 1 MiB read was not answered"
[[ $(stat_value nbd_send_timeouts) == 0 ]] ||
    fail "another client's 1 MiB read waited for the stalled client to be dropped"
wait_for '[[ $(stat_value nbd_send_timeouts) == 1 ]]' 60 ||
    fail "the client that did not read was not dropped (nbd_send_timeouts $(stat_value nbd_send_timeouts))"
wait_for '[[ $(stat_value nbd_active) == 0 && $(stat_value nbd_queued_bytes) == 0 ]]' 60 ||
    fail "the dropped client's connection or queued replies stayed"
timeout 60 "$NBD_IO" "$NBD_URI" "check:0:8M:21" "read:8M:1M:0" ||
    fail "the data written before the stall did not read back whole"
require_alive "a client that did not read"
stop_nbd_daemon
kill "$stall_pid" 2>/dev/null || true

# ---- --idle-timeout -----------------------------------------------------------
start_nbd_daemon 64M --idle-timeout 2
"$PY" "$STALL" idle "$NBD_SOCK" 30 || fail "an idle client was not disconnected (--idle-timeout 2)"
wait_for '[[ $(stat_value nbd_idle_timeouts) == 1 ]]' 60 ||
    fail "the idle client's disconnection was not counted in nbd_idle_timeouts"
"$NBD_IO" "$NBD_URI" "rand:0:1M:22" "check:0:1M:22" || fail "after an idle timeout, a client was not served"
stop_nbd_daemon

start_nbd_daemon 64M
rc=0
"$PY" "$STALL" idle "$NBD_SOCK" 5 || rc=$?
((rc == 2)) || fail "without --idle-timeout, an idle client was disconnected"
[[ $(stat_value nbd_idle_timeouts) == 0 ]] || fail "nbd_idle_timeouts counts without --idle-timeout"
stop_nbd_daemon
log "PASS"
