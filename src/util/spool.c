/* spool.c - see spool.h. */
#include "util/spool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/mem.h"

#define CHUNK (64 * 1024)

struct spool {
	size_t mem_limit;
	struct buf mem; /* the bytes while they fit */
	int fd;         /* -1 until they do not */
	uint64_t size;
	char dir[256];  /* for messages */
};

struct spool *spool_new(size_t mem_limit)
{
	struct spool *s = xcalloc(1, sizeof(*s));
	s->mem_limit = mem_limit;
	buf_init(&s->mem, 0);
	s->fd = -1;
	return s;
}

void spool_free(struct spool **sp)
{
	struct spool *s = sp ? *sp : NULL;
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	buf_release(&s->mem);
	free(s);
	*sp = NULL;
}

static int file_error(struct spool *s, struct err *err, const char *doing, int e)
{
	err_set(err, ERR_INTERNAL, "cannot %s a temporary file in %s: %s", doing, s->dir,
		strerror(e));
	err_hint(err, "set TMPDIR to a directory with free space that imapmig may write to");
	return -1;
}

static int write_fd(struct spool *s, const uint8_t *p, size_t len, struct err *err)
{
	while (len) {
		ssize_t n = write(s->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return file_error(s, err, "write", errno);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Move to a file: create it unlinked, then write what was in memory. */
static int to_file(struct spool *s, struct err *err)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(s->dir, sizeof(s->dir), "%s", tmp && *tmp ? tmp : "/tmp");
	char path[300];
	snprintf(path, sizeof(path), "%s/imapmig-spool-XXXXXX", s->dir);
	int fd = mkstemp(path); /* 0600 */
	if (fd < 0)
		return file_error(s, err, "create", errno);
	unlink(path);
	s->fd = fd;
	if (write_fd(s, s->mem.data, s->mem.len, err) < 0)
		return -1;
	buf_release(&s->mem);
	return 0;
}

int spool_write(struct spool *s, const void *data, size_t len, struct err *err)
{
	if (s->fd < 0 && s->mem.len + len > s->mem_limit && to_file(s, err) < 0)
		return -1;
	if (s->fd >= 0) {
		if (write_fd(s, data, len, err) < 0)
			return -1;
	} else if (buf_append(&s->mem, data, len) < 0) {
		return err_set(err, ERR_INTERNAL, "spool buffer full");
	}
	s->size += len;
	return 0;
}

uint64_t spool_size(const struct spool *s)
{
	return s->size;
}

size_t spool_mem(const struct spool *s)
{
	return s->fd < 0 ? s->mem.len : 0;
}

int spool_replay(struct spool *s, spool_chunk_fn *fn, void *ctx, struct err *err)
{
	if (s->fd < 0) {
		for (size_t off = 0; off < s->mem.len; off += CHUNK) {
			size_t n = s->mem.len - off < CHUNK ? s->mem.len - off : CHUNK;
			if (fn(ctx, s->mem.data + off, n, err) < 0)
				return -1;
		}
		return 0;
	}
	uint8_t *chunk = xmalloc(CHUNK);
	int r = 0;
	for (uint64_t off = 0; off < s->size && r == 0;) {
		ssize_t n = pread(s->fd, chunk, CHUNK, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = file_error(s, err, "read back", n < 0 ? errno : EIO);
			break;
		}
		off += (uint64_t)n;
		r = fn(ctx, chunk, (size_t)n, err);
	}
	free(chunk);
	return r;
}
