#include "cli/endpoint.h"

#include <stdio.h>
#include <stdlib.h>

#include "util/mem.h"
#include "util/secret.h"

int strlist_add(struct strlist *l, const char *opt, const char *s)
{
	if (l->n == MAX_LIST_ARGS) {
		fprintf(stderr, "imapmig: too many %s options (at most %d)\n", opt, MAX_LIST_ARGS);
		return -1;
	}
	l->items[l->n++] = s;
	return 0;
}

int endpoint_setup(struct endpoint *ep, const char *text, enum side side, const char *pwfile,
		   const char *admin, const struct strlist *resolves, struct err *err)
{
	if (imap_url_parse(text, &ep->url, err) < 0)
		return -1;
	if (!ep->url.user) {
		err_set(err, ERR_CONFIG, "%s URL '%s' names no user", side_name(side), text);
		err_hint(err, "write it as imaps://USER@HOST");
		return -1;
	}
	if (resolve_lookup(resolves->items, resolves->n, ep->url.host, &ep->addr, err) < 0)
		return -1;
	char prompt[512];
	snprintf(prompt, sizeof(prompt), "Password for %s%s%s on %s (%s): ",
		 admin ? admin : ep->url.user, admin ? " acting for " : "",
		 admin ? ep->url.user : "", ep->url.host, side_name(side));
	ep->password = secret_get(pwfile,
				  side == SIDE_SOURCE ? "IMAPMIG_SOURCE_PASSWORD"
						      : "IMAPMIG_TARGET_PASSWORD",
				  prompt, err);
	if (!ep->password) {
		err_where(err, side, ep->url.host, ep->url.user, NULL);
		return -1;
	}
	ep->key = imap_url_key(&ep->url);
	return 0;
}

void endpoint_release(struct endpoint *ep)
{
	secret_free(&ep->password);
	free(ep->addr);
	free(ep->key);
	ep->addr = ep->key = NULL;
	imap_url_release(&ep->url);
}

void cli_trace(void *ctx, char dir, const uint8_t *data, size_t len)
{
	const char *who = ctx;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && data[i] != '\n')
			continue;
		size_t end = i;
		if (end > start && data[end - 1] == '\r')
			end--;
		if (end > start || i < len)
			fprintf(stderr, "%s %c %.*s\n", who, dir, (int)(end - start),
				(const char *)data + start);
		start = i + 1;
	}
}
