#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Concurrency through the whole path: fio with verify=crc32c on a loop
# device over uzramd's FUSE file (libaio, direct I/O), while `uzramctl
# compact` runs in a loop; the scenario is tests/lib/fio-compact.sh,
# regions of 256 MiB, discards by blkdiscard.

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$0")/../lib/uzramd.sh"

require_root
require_fuse
require_cmd losetup fio blkdiscard python3
require_binaries

make_tmpdir uzit
start_daemon 1G
attach_loop "$DEV_FILE"

FIO_TARGET=("filename=$LOOPDEV" ioengine=libaio direct=1)
REGION_MIB=256

discard_mib() {
    blkdiscard -o $(($1 * MiB)) -l $(($2 * MiB)) "$LOOPDEV" ||
        fail "blkdiscard -o ${1}M -l ${2}M $LOOPDEV failed"
    cmp -s -n $(($2 * MiB)) /dev/zero \
        <(dd if="$LOOPDEV" iflag=direct bs=1M skip="$1" count="$2" status=none) ||
        fail "the range discarded at $1 MiB does not read back as zeros"
}

after_fio() { :; }

# shellcheck source=tests/lib/fio-compact.sh
. "$(dirname "$0")/../lib/fio-compact.sh"
log "PASS"
