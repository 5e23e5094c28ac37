#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The uzram-swap helper that uzram-swap@.service runs, on a real device:
#   start: a loop device with direct I/O on the FUSE file, mkswap, swapon
#          with $PRIORITY; refused on a file that is not a FUSE mount, a
#          bad priority, or a file that has a loop device already;
#   stop:  swapoff and detach, leaving no loop device on the file; a second
#          stop is harmless.
# Needs root, /dev/fuse and loop devices; swaps, so it runs alone.

# shellcheck source=tests/lib/systemd.sh
. "$(dirname "$0")/../lib/systemd.sh"

require_root
require_fuse
require_cmd losetup mkswap swapon swapoff findmnt
require_binaries
[[ -e /dev/loop-control ]] || skip "needs loop devices"
make_tmpdir uzit
HELPER=$UNITS_SRC/uzram-swap

start_daemon 64M
export UZRAM_FILE=$DEV_FILE
name=$DEV_NAME
loops() { losetup --noheadings --output NAME --associated "$DEV_FILE"; }
cleanup_push "'$HELPER' stop '$name' || true"

# Refusals first: nothing may be left behind by any of them.
expect_refused() {
    local want=$1 rc=0
    shift
    env "$@" "$HELPER" start "$name" 2>"$TMPD/err" || rc=$?
    ((rc == 1)) || fail "uzram-swap start with $*: exit $rc, want 1"
    grep -q "$want" "$TMPD/err" || fail "uzram-swap start with $*: '$(<"$TMPD/err")', want '$want'"
    [[ -z $(loops) ]] || fail "uzram-swap start with $* left a loop device"
}
expect_refused "PRIORITY='high': want 0 to 32767" PRIORITY=high
expect_refused "PRIORITY='40000': want 0 to 32767" PRIORITY=40000
: >"$TMPD/plain"
expect_refused "is not served by uzramd" UZRAM_FILE="$TMPD/plain"
expect_refused "no such file" UZRAM_FILE="$TMPD/none"

PRIORITY=7 "$HELPER" start "$name" >"$TMPD/out" || fail "uzram-swap start failed"
loop=$(loops)
[[ $loop == /dev/loop* ]] || fail "no loop device on $DEV_FILE after start: '$loop'"
[[ $(losetup --noheadings --output DIO "$loop" | tr -d ' ') == 1 ]] || fail "$loop without direct I/O"
read -r _ _ _ _ prio < <(grep "^$loop " /proc/swaps) || fail "$loop not in /proc/swaps"
[[ $prio == 7 ]] || fail "swap priority $prio, want 7"
# The kernel's "Adding ... swap" line ends with the area's flags: D for
# discards, c for discarding freed pages.  Read whole (pipefail, SIGPIPE).
klog=$(dmesg)
flags=$(grep "swap on $loop\." <<<"$klog" | tail -n 1 | awk '{print $NF}')
[[ $flags == *D*c* ]] || fail "swap on $loop without page discards (flags '$flags')"
grep -q "swap on $loop ($DEV_FILE), priority 7" "$TMPD/out" || fail "start said: $(<"$TMPD/out")"
rc=0
"$HELPER" start "$name" 2>"$TMPD/err" || rc=$?
((rc == 1)) && grep -q "already has a loop device: $loop" "$TMPD/err" ||
    fail "a second start: exit $rc, $(<"$TMPD/err")"
[[ $(loops) == "$loop" ]] || fail "a second start changed the loop devices: $(loops)"

"$HELPER" stop "$name" || fail "uzram-swap stop failed"
grep -q "^$loop " /proc/swaps && fail "$loop still swapped on after stop"
[[ -z $(loops) ]] || fail "a loop device is left on $DEV_FILE after stop"
"$HELPER" stop "$name" || fail "a second uzram-swap stop failed"
stop_daemon
log "PASS"
