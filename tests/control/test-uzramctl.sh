#!/bin/bash
# SPDX-License-Identifier: MIT
#
# uzramctl against the real control server, run by control-test-server (a
# store and the server, without FUSE or root), on sockets in a temporary
# directory given to uzramctl with --dir.  Each verb, the list options, and
# each bad argument: exit status 2 and exactly one line on stderr naming it.
#
#   test-uzramctl.sh UZRAMCTL CONTROL-TEST-SERVER

set -euo pipefail
export LC_ALL=C

UZRAMCTL=${1:?usage: $0 UZRAMCTL CONTROL-TEST-SERVER}
SERVER=${2:?usage: $0 UZRAMCTL CONTROL-TEST-SERVER}

fail() { printf 'test-uzramctl: FAIL: %s\n' "$*" >&2; exit 1; }

T=$(mktemp -d /tmp/uzramctl-test.XXXXXX)
server_pid=
cleanup() {
    if [[ -n ${fake_pid:-} ]]; then
        kill "$fake_pid" 2>/dev/null || true
        wait "$fake_pid" 2>/dev/null || true
    fi
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT

# The server says "ready" once it listens.
mkfifo "$T/ready"
"$SERVER" "$T/dev0.sock" "$T/the file" >"$T/ready" &
server_pid=$!
read -r line <"$T/ready" || fail "the test server did not start"
[[ $line == ready ]] || fail "the test server said '$line'"

ctl() { "$UZRAMCTL" --dir "$T" "$@"; }

# run_ok CMD...: must succeed with nothing on stderr; stdout in $out.
run_ok() {
    local err
    out=$(ctl "$@" 2>"$T/err") || fail "uzramctl $* failed: $(cat "$T/err")"
    err=$(cat "$T/err")
    [[ -z $err ]] || fail "uzramctl $* wrote to stderr: $err"
}

# run_fail STATUS PATTERN CMD...: must exit with STATUS and print exactly one
# line, matching PATTERN (an extended regex), on stderr and nothing on stdout.
run_fail() {
    local want=$1 pat=$2 rc=0 err
    shift 2
    out=$("$UZRAMCTL" "$@" 2>"$T/err") || rc=$?
    err=$(cat "$T/err")
    ((rc == want)) || fail "uzramctl $*: exit $rc, expected $want (stderr: $err)"
    [[ -z $out ]] || fail "uzramctl $*: wrote to stdout: $out"
    [[ $(wc -l <"$T/err") == 1 ]] || fail "uzramctl $*: not one line on stderr: $err"
    [[ $err =~ ^uzramctl:\  ]] || fail "uzramctl $*: error not prefixed: $err"
    [[ $err =~ $pat ]] || fail "uzramctl $*: '$err' does not match '$pat'"
}

json_get() { # JSON PYTHON-EXPR: print the expression over the parsed JSON j
    python3 -c 'import json, sys; j = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

# ---- help and version ------------------------------------------------------
out=$("$UZRAMCTL" --help) || fail "--help failed"
[[ $out == *Usage:* && $out == *MOUNTPOINT* ]] || fail "--help: $out"
out=$("$UZRAMCTL" -V) || fail "-V failed"
[[ $out =~ ^uzramctl\ from\ uzram\ [0-9] ]] || fail "-V: $out"

# ---- list ------------------------------------------------------------------
# A stale socket (its server gone) and a file that is no socket are passed
# over in silence.
python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)' "$T/stale.sock"
: >"$T/junk.sock"

run_ok
mapfile -t lines <<<"$out"
((${#lines[@]} == 2)) || fail "list: expected a header and one row: $out"
read -ra hdr <<<"${lines[0]}"
[[ ${hdr[*]} == "NAME ALGORITHM DISKSIZE DATA COMPR TOTAL MOUNTPOINT" ]] || fail "list header: ${lines[0]}"
[[ ${lines[1]} =~ ^dev0\ +lz4\ +64M\ +256K\  ]] || fail "list row: ${lines[1]}"
[[ ${lines[1]} == *"$T/the file" ]] || fail "list mountpoint: ${lines[1]}"

run_ok list
((${#lines[@]} == 2)) || fail "list: $out"
# A device without a verb is listed, as `zramctl zram0` lists zram0.
listed=$out
run_ok dev0
[[ $out == "$listed" ]] || fail "uzramctl dev0 is not list dev0: $out"
run_ok -n -o name,disksize dev0
[[ $out =~ ^dev0\ +64M$ ]] || fail "uzramctl -n -o name,disksize dev0: $out"

run_ok --output-all
read -ra hdr <<<"${out%%$'\n'*}"
[[ ${hdr[*]} == "NAME ALGORITHM DISKSIZE DATA COMPR TOTAL ZERO-PAGES MEM-LIMIT MEM-USED MIGRATED MOUNTPOINT BACKING WRITTEN-BACK BUNDLED" ]] ||
    fail "--output-all header: ${hdr[*]}"

run_ok -n -r -b -o name,DiskSize,data,zero-pages,mem-limit
[[ $out == "dev0 67108864 262144 "[0-9]*" 0" ]] || fail "-nrb -o: $out"
run_ok --noheadings --raw --output +MIGRATED
[[ $out =~ ^dev0\ lz4\ 64M\ 256K\ .*\ [0-9]+$ ]] || fail "-o +MIGRATED: $out"

run_ok --json
[[ $(json_get "$out" 'j["uzramdevices"][0]["name"]') == dev0 ]] || fail "--json: $out"
[[ $(json_get "$out" 'j["uzramdevices"][0]["disksize"]') == 64M ]] || fail "--json disksize: $out"
[[ $(json_get "$out" 'j["uzramdevices"][0]["mountpoint"]') == "$T/the file" ]] || fail "--json mountpoint: $out"
run_ok -J -b --output-all
[[ $(json_get "$out" 'j["uzramdevices"][0]["disksize"] == 67108864') == True ]] || fail "-J -b disksize: $out"
[[ $(json_get "$out" 'type(j["uzramdevices"][0]["zero-pages"]).__name__') == int ]] || fail "-J zero-pages: $out"

run_ok list dev0 "$T/dev0.sock"
((${#lines[@]} == 2)) || true
[[ $(grep -c '^dev0 ' <<<"$out") == 2 ]] || fail "list DEVICE DEVICE: $out"

# No daemon at all: nothing printed, success; JSON is still an object.
mkdir "$T/empty"
out=$("$UZRAMCTL" --dir "$T/empty") || fail "list of an empty directory failed"
[[ -z $out ]] || fail "list of an empty directory printed: $out"
out=$("$UZRAMCTL" --dir "$T/empty" -J) || fail "list -J of an empty directory failed"
[[ $(json_get "$out" 'len(j["uzramdevices"])') == 0 ]] || fail "empty -J: $out"

# ---- stat ------------------------------------------------------------------
run_ok stat dev0
[[ $out =~ (^|$'\n')orig_data_size\ +262144($'\n'|$) ]] || fail "stat: $out"
[[ $out =~ (^|$'\n')name\ +dev0($'\n'|$) ]] || fail "stat name: $out"
for k in disksize orig_data_size compr_data_size mem_used_total mem_limit mem_used_max \
         same_pages pages_compacted huge_pages huge_pages_since failed_reads failed_writes \
         invalid_io notify_free; do
    [[ $out =~ (^|$'\n')$k\ +[0-9]+($'\n'|$) ]] || fail "stat: no $k in: $out"
done
run_ok stat "$T/dev0.sock" --json
[[ $(json_get "$out" 'all(type(v) is int for k, v in j.items() if k not in ("name", "algorithm", "backing", "fuse", "fuse_transport", "loop_devices", "nbd", "log"))') == True ]] ||
    fail "stat --json: not all integers: $out"
[[ $(json_get "$out" 'j["orig_data_size"]') == 262144 ]] || fail "stat --json: $out"
[[ $(json_get "$out" 'j["name"]') == dev0 ]] || fail "stat --json name: $out"
run_ok -J stat dev0
[[ $(json_get "$out" 'j["disksize"]') == 67108864 ]] || fail "-J stat: $out"

# ---- compact ---------------------------------------------------------------
run_ok compact dev0
[[ $out =~ ^dev0:\ compacted,\ [0-9]+\ pages?\ freed\ \([0-9.]+[BKMG]\)$ ]] || fail "compact: $out"

# ---- set -------------------------------------------------------------------
run_ok set dev0 mem-limit=64M
[[ -z $out ]] || fail "set printed: $out"
run_ok stat dev0 --json
[[ $(json_get "$out" 'j["mem_limit"]') == 67108864 ]] || fail "mem-limit not set: $out"
run_ok set "$T/dev0.sock" mem-limit=0 compact-threshold=20 mem-used-max=0
run_ok stat dev0 --json
[[ $(json_get "$out" '(j["mem_limit"], j["compact_threshold_pct"])') == "(0, 20)" ]] || fail "set: $out"

# A limit below what the device holds is set (exit 0), with one warning
# saying what follows; this server has no backing store.
out=$("$UZRAMCTL" --dir "$T" set dev0 mem-limit=4K 2>"$T/err") || fail "set mem-limit=4K: $(cat "$T/err")"
[[ $(wc -l <"$T/err") == 1 ]] || fail "set mem-limit=4K: not one warning: $(cat "$T/err")"
grep -Eq "^uzramctl: dev0: mem-limit 4K is not above what the device holds \(.+\), and it has no backing store: writes that need memory fail with ENOSPC until discards bring it under the limit$" \
    "$T/err" || fail "set mem-limit=4K: $(cat "$T/err")"
run_ok stat dev0 --json
[[ $(json_get "$out" 'j["mem_limit"]') == 4096 ]] || fail "mem-limit=4K not set: $out"
# Above it, or none: no word.
run_ok set dev0 mem-limit=1G
run_ok set dev0 mem-limit=0

# The daemon's refusals: exit 1, one line, saying what and why.
run_fail 1 "^uzramctl: dev0: set mem-limit: Invalid argument \(bad size 'x'\)$" \
    --dir "$T" set dev0 mem-limit=x
run_fail 1 "set compact-threshold: Invalid argument" --dir "$T" set dev0 compact-threshold=101
run_fail 1 "set mem-used-max: Invalid argument" --dir "$T" set dev0 mem-used-max=7
# An unknown key is refused before any setting is sent (exit 2): nothing
# changes, not even the settings before it.
run_fail 2 "unknown setting 'frobs' \(mem-limit,compact-threshold," --dir "$T" set dev0 frobs=1
run_ok stat dev0 --json
before=$(json_get "$out" 'j["mem_limit"]')
run_fail 2 "unknown setting 'foo'" --dir "$T" set dev0 mem-limit=32M foo=1
run_ok stat dev0 --json
[[ $(json_get "$out" 'j["mem_limit"]') == "$before" ]] || fail "set applied mem-limit before an unknown key: $out"
# A value with a space goes over encoded, and comes back in the message.
run_fail 1 "bad size '1 G'" --dir "$T" set dev0 "mem-limit=1 G"
# Those before a refused setting are in force.
run_fail 1 "set mem-limit: Invalid argument" --dir "$T" set dev0 compact-threshold=30 mem-limit=y
run_ok stat dev0 --json
[[ $(json_get "$out" 'j["compact_threshold_pct"]') == 30 ]] || fail "set before a refusal: $out"

# ---- no daemon -------------------------------------------------------------
run_fail 1 "^uzramctl: nodev: no such device \(no daemon at $T/nodev.sock\)$" --dir "$T" stat nodev
run_fail 1 "^uzramctl: stale: no such device" --dir "$T" compact stale
run_fail 1 "no such device" set "$T/none.sock" mem-limit=1M
run_fail 1 "no such device" --dir "$T" list nodev
# A --dir that is not there is a mistake, not a machine without devices.
run_fail 1 "^uzramctl: $T/nodir: no such directory$" --dir "$T/nodir"
run_fail 1 "^uzramctl: $T/nodir: no such directory$" --dir "$T/nodir" list

# ---- a daemon that answers nonsense -------------------------------------------
# A stand-in that says hello properly, then answers every request with the
# line given, or trickles bytes without end.  uzramctl must print one clear
# line and exit 1, or, when the answer parses, print valid JSON.
fake_pid=
start_fake() { # MODE [LINE]
    local line
    mkdir -p "$T/fake"
    rm -f "$T/fake/f.sock" "$T/fake/ready"
    mkfifo "$T/fake/ready"
    python3 - "$T/fake/f.sock" "$@" >"$T/fake/ready" <<'EOF' &
import os, socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
line = os.fsencode(sys.argv[3]) if len(sys.argv) > 3 else b''
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(8)
print('ready', flush=True)
while True:
    c, _ = s.accept()
    f = c.makefile('rb')
    try:
        if f.readline():
            c.sendall(b'ok protocol=1 name=fake\n')
        while f.readline():
            if mode == 'line':
                c.sendall(line + b'\n')
            else:
                while True:
                    c.sendall(b'o')
                    time.sleep(0.2)
    except OSError:
        pass
    f.close()
    c.close()
EOF
    fake_pid=$!
    read -r line <"$T/fake/ready" || fail "the fake daemon did not start"
}
stop_fake() {
    kill "$fake_pid" 2>/dev/null || true
    wait "$fake_pid" 2>/dev/null || true
    fake_pid=
}
# The JSON uzramctl printed, parsed strictly: UTF-8, no leading zeros.
json_strict() {
    python3 -c 'import json, sys; json.loads(sys.stdin.buffer.read().decode("utf-8"))' <<<"$out" ||
        fail "$1: not valid JSON: $(cat -v <<<"$out")"
}

for bad in 'ok a=%zz' 'ok =1' 'ok noequals' 'okay' "ok $(printf 'k%s=1 ' {1..130})"; do  # more pairs than uzramctl keeps (UZ_MAX_PAIRS)
    start_fake line "$bad"
    run_fail 1 "^uzramctl: $T/fake/f.sock: stat: the daemon's answer makes no sense" stat "$T/fake/f.sock"
    run_fail 1 "compact: the daemon's answer makes no sense" compact "$T/fake/f.sock"
    stop_fake
done
start_fake line 'error EBOGUS'
run_fail 1 "stat: Input/output error$" stat "$T/fake/f.sock"
stop_fake
# An error message is free text for a terminal: no escape sequence gets through.
start_fake line $'error EINVAL \e[2J\x7f\xff cleared'
run_fail 1 "stat: Invalid argument \(\?\[2J\?\? cleared\)$" stat "$T/fake/f.sock"
stop_fake

# Values and keys are shown as sent, but never as commands to the terminal:
# control characters (C0, DEL and C1, raw or percent-encoded) reach the
# screen as '?'.
has_control() { LC_ALL=C grep -qaP '[\x00-\x08\x0b-\x1f\x7f]|\xc2[\x80-\x9f]' <<<"$1"; }
start_fake line $'ok name=x algorithm=%1B]0;pwned%07 comp_algorithm=%C2%9B2J%7F bd_last_error=\e[2J mem_used_total=1\x7f'
run_ok stat "$T/fake/f.sock"
[[ $out == *'?]0;pwned?'* && $out == *'??2J?'* && $out == *'?[2J'* ]] || fail "stat of escapes: $(cat -v <<<"$out")"
for opts in "stat $T/fake/f.sock" "stat $T/fake/f.sock --json" "-J --output-all" "--output-all"; do
    # shellcheck disable=SC2086
    out=$("$UZRAMCTL" --dir "$T/fake" $opts 2>"$T/err") || fail "$opts of escapes failed: $(cat "$T/err")"
    ! has_control "$out$(cat "$T/err")" || fail "$opts let a control character through: $(cat -v <<<"$out")"
done
stop_fake

# Numbers with leading zeros, text that is not UTF-8, a key that is ours.
start_fake line 'ok name=other algorithm=%FF%22%5Cx%C3%A9 disksize=007 orig_data_size=12abc compr_data_size=-1 mem_used_total=00 same_pages=0 pages_compacted=1e5'
run_ok stat "$T/fake/f.sock" --json
json_strict "stat --json"
[[ $(json_get "$out" '(j["name"], j["disksize"], j["mem_used_total"], j["orig_data_size"], j["algorithm"])') == \
    "('fake', 7, 0, '12abc', '?\"\\\\xé')" ]] || fail "stat --json of nonsense: $out"
run_ok stat "$T/fake/f.sock"
[[ $(grep -c '^name ' <<<"$out") == 1 ]] || fail "stat printed two names: $out"
for opts in "-J" "-J -b" "-J -b --output-all" "-J --output-all"; do
    # shellcheck disable=SC2086
    out=$("$UZRAMCTL" --dir "$T/fake" $opts 2>"$T/err") || fail "list $opts of nonsense failed: $(cat "$T/err")"
    json_strict "list $opts"
done
[[ $(json_get "$out" 'j["uzramdevices"][0]["migrated"]') == None ]] || fail "list: 1e5 is no count: $out"
out=$("$UZRAMCTL" --dir "$T/fake" -J -b) || fail "list -J -b"
[[ $(json_get "$out" 'j["uzramdevices"][0]["disksize"]') == 7 ]] || fail "list -J -b disksize: $out"
stop_fake

# A daemon that trickles its answer a byte at a time is given up on after
# the timeout for the whole answer (2 s for list), not one per byte.  The
# outer timeout only turns a hang into a failure.
start_fake trickle
rc=0
timeout 60 "$UZRAMCTL" --dir "$T/fake" >/dev/null 2>"$T/err" || rc=$?
((rc == 1)) || fail "list of a trickling daemon: exit $rc: $(cat "$T/err")"
grep -q "info: the daemon did not answer within 2 s" "$T/err" || fail "trickle: $(cat "$T/err")"
stop_fake

# ---- bad arguments: exit 2, one line naming the argument --------------------
run_fail 2 "unknown option '--bogus'" --bogus
run_fail 2 "unknown option '-x'" -x
run_fail 2 "option '--output' needs an argument" --output
run_fail 2 "option '-o' needs an argument" -o
run_fail 2 "unknown column 'foo'" -o name,foo
run_fail 2 "unknown column ''" -o name,
run_fail 2 "unknown command 'frob'" frob
run_fail 2 "stat: no DEVICE" stat
run_fail 2 "stat: unexpected argument 'b'" stat a b
run_fail 2 "compact: no DEVICE" compact
run_fail 2 "compact: unexpected argument 'b'" compact a b
run_fail 2 "set: no KEY=VALUE" set dev0
run_fail 2 "expected KEY=VALUE, got 'novalue'" set dev0 novalue
run_fail 2 "no setting name in '=1'" set dev0 =1
run_fail 2 "no value in 'mem-limit='" set dev0 mem-limit=
run_fail 2 "bad setting name in 'a b=1'" set dev0 "a b=1"
run_fail 2 "bad device name 'bad name!'" stat "bad name!"
run_fail 2 "bad device name '.hidden'" compact .hidden
run_fail 2 "bad device name ''" stat ""
run_fail 2 "bad device name 'x y'" list "x y"
run_fail 2 "--bytes is an option of list, not of compact" compact -b dev0
run_fail 2 "--output is an option of list, not of stat" stat -o name dev0
run_fail 2 "--json is an option of list, stat, writeback and recompress, not of set" set --json dev0 a=1
run_fail 2 "--dir needs a directory" --dir "" stat dev0
run_fail 2 "socket path too long" stat "/$(printf 'a%.0s' {1..200})"
# A bad setting is refused before any is sent.
run_fail 2 "expected KEY=VALUE, got 'oops'" --dir "$T" set dev0 compact-threshold=40 oops
run_ok stat dev0 --json
[[ $(json_get "$out" 'j["compact_threshold_pct"]') == 30 ]] || fail "set applied before a usage error: $out"

# ---- the evict path's verbs ---------------------------------------------------
# The test server has no backing store and zstd as its second codec.
run_ok stat dev0 --json
for k in bd_count bd_reads bd_writes bd_read_errors bd_write_errors bd_last_error bd_connected \
         bd_blocks wb_high wb_low high_watermark low_watermark evictions pages_promoted \
         write_waits idle_pages recompressed; do
    [[ $(json_get "$out" "type(j[\"$k\"]).__name__") == int ]] || fail "stat --json: $k: $out"
done
[[ $(json_get "$out" 'j["backing"]') == "" ]] || fail "stat --json: backing without one: $out"
run_ok -o NAME,BACKING,WRITTEN-BACK -r -n -b
[[ $out == "dev0  0" ]] || fail "-o BACKING,WRITTEN-BACK: '$out'"
run_ok -o NAME,BUNDLED -r -n -b
[[ $out == "dev0 0" ]] || fail "-o NAME,BUNDLED: '$out'"
run_ok -o WRITTEN-BACK -J -b
[[ $(json_get "$out" 'j["uzramdevices"][0]["written-back"]') == 0 ]] || fail "-J WRITTEN-BACK: $out"

run_ok idle dev0 all
[[ $out =~ ^dev0:\ [0-9]+\ pages?\ marked\ idle$ ]] || fail "idle all: $out"
run_ok idle "$T/dev0.sock" 3600
[[ $out =~ ^dev0:\ [0-9]+\ pages?\ marked\ idle$ ]] || fail "idle 3600: $out"
run_fail 1 "writeback: .*no backing store" --dir "$T" writeback dev0 all
run_fail 1 "writeback: .*no backing store" --dir "$T" writeback dev0 huge_idle --limit 1M
run_ok recompress dev0 huge
[[ $out =~ ^dev0:\ [0-9]+\ pages?\ recompressed\ .*\ in\ [0-9.]+\ s,\ [0-9.]+\ MB/s$ ]] || fail "recompress huge: $out"
run_ok recompress dev0 idle --threshold 1K
[[ $out =~ ^dev0:\ [0-9]+\ pages?\ recompressed\ .*\ in\ [0-9.]+\ s,\ [0-9.]+\ MB/s$ ]] || fail "recompress --threshold: $out"

# The watermarks move together: 90/80 to 50/40 takes one request, in any order.
run_ok set dev0 low-watermark=40 high-watermark=50
run_ok stat dev0 --json
[[ $(json_get "$out" '(j["high_watermark"], j["low_watermark"])') == "(50, 40)" ]] || fail "set watermarks: $out"
run_ok set dev0 high_watermark=95
run_ok stat dev0 --json
[[ $(json_get "$out" '(j["high_watermark"], j["low_watermark"])') == "(95, 40)" ]] || fail "set high: $out"
run_fail 1 "must be below" --dir "$T" set dev0 low-watermark=95
run_fail 1 "must be below" --dir "$T" set dev0 high-watermark=30 low-watermark=30
run_fail 1 "1 to 100" --dir "$T" set dev0 high-watermark=101
run_fail 1 "1 to 100" --dir "$T" set dev0 low-watermark=0
run_ok set dev0 high-watermark=90 low-watermark=80

# Bad arguments: exit 2 before any daemon is asked.
run_fail 2 "idle: expected all or a number of seconds, got 'soon'" idle dev0 soon
run_fail 2 "idle: no all or SECONDS given" idle dev0
run_fail 2 "idle: unexpected argument 'x'" idle dev0 all x
run_fail 2 "writeback: expected idle, huge, huge_idle or all, got 'cold'" writeback dev0 cold
run_fail 2 "writeback: no DEVICE given" writeback
run_fail 2 "writeback: no idle" writeback dev0
run_fail 2 "--limit: bad size 'lots'" writeback dev0 all --limit lots
run_fail 2 "--limit: bad size '0'" writeback dev0 all --limit 0
run_fail 2 "--limit is an option of writeback, not of recompress" recompress dev0 idle --limit 1M
run_fail 2 "--threshold is an option of recompress, not of writeback" writeback dev0 idle --threshold 1K
run_fail 2 "--limit is an option of writeback, not of list" --limit 1M
run_fail 2 "recompress: expected idle, huge or huge_idle, got 'all'" recompress dev0 all
run_fail 2 "--threshold: bad size '5000'" recompress dev0 huge --threshold 5000
run_fail 2 "--json is an option of list, stat, writeback and recompress, not of idle" idle -J dev0 all

# ---- the server survives a stopped uzramctl and garbage ----------------------
python3 - "$T/dev0.sock" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b'\x00\xff garbage\nhello 1\n')
f = s.makefile('rb')
assert f.readline().startswith(b'error EINVAL '), 'garbage'
assert f.readline().startswith(b'ok protocol=1 '), 'hello'
EOF
run_ok stat dev0

kill "$server_pid"
wait "$server_pid" || fail "the test server exited with $?"
server_pid=
[[ ! -e $T/dev0.sock ]] || fail "the server left its socket behind"
# With its daemon gone, the device is no longer listed.
run_ok
[[ -z $out ]] || fail "list after the server stopped: $out"
# ---- a user with no device of their own, while root's daemons run ----------
# In a mount namespace with a tmpfs on /run, root's run directory holds a
# control socket; nobody, whose own run directory is empty, lists nothing
# on stdout and is told on stderr where root's devices are.
if ((EUID == 0)) && command -v setpriv unshare >/dev/null && id nobody >/dev/null 2>&1 &&
    unshare --mount --propagation private true 2>/dev/null; then
    rc=0
    unshare --mount --propagation private sh -c '
        mount -t tmpfs -o mode=0755 none /run && mkdir -m 0755 /run/uzram &&
        "$2" -c "import socket; socket.socket(socket.AF_UNIX).bind(\"/run/uzram/r0.sock\")" &&
        exec env -u XDG_RUNTIME_DIR setpriv --reuid=nobody --regid="$(id -g nobody)" \
            --clear-groups "$1"' sh "$UZRAMCTL" "$(command -v python3)" \
        >"$T/out" 2>"$T/err" || rc=$?
    ((rc == 0)) || fail "uzramctl as nobody: exit $rc: $(<"$T/err")"
    [[ ! -s $T/out ]] || fail "uzramctl as nobody printed: $(<"$T/out")"
    grep -q "no device of this user's; /run/uzram has 1 control socket of root's daemons" \
        "$T/err" || fail "uzramctl as nobody did not point at root's devices: $(<"$T/err")"
else
    echo "test-uzramctl: not root, or no setpriv/unshare/nobody: the hint at root's devices not checked"
fi
echo "test-uzramctl: all passed"
