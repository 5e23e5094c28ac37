#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Socket activation (uzramd@.socket): listening sockets passed the way
# systemd passes them (descriptors from 3, $LISTEN_FDS, $LISTEN_PID), by
# activate.py, which execs uzramd in its own pid:
#   - a Unix socket at the --nbd-unix path is used, not replaced: nbdinfo
#     works, and the file is still there (the socket unit's) after uzramd
#     stops;
#   - a passed socket with no matching option (a TCP one) is served too;
#   - the passed Unix socket's clients are checked as uzramd's own
#     socket's (as root, where there is a second user to be): with its
#     file opened to all, a user outside --nbd-group is refused and
#     counted, and a member reads;
#   - $LISTEN_PID naming another process: the sockets are not ours, and
#     uzramd binds its own --nbd-unix as usual;
#   - a descriptor that is not a listening socket, or socket activation
#     without --foreground, exits 2 with one line.

# shellcheck source=tests/lib/systemd.sh
. "$(dirname "$0")/../lib/systemd.sh"

require_cmd python3 nbdinfo
require_binaries
make_tmpdir uzsd
ACTIVATE=$(dirname "$0")/activate.py
SOCK=$TMPD/act.nbd
URI="nbd+unix:///?socket=$SOCK"

# start_activated ACTIVATE-ARGS... -- UZRAMD-ARGS...: like start_fg, through activate.py.
start_activated() {
    DEV_SOCK=$TMPD/ctl.sock
    local a=()
    while [[ $1 != -- ]]; do a+=("$1"); shift; done
    shift
    log "activate.py ${a[*]} -- uzramd --foreground $*"
    ACTIVATE_PORT_FILE=$TMPD/port env --default-signal=INT,TERM \
        python3 "$ACTIVATE" "${a[@]}" -- "$UZRAMD" --foreground --control "$DEV_SOCK" "$@" \
        2>"$TMPD/uzramd.log" &
    DEV_PID=$!
    wait_started_fg "uzramd did not start"
}

# A second user: nobody, in nobody's group (--nbd-group) or in another.
peers=false
group_args=()
if ((EUID == 0)) && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
    peers=true
    chmod 0755 "$TMPD"
    group_args=(--nbd-group "$(id -g nobody)")
fi
# as_nobody GID CMD...: CMD as nobody with GID as its only group.
as_nobody() {
    local g=$1
    shift
    setpriv --reuid=nobody --regid="$g" --clear-groups "$@"
}

# A Unix socket at the configured path, and a TCP one nobody configured.
start_activated "unix:$SOCK" "tcp:127.0.0.1:0" -- --name act0 --size 64M --nbd-unix "$SOCK" --tls=off \
    "${group_args[@]}"
port=$(<"$TMPD/port")
ino=$(stat -c %i "$SOCK")
[[ $(nbdinfo --size "$URI") == $((64 << 20)) ]] || fail "nbdinfo on the passed Unix socket"
[[ $(nbdinfo --size "nbd://127.0.0.1:$port") == $((64 << 20)) ]] || fail "nbdinfo on the passed TCP socket"
grep -q "NBD on unix:$SOCK,tcp:127.0.0.1:$port (sockets from the service manager)" "$TMPD/uzramd.log" ||
    fail "the log does not name the passed sockets: $(<"$TMPD/uzramd.log")"
[[ $("$UZRAMCTL" list --noheadings --output MOUNTPOINT "$DEV_SOCK" | tr -d ' ') == "unix:$SOCK,tcp:127.0.0.1:$port" ]] ||
    fail "uzramctl list shows '$("$UZRAMCTL" list --noheadings --output MOUNTPOINT "$DEV_SOCK")'"
[[ $(stat -c %i "$SOCK") == "$ino" ]] || fail "uzramd replaced the passed socket file"
strangers=0
if $peers; then
    # The socket unit's mode is not the only check: open it to all.
    chmod 0666 "$SOCK"
    if as_nobody 65533 nbdinfo --size "$URI" >"$TMPD/out" 2>&1; then
        fail "a user outside --nbd-group read the device through the passed socket"
    fi
    strangers=1
    [[ $(as_nobody "$(id -g nobody)" nbdinfo --size "$URI") == $((64 << 20)) ]] ||
        fail "a member of --nbd-group could not read through the passed socket"
fi
stop_daemon
[[ $DEV_STATUS == 0 ]] || fail "uzramd exited $DEV_STATUS"
grep -q " $strangers refused as strangers " "$TMPD/uzramd.log" ||
    fail "want $strangers refused as strangers: $(grep 'NBD stopped' "$TMPD/uzramd.log")"
[[ -S $SOCK ]] || fail "uzramd removed the passed socket's file: it is the socket unit's"
cleanup_pop
rm -f "$SOCK" "$TMPD/ctl.sock"

# Not for us: LISTEN_PID is another pid.  uzramd binds --nbd-unix itself
# (the passed socket is at another path, so both can be told apart).
start_activated --pid-off "unix:$TMPD/other.nbd" -- --name act1 --size 64M --nbd-unix "$SOCK"
wait_for "[[ -S '$SOCK' ]]" 30 || fail "uzramd did not bind --nbd-unix"
[[ $(nbdinfo --size "$URI") == $((64 << 20)) ]] || fail "nbdinfo on uzramd's own socket"
grep -q "sockets from the service manager" "$TMPD/uzramd.log" && fail "took sockets meant for another pid"
stop_daemon
cleanup_pop
[[ ! -e $SOCK ]] || fail "uzramd left its own socket behind"
rm -f "$TMPD/other.nbd" "$TMPD/ctl.sock"

# expect_usage WANT ACTIVATE-ARGS... -- UZRAMD-ARGS...: exit 2, one line.
expect_usage() {
    local want=$1 rc=0
    shift
    python3 "$ACTIVATE" "$@" 2>"$TMPD/err" || rc=$?
    ((rc == 2)) || fail "$*: exit $rc, want 2; $(<"$TMPD/err")"
    [[ $(wc -l <"$TMPD/err") == 1 ]] && grep -q "$want" "$TMPD/err" ||
        fail "$*: got '$(<"$TMPD/err")', want '$want'"
}
expect_usage "socket activation: descriptor 3: not a listening stream socket" \
    --not-socket -- "$UZRAMD" --foreground --size 64M --control "$TMPD/ctl.sock"
rm -f "$SOCK"
expect_usage "socket activation (LISTEN_FDS) needs --foreground" \
    "unix:$SOCK" -- "$UZRAMD" --size 64M --control "$TMPD/ctl.sock"
[[ ! -e $TMPD/ctl.sock ]] || fail "a refused start made a control socket"
log "PASS"
