#include "cli/endpoint.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

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

int cli_number(const char *opt, const char *s, unsigned long long min, unsigned long long max,
	       unsigned long long *n_r)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (!*s || *end || errno || s[0] == '-' || n < min || n > max) {
		fprintf(stderr, "imapmig: %s wants a whole number from %llu to %llu, not '%s'\n", opt,
			min, max, s);
		return -1;
	}
	*n_r = n;
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

/* --debug.  Several connections trace at once (--connections-per-user,
 * --append-connections, batch --jobs), so every line carries its
 * connection's label and goes out whole.  The engine numbers each side's
 * connections (imap_client_opts.trace_no): 1 is "source"/"target", the
 * others "source#2", "target#3", ...  A line cut between two reads waits
 * in its connection's carry slot until its end comes; the slots (and so
 * the lock) are the one piece of process-wide state in imapmig: stderr is
 * process-wide too. */
#define TRACE_CARRY 2048
#define TRACE_SLOTS 64

struct trace_slot {
	char who[128]; /* the batch user, or "" */
	enum side side;
	unsigned no;
	char dir;
	size_t len; /* 0 = free */
	char carry[TRACE_CARRY];
};

static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
static struct trace_slot trace_slots[TRACE_SLOTS];

/* One line, "LABEL DIR TEXT\n", in one write under stderr's lock:
 * lines of other threads (and other stderr output) never cut into it. */
static void trace_put(const char *who, const char *side, unsigned no, char dir,
		      const char *head, size_t head_len, const char *text, size_t len)
{
	char label[400];
	int n;
	if (no > 1)
		n = snprintf(label, sizeof(label), "%s%s%s#%u %c ", who ? who : "",
			     who ? " " : "", side, no, dir);
	else
		n = snprintf(label, sizeof(label), "%s%s%s %c ", who ? who : "", who ? " " : "",
			     side, dir);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(label))
		n = (int)sizeof(label) - 1;
	struct iovec iov[4] = {
		{ label, (size_t)n },
		{ (void *)head, head_len },
		{ (void *)text, len },
		{ (void *)"\n", 1 },
	};
	struct iovec *v = iov;
	int nv = 4;
	flockfile(stderr);
	fflush(stderr); /* whatever stdio holds goes first */
	while (nv > 0) {
		ssize_t w = writev(STDERR_FILENO, v, nv);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			break; /* stderr gone: nothing to tell anyone */
		/* a short write (a pipe, a huge literal): go on after it */
		while (nv > 0 && (size_t)w >= v->iov_len) {
			w -= (ssize_t)v->iov_len;
			v++;
			nv--;
		}
		if (nv > 0) {
			v->iov_base = (char *)v->iov_base + w;
			v->iov_len -= (size_t)w;
		}
	}
	funlockfile(stderr);
}

/* The slot holding a partial line of this connection and direction, or
 * a free one (NULL when all are taken: the piece goes out as it is). */
static struct trace_slot *carry_slot(const char *who, enum side side, unsigned no, char dir)
{
	struct trace_slot *free_slot = NULL;
	for (size_t i = 0; i < TRACE_SLOTS; i++) {
		struct trace_slot *t = &trace_slots[i];
		if (!t->len) {
			if (!free_slot)
				free_slot = t;
			continue;
		}
		if (t->side == side && t->no == no && t->dir == dir &&
		    strncmp(t->who, who ? who : "", sizeof(t->who) - 1) == 0)
			return t;
	}
	if (free_slot) {
		snprintf(free_slot->who, sizeof(free_slot->who), "%s", who ? who : "");
		free_slot->side = side;
		free_slot->no = no;
		free_slot->dir = dir;
	}
	return free_slot;
}

void cli_trace_side(const char *who, enum side side, unsigned no, char dir,
		    const uint8_t *data, size_t len)
{
	const char *name = side_name(side);
	const char *p = (const char *)data;
	size_t start = 0;
	pthread_mutex_lock(&trace_lock);
	struct trace_slot *t = carry_slot(who, side, no, dir);
	static const char none[1];
	const char *carry = t ? t->carry : none;
	size_t zero = 0, *carry_len = t ? &t->len : &zero;
	for (size_t i = 0; i < len; i++) {
		if (p[i] != '\n')
			continue;
		size_t end = i;
		if (end > start && p[end - 1] == '\r')
			end--;
		else if (end == start && *carry_len && carry[*carry_len - 1] == '\r')
			(*carry_len)--; /* CR at the end of the last chunk */
		trace_put(who, name, no, dir, carry, *carry_len, p + start, end - start);
		*carry_len = 0;
		start = i + 1;
	}
	/* the rest waits for its end of line; a line too long to keep goes
	 * out as it is */
	size_t rest = len - start;
	if (!t || *carry_len + rest > TRACE_CARRY) {
		if (rest || *carry_len)
			trace_put(who, name, no, dir, carry, *carry_len, p + start, rest);
		*carry_len = 0;
	} else {
		memcpy(t->carry + *carry_len, p + start, rest);
		*carry_len += rest;
	}
	pthread_mutex_unlock(&trace_lock);
}

void cli_trace(void *ctx, unsigned no, char dir, const uint8_t *data, size_t len)
{
	const char *who = ctx;
	cli_trace_side(NULL, who && who[0] == 't' ? SIDE_TARGET : SIDE_SOURCE, no, dir, data, len);
}
