#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Files and directories another local user could plant or swap (uzramd(8),
# SECURITY).  Each case is an attack that worked before its fix:
#   - a run directory made by another user (/tmp/uzram-UID, before the
#     daemon's user first ran it): the daemon put its control socket there,
#     where that user could replace it with an impostor;
#   - a socket directory anyone may write: refused the same way;
#   - the pidfile's temporary name was the pid, opened without O_EXCL: a
#     file planted under that name in a shared directory became the pidfile,
#     owned by whoever planted it;
#   - --fuse on a symbolic link mounted over the link's target;
#   - --backing followed a symbolic link, two daemons could share one
#     backing file, and a backing file uzramd made outlived it.
# The victim is an unused uid, the attacker the user nobody (setpriv).

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$0")/../lib/uzramd.sh"

require_root
require_cmd setpriv flock stat
require_binaries
id nobody >/dev/null 2>&1 || skip "no user nobody"

make_tmpdir uzsec
chmod 0755 "$TMPD"
as_nobody() { setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups "$@"; }

# ---- the run directory --------------------------------------------------------
# A uid no process uses, so that /tmp/uzram-UID is ours to plant and remove.
for ((victim = 40000 + RANDOM % 20000; ; victim++)); do
    [[ -e /tmp/uzram-$victim ]] || getent passwd "$victim" >/dev/null || break
done
rundir=/tmp/uzram-$victim
cleanup_push "rm -rf '$rundir'"
mkdir -m 0700 "$TMPD/v"
chown "$victim:$victim" "$TMPD/v"
# An array, not a function: a function run in the background is a subshell,
# and $! would name the subshell instead of uzramd.
as_victim=(env -u XDG_RUNTIME_DIR setpriv --reuid="$victim" --regid="$victim" --clear-groups)

# uzramd as the victim, its control socket where it goes by default; the
# daemon must refuse at once (exit 1); one that serves is stopped after 20 s
# and exits 0, which fails the case.
victim_daemon() { # EXTRA-ARGS...
    local rc=0
    "${as_victim[@]}" timeout -k 5 --preserve-status -s TERM 20 "$UZRAMD" --foreground --name sec --size 16M \
        --nbd-unix "$TMPD/v/nbd.sock" "$@" 2>"$TMPD/err" || rc=$?
    echo "$rc"
}

as_nobody mkdir -m 0777 "$rundir"
rc=$(victim_daemon)
((rc == 1)) || fail "a run directory of nobody's was used (exit $rc): $(cat "$TMPD/err")"
grep -q "$rundir is owned by uid $(id -u nobody), not by this user or root" "$TMPD/err" ||
    fail "the refusal does not say why: $(cat "$TMPD/err")"
[[ ! -e $rundir/sec.sock ]] || fail "a socket was left in nobody's directory"
rm -rf "$rundir"

# The victim's own directory, but anyone may write to it.
mkdir -m 0777 "$rundir"
chown "$victim:$victim" "$rundir"
chmod 0777 "$rundir"
rc=$(victim_daemon)
((rc == 1)) || fail "a directory anyone may write was used (exit $rc): $(cat "$TMPD/err")"
grep -q "$rundir (mode 0777) may be written by others than its owner" "$TMPD/err" ||
    fail "the refusal does not say why: $(cat "$TMPD/err")"
rm -rf "$rundir"

# None there: the daemon makes it, 0700 and the victim's, and serves.
"${as_victim[@]}" env --default-signal=TERM "$UZRAMD" --foreground --name sec --size 16M \
    --nbd-unix "$TMPD/v/nbd.sock" 2>"$TMPD/err" &
DEV_PID=$!
DEV_SOCK=$rundir/sec.sock
cleanup_push "stop_daemon_quietly"
wait_for "[[ -S '$DEV_SOCK' ]] || ! pid_alive $DEV_PID" 30 && pid_alive "$DEV_PID" ||
    fail "uzramd as uid $victim did not start: $(cat "$TMPD/err")"
[[ $(stat -c '%u %a' "$rundir") == "$victim 700" ]] ||
    fail "the run directory made is $(stat -c '%U %a' "$rundir"), not $victim's and 0700"
[[ $(stat -c '%u %a' "$DEV_SOCK") == "$victim 600" ]] ||
    fail "the control socket is $(stat -c '%u %a' "$DEV_SOCK")"
stop_daemon
((DEV_STATUS == 0)) || fail "uzramd as uid $victim exited $DEV_STATUS: $(cat "$TMPD/err")"

# ---- the pidfile ----------------------------------------------------------------
# In a shared directory (sticky, anyone may write), nobody plants a file
# under the temporary name the old code used: PIDFILE.tmpPID.  The subshell
# execs uzramd, so its pid is known beforehand.
require_fuse
mkdir -m 1777 "$TMPD/shared"
chmod 1777 "$TMPD/shared"
pidfile=$TMPD/shared/uzramd.pid
DEV_SOCK=$TMPD/ctl.sock
: >"$TMPD/dev"
(
    as_nobody sh -c "echo 1 >'$pidfile.tmp$BASHPID'"
    exec env --default-signal=INT,TERM "$UZRAMD" --foreground --name "sec-$$" --size 16M \
        --fuse "$TMPD/dev" --control "$DEV_SOCK" --pidfile "$pidfile"
) 2>"$TMPD/err" &
DEV_PID=$!
cleanup_push "stop_daemon_quietly"
wait_for "[[ -s '$pidfile' ]] || ! pid_alive $DEV_PID" 30 && pid_alive "$DEV_PID" ||
    fail "uzramd did not write its pidfile: $(cat "$TMPD/err")"
[[ $(stat -c %u "$pidfile") == 0 ]] ||
    fail "the pidfile is owned by $(stat -c %U "$pidfile"): a planted file became it"
planted=$pidfile.tmp$DEV_PID
[[ $(<"$pidfile") == "$DEV_PID" ]] || fail "the pidfile says '$(<"$pidfile")', not $DEV_PID"
[[ $(<"$planted") == 1 ]] || fail "the planted file was written to"
if flock -n "$pidfile" true; then
    fail "nobody holds a lock on the pidfile"
fi
stop_daemon
[[ ! -e $pidfile ]] || fail "the pidfile outlived the daemon"
[[ -z $(find "$TMPD/shared" -name 'uzramd.pid.*' ! -path "$planted" -print -quit) ]] ||
    fail "a temporary pidfile was left: $(ls "$TMPD/shared")"

# ---- --fuse on a symbolic link ------------------------------------------------------
: >"$TMPD/target"
ln -s "$TMPD/target" "$TMPD/link"
rc=0
cleanup_push "umount -l '$TMPD/target' 2>/dev/null || true"
timeout -k 5 --preserve-status -s TERM 20 "$UZRAMD" --foreground --name "sec-$$" --size 16M \
    --fuse "$TMPD/link" --control "$DEV_SOCK" 2>"$TMPD/err" || rc=$?
if fuse_mounted "$TMPD/target"; then
    umount -l "$TMPD/target"
    fail "--fuse on a symbolic link mounted over its target"
fi
((rc == 1)) || fail "--fuse on a symbolic link: exit $rc: $(cat "$TMPD/err")"
grep -q "$TMPD/link: a symbolic link: give the file itself" "$TMPD/err" ||
    fail "--fuse on a symbolic link: $(cat "$TMPD/err")"

# ---- --backing: whose file it is ------------------------------------------------
# A symbolic link is not followed: the daemon would grow and overwrite its
# target, wherever someone who can write the link's directory points it.
head -c 4096 /dev/urandom >"$TMPD/precious"
sum=$(sha256sum <"$TMPD/precious")
ln -s "$TMPD/precious" "$TMPD/bklink"
# bk_args NAME BACKING: uzramd's arguments for a foreground daemon on
# BACKING, NBD only, into the array bk (each caller logs to $TMPD/NAME.log).
bk_args() {
    bk=(--foreground --name "$1" --size 64M --mem-limit 16M --backing "$2"
        --nbd-unix "$TMPD/$1.nbd" --control "$TMPD/$1.sock")
}
rc=0
bk_args bk0 "$TMPD/bklink"
timeout -k 5 --preserve-status -s TERM 20 "$UZRAMD" "${bk[@]}" 2>"$TMPD/bk0.log" || rc=$?
((rc == 1)) || fail "--backing on a symbolic link: exit $rc: $(cat "$TMPD/bk0.log")"
grep -q "a symbolic link" "$TMPD/bk0.log" || fail "--backing on a symbolic link: $(cat "$TMPD/bk0.log")"
[[ $(sha256sum <"$TMPD/precious") == "$sum" ]] || fail "--backing changed a symbolic link's target"

# One backing file, one daemon: a second is refused while the first holds it.
bk_args bk1 "$TMPD/bk"
env --default-signal=INT,TERM "$UZRAMD" "${bk[@]}" 2>"$TMPD/bk1.log" &
DEV_PID=$!
DEV_SOCK=$TMPD/bk1.sock
cleanup_push "stop_daemon_quietly"
wait_for "[[ -S '$DEV_SOCK' ]] || ! pid_alive $DEV_PID" 30 && pid_alive "$DEV_PID" ||
    fail "uzramd with a backing file did not start: $(cat "$TMPD/bk1.log")"
[[ -f $TMPD/bk ]] || fail "no backing file made"
rc=0
bk_args bk2 "$TMPD/bk"
timeout -k 5 --preserve-status -s TERM 20 "$UZRAMD" "${bk[@]}" 2>"$TMPD/bk2.log" || rc=$?
((rc == 1)) || fail "a second daemon on one backing file: exit $rc: $(cat "$TMPD/bk2.log")"
grep -q "in use by another uzramd" "$TMPD/bk2.log" || fail "a second daemon on one backing file: $(cat "$TMPD/bk2.log")"
# The file it made goes with it: evicted pages do not outlive the daemon.
stop_daemon
((DEV_STATUS == 0)) || fail "uzramd with a backing file exited $DEV_STATUS: $(cat "$TMPD/bk1.log")"
[[ ! -e $TMPD/bk ]] || fail "the backing file uzramd made outlived it"

log "PASS"
