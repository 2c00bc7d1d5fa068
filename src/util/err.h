/* err.h - the one way imapmig reports failure.
 *
 * Fallible functions return int (0 ok, -1 failed) and fill a caller's
 * struct err.  The error is data, not output: lower layers never print;
 * the CLI and the reports turn it into words with err_format().
 *
 * An error says what was tried (what), where (side, host, user, folder),
 * what the server said (server), and what to do next (hint).  Its kind
 * tells the caller how far the failure reaches and whether to retry:
 *
 *   ERR_MESSAGE    skip this message, record it, go on
 *   ERR_FOLDER     skip this folder, go on with the others
 *   ERR_ACCOUNT    this mailbox pair fails; other users go on
 *   ERR_TRANSIENT  the connection broke or the server asked us to wait:
 *                  reconnect and retry with backoff
 *   ERR_CONFIG     bad input or settings: stop before starting anything
 *   ERR_INTERNAL   a bug or an unexpected local failure (disk, database)
 *   ERR_STOPPED    the person asked to stop; nothing is wrong
 *
 * All fields are fixed-size arrays so an error can be copied by value and
 * never needs freeing.  Text that does not fit is truncated.
 */
#ifndef IMAPMIG_UTIL_ERR_H
#define IMAPMIG_UTIL_ERR_H

#include <stdarg.h>
#include <stddef.h>

enum err_kind {
	ERR_NONE = 0,
	ERR_MESSAGE,
	ERR_FOLDER,
	ERR_ACCOUNT,
	ERR_TRANSIENT,
	ERR_CONFIG,
	ERR_INTERNAL,
	ERR_STOPPED,   /* stopped on request (signal, batch stop): resume later */
};

enum side {
	SIDE_NONE = 0,
	SIDE_SOURCE,
	SIDE_TARGET,
};

struct err {
	enum err_kind kind;
	enum side side;
	char host[256];
	char user[256];
	char folder[512];
	char what[1024];  /* what failed, in words: "login failed" */
	char server[512]; /* the server's own words, if it said any */
	char hint[512];   /* what the person can do about it */
};

void err_clear(struct err *e);
/* Set kind and message (printf-style); clears server/hint.  Returns -1 so
 * callers can write `return err_set(e, ...)`.  e may be NULL. */
int err_set(struct err *e, enum err_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int err_vset(struct err *e, enum err_kind kind, const char *fmt, va_list ap);
/* Record the server's words (a response text, without tag). */
void err_server(struct err *e, const char *text, size_t len);
void err_hint(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Fill where the error happened; only fields still empty are set, so the
 * innermost layer that knows best wins.  NULL arguments are skipped. */
void err_where(struct err *e, enum side side, const char *host,
	       const char *user, const char *folder);
/* Prefix `what` with more context: "selecting folder: " + old what. */
void err_prefix(struct err *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

const char *err_kind_name(enum err_kind kind);
const char *side_name(enum side side);

/* One line for a person:
 *   "source imap.old.example (user alice, folder Sent): login failed:
 *    server said "[AUTHENTICATIONFAILED] Authentication failed."
 *    — check the source password"
 * Returns out. */
char *err_format(const struct err *e, char *out, size_t outlen);

#endif
