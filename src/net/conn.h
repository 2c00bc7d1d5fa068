/* conn.h - one client connection: TCP with timeouts, optionally TLS.
 *
 * The socket is non-blocking underneath; every call here waits at most
 * the connection's timeout (poll), so nothing hangs on a stalled peer.
 * TLS (OpenSSL) lives only in this module: callers see plain bytes.
 *
 * TLS rules, on by default and never silently relaxed:
 *   - TLS 1.2 minimum;
 *   - the chain must verify against the system trust store plus the
 *     optional ca_file;
 *   - the certificate must match the host name asked for (SAN DNS names,
 *     wildcards in the left-most label only; an IP literal must match a
 *     SAN IP entry); SNI is sent for names.
 *   - insecure=true turns verification off (the CLI warns loudly).
 *
 * Errors fill struct err with kind ERR_TRANSIENT for refused, reset,
 * timed-out or dropped connections and ERR_ACCOUNT for TLS verification
 * failures (retrying will not help); the text names host:port, what was
 * tried, and for a name mismatch the names the certificate carries, e.g.
 *   "TLS certificate does not match imap.old.example: it is for
 *    mail.old.example, *.old.example" with hint "connect with the name on
 *   the certificate (its FQDN)".
 * conn never sets err->side/user; callers add that with err_where().
 *
 * conn never raises SIGPIPE: every write, TLS included, goes through
 * send(MSG_NOSIGNAL), so a server that hangs up gives an error, not a
 * dead process.
 */
#ifndef IMAPMIG_NET_CONN_H
#define IMAPMIG_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"

struct conn_opts {
	const char *host;    /* name or IP literal (IPv6 without brackets) */
	uint16_t port;
	/* Connect to this address (IPv4/IPv6 literal) instead of resolving
	 * host; host is still what SNI and certificate checks use (curl's
	 * --resolve: rehearse against a clone under the real name).  NULL =
	 * resolve host. */
	const char *connect_addr;
	bool tls;            /* implicit TLS right after connect */
	const char *ca_file; /* extra trusted CA (PEM), or NULL */
	bool insecure;       /* no certificate verification (explicit only) */
	int timeout_ms;      /* for connect and each wait for I/O; 0 = 60000 */
};

struct conn;

/* Resolve host (IPv4 and IPv6, every address in turn), connect, and when
 * opts->tls do the TLS handshake and verification.  Strings in opts are
 * copied.  Returns a connection the caller frees with conn_close(), or
 * NULL with err filled. */
struct conn *conn_open(const struct conn_opts *opts, struct err *err);

/* Upgrade a plain connection to TLS (after the IMAP STARTTLS reply), with
 * the same verification as implicit TLS.  Bytes already buffered by the
 * caller must have been consumed first (STARTTLS injection defence is the
 * caller's job: it must discard anything read after the OK). */
int conn_starttls(struct conn *c, struct err *err);

/* Read up to len bytes, waiting up to timeout_ms (<0: the connection's
 * timeout).  Returns bytes read (>0), 0 on orderly EOF from the peer, or
 * -1 with err set (ERR_TRANSIENT; "timed out after N s waiting for data"
 * when the wait ran out).  Under TLS a peer that closes the TCP connection
 * without close_notify also gives 0: many IMAP servers do so after BYE,
 * and IMAP's own framing (tags, literal sizes) shows a truncated reply. */
ssize_t conn_read(struct conn *c, uint8_t *buf, size_t len, int timeout_ms,
		  struct err *err);

/* Bytes readable now without touching the socket (TLS records already
 * decrypted); lets a caller drain before it polls. */
bool conn_has_buffered(struct conn *c);

/* Wait until conn_read would not block, up to timeout_ms (<0: the
 * connection's timeout); 1 readable, 0 timed out, -1 error. */
int conn_wait_readable(struct conn *c, int timeout_ms, struct err *err);

/* Called by conn_write() when the peer is not accepting our bytes but has
 * bytes for us: the owner reads them (conn_read) so that a peer blocked on
 * writing its responses cannot deadlock us.  Return 0, or -1 to abort the
 * write with err set.  Never called re-entrantly; a call that reads
 * nothing stops further calls in that conn_write() until it has read
 * something (no spinning on a readable socket).  Bytes drained count as
 * progress for the write's timeout (the connection is alive). */
typedef int conn_drain_fn(void *ctx, struct conn *c, struct err *err);
void conn_set_drain(struct conn *c, conn_drain_fn *fn, void *ctx);

/* Write all len bytes, waiting (and draining, see above) as needed; the
 * timeout applies to each period without progress.  0 or -1 with err. */
int conn_write(struct conn *c, const void *data, size_t len, struct err *err);

/* Corked, conn_write() may keep up to 64 KB in a buffer instead of
 * writing at once; the buffer goes out when it fills, on conn_flush(),
 * and before conn_read()/conn_wait_readable() wait (what we wait for may
 * depend on it).  Many small writes then leave as a few full TLS records:
 * fewer syscalls, segments and wake-ups on both ends.  Off by default. */
void conn_set_cork(struct conn *c, bool on);
int conn_flush(struct conn *c, struct err *err);

/* Observe plain-text traffic (for --verbose protocol traces); dir is '<'
 * for received, '>' for sent (each piece once it is on the wire, so a
 * large write shows as several pieces).  The callback must not call back
 * into c. */
typedef void conn_trace_fn(void *ctx, char dir, const uint8_t *data, size_t len);
void conn_set_trace(struct conn *c, conn_trace_fn *fn, void *ctx);

/* From now on, deflate what is written and inflate what is read (raw
 * deflate, RFC 4978 COMPRESS=DEFLATE), above TLS.  Call right after the
 * server's OK to COMPRESS.  Traces still show the plain text. */
int conn_compress_start(struct conn *c, struct err *err);
bool conn_is_compressed(const struct conn *c);

bool conn_is_tls(const struct conn *c);
const char *conn_host(const struct conn *c);
uint16_t conn_port(const struct conn *c);
/* e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384", or "plain" */
const char *conn_tls_description(const struct conn *c);

/* Close and free; *cp becomes NULL.  Safe with *cp == NULL. */
void conn_close(struct conn **cp);

#endif
