#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Who may do what through a daemon's sockets (uzramd(8), SECURITY).  The
# attack that worked before its fix: a member of --group, meant to watch
# the device, could both change it through the control socket (lift
# mem-limit, compact, stop the daemon) and read and write the whole disk
# through the NBD Unix socket, which --group opened too.  Now:
#   - --group G opens the control socket alone, and G's members may only
#     watch: stat and list work, every change is refused with EPERM;
#   - --nbd-group H opens the NBD Unix socket alone: H's members may read
#     and write the disk, and cannot connect to the control socket;
#   - the daemon checks each NBD peer too: with the file opened to all
#     (chmod 0666), a user outside H is closed at once and counted, and
#     H's members still read.
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

# Two groups that nobody is not in, removed at exit.
watch_group=uzw$$
nbd_group=uzn$$
groupadd -r "$watch_group" || fail "groupadd $watch_group"
cleanup_push "groupdel '$watch_group'"
groupadd -r "$nbd_group" || fail "groupadd $nbd_group"
cleanup_push "groupdel '$nbd_group'"
# as GROUP CMD...: CMD as nobody with GROUP as its only supplementary group.
as() {
    local g=$1
    shift
    setpriv --reuid=nobody --regid="$(id -g nobody)" --groups="$(getent group "$g" | cut -d: -f3)" "$@"
}

DEV_SOCK=$TMPD/s/ctl.sock
nbd_sock=$TMPD/s/nbd.sock
nbd_uri="nbd+unix:///?socket=$nbd_sock"
DEV_LOG=$TMPD/uzramd.log
env --default-signal=INT,TERM "$UZRAMD" --foreground --name "roles-$$" --size 16M --mem-limit 8M \
    --control "$DEV_SOCK" --nbd-unix "$nbd_sock" --group "$watch_group" --nbd-group "$nbd_group" \
    2>"$DEV_LOG" &
DEV_PID=$!
cleanup_push "stop_daemon_quietly"
if ! wait_for "[[ -S '$DEV_SOCK' && -S '$nbd_sock' ]] || ! pid_alive $DEV_PID" 30 ||
    ! pid_alive "$DEV_PID"; then
    fail "uzramd did not start: $(cat "$DEV_LOG")"
fi

# Each socket is its own group's.
[[ $(stat -c '%G %a' "$DEV_SOCK") == "$watch_group 660" ]] ||
    fail "the control socket is $(stat -c '%G %a' "$DEV_SOCK"), not $watch_group's and 0660"
[[ $(stat -c '%G %a' "$nbd_sock") == "$nbd_group 660" ]] ||
    fail "the NBD socket is $(stat -c '%G %a' "$nbd_sock"), not $nbd_group's and 0660"

limit=$(stat_field mem_limit)
((limit == 8 * MiB)) || fail "mem_limit is $limit, not 8M"

# ---- a member of --group watches ----------------------------------------------
as "$watch_group" "$UZRAMCTL" stat "$DEV_SOCK" >"$TMPD/out" 2>&1 ||
    fail "uzramctl stat as a member of --group: $(cat "$TMPD/out")"
grep -q '^mem_limit ' "$TMPD/out" || fail "uzramctl stat as a member of --group: $(cat "$TMPD/out")"
as "$watch_group" "$UZRAMCTL" list "$DEV_SOCK" >"$TMPD/out" 2>&1 ||
    fail "uzramctl list as a member of --group: $(cat "$TMPD/out")"

# ... and changes nothing.  Each change: exit 1, one line naming the rule.
refused() { # WHAT ARGS...
    local what=$1 rc=0
    shift
    as "$watch_group" "$UZRAMCTL" "$@" >"$TMPD/out" 2>&1 || rc=$?
    ((rc == 1)) || fail "$what as a member of --group: exit $rc: $(cat "$TMPD/out")"
    grep -q 'Operation not permitted (read-only: only root may change the device)' "$TMPD/out" ||
        fail "$what as a member of --group: no EPERM naming the rule: $(cat "$TMPD/out")"
    [[ $(wc -l <"$TMPD/out") == 1 ]] || fail "$what: more than one line: $(cat "$TMPD/out")"
}
refused "set mem-limit=0" set "$DEV_SOCK" mem-limit=0
refused "compact" compact "$DEV_SOCK"
refused "stop" stop "$DEV_SOCK"
refused "stop --force" stop --force "$DEV_SOCK"
pid_alive "$DEV_PID" || fail "a member of --group stopped the daemon: $(cat "$DEV_LOG")"
limit=$(stat_field mem_limit)
((limit == 8 * MiB)) || fail "a member of --group changed mem_limit to $limit"

# The disk is not theirs: the NBD socket is another group's.
if as "$watch_group" nbdinfo --can connect "$nbd_uri" 2>"$TMPD/out"; then
    fail "a member of --group connected to the NBD socket"
fi
grep -q 'Permission denied' "$TMPD/out" || fail "NBD as a member of --group: $(cat "$TMPD/out")"

# ---- a member of --nbd-group uses the disk --------------------------------------
as "$nbd_group" nbdinfo --size "$nbd_uri" >"$TMPD/out" 2>&1 ||
    fail "nbdinfo as a member of --nbd-group: $(cat "$TMPD/out")"
[[ $(<"$TMPD/out") == $((16 * MiB)) ]] || fail "nbdinfo --size as a member of --nbd-group: $(cat "$TMPD/out")"
# ... and cannot reach the control socket at all.
rc=0
as "$nbd_group" "$UZRAMCTL" stat "$DEV_SOCK" >"$TMPD/out" 2>&1 || rc=$?
((rc != 0)) || fail "a member of --nbd-group used the control socket"
grep -q 'Permission denied' "$TMPD/out" || fail "uzramctl stat as a member of --nbd-group: $(cat "$TMPD/out")"
# The refusal names the group that would let the user in.
grep -q "only root and members of $watch_group may use it" "$TMPD/out" ||
    fail "uzramctl's refusal does not name the group --group gave: $(cat "$TMPD/out")"

# Open the NBD socket's file to all: the daemon's own check still keeps
# strangers out.
chmod 0666 "$nbd_sock"
if as "$watch_group" nbdinfo --size "$nbd_uri" >"$TMPD/out" 2>&1; then
    fail "a user outside --nbd-group read the device through a 0666 NBD socket: $(cat "$TMPD/out")"
fi
as "$nbd_group" nbdinfo --size "$nbd_uri" >"$TMPD/out" 2>&1 ||
    fail "nbdinfo as a member of --nbd-group through the 0666 socket: $(cat "$TMPD/out")"

# ---- root still may change it ---------------------------------------------------
"$UZRAMCTL" set "$DEV_SOCK" mem-limit=12M >"$TMPD/out" 2>&1 || fail "uzramctl set as root: $(cat "$TMPD/out")"
limit=$(stat_field mem_limit)
((limit == 12 * MiB)) || fail "root's set left mem_limit at $limit"
stop_daemon
((DEV_STATUS == 0)) || fail "uzramd exited $DEV_STATUS: $(cat "$DEV_LOG")"
# The one refused NBD client is counted, and nothing was logged for it alone.
grep -q ' 1 refused as strangers ' "$DEV_LOG" ||
    fail "the stranger on the NBD socket is not counted: $(grep 'NBD stopped' "$DEV_LOG")"

log "PASS"
