/* url.h - endpoint URLs and sizes from the command line.
 *
 *   imaps://[user@]host[:port][/]   implicit TLS, port 993
 *   imap://[user@]host[:port][/]    STARTTLS required, port 143
 * user is percent-decoded ("alice%40example.org" -> "alice@example.org";
 * a raw '@' in the user part is also accepted: the last '@' splits);
 * host may be an IPv6 literal in brackets.  A password in the URL
 * ("user:secret@") is refused: passwords never go on the command line.
 */
#ifndef IMAPMIG_UTIL_URL_H
#define IMAPMIG_UTIL_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

struct imap_url {
	bool tls;   /* imaps:// */
	char *host; /* without brackets */
	uint16_t port;
	char *user; /* NULL when absent */
};

/* Parse; on success the caller releases with imap_url_release().  On
 * failure ERR_CONFIG naming the URL and what is wrong with it. */
int imap_url_parse(const char *text, struct imap_url *url_r, struct err *err);
void imap_url_release(struct imap_url *url);
/* "imaps://alice@host:993": a stable key for the state database.  Caller
 * frees. */
char *imap_url_key(const struct imap_url *url);

/* --resolve HOST:ADDR rules: the address for host (the last matching rule
 * wins; "[::1]" loses its brackets), NULL in *addr_r when none matches.
 * A malformed rule is ERR_CONFIG.  Caller frees *addr_r. */
int resolve_lookup(const char *const *rules, size_t n, const char *host, char **addr_r,
		   struct err *err);

/* "35M", "512K", "2G", "1000" (bytes); K/M/G are powers of 1024. */
int size_parse(const char *text, uint64_t *size_r);

#endif
