# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# The scenario both fio tests run (integration-fio on a loop device over the
# FUSE file, nbd-fio through fio's nbd engine), sourced once the daemon runs:
#
#   phase 1  two random-write jobs (4k..64k blocks, queue depth 16, each on
#            its own REGION_MIB) and one sequential 1 MiB job on the next
#            REGION_MIB; every block is verified after writing;
#   discard  half of each random job's region, so compaction has holes to
#            close; it must read back as zeros;
#   phase 2  the random jobs again (another seed), verified, and the
#            sequential region re-verified without being rewritten
#            (verify_only): compaction moved its objects and must not have
#            changed them;
# all while `uzramctl compact` runs in a loop, which must succeed every time
# and free pages.  fio's verify data is a short pattern with a checksummed
# header every 512 bytes, so pages compress to a few hundred bytes and share
# zspages (random data would be stored raw, leaving nothing to compact).
#
# The sourcing script sets:
#   FIO_TARGET    array: the [global] lines naming the device and engine
#   REGION_MIB    MiB of each job's region (the device needs 3 of them)
#   discard_mib OFF LEN   discard LEN MiB at OFF MiB, checking it reads zeros
#   after_fio NAME        checks after each fio run (may do nothing)
# and has sourced uzramd.sh (log, fail, stat_field, cleanup_push, MiB).
: "${MiB:?fio-compact.sh wants tests/lib/uzramd.sh sourced first}"

# jobfile NAME EXTRA-GLOBAL-LINE... -- JOB...: write $TMPD/NAME.fio from the
# global options, the extra lines, and the jobs named (rand, seq).
jobfile() {
    local name=$1 j
    shift
    {
        printf '%s\n' '[global]' "${FIO_TARGET[@]}" iodepth=16 \
            verify=crc32c verify_interval=512 verify_pattern=0x75a7a3c0 verify_fatal=1 do_verify=1
        while (($#)) && [[ $1 != -- ]]; do
            printf '%s\n' "$1"
            shift
        done
        shift
        for j; do
            case $j in
            rand) printf '%s\n' '[rand]' rw=randwrite bssplit=4k/50:16k/25:64k/25 numjobs=2 \
                size="${REGION_MIB}M" offset_increment="${REGION_MIB}M" ;;
            seq) printf '%s\n' '[seq]' rw=write bs=1M offset=$((2 * REGION_MIB))M \
                size="${REGION_MIB}M" ;;
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

run_fio() {
    local name=$1
    log "fio $name"
    if ! fio --output="$TMPD/$name.out" "$TMPD/$name.fio"; then
        cat "$TMPD/$name.out" >&2
        fail "fio $name failed"
    fi
    if grep -q 'err= *[1-9]' "$TMPD/$name.out" ||
        grep -qi 'verify.*fail\|bad magic\|crc32c: verify' "$TMPD/$name.out"; then
        cat "$TMPD/$name.out" >&2
        fail "fio $name reported errors"
    fi
    after_fio "$name"
}

compact_loop &
compact_pid=$!
cleanup_push "touch '$TMPD/stop-compact'; wait $compact_pid 2>/dev/null || true"

jobfile phase1 -- rand seq
run_fio phase1
compacted1=$(stat_field pages_compacted)

half=$((REGION_MIB / 2))
for off in 0 "$REGION_MIB"; do
    discard_mib "$off" "$half"
done
notify_free=$(stat_field notify_free)
((notify_free >= 2 * half * MiB / 4096)) ||
    fail "notify_free is $notify_free after discarding $((2 * half)) MiB (want >= $((2 * half * MiB / 4096)))"
# Give the compaction loop (and the daemon's own compactor) a moment with
# the holes the discards left.
sleep 2

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
    fail "pages_compacted did not grow after $((2 * half)) MiB was discarded ($compacted1 -> $compacted2)"

failed=$(($(stat_field failed_reads) + $(stat_field failed_writes)))
((failed == 0)) || fail "the store counted $failed failed reads/writes"
