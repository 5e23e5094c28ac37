#!/bin/bash
# SPDX-License-Identifier: MIT
#
# fio through its nbd engine (libnbd, each job its own connection, queue
# depth 16 on each) with verify=crc32c, while `uzramctl compact` runs in a
# loop on the control socket: the scenario of tests/lib/fio-compact.sh,
# regions of 128 MiB, discards by NBD trims (nbd-io).

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$0")/../lib/nbd.sh"

require_cmd fio python3
require_binaries
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO}
grep -qw nbd <<<"$(fio --enghelp 2>/dev/null)" || skip "this fio has no nbd engine"

make_tmpdir uznbd
start_nbd_daemon 512M

FIO_TARGET=(ioengine=nbd "uri=$NBD_URI")
REGION_MIB=128

discard_mib() {
    "$NBD_IO" "$NBD_URI" "trim:${1}M:${2}M" "read:${1}M:${2}M:0" ||
        fail "trimming $2 MiB at $1 MiB failed or it did not read back as zeros"
}

after_fio() { require_alive "fio $1"; }

# shellcheck source=tests/lib/fio-compact.sh
. "$(dirname "$0")/../lib/fio-compact.sh"
stop_nbd_daemon
log "PASS"
