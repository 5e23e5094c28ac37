/* SPDX-License-Identifier: MIT */
/*
 * Running an experiment in a child process of its own.
 *
 * Each experiment runs in a fork()ed child that takes its own RSS
 * baseline and writes its struct result back through a pipe, so that no
 * experiment's memory is in another's figures.  The parent waits for the
 * child and turns a signal or a non-zero exit into an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zspool-bench.h"

static void child_main(experiment_fn fn, const struct job *job, int fd)
{
    static struct result r;

    r.err.code = fn(job, &r);
    _exit(write_full(fd, &r, sizeof r) < 0 ? 1 : 0);
}

/* Wait for a child; what names it in the error ("the zspool experiment"). */
int child_status(pid_t pid, const char *what, struct err *e)
{
    int status;

    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return set_err(e, neg_errno(), "waitpid");
    if (WIFSIGNALED(status))
        return set_err_msg(e, -ECHILD, "%s was killed by signal %d (%s)",
                       what, WTERMSIG(status), strsignal(WTERMSIG(status)));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return set_err_msg(e, -ECHILD, "%s exited with status %d", what, WEXITSTATUS(status));
    return 0;
}

int run_child(experiment_fn fn, const char *what, const struct job *job,
              struct result *ret, struct err *e)
{
    int fds[2], r;
    ssize_t n;
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) < 0)
        return set_err(e, neg_errno(), "pipe");
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        r = neg_errno();
        close(fds[0]);
        close(fds[1]);
        return set_err(e, r, "fork");
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(fn, job, fds[1]);
    }
    close(fds[1]);
    n = read_full(fds[0], ret, sizeof *ret);
    close(fds[0]);
    r = child_status(pid, what, e);
    if (r < 0)
        return r;
    if (n != (ssize_t)sizeof *ret)
        return set_err(e, n < 0 ? (int)n : -EPIPE, "reading the report of %s", what);
    if (ret->err.code < 0) {
        *e = ret->err;
        return e->code;
    }
    return 0;
}
