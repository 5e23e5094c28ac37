/* SPDX-License-Identifier: MIT */
/* Placeholder: the backing store is being written. */
#include "backing.h"

#include <errno.h>

struct backing *backing_open(const char *spec, uint64_t size, char *err, size_t errlen)
{
    (void)spec; (void)size; (void)err; (void)errlen;
    errno = ENOTSUP;
    return NULL;
}

void backing_close(struct backing *b) { (void)b; }
uint64_t backing_blocks(const struct backing *b) { (void)b; return 0; }
const char *backing_spec(const struct backing *b) { (void)b; return ""; }
int backing_alloc(struct backing *b, uint64_t *ret_blk) { (void)b; (void)ret_blk; return -ENOSPC; }
void backing_free(struct backing *b, uint64_t blk, bool discard) { (void)b; (void)blk; (void)discard; }
int backing_write(struct backing *b, uint64_t blk, const void *buf, size_t len)
{ (void)b; (void)blk; (void)buf; (void)len; return -EIO; }
int backing_read(struct backing *b, uint64_t blk, void *buf, size_t len)
{ (void)b; (void)blk; (void)buf; (void)len; return -EIO; }
int backing_flush(struct backing *b) { (void)b; return 0; }
void backing_get_stats(struct backing *b, struct backing_stats *ret) { (void)b; *ret = (struct backing_stats){ 0 }; }
