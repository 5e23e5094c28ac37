/* SPDX-License-Identifier: MIT */
/*
 * Devices: from a DEVICE argument to a daemon that has agreed to speak our
 * protocol.  A DEVICE is a name (its socket is then RUN_DIR/NAME.sock) or
 * the socket's path (anything with a '/').  Every exchange starts with
 * "hello 1", so that a daemon of another protocol version is refused with a
 * clear message rather than misread; every socket carries a send and
 * receive timeout, so that a hung daemon cannot hang its caller.  Errors are
 * reported here, once, in words a user can act on.
 */
#include "uzramctl.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *run_dir_opt;   /* --dir */

void device_set_run_dir(const char *dir)
{
    run_dir_opt = dir;
}

bool device_run_dir_given(void)
{
    return run_dir_opt != NULL;
}

int device_run_dir(char *buf, size_t len)
{
    if (run_dir_opt) {
        int n = snprintf(buf, len, "%s", run_dir_opt);
        return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
    }
    return uzram_run_dir(buf, len);
}

/*
 * DEVICE's control socket into buf: the path itself (anything holding a
 * '/'), or NAME.sock in the run directory.  0, -EINVAL for a bad name, or
 * -ENAMETOOLONG.
 */
static int socket_path(const char *arg, char *buf, size_t len)
{
    int n;

    if (strchr(arg, '/'))
        n = snprintf(buf, len, "%s", arg);
    else if (uzram_check_name(arg) < 0)
        return -EINVAL;
    else if (run_dir_opt)
        n = snprintf(buf, len, "%s/%s.sock", run_dir_opt, arg);
    else
        return uzram_control_path(arg, buf, len);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

bool device_socket_exists(const char *arg)
{
    char path[sizeof(((struct device *)0)->path)];
    struct stat st;

    return socket_path(arg, path, sizeof(path)) == 0 && stat(path, &st) == 0 &&
           S_ISSOCK(st.st_mode);
}

void device_resolve(struct device *d, const char *arg)
{
    int r = socket_path(arg, d->path, sizeof(d->path));

    d->arg = arg;
    d->fd = -1;
    snprintf(d->name, sizeof(d->name), "%s", arg);
    if (strchr(arg, '/')) {
        if (r < 0)
            die_usage("socket path too long: '%s'", arg);
        /* Until the daemon tells its name: the file name less ".sock". */
        const char *base = strrchr(arg, '/') + 1;
        size_t n = strlen(base);
        if (n > 5 && strcmp(base + n - 5, ".sock") == 0)
            n -= 5;
        snprintf(d->name, sizeof(d->name), "%.*s", (int)n, base);
        return;
    }
    if (r == -EINVAL)
        die_usage("bad device name '%s'", arg);
    if (r < 0)
        die_usage("device name '%s': %s", arg, strerror(-r));
}

/*
 * The control socket refused us: say whose it is and which group lets a
 * user in, so that the fix (a group membership, or root) is plain; the
 * daemon sets the group with --control-group or --admin-group (uzramd(8),
 * SECURITY).
 */
static void access_denied(const struct device *d)
{
    struct stat st;

    if (stat(d->path, &st) < 0) {
        warn("%s: connect: %s", d->arg, strerror(EACCES));
        return;
    }
    struct group *g = getgrgid(st.st_gid);
    struct passwd *pw = getpwuid(st.st_uid);
    char gname[64], uname[64];
    if (g)
        snprintf(gname, sizeof(gname), "%s", g->gr_name);
    else
        snprintf(gname, sizeof(gname), "%u", (unsigned)st.st_gid);
    if (pw)
        snprintf(uname, sizeof(uname), "%s", pw->pw_name);
    else
        snprintf(uname, sizeof(uname), "%u", (unsigned)st.st_uid);
    /* "root" alone when root owns it, as a system daemon's socket. */
    char who[80];
    snprintf(who, sizeof(who), st.st_uid == 0 ? "root" : "root, %s", uname);
    if (st.st_mode & S_IRWXG)
        warn("%s: connect: %s: %s is %s's, for group %s: only %s and members of %s may use "
             "it (its members only to watch, unless uzramd's --admin-group is also %s)",
             d->arg, strerror(EACCES), d->path, uname, gname, who, gname, gname);
    else
        warn("%s: connect: %s: %s is %s's, and no group may use it: only %s may (uzramd "
             "--control-group GROUP lets a group watch)",
             d->arg, strerror(EACCES), d->path, uname, who);
}

void device_error(const struct device *d, const char *what, int err)
{
    switch (err) {
    case ENOENT:
    case ECONNREFUSED:
        warn("%s: no such device (no daemon at %s)", d->arg, d->path);
        break;
    case ETIMEDOUT:
        warn("%s: %s: the daemon did not answer within %u s", d->arg, what, d->timeout);
        break;
    case ECONNRESET:
    case EPIPE:
        warn("%s: %s: the daemon closed the connection", d->arg, what);
        break;
    case EPROTO:
        warn("%s: %s: the daemon's answer makes no sense to this uzramctl", d->arg, what);
        break;
    case EACCES:
    case EPERM:
        if (strcmp(what, "connect") == 0) {
            access_denied(d);
            break;
        }
        __attribute__((fallthrough));
    default:
        warn("%s: %s: %s", d->arg, what, strerror(err));
    }
}

int device_call(struct device *d, const char *req, const char *what, struct uz_reply *r)
{
    return device_call_tick(d, req, what, r, NULL, NULL);
}

int device_call_tick(struct device *d, const char *req, const char *what, struct uz_reply *r,
                     void (*tick)(void *arg), void *arg)
{
    int e = uz_request_tick(d->fd, req, r, TICK_MS, tick, arg);

    if (e < 0) {
        device_error(d, what, -e);
        return -1;
    }
    if (!r->ok) {
        if (*r->msg)
            warn("%s: %s: %s (%s)", d->arg, what, strerror(r->err), r->msg);
        else
            warn("%s: %s: %s", d->arg, what, strerror(r->err));
        return -1;
    }
    return 0;
}

int device_open(struct device *d, unsigned timeout, bool quiet_missing)
{
    struct uz_reply *r = malloc(sizeof(*r));
    uint64_t proto;
    int fd;

    if (!r) {
        warn("%s: %s", d->arg, strerror(ENOMEM));
        return -ENOMEM;
    }
    d->timeout = timeout;
    fd = uz_connect(d->path, timeout);
    if (fd < 0) {
        if (!(quiet_missing && device_missing(fd)))
            device_error(d, "connect", -fd);
        free(r);
        return fd;
    }
    d->fd = fd;
    const char *verb = proto_verb_name(PROTO_HELLO);
    char hello[32];
    snprintf(hello, sizeof(hello), "%s %d", verb, PROTO_VERSION);
    int e = uz_request(fd, hello, r);
    if (e < 0) {
        device_error(d, verb, -e);
    } else if (!r->ok) {
        /* Refused at accept: the daemon's line says who may connect. */
        if (r->err == EACCES)
            warn("%s: connect: %s (%s)", d->arg, strerror(r->err), r->msg);
        else if (r->err == EPROTONOSUPPORT)
            warn("%s: the daemon does not speak protocol %d (%s)", d->arg, PROTO_VERSION, r->msg);
        else
            warn("%s: %s: %s (%s)", d->arg, verb, strerror(r->err), r->msg);
        e = -EPROTO;
    } else if (uz_get_u64(r, "protocol", &proto) < 0 || proto != PROTO_VERSION) {
        warn("%s: the daemon answered with another protocol than %d", d->arg, PROTO_VERSION);
        e = -EPROTO;
    } else {
        const char *name = uz_get(r, "name");
        if (name && *name)
            snprintf(d->name, sizeof(d->name), "%s", name);
    }
    free(r);
    if (e < 0) {
        close(fd);
        d->fd = -1;
    }
    return e;
}

bool device_missing(int e)
{
    return e == -ENOENT || e == -ECONNREFUSED || e == -ENOTSOCK;
}

void device_close(struct device *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
}
