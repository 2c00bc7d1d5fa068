/* strvec.h - a growable array of owned strings (for repeatable options). */
#ifndef IMAPMIG_UTIL_STRVEC_H
#define IMAPMIG_UTIL_STRVEC_H

#include <stddef.h>

struct strvec {
	char **items; /* items[n] == NULL when n > 0 */
	size_t n, alloc;
};

#define STRVEC_INIT { NULL, 0, 0 }

/* Copies s. */
void strvec_push(struct strvec *v, const char *s);
/* Frees every string and the array; v becomes empty. */
void strvec_clear(struct strvec *v);

#endif
