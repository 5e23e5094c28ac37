#!/bin/bash
# SPDX-License-Identifier: MIT
#
# What the VM suite's guest cases share.  Each case runs as a child of the
# guest's PID 1 (init.sh), which prints the verdict from its exit status;
# nothing here needs cleaning up, since the VM is thrown away.
#
# Swap setups, all at the same priority and with discards:
#   swap_nbd unix|tcp  uzramd --nbd-unix or --nbd-tcp on 127.0.0.1, the
#                      kernel's NBD client (nbd-client -swap), /dev/nbd0
#   swap_fuse          uzramd --fuse, a loop device with direct I/O
#   swap_zram          the kernel's zram (the reference), lz4 as uzramd
# Each sets SWAPDEV.  uzramd's device is called vm0 and its statistics come
# from `uzramctl stat vm0`.
set -uo pipefail

MiB=$((1024 * 1024))
DEV=vm0
SWAP_SIZE=${SWAP_SIZE:-1G}
UZRAMD_ARGS=()

say() { echo "vmtest: $*"; }

# bytes SIZE: SIZE with an optional K, M or G suffix, in bytes.
bytes() {
    local n=${1%[KMG]}
    case $1 in
        *K) echo $((n << 10)) ;;
        *M) echo $((n << 20)) ;;
        *G) echo $((n << 30)) ;;
        *) echo "$n" ;;
    esac
}
fail() { echo "VMTEST: FAIL $*"; exit 1; }
figure() { echo "VMTEST: FIGURE $1=$2"; }

# pid_of NAME: the pid of a process called NAME (its comm), or nothing.
pid_of() {
    local f
    for f in /proc/[0-9]*/comm; do
        [[ $(cat "$f" 2>/dev/null) == "$1" ]] && { f=${f#/proc/}; echo "${f%/comm}"; return 0; }
    done
    return 1
}

modload() {
    local m
    for m in "$@"; do
        modprobe "$m" || fail "modprobe $m"
    done
}

# stat FIELD: one figure of `uzramctl stat vm0`.
stat() {
    uzramctl stat "$DEV" | awk -v k="$1" '$1 == k {print $2; found = 1} END {exit !found}'
}

# start_uzramd ARGS...: uzramd vm0 in the background, ready to serve, its
# log on the console (where the host reads it).
start_uzramd() {
    mkdir -p /run/uzram
    env ${UZRAMD_ENV:-} uzramd --foreground --name "$DEV" --size "$SWAP_SIZE" --pidfile /run/uzram/$DEV.pid \
        "${UZRAMD_ARGS[@]}" "$@" </dev/null >/dev/console 2>&1 &
    local i
    for i in $(seq 1 100); do
        [[ -s /run/uzram/$DEV.pid ]] && break
        kill -0 $! 2>/dev/null || fail "uzramd did not start"
        sleep 0.1
    done
    uzramctl stat "$DEV" >/dev/null || fail "uzramctl stat $DEV does not answer"
    UZRAMD_PID=$(cat /run/uzram/$DEV.pid)
}

# swap_enable DEVICE: mkswap and swapon with discards at priority 100.
swap_enable() {
    mkswap "$1" >/dev/null || fail "mkswap $1"
    swapon --discard=pages -p 100 "$1" || fail "swapon $1"
    grep -q "^$1 " /proc/swaps || fail "$1 is not in /proc/swaps"
    SWAPDEV=$1
}

swap_nbd() {
    local how=$1
    modload nbd
    case $how in
        unix)
            start_uzramd --nbd-unix /run/uzram/$DEV.nbd
            nbd-client -unix /run/uzram/$DEV.nbd /dev/nbd0 -b 4096 -swap >/dev/null ||
                fail "nbd-client -unix"
            ;;
        tcp)
            start_uzramd --nbd-tcp 127.0.0.1:10809 --tls=off
            nbd-client 127.0.0.1 10809 /dev/nbd0 -b 4096 -swap >/dev/null || fail "nbd-client tcp"
            ;;
        *) fail "swap_nbd: unknown $how" ;;
    esac
    swap_enable /dev/nbd0
}

swap_fuse() {
    modload fuse loop
    : >/run/uzram-$DEV.img 2>/dev/null || true
    start_uzramd --fuse /run/uzram/$DEV.img
    local loopdev
    loopdev=$(losetup --direct-io=on --find --show /run/uzram/$DEV.img) || fail "losetup"
    swap_enable "$loopdev"
}

swap_zram() {
    modload zram
    echo lz4 >/sys/block/zram0/comp_algorithm || fail "zram: no lz4"
    echo "$SWAP_SIZE" >/sys/block/zram0/disksize || fail "zram: disksize"
    swap_enable /dev/zram0
}

# swap_setup KIND: one of nbd-unix, nbd-tcp, fuse, zram.
swap_setup() {
    case $1 in
        nbd-unix) swap_nbd unix ;;
        nbd-tcp) swap_nbd tcp ;;
        fuse) swap_fuse ;;
        zram) swap_zram ;;
        *) fail "unknown swap kind $1" ;;
    esac
    say "swap on $SWAPDEV ($1)"
}

# In memory now, for the kind of swap in use: uzramd's orig_data_size, or
# zram's (the first field of mm_stat).
orig_data_size() {
    if [[ $SWAPDEV == /dev/zram0 ]]; then
        awk '{print $1}' /sys/block/zram0/mm_stat
    else
        stat orig_data_size
    fi
}

# hog SIZE PASSES [CGROUP_LIMIT]: swap-fill, in a new memory cgroup capped at
# CGROUP_LIMIT if given.  Sets HOG_RC, HOG_SECONDS and HOG_OUT.
# hog_cgroup LIMIT: the cgroup /hog with memory.max LIMIT, made only where
# it is not there yet.  A case that runs hog in the background makes it
# first, in the foreground: nbd-sigkill's guest locked up twice in CI
# (6.1 under TCG, both CPUs in soft lockup from the start) with the
# background hog's mkdir of the cgroup on one CPU and a fork of the
# script's pid_of loop on the other.
hog_cgroup() {
    grep -qw memory /sys/fs/cgroup/cgroup.subtree_control ||
        echo +memory >/sys/fs/cgroup/cgroup.subtree_control
    [[ -d /sys/fs/cgroup/hog ]] || mkdir /sys/fs/cgroup/hog
    echo "$1" >/sys/fs/cgroup/hog/memory.max || fail "memory.max"
}

hog() {
    local size=$1 passes=$2 limit=${3:-} t0 t1
    local -a wrap=()
    if [[ -n $limit ]]; then
        hog_cgroup "$limit"
        wrap=(bash -c 'echo $$ >/sys/fs/cgroup/hog/cgroup.procs && exec "$@"' hog)
    fi
    HOG_OUT=/tmp/hog.out
    t0=$(date +%s.%N)
    HOG_RC=0
    "${wrap[@]}" swap-fill --size "$size" --passes "$passes" --seed "$RANDOM" >"$HOG_OUT" 2>&1 ||
        HOG_RC=$?
    t1=$(date +%s.%N)
    HOG_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
    cat "$HOG_OUT"
    say "swap-fill $size x$passes${limit:+ in a $limit cgroup}: exit $HOG_RC after $HOG_SECONDS s"
}

# What uzramd says about the protections it asked for, and what the kernel
# says it holds locked.
# check_hardening KIND: what uzramd was granted to serve swap safely; over
# NBD, a connection's reply sender and the reserve's refill run SCHED_RR
# (uzramd(8), SWAP).
check_hardening() {
    local kind=$1 flusher mlocked vmlck locked rr
    flusher=$(stat io_flusher) || fail "uzramctl stat has no io_flusher"
    mlocked=$(stat memory_locked) || fail "uzramctl stat has no memory_locked"
    # VmLck: the size of the locked mappings; Locked: what of them is in RAM.
    vmlck=$(awk '/^VmLck:/ {print $2}' /proc/"$UZRAMD_PID"/status)
    locked=$(awk '/^Locked:/ {print $2}' /proc/"$UZRAMD_PID"/smaps_rollup)
    say "io_flusher=$flusher memory_locked=$mlocked VmLck=${vmlck}kB Locked=${locked}kB"
    [[ $flusher == 1 ]] || fail "uzramd is not an I/O flusher"
    [[ $mlocked == 1 ]] || fail "uzramd's memory is not locked"
    ((vmlck > 0 && locked > 0)) || fail "uzramd holds no locked memory (VmLck $vmlck kB, Locked $locked kB)"
    [[ $kind == nbd-* ]] || return 0
    # Field 41 of a thread's stat is its policy (2: SCHED_RR); the fields
    # are counted after the ")" that ends the name.
    rr=$(for t in /proc/"$UZRAMD_PID"/task/*/stat; do
        sed 's/.*) //' "$t" | awk '$39 == 2'
    done | wc -l)
    say "threads at SCHED_RR: $rr"
    # The reply sender of the one connection, and the reserve's refill.
    ((rr >= 2)) || fail "$rr uzramd threads run SCHED_RR, not 2: the NBD reply sender or the refill is not realtime"
}

# bounded SECONDS WHAT COMMAND...: run COMMAND, and fail naming WHAT if it
# has not ended within SECONDS, after showing where it waits (its state and
# kernel stack, the swap devices, every blocked task through sysrq-w), so
# that a step stuck in the kernel fails as itself and not as the VM's
# deadline.  A task in uninterruptible sleep cannot be killed: the case
# ends anyway, and the host stops the VM.  Returns COMMAND's status.
bounded() {
    local secs=$1 what=$2 pid i
    shift 2
    "$@" &
    pid=$!
    for ((i = 0; i < secs * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"
            return
        fi
        sleep 0.1
    done
    say "$what: still running after ${secs}s: $*"
    say "state: $(awk '/^State:/ {print $2, $3}' /proc/"$pid"/status 2>/dev/null)"
    cat /proc/"$pid"/stack 2>/dev/null | head -n 20
    cat /proc/swaps
    echo w >/proc/sysrq-trigger 2>/dev/null && dmesg | tail -n 60
    kill -KILL "$pid" 2>/dev/null
    fail "$what did not end within ${secs}s"
}

# The kernel log so far has no hung-task report (the host checks the
# console too; this catches it before the verdict).  The log is read
# whole first: under pipefail, "dmesg | grep -q" fails when grep stops at a
# match before dmesg has written the rest (SIGPIPE).
check_no_hung_task() {
    local log
    log=$(dmesg)
    if grep -q 'blocked for more than' <<<"$log"; then
        grep -A 10 'blocked for more than' <<<"$log" | head -n 30
        fail "the kernel reported a hung task"
    fi
}
