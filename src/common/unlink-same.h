/* SPDX-License-Identifier: MIT */
/*
 * Removing a file the daemon made, and only that file: between making it
 * and removing it, someone who can write its directory may have put
 * something else at the path.  Header-only, for the layers (the FUSE front
 * end, the backing store) that link no common library.
 */
#ifndef UZRAM_UNLINK_SAME_H
#define UZRAM_UNLINK_SAME_H

#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Remove path if it still names the file dev/ino (not following a symlink);
 * true if it did.  Best effort: anything else leaves path as it is.
 */
static inline bool unlink_if_same(const char *path, dev_t dev, ino_t ino)
{
    struct stat st;

    if (lstat(path, &st) < 0 || st.st_dev != dev || st.st_ino != ino)
        return false;
    return unlink(path) == 0;
}

#endif
