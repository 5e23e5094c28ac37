#!/bin/bash
# SPDX-License-Identifier: MIT
#
# --fuse-transport (doc/fuse.md, "Transports"), with the kernel's switch
# for FUSE over io_uring (/sys/module/fuse/parameters/enable_uring) off and
# on, set back to what it was at exit:
#
#   switch off:  uring refuses to start (exit 1) with the reason and the
#                command that turns it on; auto starts on /dev/fuse and says
#                why in its log; stat says dev, with no ring buffers.
#   switch on:   auto and uring serve over io_uring: stat says uring and
#                counts the ring buffers, within the daemon's budget of
#                64 MiB (a queue per possible CPU, each entry 260 KiB); the
#                requests of an O_DIRECT write and read really complete on
#                the daemon's rings (the kernel's own counters in
#                /proc/PID/fdinfo); data of every size up to and past
#                max_write, at unaligned offsets, reads back intact; dev
#                still chooses /dev/fuse.
#
# The other FUSE tests run over both transports (their -uring variants);
# this one covers the choice itself.

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$0")/../lib/uzramd.sh"

require_root
require_fuse
require_cmd dd sha256sum python3
require_binaries
[[ -e $URING_PARAM ]] || skip "this kernel has no FUSE over io_uring ($URING_PARAM)"

make_tmpdir uzit

# ---- the switch off ------------------------------------------------------
set_enable_uring N

: >"$TMPD/dev-off"
expect_start_error 1 'echo Y > /sys/module/fuse/parameters/enable_uring' \
    --size 64M --fuse "$TMPD/dev-off" --control "$TMPD/off.sock" --fuse-transport uring
grep -q -- '--fuse-transport=uring: FUSE over io_uring is off' "$TMPD/err" ||
    fail "the refusal does not say why: $(<"$TMPD/err")"
fuse_mounted "$TMPD/dev-off" && fail "a refused start left $TMPD/dev-off mounted"

start_daemon_fg 64M --fuse-transport auto
[[ $(stat_value fuse_transport) == dev ]] ||
    fail "auto with the switch off serves over $(stat_value fuse_transport), not dev"
(($(stat_field fuse_buffer_bytes) == 0)) || fail "/dev/fuse reports ring buffers"
grep -q 'over /dev/fuse.*not io_uring: FUSE over io_uring is off' "$DEV_LOG" ||
    fail "auto does not log why it chose /dev/fuse: $(<"$DEV_LOG")"
stop_daemon
((DEV_STATUS == 0)) || fail "uzramd exited $DEV_STATUS after SIGTERM"

# ---- the switch on -------------------------------------------------------
echo Y >"$URING_PARAM"

start_daemon_fg 64M --fuse-transport dev
[[ $(stat_value fuse_transport) == dev ]] || fail "dev with the switch on is not served over dev"
stop_daemon

# CQ heads of every io_uring the daemon holds: what its rings completed.
ring_completions() {
    local f sum=0 v
    for f in /proc/"$DEV_PID"/fdinfo/*; do
        v=$(sed -n 's/^CqHead:[[:space:]]*//p' "$f" 2>/dev/null) || continue
        [[ -n $v ]] && sum=$((sum + v))
    done
    echo "$sum"
}

for mode in auto uring; do
    start_daemon_fg 256M --fuse-transport "$mode"
    [[ $(stat_value fuse_transport) == uring ]] ||
        fail "$mode with the switch on serves over $(stat_value fuse_transport), not uring"
    bytes=$(stat_field fuse_buffer_bytes)
    queues=$(getconf _NPROCESSORS_CONF)
    log "$mode: $queues queues, $bytes bytes of ring buffers"
    ((bytes > 0 && bytes % (queues * 266240) == 0)) ||
        fail "fuse_buffer_bytes $bytes is not whole entries of 260 KiB on $queues queues"
    ((bytes <= 64 * MiB || bytes / (queues * 266240) == 2)) ||
        fail "fuse_buffer_bytes $bytes is over the 64 MiB budget with more than 2 entries a queue"
    grep -q "over io_uring: $queues queues" "$DEV_LOG" ||
        fail "the log does not say io_uring: $(<"$DEV_LOG")"

    before=$(ring_completions)
    head -c 4M /dev/urandom >"$TMPD/data"
    dd if="$TMPD/data" of="$DEV_FILE" bs=4k count=256 oflag=direct conv=notrunc status=none ||
        fail "$mode: O_DIRECT write failed"
    dd if="$DEV_FILE" of=/dev/null bs=4k count=256 iflag=direct status=none ||
        fail "$mode: O_DIRECT read failed"
    after=$(ring_completions)
    log "$mode: the rings completed $((after - before)) commands for 512 requests"
    ((after - before >= 512)) ||
        fail "$mode: 512 O_DIRECT requests, but the rings completed only $((after - before))"
    [[ $(head -c 1M "$TMPD/data" | sha256sum) == \
        $(dd if="$DEV_FILE" bs=1M count=1 iflag=direct status=none | sha256sum) ]] ||
        fail "$mode: 1 MiB written in 4 KiB requests read back wrong"

    # Every size to 1 MiB (past max_write, 256 KiB here: the kernel
    # splits), at offsets that are not page-aligned, through the page
    # cache and around it; each range is checked as one.
    for len in 1 511 4096 4097 65536 262144 262145 1048576; do
        off=$((7 * MiB + len * 3 + 123))
        head -c "$len" /dev/urandom >"$TMPD/piece"
        dd if="$TMPD/piece" of="$DEV_FILE" bs="$len" seek="$off" oflag=seek_bytes \
            conv=notrunc status=none || fail "$mode: writing $len bytes at $off failed"
        [[ $(dd if="$DEV_FILE" bs="$len" skip="$off" count=1 iflag=skip_bytes status=none |
            sha256sum) == $(sha256sum <"$TMPD/piece") ]] ||
            fail "$mode: $len bytes at $off read back wrong"
    done
    head -c 8M /dev/urandom >"$TMPD/big"
    dd if="$TMPD/big" of="$DEV_FILE" bs=1M seek=32 oflag=direct conv=notrunc status=none ||
        fail "$mode: 8 MiB in 1 MiB O_DIRECT writes failed"
    [[ $(dd if="$DEV_FILE" bs=1M skip=32 count=8 iflag=direct status=none | sha256sum) == \
        $(sha256sum <"$TMPD/big") ]] || fail "$mode: 8 MiB in 1 MiB requests read back wrong"

    stop_daemon
    ((DEV_STATUS == 0)) || fail "$mode: uzramd exited $DEV_STATUS after SIGTERM"
    fuse_mounted "$DEV_FILE" && fail "$mode: $DEV_FILE is still mounted after the daemon went"
done

log "PASS"
