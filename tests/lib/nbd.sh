# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# uzramd serving NBD: sourced, never run, on uzramd.sh (see common.sh for
# the order of the libraries).
#
# These tests reach the device only through NBD clients (nbdinfo, nbdcopy,
# qemu-io, qemu-img, fio's nbd engine, libnbd programs), over a Unix socket
# in the test's own directory or a TCP port on loopback.  No mount, no loop
# device, no /dev/fuse: they run as any user.  The control socket is always
# put in the test's directory too, because the default run directory
# (/run/uzram) is root's.  The NBD tests' temporary directories are
# /tmp/uznbd.* (make_tmpdir uznbd), to tell their leftovers from the
# integration tests'.

[[ -z ${_UZTEST_NBD:-} ]] || return 0
_UZTEST_NBD=1

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/uzramd.sh"

# nbd_unix_uri SOCKET: the NBD URI of the default export on a Unix socket.
nbd_unix_uri() { printf 'nbd+unix:///?socket=%s\n' "$1"; }

# free_tcp_port: a port on 127.0.0.1 that nothing listens on right now.
# The kernel picks it (bind to port 0); it is released before uzramd binds
# it, which leaves a short window for another process to take it: a clash
# shows up as uzramd failing to start, never as a wrong result.
free_tcp_port() {
    python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# start_nbd_daemon SIZE [UZRAMD ARGS...]: start uzramd in the background the
# way a user would (it forks and returns once it listens), serving NBD on
# $TMPD/nbd.sock, with its control socket at $TMPD/ctl.sock and no FUSE
# file.  Sets DEV_NAME, DEV_SOCK (DEVICE for uzramctl), NBD_SOCK, NBD_URI,
# DEV_PIDFILE, DEV_PID.  What is checked right after the command is the
# readiness promise: the NBD socket must take a connection on the next line.
start_nbd_daemon() {
    local size=$1
    shift
    DEV_NAME="uznbd-$$-${RANDOM}"
    DEV_SOCK="$TMPD/ctl.sock"
    NBD_SOCK="$TMPD/nbd.sock"
    NBD_URI=$(nbd_unix_uri "$NBD_SOCK")
    DEV_PIDFILE="$TMPD/uzramd.pid"
    DEV_FILE=
    log "uzramd --name $DEV_NAME --size $size --nbd-unix $NBD_SOCK --control $DEV_SOCK --pidfile $DEV_PIDFILE $*"
    local rc=0
    # A daemon's stderr is gone once it detaches: in a sanitizer build its
    # reports go to files instead, which stop_nbd_daemon looks for.
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$TMPD/sanitizer" \
        UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$TMPD/sanitizer" \
        TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}log_path=$TMPD/sanitizer" \
        "$UZRAMD" --name "$DEV_NAME" --size "$size" --nbd-unix "$NBD_SOCK" \
        --control "$DEV_SOCK" --pidfile "$DEV_PIDFILE" "$@" 2>"$TMPD/uzramd.err" || rc=$?
    cat "$TMPD/uzramd.err" >&2
    daemon_started "$rc"
    [[ -S $NBD_SOCK ]] || fail "uzramd returned before its NBD socket $NBD_SOCK existed"
    # With --tls=require a plain client gets nowhere: NBD_READY_URI names one that does.
    nbdinfo --can connect "${NBD_READY_URI:-$NBD_URI}" ||
        fail "uzramd returned but ${NBD_READY_URI:-$NBD_URI} takes no connection"
}

# stop_nbd_daemon: stop_daemon, then fail if a sanitizer reported anything
# about the daemon (errors, or leaks found at its exit).
stop_nbd_daemon() {
    stop_daemon 30
    local f
    for f in "$TMPD"/sanitizer.*; do
        [[ -e $f ]] || continue
        cat "$f" >&2
        fail "a sanitizer reported on uzramd (above)"
    done
}

# require_alive WHAT: fail unless the daemon still runs (after WHAT).
require_alive() {
    pid_alive "$DEV_PID" && return 0
    cat "$TMPD"/sanitizer.* >&2 2>/dev/null || true
    fail "uzramd (pid $DEV_PID) died after $1"
}
