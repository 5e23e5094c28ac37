#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The README's commands, pasted as a reader would.  The blocks meant to be
# pasted as they are carry a mark on the line before their opening fence,
# an HTML comment that Markdown does not render:
#
#   <!-- readme-test -->
#
# A ```sh block is run whole; in a ```console block, or a bare ``` block,
# the commands are the lines after the "# " prompt (a line ending in "\"
# goes on in the next) and the rest is output, not checked (the figures
# are one machine's).  Blocks that install, build, start systemd units or
# need a virtual machine are not marked.
#
# They run as root in a scratch directory, one bash -e per block (no
# pipefail: a reader's shell has none, and `tar | head` is meant), with
# uzramd and uzramctl on the PATH, after the device the session expects
# from `tools/quickstart run` is started the same way (1 GiB, lz4, the
# FUSE file /run/uzram/NAME.img).  Names and paths that could meet a
# reader's own devices are made the test's own: uzram0 becomes a unique
# name, /mnt/uzram and /tmp/sess directories of the scratch directory, and
# the demo device's name a unique one.  The first failing command fails
# the test.  Whatever happens, the cleanup stops every daemon the blocks
# or the test started (by pid), unmounts what they mounted and detaches
# their loop devices.  Skips (77) without root or /dev/fuse.
#
#   test-readme.sh README UZRAMD UZRAMCTL

set -euo pipefail
export LC_ALL=C

README=${1:?usage: $0 README UZRAMD UZRAMCTL}
UZRAMD=${2:?usage: $0 README UZRAMD UZRAMCTL}
UZRAMCTL=${3:?usage: $0 README UZRAMD UZRAMCTL}
README=$(readlink -f "$README")
UZRAMD=$(readlink -f "$UZRAMD")
UZRAMCTL=$(readlink -f "$UZRAMCTL")

log() { printf 'test-readme: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
skip() { log "SKIP: $*"; exit 77; }

[[ $(id -u) == 0 ]] || skip "needs root"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
for c in losetup mkfs.ext4 mount umount fstrim nbdcopy python3; do
    command -v "$c" >/dev/null || skip "needs $c"
done

NAME=uzrdm$$
DEMO=uzrdd$$
S=$(mktemp -d /tmp/uzram-readme.XXXXXX)
mkdir -p "$S/bin" "$S/mnt"
ln -s "$UZRAMD" "$S/bin/uzramd"
ln -s "$UZRAMCTL" "$S/bin/uzramctl"

# Every uzramd whose command line names one of the test's devices.
our_daemons() {
    local p
    for p in /proc/[0-9]*; do
        tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qE -- "--name ($NAME|$DEMO)( |$)" &&
            printf '%s\n' "${p#/proc/}"
    done
    return 0
}

cleanup() {
    local m l p
    set +e
    # Mounts under the scratch directory, deepest first.
    while read -r m; do umount -l "$m"; done < <(awk -v s="$S/" 'index($2, s) == 1 { print $2 }' /proc/mounts | sort -r)
    # Loop devices on the test's FUSE file.
    for l in $(losetup -j "/run/uzram/$NAME.img" -O NAME -n 2>/dev/null); do losetup -d "$l"; done
    for p in $(our_daemons); do kill -TERM "$p"; done
    for _ in $(seq 100); do [[ -z $(our_daemons) ]] && break; sleep 0.1; done
    for p in $(our_daemons); do kill -KILL "$p"; done
    for m in "/run/uzram/$NAME.img" "$S/sess/$DEMO.nbd"; do
        grep -qF " $m fuse" /proc/mounts && umount -l "$m"
    done
    rm -f "/run/uzram/$NAME.img" "/run/uzram/$NAME.pid" "/run/uzram/$NAME.sock" "/run/uzram/$NAME.log"
    rm -rf "$S"
}
trap cleanup EXIT

# The marked blocks, each into $S/block.N, as commands.
python3 - "$README" "$S" <<'PY'
import re, sys
readme, out = sys.argv[1], sys.argv[2]
lines = open(readme).read().split("\n")
n = 0
i = 0
while i < len(lines):
    if lines[i].strip() == "<!-- readme-test -->":
        fence = lines[i + 1]
        m = re.match(r"^```(\w*)$", fence)
        if not m:
            sys.exit("line %d: the mark is not followed by a fence" % (i + 1))
        kind = m.group(1)
        body = []
        j = i + 2
        while lines[j] != "```":
            body.append(lines[j])
            j += 1
        if kind in ("sh", "bash"):
            cmds = body
        else:
            cmds, cont = [], False
            for l in body:
                if cont:
                    cmds.append(l)
                elif l.startswith("# "):
                    cmds.append(l[2:])
                else:
                    continue
                cont = l.endswith("\\")
        n += 1
        with open("%s/block.%d" % (out, n), "w") as f:
            f.write("# README line %d\n" % (i + 2))
            f.write("\n".join(cmds) + "\n")
        i = j
    i += 1
print(n)
PY
blocks=$(find "$S" -maxdepth 1 -name 'block.*' | wc -l)
((blocks >= 3)) || fail "only $blocks marked blocks in $README"

# The device `tools/quickstart run` starts, under the test's name.
start_device() {
    mkdir -p /run/uzram
    "$UZRAMD" --name "$NAME" --size 1G --algorithm lz4 --fuse "/run/uzram/$NAME.img" \
        --pidfile "/run/uzram/$NAME.pid" 2>"$S/uzramd.err" || fail "uzramd: $(<"$S/uzramd.err")"
}

for ((k = 1; k <= blocks; k++)); do
    f=$S/block.$k
    sed -i -e "s|uzram0|$NAME|g" -e "s|/mnt/uzram|$S/mnt/uzram|g" -e "s|/tmp/sess|$S/sess|g" \
        -e "s|\\bdemo\\b|$DEMO|g" "$f"
    # Each block finds the device as `tools/quickstart run` leaves it (the
    # session's last line stops it).
    "$UZRAMCTL" stat "$NAME" >/dev/null 2>&1 || start_device
    log "block $k, $(head -n 1 "$f" | cut -c3-):"
    sed 1d "$f" | sed 's/^/    /' >&2
    (cd "$S" && PATH=$S/bin:$PATH bash -e -x "$f") >"$S/out.$k" 2>&1 ||
        { cat "$S/out.$k" >&2; fail "block $k ($(head -n 1 "$f" | cut -c3-)) failed"; }
done
log "PASS: $blocks blocks"
