#include "util/strvec.h"

#include <stdlib.h>

#include "util/mem.h"

void strvec_push(struct strvec *v, const char *s)
{
	if (v->n + 2 > v->alloc) {
		v->alloc = v->alloc ? v->alloc * 2 : 8;
		v->items = xrealloc(v->items, v->alloc * sizeof(*v->items));
	}
	v->items[v->n++] = xstrdup(s);
	v->items[v->n] = NULL;
}

void strvec_clear(struct strvec *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->items[i]);
	free(v->items);
	v->items = NULL;
	v->n = v->alloc = 0;
}
