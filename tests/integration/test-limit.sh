#!/bin/bash
# SPDX-License-Identifier: MIT
#
# --mem-limit: with a 32 MiB limit, 8 MiB of random data fits; 256 MiB more
# does not, and the write fails with ENOSPC ("No space left on device")
# straight through the FUSE file to dd; the first 8 MiB still read back
# intact; the store counts the failed writes and its allocator never held
# more than the limit.  Then the limit is raised at run time and the device
# takes data again.
#
# Random data does not compress, so each page costs a whole page of the
# allocator's memory: the limit is reached after about 32 MiB, whatever the
# codec.  The writes go to the FUSE file itself with O_DIRECT (no loop
# device), so dd sees the daemon's error code unchanged.

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$0")/../lib/uzramd.sh"

require_root
require_fuse
require_cmd dd sha256sum python3
require_binaries

make_tmpdir uzit
start_daemon 1G --mem-limit 32M

limit=$(stat_field mem_limit)
((limit == 32 * MiB)) || fail "stat says mem_limit $limit, not 32 MiB"

head -c 8M /dev/urandom >"$TMPD/first"
dd if="$TMPD/first" of="$DEV_FILE" bs=1M oflag=direct conv=notrunc status=none ||
    fail "writing the first 8 MiB under the limit failed"

rc=0
dd if=/dev/urandom of="$DEV_FILE" bs=1M seek=8 count=256 iflag=fullblock \
    oflag=direct conv=notrunc status=none 2>"$TMPD/dd.err" || rc=$?
cat "$TMPD/dd.err" >&2
((rc != 0)) || fail "writing 256 MiB of random data past a 32 MiB limit succeeded"
grep -q 'No space left on device' "$TMPD/dd.err" ||
    fail "dd failed, but not with ENOSPC: $(head -1 "$TMPD/dd.err")"

read_back() { # OFFSET-MiB COUNT-MiB
    dd if="$DEV_FILE" bs=1M skip="$1" count="$2" iflag=direct status=none | sha256sum
}
[[ $(read_back 0 8) == $(sha256sum <"$TMPD/first") ]] ||
    fail "the 8 MiB written before the limit did not read back intact"

json=$(stat_json)
failed_writes=$(json_int "$json" failed_writes)
limit_rejects=$(json_int "$json" limit_rejects)
used=$(json_int "$json" mem_used_total)
used_max=$(json_int "$json" mem_used_max)
log "failed_writes $failed_writes, mem_used_total $used, mem_used_max $used_max"
((failed_writes > 0)) || fail "failed_writes is 0 after a write failed with ENOSPC"
((limit_rejects > 0)) || fail "limit_rejects is 0 after a write failed at the limit"
((used <= 32 * MiB)) || fail "mem_used_total $used is over the 32 MiB limit"
((used_max <= 32 * MiB)) || fail "mem_used_max $used_max is over the 32 MiB limit"
((used >= 8 * MiB)) || fail "mem_used_total $used is under the 8 MiB of random data stored"

# Same-filled pages take no allocator memory: zeros still go in.
dd if=/dev/zero of="$DEV_FILE" bs=1M seek=512 count=16 oflag=direct conv=notrunc status=none ||
    fail "writing zeros (same-filled pages, no memory) at the limit failed"

# Raise the limit while it serves: 8 MiB more random data now fits.
"$UZRAMCTL" set "$DEV_SOCK" mem-limit=64M || fail "uzramctl set mem-limit=64M failed"
limit=$(stat_field mem_limit)
((limit == 64 * MiB)) || fail "stat says mem_limit $limit after set mem-limit=64M"
head -c 8M /dev/urandom >"$TMPD/second"
dd if="$TMPD/second" of="$DEV_FILE" bs=1M seek=600 oflag=direct conv=notrunc status=none ||
    fail "writing 8 MiB after raising the limit to 64 MiB failed"
[[ $(read_back 600 8) == $(sha256sum <"$TMPD/second") ]] ||
    fail "the 8 MiB written after raising the limit did not read back"
[[ $(read_back 0 8) == $(sha256sum <"$TMPD/first") ]] ||
    fail "the first 8 MiB changed after raising the limit"
used=$(stat_field mem_used_total)
((used <= 64 * MiB)) || fail "mem_used_total $used is over the 64 MiB limit"
log "PASS"
