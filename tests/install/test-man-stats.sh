#!/bin/bash
# SPDX-License-Identifier: MIT
#
# uzramctl(8)'s STATISTICS against a live daemon: every key that
# `uzramctl stat DEVICE --json` prints must be named there, as *key*, so
# that a figure added to the daemon (STORE_STATS in src/store/store.h, or
# the control server's own) cannot go out undocumented.  The daemon serves
# NBD on a Unix socket only, with a backing file, so that neither root nor
# FUSE is needed and the backing store's figures are there too.
#
#   test-man-stats.sh MAN-DIR        (UZRAMD and UZRAMCTL: the programs)

set -euo pipefail
export LC_ALL=C

MAN=${1:?usage: $0 MAN-DIR}
: "${UZRAMD:?}" "${UZRAMCTL:?}"

fail() { printf 'test-man-stats: FAIL: %s\n' "$*" >&2; exit 1; }

tmp=$(mktemp -d /tmp/uzram-man-stats.XXXXXX)
pid=
cleanup() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

"$UZRAMD" --name "man-stats-$$" --size 16M --nbd-unix "$tmp/nbd.sock" \
    --control "$tmp/ctl.sock" --pidfile "$tmp/pid" --backing "$tmp/backing" \
    --log "$tmp/log" || fail "uzramd did not start"
pid=$(<"$tmp/pid")
json=$("$UZRAMCTL" stat "$tmp/ctl.sock" --json) || fail "uzramctl stat --json failed"
mapfile -t keys < <(python3 -c 'import json, sys; print("\n".join(json.loads(sys.argv[1])))' "$json")
# A parse that found next to nothing would check next to nothing.
((${#keys[@]} > 40)) || fail "uzramctl stat --json gave only ${#keys[@]} keys: $json"
"$UZRAMCTL" stop "$tmp/ctl.sock" >/dev/null || fail "uzramctl stop failed"

stats=$(awk '/^# /{ on = ($0 == "# STATISTICS"); next } on' "$MAN/uzramctl.8.scd")
[[ -n $stats ]] || fail "uzramctl(8) has no STATISTICS section"
missing=()
for k in "${keys[@]}"; do
    grep -qF -- "*$k*" <<<"$stats" || missing+=("$k")
done
((${#missing[@]} == 0)) ||
    fail "uzramctl(8) STATISTICS does not name what stat prints: ${missing[*]}"
echo "test-man-stats: all ${#keys[@]} keys of stat --json are in uzramctl(8) STATISTICS"
