/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by the daemon, uzramctl and the tools: parsing the
 * numbers and sizes users type, and where a device's control socket lives.
 * Nothing here logs; every function returns 0 or a negative errno.
 */
#ifndef UZRAM_UTIL_H
#define UZRAM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The value of one hexadecimal digit, either case; -1 for any other character. */
static inline int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Parse an unsigned decimal integer (no sign, no spaces, nothing after it)
 * into *ret.  -EINVAL for anything else, -ERANGE past UINT64_MAX.
 */
int parse_u64(const char *s, uint64_t *ret) __attribute__((nonnull));

/*
 * Parse a size in bytes with an optional binary suffix: K, M, G or T
 * (case-insensitive), optionally followed by "iB" or "B": "4096", "1G",
 * "512MiB".  -EINVAL for anything else, -ERANGE when it does not fit in
 * 64 bits.
 */
int parse_size(const char *s, uint64_t *ret) __attribute__((nonnull));

/*
 * The start of a small text file (a pidfile, a /proc or /sys knob) into buf
 * as a string: at most len - 1 bytes, opened with O_RDONLY | O_CLOEXEC and
 * the extra open flags given (O_NOFOLLOW, say).  The bytes read, or a
 * negative errno; 0 for an empty file.
 */
ssize_t read_small_file(const char *path, int flags, char *buf, size_t len)
    __attribute__((nonnull));

/*
 * Free memory on the machine in bytes, from sysinfo(2): no allocation and
 * no file, so it may be asked when memory is short.  UINT64_MAX if the
 * kernel will not say.
 */
uint64_t machine_free(void);
/* The machine is short of memory: machine_free() under low_free (0: never). */
bool machine_short(uint64_t low_free);

/*
 * Format bytes as zramctl does for humans ("1G", "146.7M", "512B") into
 * buf of len bytes.  Always NUL-terminates.
 */
void format_size(uint64_t bytes, char *buf, size_t len) __attribute__((nonnull));

/*
 * The directory where daemons put their control sockets: /run/uzram as
 * root, $XDG_RUNTIME_DIR/uzram otherwise (or /tmp/uzram-UID when
 * XDG_RUNTIME_DIR is unset).  Writes at most len bytes including the NUL;
 * -ENAMETOOLONG if it does not fit.
 */
#define UZRAM_ROOT_RUN_DIR "/run/uzram"
int uzram_run_dir(char *buf, size_t len) __attribute__((nonnull));

/*
 * The default control socket of the device called name:
 * uzram_run_dir() + "/" + name + ".sock".  -EINVAL for a name that is empty,
 * longer than UZRAM_NAME_MAX, or holds anything but [A-Za-z0-9_.-] or
 * starts with '.'; -ENAMETOOLONG when the path does not fit in len (a Unix
 * socket path must fit in 108 bytes).
 */
#define UZRAM_NAME_MAX 64
int uzram_control_path(const char *name, char *buf, size_t len) __attribute__((nonnull));

/*
 * The directory that holds path, newly allocated: "/" for "/x", "." for a
 * path without a '/'.  NULL (errno ENOMEM) when out of memory.
 */
char *path_parent(const char *path) __attribute__((nonnull));

/*
 * mkdir -p of path's parent: each directory missing above path is made
 * with exactly mode (set by descriptor after mkdir(), so that the umask
 * does not narrow it and a symbolic link put in its place is not
 * followed).  Directories that exist are left as they are; whether they
 * are safe to use is the caller's to check.  0, or -errno of the first
 * step that failed.
 */
int make_parent_dirs(const char *path, mode_t mode) __attribute__((nonnull));

/* 0 if name is a valid device name (see uzram_control_path()), else -EINVAL. */
int uzram_check_name(const char *name) __attribute__((nonnull));

#endif
