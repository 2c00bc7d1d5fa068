/* mem.h - allocation that never returns NULL.
 *
 * Out-of-memory is not an error a migration can recover from: these abort
 * with a message instead of making every caller check.  Everything they
 * return is owned by the caller and released with free().
 */
#ifndef IMAPMIG_UTIL_MEM_H
#define IMAPMIG_UTIL_MEM_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh string; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Overwrite memory that held a secret, in a way the compiler keeps. */
void mem_wipe(void *ptr, size_t len);
/* Wipe a NUL-terminated secret and free it; *sp becomes NULL. */
void secret_free(char **sp);

#endif
