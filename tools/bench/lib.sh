# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# What the benchmark scripts in tools/bench share: sourced, never run, by
# each script once it has named itself:
#
#   prog='uzramd-compare'
#   . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib.sh"
#
# The scripts run with `set -euo pipefail` in the C locale (set here).
#
# Messages.  Results go to stdout, everything else to stderr, each line
# prefixed with the script's name: note (progress), warn, die (exit 1),
# bad (bad arguments, exit 2), skip (something the run needs is missing,
# exit 77).
#
# The cleanup stack.  A benchmark takes real resources: a daemon and its
# FUSE mount, loop devices, swap, a memory cgroup, the kernel's zram0.  When
# a run fails halfway or is interrupted, none may stay behind.  Whatever is
# set up pushes its undo (push) as soon as it exists; a run undoes what it
# is done with at once (pop_run: the newest undo); and one EXIT trap runs
# whatever is left, newest first, on every exit path: an error, `set -e`, a
# signal, the normal end.  Newest first is what makes it safe: swapoff runs
# while the daemon serving the swap still lives, the loop device goes
# before the daemon, the temporary directory last.  An undo that fails at
# exit fails a run that would have passed (exit 1): a benchmark that leaves
# the machine changed has not finished cleanly.
#
# The programs come from a build tree, $build (each script's --build);
# bench_binaries says where in it each one is.

set -euo pipefail
export LC_ALL=C

: "${prog:?tools/bench/lib.sh: the script sets prog before sourcing it}"
BENCH_DIR=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck disable=SC2034 # for the scripts
BENCH_ROOT=$(cd "$BENCH_DIR/../.." && pwd)
# shellcheck disable=SC2034
MiB=$((1 << 20))

# shellcheck source=tools/bench/corpus.sh
. "$BENCH_DIR/corpus.sh"

# ---- messages ----------------------------------------------------------------

note() { echo "$prog: $*" >&2; }
warn() { note "warning: $*"; }
die() { note "$*"; exit 1; }
skip() { note "skipped: $*"; exit 77; }
# With BENCH_USAGE_ON_BAD=1 the message is followed by the script's usage.
bad() {
    note "$*"
    if [[ ${BENCH_USAGE_ON_BAD:-0} == 1 ]]; then usage >&2; fi
    exit 2
}

# parse_size SIZE: SIZE in bytes.  A K, M, G or T suffix (also KiB, KB...)
# is a power of 1024, as uzramd and zspool-bench read it.  Fails (1) on
# anything else and on a size that does not fit in 63 bits.
parse_size() {
    local s=$1 n unit shift=0
    [[ $s =~ ^([0-9]+)([KkMmGgTt](i?B)?)?$ ]] || return 1
    n=${BASH_REMATCH[1]}
    unit=${BASH_REMATCH[2]:0:1}
    case ${unit^^} in
    K) shift=10 ;; M) shift=20 ;; G) shift=30 ;; T) shift=40 ;;
    esac
    ((${#n} <= 18 && (10#$n << shift) >> shift == 10#$n)) || return 1
    echo $((10#$n << shift))
}

# ---- the cleanup stack ---------------------------------------------------------

_bench_undo=()

# push CMD...: run CMD (as one shell string) at exit, unless undone before.
push() { _bench_undo+=("$*"); }

# pop: drop the newest undo: the caller has undone it itself.
pop() { unset '_bench_undo[${#_bench_undo[@]}-1]'; }

# pop_run: run the newest undo now, and drop it.
pop_run() {
    local c=${_bench_undo[${#_bench_undo[@]} - 1]}
    pop
    eval "$c"
}

_bench_exit() {
    local rc=$? i
    trap - EXIT INT TERM
    set +e
    for ((i = ${#_bench_undo[@]} - 1; i >= 0; i--)); do
        if ! eval "${_bench_undo[i]}"; then
            note "cleanup failed: ${_bench_undo[i]}"
            ((rc != 0)) || rc=1
        fi
    done
    exit "$rc"
}
trap _bench_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bench_tmpdir PREFIX: a temporary directory /tmp/PREFIX.XXXXXX in tmp,
# removed at exit, and in it an empty $results (see put).
bench_tmpdir() {
    tmp=$(mktemp -d "/tmp/$1.XXXXXX")
    push "rm -rf '$tmp'"
    results=$tmp/results
    : >"$results"
}

# keep_at_exit DIR: at exit, copy fio's JSON reports and $results to DIR
# (--keep), before the temporary directory goes.  Nothing without DIR.
keep_at_exit() {
    [[ -n $1 ]] || return 0
    push "mkdir -p '$1' && cp '$tmp'/*.json '$results' '$1/' 2>/dev/null || true"
}

# ---- results -------------------------------------------------------------------

# put NAME.FIGURE VALUE: one figure of the run, a line of $results, which
# each script's table reads at the end.
put() { echo "$1 $2" >>"$results"; }

# now: the time, in seconds with microseconds.
now() { echo "$EPOCHREALTIME"; }

# json_get FILE EXPR: the Python expression EXPR evaluated over the JSON in
# FILE (as j), printed.
json_get() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# ---- fio -----------------------------------------------------------------------

# Options a script adds to every fio_run (e.g. --lat_percentiles=1).
FIO_ARGS=()

# fio_run DEVICE NAME FIO-ARGS...: one fio job on the block device DEVICE,
# direct I/O with libaio, its JSON report in $tmp/NAME.json.
fio_run() {
    local dev=$1 name=$2
    shift 2
    fio --name="$name" --filename="$dev" --ioengine=libaio --direct=1 "${FIO_ARGS[@]}" \
        --group_reporting --output-format=json --output="$tmp/$name.json" "$@" >/dev/null ||
        die "fio $name on $dev failed"
}

# fio_get NAME read|write FIGURE: a figure (iops, bw_bytes...) of the
# report of fio_run NAME.
fio_get() { json_get "$tmp/$1.json" "j['jobs'][0]['$2']['$3']"; }

# ---- the build tree ------------------------------------------------------------

# bench_binaries: where the build tree $build keeps uzramd, uzramctl and
# swap-fill.
# shellcheck disable=SC2034,SC2154 # build is the script's, the rest for it
bench_binaries() {
    uzramd=$build/src/daemon/uzramd
    uzramctl=$build/tools/uzramctl/uzramctl
    swap_fill=$build/tests/integration/swap-fill
}

# need_built FILE...: die unless each FILE was built.
need_built() {
    local b
    for b; do
        [[ -x $b ]] || die "$b: not built (meson setup $build && ninja -C $build, or --build DIR)"
    done
}

# ---- the corpus ----------------------------------------------------------------

# bench_corpus FILE [BYTES]: make FILE a corpus (corpus.sh) of BYTES
# (default 1 GiB) if it does not exist.  An existing FILE is used as it is,
# whatever its size (--corpus).
bench_corpus() {
    local bytes=${2:-$((1 << 30))}
    [[ -f $1 ]] && return 0
    note "making the corpus $1 ($((bytes / MiB)) MiB of /usr/lib and /usr/share)"
    corpus_make "$1" "$bytes" || die "/usr/lib and /usr/share hold less than $((bytes / MiB)) MiB"
}

# bench_corpus_cut FILE MAX: the data a run fills with: the first MAX bytes
# of FILE (all of it if smaller), rounded down to whole MiBs.  Sets bytes
# (its size) and src (FILE itself, or a cut copy in $tmp), and reads src
# once so that the first server's fill is not the one that waits for the
# disk.
bench_corpus_cut() {
    local size
    size=$(stat -c %s "$1") || die "$1: cannot stat"
    bytes=$size
    if ((bytes > $2)); then bytes=$2; fi
    bytes=$((bytes / MiB * MiB))
    ((bytes > 0)) || die "$1: under 1 MiB"
    src=$1
    if ((bytes != size)); then
        src=$tmp/corpus
        head -c "$bytes" "$1" >"$src" || die "cannot cut $1 to $bytes bytes"
    fi
    cat "$src" >/dev/null
}

# ---- processes -----------------------------------------------------------------

# proc_stop PID WHAT: SIGTERM, then up to 30 s for PID to go, then SIGKILL
# (saying so, as "WHAT PID"); reaps PID if it is this shell's child.
# Returns 1 if it had to be killed.
proc_stop() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null || true
            return 0
        fi
        sleep 0.1
    done
    note "$2 $pid ignored SIGTERM for 30 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
}

# proc_cpu_ticks PID: the CPU time of PID, all its threads (those gone
# included), user and system, in clock ticks (getconf CLK_TCK a second).
proc_cpu_ticks() {
    local stat f
    stat=$(<"/proc/$1/stat") || return 1
    stat=${stat##*) }
    read -ra f <<<"$stat"
    echo $((f[11] + f[12]))
}

# put_memory NAME PID: the memory PID holds, as figures (put) in bytes:
# NAME.vmrss, and where the kernel has smaps_rollup NAME.rss (what it
# touches) and NAME.pss (what it alone holds: shared pages split between
# their users).
put_memory() {
    put "$1.vmrss" "$(awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$2/status")"
    if [[ -r /proc/$2/smaps_rollup ]]; then
        put "$1.rss" "$(awk '/^Rss:/ { print $2 * 1024 }' "/proc/$2/smaps_rollup")"
        put "$1.pss" "$(awk '/^Pss:/ { print $2 * 1024 }' "/proc/$2/smaps_rollup")"
    fi
}

# ---- NBD servers ---------------------------------------------------------------

# nbd_wait_ready PID SOCK: until the server PID answers an NBD handshake on
# the Unix socket SOCK.  Dies if PID exits first, or after 10 s.
nbd_wait_ready() {
    local pid=$1 sock=$2
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || die "the server (pid $pid) exited at start"
        if [[ -S $sock ]] && nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.05
    done
    die "the server (pid $pid) did not answer on $sock in 10 s"
}

# nbdkit_memory_usable [ALLOCATOR]: skip (exit 77) unless nbdkit and its
# memory plugin are installed, and, if ALLOCATOR is zstd, its zstd
# allocator was built.
nbdkit_memory_usable() {
    command -v nbdkit >/dev/null || skip "needs nbdkit"
    nbdkit memory --dump-plugin >/dev/null 2>&1 || skip "needs nbdkit's memory plugin"
    if [[ ${1:-} == zstd ]] && ! grep -qx 'zstd=yes' <<<"$(nbdkit --dump-config)"; then
        skip "this nbdkit has no zstd allocator"
    fi
}

# nbdkit_memory_start SOCK SIZE ALLOCATOR: nbdkit's memory plugin, SIZE
# bytes kept by ALLOCATOR (sparse, zstd...), on the Unix socket SOCK, a
# child of this shell (it exits with it), its pid nbdkit_pid.  Returns
# once it answers; pushes its stop.
nbdkit_memory_start() {
    rm -f "$1"
    nbdkit --exit-with-parent -U "$1" -f memory "$2" "allocator=$3" &
    nbdkit_pid=$!
    push "proc_stop $nbdkit_pid nbdkit"
    nbd_wait_ready "$nbdkit_pid" "$1"
}

# ---- uzramd --------------------------------------------------------------------

# uzramd_start NAME SIZE ARGS...: uzramd started as a user starts it: it
# forks and returns once it serves (its FUSE file mounted, its NBD socket
# listening), so there is nothing to wait for after it.  Its control socket
# is $uzramd_ctl, its pid uzramd_pid; the script's --uzramd-args
# ($uzramd_args) come last.  Pushes uzramd_stop.
uzramd_start() {
    local name=$1 size=$2
    shift 2
    uzramd_ctl=$tmp/uzramd.sock
    # shellcheck disable=SC2086 # --uzramd-args is a list of words
    "$uzramd" --name "$name" --size "$size" --control "$uzramd_ctl" --pidfile "$tmp/uzramd.pid" \
        "$@" ${uzramd_args:-} || die "uzramd failed to start"
    push "uzramd_stop"
    uzramd_pid=$(cat "$tmp/uzramd.pid") || die "uzramd wrote no pidfile"
}

# uzramd_start_fuse NAME SIZE ARGS...: uzramd_start serving the FUSE file
# $uzramd_fuse, and a loop device on it (loop_attach): what a user puts a
# file system or swap on.  Sets loop.
uzramd_start_fuse() {
    local name=$1 size=$2
    shift 2
    uzramd_fuse=$tmp/uzramd.img
    : >"$uzramd_fuse"
    uzramd_start "$name" "$size" --fuse "$uzramd_fuse" "$@"
    loop_attach "$uzramd_fuse"
}

# put_uzramd_stat NAME FIGURE...: each FIGURE of `uzramctl stat` on the
# uzramd started last, as NAME.FIGURE (nan where it has none); the whole
# answer kept as $tmp/stat-NAME.json.
put_uzramd_stat() {
    local name=$1 f
    shift
    "$uzramctl" stat "$uzramd_ctl" --json >"$tmp/stat-$name.json" || die "uzramctl stat failed"
    for f; do
        put "$name.$f" "$(json_get "$tmp/stat-$name.json" "j.get('$f', 'nan')")"
    done
}

# uzramd_stop: stop the uzramd started last (proc_stop).  One that had to
# be killed leaves its FUSE mount behind: unmounted lazily.
uzramd_stop() {
    local pid=${uzramd_pid:-}
    uzramd_pid=
    [[ -n $pid ]] || return 0
    if ! proc_stop "$pid" uzramd && [[ -n ${uzramd_fuse:-} ]]; then
        umount -l "$uzramd_fuse" 2>/dev/null || true
    fi
    return 0
}

# ---- loop devices --------------------------------------------------------------

# loop_attach FILE: a loop device with direct I/O on FILE, in loop; pushes
# its detach.  Warns when the kernel did not enable direct I/O.
loop_attach() {
    loop=$(losetup --find --show --direct-io=on "$1") || die "losetup on $1 failed"
    push "losetup -d '$loop'"
    [[ $(losetup -n -O DIO "$loop" | tr -d ' ') == 1 ]] || warn "no direct I/O on $loop"
    udevadm settle 2>/dev/null || true
}

# ---- the kernel's zram ---------------------------------------------------------

ZRAM=/sys/block/zram0
ZDEV=/dev/zram0

# zram_probe: can the run have the kernel's zram0, with lz4?  Loads the zram
# module if it is not loaded (pushing its unload).  0: yes.  Else ZRAM_WHY
# says why not, and the status which way: 1 there is no zram0, 2 zram0 is
# in use (initialised, mounted, a swap, or held by another device: never
# touched then), 3 this kernel's zram has no lz4.
zram_probe() {
    local algs
    ZRAM_WHY=
    if [[ ! -d $ZRAM && ! -d /sys/module/zram ]] && modprobe zram 2>/dev/null; then
        push "modprobe -r zram 2>/dev/null || true"
        udevadm settle 2>/dev/null || true
    fi
    [[ -d $ZRAM ]] || { ZRAM_WHY="no $ZRAM (modprobe zram did not provide it)"; return 1; }
    [[ -b $ZDEV ]] || { ZRAM_WHY="no block device $ZDEV"; return 1; }
    [[ $(<"$ZRAM/disksize") == 0 ]] || ZRAM_WHY="its disksize is $(<"$ZRAM/disksize") (initialised)"
    if awk -v d="$ZDEV" '$1 == d { f = 1 } END { exit !f }' /proc/mounts; then ZRAM_WHY="it is mounted"; fi
    if awk -v d="$ZDEV" '$1 == d { f = 1 } END { exit !f }' /proc/swaps; then ZRAM_WHY="it is a swap"; fi
    if [[ -n $(ls -A "$ZRAM/holders" 2>/dev/null) ]]; then ZRAM_WHY="another device holds it"; fi
    [[ -z $ZRAM_WHY ]] || return 2
    algs=$(<"$ZRAM/comp_algorithm")
    [[ " ${algs//[\[\]]/} " == *" lz4 "* ]] || { ZRAM_WHY="comp_algorithm: $algs"; return 3; }
}

# zram_usable: zram_probe, saying why not as a run that leaves zram out.
zram_usable() {
    local rc=0
    zram_probe || rc=$?
    case $rc in
    0) return 0 ;;
    1) note "no $ZRAM: leaving the kernel's zram out" ;;
    2) note "zram0 is in use: leaving the kernel's zram out" ;;
    *) note "the kernel's zram has no lz4: leaving it out" ;;
    esac
    return 1
}

# zram_claim SIZE: zram0 becomes the run's: its algorithm is remembered and
# zram_release pushed, then zram_setup SIZE.
zram_claim() {
    ZRAM_ORIG_ALG=$(sed -n 's/.*\[\([^]]*\)\].*/\1/p' "$ZRAM/comp_algorithm")
    push "zram_release"
    zram_setup "$1"
}

# zram_setup SIZE: a fresh zram0 of SIZE bytes with lz4, uzramd's default.
zram_setup() {
    echo 1 >"$ZRAM/reset"
    echo lz4 >"$ZRAM/comp_algorithm"
    echo "$1" >"$ZRAM/disksize"
}

# zram_release: reset zram0 and give it back its algorithm.  A process just
# killed may still hold the device open: tries for 5 s.  Returns 1 if zram0
# could not be reset.
zram_release() {
    local i
    for ((i = 0; i < 10; i++)); do
        echo 1 >"$ZRAM/reset" 2>/dev/null && break
        sleep 0.5
    done
    if [[ $(<"$ZRAM/disksize") != 0 ]]; then
        warn "could not reset $ZDEV (run: echo 1 > $ZRAM/reset)"
        return 1
    fi
    if [[ -n ${ZRAM_ORIG_ALG:-} && $(<"$ZRAM/comp_algorithm") != *"[$ZRAM_ORIG_ALG]"* ]]; then
        echo "$ZRAM_ORIG_ALG" >"$ZRAM/comp_algorithm" 2>/dev/null || true
    fi
}
