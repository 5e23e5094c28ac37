# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# The base of the shell tests' libraries: sourced, never run.  The libraries
# build on one another in one direction only; a test sources the one it
# needs, which sources what it builds on:
#
#   common.sh     this file: options, log/skip/fail, the cleanup stack,
#                 prerequisites, polling, JSON figures, the corpus
#   uzramd.sh     + the daemon under test (its arguments UZRAMD UZRAMCTL),
#                 loop devices, swap in a memory cgroup, uzramctl stat
#   nbd.sh        + uzramd serving NBD, for the NBD clients
#   writeback.sh  + the evict path: nbdkit as the backing store, a sampler
#                 of mem_used_total, wb-pages
#   systemd.sh    + (on uzramd.sh) what systemd would do: a notification
#                 socket, the daemon in the foreground
#   fio-compact.sh  a scenario, not a library: sourced once the daemon runs
#   vm.sh         the VM suite's host side; stands alone (see there)
#
# Each library can be sourced more than once (by two libraries a test
# needs): the second time does nothing.
#
# Tests drive the real binaries through the real kernel paths (a FUSE
# mount, a loop device, ext4, swap), so a failed test can leave the machine
# holding mounts, loop devices, swap areas and daemons.  To keep that from
# happening, everything a test sets up registers its own undo on a stack
# (cleanup_push) as soon as it exists, and one EXIT trap unwinds the stack
# in reverse order whatever the exit path: a failed check, `set -e`, a
# signal, or the normal end.  Reverse order is what makes it safe: swapoff
# and umount run while the daemon that serves them is still alive, the loop
# device is detached before the daemon goes, and the temporary directory
# goes last.
#
# Exit status: 0 pass, 1 fail, 77 skipped (not root, no /dev/fuse, a tool
# missing).

[[ -z ${_UZTEST_COMMON:-} ]] || return 0
_UZTEST_COMMON=1

set -euo pipefail
export LC_ALL=C

TESTS_LIB=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
test_name=$(basename "$0" .sh)

log() { printf '%s: %s\n' "$test_name" "$*" >&2; }
skip() { log "SKIP: $*"; exit 77; }
fail() { log "FAIL: $*"; exit 1; }

# ---- cleanup stack -------------------------------------------------------

_cleanups=()

# cleanup_push CMD...: run CMD (as one shell string) when the test exits.
cleanup_push() { _cleanups+=("$*"); }

# Drop the newest entry: the caller has undone it itself.
cleanup_pop() { unset '_cleanups[${#_cleanups[@]}-1]'; }

_run_cleanups() {
    local rc=$? i
    trap - EXIT INT TERM
    set +e
    for ((i = ${#_cleanups[@]} - 1; i >= 0; i--)); do
        eval "${_cleanups[i]}" || log "cleanup failed: ${_cleanups[i]}"
    done
    if ((rc != 0 && rc != 77)); then
        log "exit status $rc"
    fi
    exit "$rc"
}
trap _run_cleanups EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- prerequisites -------------------------------------------------------

require_root() { [[ $(id -u) == 0 ]] || skip "needs root"; }

# The FUSE transport under test.  Meson runs each FUSE test once per
# transport, with UZTEST_FUSE_TRANSPORT=dev (also the default) or uring;
# uzramd.sh passes it to the daemons it starts.  With uring, require_fuse
# turns the kernel's switch for it on and sets it back at exit; daemons
# started by a test itself then choose io_uring too (auto, the default).
FUSE_TRANSPORT=${UZTEST_FUSE_TRANSPORT:-dev}
URING_PARAM=/sys/module/fuse/parameters/enable_uring

require_fuse() {
    [[ -c /dev/fuse ]] || skip "needs /dev/fuse"
    grep -qw fuse /proc/filesystems || modprobe fuse 2>/dev/null || true
    grep -qw fuse /proc/filesystems || skip "the kernel has no FUSE"
    case $FUSE_TRANSPORT in
    dev) ;;
    uring)
        [[ -e $URING_PARAM ]] || skip "this kernel has no FUSE over io_uring ($URING_PARAM)"
        set_enable_uring Y
        ;;
    *) fail "UZTEST_FUSE_TRANSPORT=$FUSE_TRANSPORT: dev or uring" ;;
    esac
}

# set_enable_uring Y|N: the kernel's switch for FUSE over io_uring, which
# holds for the whole machine, set back to what it was when the test exits.
# The FUSE tests run one at a time (is_parallel: false), so no other test
# sees the change.
set_enable_uring() {
    local was
    was=$(<"$URING_PARAM") || fail "cannot read $URING_PARAM"
    cleanup_push "echo '$was' >'$URING_PARAM'"
    echo "$1" >"$URING_PARAM" || fail "cannot write $1 to $URING_PARAM"
}

require_cmd() {
    local c
    for c; do
        command -v "$c" >/dev/null 2>&1 || skip "needs $c"
    done
}

# require_system_python: PY is /usr/bin/python3, or skip.  Never python3
# from PATH: a virtual environment's could be anything.
require_system_python() {
    PY=/usr/bin/python3
    [[ -x $PY ]] || skip "needs $PY"
}

# ---- temporary directory -------------------------------------------------

# make_tmpdir PREFIX: a new directory /tmp/PREFIX.XXXXXX in TMPD, removed
# at exit.  Each folder of tests has its own PREFIX (uzit, uznbd, uzsd), to
# tell their leftovers apart.  Short: a Unix socket's path must fit in 108
# bytes.
make_tmpdir() {
    TMPD=$(mktemp -d "/tmp/$1.XXXXXX")
    cleanup_push "rm -rf '$TMPD'"
}

# ---- polling ---------------------------------------------------------------

# Poll up to $2 seconds (default 30) for the shell condition $1.
wait_for() {
    local cond=$1 secs=${2:-30} i
    for ((i = 0; i < secs * 10; i++)); do
        eval "$cond" && return 0
        sleep 0.1
    done
    return 1
}

pid_alive() { kill -0 "$1" 2>/dev/null; }

# ---- JSON figures ----------------------------------------------------------

# json_int JSON KEY: the integer value of KEY in the JSON object; fails the
# test if it is missing or not an integer.
json_int() {
    local v
    v=$(python3 -c '
import json, sys
o = json.loads(sys.argv[1])
v = o[sys.argv[2]]
if isinstance(v, bool) or not isinstance(v, int):
    raise SystemExit("not an integer: %r" % (v,))
print(v)' "$1" "$2") || fail "stat --json: no integer '$2' in: $1"
    printf '%s\n' "$v"
}

# json_val JSON KEY: the value of KEY as JSON writes it (a number, true,
# false, a string in quotes); fails the test if the key is missing.
json_val() {
    local v
    v=$(python3 -c '
import json, sys
print(json.dumps(json.loads(sys.argv[1])[sys.argv[2]]))' "$1" "$2") ||
        fail "stat --json has no '$2'"
    printf '%s\n' "$v"
}

# json_bool JSON KEY: true or false, for a key written as a JSON boolean or
# as 1/0 (the control protocol's flags are numbers); fails on anything else.
json_bool() {
    local v
    v=$(json_val "$1" "$2") || exit 1
    case $v in
    true | 1) echo true ;;
    false | 0) echo false ;;
    *) fail "stat --json: '$2' is $v, not a boolean" ;;
    esac
}

# ---- files -------------------------------------------------------------------

# tree_sums DIR: one sorted line per regular file under DIR, its sha256.
tree_sums() {
    (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

# shellcheck source=tools/bench/corpus.sh
. "$TESTS_LIB/../../tools/bench/corpus.sh"

# corpus SIZE-MIB: a corpus of real files (tools/bench/corpus.sh, the
# benchmarks' recipe) of exactly SIZE-MIB MiB, in CORPUS; built once and
# cached in /var/tmp, since building 1 GiB takes longer than some of the
# tests.  Skips if /usr/lib and /usr/share hold less.
corpus() {
    local mib=$1 f
    f=$(corpus_path $((mib * MiB)))
    if [[ ! -f $f || $(stat -c %s "$f") != $((mib * MiB)) ]]; then
        log "building the corpus $f ($mib MiB of /usr/lib and /usr/share)"
        corpus_make "$f" $((mib * MiB)) || skip "/usr/lib and /usr/share hold under $mib MiB"
    fi
    # shellcheck disable=SC2034 # read by the tests
    CORPUS=$f
}

# shellcheck disable=SC2034 # used by the tests
MiB=$((1024 * 1024))
