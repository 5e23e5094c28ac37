#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Writeback to a backing file: a 1 GiB device with --mem-limit 64M and
# --backing FILE takes 1 GiB of real files (nbdcopy over NBD: several
# connections, many writes in flight, so writers race the evict thread and
# some must wait for it), and
#   - mem_used_total, sampled every 0.2 s from outside and as the store's
#     own mem_used_max, stays within the limit (plus the slack that
#     tests/lib/writeback.sh explains) during the copy and during the read back;
#   - the backing file was created sparse at the device's size (and a
#     header block), and the
#     store counts pages written back (bd_writes, bd_count > 0) and no
#     failed write;
#   - the whole device reads back identical to the corpus (sha256), which
#     takes most pages from the backing file;
#   - `uzramctl writeback DEVICE all` writes back what is still in memory,
#     and the device reads back identical once more, now from the file.
#
# The data is checked through NBD (nbdcopy), so no root, FUSE or mount is
# needed: the backing file is in the test's directory on the root disk.

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

require_cmd nbdcopy nbdinfo sha256sum python3 tar
require_binaries
require_writeback

make_tmpdir uzit
corpus 1024
want=$(sha256sum <"$CORPUS" | cut -d' ' -f1)
LIMIT=$((64 * MiB))
BACKING=$TMPD/backing.img

start_nbd_daemon 1G --mem-limit 64M --backing "$BACKING"

# The backing file: made by uzramd, sparse, a header block and the device's size.
[[ -f $BACKING ]] || fail "uzramd did not create the backing file $BACKING"
[[ $(stat -c %s "$BACKING") == $((1024 * MiB + 4096)) ]] ||
    fail "the backing file is $(stat -c %s "$BACKING") bytes, not the device's 1 GiB and a header block"
alloc=$(($(stat -c '%b * %B' "$BACKING")))
((alloc < 64 * MiB)) || fail "the new backing file is not sparse: $alloc bytes allocated"

json=$(stat_json)
wb_log "$json"
(($(json_int "$json" mem_limit) == LIMIT)) || fail "mem_limit is not 64 MiB"
(($(json_int "$json" bd_blocks) == 1024 * MiB / 4096)) ||
    fail "bd_blocks is $(json_int "$json" bd_blocks), not the 262144 blocks of a 1 GiB file"
# The defaults: 90% and 80% of the limit.
(($(json_int "$json" wb_high) == LIMIT * 90 / 100)) || fail "wb_high is not 90% of the limit"
(($(json_int "$json" wb_low) == LIMIT * 80 / 100)) || fail "wb_low is not 80% of the limit"
(($(json_int "$json" bd_writes) == 0)) || fail "bd_writes is not 0 before any write"

copy_in "$LIMIT"

json=$(stat_json)
wb_log "$json"
bd_writes=$(json_int "$json" bd_writes)
bd_count=$(json_int "$json" bd_count)
((bd_writes > 0)) || fail "bd_writes is 0 after 1 GiB went into 64 MiB"
((bd_count > 0)) || fail "bd_count is 0 after 1 GiB went into 64 MiB"
# The default policy, the clock, frees memory by compaction, never by zs_shrink().
(($(json_int "$json" pages_evicted) == 0)) || fail "pages_evicted is not 0 with the default policy"
(($(json_int "$json" failed_writes) == 0)) ||
    fail "$(json_int "$json" failed_writes) writes failed: with a backing file they must wait, not fail"
(($(json_int "$json" bd_write_errors) == 0)) || fail "writes to a healthy backing file failed"
# The file really holds them: blocks allocated for what the store says it wrote.
alloc=$(($(stat -c '%b * %B' "$BACKING")))
((alloc >= bd_count * 1024)) ||
    fail "the backing file has $alloc bytes allocated for $bd_count pages written back"

log "nbdcopy the device out"
sampler_start "$TMPD/samples-read"
got=$(nbdcopy "$NBD_URI" - | sha256sum | cut -d' ' -f1)
sampler_stop
[[ $got == "$want" ]] || fail "the device read back differs from the corpus (sha256 $got, want $want)"
check_under_limit "$LIMIT" "the read back"
json=$(stat_json)
wb_log "$json"
(($(json_int "$json" bd_reads) > 0)) || fail "bd_reads is 0 after reading pages written back"
(($(json_int "$json" bd_read_errors) == 0)) || fail "reads of a healthy backing file failed"
(($(json_int "$json" failed_reads) == 0)) || fail "the store counted failed reads"

log "uzramctl writeback all"
before=$(json_int "$json" bd_count)
out=$("$UZRAMCTL" writeback "$DEV_SOCK" all) || fail "uzramctl writeback $DEV_SOCK all failed: $out"
log "writeback all: $out"
json=$(stat_json)
wb_log "$json"
after=$(json_int "$json" bd_count)
((after > before)) || fail "bd_count $before -> $after: writeback all wrote nothing back"
# Every object went to the file: the pool keeps only its metadata and
# whatever zspages compaction has not given back yet, far under the limit.
used=$(json_int "$json" mem_used_total)
((used < LIMIT / 2)) || fail "mem_used_total is $used after writing everything back"

got=$(nbdcopy "$NBD_URI" - | sha256sum | cut -d' ' -f1)
[[ $got == "$want" ]] || fail "after writeback all the device differs from the corpus (sha256 $got)"

stop_nbd_daemon
log "PASS"
