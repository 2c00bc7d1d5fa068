/* spool.h - one message body kept between its arrival and its use.
 *
 * Bytes stay in memory up to the spool's memory limit; past it they all
 * move to a temporary file that nobody else can open (mkstemp, 0600,
 * unlinked at once: it vanishes with the process, even after a crash),
 * so a 50 MB message costs disk, not RSS.  The directory is $TMPDIR,
 * else /tmp.
 *
 * Ownership: spool_new() returns a spool the caller frees with
 * spool_free(); spool_replay() only lends its chunks.
 */
#ifndef IMAPMIG_UTIL_SPOOL_H
#define IMAPMIG_UTIL_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

struct spool;

/* mem_limit: bytes kept in memory before the spool moves to a file
 * (0 = straight to a file). */
struct spool *spool_new(size_t mem_limit);
void spool_free(struct spool **sp);

/* Add bytes at the end.  0, or -1 with err (ERR_INTERNAL: cannot create
 * or write the temporary file; the text names the file's directory). */
int spool_write(struct spool *s, const void *data, size_t len, struct err *err);

uint64_t spool_size(const struct spool *s);
/* Bytes of it held in memory (0 once it is in a file). */
size_t spool_mem(const struct spool *s);

/* Hand every byte, from the start and in order, to fn in chunks of at
 * most 64 KB; stops at fn's first -1 (its err is kept).  May be called
 * again. */
typedef int spool_chunk_fn(void *ctx, const uint8_t *data, size_t len, struct err *err);
int spool_replay(struct spool *s, spool_chunk_fn *fn, void *ctx, struct err *err);

#endif
