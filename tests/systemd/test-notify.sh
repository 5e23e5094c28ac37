#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The sd_notify messages, caught by a datagram socket standing in for
# systemd's ($NOTIFY_SOCKET), in the order systemd needs them:
#   READY=1                 once every front end serves: the NBD socket
#                           exists when the message arrives
#   STATUS=...              the device: name, size, codec, front ends
#   RELOADING=1|MONOTONIC_USEC=N, then READY=1   around a SIGHUP reload
#   STOPPING=1              after SIGTERM
# and the same READY=1 through an abstract socket ('@name').

# shellcheck source=tests/lib/systemd.sh
. "$(dirname "$0")/../lib/systemd.sh"

require_cmd python3
require_binaries
make_tmpdir uzsd

printf 'size = 64M\nalgorithm = lz4\nmem-limit = 32M\n' >"$TMPD/dev.conf"
start_listener "$TMPD/notify" "$TMPD/nbd.sock"
NOTIFY_SOCKET=$NOTIFY_SOCKET start_fg --name nt0 --config "$TMPD/dev.conf" --nbd-unix "$TMPD/nbd.sock"

wait_message 'READY=1\|watch=1'
wait_message "STATUS=nt0: 64M lz4, nbd unix:$TMPD/nbd.sock; data 0B?, compressed 0B?, memory [^|]*\|watch=1"
grep -q '^READY=1|watch=0$' "$TMPD/notify.log" && fail "READY=1 came before the NBD socket existed"

kill -HUP "$DEV_PID"
wait_message 'RELOADING=1\|MONOTONIC_USEC=[0-9]+\|watch=1'
wait_for "[[ \$(grep -c '^READY=1|' '$TMPD/notify.log') == 2 ]]" 30 ||
    fail "no second READY=1 after the reload: $(tr '\n' ' ' <"$TMPD/notify.log")"

stop_daemon
[[ $DEV_STATUS == 0 ]] || fail "uzramd exited $DEV_STATUS after SIGTERM"
wait_message 'STOPPING=1\|watch=[01]'

# The order: READY, RELOADING, READY, STOPPING (STATUS lines in between).
order=$(grep -Eo '^(READY|RELOADING|STOPPING)=1' "$TMPD/notify.log" | tr '\n' ' ')
[[ $order == "READY=1 RELOADING=1 READY=1 STOPPING=1 " ]] ||
    fail "messages in the order '$order'; log: $(tr '\n' ' ' <"$TMPD/notify.log")"
kill "$LISTENER_PID"
wait "$LISTENER_PID" 2>/dev/null || true

# An abstract socket: the name has no file, and its address no NUL at the end.
rm -f "$TMPD/ctl.sock"
start_listener "@uzsd-$$-$RANDOM"
NOTIFY_SOCKET=$NOTIFY_SOCKET start_fg --name nt1 --size 64M
wait_message 'READY=1'
stop_daemon
wait_message 'STOPPING=1'
log "PASS"
