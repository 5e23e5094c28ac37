/* SPDX-License-Identifier: MIT */
/*
 * Reload.  SIGHUP parses the same command line again, which re-reads the
 * --config file, and applies what can change while serving: the memory
 * limit, the compaction threshold, the eviction watermarks and the cold
 * tier's cold-after.  Anything
 * else that changed is named in a warning and waits for a restart (the
 * size, the codec, the front ends: changing those would mean a new
 * device).  A file that no longer parses changes nothing.
 *
 * A log file is opened again first, whether or not there is a file to
 * re-read: a rotation that moves the file (logrotate without copytruncate)
 * sends SIGHUP for that.  Where the log goes is a restart's to change.
 *
 * The rules: a setting is applied through the store's setter, and d->opt
 * takes the new value only once the store accepted it, so that d->opt
 * always says what is in force.  The service manager hears RELOADING=1
 * first and READY=1 last, whatever happened in between.
 */
#include "uzramd.h"

#include <string.h>

#include "store.h"
#include "util.h"

static bool str_differ(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

/* Name each setting in n that differs from the running one and needs a restart. */
static void warn_restart(const struct options *o, const struct options *n)
{
    const struct {
        const char *key;
        bool changed;
    } keys[] = {
        { "name", strcmp(o->name, n->name) != 0 },
        { "size", o->size != n->size },
        { "algorithm", o->codec != n->codec },
        { "level", o->level != n->level },
        { "fuse", str_differ(o->fuse_file, n->fuse_file) },
        { "nbd-unix", str_differ(o->nbd_unix, n->nbd_unix) },
        { "nbd-tcp", str_differ(o->nbd_tcp_host, n->nbd_tcp_host) ||
                         o->nbd_tcp_port != n->nbd_tcp_port },
        { "read-only", o->read_only != n->read_only },
        { "max-connections", o->max_connections != n->max_connections },
        { "handshake-timeout", o->handshake_timeout != n->handshake_timeout },
        { "send-timeout", o->send_timeout != n->send_timeout ||
                              o->send_timeout_given != n->send_timeout_given },
        { "idle-timeout", o->idle_timeout != n->idle_timeout },
        { "tls", o->tls != n->tls || o->tls_given != n->tls_given },
        { "tls-psk", str_differ(o->tls_psk, n->tls_psk) },
        { "tls-certificates", str_differ(o->tls_certificates, n->tls_certificates) },
        { "threads", o->threads != n->threads },
        { "control-group", o->gid != n->gid },
        { "admin-group", o->admin_gid != n->admin_gid },
        { "nbd-group", o->nbd_gid != n->nbd_gid },
        { "control", str_differ(o->control_path, n->control_path) },
        { "backing", str_differ(o->backing, n->backing) },
        { "backing-format", o->backing_raw != n->backing_raw },
        { "backing-timeout", o->backing_timeout != n->backing_timeout },
        { "evict-policy", o->evict_policy != n->evict_policy },
        { "recompress-algorithm", o->recomp_codec != n->recomp_codec },
        { "recompress-level", o->recomp_level != n->recomp_level },
        { "cold-algorithm", o->cold_codec != n->cold_codec },
        { "cold-level", o->cold_level != n->cold_level },
        { "log", str_differ(o->log, n->log) },
    };

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (keys[i].changed)
            log_warn("reload: %s changed: it takes effect when the device is restarted",
                     keys[i].key);
}

void reload(struct daemon *d)
{
    struct options n;
    char from[16], to[16];
    int r;

    notifyf("RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)monotonic_usec());
    r = log_reopen();
    if (r < 0)
        log_err("reload: %s: cannot open the log again (%s): still writing to the old file",
                log_where(), strerror(-r));
    if (!d->opt.config_file) {
        log_info("SIGHUP: no --config file to re-read; nothing changed");
        goto done;
    }
    r = options_parse(d->argc, d->argv, &n);
    if (r != 0) {
        log_err("reload: %s: the running settings stay", d->opt.config_file);
        options_free(&n);
        goto done;
    }
    bool changed = false;
    if (n.mem_limit != d->opt.mem_limit) {
        r = store_set_mem_limit(d->store, n.mem_limit);
        format_size(d->opt.mem_limit, from, sizeof(from));
        format_size(n.mem_limit, to, sizeof(to));
        if (r < 0) {
            log_err("reload: mem-limit %s: %s", to, strerror(-r));
        } else {
            log_info("reload: mem-limit %s -> %s", d->opt.mem_limit ? from : "none",
                     n.mem_limit ? to : "none");
            d->opt.mem_limit = n.mem_limit;
            changed = true;
            watch_limit(d, "reload: ");
        }
    }
    if (n.compact_threshold_pct != d->opt.compact_threshold_pct) {
        r = store_set_compact_threshold(d->store, n.compact_threshold_pct);
        if (r < 0) {
            log_err("reload: compact-threshold %u: %s", n.compact_threshold_pct, strerror(-r));
        } else {
            log_info("reload: compact-threshold %u%% -> %u%%", d->opt.compact_threshold_pct,
                     n.compact_threshold_pct);
            d->opt.compact_threshold_pct = n.compact_threshold_pct;
            changed = true;
        }
    }
    if (n.high_wm_pct != d->opt.high_wm_pct || n.low_wm_pct != d->opt.low_wm_pct) {
        r = store_set_watermarks(d->store, n.high_wm_pct, n.low_wm_pct);
        if (r < 0) {
            log_err("reload: watermarks %u%%/%u%%: %s", n.high_wm_pct, n.low_wm_pct,
                    strerror(-r));
        } else {
            log_info("reload: watermarks %u%%/%u%% -> %u%%/%u%%", d->opt.high_wm_pct,
                     d->opt.low_wm_pct, n.high_wm_pct, n.low_wm_pct);
            d->opt.high_wm_pct = n.high_wm_pct;
            d->opt.low_wm_pct = n.low_wm_pct;
            changed = true;
        }
    }
    if (n.cold_after != d->opt.cold_after) {
        r = store_set_cold_after(d->store, n.cold_after);
        if (r < 0) {
            log_err("reload: cold-after %u: %s", n.cold_after, strerror(-r));
        } else {
            log_info("reload: cold-after %us -> %us", d->opt.cold_after, n.cold_after);
            d->opt.cold_after = n.cold_after;
            changed = true;
        }
    }
    warn_restart(&d->opt, &n);
    if (!changed)
        log_info("reload: %s: nothing to change now", d->opt.config_file);
    options_free(&n);
done:
    notify("READY=1");
    watch_status(d);
}
