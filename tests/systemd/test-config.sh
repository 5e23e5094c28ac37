#!/bin/bash
# SPDX-License-Identifier: MIT
#
# uzramd --config FILE (uzram.conf(5)):
#   - a file with comments, blank lines, spaces (or none) around '=' and a
#     boolean sets the device up as asked (what uzramctl stat reports);
#   - the command line overrides the file, before or after --config;
#   - an unknown key, a line without '=', a bad value, a bad boolean, a
#     relative path and a missing file each exit 2 with one line naming
#     FILE:LINE (or FILE), and start nothing;
#   - a value is checked by the same code whichever way it came: the same
#     "want" text from the file and from the command line.

# shellcheck source=tests/lib/systemd.sh
. "$(dirname "$0")/../lib/systemd.sh"

require_cmd python3
require_binaries
make_tmpdir uzsd

conf=$TMPD/dev.conf
cat >"$conf" <<CONF
# a test device

   # an indented comment
size = 64M
algorithm=zstd
  level =   5
mem-limit	=	48M
compact-threshold = 20
read-only = yes
nbd-unix = $TMPD/nbd.sock
name = fromfile
CONF

# start_bg ARGS...: uzramd in the background (it returns once ready).
start_bg() {
    log "uzramd $*"
    "$UZRAMD" --control "$TMPD/ctl.sock" --pidfile "$TMPD/pid" "$@" ||
        fail "uzramd $* exited $?"
    DEV_PID=$(<"$TMPD/pid")
    DEV_SOCK=$TMPD/ctl.sock
    cleanup_push "stop_daemon_quietly"
}

start_bg --config "$conf"
[[ $(stat_value name) == fromfile ]] || fail "name: $(stat_value name), want fromfile"
[[ $(stat_value disksize) == $((64 << 20)) ]] || fail "disksize: $(stat_value disksize)"
[[ $(stat_value algorithm) == zstd ]] || fail "algorithm: $(stat_value algorithm)"
[[ $(stat_value mem_limit) == $((48 << 20)) ]] || fail "mem_limit: $(stat_value mem_limit)"
[[ $(stat_value compact_threshold_pct) == 20 ]] || fail "compact_threshold_pct: $(stat_value compact_threshold_pct)"
[[ -S $TMPD/nbd.sock ]] || fail "nbd-unix: no socket at $TMPD/nbd.sock"
if command -v nbdinfo >/dev/null; then
    rc=0
    nbdinfo --is read-only "nbd+unix:///?socket=$TMPD/nbd.sock" || rc=$?
    ((rc == 0)) || fail "read-only = yes: nbdinfo --is read-only exited $rc"
fi
stop_daemon
cleanup_pop

# The command line wins, whether it comes before or after --config.
start_bg --size 128M --config "$conf" --mem-limit 0 --name fromcli
[[ $(stat_value name) == fromcli ]] || fail "--name did not override: $(stat_value name)"
[[ $(stat_value disksize) == $((128 << 20)) ]] || fail "--size did not override: $(stat_value disksize)"
[[ $(stat_value mem_limit) == 0 ]] || fail "--mem-limit 0 did not override: $(stat_value mem_limit)"
[[ $(stat_value algorithm) == zstd ]] || fail "algorithm from the file lost: $(stat_value algorithm)"
stop_daemon
cleanup_pop

# expect_error FILE-CONTENT REGEX [ARGS...]: uzramd --config on that content
# must exit 2, print exactly one line matching REGEX, and leave nothing.
expect_error() {
    local content=$1 want=$2
    shift 2
    printf '%s\n' "$content" >"$TMPD/bad.conf"
    local rc=0
    "$UZRAMD" --config "$TMPD/bad.conf" --control "$TMPD/ctl.sock" "$@" 2>"$TMPD/err" || rc=$?
    ((rc == 2)) || fail "config '$content': exit $rc, want 2; stderr: $(<"$TMPD/err")"
    [[ $(wc -l <"$TMPD/err") == 1 ]] || fail "config '$content': want one line, got: $(<"$TMPD/err")"
    grep -Eq "$want" "$TMPD/err" || fail "config '$content': got '$(<"$TMPD/err")', want /$want/"
    [[ ! -e $TMPD/ctl.sock ]] || fail "config '$content': a control socket was made"
}
B=$TMPD/bad.conf
expect_error $'size = 64M\n\nswap-priority = 100' "^uzramd: $B:3: unknown key 'swap-priority'"
expect_error $'size = 64M\nbacking = back.img' "^uzramd: $B:2: backing: bad value 'back.img' \\(want an absolute path or an NBD URI\\)"
expect_error $'size = 64M\nbacking = http://host/x' "^uzramd: $B:2: backing: bad value 'http://host/x' \\(want an absolute path or an NBD URI\\)"
expect_error $'size = 64M\nhigh-watermark = 50\nlow-watermark = 60' "^uzramd: $B:3: low-watermark: bad value '60' \\(want below --high-watermark, 50\\)"
expect_error $'# x\nsize 64M' "^uzramd: $B:2: want 'key = value', got 'size 64M'$"
expect_error $'size = 64X' "^uzramd: $B:1: size: bad value '64X' \\(want a multiple of 4K"
expect_error $'size = 64M\nalgorithm = lzma' "^uzramd: $B:2: algorithm: bad value 'lzma' \\(want "
expect_error $'size = 64M\nalgorithm = zstd\nlevel = 99' "^uzramd: $B:3: level: bad value '99' \\(want .* for zstd\\)"
expect_error $'size = 64M\nread-only = maybe' "^uzramd: $B:2: read-only: bad value 'maybe' \\(want yes or no\\)"
expect_error $'size = 64M\nfuse = dev.img' "^uzramd: $B:2: fuse: bad value 'dev.img' \\(want an absolute path\\)"
expect_error $'size = 64M\nmem-limit =' "^uzramd: $B:2: mem-limit: missing value$"
expect_error $'size = 64M\nthreads = 0' "^uzramd: $B:2: threads: bad value '0' \\(want 1-256\\)"
expect_error $'size = 64M\nconfig = /etc/x' "^uzramd: $B:2: unknown key 'config'"
expect_error $'algorithm = lz4' "^uzramd: $B: size: missing"
# A bad value on the command line is still named as an option.
expect_error $'size = 64M' "^uzramd: --threads: bad value '0' \\(want 1-256\\)$" --threads 0
# The same check, the same words, from the file and from the command line.
file_want=$(printf 'size = 64M\nmax-connections = 5000\n' >"$B" && "$UZRAMD" --config "$B" 2>&1 |
    sed 's/.*(want //') || true
cli_want=$("$UZRAMD" --size 64M --max-connections 5000 2>&1 | sed 's/.*(want //') || true
[[ -n $file_want && $file_want == "$cli_want" ]] ||
    fail "max-connections: the file wants '$file_want', the command line '$cli_want'"

rc=0
"$UZRAMD" --config "$TMPD/none.conf" 2>"$TMPD/err" || rc=$?
((rc == 2)) || fail "a missing file: exit $rc, want 2"
grep -q "^uzramd: $TMPD/none.conf: cannot read the configuration: No such file" "$TMPD/err" ||
    fail "a missing file: $(<"$TMPD/err")"
log "PASS"
