#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Who may do what through a daemon's sockets (uzramd(8), SECURITY).  The
# attacks that worked before their fixes: a member of --group, meant to
# watch the device, could both change it through the control socket (lift
# mem-limit, compact, stop the daemon) and read and write the whole disk
# through the NBD Unix socket, which --group opened too; and whoever the
# NBD socket's mode let in (a chmod, a socket unit's SocketMode=) was
# served, since only the file's mode kept anyone out.  Now:
#   - --control-group W (or its old name --group) lets W's members watch:
#     stat and list work, every change is refused with EPERM naming who
#     may;
#   - --admin-group A lets A's members change settings too (compact, set),
#     whether A is their primary group or a supplementary one;
#   - with both, the control socket is 0666 and the daemon's peer check
#     admits: anyone in neither group is refused at connect;
#   - --nbd-group H opens the NBD Unix socket alone, and the daemon checks
#     each peer there too: with the file opened to all (chmod 0666), a user
#     outside H is closed at once and counted, and H's members read.
# The members are the user nobody, with one temporary group each
# (setpriv); the daemon runs as root.

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$0")/../lib/uzramd.sh"

require_root
require_cmd setpriv nbdinfo groupadd groupdel stat
require_binaries
id nobody >/dev/null 2>&1 || skip "no user nobody"

make_tmpdir uzsec
chmod 0755 "$TMPD"

# Three groups that nobody is not in, removed at exit.
watch_group=uzw$$
admin_group=uza$$
nbd_group=uzn$$
for g in "$watch_group" "$admin_group" "$nbd_group"; do
    groupadd -r "$g" || fail "groupadd $g"
    cleanup_push "groupdel '$g'"
done
gid_of() { getent group "$1" | cut -d: -f3; }
# as GROUP CMD...: CMD as nobody with GROUP as its only supplementary group
# (and nobody's own primary group); as_primary GROUP CMD...: with GROUP as
# its primary group and no supplementary one.
as() {
    local g=$1
    shift
    setpriv --reuid=nobody --regid="$(id -g nobody)" --groups="$(gid_of "$g")" "$@"
}
as_primary() {
    local g=$1
    shift
    setpriv --reuid=nobody --regid="$(gid_of "$g")" --clear-groups "$@"
}
# A user in none of the groups.
as_nobody() { setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups "$@"; }

DEV_SOCK=$TMPD/s/ctl.sock
nbd_sock=$TMPD/s/nbd.sock
nbd_uri="nbd+unix:///?socket=$nbd_sock"
DEV_LOG=$TMPD/uzramd.log
# --group, the old name of --control-group, must keep working.
env --default-signal=INT,TERM "$UZRAMD" --foreground --name "roles-$$" --size 16M --mem-limit 8M \
    --control "$DEV_SOCK" --nbd-unix "$nbd_sock" --group "$watch_group" \
    --admin-group "$admin_group" --nbd-group "$nbd_group" 2>"$DEV_LOG" &
DEV_PID=$!
cleanup_push "stop_daemon_quietly"
if ! wait_for "[[ -S '$DEV_SOCK' && -S '$nbd_sock' ]] || ! pid_alive $DEV_PID" 30 ||
    ! pid_alive "$DEV_PID"; then
    fail "uzramd did not start: $(cat "$DEV_LOG")"
fi

# Two groups for the control socket: a file has one, so it is open to all
# and the daemon's check admits.  The NBD socket is its group's.
[[ $(stat -c '%a' "$DEV_SOCK") == 666 ]] ||
    fail "the control socket with two groups is $(stat -c '%G %a' "$DEV_SOCK"), not 0666"
[[ $(stat -c '%G %a' "$nbd_sock") == "$nbd_group 660" ]] ||
    fail "the NBD socket is $(stat -c '%G %a' "$nbd_sock"), not $nbd_group's and 0660"

limit=$(stat_field mem_limit)
((limit == 8 * MiB)) || fail "mem_limit is $limit, not 8M"

# ---- a member of --control-group watches ----------------------------------------
as "$watch_group" "$UZRAMCTL" stat "$DEV_SOCK" >"$TMPD/out" 2>&1 ||
    fail "uzramctl stat as a member of --control-group: $(cat "$TMPD/out")"
grep -q '^mem_limit ' "$TMPD/out" ||
    fail "uzramctl stat as a member of --control-group: $(cat "$TMPD/out")"
as "$watch_group" "$UZRAMCTL" list "$DEV_SOCK" >"$TMPD/out" 2>&1 ||
    fail "uzramctl list as a member of --control-group: $(cat "$TMPD/out")"

# ... and changes nothing.  Each change: exit 1, one line naming who may.
refused() { # WHAT ARGS...
    local what=$1 rc=0
    shift
    as "$watch_group" "$UZRAMCTL" "$@" >"$TMPD/out" 2>&1 || rc=$?
    ((rc == 1)) || fail "$what as a member of --control-group: exit $rc: $(cat "$TMPD/out")"
    grep -qF "Operation not permitted (read-only: changing the device needs root or group admin-group $admin_group)" \
        "$TMPD/out" ||
        fail "$what as a member of --control-group: no EPERM naming the admin group: $(cat "$TMPD/out")"
    [[ $(wc -l <"$TMPD/out") == 1 ]] || fail "$what: more than one line: $(cat "$TMPD/out")"
}
refused "set mem-limit=0" set "$DEV_SOCK" mem-limit=0
refused "compact" compact "$DEV_SOCK"
refused "stop" stop "$DEV_SOCK"
refused "stop --force" stop --force "$DEV_SOCK"
pid_alive "$DEV_PID" || fail "a member of --control-group stopped the daemon: $(cat "$DEV_LOG")"
limit=$(stat_field mem_limit)
((limit == 8 * MiB)) || fail "a member of --control-group changed mem_limit to $limit"

# ---- a member of --admin-group changes settings -----------------------------------
# By a supplementary group (SO_PEERGROUPS)...
as "$admin_group" "$UZRAMCTL" compact "$DEV_SOCK" >"$TMPD/out" 2>&1 ||
    fail "uzramctl compact as a member of --admin-group: $(cat "$TMPD/out")"
as "$admin_group" "$UZRAMCTL" set "$DEV_SOCK" mem-limit=10M >"$TMPD/out" 2>&1 ||
    fail "uzramctl set as a member of --admin-group: $(cat "$TMPD/out")"
limit=$(stat_field mem_limit)
((limit == 10 * MiB)) || fail "a member of --admin-group set mem_limit to 10M, it is $limit"
# ... and by its primary group (SO_PEERCRED).
as_primary "$admin_group" "$UZRAMCTL" set "$DEV_SOCK" mem-limit=11M >"$TMPD/out" 2>&1 ||
    fail "uzramctl set with --admin-group as the primary group: $(cat "$TMPD/out")"
limit=$(stat_field mem_limit)
((limit == 11 * MiB)) || fail "the primary group's set left mem_limit at $limit"

# ---- anyone else is refused at connect, 0666 or not ---------------------------------
stranger() { # WHO RUNNER...
    local who=$1 rc=0
    shift
    "$@" "$UZRAMCTL" stat "$DEV_SOCK" >"$TMPD/out" 2>&1 || rc=$?
    ((rc != 0)) || fail "$who used the control socket: $(cat "$TMPD/out")"
    grep -q 'connect: Permission denied' "$TMPD/out" ||
        fail "uzramctl stat as $who: not refused at connect: $(cat "$TMPD/out")"
    grep -qF "members of $watch_group (control-group), members of $admin_group (admin-group) may connect" \
        "$TMPD/out" || fail "uzramctl's refusal as $who does not name the groups: $(cat "$TMPD/out")"
}
stranger "a user in no group" as_nobody
stranger "a member of --nbd-group" as "$nbd_group"

# ---- the NBD socket: its group reads, and only it ------------------------------------
if as "$watch_group" nbdinfo --can connect "$nbd_uri" 2>"$TMPD/out"; then
    fail "a member of --control-group connected to the NBD socket"
fi
grep -q 'Permission denied' "$TMPD/out" || fail "NBD as a member of --control-group: $(cat "$TMPD/out")"
as "$nbd_group" nbdinfo --size "$nbd_uri" >"$TMPD/out" 2>&1 ||
    fail "nbdinfo as a member of --nbd-group: $(cat "$TMPD/out")"
[[ $(<"$TMPD/out") == $((16 * MiB)) ]] || fail "nbdinfo --size as a member of --nbd-group: $(cat "$TMPD/out")"
# Open the file to all: the daemon's own check still keeps strangers out.
chmod 0666 "$nbd_sock"
if as "$admin_group" nbdinfo --size "$nbd_uri" >"$TMPD/out" 2>&1; then
    fail "a user outside --nbd-group read the device through a 0666 NBD socket: $(cat "$TMPD/out")"
fi
as "$nbd_group" nbdinfo --size "$nbd_uri" >"$TMPD/out" 2>&1 ||
    fail "nbdinfo as a member of --nbd-group through the 0666 socket: $(cat "$TMPD/out")"

# ---- root still may change it ---------------------------------------------------------
"$UZRAMCTL" set "$DEV_SOCK" mem-limit=12M >"$TMPD/out" 2>&1 || fail "uzramctl set as root: $(cat "$TMPD/out")"
limit=$(stat_field mem_limit)
((limit == 12 * MiB)) || fail "root's set left mem_limit at $limit"
stop_daemon
((DEV_STATUS == 0)) || fail "uzramd exited $DEV_STATUS: $(cat "$DEV_LOG")"
# The one refused NBD client is counted, and nothing was logged for it alone.
grep -q ' 1 refused as strangers ' "$DEV_LOG" ||
    fail "the stranger on the NBD socket is not counted: $(grep 'NBD stopped' "$DEV_LOG")"

# ---- one group: 0660 and that group -------------------------------------------------
env --default-signal=INT,TERM "$UZRAMD" --foreground --name "roles1-$$" --size 16M \
    --control "$DEV_SOCK" --nbd-unix "$nbd_sock" --admin-group "$admin_group" 2>"$DEV_LOG" &
DEV_PID=$!
if ! wait_for "[[ -S '$DEV_SOCK' ]] || ! pid_alive $DEV_PID" 30 || ! pid_alive "$DEV_PID"; then
    fail "uzramd with --admin-group alone did not start: $(cat "$DEV_LOG")"
fi
[[ $(stat -c '%G %a' "$DEV_SOCK") == "$admin_group 660" ]] ||
    fail "the control socket with --admin-group alone is $(stat -c '%G %a' "$DEV_SOCK")"
as "$admin_group" "$UZRAMCTL" set "$DEV_SOCK" mem-limit=9M >"$TMPD/out" 2>&1 ||
    fail "uzramctl set as a member of --admin-group alone: $(cat "$TMPD/out")"
# Someone else meets the file's mode, and uzramctl names the group.
rc=0
as "$watch_group" "$UZRAMCTL" stat "$DEV_SOCK" >"$TMPD/out" 2>&1 || rc=$?
((rc != 0)) || fail "a user outside --admin-group used its 0660 control socket"
grep -q "only root and members of $admin_group may use it" "$TMPD/out" ||
    fail "uzramctl's refusal does not name the socket's group: $(cat "$TMPD/out")"
stop_daemon
((DEV_STATUS == 0)) || fail "uzramd exited $DEV_STATUS: $(cat "$DEV_LOG")"

log "PASS"
