# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# The daemon's side of the contract with systemd: sourced, never run, by the
# systemd tests, on uzramd.sh (see common.sh for the order of the
# libraries).  A stand-in for systemd's notification socket, and the
# daemon in the foreground as systemd runs it.  The systemd tests'
# temporary directories are /tmp/uzsd.* (make_tmpdir uzsd).
#
# The scripts are called by meson as
#   test-X.sh UZRAMD UZRAMCTL SYSTEMD-SOURCE-DIR

[[ -z ${_UZTEST_SYSTEMD:-} ]] || return 0
_UZTEST_SYSTEMD=1

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/uzramd.sh"

# shellcheck disable=SC2034 # read by the tests
UNITS_SRC=${1:?usage: $0 UZRAMD UZRAMCTL SYSTEMD-SOURCE-DIR}
shift

# start_listener [SOCKET [WATCH]]: a datagram socket (default $TMPD/notify;
# a name starting with '@' is abstract) that appends each message it gets,
# as one line with its newlines turned into '|', to $TMPD/notify.log: what
# systemd would get.  With WATCH, each line ends with "|watch=1" if the
# file WATCH existed when the message came, else "|watch=0".  Sets
# NOTIFY_SOCKET (not exported).
start_listener() {
    NOTIFY_SOCKET=${1:-$TMPD/notify}
    : >"$TMPD/notify.log"
    python3 -c '
import os, socket, sys
name, log, watch = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + name[1:] if name.startswith("@") else name)
open(log + ".bound", "w").close()
while True:
    m = s.recv(4096).decode().replace("\n", "|")
    if watch:
        m += "|watch=%d" % os.path.exists(watch)
    with open(log, "a") as f:
        f.write(m + "\n")
' "$NOTIFY_SOCKET" "$TMPD/notify.log" "${2:-}" &
    LISTENER_PID=$!
    cleanup_push "kill $LISTENER_PID 2>/dev/null; wait $LISTENER_PID 2>/dev/null || true"
    wait_for "[[ -e '$TMPD/notify.log.bound' ]]" 30 || fail "the notification listener did not start"
    rm -f "$TMPD/notify.log.bound"
}

# wait_message REGEX [SECS]: wait until a message matching REGEX (ERE,
# against the whole line) has arrived; fail if it does not.
wait_message() {
    wait_for "grep -Eq '^($1)\$' '$TMPD/notify.log'" "${2:-30}" ||
        fail "no notification matching '$1'; got: $(tr '\n' ' ' <"$TMPD/notify.log")"
}

# start_fg [ARGS...]: uzramd --foreground, as systemd runs it, with its
# control socket at $TMPD/ctl.sock and its log in $TMPD/uzramd.log.  Sets
# DEV_PID and DEV_SOCK; waits for the control socket.  Without --nbd-unix
# in ARGS, it serves NBD on $TMPD/fg-nbd.sock (uzramd refuses to serve
# nothing).
start_fg() {
    local fe=()
    [[ " $* " == *" --nbd-unix "* ]] || fe=(--nbd-unix "$TMPD/fg-nbd.sock")
    DEV_SOCK=$TMPD/ctl.sock
    log "uzramd --foreground --control $DEV_SOCK ${fe[*]} $*"
    env --default-signal=INT,TERM "$UZRAMD" --foreground --control "$DEV_SOCK" "${fe[@]}" "$@" \
        2>"$TMPD/uzramd.log" &
    DEV_PID=$!
    wait_started_fg "uzramd --foreground did not start"
}
