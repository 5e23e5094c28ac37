/* SPDX-License-Identifier: MIT */
/*
 * The corpus: a file given with --corpus, or the default one, generated
 * once with tar and cached ($UZRAM_CORPUS or DEFAULT_CORPUS).
 *
 * A cached copy is used only if it has exactly DEFAULT_CORPUS_BYTES; a new
 * one is written under a temporary name and renamed into place, so an
 * interrupted run leaves no short corpus behind.  The generating script
 * writes nothing on stdout, which belongs to the report.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zspool-bench.h"

static int generate_corpus(const char *path, struct err *e)
{
    static const char script[] =
        "tar -cf - " CORPUS_SOURCES " 2>/dev/null | head -c \"$1\" > \"$2\" && mv \"$2\" \"$3\"";
    char bytes[32], tmp[4200];
    pid_t pid;
    int r;

    fprintf(stderr, "zspool-bench: generating the corpus %s (the first %" PRIu64
            " MiB of a tar of " CORPUS_SOURCES "); it is cached for later runs\n",
            path, DEFAULT_CORPUS_BYTES >> 20);
    snprintf(bytes, sizeof bytes, "%" PRIu64, DEFAULT_CORPUS_BYTES);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    fflush(stderr);
    pid = fork();
    if (pid < 0)
        return set_err(e, neg_errno(), "fork");
    if (pid == 0) {
        /* stdout is the JSON's: the script must not write there. */
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execl("/bin/sh", "sh", "-c", script, "sh", bytes, tmp, path, (char *)NULL);
        _exit(127);
    }
    r = child_status(pid, "generating the corpus", e);
    if (r < 0)
        unlink(tmp);
    return r;
}

/* The default corpus, generated unless a cached copy of the right size exists. */
static int default_corpus(struct job *job, struct err *e)
{
    const char *path = getenv("UZRAM_CORPUS");
    struct stat st;

    if (!path || !*path)
        path = DEFAULT_CORPUS;
    if (strlen(path) >= sizeof job->path)
        return set_err(e, -ENAMETOOLONG, "UZRAM_CORPUS");
    strcpy(job->path, path);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        (uint64_t)st.st_size == DEFAULT_CORPUS_BYTES)
        return 0;
    return generate_corpus(path, e);
}

static int corpus_path(const struct opts *o, struct job *job, struct err *e)
{
    if (!o->corpus)
        return default_corpus(job, e);
    if (strlen(o->corpus) >= sizeof job->path)
        return set_err(e, -ENAMETOOLONG, "%s", o->corpus);
    strcpy(job->path, o->corpus);
    return 0;
}

int open_corpus(const struct opts *o, struct job *job, struct err *e)
{
    struct stat st;
    uint64_t bytes;
    int r;

    r = corpus_path(o, job, e);
    if (r < 0)
        return r;
    job->fd = open(job->path, O_RDONLY | O_CLOEXEC);
    if (job->fd < 0 || fstat(job->fd, &st) < 0)
        return set_err(e, neg_errno(), "%s", job->path);
    if (!S_ISREG(st.st_mode))
        return set_err_msg(e, -EINVAL, "%s: not a regular file", job->path);
    bytes = (uint64_t)st.st_size;
    if (!o->corpus && bytes < DEFAULT_CORPUS_BYTES)
        fprintf(stderr, "zspool-bench: warning: the corpus %s holds only %" PRIu64
                " bytes; it will be generated again next time\n", job->path, bytes);
    if (o->size_given && o->size > bytes)
        fprintf(stderr, "zspool-bench: %s holds only %" PRIu64 " bytes; using all of it\n",
                job->path, bytes);
    bytes = o->size < bytes ? o->size : bytes;
    job->pages = bytes / PAGE_BYTES;
    if (job->pages == 0)
        return set_err_msg(e, -EINVAL, "%s: less than one 4 KiB page to use", job->path);
    if (job->pages > UINT32_MAX)
        return set_err_msg(e, -EFBIG, "%s: more than 2^32 pages", job->path);
    return 0;
}
