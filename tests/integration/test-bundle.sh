#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The cold tier through NBD: 64 MiB of real files go into a 64 MiB device
# (lz4, and the default cold codec, zstd) with nbdcopy, then
#   - idle all, recompress idle --bundle: pages are bundled (the count it
#     prints equals bundled_pages), bundles and bundle_bytes > 0, and
#     compr_data_size falls (bundles hold the same pages in less);
#   - a compaction after it gives memory back: mem_used_total falls below
#     what the per-page objects took;
#   - a full read back equals the corpus, reads every page out of its
#     bundle once (bundle_reads) and unpacks none;
#   - a second full read equals it again and unpacks every bundled page
#     (read twice: hot again): no bundle is left;
#   - bundled again, a page written and one discarded in every 64 KiB
#     take their pages out of their bundles (bundled_pages falls), and the
#     device reads back as the corpus with those changes;
#   - 8 MiB bundled at --cold-level 19 take fewer bytes than at 1 (the
#     level reaches the codec); a level out of range, or one with
#     --cold-algorithm none, is refused at start (exit 2);
#   - --json prints "bundled"; --bundle with huge, or with --threshold, is
#     a usage error (exit 2); a daemon with --cold-algorithm none answers
#     "no cold algorithm" (exit 1);
#   - a discard of the whole device leaves no bundle, no bundled page and
#     no bundle byte;
#   - with --cold-after 1 the daemon bundles 8 MiB on its own (no idle
#     mark, no request), and it reads back; set cold-after=0 turns it off,
#     a bad value is refused; --cold-after with --cold-algorithm none is
#     refused at start, and set cold-after by a daemon without a cold codec;
#   - with --backing, 8 MiB bundled and then written back (writeback idle)
#     leave no bundle and read back; bundled again on a second device, a
#     mem-limit set below what the bundles take makes the evict path write
#     bundled pages back until the pool is under the limit, and the device
#     reads back.
#
# No root, FUSE or mount: NBD clients only.

# shellcheck source=tests/lib/writeback.sh
. "$(dirname "$0")/../lib/writeback.sh"

require_cmd nbdcopy nbdinfo qemu-io sha256sum python3 tar
require_binaries

make_tmpdir uzit
corpus 64

start_nbd_daemon 64M

# sums_equal FILE WHAT: the device must equal FILE.
sums_equal() {
    local got expect
    expect=$(sha256sum <"$1" | cut -d' ' -f1)
    got=$(nbdcopy "$NBD_URI" - | sha256sum | cut -d' ' -f1)
    [[ $got == "$expect" ]] || fail "after $2 the device differs (sha256 $got, want $expect)"
}

# bundle WHAT: idle all, then the cold pass; prints the pages it bundled.
bundle() {
    local out n
    "$UZRAMCTL" idle "$DEV_SOCK" all >/dev/null || fail "uzramctl idle all failed ($1)"
    out=$("$UZRAMCTL" recompress "$DEV_SOCK" idle --bundle) ||
        fail "uzramctl recompress idle --bundle failed ($1): $out"
    log "recompress idle --bundle ($1): $out"
    n=$(page_count "$out") || fail "recompress --bundle printed no count: $out"
    echo "$n"
}

nbdcopy "$CORPUS" "$NBD_URI" || fail "nbdcopy of the corpus failed"
sums_equal "$CORPUS" "the copy in"
"$UZRAMCTL" compact "$DEV_SOCK" >/dev/null || fail "uzramctl compact failed"
json=$(stat_json)
compr0=$(json_int "$json" compr_data_size)
mem0=$(json_int "$json" mem_used_total)
(($(json_int "$json" bundles) == 0)) || fail "bundles before any cold pass"

# ---- the cold pass ----

n=$(bundle "the copy in")
json=$(stat_json)
log "bundled $n: $(grep -o '"bundle[a-z_]*": [0-9]*' <<<"$json" | tr '\n' ' ')"
((n > 0)) || fail "recompress idle --bundle bundled no page of 64 MiB of real files"
(($(json_int "$json" bundled_pages) == n)) ||
    fail "bundled_pages is $(json_int "$json" bundled_pages), the pass said $n"
(($(json_int "$json" bundles) > 0 && $(json_int "$json" bundles) * 2 <= n)) ||
    fail "$(json_int "$json" bundles) bundles for $n pages: a bundle holds 2 pages or more"
(($(json_int "$json" bundle_bytes) > 0)) || fail "bundle_bytes is 0 with bundles held"
compr1=$(json_int "$json" compr_data_size)
((compr1 < compr0)) || fail "compr_data_size did not fall with bundles ($compr0 -> $compr1)"
"$UZRAMCTL" compact "$DEV_SOCK" >/dev/null || fail "uzramctl compact failed"
mem1=$(stat_field mem_used_total)
log "compr_data_size $compr0 -> $compr1, mem_used_total $mem0 -> $mem1"
((mem1 < mem0)) || fail "mem_used_total did not fall after bundling and compacting ($mem0 -> $mem1)"

# ---- reads: once from the bundle, twice unpacks ----

sums_equal "$CORPUS" "bundling"
json=$(stat_json)
(($(json_int "$json" bundle_reads) >= n)) ||
    fail "bundle_reads is $(json_int "$json" bundle_reads) after reading $n bundled pages"
(($(json_int "$json" bundle_unpacks) == 0)) ||
    fail "a first read unpacked $(json_int "$json" bundle_unpacks) pages"
(($(json_int "$json" bundled_pages) == n)) || fail "a first read took pages out of bundles"

sums_equal "$CORPUS" "a second read"
json=$(stat_json)
(($(json_int "$json" bundle_unpacks) == n)) ||
    fail "a second read unpacked $(json_int "$json" bundle_unpacks) of $n bundled pages"
(($(json_int "$json" bundles) == 0 && $(json_int "$json" bundled_pages) == 0 &&
    $(json_int "$json" bundle_bytes) == 0)) ||
    fail "bundles left after every page was read twice: $json"

# ---- writes and discards inside bundles ----

n=$(bundle "the reads")
((n > 0)) || fail "the second cold pass bundled nothing"
# In every 64 KiB (an aligned group of 16 pages, a bundle's span): one page
# written, one discarded.
for ((off = 0; off < 64 * MiB; off += 64 * 1024)); do
    echo "write -P 0x5a $((off + 4096)) 4096"
    echo "discard $((off + 12288)) 4096"
done >"$TMPD/cmds"
qemu-io -f raw "$NBD_URI" <"$TMPD/cmds" >/dev/null || fail "qemu-io writes and discards failed"
cp "$CORPUS" "$TMPD/expect"
/usr/bin/python3 - "$TMPD/expect" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    for off in range(0, 64 << 20, 64 << 10):
        f.seek(off + 4096); f.write(b"\x5a" * 4096)
        f.seek(off + 12288); f.write(b"\0" * 4096)
EOF
json=$(stat_json)
left=$(json_int "$json" bundled_pages)
log "after the writes and discards: $left of $n pages still bundled"
((left < n)) || fail "writes and discards over bundled pages left bundled_pages at $n"
sums_equal "$TMPD/expect" "writes and discards inside bundles"

# ---- the command line ----

out=$("$UZRAMCTL" recompress "$DEV_SOCK" idle --bundle --json) || fail "--bundle --json failed: $out"
grep -q '"bundled":' <<<"$out" || fail "recompress --bundle --json has no \"bundled\": $out"
rc=0
"$UZRAMCTL" recompress "$DEV_SOCK" huge --bundle 2>"$TMPD/err" || rc=$?
((rc == 2)) || fail "recompress huge --bundle exited $rc, not 2: $(cat "$TMPD/err")"
rc=0
"$UZRAMCTL" recompress "$DEV_SOCK" idle --bundle --threshold 100 2>"$TMPD/err" || rc=$?
((rc == 2)) || fail "recompress --bundle --threshold exited $rc, not 2: $(cat "$TMPD/err")"

# ---- everything discarded: nothing left ----

qemu-io -f raw -c "discard 0 64M" "$NBD_URI" >/dev/null || fail "qemu-io discard of the device failed"
json=$(stat_json)
(($(json_int "$json" bundles) == 0 && $(json_int "$json" bundled_pages) == 0 &&
    $(json_int "$json" bundle_bytes) == 0 && $(json_int "$json" compr_data_size) == 0)) ||
    fail "bundles left after a discard of the whole device: $json"
stop_nbd_daemon

# ---- the cold codec's level ----

# compr_at LEVEL: bundle 8 MiB of the corpus at --cold-level LEVEL; the
# compressed bytes held after (bundle_bytes alone would not do: a stronger
# level keeps more bundles, so their sum may grow while the device shrinks).
head -c $((8 * MiB)) "$CORPUS" >"$TMPD/head"
compr_at() {
    start_nbd_daemon 8M --cold-level "$1"
    nbdcopy "$TMPD/head" "$NBD_URI" || fail "nbdcopy into the --cold-level $1 device failed"
    n=$(bundle "--cold-level $1")
    ((n > 0)) || fail "--cold-level $1 bundled nothing"
    sums_equal "$TMPD/head" "bundling at --cold-level $1"
    stat_field compr_data_size
    stop_nbd_daemon
}
fast=$(compr_at 1)
strong=$(compr_at 19)
log "compr_data_size of 8 MiB: $fast at --cold-level 1, $strong at 19"
((strong < fast)) || fail "--cold-level 19 took $strong bytes, level 1 $fast: the level is not used"
expect_start_error 2 "cold-level: bad value '99'" --size 16M --nbd-unix "$TMPD/bad.sock" \
    --cold-level 99
expect_start_error 2 "with a --cold-algorithm" --size 16M --nbd-unix "$TMPD/bad.sock" \
    --cold-algorithm none --cold-level 3

# ---- in the background: --cold-after ----

start_nbd_daemon 8M --cold-after 1
(($(stat_field cold_after) == 1)) || fail "stat says cold_after $(stat_field cold_after), not 1"
nbdcopy "$TMPD/head" "$NBD_URI" || fail "nbdcopy into the --cold-after device failed"
# Against a hang, not a timing: the pass looks every second.
for ((i = 0; i < 600; i++)); do
    (($(stat_field bundled_pages) > 0)) && break
    sleep 0.1
done
bundled=$(stat_field bundled_pages)
log "--cold-after 1: $bundled pages bundled, $(stat_field cold_passes) passes"
((bundled > 0)) || fail "--cold-after 1 bundled nothing in a minute"
(($(stat_field idle_pages) == 0)) || fail "the background pass marked pages idle"
sums_equal "$TMPD/head" "bundling in the background"
"$UZRAMCTL" set "$DEV_SOCK" cold-after=0 || fail "set cold-after=0 failed"
(($(stat_field cold_after) == 0)) || fail "stat says cold_after $(stat_field cold_after) after set 0"
rc=0
out=$("$UZRAMCTL" set "$DEV_SOCK" cold-after=soon 2>&1) || rc=$?
((rc != 0)) || fail "set cold-after=soon succeeded"
grep -q "bad number of seconds" <<<"$out" || fail "set cold-after=soon says: $out"
stop_nbd_daemon
expect_start_error 2 "with --cold-algorithm none" --size 16M --nbd-unix "$TMPD/bad.sock" \
    --cold-algorithm none --cold-after 5

# ---- written back: by hand, and by the evict path ----

start_nbd_daemon 8M --backing "$TMPD/backing.img"
nbdcopy "$TMPD/head" "$NBD_URI" || fail "nbdcopy into the backed device failed"
n=$(bundle "the backed device")
((n > 0)) || fail "the backed device bundled nothing"
out=$("$UZRAMCTL" writeback "$DEV_SOCK" idle) || fail "uzramctl writeback idle failed: $out"
log "writeback idle of $n bundled pages: $out"
json=$(stat_json)
(($(json_int "$json" bundles) == 0 && $(json_int "$json" bundled_pages) == 0)) ||
    fail "bundles left after writeback idle: $json"
(($(json_int "$json" bd_count) >= n)) ||
    fail "bd_count is $(json_int "$json" bd_count) after writing back $n bundled pages"
sums_equal "$TMPD/head" "writing bundled pages back"
stop_nbd_daemon

start_nbd_daemon 8M --backing "$TMPD/backing2.img"
nbdcopy "$TMPD/head" "$NBD_URI" || fail "nbdcopy into the second backed device failed"
n=$(bundle "the device to evict from")
((n > 0)) || fail "the device to evict from bundled nothing"
"$UZRAMCTL" compact "$DEV_SOCK" >/dev/null || fail "uzramctl compact failed"
mem=$(stat_field mem_used_total)
limit=$((mem / 2))
"$UZRAMCTL" set "$DEV_SOCK" mem-limit="$limit" || fail "set mem-limit=$limit failed"
# Against a hang, not a timing: the evict thread looks every 200 ms.
for ((i = 0; i < 600; i++)); do
    (($(stat_field mem_used_total) <= limit)) && break
    sleep 0.1
done
json=$(stat_json)
log "bundles of $mem bytes under a limit of $limit: $(json_int "$json" bd_writes) pages" \
    "written back, $(json_int "$json" bundled_pages) of $n still bundled"
wb_log "$json"
(($(json_int "$json" mem_used_total) <= limit)) ||
    fail "mem_used_total $(json_int "$json" mem_used_total) a minute after mem-limit=$limit"
(($(json_int "$json" bd_writes) > 0 && $(json_int "$json" bundled_pages) < n)) ||
    fail "the evict path wrote no bundled page back: $json"
sums_equal "$TMPD/head" "evicting bundled pages"
stop_nbd_daemon

# ---- no cold codec ----

start_nbd_daemon 16M --cold-algorithm none
rc=0
out=$("$UZRAMCTL" recompress "$DEV_SOCK" idle --bundle 2>&1) || rc=$?
((rc == 1)) || fail "recompress --bundle with --cold-algorithm none exited $rc, not 1: $out"
grep -q "no cold algorithm" <<<"$out" || fail "recompress --bundle without a cold codec says: $out"
rc=0
out=$("$UZRAMCTL" set "$DEV_SOCK" cold-after=5 2>&1) || rc=$?
((rc != 0)) || fail "set cold-after=5 without a cold codec succeeded"
grep -q "needs a cold algorithm" <<<"$out" || fail "set cold-after without a cold codec says: $out"
stop_nbd_daemon
log "ok"
