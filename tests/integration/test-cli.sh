#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The command lines: every verb of uzramctl against a running daemon, every
# kind of bad argument of uzramd and uzramctl (exit status 2 and exactly
# one line on stderr, naming the argument), a second daemon on a socket in
# use (exit 1), the control socket against garbage, and --foreground
# stopped by SIGINT (exit 0, mount and socket gone).
#
# The daemon under test keeps its socket where uzramd puts it by default
# (/run/uzram/NAME.sock), so that `uzramctl list` finds it and DEVICE can
# be given as a bare name; the name is unique to this run.

# shellcheck source=tests/lib/uzramd.sh
. "$(dirname "$0")/../lib/uzramd.sh"

require_root
require_fuse
require_cmd dd python3 timeout
require_binaries

make_tmpdir uzit
DEFAULT_SOCKET=1 start_daemon 1G --algorithm lz4
name=$DEV_NAME

# ---- helpers -------------------------------------------------------------

# expect_usage_error WORD CMD...: CMD exits 2, prints nothing on stdout and
# exactly one line on stderr, which mentions WORD (case-insensitive).
expect_usage_error() {
    local word=$1 rc=0 lines
    shift
    timeout -s KILL 20 "$@" >"$TMPD/out" 2>"$TMPD/err" || rc=$?
    if ((rc == 0)); then
        # A daemon that wrongly accepted its arguments went to the
        # background; its pidfile says which.
        [[ -s $TMPD/bad.pid ]] && kill -TERM "$(<"$TMPD/bad.pid")" 2>/dev/null
        fail "accepted: $*"
    fi
    ((rc == 137)) && fail "hung (killed after 20 s): $*"
    ((rc == 2)) || fail "exit status $rc, not 2: $* (stderr: $(head -3 "$TMPD/err"))"
    lines=$(wc -l <"$TMPD/err")
    ((lines == 1)) || {
        cat "$TMPD/err" >&2
        fail "$lines lines on stderr, not 1: $*"
    }
    grep -qi -- "$word" "$TMPD/err" || fail "the error does not name '$word': $(<"$TMPD/err") (from: $*)"
    [[ ! -s $TMPD/out ]] || fail "usage error printed on stdout: $*"
}

# expect_error STATUS CMD...: CMD exits STATUS (or any non-zero status for
# "nonzero") with one line on stderr.
expect_error() {
    local want=$1 rc=0 lines
    shift
    timeout -s KILL 20 "$@" >"$TMPD/out" 2>"$TMPD/err" || rc=$?
    ((rc != 137)) || fail "hung (killed after 20 s): $*"
    if [[ $want == nonzero ]]; then
        ((rc != 0)) || fail "succeeded: $*"
    else
        ((rc == want)) || fail "exit status $rc, not $want: $* (stderr: $(head -3 "$TMPD/err"))"
    fi
    lines=$(wc -l <"$TMPD/err")
    ((lines == 1)) || {
        cat "$TMPD/err" >&2
        fail "$lines lines on stderr, not 1: $*"
    }
}

ctl() { "$UZRAMCTL" "$@" || fail "uzramctl $* exited $?"; }

# ---- data for the figures ------------------------------------------------

# 4 MiB of zeros (same-filled pages) and 4 MiB of text (compressible).
dd if=/dev/zero of="$DEV_FILE" bs=1M count=4 oflag=direct conv=notrunc status=none
python3 -c '
import sys
line = b"".join(b"%08d the quick brown fox jumps over the lazy dog\n" % i for i in range(200000))
sys.stdout.buffer.write(line[:4 << 20])' >"$TMPD/text"
dd if="$TMPD/text" of="$DEV_FILE" bs=1M seek=4 oflag=direct conv=notrunc status=none

# ---- list ----------------------------------------------------------------

out=$(ctl)
grep -q "^NAME" <<<"$out" || fail "uzramctl printed no heading: $out"
grep -q "^$name " <<<"$out" || fail "uzramctl does not list $name: $out"
# Other daemons on the machine may come and go: compare the heading and
# this device's row only.  The compaction thread and the reserve's refill
# may still move TOTAL between two looks: the two must agree once it is
# still.
same=false
for _ in $(seq 20); do
    mine=$(grep -E "^(NAME|$name) " <<<"$out")
    [[ $(ctl list | grep -E "^(NAME|$name) ") == "$mine" ]] && { same=true; break; }
    sleep 0.25
    out=$(ctl)
done
$same || fail "uzramctl and uzramctl list differ: $mine"

out=$(ctl list --noheadings)
grep -q "^NAME" <<<"$out" && fail "--noheadings printed a heading: $out"
grep -q "^$name " <<<"$out" || fail "uzramctl list --noheadings does not list $name"

out=$(ctl list --raw --noheadings --bytes --output NAME,DISKSIZE | grep "^$name ")
[[ $out == "$name 1073741824" ]] || fail "--raw --noheadings --bytes --output NAME,DISKSIZE: '$out'"
out=$(ctl list --raw --noheadings --output NAME,DISKSIZE,ALGORITHM | grep "^$name ")
[[ $out == "$name 1G lz4" ]] || fail "--raw --output NAME,DISKSIZE,ALGORITHM: '$out'"

all=NAME,ALGORITHM,DISKSIZE,DATA,COMPR,TOTAL,ZERO-PAGES,MEM-LIMIT,MEM-USED,MIGRATED,MOUNTPOINT
out=$(ctl list --raw --output "$all" | head -1)
[[ $out == "${all//,/ }" ]] || fail "--raw --output $all heading: '$out'"

json=$(ctl list --json --bytes)
python3 - "$json" "$name" <<'EOF' || fail "uzramctl list --json --bytes: $json"
import json, sys
doc = json.loads(sys.argv[1])
# As zramctl: one key (the program's name) holding a list of rows.
assert isinstance(doc, dict) and len(doc) == 1, "not one top-level key"
rows = next(iter(doc.values()))
assert isinstance(rows, list), "not a list of rows"
mine = [r for r in rows if r.get("name") == sys.argv[2]]
assert len(mine) == 1, "device not listed once"
r = mine[0]
assert r.get("algorithm") == "lz4", r
assert int(r["disksize"]) == 1 << 30, r
assert int(r["data"]) == 8 << 20, r
EOF

# ---- stat ----------------------------------------------------------------

out=$(ctl stat "$name")
grep -q orig_data_size <<<"$out" || fail "uzramctl stat $name does not show orig_data_size: $out"

json=$(ctl stat "$name" --json)
python3 - "$json" <<'EOF' || fail "uzramctl stat --json: $json"
import json, sys
o = json.loads(sys.argv[1])
assert isinstance(o, dict), "not one object"
keys = ("orig_data_size compr_data_size mem_used_total mem_limit mem_used_max "
        "same_pages pages_compacted huge_pages huge_pages_since failed_reads "
        "failed_writes invalid_io notify_free").split()
for k in keys:
    assert k in o, "missing " + k
    assert isinstance(o[k], int) and not isinstance(o[k], bool), "%s is not an integer" % k
assert o["orig_data_size"] == 8 << 20, "orig_data_size %d, want 8 MiB" % o["orig_data_size"]
assert o["same_pages"] == 1024, "same_pages %d, want 1024 (4 MiB of zeros)" % o["same_pages"]
assert 0 < o["compr_data_size"] < 2 << 20, "compr_data_size %d for 4 MiB of text" % o["compr_data_size"]
assert o["compr_data_size"] <= o["mem_used_total"] <= o["mem_used_max"], "used/compr/max out of order"
assert o["mem_limit"] == 0, "mem_limit %d without --mem-limit" % o["mem_limit"]
assert o["failed_reads"] == o["failed_writes"] == o["invalid_io"] == 0
# The reserve (uzramd(8), MEMORY LOCKING AND SWAP): the default, 8 MiB
# without --mem-limit, populated; nothing failed for want of it.
assert o["reserve"] == 8 << 20, "reserve %d, want the default 8 MiB" % o["reserve"]
assert o["reserve_free"] > 0 and o["reserve_min"] <= o["reserve_free"] + o["reserve"]
assert o["reserve_misses"] == 0, "reserve_misses %d on an idle machine" % o["reserve_misses"]
for k in ("reserve_waits", "reserve_released", "reserve_refills", "reserve_failures",
          "memory_locked", "io_flusher", "oom_protected"):
    assert k in o, "missing " + k
EOF
# By socket path too.
[[ $(json_int "$(ctl stat "$DEV_SOCK" --json)" orig_data_size) == $((8 * MiB)) ]] ||
    fail "uzramctl stat by socket path disagrees"

# ---- compact -------------------------------------------------------------

out=$(ctl compact "$name")
grep -q '[0-9]' <<<"$out" || fail "uzramctl compact printed no number: '$out'"
ctl compact "$DEV_SOCK" >/dev/null

# ---- set -----------------------------------------------------------------

ctl set "$name" mem-limit=64M
[[ $(stat_field mem_limit) == $((64 * MiB)) ]] || fail "set mem-limit=64M not reflected in stat"
ctl set "$DEV_SOCK" mem-limit=0
[[ $(stat_field mem_limit) == 0 ]] || fail "set mem-limit=0 did not remove the limit"
expect_error nonzero "$UZRAMCTL" set "$name" mem-limit=junk
expect_error nonzero "$UZRAMCTL" set "$name" mem-limit=
expect_error nonzero "$UZRAMCTL" set "$name" no-such-setting=1
[[ $(stat_field mem_limit) == 0 ]] || fail "a refused set changed mem_limit"

# ---- unknown device ------------------------------------------------------

expect_error 1 "$UZRAMCTL" stat "no-such-device-$$"
expect_error 1 "$UZRAMCTL" stat "$TMPD/no-such.sock"
expect_error 1 "$UZRAMCTL" compact "no-such-device-$$"
expect_error 1 "$UZRAMCTL" set "no-such-device-$$" mem-limit=1M

# ---- uzramctl usage errors -----------------------------------------------

expect_usage_error frobnicate "$UZRAMCTL" frobnicate
expect_usage_error bogus "$UZRAMCTL" --bogus
expect_usage_error bogus "$UZRAMCTL" list --bogus
expect_usage_error BADCOL "$UZRAMCTL" list --output NAME,BADCOL
expect_usage_error BADCOL "$UZRAMCTL" --output BADCOL
expect_usage_error device "$UZRAMCTL" stat
expect_usage_error device "$UZRAMCTL" compact
expect_usage_error extra-argument "$UZRAMCTL" stat "$name" extra-argument
expect_usage_error set "$UZRAMCTL" set "$name"

# ---- uzramd usage errors -------------------------------------------------

# --foreground, so that a daemon that wrongly starts does not fork away
# (expect_usage_error kills it after 20 s and fails).
bad() {
    local word=$1
    shift
    expect_usage_error "$word" "$UZRAMD" --foreground --name "bad-$$" --fuse "$TMPD/bad" \
        --control "$TMPD/bad.sock" --pidfile "$TMPD/bad.pid" "$@"
}
: >"$TMPD/bad"
bad size
bad size --size 0
bad size --size 12abc
bad size --size 1000
bad size --size 99999999T
bad algorithm --size 64M --algorithm bogus
bad level --size 64M --algorithm zstd --level 99
bad level --size 64M --algorithm lz4hc --level 99
bad level --size 64M --algorithm zstd --level x
bad bogus-option --size 64M --bogus-option
bad threads --size 64M --threads 0
bad threads --size 64M --threads many
bad mem-limit --size 64M --mem-limit junk
bad reserve --size 64M --reserve junk
bad reserve --size 64M --reserve 513M
bad reserve --size 64M --reserve 32K
bad reserve --size 64M --reserve 64K
bad name --size 64M --name 'bad/name'
bad stray --size 64M stray
# A flag given a value, a control socket path that cannot fit (as early as
# --nbd-unix's), and a daemon with nothing to serve.
bad "option '--read-only' takes no value" --size 64M --read-only=yes
bad "--control: bad value '/$(printf 'c%.0s' {1..120})' (want a socket path of at most 107 bytes)" \
    --size 64M --control "/$(printf 'c%.0s' {1..120})"
expect_usage_error "nothing to serve: give --fuse FILE" \
    "$UZRAMD" --foreground --name "bad-$$" --size 64M --control "$TMPD/bad.sock"
# A control socket path where a file is: it is named, and left alone.
echo keep >"$TMPD/notsock"
expect_start_error 1 "$TMPD/notsock: not a socket but a regular file" --size 64M \
    --fuse "$TMPD/bad" --control "$TMPD/notsock"
[[ $(<"$TMPD/notsock") == keep ]] || fail "--control replaced a regular file"
# --fuse, --nbd-unix and --backing in directories that are not there: each
# is made, as --control's is; 0755 as root (others may have to reach a
# socket; the files' own modes decide), the backing file's 0700.
mk=$TMPD/mk
cleanup_push "[[ -s $TMPD/mk.pid ]] && kill -KILL \$(<$TMPD/mk.pid) 2>/dev/null; umount -l $mk/f/x.img 2>/dev/null; true"
"$UZRAMD" --name "mk-$$" --size 64M --mem-limit 32M --fuse "$mk/f/x.img" \
    --nbd-unix "$mk/n/x.nbd" --backing "$mk/b/x.back" --control "$mk/c/x.sock" \
    --pidfile "$TMPD/mk.pid" 2>"$TMPD/err" ||
    fail "uzramd with its files' directories missing: $(<"$TMPD/err")"
mkpid=$(<"$TMPD/mk.pid")
for d in f:755 n:755 b:700 c:755; do
    mode=$(stat -c %a "$mk/${d%%:*}")
    [[ $mode == "${d#*:}" ]] || fail "$mk/${d%%:*} made with mode $mode, not ${d#*:}"
done
fuse_mounted "$mk/f/x.img" || fail "$mk/f/x.img is not a FUSE mount"
[[ -S $mk/n/x.nbd && -S $mk/c/x.sock && -f $mk/b/x.back ]] ||
    fail "the NBD socket, control socket or backing file is not there: $(ls -lR "$mk")"
kill -TERM "$mkpid"
wait_for "! pid_alive $mkpid" 30 || fail "uzramd (pid $mkpid) did not stop"
# A user who may not open /dev/fuse is told so, with its mode and owner:
# in a mount namespace of this test's own, a node of mode 0600 is bound
# over /dev/fuse (the machine's stays as it is).
if id nobody >/dev/null 2>&1 && command -v unshare setpriv >/dev/null; then
    nb=$(mktemp -d /tmp/uzit-nb.XXXXXX)
    cleanup_push "rm -rf '$nb'"
    chmod 0755 "$nb"
    mkdir "$nb/devs" "$nb/run"
    chown nobody "$nb/run"
    rc=0
    unshare -m sh -c 'mount --make-rprivate / &&
        mount -t tmpfs -o mode=0755 none "$1/devs" &&
        mknod -m 0600 "$1/devs/fuse" c 10 229 &&
        mount --bind "$1/devs/fuse" /dev/fuse &&
        exec setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
            "$2" --foreground --size 16M --fuse "$1/run/x.img" --control "$1/run/c.sock"' \
        sh "$nb" "$UZRAMD" 2>"$TMPD/err" || rc=$?
    ((rc == 1)) || fail "uzramd without access to /dev/fuse: exit $rc, not 1: $(<"$TMPD/err")"
    grep -q -- "^uzramd: $nb/run/x.img: cannot open /dev/fuse (mode 0600, uid 0, gid 0): " \
        "$TMPD/err" || fail "/dev/fuse not named: $(<"$TMPD/err")"
    [[ $(stat -c %a /dev/fuse) != 600 ]] || fail "the machine's /dev/fuse was changed"
fi
# A --mem-limit that the device's metadata alone passes is warned about at
# start (every write would fail); a sane one is not.
for lim in 1M 32M; do
    "$UZRAMD" --foreground --name "lim-$$" --size 64M --mem-limit "$lim" \
        --nbd-unix "$TMPD/lim.nbd" --control "$TMPD/lim.sock" 2>"$TMPD/lim.err" &
    lim_pid=$!
    wait_for "[[ -S $TMPD/lim.sock ]] || ! pid_alive $lim_pid" 20 && [[ -S $TMPD/lim.sock ]] ||
        fail "uzramd --mem-limit $lim did not start: $(<"$TMPD/lim.err")"
    "$UZRAMCTL" stop "$TMPD/lim.sock" >/dev/null || fail "uzramctl stop of the --mem-limit $lim daemon"
    wait "$lim_pid" || fail "uzramd --mem-limit $lim exited $?"
    if [[ $lim == 1M ]]; then
        grep -q "^uzramd: warning: mem-limit 1M is not above what the device holds now (.*, before any data: its metadata): every write that needs memory fails with ENOSPC$" \
            "$TMPD/lim.err" || fail "no warning for --mem-limit 1M: $(<"$TMPD/lim.err")"
    elif grep -q "mem-limit .* is not above" "$TMPD/lim.err"; then
        fail "a warning for --mem-limit $lim: $(<"$TMPD/lim.err")"
    fi
done
# What a path under a file cannot have: its directory made.
expect_start_error 1 "--nbd-unix $TMPD/notsock/x.nbd: cannot make its directory: Not a directory" \
    --size 64M --fuse "$TMPD/bad" --nbd-unix "$TMPD/notsock/x.nbd" --control "$TMPD/bad.sock"
# The evict path's options.
bad backing --size 64M --backing ''
bad backing-format --size 64M --backing "$TMPD/bk" --backing-format gzip
bad backing-timeout --size 64M --backing "$TMPD/bk" --backing-timeout 0
bad backing-timeout --size 64M --backing "$TMPD/bk" --backing-timeout 3601
bad high-watermark --size 64M --high-watermark 0
bad high-watermark --size 64M --high-watermark 101
bad low-watermark --size 64M --low-watermark 95
bad low-watermark --size 64M --high-watermark 50 --low-watermark 50
bad high-watermark --size 64M --low-watermark 60 --high-watermark 60
bad low-watermark --size 64M --low-watermark x
bad evict-policy --size 64M --evict-policy fifo
bad recompress-algorithm --size 64M --recompress-algorithm bogus
bad recompress-level --size 64M --recompress-level 3
bad recompress-level --size 64M --recompress-algorithm zstd --recompress-level 99
fuse_mounted "$TMPD/bad" && fail "a refused uzramd left a mount on $TMPD/bad"
[[ -e $TMPD/bad.sock ]] && fail "a refused uzramd left a socket"

# A backing store that cannot be opened is a startup failure (exit 1, one
# line naming it), not a usage error; nothing is left behind.  Its
# directory would be made: here it is a regular file.
nob=$TMPD/notsock/x
rc=0
timeout -s KILL 20 "$UZRAMD" --foreground --name "bad-$$" --fuse "$TMPD/bad" \
    --control "$TMPD/bad.sock" --size 64M --backing "$nob" 2>"$TMPD/err" || rc=$?
((rc == 1)) || fail "--backing $nob: exit $rc, not 1 ($(head -3 "$TMPD/err"))"
# (In the foreground, harden()'s warnings come before it on some machines.)
[[ $(grep -vc '^uzramd: warning: ' "$TMPD/err") == 1 ]] ||
    fail "--backing $nob: not one line: $(<"$TMPD/err")"
grep -q -- "^uzramd: --backing $nob: " "$TMPD/err" ||
    fail "--backing failure not named: $(<"$TMPD/err")"
# Without --mem-limit nothing would ever be evicted by itself: said at start.
grep -q -- "^uzramd: warning: --backing without --mem-limit: nothing is written back by itself" \
    "$TMPD/err" || fail "no warning for --backing without --mem-limit: $(<"$TMPD/err")"
# The same through the background fork: the parent prints the child's line.
rc=0
timeout -s KILL 20 "$UZRAMD" --name "bad-$$" --fuse "$TMPD/bad" --mem-limit 32M \
    --control "$TMPD/bad.sock" --size 64M --backing "$nob" 2>"$TMPD/err" || rc=$?
((rc == 1)) || fail "--backing $nob in the background: exit $rc, not 1"
[[ $(wc -l <"$TMPD/err") == 1 ]] || fail "--backing in the background: not one line: $(<"$TMPD/err")"
grep -q -- "^uzramd: --backing $nob: " "$TMPD/err" ||
    fail "--backing failure not named by the parent: $(<"$TMPD/err")"
fuse_mounted "$TMPD/bad" && fail "a uzramd without its backing store left a mount"
# A FUSE file uzramd made goes when it stops, or when its start fails; one
# that was there before stays.
# (The NBD socket fails after the FUSE file is mounted: a file is there.)
expect_start_error 1 "$TMPD/notsock: not a socket" --size 64M \
    --fuse "$TMPD/made.img" --control "$TMPD/bad.sock" --nbd-unix "$TMPD/notsock"
[[ ! -e $TMPD/made.img ]] || fail "a failed start left the FUSE file it made"
env --default-signal=INT,TERM "$UZRAMD" --foreground --name "made-$$" --size 64M \
    --fuse "$TMPD/made.img" --control "$TMPD/made.sock" 2>"$TMPD/made.log" &
made_pid=$!
cleanup_push "kill -TERM $made_pid 2>/dev/null || true"
wait_for "fuse_mounted '$TMPD/made.img' || ! pid_alive $made_pid" 30 && pid_alive "$made_pid" ||
    fail "uzramd on a new FUSE file did not start: $(<"$TMPD/made.log")"
kill -TERM "$made_pid"
wait "$made_pid" || fail "uzramd on a new FUSE file exited $?: $(<"$TMPD/made.log")"
[[ ! -e $TMPD/made.img ]] || fail "the FUSE file uzramd made outlived it"
[[ -f $TMPD/bad ]] || fail "a FUSE file that was there before was removed"
[[ -e $TMPD/bad.sock ]] && fail "a uzramd without its backing store left a socket"

# ---- a second daemon on a socket in use ----------------------------------

: >"$TMPD/dev2"
rc=0
"$UZRAMD" --name "$name" --size 64M --fuse "$TMPD/dev2" --pidfile "$TMPD/dev2.pid" \
    2>"$TMPD/err" || rc=$?
if ((rc == 0)); then
    kill -TERM "$(<"$TMPD/dev2.pid")" 2>/dev/null
    fail "a second uzramd started on the socket of a running one"
fi
((rc == 1)) || fail "a second uzramd on a busy socket exited $rc, not 1"
[[ $(wc -l <"$TMPD/err") == 1 ]] || fail "the second uzramd printed not one line: $(<"$TMPD/err")"
log "second daemon: $(<"$TMPD/err")"
fuse_mounted "$TMPD/dev2" && fail "the refused second uzramd left a mount on $TMPD/dev2"
[[ $(stat_field orig_data_size) == $((8 * MiB)) ]] || fail "the first daemon lost its data"

# ---- the control socket against garbage ----------------------------------

python3 - "$DEV_SOCK" <<'EOF' || fail "the control socket mishandled a bad request"
import socket, sys, threading
path = sys.argv[1]

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s

def reply(s):
    buf = b""
    while not buf.endswith(b"\n"):
        b = s.recv(4096)
        if not b:
            break
        buf += b
    return buf

# An unknown request gets an answer, not silence.
s = conn()
s.sendall(b"no-such-request with arguments\n")
r = reply(s)
assert r, "no response to an unknown request"
s.close()

# A binary blob and a request far over any sane bound: an error or a
# close, within the timeout, never a hang.
for junk in (bytes(range(256)) * 4 + b"\n", b"x" * (4 << 20)):
    s = conn()
    try:
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)
        reply(s)
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.close()

# A client that connects and says nothing does not block the others.
idle = conn()
errors = []
def client():
    try:
        for _ in range(5):
            c = conn()
            c.sendall(b"no-such-request\n")
            if not reply(c):
                errors.append("empty reply")
            c.close()
    except Exception as e:
        errors.append(repr(e))
ts = [threading.Thread(target=client) for _ in range(16)]
for t in ts: t.start()
for t in ts: t.join()
idle.close()
assert not errors, errors
EOF
pid_alive "$DEV_PID" || fail "the daemon died of the bad requests"
ctl stat "$name" --json >/dev/null

# ---- --foreground and SIGINT ---------------------------------------------

stop_daemon 30
fuse_mounted "$DEV_FILE" && fail "the FUSE mount outlived the daemon (SIGTERM)"
[[ -e $DEV_SOCK ]] && fail "the daemon left its socket $DEV_SOCK"

start_daemon_fg 64M
ctl stat "$DEV_SOCK" >/dev/null
kill -INT "$DEV_PID"
wait_for "! pid_alive $DEV_PID" 30 || fail "uzramd --foreground ignored SIGINT for 30 s"
rc=0
wait "$DEV_PID" || rc=$?
DEV_PID=
((rc == 0)) || {
    cat "$DEV_LOG" >&2
    fail "uzramd --foreground exited $rc after SIGINT, not 0"
}
fuse_mounted "$DEV_FILE" && fail "the FUSE mount outlived the daemon (SIGINT)"
[[ -e $DEV_SOCK ]] && fail "the daemon left its socket after SIGINT"
log "PASS"
