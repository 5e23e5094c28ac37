/* SPDX-License-Identifier: MIT */
/*
 * What the main loop looks at once a period (serve.c): the STATUS= line,
 * the backing store's health, the reserve, and the last resort against a
 * machine out of memory.
 *
 * The libraries do not log; they count.  The backing store's faults are
 * the store's to absorb (a page that cannot go back stays in memory) and
 * the daemon's to report: every STATUS_INTERVAL_MS this file compares the
 * counts with the last look's and logs one line per burst of errors, one
 * when an NBD server becomes unreachable and one when it is back.
 * Comparing counts once a period, rather than logging each error, is what
 * keeps a dead server from flooding the log with one line per page.  The
 * reserve is watched the same way.  These looks run in the background as
 * in the foreground, with or without systemd.
 *
 * Each function here reads the store's and the front ends' statistics and
 * d's record of the last look, and writes only that record: none changes
 * what the device does, except watch_memory(), which may ask the kernel's
 * OOM killer to act.
 */
#include "uzramd.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "nbd-export.h"
#include "store.h"
#include "util.h"

/*
 * The last resort against a machine out of memory whose swap waits on us
 * (see watch_memory()): how long NBD replies must have been stuck, with the
 * reserve all given back, before the kernel's OOM killer is asked to act,
 * how often it may be asked, and what the kernel must call a stall.
 */
#define OOM_STALL_MS 3000
#define OOM_AGAIN_MS 10000
#define PSI_FULL_US 200000
#define PSI_WINDOW_US 1000000
/*
 * The second sign (see reserve_starved()): how long writes must have kept
 * failing for want of reserve before the OOM killer is asked, and the
 * pause in failures that ends a stretch.  Rounds of the VM suite's
 * nbd-pressure case that went on to pass went through stretches of 30 s
 * and 120 s of failing writes, with the refill at nice -10; STARVE_MS is
 * longer than those.
 */
#define STARVE_MS 150000
#define STARVE_PAUSE_MS 3000
/*
 * The third sign (see requests_silent()): how long no request may have
 * come.  Longer than OOM_STALL_MS: a silence is a weaker sign than a reply
 * that cannot be sent, and a round of fuse-pressure the sign ends fails
 * as surely as one that hangs (5 s ended one in a trial, with the machine
 * counted short at four times vm.min_free_kbytes).
 */
#define SILENT_MS 10000

/* A PSI trigger on full memory stalls (see watch_memory()), or -1. */
static int psi_trigger(void)
{
    char spec[64];
    int fd = open("/proc/pressure/memory", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int n = snprintf(spec, sizeof(spec), "full %d %d", PSI_FULL_US, PSI_WINDOW_US);
    if (write(fd, spec, (size_t)n + 1) != n + 1) {
        close(fd);
        return -1;
    }
    return fd;
}

void watch_memory_open(struct daemon *d)
{
    /* Root only, and only worth it with a reserve. */
    if (!d->opt.reserve || geteuid() != 0)
        return;
    d->sysrq_fd = open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC);
    /* Without it the first sign cannot be told; the second still can. */
    d->psi_fd = psi_trigger();
}

/*
 * The STATUS= line: what the device is, then what it holds.  For
 * `systemctl status`; uzramctl has the full figures.
 */
void watch_status(struct daemon *d)
{
    struct store_stats st;
    char size[16], data[16], compr[16], mem[16], wb[48] = "";

    if (!notify_enabled())
        return;
    store_get_stats(d->store, &st);
    format_size(d->opt.size, size, sizeof(size));
    format_size(st.orig_data_size, data, sizeof(data));
    format_size(st.compr_data_size, compr, sizeof(compr));
    format_size(st.mem_used_total, mem, sizeof(mem));
    if (d->backing) {
        char b[16];
        format_size(st.bd_count * STORE_PAGE_SIZE, b, sizeof(b));
        snprintf(wb, sizeof(wb), ", written back %s%s", b, st.bd_connected ? "" : " (unreachable)");
    }
    notifyf("STATUS=%s: %s %s%s%s%s%s; data %s, compressed %s, memory %s%s", d->opt.name, size,
            codec_name(d->opt.codec), d->opt.fuse_file ? ", fuse " : "",
            d->opt.fuse_file ? d->opt.fuse_file : "", d->nbd_address ? ", nbd " : "",
            d->nbd_address ? d->nbd_address : "", data, compr, mem, wb);
}

static const char *errno_text(int neg)
{
    return neg ? strerror(-neg) : "unknown error";
}

/*
 * Once a period: one line if the backing store failed since the last look,
 * one when it went away, one when it came back: counts compared once a
 * period, not a line per error (the top of this file; uzramd(8), EVICTION,
 * has what the user sees).
 */
void watch_backing(struct daemon *d)
{
    struct store_stats st;

    if (!d->backing)
        return;
    store_get_stats(d->store, &st);
    if (st.bd_connected != d->bd_connected) {
        if (st.bd_connected)
            log_info("backing store %s: reachable again", d->opt.backing);
        else
            log_err("backing store %s: unreachable (%s); pages stay in memory, reads of "
                    "pages written back fail until it returns", d->opt.backing,
                    errno_text(st.bd_last_error));
        d->bd_connected = st.bd_connected;
    }
    if (st.bd_write_errors > d->bd_write_errors || st.bd_read_errors > d->bd_read_errors)
        log_err("backing store %s: %llu write errors, %llu read errors in the last %d s "
                "(last: %s)", d->opt.backing,
                (unsigned long long)(st.bd_write_errors - d->bd_write_errors),
                (unsigned long long)(st.bd_read_errors - d->bd_read_errors),
                STATUS_INTERVAL_MS / 1000, errno_text(st.bd_last_error));
    d->bd_write_errors = st.bd_write_errors;
    d->bd_read_errors = st.bd_read_errors;
}

void watch_limit(struct daemon *d, const char *when)
{
    struct store_stats st;
    char limit[16], held[16];

    if (!d->opt.mem_limit)
        return;
    store_get_stats(d->store, &st);
    if (st.mem_used_total < d->opt.mem_limit)
        return;
    format_size(d->opt.mem_limit, limit, sizeof(limit));
    format_size(st.mem_used_total, held, sizeof(held));
    log_warn("%smem-limit %s is not above what the device holds now (%s%s): every write "
             "that needs memory fails with ENOSPC%s",
             when, limit, held, st.orig_data_size ? "" : ", before any data: its metadata",
             d->backing ? " or waits for eviction" : "");
}

/*
 * Say when memory was short enough for the reserve to run dry (writes
 * failed, as zram's fail) or to be given back to the kernel, once per look
 * (STATUS_INTERVAL_MS), with the counts since the last.
 */
void watch_reserve(struct daemon *d)
{
    struct store_stats st;

    store_get_stats(d->store, &st);
    if (st.reserve_misses > d->reserve_misses || st.reserve_released > d->reserve_released)
        log_warn("memory short: %llu writes failed for want of reserve, %llu KiB of it given "
                 "back to the kernel, in the last %d s (see uzramd(8), SWAP)",
                 (unsigned long long)(st.reserve_misses - d->reserve_misses),
                 (unsigned long long)(st.reserve_released - d->reserve_released) / 1024,
                 STATUS_INTERVAL_MS / 1000);
    d->reserve_misses = st.reserve_misses;
    d->reserve_released = st.reserve_released;
}

/*
 * The first sign: NBD replies stuck OOM_STALL_MS (the kernel cannot find
 * the memory to send them), with the reserve all given back, the only
 * memory the daemon could add, while the kernel says the machine is
 * stalling on memory (a PSI trigger: every runnable task waiting for
 * memory PSI_FULL_US in PSI_WINDOW_US).  How long they have been stuck,
 * in ms, or 0.
 */
static uint64_t replies_stuck(struct daemon *d, const struct store_stats *st, uint64_t now)
{
    struct nbd_export_stats ns;

    if (!d->nbd || d->psi_fd < 0)
        return 0;
    nbd_export_get_stats(d->nbd, &ns);
    if (ns.send_stall_ms < OOM_STALL_MS)
        return 0;
    if (!d->psi_full_usec || now - d->psi_full_usec > 2 * PSI_WINDOW_US)
        return 0;
    return st->reserve_free == 0 ? ns.send_stall_ms : 0;
}

/*
 * The second sign: replies flow, but say ENOSPC.  Writes have failed for
 * want of reserve in every look for STARVE_MS (a pause of STARVE_PAUSE_MS
 * without a failure ends the stretch; refills in between do not, as they
 * can get a little memory now and then while the loop goes on), and the
 * machine's free memory is under d->low_free now, so the refill is short
 * of the machine's memory, not of a cgroup's.  The kernel keeps each page
 * whose swap write failed and tries again; it never calls the OOM killer
 * in that loop (uzramd(8), SWAP).
 */
static bool reserve_starved(struct daemon *d, const struct store_stats *st, uint64_t now)
{
    if (st->reserve_misses != d->starve_misses) {
        d->starve_misses = st->reserve_misses;
        if (!d->starve_since_usec || now - d->starve_last_usec >= STARVE_PAUSE_MS * 1000u)
            d->starve_since_usec = now;
        d->starve_last_usec = now;
    }
    if (!d->starve_since_usec || now - d->starve_last_usec >= STARVE_PAUSE_MS * 1000u)
        return false;
    if (now - d->starve_since_usec < STARVE_MS * 1000u)
        return false;
    return machine_short(d->low_free);
}

/*
 * The third sign: the kernel stopped sending requests.  Requests came,
 * then none of any kind for SILENT_MS, during which the kernel said at
 * every look that all tasks were stalling on memory.  The reserve is not
 * asked to be given back first: the machine may not count as short by
 * sysinfo() (the kernel boosts its watermarks after fragmentation), and
 * pages given back then go to the program and the refill, which wait in
 * reclaim too (doc/store.md, "The reserve").  Seen in the VM suite over FUSE (fuse-oom): the loop
 * device's worker waits in the allocator for the few bytes of a FUSE
 * request; the program and uzramd's refill wait in reclaim for a bio, and
 * every bio is queued behind that worker.  None of those allocations may
 * call the OOM killer, so the machine hangs until one is asked for.  A
 * device that was idle, or a stall that pauses, starts nothing.  How long
 * the silence has lasted, in ms, or 0.
 */
static uint64_t requests_silent(struct daemon *d, uint64_t now)
{
    uint64_t reqs = store_requests_begun(d->store);
    bool stalling = d->psi_full_usec && now - d->psi_full_usec <= 2 * PSI_WINDOW_US;

    if (reqs != d->silent_reqs) {
        /* Requests flow: a silence would count from this look. */
        d->silent_reqs = reqs;
        d->silent_since_usec = now;
        return 0;
    }
    if (!stalling)
        d->silent_since_usec = 0;
    if (!d->silent_since_usec || now - d->silent_since_usec < SILENT_MS * 1000u)
        return 0;
    return (now - d->silent_since_usec) / 1000;
}

/*
 * The last resort (uzramd(8), SWAP).  When swap on this device waits on
 * uzramd and uzramd waits for memory, nothing will move until something
 * is killed, and the kernel will not decide it alone (the allocations
 * waiting may not do I/O, or the swap writes they wait for fail and are
 * retried).  On any sign above, ask it to, as SysRq-F does: it kills the
 * process with the highest OOM score, never this one (oom_score_adj
 * -1000).  At most once per OOM_AGAIN_MS; logged.
 */
void watch_memory(struct daemon *d)
{
    struct store_stats st;

    if (d->sysrq_fd < 0)
        return;
    uint64_t now = monotonic_usec();
    store_get_stats(d->store, &st);
    bool starved = reserve_starved(d, &st, now);
    uint64_t silent_ms = requests_silent(d, now);
    uint64_t stuck_ms = starved ? 0 : replies_stuck(d, &st, now);
    if (!starved && !stuck_ms && !silent_ms)
        return;
    if (d->oom_asked_usec && now - d->oom_asked_usec < OOM_AGAIN_MS * 1000u)
        return;
    d->oom_asked_usec = now;
    d->starve_since_usec = 0;
    if (write(d->sysrq_fd, "f", 1) != 1)
        return;
    if (starved)
        log_err("memory exhausted: swap writes failed for want of reserve for %d s on end; "
                "asked the kernel's OOM killer to act (see uzramd(8), SWAP)",
                STARVE_MS / 1000);
    else if (!stuck_ms)
        log_err("memory exhausted: no request for %llu ms while every task stalls on memory; "
                "asked the kernel's OOM killer to act (see uzramd(8), SWAP)",
                (unsigned long long)silent_ms);
    else
        log_err(
            "memory exhausted: NBD replies stuck for %llu ms with the reserve given back; "
            "asked the kernel's OOM killer to act (see uzramd(8), SWAP)",
            (unsigned long long)stuck_ms);
}
