# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# The daemon under test: sourced, never run, on common.sh (see there for the
# order of the libraries).  Starting and stopping uzramd as a user or
# systemd would, loop devices on its FUSE file, swap on them in a memory
# cgroup, and its figures through `uzramctl stat`.
#
# The scripts are called by meson as
#   test-X.sh UZRAMD UZRAMCTL [HELPER...]
# so that no build directory is written into them.  This file takes the
# first two arguments; the script finds its helpers in "$@".

[[ -z ${_UZTEST_UZRAMD:-} ]] || return 0
_UZTEST_UZRAMD=1

# shellcheck source=tests/lib/common.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/common.sh"

UZRAMD=${1:?usage: $0 UZRAMD UZRAMCTL [HELPER...]}
UZRAMCTL=${2:?usage: $0 UZRAMD UZRAMCTL [HELPER...]}
shift 2

require_binaries() {
    [[ -x $UZRAMD ]] || fail "uzramd not found at $UZRAMD"
    [[ -x $UZRAMCTL ]] || fail "uzramctl not found at $UZRAMCTL"
}

# ---- the daemon ----------------------------------------------------------

# Is $1 the mount point of a FUSE mount?
fuse_mounted() {
    [[ $(findmnt -n -o FSTYPE --mountpoint "$1" 2>/dev/null || true) == fuse* ]]
}

# daemon_started RC: after `uzramd` (in the background) exited RC, register
# its stop and check what a ready daemon promises: exit 0, a pidfile naming
# a live process (sets DEV_PID), and the control socket $DEV_SOCK.
daemon_started() {
    # Register the undo even on failure: it may have half-started.
    cleanup_push "stop_daemon_quietly"
    (($1 == 0)) || fail "uzramd exited $1"
    [[ -s $DEV_PIDFILE ]] || fail "uzramd returned but $DEV_PIDFILE is empty or missing"
    DEV_PID=$(<"$DEV_PIDFILE")
    [[ $DEV_PID =~ ^[0-9]+$ ]] || fail "pidfile holds '$DEV_PID'"
    pid_alive "$DEV_PID" || fail "uzramd (pid $DEV_PID) is not running"
    [[ -S $DEV_SOCK ]] || fail "uzramd returned before its control socket $DEV_SOCK existed"
}

# wait_started_fg WHAT: after starting uzramd --foreground in the background
# of this shell (DEV_PID, log in $TMPD/uzramd.log), register its stop and
# wait for its control socket $DEV_SOCK; fail with WHAT if it dies first.
wait_started_fg() {
    cleanup_push "stop_daemon_quietly"
    if ! wait_for "[[ -S '$DEV_SOCK' ]] || ! pid_alive $DEV_PID" 30 || ! pid_alive "$DEV_PID"; then
        cat "$TMPD/uzramd.log" >&2
        fail "$1"
    fi
}

# start_daemon SIZE [UZRAMD ARGS...]: start uzramd in the background the
# way a user would (it forks and returns once ready) on $TMPD/dev with a
# unique name, and its control socket in $TMPD (or, with DEFAULT_SOCKET=1,
# where uzramd puts it by default, where `uzramctl list` looks).  Sets
# DEV_NAME, DEV_SOCK (DEVICE for uzramctl), DEV_FILE, DEV_PIDFILE, DEV_PID.  The checks right after the command are the
# readiness promise: the file and the socket must be usable on the next
# line.
start_daemon() {
    local size=$1
    shift
    DEV_NAME="uzit-$$-${RANDOM}"
    DEV_FILE="$TMPD/dev"
    DEV_PIDFILE="$TMPD/uzramd.pid"
    local ctl=()
    if [[ ${DEFAULT_SOCKET:-0} == 1 ]]; then
        DEV_SOCK="/run/uzram/$DEV_NAME.sock"
        # Where uzramd logs without /dev/log; it outlives the daemon.
        cleanup_push "rm -f '/run/uzram/$DEV_NAME.log'"
    else
        DEV_SOCK="$TMPD/ctl.sock"
        ctl=(--control "$DEV_SOCK")
    fi
    : >"$DEV_FILE"
    log "uzramd --name $DEV_NAME --size $size --fuse $DEV_FILE ${ctl[*]} --pidfile $DEV_PIDFILE $*"
    local rc=0
    "$UZRAMD" --name "$DEV_NAME" --size "$size" --fuse "$DEV_FILE" \
        --fuse-transport "$FUSE_TRANSPORT" "${ctl[@]}" --pidfile "$DEV_PIDFILE" "$@" || rc=$?
    daemon_started "$rc"
    fuse_mounted "$DEV_FILE" || fail "uzramd returned before $DEV_FILE was a FUSE mount"
    check_fuse_transport "$@"
}

# check_fuse_transport [UZRAMD ARGS...]: the daemon serves its FUSE file
# over the transport under test, unless ARGS chose another.
check_fuse_transport() {
    local a got
    for a; do [[ $a != --fuse-transport* ]] || return 0; done
    got=$(stat_value fuse_transport) || fail "uzramctl stat has no fuse_transport"
    [[ $got == "$FUSE_TRANSPORT" ]] ||
        fail "the daemon serves its FUSE file over '$got', not $FUSE_TRANSPORT"
}

# start_daemon_fg SIZE [ARGS...]: the same with --foreground, as a child of
# this shell (so that its exit status can be waited for); stderr goes to
# $TMPD/uzramd.log.  Waits for the mount and the socket.
start_daemon_fg() {
    local size=$1
    shift
    DEV_NAME="uzit-$$-${RANDOM}"
    DEV_SOCK="$TMPD/ctl.sock"
    DEV_FILE="$TMPD/dev"
    DEV_PIDFILE="$TMPD/uzramd.pid"
    DEV_LOG="$TMPD/uzramd.log"
    : >"$DEV_FILE"
    log "uzramd --foreground --name $DEV_NAME --size $size --fuse $DEV_FILE --control $DEV_SOCK $*"
    # A non-interactive shell starts background commands with SIGINT
    # ignored, and libfuse leaves an ignored signal alone: give the daemon
    # the default disposition it would get from a terminal.
    env --default-signal=INT,TERM "$UZRAMD" --foreground --name "$DEV_NAME" --size "$size" \
        --fuse "$DEV_FILE" --fuse-transport "$FUSE_TRANSPORT" --control "$DEV_SOCK" \
        --pidfile "$DEV_PIDFILE" "$@" 2>"$DEV_LOG" &
    DEV_PID=$!
    cleanup_push "stop_daemon_quietly"
    if ! wait_for "[[ -S '$DEV_SOCK' ]] && fuse_mounted '$DEV_FILE' || ! pid_alive $DEV_PID" 30 ||
        ! pid_alive "$DEV_PID"; then
        cat "$DEV_LOG" >&2 || true
        fail "uzramd --foreground did not become ready"
    fi
    check_fuse_transport "$@"
}

# stop_daemon [SECS]: SIGTERM, then wait (default 30 s) for the process to
# go.  Fails the test if it does not.  For a child (foreground) daemon,
# DEV_STATUS gets its exit status.
stop_daemon() {
    local secs=${1:-30}
    [[ -n ${DEV_PID:-} ]] || return 0
    kill -TERM "$DEV_PID" 2>/dev/null || true
    if ! wait_for "! pid_alive $DEV_PID" "$secs"; then
        fail "uzramd (pid $DEV_PID) still running $secs s after SIGTERM"
    fi
    DEV_STATUS=
    # shellcheck disable=SC2034 # read by the tests
    if wait "$DEV_PID" 2>/dev/null; then DEV_STATUS=0; else DEV_STATUS=$?; fi
    DEV_PID=
}

# The cleanup stack's version: never fails, and if the daemon will not go
# or left its mount behind, forces both so the machine is usable.
stop_daemon_quietly() {
    if [[ -n ${DEV_PID:-} ]] && pid_alive "$DEV_PID"; then
        kill -TERM "$DEV_PID" 2>/dev/null
        if ! wait_for "! pid_alive $DEV_PID" 30; then
            log "uzramd (pid $DEV_PID) ignored SIGTERM for 30 s: SIGKILL"
            kill -KILL "$DEV_PID" 2>/dev/null
            wait_for "! pid_alive $DEV_PID" 10 || true
        fi
    fi
    wait "${DEV_PID:-0}" 2>/dev/null || true
    DEV_PID=
    if [[ -n ${DEV_FILE:-} ]] && fuse_mounted "$DEV_FILE"; then
        log "$DEV_FILE still mounted after the daemon went: lazy unmount"
        umount -l "$DEV_FILE" 2>/dev/null || fusermount3 -u -z "$DEV_FILE" 2>/dev/null || true
    fi
}

# ---- loop devices --------------------------------------------------------

# attach_loop FILE: a loop device with direct I/O on FILE; sets LOOPDEV.
attach_loop() {
    LOOPDEV=$(losetup --find --show --direct-io=on "$1") || fail "losetup on $1 failed"
    cleanup_push "losetup -d '$LOOPDEV' 2>/dev/null || true"
    local dio
    dio=$(losetup --list --noheadings --output DIO "$LOOPDEV" | tr -d ' ')
    [[ $dio == 1 ]] || log "warning: the kernel did not enable direct I/O on $LOOPDEV"
    # udev may still hold the new device for a moment.
    udevadm settle 2>/dev/null || true
}

# ---- swap in a memory cgroup ---------------------------------------------

# require_memcg: the cgroup v1 memory controller (to force a program into
# swap), or skip.  Sets MEMCG.
require_memcg() {
    MEMCG=/sys/fs/cgroup/memory
    [[ -f $MEMCG/memory.limit_in_bytes ]] || skip "needs the cgroup v1 memory controller at $MEMCG"
}

# kill_cgroup DIR: kill what runs in the cgroup DIR and wait until it is empty.
kill_cgroup() {
    local pid
    [[ -d $1 ]] || return 0
    while read -r pid; do kill -KILL "$pid" 2>/dev/null; done <"$1/cgroup.procs"
    wait_for "[[ -z \$(cat '$1/cgroup.procs') ]]" 30
}

# swap_on_loop: mkswap and swapon $LOOPDEV at the highest priority (so that
# the kernel swaps to it before any other swap area), undone on exit.
swap_on_loop() {
    mkswap "$LOOPDEV" >/dev/null || fail "mkswap $LOOPDEV failed"
    swapon -p 32767 "$LOOPDEV" || fail "swapon $LOOPDEV failed"
    cleanup_push "! grep -q '^$LOOPDEV ' /proc/swaps || swapoff '$LOOPDEV'"
    grep -q "^$LOOPDEV " /proc/swaps || fail "$LOOPDEV is not in /proc/swaps after swapon"
}

# swap_fill_in_cgroup SWAP-FILL SIZE LIMIT: run the swap program on SIZE of
# memory in a new memory cgroup capped at LIMIT (swappiness 100), and fail
# the test if it fails (a word came back wrong) or if less than half of
# SIZE went to swap.  Sets SWAPPED_KB (the most that was swapped at once).
swap_fill_in_cgroup() {
    local prog=$1 size=$2 limit=$3 rc=0 cg="$MEMCG/uzram-test-$$"
    mkdir "$cg" || fail "cannot create the cgroup $cg"
    cleanup_push "kill_cgroup '$cg'; rmdir '$cg'"
    echo "$limit" >"$cg/memory.limit_in_bytes"
    echo 100 >"$cg/memory.swappiness"
    log "running swap-fill --size $size in a $limit cgroup"
    # The wrapper puts itself in the cgroup and then becomes swap-fill, so
    # that nothing else (not this shell) is charged to it.
    # shellcheck disable=SC2016
    sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cg" \
        "$prog" --size "$size" --seed "$$" >"$TMPD/swap-fill.out" || rc=$?
    cat "$TMPD/swap-fill.out" >&2
    ((rc == 0)) || fail "swap-fill exited $rc (a word came back wrong, or it was killed)"
    SWAPPED_KB=$(sed -n 's/.*vmswap_max_kb=\([0-9]*\).*/\1/p' "$TMPD/swap-fill.out")
    [[ -n $SWAPPED_KB ]] || fail "swap-fill printed no vmswap_max_kb"
    log "swap-fill had up to $((SWAPPED_KB / 1024)) MiB swapped"
    local half=$(($(numfmt --from=iec "$size") / 2))
    ((SWAPPED_KB * 1024 > half)) ||
        fail "swap-fill swapped only $SWAPPED_KB KiB of $size: the test did not exercise swap"
    grep -q "^$LOOPDEV " /proc/swaps || fail "$LOOPDEV left /proc/swaps during the run"
}

# ---- uzramctl stat -------------------------------------------------------

# stat_json: `uzramctl stat DEVICE --json`, checked to be one JSON object.
stat_json() {
    local out
    out=$("$UZRAMCTL" stat "$DEV_SOCK" --json) || fail "uzramctl stat $DEV_SOCK --json failed"
    printf '%s\n' "$out"
}

# stat_field FIELD: one integer field of uzramctl stat --json.
stat_field() {
    local json
    json=$(stat_json) || exit 1
    json_int "$json" "$1"
}

# stat_value KEY: one figure of `uzramctl stat --json`, printed as Python
# prints it (a string without quotes).  Never fails the test, so that
# wait_for can poll it while the daemon reloads.
stat_value() {
    "$UZRAMCTL" stat "$DEV_SOCK" --json | python3 -c '
import json, sys
print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# expect_start_error RC PATTERN ARGS...: uzramd --foreground ARGS refuses to
# start with exit RC (2: a usage error; 1: a start that failed) and a
# message matching PATTERN (grep), within 20 s.  Its stderr stays in
# $TMPD/err for further checks.
expect_start_error() {
    local want=$1 pat=$2 rc=0
    shift 2
    timeout -s KILL 20 "$UZRAMD" --foreground --name "bad-$$" "$@" 2>"$TMPD/err" || rc=$?
    ((rc == want)) || fail "uzramd $*: exit $rc, not $want: $(<"$TMPD/err")"
    grep -q -- "$pat" "$TMPD/err" || fail "uzramd $*: no '$pat' in: $(<"$TMPD/err")"
}
