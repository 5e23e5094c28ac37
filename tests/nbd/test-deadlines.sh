#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What one client, or many, can take from the others (the project's
# security finding 2), through clients that hold connections and do
# nothing with them (nbd-hold.py):
#   --max-connections per listener
#                        4 connections held in transmission on TCP, with
#                        --max-connections 4: a 5th on TCP is refused, and
#                        a client on the Unix socket still writes and reads;
#                        then 4 held on the Unix socket too, a 5th there is
#                        refused, and the 4 on TCP were never closed
#   --handshake-timeout 1
#                        a client that reads the greeting and says nothing,
#                        on TCP and on the Unix socket, and one that sends
#                        an option a byte every 0.2 s, are disconnected
#                        (within 15 s: a bound, not a timing); one in
#                        transmission that says nothing for 3 s is not,
#                        and its read then is answered

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$0")/../lib/nbd.sh"

require_cmd nbdinfo
require_binaries
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO}
require_system_python
HOLD=$(dirname "$0")/nbd-hold.py

make_tmpdir uznbd

# hold ADDR N NAME: N connections to ADDR held in transmission by a helper in
# the background, until held_check NAME.  Sets HOLD_PID_<NAME>.
hold() {
    local ready="$TMPD/held-$3"
    "$PY" "$HOLD" hold "$1" "$2" "$ready" &
    local pid=$!
    printf -v "HOLD_PID_$3" '%s' "$pid"
    cleanup_push "kill $pid 2>/dev/null || true"
    wait_for "[[ -s '$ready' ]] || ! pid_alive $pid" 60 || true
    [[ -s $ready ]] || fail "$2 connections to $1 did not all reach transmission"
}

# held_check NAME: the connections of hold ... NAME must all be open still.
held_check() {
    local var="HOLD_PID_$1"
    kill -USR1 "${!var}"
    wait "${!var}" || fail "the server closed connections held ($1)"
}

# ---- --max-connections per listener -----------------------------------------
port=$("$PY" "$HOLD" port) || fail "no free TCP port"
# The helpers in transmission stay, whatever the handshake deadline.
start_nbd_daemon 64M --nbd-tcp "127.0.0.1:$port" --tls=off --max-connections 4 --handshake-timeout 1
hold "127.0.0.1:$port" 4 tcp
"$PY" "$HOLD" refused "127.0.0.1:$port" || fail "a 5th connection on TCP was served"
"$NBD_IO" "$NBD_URI" "rand:0:1M:3" "check:0:1M:3" ||
    fail "with TCP's 4 slots taken, a client on the Unix socket was not served"
hold "$NBD_SOCK" 4 unix
"$PY" "$HOLD" refused "$NBD_SOCK" || fail "a 5th connection on the Unix socket was served"
held_check tcp
held_check unix
require_alive "connections held on every listener"
stop_nbd_daemon

# ---- --handshake-timeout --------------------------------------------------------
port=$("$PY" "$HOLD" port) || fail "no free TCP port"
start_nbd_daemon 64M --nbd-tcp "127.0.0.1:$port" --tls=off --handshake-timeout 1
"$PY" "$HOLD" closed "127.0.0.1:$port" silent 15 ||
    fail "a silent client on TCP was not disconnected at the handshake deadline"
"$PY" "$HOLD" closed "$NBD_SOCK" silent 15 ||
    fail "a silent client on the Unix socket was not disconnected at the handshake deadline"
"$PY" "$HOLD" closed "$NBD_SOCK" trickle 15 ||
    fail "a client trickling its handshake was not disconnected at the deadline"
"$PY" "$HOLD" idle-read "$NBD_SOCK" 3 ||
    fail "a client idle in transmission past the handshake timeout was disconnected"
"$NBD_IO" "$NBD_URI" "rand:0:1M:4" "check:0:1M:4" ||
    fail "after the handshake deadlines, a new client was not served"
require_alive "handshake deadlines"
stop_nbd_daemon
log "PASS"
