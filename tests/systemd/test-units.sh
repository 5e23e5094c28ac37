#!/bin/bash
# SPDX-License-Identifier: MIT
#
# `systemd-analyze verify` on every unit, filled in as meson fills them in
# but with the build's paths: verify checks that ExecStart= and ExecStop=
# name executables, so @sbindir@ becomes a directory holding the built
# uzramd and @libexecdir@ one holding the uzram-swap helper.  The
# templates are verified through instances (uzramd@test.service), and the
# references between them (BindsTo=uzramd@%i.service) are resolved through
# $SYSTEMD_UNIT_PATH.  Anything verify prints fails the test: it reports
# unknown keys and bad values as warnings with exit status 0.
#
# Then the example configuration must be one uzramd accepts, and must put
# the FUSE file where uzram-swap@.service looks for it.

# shellcheck source=tests/lib/systemd.sh
. "$(dirname "$0")/../lib/systemd.sh"

require_cmd systemd-analyze
require_binaries
make_tmpdir uzsd

mkdir -p "$TMPD/sbin" "$TMPD/libexec" "$TMPD/units"
ln -s "$(realpath "$UZRAMD")" "$TMPD/sbin/uzramd"
ln -s "$UNITS_SRC/uzram-swap" "$TMPD/libexec/uzram-swap"
n=0
for f in "$UNITS_SRC"/*.service.in "$UNITS_SRC"/*.socket; do
    unit=$(basename "$f" .in)
    sed -e "s|@sbindir@|$TMPD/sbin|g" -e "s|@libexecdir@|$TMPD/libexec|g" "$f" >"$TMPD/units/$unit"
    if grep -n '@[a-z]*@' "$TMPD/units/$unit"; then
        fail "$unit: a placeholder this test does not fill in (above)"
    fi
    n=$((n + 1))
done
((n == 3)) || fail "expected 3 units in $UNITS_SRC, found $n"

for unit in "$TMPD"/units/*; do
    inst=$(basename "$unit")
    inst=${inst/@./@test.}
    log "systemd-analyze verify $inst"
    rc=0
    SYSTEMD_UNIT_PATH="$TMPD/units:" systemd-analyze verify --man=no "$TMPD/units/$inst" \
        >"$TMPD/verify.out" 2>&1 || rc=$?
    if ((rc != 0)) || [[ -s $TMPD/verify.out ]]; then
        cat "$TMPD/verify.out" >&2
        fail "systemd-analyze verify $inst: exit status $rc, or warnings (above)"
    fi
done

# The hardening must not put the daemon in a mount namespace of its own: the
# FUSE mount would be invisible to the host (see uzramd@.service).
for key in ProtectSystem ProtectHome PrivateTmp PrivateDevices PrivateMounts \
    ProtectKernelTunables ProtectKernelModules ProtectKernelLogs ProtectControlGroups \
    ProtectProc ProcSubset ReadWritePaths ReadOnlyPaths InaccessiblePaths BindPaths \
    TemporaryFileSystem MountFlags PrivateNetwork PrivateIPC; do
    if grep -q "^$key=" "$TMPD/units/uzramd@.service"; then
        fail "uzramd@.service sets $key=, which makes a mount namespace"
    fi
done

# The example configuration: accepted as it is.  The file's settings are
# parsed ahead of the command line, so a bad option added on the command
# line is reported only if the whole file passed; nothing is started.
conf="$UNITS_SRC/swap0.conf"
grep -Eq '^fuse *= */run/uzram/swap0\.img$' "$conf" ||
    fail "swap0.conf does not serve /run/uzram/swap0.img, where uzram-swap@swap0 looks"
rc=0
"$UZRAMD" --config "$conf" --threads 0 2>"$TMPD/err" || rc=$?
((rc == 2)) && grep -q "^uzramd: --threads: bad value '0'" "$TMPD/err" ||
    fail "uzramd --config swap0.conf: exit $rc, $(<"$TMPD/err")"
log "PASS: $n units verified"
