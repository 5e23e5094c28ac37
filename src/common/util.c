/* SPDX-License-Identifier: MIT */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "cleanup.h"

int parse_u64(const char *s, uint64_t *ret)
{
    const char *p = s;
    uint64_t v = 0;

    if (!isdigit((unsigned char)*p))
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    if (*p)
        return -EINVAL;
    *ret = v;
    return 0;
}

int parse_size(const char *s, uint64_t *ret)
{
    static const char suffixes[] = "KMGT";
    char digits[32];
    size_t n = strspn(s, "0123456789");
    const char *p, *end = s + n;
    unsigned shift = 0;
    uint64_t v;
    int r;

    if (n == 0 || n >= sizeof(digits))
        return n == 0 ? -EINVAL : -ERANGE;
    memcpy(digits, s, n);
    digits[n] = '\0';
    r = parse_u64(digits, &v);
    if (r < 0)
        return r;
    if (*end && (p = strchr(suffixes, toupper((unsigned char)*end)))) {
        shift = 10 * (unsigned)(p - suffixes + 1);
        end++;
        if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
            end += strlen(end);
    } else if (strcmp(end, "B") == 0) {
        end++;
    }
    if (*end)
        return -EINVAL;
    if (v > (UINT64_MAX >> shift))
        return -ERANGE;
    *ret = v << shift;
    return 0;
}

void format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char units[] = "BKMGTPE";
    unsigned u = 0;
    uint64_t whole = bytes;

    while (whole >= 1024 && u + 1 < sizeof(units) - 1) {
        whole >>= 10;
        u++;
    }
    if (u == 0) {
        snprintf(buf, len, "%" PRIu64 "B", bytes);
        return;
    }
    /* One decimal, as zramctl prints, dropped when it is zero. */
    uint64_t unit = UINT64_C(1) << (10 * u);
    uint64_t tenths = ((bytes - whole * unit) * 10 + unit / 2) / unit;
    if (tenths >= 10) {
        whole++;
        tenths = 0;
    }
    if (tenths)
        snprintf(buf, len, "%" PRIu64 ".%" PRIu64 "%c", whole, tenths, units[u]);
    else
        snprintf(buf, len, "%" PRIu64 "%c", whole, units[u]);
}

int uzram_run_dir(char *buf, size_t len)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;

    if (geteuid() == 0)
        n = snprintf(buf, len, "%s", UZRAM_ROOT_RUN_DIR);
    else if (xdg && *xdg == '/')
        n = snprintf(buf, len, "%s/uzram", xdg);
    else
        n = snprintf(buf, len, "/tmp/uzram-%u", (unsigned)getuid());
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

char *path_parent(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        return strdup(".");
    return slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
}

int make_parent_dirs(const char *path, mode_t mode)
{
    _cleanup_free_ char *dir = path_parent(path);
    struct stat st;

    if (!dir)
        return -ENOMEM;
    if (strcmp(dir, "/") == 0 || strcmp(dir, ".") == 0)
        return 0;
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(dir, mode) == 0) {
            _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0 || fchmod(fd, mode) < 0)
                return -errno;
        } else if (errno != EEXIST) {
            return -errno;
        } else if (stat(dir, &st) < 0) {
            return -errno;
        } else if (!S_ISDIR(st.st_mode)) {
            return -ENOTDIR;
        }
        *p = c;
        if (!c)
            return 0;
    }
}

int uzram_check_name(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > UZRAM_NAME_MAX || name[0] == '.')
        return -EINVAL;
    if (strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789_.-") != n)
        return -EINVAL;
    return 0;
}

int uzram_control_path(const char *name, char *buf, size_t len)
{
    char dir[256];
    int r, n;

    r = uzram_check_name(name);
    if (r < 0)
        return r;
    r = uzram_run_dir(dir, sizeof(dir));
    if (r < 0)
        return r;
    n = snprintf(buf, len, "%s/%s.sock", dir, name);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

ssize_t read_small_file(const char *path, int flags, char *buf, size_t len)
{
    if (len == 0)
        return -EINVAL;
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, len - 1);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return n;
}

uint64_t machine_free(void)
{
    struct sysinfo si;
    if (sysinfo(&si) != 0)
        return UINT64_MAX;
    return (uint64_t)si.freeram * si.mem_unit;
}

bool machine_short(uint64_t low_free)
{
    return low_free && machine_free() < low_free;
}
