/* endpoint.h - what `sync` and `verify` share on the command line: lists
 * of repeatable options, the two endpoints with their passwords, and the
 * protocol trace for --debug. */
#ifndef IMAPMIG_CLI_ENDPOINT_H
#define IMAPMIG_CLI_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "util/url.h"

#define MAX_LIST_ARGS 256

/* Repeatable option values (pointers into argv, not owned). */
struct strlist {
	const char *items[MAX_LIST_ARGS];
	size_t n;
};

/* 0, or -1 after telling the person there are too many. */
int strlist_add(struct strlist *l, const char *opt, const char *s);

/* A whole number option from min to max: 0 with *n_r set, or -1 after
 * telling the person ("--jobs wants a whole number from 1 to 256, not
 * 'x'"). */
int cli_number(const char *opt, const char *s, unsigned long long min, unsigned long long max,
	       unsigned long long *n_r);

/* One side: its URL, its password (from the file, the environment or a
 * prompt; never argv), where --resolve sends it, and its state key. */
struct endpoint {
	struct imap_url url;
	char *password;
	char *addr; /* from --resolve, or NULL */
	char *key;  /* "imaps://user@host:port" */
};

/* admin: the password asked for is the admin's.  Release with
 * endpoint_release() in every case. */
int endpoint_setup(struct endpoint *ep, const char *text, enum side side, const char *pwfile,
		   const char *admin, const struct strlist *resolves, struct err *err);
void endpoint_release(struct endpoint *ep);

/* imap_trace_fn for --debug: each line to stderr, whole (one write, under
 * stderr's lock), as "source > A1 ..." for the side's first connection
 * and "source#2 > A1 ..." for connection 2 (the engine numbers them), and
 * so on; ctx is the side's name.  Lines cut between two reads are joined
 * first.  Passwords are masked below (imap_client), never here. */
void cli_trace(void *ctx, unsigned no, char dir, const uint8_t *data, size_t len);
/* The same with who (e.g. the batch user, or NULL) before the label:
 * "alice@example.org target#2 < A7 OK ...". */
void cli_trace_side(const char *who, enum side side, unsigned no, char dir,
		    const uint8_t *data, size_t len);

#endif
