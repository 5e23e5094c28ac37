#!/bin/bash
# SPDX-License-Identifier: MIT
#
# uzramctl stop (and zramctl's --reset): a device in use (its FUSE file
# held by a loop device, an NBD client connected) is refused with the
# reason, and goes on serving what it stored; a device nobody uses stops,
# and uzramctl returns once the daemon is gone; --force stops one in use,
# whose users then get I/O errors.  A daemon killed leaves a dead mount,
# which the next start names, with how to remove it.
#
#   test-stop.sh UZRAMD UZRAMCTL

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$0")/../lib/uzramd.sh"

require_root
require_fuse
require_cmd losetup dd cmp python3
require_binaries

make_tmpdir uzstop
# stop --force aborts through /sys/fs/fuse/connections, which uzramd mounts
# where it is not: leave the machine as found.
if ! grep -q ' /sys/fs/fuse/connections fusectl ' /proc/mounts; then
    cleanup_push "umount /sys/fs/fuse/connections 2>/dev/null || true"
fi
start_daemon 64M --nbd-unix "$TMPD/dev.nbd"
cleanup_push stop_daemon_quietly
DEV_PID=$(<"$DEV_PIDFILE")

# Something stored, to be read back after each refusal.
head -c 1M /dev/urandom >"$TMPD/data"
dd if="$TMPD/data" of="$DEV_FILE" bs=64k conv=notrunc,fsync status=none ||
    fail "writing the device"

# expect_refused WHAT PATTERN ARGS...: uzramctl ARGS exits 1 with one line
# naming the reason, and the daemon still serves the data.
expect_refused() {
    local what=$1 pat=$2 rc=0
    shift 2
    "$UZRAMCTL" "$@" >"$TMPD/out" 2>"$TMPD/err" || rc=$?
    ((rc == 1)) || fail "stop with $what: exit $rc, not 1: $(<"$TMPD/err")"
    [[ $(wc -l <"$TMPD/err") == 1 ]] || fail "stop with $what: not one line: $(<"$TMPD/err")"
    grep -q -- "stop: Device or resource busy (.*$pat" "$TMPD/err" ||
        fail "stop with $what: the reason is not named: $(<"$TMPD/err")"
    [[ ! -s $TMPD/out ]] || fail "stop with $what printed: $(<"$TMPD/out")"
    pid_alive "$DEV_PID" || fail "the daemon went away after a refused stop ($what)"
    cmp -n 1048576 "$TMPD/data" "$DEV_FILE" || fail "the data changed after a refused stop ($what)"
}

# The FUSE file held by a loop device, which stat names, with the daemon's
# pid and front ends.
attach_loop "$DEV_FILE"
for kv in "pid $DEV_PID" "fuse $DEV_FILE" "loop_devices $LOOPDEV" "nbd unix:$TMPD/dev.nbd"; do
    grep -qx "${kv%% *} *${kv#* }" <<<"$("$UZRAMCTL" stat "$DEV_SOCK")" ||
        fail "uzramctl stat does not show '$kv': $("$UZRAMCTL" stat "$DEV_SOCK" | head -8)"
done
[[ $("$UZRAMCTL" stat --json "$DEV_SOCK" | grep '"loop_devices"') == *"\"$LOOPDEV\""* ]] ||
    fail "stat --json has no loop_devices $LOOPDEV"
expect_refused "a loop device" "the FUSE file $DEV_FILE is open 1 time: a loop device?" \
    stop "$DEV_SOCK"
expect_refused "a loop device (--reset)" "the FUSE file $DEV_FILE is open" --reset "$DEV_SOCK"
losetup -d "$LOOPDEV"
cleanup_pop
# The kernel sends RELEASE shortly after the last close, not at once.
wait_for "! grep -q '$DEV_FILE' <(losetup -a)" 10 || fail "losetup -d did not let go"

# An NBD client connected (a socket in the handshake counts: it is one).
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
print("connected", flush=True)
time.sleep(60)' "$TMPD/dev.nbd" >"$TMPD/client.out" &
client=$!
cleanup_push "kill $client 2>/dev/null; wait $client 2>/dev/null"
wait_for "grep -q connected '$TMPD/client.out'" 10 || fail "the NBD client did not connect"
sleep 0.2
expect_refused "an NBD client" "1 NBD client connected; or stop --force" stop "$DEV_SOCK"
kill "$client"
wait "$client" 2>/dev/null || true
cleanup_pop

# Nobody uses it: stop returns once the daemon has gone, its files with it.
wait_for "'$UZRAMCTL' stop '$DEV_SOCK' >'$TMPD/out' 2>'$TMPD/err'" 10 ||
    fail "stop of a device nobody uses: $(<"$TMPD/err")"
[[ $(<"$TMPD/out") == "$DEV_NAME: stopped" ]] || fail "stop printed: $(<"$TMPD/out")"
pid_alive "$DEV_PID" && fail "uzramctl stop returned while the daemon (pid $DEV_PID) runs"
fuse_mounted "$DEV_FILE" && fail "the FUSE file is still mounted after stop"
[[ ! -e $DEV_SOCK && ! -e $TMPD/dev.nbd && ! -e $DEV_PIDFILE ]] ||
    fail "stop left files: $(ls "$TMPD")"
DEV_PID=

# --force, with a loop device on the file: the daemon stops, and the loop
# device's reads fail rather than hang.
start_daemon 64M
DEV_PID=$(<"$DEV_PIDFILE")
attach_loop "$DEV_FILE"
"$UZRAMCTL" stop --force "$DEV_SOCK" >"$TMPD/out" 2>"$TMPD/err" ||
    fail "stop --force: $(<"$TMPD/err")"
[[ $(<"$TMPD/out") == "$DEV_NAME: stopped" ]] || fail "stop --force printed: $(<"$TMPD/out")"
pid_alive "$DEV_PID" && fail "stop --force returned while the daemon runs"
rc=0
timeout 30 dd if="$LOOPDEV" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null ||
    rc=$?
((rc != 0 && rc != 124)) || fail "a read of the loop device after stop --force: exit $rc"
DEV_PID=

# SIGTERM with a loop device on the file: the daemon serves on until it is
# released; uzramctl stop --force then ends the wait.
start_daemon 64M
DEV_PID=$(<"$DEV_PIDFILE")
attach_loop "$DEV_FILE"
kill -TERM "$DEV_PID"
sleep 3
pid_alive "$DEV_PID" || fail "the daemon stopped on SIGTERM while a loop device held the file"
"$UZRAMCTL" stop --force "$DEV_SOCK" >"$TMPD/out" 2>"$TMPD/err" ||
    fail "stop --force during a stop: $(<"$TMPD/err")"
pid_alive "$DEV_PID" && fail "stop --force during a stop returned while the daemon runs"
DEV_PID=

# A daemon killed leaves a dead mount; the next start on the file says so,
# and how to remove it, which then works.
start_daemon 64M
kill -KILL "$(<"$DEV_PIDFILE")"
wait_for "! pid_alive $(<"$DEV_PIDFILE")" 10 || fail "SIGKILL did not end the daemon"
rc=0
"$UZRAMD" --name "$DEV_NAME" --size 64M --fuse "$DEV_FILE" --control "$DEV_SOCK" \
    2>"$TMPD/err" || rc=$?
((rc == 1)) || fail "a start on a dead mount: exit $rc: $(<"$TMPD/err")"
grep -q -- "$DEV_FILE: a dead FUSE mount is there (losetup -j $DEV_FILE shows a loop device on it: losetup -d that first; then umount -l $DEV_FILE)" \
    "$TMPD/err" || fail "the dead mount is not named: $(<"$TMPD/err")"
umount -l "$DEV_FILE" || fail "umount -l of the dead mount"
fuse_mounted "$DEV_FILE" && fail "the dead mount is still there"

# Usage: --force belongs to stop; stop takes one DEVICE.
rc=0
"$UZRAMCTL" compact --force "$DEV_SOCK" 2>"$TMPD/err" || rc=$?
((rc == 2)) && grep -q -- "--force is an option of stop" "$TMPD/err" ||
    fail "compact --force: exit $rc: $(<"$TMPD/err")"
rc=0
"$UZRAMCTL" stop 2>"$TMPD/err" || rc=$?
((rc == 2)) || fail "stop without DEVICE: exit $rc"
log "passed"
