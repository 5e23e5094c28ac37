/* SPDX-License-Identifier: MIT */
/*
 * Going to the background, and the pidfile.
 *
 * The ready pipe.  A script that starts uzramd wants to use the device on
 * its next line, so the command must return only once the FUSE file is
 * mounted and answering and the control socket is listening, and must fail
 * with the reason if that cannot be.  The parent therefore forks and waits
 * on a pipe: the child writes one zero byte when everything is ready, or a
 * one byte followed by its error line, and the parent exits 0 or prints the
 * line and exits 1.  If the child dies without a word, the parent reads end
 * of file and says so.  The child forks before any thread exists (store,
 * control and FUSE all start threads), because only the forking thread
 * survives a fork.
 *
 * One fork, then setsid(), is enough: the session leader has no
 * controlling terminal, and the daemon never opens a terminal.
 */
#include "uzramd.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"

#define READY_OK 0
#define READY_FAILED 1

/* The child's end of the ready pipe, -1 in the foreground or once used. */
static int ready_fd = -1;

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;     /* the parent is gone: nobody to tell */
        p += n;
        len -= (size_t)n;
    }
}

static _Noreturn void parent_wait(int fd, pid_t child, const char *note)
{
    char msg[1024];
    size_t len = 0;

    for (;;) {
        ssize_t n = read(fd, msg + len, sizeof(msg) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof(msg) - 1 || msg[0] == READY_OK)
            break;
    }
    if (len > 0 && msg[0] == READY_OK) {
        if (note)
            fprintf(stderr, "uzramd: %s\n", note);
        exit(EXIT_SUCCESS);
    }

    if (len > 1) {
        msg[len] = '\0';
        fprintf(stderr, "uzramd: %s\n", msg + 1);
    } else {
        int status;
        /* It is dead or dying: reap it so that the reason can be told. */
        if (waitpid(child, &status, 0) == child && WIFSIGNALED(status))
            fprintf(stderr, "uzramd: the daemon was killed by signal %d during startup\n",
                    WTERMSIG(status));
        else
            fprintf(stderr, "uzramd: the daemon exited during startup\n");
    }
    exit(EXIT_STARTUP);
}

/*
 * Close every descriptor past stderr but those in keep (ascending, -1s
 * first and ignored): the ready pipe and the log file.
 */
static void close_others(const int *keep, size_t n)
{
    unsigned from = STDERR_FILENO + 1;

    for (size_t i = 0; i < n; i++) {
        if (keep[i] < (int)from)
            continue;
        if ((unsigned)keep[i] > from)
            (void)close_range(from, (unsigned)keep[i] - 1, 0);
        from = (unsigned)keep[i] + 1;
    }
    (void)close_range(from, ~0u, 0);
}

int daemonize(const char *note)
{
    int fds[2];

    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int r = -errno;
        close(fds[0]);
        close(fds[1]);
        return r;
    }
    if (pid > 0) {
        close(fds[1]);
        parent_wait(fds[0], pid, note);
    }

    close(fds[0]);
    ready_fd = fds[1];
    setsid();
    /* Keep no directory busy: the user may want to unmount it. */
    if (chdir("/") < 0)
        return -errno;
    umask(022);

    /*
     * --log stderr keeps stderr as it was given: a supervisor reading it
     * wants the messages (and sees its end only when the daemon exits).
     */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        if (log_target() != LOG_TARGET_STDERR)
            dup2(null, STDERR_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
    /*
     * Descriptors the caller left open without O_CLOEXEC (a shell's, a
     * test harness's pipes) would otherwise stay open as long as the
     * daemon runs, and a pipe would never see its end.  Keep the standard
     * three, the ready pipe and the log file; nothing else is open yet.
     */
    int keep[2] = { ready_fd, log_file_fd() };
    if (keep[0] > keep[1]) {
        keep[0] = keep[1];
        keep[1] = ready_fd;
    }
    close_others(keep, 2);
    return 0;
}

void daemonize_ready(void)
{
    if (ready_fd < 0)
        return;
    char ok = READY_OK;
    write_all(ready_fd, &ok, 1);
    close(ready_fd);
    ready_fd = -1;
}

void daemonize_failed(const char *msg)
{
    if (ready_fd < 0) {
        if (log_target() != LOG_TARGET_STDERR)
            fprintf(stderr, "uzramd: %s\n", msg);
        return;
    }
    char failed = READY_FAILED;
    write_all(ready_fd, &failed, 1);
    write_all(ready_fd, msg, strlen(msg));
    close(ready_fd);
    ready_fd = -1;
}

/* ---- pidfile ------------------------------------------------------------- */

int pidfile_check(const char *path, pid_t *ret_pid)
{
    char buf[32];

    if (read_small_file(path, O_NOFOLLOW, buf, sizeof(buf)) <= 0)
        return 0;
    long pid = strtol(buf, NULL, 10);
    if (pid <= 0 || pid == getpid())
        return 0;
    /* EPERM: alive, but someone else's. */
    if (kill((pid_t)pid, 0) == 0 || errno == EPERM) {
        *ret_pid = (pid_t)pid;
        return -EEXIST;
    }
    return 0;
}

/*
 * The pidfile's directory may be shared (/tmp, /run): the temporary file
 * gets a name nobody can guess and is made with O_EXCL, so that no file
 * planted there beforehand (a symlink, or another user's file that would
 * become the pidfile) is ever opened; rename() then replaces whatever is at
 * path without following it.  The daemon holds a lock on it while it lives,
 * which a recycled pid cannot fake: `flock -n FILE` fails while it does.
 */
int pidfile_write(const char *path)
{
    _cleanup_free_ char *tmp = NULL;
    char line[32];

    if (asprintf(&tmp, "%s.XXXXXX", path) < 0) {
        tmp = NULL;
        return -ENOMEM;
    }
    int len = snprintf(line, sizeof(line), "%ld\n", (long)getpid());

    /* mkostemp(): O_CREAT | O_EXCL, mode 0600. */
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fchmod(fd, 0644) < 0 || write(fd, line, (size_t)len) != len ||
        flock(fd, LOCK_EX | LOCK_NB) < 0 || rename(tmp, path) < 0) {
        int r = errno ? -errno : -EIO;
        unlink(tmp);
        return r;
    }
    return TAKE_FD(fd);
}

void pidfile_remove(const char *path)
{
    pid_t pid = 0;
    char buf[32];

    /* Remove it only if it is still ours: a successor may have written it. */
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    if (n > 0) {
        buf[n] = '\0';
        pid = (pid_t)strtol(buf, NULL, 10);
    }
    if (pid == getpid())
        unlink(path);
}
