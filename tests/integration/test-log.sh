#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Where uzramd's messages go (uzramd(8), LOGGING).  --log FILE in the
# background: the file gets the start and the stop (with the notice that
# the FUSE file is still in use), one timestamped line each, `uzramctl
# stat` shows it, and SIGHUP opens it again after a rotation moved it; the
# `log` key of --config is a restart's to change.  A symbolic link, a FIFO
# or a directory is refused (exit 1, one line), a relative path or nothing
# is a usage error (exit 2).  --log stderr keeps stderr in the background.
# Without --log in the background: syslog where /dev/log is a socket, else
# a file beside the control socket, which the command names.  /dev/log is
# hidden, or made a socket the test listens on, in a mount namespace of the
# test's own; the machine's /dev stays as it is.

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$0")/../lib/uzramd.sh"

require_root
require_fuse
require_cmd unshare timeout
require_binaries

PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || skip "needs $PYTHON"

make_tmpdir uzit

# Run uzramd through this (a namespace's setup), or directly when empty.
RUN=()

# bg_start ARGS...: uzramd in the background as a user would start it, on
# $TMPD/dev with its control socket $TMPD/ctl.sock, its stderr in
# $TMPD/start.err.  Sets DEV_NAME, DEV_FILE, DEV_SOCK, DEV_PIDFILE, DEV_PID.
bg_start() {
    DEV_NAME="uzlog-$$-${RANDOM}"
    DEV_FILE=$TMPD/dev
    DEV_SOCK=$TMPD/ctl.sock
    DEV_PIDFILE=$TMPD/uzramd.pid
    : >"$DEV_FILE"
    rm -f "$DEV_PIDFILE"
    log "${RUN[*]} uzramd --name $DEV_NAME --size 64M --fuse $DEV_FILE --control $DEV_SOCK $*"
    local rc=0
    "${RUN[@]}" "$UZRAMD" --name "$DEV_NAME" --size 64M --fuse "$DEV_FILE" \
        --control "$DEV_SOCK" --pidfile "$DEV_PIDFILE" "$@" 2>"$TMPD/start.err" || rc=$?
    ((rc == 0)) || cat "$TMPD/start.err" >&2
    daemon_started "$rc"
    LOG_PID=$DEV_PID
}

# in_log FILE PATTERN: FILE has a line of the last daemon started (its pid,
# LOG_PID) matching PATTERN (grep -E) after the prefix.
in_log() {
    grep -qE "uzramd\[$LOG_PID\]: $2" "$1" 2>/dev/null
}

# expect_refused STATUS WORD ARGS...: uzramd ARGS (in the background)
# exits STATUS with one line on stderr naming WORD, and leaves nothing
# running, mounted or listening.
expect_refused() {
    local want=$1 word=$2 rc=0
    shift 2
    : >"$TMPD/bad"
    rm -f "$TMPD/bad.sock" "$TMPD/bad.pid"
    timeout -s KILL 20 "$UZRAMD" --name "bad-$$" --size 64M --fuse "$TMPD/bad" \
        --control "$TMPD/bad.sock" --pidfile "$TMPD/bad.pid" "$@" 2>"$TMPD/err" || rc=$?
    if ((rc == 0)); then
        kill -TERM "$(<"$TMPD/bad.pid")" 2>/dev/null
        fail "accepted: uzramd $*"
    fi
    ((rc != 137)) || fail "hung (killed after 20 s): uzramd $*"
    ((rc == want)) || fail "uzramd $*: exit $rc, not $want: $(<"$TMPD/err")"
    [[ $(wc -l <"$TMPD/err") == 1 ]] || fail "uzramd $*: not one line: $(<"$TMPD/err")"
    grep -qF -- "$word" "$TMPD/err" || fail "uzramd $*: '$word' not named: $(<"$TMPD/err")"
    [[ ! -e $TMPD/bad.sock ]] || fail "uzramd $*: refused, but made its control socket"
    ! fuse_mounted "$TMPD/bad" || fail "uzramd $*: refused, but mounted $TMPD/bad"
}

# ---- --log FILE ------------------------------------------------------------

# Its directory is made, private (0700); the file is 0600.
lf=$TMPD/logs/uzramd.log
bg_start --log "$lf"
[[ ! -s $TMPD/start.err ]] || fail "with --log FILE the start printed: $(<"$TMPD/start.err")"
[[ -f $lf ]] || fail "--log $lf: no file"
[[ $(stat -c %a "$lf") == 600 ]] || fail "$lf has mode $(stat -c %a "$lf"), not 600"
[[ $(stat -c %a "$TMPD/logs") == 700 ]] || fail "$TMPD/logs made with mode $(stat -c %a "$TMPD/logs")"
in_log "$lf" "serving $DEV_NAME: 64M" || fail "no 'serving' line in $lf: $(<"$lf")"
# Each line: an ISO-8601 time to the millisecond with its offset, the pid.
stamp='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}[+-][0-9]{2}:[0-9]{2}'
odd=$(grep -Ev "^$stamp uzramd\[$DEV_PID\]: " "$lf" || true)
[[ -z $odd ]] || fail "lines of $lf not in the log's form: $odd"
[[ ! -e $TMPD/ctl.log ]] || fail "the default log file was made beside the socket too"

# uzramctl stat says where the log goes.
[[ $(stat_value log) == "$lf" ]] || fail "uzramctl stat --json: log is '$(stat_value log)', not $lf"
grep -qE "^log +$lf\$" <<<"$("$UZRAMCTL" stat "$DEV_SOCK")" ||
    fail "uzramctl stat shows no 'log $lf': $("$UZRAMCTL" stat "$DEV_SOCK" | head -12)"

# A rotation that moves the file, then SIGHUP: a new file at the path.
mv "$lf" "$lf.1"
kill -HUP "$DEV_PID"
wait_for "in_log '$lf' 'SIGHUP: '" 10 || fail "SIGHUP did not open $lf again: $(ls -l "$TMPD/logs")"
[[ $(stat -c %a "$lf") == 600 ]] || fail "the reopened $lf has mode $(stat -c %a "$lf")"

# The stop, with the FUSE file held open for a while: the notice that it is
# still in use is what a user waiting for the stop needs to read.
exec 3<"$DEV_FILE"
pid=$DEV_PID
kill -TERM "$pid"
wait_for "in_log '$lf' '.* is still in use'" 20 || {
    exec 3<&-
    fail "no 'still in use' notice in $lf: $(<"$lf")"
}
exec 3<&-
wait_for "! pid_alive $pid" 30 || fail "uzramd (pid $pid) did not stop once the file was closed"
DEV_PID=
in_log "$lf" 'stopped$' || fail "no 'stopped' line in $lf: $(<"$lf")"

# ---- the configuration file's key -----------------------------------------

conf=$TMPD/uzram.conf
printf 'log = %s\n' "$TMPD/a.log" >"$conf"
bg_start --config "$conf"
in_log "$TMPD/a.log" "serving $DEV_NAME" || fail "log = $TMPD/a.log: $(cat "$TMPD/a.log" 2>&1)"
# A reload does not move the log: it says that a restart would.
printf 'log = %s\n' "$TMPD/b.log" >"$conf"
kill -HUP "$DEV_PID"
wait_for "in_log '$TMPD/a.log' 'warning: reload: log changed: it takes effect when the device is restarted'" 10 ||
    fail "a changed log key was not named on reload: $(<"$TMPD/a.log")"
[[ ! -e $TMPD/b.log ]] || fail "a reload opened the new log file"
[[ $(stat_value log) == "$TMPD/a.log" ]] || fail "after the reload the log is $(stat_value log)"
stop_daemon 30

printf 'size = 64M\nlog = relative.log\n' >"$TMPD/rel.conf"
expect_refused 2 "$TMPD/rel.conf:2: log: bad value 'relative.log' (want syslog, stderr or an absolute path)" \
    --config "$TMPD/rel.conf"

# ---- what is refused -------------------------------------------------------

# Root writes the log: never through a link, never into what is not a file.
echo keep >"$TMPD/target"
ln -s "$TMPD/target" "$TMPD/link"
expect_refused 1 "--log $TMPD/link: a symbolic link" --log "$TMPD/link"
[[ $(<"$TMPD/target") == keep ]] || fail "--log wrote through a symbolic link"
mkfifo "$TMPD/fifo"
expect_refused 1 "--log $TMPD/fifo: not a regular file" --log "$TMPD/fifo"
expect_refused 1 "--log $TMPD: not a regular file" --log "$TMPD"
expect_refused 2 "--log: bad value 'relative.log' (want syslog, stderr or an absolute path)" \
    --log relative.log
expect_refused 2 "--log: bad value ''" --log ''
expect_refused 2 "--log: missing value" --log

# ---- --log stderr in the background ----------------------------------------

bg_start --log stderr
wait_for "grep -q '^uzramd: serving $DEV_NAME: ' '$TMPD/start.err'" 10 ||
    fail "--log stderr: no 'serving' line on stderr: $(<"$TMPD/start.err")"
[[ $(stat_value log) == stderr ]] || fail "--log stderr: uzramctl stat says $(stat_value log)"
stop_daemon 30
grep -q '^uzramd: stopped$' "$TMPD/start.err" || fail "--log stderr: $(<"$TMPD/start.err")"
[[ ! -e $TMPD/ctl.log ]] || fail "--log stderr made the default log file"

# ---- the default without /dev/log: a file beside the control socket --------

if [[ -e /dev/log || -L /dev/log ]]; then
    # Hidden in a namespace: /dev/null bound over it is not a socket.
    # shellcheck disable=SC2016
    RUN=(unshare -m sh -c 'mount --make-rprivate / && mount --bind /dev/null /dev/log &&
        exec "$@"' sh)
fi
bg_start
RUN=()
[[ $(<"$TMPD/start.err") == "uzramd: logging to $TMPD/ctl.log (no syslog here)" ]] ||
    fail "the start did not say where the log goes: '$(<"$TMPD/start.err")'"
in_log "$TMPD/ctl.log" "serving $DEV_NAME" || fail "$TMPD/ctl.log: $(cat "$TMPD/ctl.log" 2>&1)"
[[ $(stat_value log) == "$TMPD/ctl.log" ]] || fail "uzramctl stat: log is $(stat_value log)"
stop_daemon 30
in_log "$TMPD/ctl.log" 'stopped$' || fail "no 'stopped' line in $TMPD/ctl.log"

# ---- the default with /dev/log: syslog -------------------------------------

# In a namespace, /dev is a tmpfs with the machine's null, zero, random,
# urandom and fuse bound into it, and a socket of this test's at /dev/log
# that writes what it receives to $TMPD/syslog.
cat >"$TMPD/syslogd.py" <<'EOF'
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(4096) + b"\n")
EOF
mkdir "$TMPD/olddev"
rm -f "$TMPD/ctl.log"
cleanup_push "[[ ! -s '$TMPD/syslogd.pid' ]] || kill \$(<'$TMPD/syslogd.pid') 2>/dev/null || true"
# shellcheck disable=SC2016
RUN=(unshare -m sh -c 'mount --make-rprivate / &&
    mount --rbind /dev "$0/olddev" &&
    mount -t tmpfs -o mode=0755 none /dev &&
    for n in null zero random urandom fuse; do
        touch "/dev/$n" && mount --bind "$0/olddev/$n" "/dev/$n" || exit 1
    done &&
    { "$1" "$0/syslogd.py" /dev/log "$0/syslog" </dev/null >/dev/null 2>"$0/syslogd.err" &
        echo $! >"$0/syslogd.pid"; } &&
    i=0 && while [ ! -S /dev/log ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done &&
    shift && exec "$@"' "$TMPD" "$PYTHON")
bg_start
RUN=()
[[ ! -s $TMPD/start.err ]] || fail "with syslog the start printed: $(<"$TMPD/start.err")"
[[ $(stat_value log) == syslog ]] || fail "with /dev/log, uzramctl stat says log $(stat_value log)"
wait_for "in_log '$TMPD/syslog' 'serving $DEV_NAME'" 10 ||
    fail "syslog got no 'serving' line: $(cat "$TMPD/syslog" 2>&1)"
[[ ! -e $TMPD/ctl.log ]] || fail "with syslog, a log file was made beside the socket"
stop_daemon 30
wait_for "in_log '$TMPD/syslog' 'stopped'" 10 || fail "syslog got no 'stopped' line"
log "PASS"
