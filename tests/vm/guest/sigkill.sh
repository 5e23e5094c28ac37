#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Case 5: uzramd killed with SIGKILL while swap on it is active and a
# program has pages out there.  The kernel must stay up; the program whose
# pages were on the device dies (it cannot get them back: the kernel
# answers its page faults with SIGBUS); after the cleanup that uzramd(8)
# documents, a new uzramd serves swap again on the same device names.
#
# The cleanup differs by front end.  A dead FUSE mount fails every request
# at once, so the program dies by itself; then swapoff, losetup -d and
# umount -l.  The kernel's NBD client without -timeout waits for ever for
# the replies to requests that were in flight when the server died (it
# only says "Possible stuck request"), so the program can hang in a page
# fault: nbd-client -d first, which fails those requests (SIGBUS), then
# swapoff.
#
#   sigkill.sh nbd-unix|fuse
. /vmtest/lib.sh

kind=${1:?kind}
swap_setup "$kind"
dev=$SWAPDEV

# wait_gone SECONDS: until swap-fill has died, or fail.
wait_gone() {
    local i
    for i in $(seq 1 $(($1 * 5))); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.2
    done
    fail "swap-fill still runs $1 s after its swap device died ($2)"
}
# Busy swapping: 256 MiB in a 64 MiB cgroup, many passes.  The cgroup is
# made here, before hog goes to the background (lib.sh, hog_cgroup).
hog_cgroup 64M
hog 256M 50 64M &
hog_job=$!
pid=
for i in $(seq 1 600); do
    pid=$(pid_of swap-fill) && break
    sleep 0.1
done
[[ -n $pid ]] || fail "swap-fill did not start"
for i in $(seq 1 600); do
    swapped=$(awk '/^VmSwap:/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo 0)
    ((swapped > 64 * 1024)) && break
    sleep 0.2
done
say "swap-fill has ${swapped} KiB on swap: killing uzramd ($UZRAMD_PID) with SIGKILL"
kill -KILL "$UZRAMD_PID"
case $kind in
    nbd-unix)
        bounded 30 "nbd-client -d" nbd-client -d /dev/nbd0 >/dev/null || fail "nbd-client -d"
        wait_gone 60 "after nbd-client -d"
        ;;
    fuse)
        wait_gone 60 "with the FUSE mount dead"
        ;;
esac
wait "$hog_job"
# hog ran in a subshell: its HOG_OUT is not set here.
say "swap-fill is gone: $(tail -n 1 /tmp/hog.out 2>/dev/null)"
dmesg | grep -E 'swap|nbd|I/O error|SIGBUS|Killed|stuck' | tail -n 8

# The rest of the documented cleanup, then a new daemon on the same names.
bounded 60 "swapoff $dev" swapoff "$dev" || fail "swapoff $dev after the daemon died"
if [[ $kind == fuse ]]; then
    losetup -d "$dev" || fail "losetup -d $dev"
    umount -l /run/uzram/$DEV.img || fail "umount the dead FUSE mount"
fi
rm -f /run/uzram/$DEV.sock /run/uzram/$DEV.nbd /run/uzram/$DEV.pid
swap_setup "$kind"
# hog in the background (bounded's subshell): its status is HOG_RC's.
hog_status() { hog "$@"; return "$HOG_RC"; }
hog_cgroup 32M
bounded 180 "swap-fill on the new daemon" hog_status 64M 1 32M ||
    fail "swap-fill on the new daemon exited $?"
check_no_hung_task
exit 0
