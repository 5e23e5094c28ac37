#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What a client that does not read its replies, or does nothing at all, can
# take from the others (the project's security finding 3), through raw
# clients (nbd-stall.py):
#   --send-timeout 10    with --threads 2, a client with a small receive
#                        buffer sends large READs (512 KiB: served in job
#                        buffers) and never reads: its replies queue
#                        (nbd_queued_bytes), yet another client's 1 MiB
#                        read is answered while it is still connected (it
#                        holds two of the three job buffers at most, one
#                        per worker, never the spare), then the
#                        stalled client is dropped (nbd_send_timeouts 1),
#                        its queued bytes go, and the data written before
#                        reads back whole.  Before the fix the other read
#                        hung (timeout 60: a hang detector, not a timing);
#                        without the cap on job buffers it waits for the
#                        drop, and nbd_send_timeouts is 1 already.  The
#                        same with the stalling client inside TLS
#                        (--tls=on, X.509), where the send that times out
#                        is GnuTLS's
#   --idle-timeout 2     a client in transmission that sends nothing is
#                        disconnected (within 30 s) and counted
#                        (nbd_idle_timeouts); with the default (no idle
#                        timeout) one stays connected for 5 s

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$0")/../lib/nbd.sh"

require_cmd nbdinfo
require_cmd timeout
require_binaries
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO}
require_system_python
STALL=$(dirname "$0")/nbd-stall.py

make_tmpdir uznbd

# stall_case WHAT [tls] [UZRAMD ARGS...]: the --send-timeout case above, with
# the stalling client plain or inside TLS.
# shellcheck disable=SC2016 # wait_for evaluates its conditions
stall_case() {
    local what=$1 mode=
    shift
    if [[ ${1:-} == tls ]]; then
        mode=tls
        shift
    fi
    start_nbd_daemon 64M --threads 2 --send-timeout 10 "$@"
    "$NBD_IO" "$NBD_URI" "rand:0:8M:21" || fail "the first client's write failed ($what)"

    rm -f "$TMPD/stall-ready"
    # shellcheck disable=SC2086 # $mode: no word, or one
    "$PY" "$STALL" $mode "$NBD_SOCK" 8 $((512 * 1024)) "$TMPD/stall-ready" &
    local stall_pid=$!
    cleanup_push "kill $stall_pid 2>/dev/null || true"
    wait_for "[[ -s '$TMPD/stall-ready' ]] || ! pid_alive $stall_pid" 60 || true
    [[ -s $TMPD/stall-ready ]] || fail "the stalling client did not send its reads ($what)"
    # Its replies wait for a reader that never comes: visible in the statistics.
    wait_for '(( $(stat_value nbd_queued_bytes) >= 512 * 1024 ))' 60 ||
        fail "the stalled client's replies do not show in nbd_queued_bytes ($what)"

    timeout 60 "$NBD_IO" "$NBD_URI" "check:0:1M:21" ||
        fail "while a client did not read its replies, another client's 1 MiB read was not answered ($what)"
    [[ $(stat_value nbd_send_timeouts) == 0 ]] ||
        fail "another client's 1 MiB read waited for the stalled client to be dropped ($what)"
    wait_for '[[ $(stat_value nbd_send_timeouts) == 1 ]]' 60 ||
        fail "the client that did not read was not dropped ($what)"
    wait_for '[[ $(stat_value nbd_active) == 0 && $(stat_value nbd_queued_bytes) == 0 ]]' 60 ||
        fail "the dropped client's connection or queued replies stayed ($what)"
    timeout 60 "$NBD_IO" "$NBD_URI" "check:0:8M:21" "read:8M:1M:0" ||
        fail "the data written before the stall did not read back whole ($what)"
    require_alive "a client that did not read ($what)"
    stop_nbd_daemon
    kill "$stall_pid" 2>/dev/null || true
}

# ---- --send-timeout -----------------------------------------------------------
stall_case plain
# Under TLS a send that times out is GnuTLS's GNUTLS_E_AGAIN: the same drop.
# A server certificate only (no ca-cert.pem: clients are not checked), TLS
# offered (--tls=on) so that nbd-io's checks stay plain.
if command -v certtool >/dev/null; then
    C=$TMPD/certs
    mkdir -p "$C"
    printf 'cn = "uzram test CA"\nca\ncert_signing_key\nexpiration_days = 2\n' >"$C/ca.info"
    printf 'cn = "localhost"\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n' >"$C/srv.info"
    {
        certtool --generate-privkey --outfile "$C/ca-key.pem" &&
            certtool --generate-self-signed --load-privkey "$C/ca-key.pem" \
                --template "$C/ca.info" --outfile "$C/ca-cert.pem" &&
            certtool --generate-privkey --outfile "$C/server-key.pem" &&
            certtool --generate-certificate --load-privkey "$C/server-key.pem" \
                --load-ca-certificate "$C/ca-cert.pem" --load-ca-privkey "$C/ca-key.pem" \
                --template "$C/srv.info" --outfile "$C/server-cert.pem"
    } >/dev/null 2>&1 || fail "certtool could not make the server's certificate"
    mkdir -p "$C/server"
    cp "$C/server-cert.pem" "$C/server-key.pem" "$C/server/"
    stall_case TLS tls --tls=on --tls-certificates "$C/server"
else
    log "no certtool: the case under TLS is left out"
fi

# ---- --idle-timeout -----------------------------------------------------------
start_nbd_daemon 64M --idle-timeout 2
"$PY" "$STALL" idle "$NBD_SOCK" 30 || fail "an idle client was not disconnected (--idle-timeout 2)"
# shellcheck disable=SC2016 # wait_for evaluates it
wait_for '[[ $(stat_value nbd_idle_timeouts) == 1 ]]' 60 ||
    fail "the idle client's disconnection was not counted in nbd_idle_timeouts"
"$NBD_IO" "$NBD_URI" "rand:0:1M:22" "check:0:1M:22" || fail "after an idle timeout, a client was not served"
stop_nbd_daemon

start_nbd_daemon 64M
rc=0
"$PY" "$STALL" idle "$NBD_SOCK" 5 || rc=$?
((rc == 2)) || fail "without --idle-timeout, an idle client was disconnected"
[[ $(stat_value nbd_idle_timeouts) == 0 ]] || fail "nbd_idle_timeouts counts without --idle-timeout"
stop_nbd_daemon
log "PASS"
