/* SPDX-License-Identifier: MIT */
/*
 * The report: one JSON object (--json), or tables for people.
 *
 * Both print the same figures from the three results; the JSON keys and
 * the table rows are the benchmark's interface and do not change.  Ratios
 * over mem_used count the pool's metadata; those "over pages only" count
 * zspage pages alone, as the kernel's mem_used_total does.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "zspool-bench.h"

/* What the pool should reach on the default corpus. */
#define TARGET_FILL 0.985
#define TARGET_AFTER_COMPACT 0.97
/* Kernel figures, for comparison (doc/zspool.md, "The benchmark"). */
#define KERNEL_COMMIT_BEFORE 0.4298
#define KERNEL_COMMIT_AFTER 0.7903
#define KERNEL_ZRAM_FILL 0.977
#define KERNEL_ZRAM_BEFORE 0.476
#define KERNEL_ZRAM_AFTER 0.953

/* ---- JSON ---------------------------------------------------------------- */

static bool targets_met(const struct result *z)
{
    return ratio(z->t.compr_bytes, (int64_t)z->zs.mem_used_fill) >= TARGET_FILL &&
           ratio(z->t.live_bytes, (int64_t)z->zs.mem_used_after_compact) >= TARGET_AFTER_COMPACT;
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

/* The "consistency_notes" array, without a comma after it. */
static void json_notes_list(const char *notes)
{
    const char *nl;
    bool first = true;

    printf("\"consistency_notes\":[");
    for (; (nl = strchr(notes, '\n')); notes = nl + 1, first = false) {
        char line[512];

        snprintf(line, sizeof line, "%.*s", (int)(nl - notes), notes);
        printf("%s", first ? "" : ",");
        json_string(line);
    }
    printf("]");
}

static void json_notes(const char *notes)
{
    json_notes_list(notes);
    printf(",");
}

/* A pool's figures, each followed by a comma. */
static void json_zs_figures(const struct result *z)
{
    const struct totals *t = &z->t;
    const struct zs_figures *f = &z->zs;

    printf("\"fill_ratio\":%.4f,\"ratio_before_compact\":%.4f,\"ratio_after_compact\":%.4f,",
           ratio(t->compr_bytes, (int64_t)f->mem_used_fill),
           ratio(t->live_bytes, (int64_t)f->mem_used_before_compact),
           ratio(t->live_bytes, (int64_t)f->mem_used_after_compact));
    /* As the kernel's zram counts mem_used_total: zspage pages, no metadata. */
    printf("\"fill_ratio_pages\":%.4f,\"ratio_before_compact_pages\":%.4f,"
           "\"ratio_after_compact_pages\":%.4f,",
           ratio(t->compr_bytes, (int64_t)(f->pages_fill * PAGE_BYTES)),
           ratio(t->live_bytes, (int64_t)(f->pages_before_compact * PAGE_BYTES)),
           ratio(t->live_bytes, (int64_t)(f->pages_after_compact * PAGE_BYTES)));
    printf("\"pages_compacted\":%" PRId64 ",\"stats_pages_compacted\":%" PRIu64
           ",\"pages_net\":%" PRId64 ",\"compact_seconds\":%.4f,\"alloc_ns\":%.1f,"
           "\"write_ns\":%.1f,\"free_ns\":%.1f,",
           f->pages_compacted, f->stats_pages_compacted, f->pages_net, f->compact_seconds,
           f->alloc_ns, f->write_ns, f->free_ns);
    printf("\"mem_used_fill\":%" PRIu64 ",\"mem_used_before_compact\":%" PRIu64
           ",\"mem_used_after_compact\":%" PRIu64 ",\"metadata_bytes\":%" PRIu64
           ",\"metadata_bytes_after_compact\":%" PRIu64 ",",
           f->mem_used_fill, f->mem_used_before_compact, f->mem_used_after_compact,
           f->metadata_fill, f->metadata_after_compact);
    printf("\"rss_fill\":%" PRId64 ",\"rss_before_compact\":%" PRId64 ",\"rss_after_compact\":%"
           PRId64 ",\"rss_after_destroy\":%" PRId64 ",\"verify_errors\":%" PRIu64 ",",
           f->rss_fill, f->rss_before_compact, f->rss_after_compact, f->rss_after_destroy,
           f->verify_errors);
}

static void json_zspool(const struct result *z)
{
    const struct totals *t = &z->t;

    printf("\"objects\":%" PRIu64 ",\"compr_bytes\":%" PRIu64 ",\"raw_pages\":%" PRIu64
           ",\"freed_objects\":%" PRIu64 ",\"live_bytes\":%" PRIu64 ",",
           t->objects, t->compr_bytes, t->raw_pages, t->freed, t->live_bytes);
    json_zs_figures(z);
}

/* "reserve": the pool in reserve mode, under the lazy pool's names; null if not run. */
static void json_reserve(const struct result *v)
{
    const struct rsv_figures *f = &v->rsv;

    printf("\"reserve\":");
    if (!f->target) {
        printf("null,");
        return;
    }
    printf("{");
    json_zs_figures(v);
    printf("\"reserve_target\":%" PRIu64 ",\"reserve_available_fill\":%" PRIu64
           ",\"reserve_available_before_compact\":%" PRIu64
           ",\"reserve_available_after_compact\":%" PRIu64 ",\"reserve_misses\":%" PRIu64
           ",\"reserve_refills\":%" PRIu64 ",\"refill_seconds\":%.4f,",
           f->target, f->avail_fill, f->avail_before_compact, f->avail_after_compact,
           f->misses, f->refills, f->refill_seconds);
    json_notes_list(v->notes);
    printf("},");
}

static void json_malloc(const struct result *m, const struct totals *t)
{
    const struct malloc_figures *f = &m->m;

    printf("\"malloc_fill_ratio\":%.4f,\"malloc_ratio_after_free\":%.4f,"
           "\"malloc_ratio_after_trim\":%.4f,",
           ratio(t->compr_bytes, f->rss_fill), ratio(t->live_bytes, f->rss_after_free),
           ratio(t->live_bytes, f->rss_after_trim));
    printf("\"malloc_rss_fill\":%" PRId64 ",\"malloc_rss_after_free\":%" PRId64
           ",\"malloc_rss_after_trim\":%" PRId64 ",\"malloc_alloc_ns\":%.1f,"
           "\"malloc_write_ns\":%.1f,\"malloc_free_ns\":%.1f,",
           f->rss_fill, f->rss_after_free, f->rss_after_trim, f->alloc_ns, f->write_ns,
           f->free_ns);
}

void print_json(const struct job *job, const struct result *z, const struct result *v,
                const struct result *m)
{
    bool fill_ok = ratio(z->t.compr_bytes, (int64_t)z->zs.mem_used_fill) >= TARGET_FILL;
    bool compact_ok = ratio(z->t.live_bytes, (int64_t)z->zs.mem_used_after_compact) >=
                      TARGET_AFTER_COMPACT;

    printf("{\"corpus\":");
    json_string(job->path);
    printf(",\"corpus_bytes\":%" PRIu64 ",\"pages\":%" PRIu64 ",\"seed\":%" PRIu64 ",",
           job->pages * PAGE_BYTES, job->pages, job->seed);
    json_zspool(z);
    json_malloc(m, &z->t);
    json_reserve(v);
    json_notes(z->notes);
    printf("\"targets\":{\"fill_ratio\":%.3f,\"ratio_after_compact\":%.3f},"
           "\"fill_ratio_met\":%s,\"ratio_after_compact_met\":%s,\"targets_met\":%s,",
           TARGET_FILL, TARGET_AFTER_COMPACT, fill_ok ? "true" : "false",
           compact_ok ? "true" : "false", targets_met(z) ? "true" : "false");
    printf("\"kernel\":{\"compaction_commit_before\":%.4f,\"compaction_commit_after\":%.4f,"
           "\"zram_fill_ratio\":%.3f,\"zram_ratio_before_compact\":%.3f,"
           "\"zram_ratio_after_compact\":%.3f}}\n",
           KERNEL_COMMIT_BEFORE, KERNEL_COMMIT_AFTER, KERNEL_ZRAM_FILL,
           KERNEL_ZRAM_BEFORE, KERNEL_ZRAM_AFTER);
}

/* ---- for people ---------------------------------------------------------- */

/* A row without its end of line; reserve: the reserve column, or < 0 for none. */
static void human_cells(const char *what, uint64_t mem_used, int64_t rss, uint64_t bytes,
                        int64_t reserve)
{
    char mem[32] = "";

    if (mem_used)
        snprintf(mem, sizeof mem, "%9.1f MiB", (double)mem_used / MIB);
    printf("  %-22s %13s %9.1f MiB %9.1f%%", what, mem, (double)rss / MIB,
           100.0 * ratio(bytes, mem_used ? (int64_t)mem_used : rss));
    if (reserve >= 0)
        printf(" %9.1f MiB", (double)reserve / MIB);
}

static void human_row(const char *what, uint64_t mem_used, int64_t rss, uint64_t bytes)
{
    human_cells(what, mem_used, rss, bytes, -1);
    putchar('\n');
}

/* The three phases of a pool: lazy, or with the reserve's column. */
static void human_phases(const struct result *z)
{
    const struct totals *t = &z->t;
    const struct zs_figures *f = &z->zs;
    const struct rsv_figures *v = &z->rsv;
    bool rsv = v->target != 0;

    if (rsv)
        printf("\nlibzspool, reserve mode       mem_used     RSS delta  used ratio"
               "      reserve\n");
    else
        printf("\nlibzspool                     mem_used     RSS delta  used ratio\n");
    human_cells("after filling", f->mem_used_fill, f->rss_fill, t->compr_bytes,
                rsv ? (int64_t)v->avail_fill : -1);
    putchar('\n');
    human_cells("after freeing half", f->mem_used_before_compact, f->rss_before_compact,
                t->live_bytes, rsv ? (int64_t)v->avail_before_compact : -1);
    putchar('\n');
    human_cells("after compaction", f->mem_used_after_compact, f->rss_after_compact,
                t->live_bytes, rsv ? (int64_t)v->avail_after_compact : -1);
    putchar('\n');
}

static void human_zspool(const struct result *z)
{
    const struct totals *t = &z->t;
    const struct zs_figures *f = &z->zs;

    human_phases(z);
    printf("  metadata               %9.1f MiB after filling, %.1f MiB after compaction\n",
           (double)f->metadata_fill / MIB, (double)f->metadata_after_compact / MIB);
    printf("  pages only, as the kernel counts: %.1f%%, %.1f%%, %.1f%%\n",
           100 * ratio(t->compr_bytes, (int64_t)(f->pages_fill * PAGE_BYTES)),
           100 * ratio(t->live_bytes, (int64_t)(f->pages_before_compact * PAGE_BYTES)),
           100 * ratio(t->live_bytes, (int64_t)(f->pages_after_compact * PAGE_BYTES)));
    printf("  compaction             %" PRId64 " pages freed (the pool shrank by %" PRId64
           ") in %.3f s\n", f->pages_compacted, f->pages_net, f->compact_seconds);
    printf("  zs_malloc / zs_write / zs_free   %.1f / %.1f / %.1f ns per object\n",
           f->alloc_ns, f->write_ns, f->free_ns);
    printf("  RSS after zs_destroy   %9.1f MiB; objects read back wrong: %" PRIu64 "\n",
           (double)f->rss_after_destroy / MIB, f->verify_errors);
}

/* The pool in reserve mode, and what the mode costs against the lazy pool z. */
static void human_reserve(const struct result *v, const struct result *z)
{
    const struct rsv_figures *f = &v->rsv;

    if (!f->target) {
        printf("\nlibzspool, reserve mode: not run (--reserve 0)\n");
        return;
    }
    human_zspool(v);
    printf("  reserve                %9.1f MiB target (resident, outside mem_used)\n",
           (double)f->target / MIB);
    printf("  misses / refills       %" PRIu64 " / %" PRIu64 " (refilling took %.3f s)\n",
           f->misses, f->refills, f->refill_seconds);
    printf("  against lazy mode      mem_used %+.1f MiB after filling, %+.1f MiB after"
           " compaction;\n                         RSS %+.1f MiB and %+.1f MiB, the reserve"
           " included\n",
           ((double)v->zs.mem_used_fill - (double)z->zs.mem_used_fill) / MIB,
           ((double)v->zs.mem_used_after_compact - (double)z->zs.mem_used_after_compact) / MIB,
           (double)(v->zs.rss_fill - z->zs.rss_fill) / MIB,
           (double)(v->zs.rss_after_compact - z->zs.rss_after_compact) / MIB);
}

static void human_malloc(const struct result *m, const struct totals *t)
{
    const struct malloc_figures *f = &m->m;

    printf("\nglibc malloc                               RSS delta  used ratio\n");
    human_row("after filling", 0, f->rss_fill, t->compr_bytes);
    human_row("after freeing half", 0, f->rss_after_free, t->live_bytes);
    human_row("after malloc_trim(0)", 0, f->rss_after_trim, t->live_bytes);
    printf("  malloc / memcpy / free           %.1f / %.1f / %.1f ns per object\n",
           f->alloc_ns, f->write_ns, f->free_ns);
}

static void human_notes(const char *title, const char *notes)
{
    const char *nl;

    if (*notes)
        printf("\n%s:\n", title);
    for (; (nl = strchr(notes, '\n')); notes = nl + 1)
        printf("  %.*s\n", (int)(nl - notes), notes);
}

static void human_footer(const struct result *z, const struct result *v)
{
    double fill = ratio(z->t.compr_bytes, (int64_t)z->zs.mem_used_fill);
    double after = ratio(z->t.live_bytes, (int64_t)z->zs.mem_used_after_compact);

    printf("\nkernel, for comparison\n");
    printf("  zsmalloc compaction commit (2015)       %.2f%% -> %.2f%%\n",
           100 * KERNEL_COMMIT_BEFORE, 100 * KERNEL_COMMIT_AFTER);
    printf("  zram on this machine (lz4, 1 GiB)       fill %.1f%%, %.1f%% -> %.1f%%"
           " (pages only)\n",
           100 * KERNEL_ZRAM_FILL, 100 * KERNEL_ZRAM_BEFORE, 100 * KERNEL_ZRAM_AFTER);
    printf("\ntargets: fill >= %.1f%%: %s (%.2f%%); after compaction >= %.1f%%: %s (%.2f%%)\n",
           100 * TARGET_FILL, fill >= TARGET_FILL ? "met" : "NOT met", 100 * fill,
           100 * TARGET_AFTER_COMPACT, after >= TARGET_AFTER_COMPACT ? "met" : "NOT met",
           100 * after);
    printf("targets met: %s\n", targets_met(z) ? "yes" : "no");
    human_notes("consistency problems", z->notes);
    human_notes("consistency problems in reserve mode", v->notes);
}

void print_human(const struct job *job, const struct result *z, const struct result *v,
                 const struct result *m)
{
    const struct totals *t = &z->t;

    printf("corpus     %s: %" PRIu64 " pages (%.1f MiB), seed %" PRIu64 "\n", job->path,
           job->pages, (double)(job->pages * PAGE_BYTES) / MIB, job->seed);
    printf("stored     %" PRIu64 " objects, %.1f MiB (%.1f%% of the corpus); %" PRIu64
           " stored raw (huge class)\n", t->objects,
           (double)t->compr_bytes / MIB,
           100.0 * (double)t->compr_bytes / (double)(job->pages * PAGE_BYTES),
           t->raw_pages);
    printf("freed      %" PRIu64 " objects at random; %.1f MiB live\n", t->freed,
           (double)t->live_bytes / MIB);
    human_zspool(z);
    human_malloc(m, t);
    human_reserve(v, z);
    human_footer(z, v);
}
