#!/bin/bash
# SPDX-License-Identifier: MIT
#
# TLS on the NBD listeners (uzramd(8), SECURITY), through real clients:
#   - --nbd-tcp without --tls refuses to start (exit 2) and says what to
#     add; --tls=on without credentials too; a missing or bad key file is
#     a start error naming the file; --tls=off starts, with the warning;
#   - PSK, --tls=require: nbdcopy writes over nbds:// on TCP and reads it
#     back over TLS on the Unix socket too; qemu-io reads it with
#     tls-creds-psk; a wrong key or an unknown user is refused and reads
#     nothing; plain text gets NBD_REP_ERR_TLS_REQD on both sockets, a
#     plain NBD_OPT_EXPORT_NAME is disconnected, plain text after
#     NBD_OPT_STARTTLS is refused, and the handshake deadline covers the
#     TLS handshake;
#   - --tls=on: plain and TLS clients alike;
#   - certificates made here with certtool (a CA, a server certificate for
#     localhost and 127.0.0.1, client certificates): qemu-io and nbdinfo
#     with a client certificate of the CA are served, one of another CA is
#     refused.

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$0")/../lib/nbd.sh"

require_cmd nbdinfo nbdcopy qemu-io qemu-img psktool certtool sha256sum
require_binaries
require_system_python
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO}
OPT="$(dirname "$0")/nbd-opt.py"

make_tmpdir uznbd
nbdinfo --help >"$TMPD/nbdinfo.help" 2>&1 || true

# ---- keys -------------------------------------------------------------------
psktool -u alice -p "$TMPD/keys.psk" >/dev/null 2>&1 || fail "psktool"
psktool -u alice -p "$TMPD/wrong.psk" >/dev/null 2>&1 || fail "psktool"
psktool -u bob -p "$TMPD/bob.psk" >/dev/null 2>&1 || fail "psktool"
mkdir "$TMPD/qpsk" "$TMPD/qwrong"
cp "$TMPD/keys.psk" "$TMPD/qpsk/keys.psk"
cp "$TMPD/wrong.psk" "$TMPD/qwrong/keys.psk"

# ---- refusals at start ------------------------------------------------------
port=$(free_tcp_port) || fail "no free TCP port"
# What every refused start below is given beside its own options.
START=(--size 64M --control "$TMPD/refused.sock")
expect_start_error 2 '--tls=off' "${START[@]}" --nbd-tcp "127.0.0.1:$port"
grep -q -- '--tls-psk FILE or --tls-certificates DIR' "$TMPD/err" ||
    fail "the refusal does not say what to add: $(<"$TMPD/err")"
expect_start_error 2 '--tls=require: needs --tls-psk' "${START[@]}" --nbd-tcp "127.0.0.1:$port" --tls=require
expect_start_error 2 '--tls-psk: needs --tls=on' "${START[@]}" --nbd-unix "$TMPD/x.sock" --tls-psk "$TMPD/keys.psk"
expect_start_error 1 "$TMPD/none.psk: No such file" "${START[@]}" --nbd-tcp "127.0.0.1:$port" --tls=require \
    --tls-psk "$TMPD/none.psk"
echo 'alice:nothex' >"$TMPD/bad.psk"
expect_start_error 1 'not a PSK file' "${START[@]}" --nbd-tcp "127.0.0.1:$port" --tls=require \
    --tls-psk "$TMPD/bad.psk"
mkdir "$TMPD/nocerts"
expect_start_error 1 'server-cert.pem: No such file' "${START[@]}" --nbd-tcp "127.0.0.1:$port" --tls=on \
    --tls-certificates "$TMPD/nocerts"

# ---- --tls=off on TCP: served, with the warning ------------------------------
start_nbd_daemon 64M --nbd-tcp "127.0.0.1:$port" --tls=off --log "$TMPD/off.log"
grep -q 'warning: --tls=off: NBD over TCP without authentication: any local user' \
    "$TMPD/off.log" || fail "--tls=off logged no warning: $(<"$TMPD/off.log")"
nbdinfo --can connect "nbd://127.0.0.1:$port/" || fail "--tls=off: no plain client over TCP"
stop_nbd_daemon

# ---- PSK, --tls=require -----------------------------------------------------
port=$(free_tcp_port) || fail "no free TCP port"
TLS_URI="nbds://alice@127.0.0.1:$port/?tls-psk-file=$TMPD/keys.psk"
NBD_READY_URI=$TLS_URI start_nbd_daemon 64M --nbd-tcp "127.0.0.1:$port" --tls=require \
    --tls-psk "$TMPD/keys.psk" --handshake-timeout 2

head -c $((32 * MiB)) /dev/urandom >"$TMPD/data"
want=$(sha256sum <"$TMPD/data" | cut -d' ' -f1)
nbdcopy "$TMPD/data" "$TLS_URI" || fail "nbdcopy into the device over TLS"
nbdcopy "$TLS_URI" "$TMPD/back" || fail "nbdcopy out of the device over TLS"
[[ $(head -c $((32 * MiB)) "$TMPD/back" | sha256sum | cut -d' ' -f1) == "$want" ]] ||
    fail "what was written over TLS did not read back intact over TLS"
UNIX_TLS="nbds+unix://alice@/?socket=$NBD_SOCK&tls-psk-file=$TMPD/keys.psk"
rm -f "$TMPD/back"
nbdcopy "$UNIX_TLS" "$TMPD/back" || fail "nbdcopy over TLS on the Unix socket"
[[ $(head -c $((32 * MiB)) "$TMPD/back" | sha256sum | cut -d' ' -f1) == "$want" ]] ||
    fail "over TLS on the Unix socket the data differs"

# qemu: its PSK file is DIR/keys.psk; its user is qemu unless told.
qpat=$(od -An -tu1 -N1 "$TMPD/data" | tr -d ' ')
qemu-io --object "tls-creds-psk,id=tls0,endpoint=client,dir=$TMPD/qpsk,username=alice" \
    --image-opts "driver=nbd,host=127.0.0.1,port=$port,tls-creds=tls0" \
    -c "write -P 0x5a 40M 1M" -c "read -P 0x5a 40M 1M" -c "read -P $qpat 0 1" \
    >"$TMPD/qemu.out" 2>&1 || fail "qemu-io over TLS with PSK: $(<"$TMPD/qemu.out")"

# Wrong key, unknown user: refused, and nothing read.
rm -f "$TMPD/stolen"
nbdcopy "nbds://alice@127.0.0.1:$port/?tls-psk-file=$TMPD/wrong.psk" "$TMPD/stolen" \
    2>"$TMPD/wrong.err" && fail "a wrong PSK was served"
[[ ! -s $TMPD/stolen ]] || fail "a wrong PSK read data"
nbdinfo "nbds://bob@127.0.0.1:$port/?tls-psk-file=$TMPD/bob.psk" >/dev/null 2>&1 &&
    fail "an unknown PSK user was served"
qemu-img info --object "tls-creds-psk,id=tls0,endpoint=client,dir=$TMPD/qwrong,username=alice" \
    --image-opts "driver=nbd,host=127.0.0.1,port=$port,tls-creds=tls0" >/dev/null 2>&1 &&
    fail "qemu-img with a wrong PSK was served"

# Plain text: NBD_REP_ERR_TLS_REQD on every socket, nothing else.
nbdinfo "nbd://127.0.0.1:$port/" >"$TMPD/plain.out" 2>&1 && fail "a plain client was served"
grep -q 'without TLS' "$TMPD/plain.out" && grep -q 'opt_go' "$TMPD/plain.out" ||
    fail "the plain client failed elsewhere than at NBD_OPT_GO: $(<"$TMPD/plain.out")"
"$PY" "$OPT" "127.0.0.1:$port" reqd || fail "TCP: not NBD_REP_ERR_TLS_REQD"
"$PY" "$OPT" "$NBD_SOCK" reqd || fail "Unix socket: not NBD_REP_ERR_TLS_REQD"
"$PY" "$OPT" "127.0.0.1:$port" exportname ||
    fail "plain NBD_OPT_EXPORT_NAME under --tls=require"
"$PY" "$OPT" "127.0.0.1:$port" inject || fail "plain text after NBD_OPT_STARTTLS"
"$PY" "$OPT" "127.0.0.1:$port" stall 20 ||
    fail "the handshake deadline did not cover the TLS handshake"
require_alive "the TLS clients"
nbdinfo --can connect "$TLS_URI" || fail "no TLS client after the refused ones"
stop_nbd_daemon

# ---- PSK, --tls=on: the client chooses --------------------------------------
port=$(free_tcp_port) || fail "no free TCP port"
start_nbd_daemon 64M --nbd-tcp "127.0.0.1:$port" --tls=on --tls-psk "$TMPD/keys.psk"
nbdinfo "nbd://127.0.0.1:$port/" >"$TMPD/on.out" || fail "--tls=on: a plain client refused"
grep -q 'without TLS' "$TMPD/on.out" || fail "--tls=on: $(<"$TMPD/on.out")"
nbdinfo "nbds://alice@127.0.0.1:$port/?tls-psk-file=$TMPD/keys.psk" >"$TMPD/on.out" ||
    fail "--tls=on: a TLS client refused"
grep -q 'with TLS' "$TMPD/on.out" || fail "--tls=on, nbds: $(<"$TMPD/on.out")"
nbdinfo "nbds://alice@127.0.0.1:$port/?tls-psk-file=$TMPD/wrong.psk" >/dev/null 2>&1 &&
    fail "--tls=on: a wrong PSK was served"
stop_nbd_daemon

# ---- certificates -----------------------------------------------------------
C=$TMPD/pki
mkdir -p "$C/server" "$C/client" "$C/other" "$C/noca"
printf 'cn = "uzram test CA"\nca\ncert_signing_key\nexpiration_days = 2\n' >"$C/ca.info"
printf 'cn = "other CA"\nca\ncert_signing_key\nexpiration_days = 2\n' >"$C/other.info"
printf 'cn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n' >"$C/server.info"
printf 'cn = "uzram test client"\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 2\n' >"$C/client.info"
# cert NAME CA-NAME TEMPLATE: NAME-key.pem, NAME-cert.pem signed by CA-NAME.
cert() {
    certtool --generate-privkey --outfile "$C/$1-key.pem" >/dev/null 2>&1 || fail "certtool key"
    if [[ $1 == "$2" ]]; then
        certtool --generate-self-signed --load-privkey "$C/$1-key.pem" --template "$3" \
            --outfile "$C/$1-cert.pem" >/dev/null 2>&1 || fail "certtool CA"
    else
        certtool --generate-certificate --load-privkey "$C/$1-key.pem" \
            --load-ca-certificate "$C/$2-cert.pem" --load-ca-privkey "$C/$2-key.pem" \
            --template "$3" --outfile "$C/$1-cert.pem" >/dev/null 2>&1 || fail "certtool $1"
    fi
}
cert ca ca "$C/ca.info"
cert otherca otherca "$C/other.info"
cert srv ca "$C/server.info"
cert cli ca "$C/client.info"
cert bad otherca "$C/client.info"
cp "$C/ca-cert.pem" "$C/server/ca-cert.pem"
cp "$C/srv-cert.pem" "$C/server/server-cert.pem"
cp "$C/srv-key.pem" "$C/server/server-key.pem"
for d in client other noca; do cp "$C/ca-cert.pem" "$C/$d/ca-cert.pem"; done
cp "$C/cli-cert.pem" "$C/client/client-cert.pem"
cp "$C/cli-key.pem" "$C/client/client-key.pem"
cp "$C/bad-cert.pem" "$C/other/client-cert.pem"
cp "$C/bad-key.pem" "$C/other/client-key.pem"

port=$(free_tcp_port) || fail "no free TCP port"
X_URI="nbds://localhost:$port/?tls-certificates=$C/client"
NBD_READY_URI=$X_URI start_nbd_daemon 64M --nbd-tcp "127.0.0.1:$port" --tls=require \
    --tls-certificates "$C/server" --log "$TMPD/x509.log"
grep -q 'TLS required with X.509, client certificates checked' "$TMPD/x509.log" ||
    fail "the log does not say client certificates are checked: $(<"$TMPD/x509.log")"
x509() { printf 'tls-creds-x509,id=tls0,endpoint=client,dir=%s' "$C/$1"; }
qemu-io --object "$(x509 client)" \
    --image-opts "driver=nbd,host=localhost,port=$port,tls-creds=tls0" \
    -c "write -P 0xa5 0 1M" -c "read -P 0xa5 0 1M" >"$TMPD/qemu.out" 2>&1 ||
    fail "qemu-io with a client certificate of the CA: $(<"$TMPD/qemu.out")"
nbdcopy "$X_URI" "$TMPD/x509.out" || fail "nbdcopy with a client certificate of the CA"
[[ $(head -c 1M "$TMPD/x509.out" | tr -d '\245' | wc -c) == 0 ]] ||
    fail "nbdcopy over X.509 did not read what qemu-io wrote"
qemu-img info --object "$(x509 other)" \
    --image-opts "driver=nbd,host=localhost,port=$port,tls-creds=tls0" >"$TMPD/other.out" 2>&1 &&
    fail "a client certificate of another CA was served"
nbdinfo "nbds://localhost:$port/?tls-certificates=$C/other" >/dev/null 2>&1 &&
    fail "nbdinfo with a client certificate of another CA was served"
nbdinfo "nbds://localhost:$port/?tls-certificates=$C/noca" >/dev/null 2>&1 &&
    fail "a client without a certificate was served"
require_alive "the X.509 clients"
stop_nbd_daemon
log "PASS"
