/* SPDX-License-Identifier: MIT */
/*
 * Making uzramd safe to swap to.
 *
 * When the kernel swaps a page out to a loop device over uzramd's FUSE
 * file, it is short of memory, and the write it issues can only complete
 * if uzramd runs.  Three things could stop uzramd then:
 *   - its own pages being swapped out or dropped (code, stacks, buffers,
 *     the slot table): reading them back needs memory, possibly via the
 *     very device it serves.  mlockall() keeps them in RAM.  MCL_ONFAULT
 *     locks pages as they are first touched, not at once: the store and
 *     the allocator reserve large ranges of address space that are mostly
 *     never touched, and locking them up front would commit all of it.
 *   - direct reclaim: an allocation in uzramd while memory is short would
 *     make uzramd write pages out, to itself.  PR_SET_IO_FLUSHER (Linux
 *     5.6) makes the kernel treat the process as a block driver's helper:
 *     its allocations do not recurse into I/O (PF_MEMALLOC_NOIO).
 *   - the OOM killer: uzramd's memory is other processes' swapped data,
 *     and killing it loses that data.  oom_score_adj -1000 exempts it;
 *     --mem-limit is what bounds its size.
 * The rest (per-thread codec contexts and buffers, made before serving)
 * is the store's and the FUSE front end's business.
 *
 * One allocation is left that uzramd cannot make in advance: the kernel's
 * socket buffer for each NBD reply, taken inside sendmsg().  As an I/O
 * flusher, that allocation may not start I/O, and the page allocator
 * never calls the OOM killer for such an allocation (mm/oom_kill.c): when
 * free memory sits at the min watermark, the program swapping takes every
 * page reclaim frees, and the reply, the only thing that would let reclaim
 * go on, retries for ever.  A realtime task may go a quarter of the way
 * below the min watermark (gfp_to_alloc_flags() in mm/page_alloc.c), where
 * no ordinary task reaches.  So each connection's reply sender runs
 * SCHED_RR at the lowest realtime priority: it only ever sends, a few
 * microseconds a batch, so it takes no core from anyone.  It needs
 * CAP_SYS_NICE or RLIMIT_RTPRIO; without them the sender stays as it was.
 *
 * Unprivileged, none of this may be allowed: mlockall needs CAP_IPC_LOCK
 * or a large enough RLIMIT_MEMLOCK, and with MCL_FUTURE every later mapping
 * counts against that limit in full (even with MCL_ONFAULT), so the store's
 * reservations would make mmap fail.  uzramd therefore only locks when the
 * limit is unlimited or it runs as root, and otherwise warns.
 */
#include "uzramd.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif
#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif

static int lock_memory(void)
{
    struct rlimit rl;

    if (geteuid() != 0 && (getrlimit(RLIMIT_MEMLOCK, &rl) < 0 || rl.rlim_cur != RLIM_INFINITY))
        return -ENOMEM;
    if (mlockall(MCL_CURRENT) < 0 || mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0)
        return -errno;
    return 0;
}

static int set_oom_score_adj(void)
{
    _cleanup_close_ int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (write(fd, "-1000", 5) != 5)
        return -errno;
    return 0;
}

/* Append "; what (why)" to the list of missing protections. */
static void note(char *buf, size_t cap, const char *what, int err)
{
    size_t len = strlen(buf);

    if (len + 1 < cap)
        snprintf(buf + len, cap - len, "%s%s (%s)", len ? "; " : "", what, strerror(err));
}

void harden(struct hardening *ret)
{
    char missing[512] = "";
    int r;

    *ret = (struct hardening){ 0 };
    r = lock_memory();
    if (r < 0)
        note(missing, sizeof(missing), "memory not locked", -r);
    ret->memory_locked = r == 0;
    if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
        note(missing, sizeof(missing), "not an I/O flusher", errno);
    else
        ret->io_flusher = true;
    r = set_oom_score_adj();
    if (r < 0)
        note(missing, sizeof(missing), "OOM killer not kept off", -r);
    ret->oom_protected = r == 0;
    if (missing[0])
        log_warn("%s: swap on this device may deadlock under memory pressure", missing);
}

/*
 * A refill that waits for a busy core makes writes wait for it too
 * (doc/store.md, "The reserve"): the thread runs at a higher priority than
 * the I/O threads, which is only asked, never required (it needs
 * CAP_SYS_NICE).
 *
 * Over NBD it also asks for the lowest realtime priority, as the reply
 * senders do: the kernel lets a realtime task's page faults go below the
 * min watermark, where the program swapping cannot follow.  At nice -10
 * the refill competed with that program for every page reclaim freed and
 * lost: the reserve stayed empty and every swap write failed for want of
 * it, for 150 s on end in rounds of the VM suite's nbd-pressure case that
 * pass in about 100 s otherwise.  Not with a FUSE file: there a realtime
 * refill hung the fuse-pressure case once (round 5, uzramd and the
 * program blocked for over 120 s; the cause is not established), and at
 * nice -10 that case passes.
 */
#define REFILL_NICE (-10)

void harden_refill_thread(void)
{
    /* Refused only where it was never granted: nothing to undo then. */
    (void)prctl(PR_SET_IO_FLUSHER, 0, 0, 0, 0);
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), REFILL_NICE);
}

/*
 * The background cold pass compresses with zstd for seconds on end; at
 * nice 19 it takes what CPU the I/O threads leave (a weight of 15 against
 * their 1024), so it gives way to requests without a pause of its own.
 */
void harden_cold_thread(void)
{
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
}

void harden_refill_thread_rt(void)
{
    harden_refill_thread();
    harden_reply_thread();
}

void harden_reply_thread(void)
{
    const struct sched_param p = { .sched_priority = 1 };

    /* Refused without CAP_SYS_NICE or RLIMIT_RTPRIO: the sender stays as it was. */
    (void)pthread_setschedparam(pthread_self(), SCHED_RR, &p);
}

/*
 * What counts as a machine short of memory (store_config.low_free): twice
 * vm.min_free_kbytes, about the kernel's high watermark plus what it keeps
 * aside besides; 0 if it cannot be read.  Not more: the reserve goes back
 * to the kernel when the machine is short and no request comes, which
 * happens as a program grows before it swaps (doc/store.md, "The
 * reserve", has what four times did).
 */
uint64_t harden_low_free(void)
{
    char buf[32];

    if (read_small_file("/proc/sys/vm/min_free_kbytes", 0, buf, sizeof(buf)) <= 0)
        return 0;
    unsigned long long kb = strtoull(buf, NULL, 10);
    return (uint64_t)kb * 2 * 1024;
}
