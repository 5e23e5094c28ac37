#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Reload on SIGHUP:
#   - mem-limit and compact-threshold changed in the file are applied to
#     the running device (what uzramctl stat shows), and logged;
#   - a mem-limit below what the device holds is applied, with a warning;
#   - a changed key that needs a restart (size) is named in a warning, and
#     the device keeps its size;
#   - the command line still overrides the file (compact-threshold given
#     as an option does not change);
#   - a file that no longer parses changes nothing, and the daemon goes on;
#   - without --config, SIGHUP changes nothing and stops nothing.

# shellcheck source=tests/lib/systemd.sh
. "$(dirname "$0")/../lib/systemd.sh"

require_cmd python3
require_binaries
make_tmpdir uzsd

conf=$TMPD/dev.conf
printf 'size = 64M\nmem-limit = 32M\ncompact-threshold = 10\n' >"$conf"
start_fg --name rl0 --config "$conf"
[[ $(stat_value mem_limit) == $((32 << 20)) ]] || fail "mem_limit at start: $(stat_value mem_limit)"

printf 'size = 128M\nmem-limit = 48M\ncompact-threshold = 30\n' >"$conf"
kill -HUP "$DEV_PID"
wait_for "[[ \$(stat_value mem_limit) == $((48 << 20)) ]]" 30 ||
    fail "mem_limit after reload: $(stat_value mem_limit), want $((48 << 20)); log: $(<"$TMPD/uzramd.log")"
wait_for "[[ \$(stat_value compact_threshold_pct) == 30 ]]" 30 ||
    fail "compact_threshold_pct after reload: $(stat_value compact_threshold_pct), want 30"
[[ $(stat_value disksize) == $((64 << 20)) ]] || fail "the size changed by a reload: $(stat_value disksize)"
grep -q 'reload: mem-limit 32M -> 48M' "$TMPD/uzramd.log" || fail "mem-limit change not logged"
grep -q 'warning: reload: size changed: it takes effect when the device is restarted' \
    "$TMPD/uzramd.log" || fail "no warning about size: $(<"$TMPD/uzramd.log")"

# Broken: nothing changes, the daemon goes on.
printf 'size = 128M\nmem-limit = 8M\nswap-priority = 100\n' >"$conf"
kill -HUP "$DEV_PID"
wait_for "grep -q 'the running settings stay' '$TMPD/uzramd.log'" 30 ||
    fail "a broken file: no error logged; log: $(<"$TMPD/uzramd.log")"
grep -q "$conf:3: unknown key 'swap-priority'" "$TMPD/uzramd.log" || fail "the error does not name FILE:LINE"
pid_alive "$DEV_PID" || fail "uzramd died on a broken file"
[[ $(stat_value mem_limit) == $((48 << 20)) ]] || fail "a broken file changed mem_limit: $(stat_value mem_limit)"

# The eviction watermarks change on a reload too, both at once (moving
# both below the old low one is valid only as a pair).
printf 'size = 128M\nmem-limit = 48M\ncompact-threshold = 30\nhigh-watermark = 70\nlow-watermark = 60\n' >"$conf"
kill -HUP "$DEV_PID"
wait_for "[[ \$(stat_value high_watermark) == 70 ]]" 30 ||
    fail "high_watermark after reload: $(stat_value high_watermark), want 70; log: $(<"$TMPD/uzramd.log")"
[[ $(stat_value low_watermark) == 60 ]] || fail "low_watermark after reload: $(stat_value low_watermark), want 60"
[[ $(stat_value wb_high) == $((48 * 1048576 / 100 * 70 + 48 * 1048576 % 100 * 70 / 100)) ]] ||
    fail "wb_high is $(stat_value wb_high), not 70% of 48M"
grep -q 'reload: watermarks 90%/80% -> 70%/60%' "$TMPD/uzramd.log" || fail "the watermark change was not logged"

# 0 removes the limit.
printf 'size = 64M\nmem-limit = 0\ncompact-threshold = 30\n' >"$conf"
kill -HUP "$DEV_PID"
wait_for "[[ \$(stat_value mem_limit) == 0 ]]" 30 || fail "mem-limit = 0 not applied: $(stat_value mem_limit)"
stop_daemon
[[ $DEV_STATUS == 0 ]] || fail "uzramd exited $DEV_STATUS"
cleanup_pop

# The command line wins over the file at a reload too.
rm -f "$TMPD/uzramd.log"
printf 'size = 64M\ncompact-threshold = 10\nmem-limit = 16M\n' >"$conf"
start_fg --name rl1 --config "$conf" --compact-threshold 15
printf 'size = 64M\ncompact-threshold = 40\nmem-limit = 24M\n' >"$conf"
kill -HUP "$DEV_PID"
wait_for "[[ \$(stat_value mem_limit) == $((24 << 20)) ]]" 30 || fail "mem-limit not applied"
[[ $(stat_value compact_threshold_pct) == 15 ]] ||
    fail "the file overrode --compact-threshold at a reload: $(stat_value compact_threshold_pct)"

# A limit below what the device holds (here its metadata alone) is applied,
# with a warning that says what writes will meet.
printf 'size = 64M\ncompact-threshold = 40\nmem-limit = 1M\n' >"$conf"
kill -HUP "$DEV_PID"
wait_for "[[ \$(stat_value mem_limit) == $((1 << 20)) ]]" 30 || fail "mem-limit = 1M not applied"
wait_for "grep -q 'warning: reload: mem-limit 1M is not above what the device holds now' '$TMPD/uzramd.log'" 30 ||
    fail "a reload below what the device holds: no warning; log: $(<"$TMPD/uzramd.log")"
stop_daemon
cleanup_pop

# No --config: nothing to re-read.
rm -f "$TMPD/uzramd.log"
start_fg --name rl2 --size 64M --mem-limit 16M
kill -HUP "$DEV_PID"
wait_for "grep -q 'no --config file to re-read' '$TMPD/uzramd.log'" 30 || fail "SIGHUP without --config: no message"
pid_alive "$DEV_PID" || fail "SIGHUP without --config stopped uzramd"
[[ $(stat_value mem_limit) == $((16 << 20)) ]] || fail "SIGHUP without --config changed mem_limit"
stop_daemon
log "PASS"
