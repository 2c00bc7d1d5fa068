#include "engine/mailbox_list.h"

#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

static int list_cb(void *ctx, const struct imap_mailbox *mb, struct err *err)
{
	struct folder_list *l = ctx;
	(void)err;
	unsigned attrs = 0;
	char *copy = xstrdup(mb->attrs);
	for (char *save = NULL, *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
		attrs |= folder_attr_from_name(w);
	free(copy);
	/* servers without NAMESPACE tell the delimiter here */
	if (!l->delim && mb->delim)
		l->delim = mb->delim;
	folder_list_add(l, mb->name, attrs);
	return 0;
}

int mailbox_list_read(struct imap_client *c, struct folder_list *l, struct err *err)
{
	char *prefix = NULL;
	char delim = '\0';
	if (imap_client_namespace(c, &prefix, &delim, err) < 0)
		return -1;
	folder_list_init(l, delim, prefix);
	free(prefix);
	return imap_client_list(c, list_cb, l, err);
}
