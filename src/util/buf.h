/* buf.h - a growable byte buffer with a hard size cap.
 *
 * Every buffer that can hold network data has a maximum (curl's dynbuf
 * rule): an append that would pass it fails and leaves the buffer as it
 * was, so a hostile peer can never make us grow without bound.
 *
 * Invariants: data[0..len) is the content; when data is not NULL,
 * data[len] == '\0' so text can be used as a C string.  A zeroed
 * struct is a valid empty buffer with no cap (max == 0 means "no cap"
 * only when set by BUF_INIT_UNCAPPED; use buf_init to set one).
 *
 * Ownership: the buffer owns data; buf_release() frees it, buf_detach()
 * hands it to the caller.
 */
#ifndef IMAPMIG_UTIL_BUF_H
#define IMAPMIG_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t len;
	size_t alloc;
	size_t max; /* 0 = no cap */
};

#define BUF_INIT(maxlen) { NULL, 0, 0, (maxlen) }

void buf_init(struct buf *b, size_t max);
/* 0, or -1 when the result would pass the cap (buffer unchanged). */
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_putc(struct buf *b, char c);
int buf_appendf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vappendf(struct buf *b, const char *fmt, va_list ap);
/* The content as a C string; "" for an empty buffer.  Valid until the
 * next change to the buffer. */
const char *buf_cstr(const struct buf *b);
/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Make room for at least n more bytes; returns the write position or NULL
 * when that would pass the cap.  Call buf_commit() with what was written. */
uint8_t *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);
void buf_reset(struct buf *b);
/* Free the storage; the buffer stays usable (empty, same cap). */
void buf_release(struct buf *b);
/* Hand the storage to the caller (NUL-terminated, free() it); the
 * buffer becomes empty.  Never NULL. */
char *buf_detach(struct buf *b, size_t *len_r);

#endif
