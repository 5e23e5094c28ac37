#!/bin/bash
# SPDX-License-Identifier: MIT
#
# fio through its nbd engine (libnbd, each job its own connection, queue
# depth 16 on each) with verify=crc32c, while `uzramctl compact` runs in a
# loop on the control socket:
#   phase 1  two random-write jobs (4k..64k blocks), each on its own
#            128 MiB, every block verified after writing; one sequential
#            1 MiB job on the next 128 MiB
#   trim     half of each random job's region, over NBD (nbd-io), so
#            compaction has holes to close; it must read back as zeros
#   phase 2  the random jobs again with another seed, verified, and the
#            sequential region re-verified without being rewritten
#            (verify_only): compaction moved its objects and must not have
#            changed them
# fio's verify data is a short pattern with a checksummed header every 512
# bytes, so pages compress to a few hundred bytes and share zspages.

# shellcheck source=tests/nbd/lib-nbd.sh
. "$(dirname "$0")/lib-nbd.sh"

require_cmd fio python3
require_binaries
NBD_IO=${1:?usage: $0 UZRAMD UZRAMCTL NBD-IO}
fio --enghelp 2>/dev/null | grep -qw nbd || skip "this fio has no nbd engine"

make_nbd_tmpdir
start_nbd_daemon 512M

# jobfile NAME EXTRA-GLOBAL-LINE... -- JOB...: $TMPD/NAME.fio from the
# global options, the extra lines and the jobs named (rand, seq).
jobfile() {
    local name=$1 j
    shift
    {
        printf '%s\n' '[global]' ioengine=nbd "uri=$NBD_URI" iodepth=16 \
            verify=crc32c verify_interval=512 verify_pattern=0x75a7a3c0 verify_fatal=1 do_verify=1
        while (($#)) && [[ $1 != -- ]]; do
            printf '%s\n' "$1"
            shift
        done
        shift
        for j; do
            case $j in
            rand) printf '%s\n' '[rand]' rw=randwrite bssplit=4k/50:16k/25:64k/25 numjobs=2 \
                size=128M offset_increment=128M ;;
            seq) printf '%s\n' '[seq]' rw=write bs=1M offset=256M size=128M ;;
            esac
        done
    } >"$TMPD/$name.fio"
}

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
    if grep -q 'err= *[1-9]' "$TMPD/$name.out" || grep -qi 'verify.*fail\|bad magic\|crc32c: verify' "$TMPD/$name.out"; then
        cat "$TMPD/$name.out" >&2
        fail "fio $name reported errors"
    fi
    require_alive "fio $name"
}

jobfile phase1 -- rand seq
run_fio phase1
compacted1=$(stat_field pages_compacted)

for off in 0 128; do
    "$NBD_IO" "$NBD_URI" "trim:${off}M:64M" "read:${off}M:64M:0" ||
        fail "trimming 64 MiB at ${off} MiB failed or it did not read back as zeros"
done
notify_free=$(stat_field notify_free)
((notify_free >= 2 * 64 * MiB / 4096)) ||
    fail "notify_free is $notify_free after trimming 128 MiB (want >= $((2 * 64 * MiB / 4096)))"
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
    fail "pages_compacted did not grow after 128 MiB was trimmed ($compacted1 -> $compacted2)"

failed=$(($(stat_field failed_reads) + $(stat_field failed_writes)))
((failed == 0)) || fail "the store counted $failed failed reads/writes"
stop_nbd_daemon
log "PASS"
