# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# The evict path (writeback): sourced, never run, by the writeback tests
# (test-writeback-*.sh), on nbd.sh (see common.sh for the order of the
# libraries).  What every writeback test needs: a sampler of
# mem_used_total, an nbdkit server to be the remote tier, and readers for
# the evict path's statistics.
#
# Why a sampler when the store keeps mem_used_max: mem_used_max is what
# the store itself saw on its allocation path, so a bug in that path can
# hide from it; the sampler reads mem_used_total from outside, through the
# control socket, as a user watching the device would.  The tests check
# both.
#
# The limit's slack.  The store checks the limit before and after each
# allocation, but threads allocating at the same instant can each open a
# zspage before any of them checks again (doc/store.md, "The memory
# limit"), so mem_used_total may pass the limit by at most one zspage
# (16 pages, 64 KiB) per thread in the store at once.  WB_SLACK allows
# 1 MiB: sixteen such threads, more than uzramd runs by default on this
# machine.

[[ -z ${_UZTEST_WRITEBACK:-} ]] || return 0
_UZTEST_WRITEBACK=1

# shellcheck source=tests/lib/nbd.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/nbd.sh"

WB_SLACK=$MiB

# require_writeback: this uzramd has the evict path's options.  A failure,
# not a skip: the tests are built with the daemon they test.
require_writeback() {
    # Read whole first: under pipefail, "--help | grep -q" fails when grep
    # stops at a match before uzramd has written the rest (SIGPIPE), which
    # a help text past one pipe write (4 KiB) made happen under ASan.
    local help
    help=$("$UZRAMD" --help 2>&1)
    grep -q -- '--backing' <<<"$help" ||
        fail "$UZRAMD --help lists no --backing: this build has no writeback"
}

# wb_log JSON: one line with the figures of the evict path, for the log.
wb_log() {
    python3 -c '
import json, sys
o = json.loads(sys.argv[1])
keys = ("mem_used_total", "mem_used_max", "mem_limit", "wb_high", "wb_low",
        "orig_data_size", "bd_count", "bd_reads", "bd_writes", "bd_read_errors",
        "bd_write_errors", "bd_last_error", "bd_connected", "evictions",
        "pages_promoted", "write_waits", "idle_pages", "recompressed",
        "failed_reads", "failed_writes", "limit_rejects", "reserve_waits",
        "reserve_misses")
print(" ".join("%s=%s" % (k, o.get(k, "?")) for k in keys))' "$1" >&2
}

# page_count TEXT: N of "N page(s)" in what a verb printed ("NAME: 9772 pages
# marked idle"; the name may hold digits too).
page_count() {
    [[ $1 =~ (^|[^0-9])([0-9]+)\ pages? ]] || return 1
    printf '%s\n' "${BASH_REMATCH[2]}"
}

# ---- the sampler ----------------------------------------------------------

# sampler_start FILE: append mem_used_total to FILE every 0.2 s, in the
# background, until sampler_stop.  Reads the control socket with uzramctl:
# one process per sample, cheap enough on two cores beside the copy.
sampler_start() {
    SAMPLES=$1
    : >"$SAMPLES"
    (
        trap - EXIT
        set +e
        while :; do
            out=$("$UZRAMCTL" stat "$DEV_SOCK" --json 2>/dev/null) &&
                [[ $out =~ \"mem_used_total\":\ *([0-9]+) ]] &&
                echo "${BASH_REMATCH[1]}" >>"$SAMPLES"
            sleep 0.2
        done
    ) &
    SAMPLER_PID=$!
    cleanup_push "kill $SAMPLER_PID 2>/dev/null; wait $SAMPLER_PID 2>/dev/null || true"
}

# sampler_stop: stop it, and take one last sample as the phase ends (a
# phase shorter than the sampler's first stat, which a loaded machine can
# make, would otherwise leave none); sets SAMPLE_COUNT and SAMPLE_MAX.
sampler_stop() {
    local out
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    cleanup_pop
    out=$("$UZRAMCTL" stat "$DEV_SOCK" --json) || fail "uzramctl stat failed at the end of a sampled phase"
    [[ $out =~ \"mem_used_total\":\ *([0-9]+) ]] || fail "no mem_used_total in uzramctl stat --json: $out"
    echo "${BASH_REMATCH[1]}" >>"$SAMPLES"
    SAMPLE_COUNT=$(wc -l <"$SAMPLES")
    SAMPLE_MAX=$(sort -n "$SAMPLES" | tail -n 1)
    SAMPLE_MAX=${SAMPLE_MAX:-0}
}

# check_under_limit LIMIT WHAT: the samples taken during WHAT and the store's
# own mem_used_max stayed within LIMIT plus WB_SLACK.  No sample at all is a
# failure too: a check over nothing would pass whatever happened.  (A short
# phase may give only sampler_stop's own: mem_used_max covers every instant.)
check_under_limit() {
    local limit=$1 what=$2 max
    ((SAMPLE_COUNT >= 1)) || fail "no sample of mem_used_total during $what"
    log "$what: $SAMPLE_COUNT samples, the highest mem_used_total $SAMPLE_MAX (limit $limit + $WB_SLACK)"
    ((SAMPLE_MAX <= limit + WB_SLACK)) ||
        fail "mem_used_total reached $SAMPLE_MAX during $what, over the limit $limit + $WB_SLACK"
    max=$(stat_field mem_used_max)
    ((max <= limit + WB_SLACK)) ||
        fail "mem_used_max is $max after $what, over the limit $limit + $WB_SLACK"
}

# ---- nbdkit as the backing store ------------------------------------------

# require_nbdkit PLUGIN [FILTER...]: nbdkit with that plugin and those
# filters, or skip.
require_nbdkit() {
    local f
    require_cmd nbdkit
    nbdkit "$1" --dump-plugin >/dev/null 2>&1 || skip "needs nbdkit's $1 plugin"
    for f in "${@:2}"; do
        nbdkit --filter="$f" null --dump-plugin >/dev/null 2>&1 || skip "needs nbdkit's $f filter"
    done
}

# nbdkit_start SOCKET PLUGIN-AND-ARGS...: nbdkit in the foreground, as a
# child of this shell, on the Unix socket SOCKET; waits until it takes a
# connection.  Sets NBDKIT_PID; stopped by its pid on every exit path.
nbdkit_start() {
    local sock=$1
    shift
    rm -f "$sock"
    log "nbdkit -f -U $sock $*"
    nbdkit -f -U "$sock" "$@" 2>>"$TMPD/nbdkit.log" &
    NBDKIT_PID=$!
    cleanup_push "nbdkit_stop"
    if ! wait_for "nbdinfo --can connect 'nbd+unix:///?socket=$sock' 2>/dev/null || ! pid_alive $NBDKIT_PID" 30 ||
        ! pid_alive "$NBDKIT_PID"; then
        cat "$TMPD/nbdkit.log" >&2
        fail "nbdkit did not start"
    fi
}

# nbdkit_stop [SIGNAL]: stop the nbdkit this test started (default TERM).
nbdkit_stop() {
    [[ -n ${NBDKIT_PID:-} ]] || return 0
    kill "-${1:-TERM}" "$NBDKIT_PID" 2>/dev/null || true
    wait "$NBDKIT_PID" 2>/dev/null || true
    NBDKIT_PID=
}

# ---- filling the device ---------------------------------------------------

# copy_in LIMIT: nbdcopy $CORPUS onto the device at $NBD_URI while sampling
# mem_used_total; the daemon must live through it and stay within LIMIT.
copy_in() {
    log "nbdcopy $CORPUS in"
    sampler_start "$TMPD/samples-write"
    nbdcopy --flush "$CORPUS" "$NBD_URI" || fail "nbdcopy $CORPUS $NBD_URI failed"
    sampler_stop
    require_alive "the copy in"
    check_under_limit "$1" "the copy in"
}

# ---- page-by-page results (wb-pages) ---------------------------------------

# check OFF LEN [LIST]: wb-pages check of the export at $NBD_URI against
# $TMPD/data, the data the test wrote (WB_PAGES is the wb-pages program);
# sets CHK to its output line.
check() {
    CHK=$("$WB_PAGES" check "$NBD_URI" "$TMPD/data" "$@") || fail "wb-pages check could not run"
    log "check $1 $2: $CHK"
}

# pages_field OUTPUT KEY: a key=value field of wb-pages' output line.
pages_field() {
    [[ " $1 " =~ \ $2=([^ ]+)\  ]] || fail "wb-pages printed no $2 in: $1"
    printf '%s\n' "${BASH_REMATCH[1]}"
}

# wb_fill_half: write the first $HALF bytes of $TMPD/data through NBD with
# the backing server up, and check that nothing failed and that pages went
# to the server (the device's --mem-limit is far below $HALF).  Leaves the
# statistics after it in WB_JSON, logged.
wb_fill_half() {
    local out
    out=$("$WB_PAGES" write "$NBD_URI" "$TMPD/data" 0 "$HALF") || fail "wb-pages write could not run"
    [[ $(pages_field "$out" error) == none ]] ||
        fail "writing $((HALF / MiB)) MiB with the server up failed: $out"
    WB_JSON=$(stat_json)
    wb_log "$WB_JSON"
    (($(json_int "$WB_JSON" bd_count) > 0)) ||
        fail "bd_count is 0 after $((HALF / MiB)) MiB went into the device's limit"
}
