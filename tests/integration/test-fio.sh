#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Concurrency through the whole path: fio with verify=crc32c on a loop
# device over uzramd's FUSE file, while `uzramctl compact` runs in a loop.
#
#   phase 1  two random-write jobs (4k..64k blocks, queue depth 16, each on
#            its own 256 MiB) and one sequential 1 MiB job on the next
#            256 MiB; every block is verified after writing.
#   discard  blkdiscard a quarter of the device, scattered through the
#            zspages the random jobs filled, so compaction has work; the
#            discarded ranges must read back as zeros.
#   phase 2  the random jobs again (another seed), verified, while the
#            sequential region from phase 1 is re-verified without being
#            rewritten (verify_only): compaction moved its objects and
#            must not have changed them.
#
# fio's verify data is a short pattern with a checksummed header every
# 512 bytes, so pages compress to a few hundred bytes and share zspages
# (random data would be stored raw, one page per object, leaving nothing
# to compact).

# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"

require_root
require_fuse
require_cmd losetup fio blkdiscard python3
require_binaries

make_tmpdir
start_daemon 1G
attach_loop "$DEV_FILE"

# jobfile NAME EXTRA-GLOBAL-LINE... -- JOB...: write $TMPD/NAME.fio from the
# global options below, the extra lines, and the jobs named (rand, seq).
jobfile() {
    local name=$1 j
    shift
    {
        printf '%s\n' '[global]' "filename=$LOOPDEV" ioengine=libaio direct=1 iodepth=16 \
            verify=crc32c verify_interval=512 verify_pattern=0x75a7a3c0 verify_fatal=1 do_verify=1
        while (($#)) && [[ $1 != -- ]]; do
            printf '%s\n' "$1"
            shift
        done
        shift
        for j; do
            case $j in
            rand) printf '%s\n' '[rand]' rw=randwrite bssplit=4k/50:16k/25:64k/25 numjobs=2 \
                size=256M offset_increment=256M ;;
            seq) printf '%s\n' '[seq]' rw=write bs=1M offset=512M size=256M ;;
            esac
        done
    } >"$TMPD/$name.fio"
}

# The compaction loop: one line per call in $TMPD/compact.log, "ok" or the
# exit status.  It stops when $TMPD/stop-compact exists.
compact_loop() {
    while [[ ! -e $TMPD/stop-compact ]]; do
        if "$UZRAMCTL" compact "$DEV_SOCK" >>"$TMPD/compact.out" 2>&1; then
            echo ok
        else
            echo "exit $?"
        fi
        sleep 0.2
    done >>"$TMPD/compact.log"
}

compact_loop &
compact_pid=$!
cleanup_push "touch '$TMPD/stop-compact'; wait $compact_pid 2>/dev/null || true"

run_fio() {
    local name=$1
    log "fio $name"
    if ! fio --output="$TMPD/$name.out" "$TMPD/$name.fio"; then
        cat "$TMPD/$name.out" >&2
        fail "fio $name failed"
    fi
    grep -q 'err= *[1-9]' "$TMPD/$name.out" && {
        cat "$TMPD/$name.out" >&2
        fail "fio $name reported errors"
    }
    return 0
}

# Phase 1: both jobs at once.
jobfile phase1 -- rand seq
run_fio phase1
compacted1=$(stat_field pages_compacted)

# Discard half of each random job's region.
for off in 0 256; do
    blkdiscard -o $((off * MiB)) -l $((128 * MiB)) "$LOOPDEV" ||
        fail "blkdiscard -o ${off}M -l 128M $LOOPDEV failed"
    if ! cmp -s -n $((128 * MiB)) /dev/zero \
        <(dd if="$LOOPDEV" iflag=direct bs=1M skip="$off" count=128 status=none); then
        fail "the range discarded at ${off} MiB does not read back as zeros"
    fi
done
notify_free=$(stat_field notify_free)
((notify_free >= 2 * 128 * MiB / 4096)) ||
    fail "notify_free is $notify_free after discarding 256 MiB (want >= $((2 * 128 * MiB / 4096)))"
# Give the compaction loop (and the daemon's own compactor) a moment with
# the holes the discards left.
sleep 2

# Phase 2: new random data, and the sequential region checked in place.
jobfile phase2 randseed=4242 -- rand
run_fio phase2
jobfile reverify verify_only=1 -- seq
run_fio reverify
compacted2=$(stat_field pages_compacted)

touch "$TMPD/stop-compact"
wait "$compact_pid" || true

calls=$(wc -l <"$TMPD/compact.log")
bad=$(grep -vc '^ok$' "$TMPD/compact.log" || true)
log "uzramctl compact ran $calls times, $bad failed; pages_compacted $compacted1 after phase 1, $compacted2 at the end"
if ((bad > 0)); then
    tail -5 "$TMPD/compact.out" >&2
    fail "uzramctl compact failed $bad of $calls times"
fi
((calls >= 3)) || fail "uzramctl compact ran only $calls times during the test"
((compacted2 > compacted1)) ||
    fail "pages_compacted did not grow after 256 MiB was discarded ($compacted1 -> $compacted2)"

failed=$(($(stat_field failed_reads) + $(stat_field failed_writes)))
((failed == 0)) || fail "the store counted $failed failed reads/writes"
log "PASS"
