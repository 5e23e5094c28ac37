#!/bin/bash
# SPDX-License-Identifier: MIT
#
# A filesystem on uzramd's FUSE file, through a loop device with direct
# I/O: mkfs.ext4, copy a real tree, unmount, fsck -fn clean, remount and
# compare every file's checksum; then delete most of it, fstrim, and check
# that the discards reached the store (orig_data_size goes down).  Last,
# SIGTERM: the daemon exits 0 and takes its FUSE mount with it.
#
# The daemon runs with --foreground as a child of this shell, so that its
# exit status can be waited for; the other tests use the forking mode.

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$0")/../lib/uzramd.sh"

require_root
require_fuse
require_cmd losetup mkfs.ext4 fsck.ext4 fstrim findmnt python3
require_binaries

src=${UZRAM_TEST_TREE:-/usr/share/doc}
[[ -d $src ]] || skip "no $src to copy"

make_tmpdir uzit
start_daemon_fg 1G

size=$(stat -c %s "$DEV_FILE")
((size == 1024 * MiB)) || fail "the FUSE file is $size bytes, not 1 GiB"

attach_loop "$DEV_FILE"
mkfs.ext4 -q -F -E nodiscard "$LOOPDEV" || fail "mkfs.ext4 $LOOPDEV failed"

mnt="$TMPD/mnt"
mkdir "$mnt"
mount "$LOOPDEV" "$mnt" || fail "mount $LOOPDEV failed"
cleanup_push "! mountpoint -q '$mnt' || umount '$mnt'"

cp -a "$src" "$mnt/tree" || fail "cp -a $src failed"
tree_sums "$mnt/tree" >"$TMPD/sums.before"
nfiles=$(wc -l <"$TMPD/sums.before")
((nfiles > 100)) || skip "$src has only $nfiles files"
log "copied $nfiles files"

umount "$mnt" || fail "umount failed"
fsck.ext4 -fn "$LOOPDEV" >"$TMPD/fsck.log" 2>&1 || {
    cat "$TMPD/fsck.log" >&2
    fail "fsck.ext4 -fn found errors"
}

mount "$LOOPDEV" "$mnt" || fail "remount failed"
tree_sums "$mnt/tree" >"$TMPD/sums.after"
if ! cmp -s "$TMPD/sums.before" "$TMPD/sums.after"; then
    diff "$TMPD/sums.before" "$TMPD/sums.after" | head -20 >&2
    fail "checksums differ after remount"
fi
log "checksums equal after fsck and remount"

sync
data_before=$(stat_field orig_data_size)

# Delete all but every tenth file.
(cd "$mnt/tree" && find . -type f | awk 'NR % 10 != 0' | tr '\n' '\0' | xargs -0 -r rm -f)
sync
fstrim -v "$mnt" || fail "fstrim $mnt failed"
data_after=$(stat_field orig_data_size)
notify_free=$(stat_field notify_free)
log "orig_data_size $data_before -> $data_after after deleting 90% and fstrim; notify_free $notify_free"
((data_after < data_before)) || fail "fstrim did not lower orig_data_size ($data_before -> $data_after)"
((notify_free > 0)) || fail "fstrim discarded nothing: notify_free is 0"

# What is left still reads back.
tree_sums "$mnt/tree" >"$TMPD/sums.left"
python3 - "$TMPD/sums.before" "$TMPD/sums.left" <<'EOF' || fail "a file left after the deletion changed"
import sys
before = {}
for line in open(sys.argv[1]):
    s, name = line.rstrip("\n").split("  ", 1)
    before[name] = s
for line in open(sys.argv[2]):
    s, name = line.rstrip("\n").split("  ", 1)
    if before.get(name) != s:
        sys.exit("changed: " + name)
EOF

umount "$mnt"
fsck.ext4 -fn "$LOOPDEV" >"$TMPD/fsck.log" 2>&1 || {
    cat "$TMPD/fsck.log" >&2
    fail "fsck.ext4 -fn found errors after fstrim"
}
losetup -d "$LOOPDEV"

stop_daemon 30
if [[ $DEV_STATUS != 0 ]]; then
    cat "$DEV_LOG" >&2
    fail "uzramd exited $DEV_STATUS after SIGTERM, not 0"
fi
if fuse_mounted "$DEV_FILE"; then
    fail "$DEV_FILE is still a FUSE mount after the daemon exited"
fi
[[ -e $DEV_SOCK ]] && fail "the control socket $DEV_SOCK was left behind"
log "PASS"
