/* conn.c - TCP with timeouts, optionally TLS (see conn.h for the contract).
 *
 * Decisions worth knowing (the why):
 *
 * - The socket is non-blocking from socket() on.  Every wait is a poll()
 *   against a deadline: connect waits up to the timeout per address; the
 *   TLS handshake has one deadline for the whole handshake; conn_read has
 *   one deadline per call; conn_write restarts its deadline whenever bytes
 *   go out or come in through the drain callback ("each period without
 *   progress").
 *
 * - SIGPIPE: conn never raises it.  Plain I/O uses send(MSG_NOSIGNAL), and
 *   OpenSSL talks to the socket only through a tiny BIO of ours that does
 *   the same (the stock socket BIO uses write(), which raises SIGPIPE when
 *   the peer has gone).  Its BIO_METHOD is made per connection so that
 *   this module keeps no global state.
 *
 * - TLS end of stream: a peer that closes the TCP connection without a
 *   TLS close_notify is treated like an orderly EOF (conn_read returns 0,
 *   SSL_OP_IGNORE_UNEXPECTED_EOF).  Many IMAP servers (Gmail among them)
 *   drop the connection after BYE without close_notify, and IMAP frames
 *   everything itself (tagged replies, literal sizes), so the protocol
 *   layer notices a truncated reply and reports "connection closed by
 *   server" with the context it knows.  During the handshake an EOF is an
 *   error, never a 0.
 *
 * - One SSL_CTX per connection (no shared state between connections or
 *   threads), made when TLS is first needed.
 */
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "util/mem.h"

#define DEFAULT_TIMEOUT_MS 60000
/* Largest piece handed to one send()/SSL_write(): the kernel takes less
 * anyway, and it keeps the sanitizers' per-call range checks small. */
#define WRITE_CHUNK (256 * 1024)
/* Our BIO's type: a source/sink with an index of its own; it only
 * matters to BIO_find_type(), which nothing here uses. */
#define CONN_BIO_TYPE ((BIO_TYPE_START + 37) | BIO_TYPE_SOURCE_SINK)

#define HINT_PORT "is the server running and the port right?"
#define HINT_TLS_PORT                                                                              \
	"is this a TLS port? imaps:// is usually port 993, imap:// (STARTTLS) "                    \
	"port 143"
#define HINT_CA_FILE                                                                               \
	"if the server uses a private or self-signed CA, pass that CA's "                          \
	"certificate with --ca-file"

struct conn {
	int fd; /* -1 once closed (e.g. after a failed STARTTLS) */
	char *host;
	uint16_t port;
	char *ca_file;
	bool insecure;
	int timeout_ms;
	char where[300]; /* "host:port", IPv6 in brackets, for messages */

	SSL_CTX *ctx;
	BIO_METHOD *biometh; /* must outlive the BIO inside ssl */
	SSL *ssl;            /* NULL until TLS is on */
	bool tls_dead;       /* fatal TLS error: no close_notify on close */
	X509 *bad_cert;      /* first certificate verification failed on */
	int bad_depth;
	X509 *leaf;   /* the server's certificate, for messages */
	int io_errno; /* last socket error our BIO saw */
	bool io_eof;  /* our BIO saw the peer's FIN */
	char tls_desc[128];

	conn_drain_fn *drain;
	void *drain_ctx;
	bool draining;
	uint64_t rx_bytes; /* plain bytes handed out by conn_read */

	conn_trace_fn *trace;
	void *trace_ctx;

	/* COMPRESS=DEFLATE (RFC 4978): raw deflate both ways, above TLS */
	bool compress;
	z_stream zin, zout;
	uint8_t *zin_buf; /* compressed bytes read, not yet inflated */
	uint8_t *zout_buf;
	bool zin_eof;

	/* Corked output (conn_set_cork): plain bytes not yet written, so a
	 * command line, a message and the CRLF after it leave in a few full
	 * TLS records instead of one small record (and TCP segment, and
	 * server wake-up) per conn_write. */
	bool cork;
	bool flushing; /* in flush_out: a drain's read must not flush again */
	uint8_t *out_buf;
	size_t out_len;
};

static int flush_out(struct conn *c, struct err *err);

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "60 s", "0.3 s": the timeout as a person would say it. */
static const char *secs(char *out, size_t outlen, int ms)
{
	if (ms % 1000 == 0)
		snprintf(out, outlen, "%d s", ms / 1000);
	else
		snprintf(out, outlen, "%.1f s", ms / 1000.0);
	return out;
}

/* Wait for events on fd until deadline: 1 ready (including error or
 * hang-up: the next send/recv tells which), 0 timed out, -1 with errno.
 * revents_r may be NULL. */
static int wait_fd(int fd, short events, int64_t deadline, short *revents_r)
{
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left < 0)
			left = 0;
		struct pollfd pfd = {.fd = fd, .events = events};
		int r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		if (revents_r)
			*revents_r = pfd.revents;
		return 1;
	}
}

static bool is_ip_literal(const char *s)
{
	unsigned char a[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

static void addr_text(const struct sockaddr *sa, char *out, size_t outlen)
{
	const void *a = sa->sa_family == AF_INET6
	                    ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
	                    : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	if (!inet_ntop(sa->sa_family, a, out, (socklen_t)outlen))
		snprintf(out, outlen, "?");
}

/* Words for a socket error, as the person reading the message thinks of
 * it (the server did it, not "the peer"). */
static const char *io_words(int e)
{
	switch (e) {
	case ECONNRESET:
		return "connection reset by server";
	case EPIPE:
		return "connection closed by server";
	case ECONNREFUSED:
		return "connection refused";
	case ENETUNREACH:
		return "network is unreachable";
	case EHOSTUNREACH:
		return "host is unreachable";
	default:
		return strerror(e);
	}
}

static int io_error(struct conn *c, struct err *err, const char *doing, int e)
{
	return err_set(err, ERR_TRANSIENT, "connection to %s lost while %s: %s", c->where, doing,
	               io_words(e));
}

static int closed_error(struct conn *c, struct err *err, const char *doing)
{
	return err_set(err, ERR_TRANSIENT,
	               "connection to %s lost while %s: connection closed by server", c->where,
	               doing);
}

/* The most specific reason OpenSSL queued, or a fallback; clears the
 * queue (it is per thread and would leak into unrelated later calls). */
static const char *ssl_reason(char *out, size_t outlen, unsigned long *code_r)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	snprintf(out, outlen, "%s", r ? r : "protocol error");
	if (code_r)
		*code_r = e;
	ERR_clear_error();
	return out;
}

/* ---- the BIO between OpenSSL and the socket ---- */

static int bio_write(BIO *b, const char *data, int len)
{
	struct conn *c = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	do
		n = send(c->fd, data, (size_t)len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n >= 0)
		return (int)n;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		BIO_set_retry_write(b);
	else
		c->io_errno = errno;
	return -1;
}

static int bio_read(BIO *b, char *buf, int len)
{
	struct conn *c = BIO_get_data(b);
	ssize_t n;

	BIO_clear_retry_flags(b);
	do
		n = recv(c->fd, buf, (size_t)len, 0);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		return (int)n;
	if (n == 0) {
		c->io_eof = true;
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		BIO_set_retry_read(b);
	else
		c->io_errno = errno;
	return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct conn *c = BIO_get_data(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* nothing is buffered here */
	case BIO_CTRL_EOF:
		/* OpenSSL asks this to tell an EOF from an error */
		return c && c->io_eof;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO *bio_new(struct conn *c)
{
	if (!c->biometh) {
		c->biometh = BIO_meth_new(CONN_BIO_TYPE, "imapmig socket");
		if (!c->biometh)
			return NULL;
		BIO_meth_set_write(c->biometh, bio_write);
		BIO_meth_set_read(c->biometh, bio_read);
		BIO_meth_set_ctrl(c->biometh, bio_ctrl);
		BIO_meth_set_create(c->biometh, bio_create);
	}
	BIO *b = BIO_new(c->biometh);
	if (b)
		BIO_set_data(b, c);
	return b;
}

/* ---- connecting ---- */

/* How much a connect error tells the person, to pick which of several
 * addresses' errors to report: a refusal proves the host is there. */
static int connect_errno_rank(int e)
{
	switch (e) {
	case ECONNREFUSED:
		return 4;
	case ETIMEDOUT:
		return 3;
	case ENETUNREACH:
	case EHOSTUNREACH:
	case EADDRNOTAVAIL:
	case EAFNOSUPPORT:
		return 1;
	default:
		return 2;
	}
}

/* A connected non-blocking socket, or -1 with *errno_r (ETIMEDOUT when
 * our own wait ran out). */
static int connect_one(const struct addrinfo *ai, int timeout_ms, int *errno_r)
{
	int fd =
	    socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		*errno_r = errno;
		return -1;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			*errno_r = errno;
			close(fd);
			return -1;
		}
		int r = wait_fd(fd, POLLOUT, now_ms() + timeout_ms, NULL);
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (r == 0)
			soerr = ETIMEDOUT;
		else if (r < 0)
			soerr = errno;
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr) {
			*errno_r = soerr;
			close(fd);
			return -1;
		}
	}
	/* IMAP sends small commands and waits for replies: Nagle would only
	 * add delay. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static int resolve(const struct conn_opts *opts, const char *where, struct addrinfo **res_r,
                   struct err *err)
{
	struct addrinfo hints = {0};
	char port[8];
	const char *name = opts->connect_addr ? opts->connect_addr : opts->host;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (opts->connect_addr ? AI_NUMERICHOST : 0);
	snprintf(port, sizeof(port), "%u", (unsigned)opts->port);

	int rc = getaddrinfo(name, port, &hints, res_r);
	if (rc == 0)
		return 0;
	if (opts->connect_addr) {
		err_set(err, ERR_CONFIG,
		        "cannot connect to %s: connect address \"%s\" is not an IP address", where,
		        opts->connect_addr);
		err_hint(err, "give an IPv4 or IPv6 address to connect to");
		return -1;
	}
	switch (rc) {
	case EAI_NONAME:
#ifdef EAI_NODATA
	case EAI_NODATA:
#endif
	case EAI_FAIL:
		err_set(err, ERR_CONFIG, "cannot connect to %s: host name not found", where);
		err_hint(err, "check the host name");
		break;
	case EAI_AGAIN:
		err_set(err, ERR_TRANSIENT,
		        "cannot connect to %s: temporary failure looking up the host name", where);
		err_hint(err, "check the host name and this machine's DNS resolver");
		break;
	case EAI_SYSTEM:
		err_set(err, ERR_TRANSIENT, "cannot connect to %s: looking up the host name: %s",
		        where, strerror(errno));
		break;
	default:
		err_set(err, ERR_CONFIG, "cannot connect to %s: looking up the host name: %s",
		        where, gai_strerror(rc));
		err_hint(err, "check the host name");
		break;
	}
	return -1;
}

static int tcp_connect(struct conn *c, const struct conn_opts *opts, struct err *err)
{
	struct addrinfo *res = NULL;
	char tried[200] = "";
	size_t ntried = 0, tlen = 0;
	int best = 0, best_rank = -1;

	if (resolve(opts, c->where, &res, err) < 0)
		return -1;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int e = 0;
		char a[INET6_ADDRSTRLEN];

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		addr_text(ai->ai_addr, a, sizeof(a));
		if (tlen < sizeof(tried)) {
			int k = snprintf(tried + tlen, sizeof(tried) - tlen, "%s%s",
			                 ntried ? ", " : "", a);
			if (k > 0)
				tlen += (size_t)k;
		}
		ntried++;
		c->fd = connect_one(ai, c->timeout_ms, &e);
		if (c->fd >= 0)
			break;
		if (connect_errno_rank(e) > best_rank) {
			best = e;
			best_rank = connect_errno_rank(e);
		}
	}
	freeaddrinfo(res);
	if (c->fd >= 0)
		return 0;

	/* Say which addresses were tried when that is not obvious from the
	 * host name itself. */
	char paren[220] = "";
	if (ntried > 1 || (ntried == 1 && strcmp(tried, c->host) != 0))
		snprintf(paren, sizeof(paren), " (%s)", tried);
	if (ntried == 0) {
		err_set(err, ERR_CONFIG, "cannot connect to %s: no IPv4 or IPv6 address", c->where);
		err_hint(err, "check the host name");
		return -1;
	}
	if (best == ETIMEDOUT) {
		char t[32];
		err_set(err, ERR_TRANSIENT, "cannot connect to %s%s: timed out after %s", c->where,
		        paren, secs(t, sizeof(t), c->timeout_ms));
		err_hint(err, HINT_PORT " (a firewall may be dropping the connection)");
		return -1;
	}
	err_set(err, ERR_TRANSIENT, "cannot connect to %s%s: %s", c->where, paren, io_words(best));
	if (best == ENETUNREACH || best == EHOSTUNREACH)
		err_hint(err, "check the host name and this machine's network");
	else
		err_hint(err, HINT_PORT);
	return -1;
}

/* ---- TLS ---- */

static int verify_cb(int ok, X509_STORE_CTX *sctx)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct conn *c = ssl ? SSL_get_app_data(ssl) : NULL;

	if (!c)
		return ok;
	/* Keep what the error message will need: the handshake fails before
	 * the peer certificate would become available from the SSL. */
	if (!c->leaf) {
		X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
		if (leaf && X509_up_ref(leaf))
			c->leaf = leaf;
	}
	if (!ok && !c->bad_cert) {
		X509 *bad = X509_STORE_CTX_get_current_cert(sctx);
		if (bad && X509_up_ref(bad)) {
			c->bad_cert = bad;
			c->bad_depth = X509_STORE_CTX_get_error_depth(sctx);
		}
	}
	return ok;
}

/* Append one name for a message, keeping only printable ASCII: the text
 * comes from the server and ends up on a terminal. */
static void add_name(char *out, size_t outlen, size_t *n, size_t *count, const unsigned char *s,
                     size_t len)
{
	char clean[256];
	size_t k = 0;

	for (size_t i = 0; i < len && k < sizeof(clean) - 1; i++)
		clean[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
	clean[k] = '\0';
	if (*n >= outlen)
		return;
	int w = snprintf(out + *n, outlen - *n, "%s%s", *count ? ", " : "", clean);
	if (w > 0)
		*n += (size_t)w;
	(*count)++;
}

/* The names a certificate is for: SAN DNS names and IP addresses, or the
 * subject CN when it has none of those (what OpenSSL's check falls back
 * to as well). */
static void cert_names(X509 *cert, char *out, size_t outlen)
{
	size_t n = 0, count = 0;

	out[0] = '\0';
	if (!cert)
		return;
	GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		if (g->type == GEN_DNS) {
			add_name(out, outlen, &n, &count, ASN1_STRING_get0_data(g->d.dNSName),
			         (size_t)ASN1_STRING_length(g->d.dNSName));
		} else if (g->type == GEN_IPADD) {
			const unsigned char *ip = ASN1_STRING_get0_data(g->d.iPAddress);
			int iplen = ASN1_STRING_length(g->d.iPAddress);
			char a[INET6_ADDRSTRLEN];
			if ((iplen == 4 && inet_ntop(AF_INET, ip, a, sizeof(a))) ||
			    (iplen == 16 && inet_ntop(AF_INET6, ip, a, sizeof(a))))
				add_name(out, outlen, &n, &count, (const unsigned char *)a,
				         strlen(a));
		}
	}
	GENERAL_NAMES_free(gens);
	if (count)
		return;
	X509_NAME *subj = X509_get_subject_name(cert);
	int i = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
	if (i >= 0) {
		ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i));
		add_name(out, outlen, &n, &count, ASN1_STRING_get0_data(cn),
		         (size_t)ASN1_STRING_length(cn));
	}
}

static void asn1_time_text(const ASN1_TIME *t, char *out, size_t outlen)
{
	BIO *m = BIO_new(BIO_s_mem());
	out[0] = '\0';
	if (!m)
		return;
	if (t && ASN1_TIME_print(m, t) == 1) {
		int k = BIO_read(m, out, (int)outlen - 1);
		out[k > 0 ? k : 0] = '\0';
	}
	BIO_free(m);
}

static int verify_error(struct conn *c, long vr, struct err *err)
{
	char names[700], when[64];
	X509 *bad = c->bad_cert ? c->bad_cert : c->leaf;
	bool leaf = !c->bad_cert || c->bad_depth == 0;

	switch (vr) {
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		cert_names(c->leaf, names, sizeof(names));
		if (names[0])
			err_set(err, ERR_ACCOUNT, "TLS certificate does not match %s: it is for %s",
			        c->host, names);
		else
			err_set(err, ERR_ACCOUNT,
			        "TLS certificate does not match %s: it names no host", c->host);
		err_hint(err, "connect with the name on the certificate (its FQDN)");
		break;
	case X509_V_ERR_CERT_HAS_EXPIRED:
		asn1_time_text(bad ? X509_get0_notAfter(bad) : NULL, when, sizeof(when));
		err_set(err, ERR_ACCOUNT, "TLS certificate %s%s has expired (valid until %s)",
		        leaf ? "of " : "in the chain of ", c->where, when[0] ? when : "?");
		err_hint(err, "the server's certificate must be renewed");
		break;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		asn1_time_text(bad ? X509_get0_notBefore(bad) : NULL, when, sizeof(when));
		err_set(err, ERR_ACCOUNT, "TLS certificate %s%s is not valid yet (valid from %s)",
		        leaf ? "of " : "in the chain of ", c->where, when[0] ? when : "?");
		err_hint(err, "check this machine's clock");
		break;
	default:
		err_set(err, ERR_ACCOUNT, "TLS certificate chain of %s could not be verified: %s",
		        c->where, X509_verify_cert_error_string(vr));
		err_hint(err, HINT_CA_FILE);
		break;
	}
	return -1;
}

static int handshake_error(struct conn *c, int e, struct err *err)
{
	long vr = SSL_get_verify_result(c->ssl);
	char why[256];
	unsigned long code = 0;

	c->tls_dead = true;
	if (!c->insecure && vr != X509_V_OK) {
		ERR_clear_error();
		return verify_error(c, vr, err);
	}
	if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
		ERR_clear_error();
		err_set(err, ERR_TRANSIENT, "TLS handshake with %s failed: %s", c->where,
		        c->io_errno ? io_words(c->io_errno) : "connection closed by server");
		err_hint(err, HINT_TLS_PORT);
		return -1;
	}
	ssl_reason(why, sizeof(why), &code);
	err_set(err, ERR_ACCOUNT, "TLS handshake with %s failed: %s", c->where, why);
	switch (ERR_GET_REASON(code)) {
	case SSL_R_WRONG_VERSION_NUMBER:
	case SSL_R_PACKET_LENGTH_TOO_LONG:
		err_hint(err, HINT_TLS_PORT);
		break;
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
		err_hint(err, "the server seems to offer only TLS older than 1.2, "
		              "which imapmig does not accept");
		break;
	}
	return -1;
}


/* The system trust store plus --ca-file, parsed once per process and
 * shared read-only by every connection.  Parsing the system bundle costs
 * ~40 ms (some 140 certificates), paid twice per mailbox otherwise; an
 * X509_STORE is reference-counted and safe for concurrent lookups, so
 * sharing it is cheaper and as safe.  The cache is keyed by ca_file (one
 * batch or sync uses one).  Returns a new reference, or NULL with err. */
static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static X509_STORE *store_cache;
static char *store_cache_ca;

static X509_STORE *trust_store(const char *ca_file, struct err *err)
{
	char why[256];
	X509_STORE *st = NULL;

	pthread_mutex_lock(&store_lock);
	if (store_cache && ((!ca_file && !store_cache_ca) ||
	                    (ca_file && store_cache_ca && strcmp(ca_file, store_cache_ca) == 0))) {
		X509_STORE_up_ref(store_cache);
		st = store_cache;
		pthread_mutex_unlock(&store_lock);
		return st;
	}
	st = X509_STORE_new();
	/* A machine without a system store can still work with ca_file; the
	 * chain check reports it if neither has the CA. */
	X509_STORE_set_default_paths(st);
	ERR_clear_error();
	if (ca_file && X509_STORE_load_file(st, ca_file) != 1) {
		pthread_mutex_unlock(&store_lock);
		X509_STORE_free(st);
		ssl_reason(why, sizeof(why), NULL);
		err_set(err, ERR_CONFIG, "cannot load CA file %s: %s", ca_file, why);
		err_hint(err, "--ca-file needs a PEM file with one or more CA certificates");
		return NULL;
	}
	X509_STORE_free(store_cache);
	free(store_cache_ca);
	store_cache = st;
	store_cache_ca = ca_file ? strdup(ca_file) : NULL;
	X509_STORE_up_ref(st);
	pthread_mutex_unlock(&store_lock);
	return st;
}

/* The store is shared, and OpenSSL's chain building caches things in
 * the certificates it holds (ThreadSanitizer sees one handshake write
 * what another reads): verifications take turns.  A chain check needs
 * no network (CPU, and at most the local certificate directory) and takes
 * about a millisecond, so nothing waits long. */
static pthread_mutex_t verify_lock = PTHREAD_MUTEX_INITIALIZER;

static int verify_serialized(X509_STORE_CTX *sctx, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&verify_lock);
	int ok = X509_verify_cert(sctx);
	pthread_mutex_unlock(&verify_lock);
	return ok;
}

static int make_ctx(struct conn *c, struct err *err)
{
	char why[256];

	c->ctx = SSL_CTX_new(TLS_client_method());
	if (!c->ctx) {
		ssl_reason(why, sizeof(why), NULL);
		return err_set(err, ERR_INTERNAL, "cannot set up TLS: %s", why);
	}
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(c->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
	/* Partial writes let conn_write count progress per record; the
	 * buffer may move between retries because our offset advances. */
	SSL_CTX_set_mode(c->ctx,
	                 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (c->insecure) {
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
		return 0;
	}
	X509_STORE *store = trust_store(c->ca_file, err);
	if (!store)
		return -1;
	SSL_CTX_set1_cert_store(c->ctx, store);
	X509_STORE_free(store); /* the context holds its own reference */
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, verify_cb);
	SSL_CTX_set_cert_verify_callback(c->ctx, verify_serialized, NULL);
	return 0;
}

static int tls_handshake(struct conn *c, struct err *err)
{
	char why[256];
	BIO *bio;
	bool ip = is_ip_literal(c->host);

	c->ssl = SSL_new(c->ctx);
	if (!c->ssl || !(bio = bio_new(c))) {
		c->tls_dead = true;
		ssl_reason(why, sizeof(why), NULL);
		return err_set(err, ERR_INTERNAL, "cannot set up TLS: %s", why);
	}
	SSL_set_bio(c->ssl, bio, bio);
	SSL_set_app_data(c->ssl, c);
	SSL_set_connect_state(c->ssl);
	if (!ip)
		SSL_set_tlsext_host_name(c->ssl, c->host);
	if (!c->insecure) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
		X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, c->host)
		            : X509_VERIFY_PARAM_set1_host(vp, c->host, 0);
		if (ok != 1) {
			c->tls_dead = true;
			ERR_clear_error();
			err_set(err, ERR_CONFIG, "cannot check TLS certificates for host \"%s\"",
			        c->host);
			err_hint(err, "check the host name");
			return -1;
		}
	}

	int64_t deadline = now_ms() + c->timeout_ms;
	for (;;) {
		ERR_clear_error();
		c->io_errno = 0;
		int r = SSL_do_handshake(c->ssl);
		if (r == 1)
			break;
		int e = SSL_get_error(c->ssl, r);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			return handshake_error(c, e, err);
		int w = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline, NULL);
		if (w == 0) {
			char t[32];
			c->tls_dead = true;
			err_set(err, ERR_TRANSIENT, "TLS handshake with %s timed out after %s",
			        c->where, secs(t, sizeof(t), c->timeout_ms));
			err_hint(err, HINT_TLS_PORT);
			return -1;
		}
		if (w < 0) {
			c->tls_dead = true;
			return io_error(c, err, "negotiating TLS", errno);
		}
	}
	snprintf(c->tls_desc, sizeof(c->tls_desc), "%s %s", SSL_get_version(c->ssl),
	         SSL_get_cipher_name(c->ssl));
	return 0;
}

/* Drop TLS state and the socket after a failure that leaves the stream
 * unusable; later calls report the connection as closed. */
static void drop(struct conn *c)
{
	if (c->ssl) {
		SSL_free(c->ssl); /* frees the BIO too */
		c->ssl = NULL;
	}
	ERR_clear_error();
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

/* ---- the public functions ---- */

struct conn *conn_open(const struct conn_opts *opts, struct err *err)
{
	if (!opts->host || !opts->host[0]) {
		err_set(err, ERR_CONFIG, "no server host name given");
		return NULL;
	}
	if (opts->port == 0) {
		err_set(err, ERR_CONFIG, "no port given for server %s", opts->host);
		return NULL;
	}

	struct conn *c = xcalloc(1, sizeof(*c));
	c->fd = -1;
	c->host = xstrdup(opts->host);
	c->port = opts->port;
	c->ca_file = opts->ca_file ? xstrdup(opts->ca_file) : NULL;
	c->insecure = opts->insecure;
	c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	snprintf(c->where, sizeof(c->where), strchr(c->host, ':') ? "[%s]:%u" : "%s:%u", c->host,
	         (unsigned)c->port);
	snprintf(c->tls_desc, sizeof(c->tls_desc), "plain");

	/* For implicit TLS the context (and so the CA file) is checked
	 * before any traffic; a plain connection makes it at STARTTLS, as
	 * loading the system trust store costs a few milliseconds. */
	if ((opts->tls && make_ctx(c, err) < 0) || tcp_connect(c, opts, err) < 0 ||
	    (opts->tls && tls_handshake(c, err) < 0)) {
		conn_close(&c);
		return NULL;
	}
	return c;
}

int conn_starttls(struct conn *c, struct err *err)
{
	if (c->fd < 0)
		return closed_error(c, err, "starting TLS");
	if (c->ssl)
		return err_set(err, ERR_INTERNAL, "STARTTLS on %s: TLS is already on", c->where);
	if (flush_out(c, err) < 0)
		return -1;
	if ((!c->ctx && make_ctx(c, err) < 0) || tls_handshake(c, err) < 0) {
		drop(c);
		return -1;
	}
	return 0;
}

static ssize_t raw_read(struct conn *c, uint8_t *buf, size_t len, int timeout_ms,
			struct err *err)
{
	int tmo = timeout_ms < 0 ? c->timeout_ms : timeout_ms;
	int64_t deadline = now_ms() + tmo;
	size_t got = 0;

	if (c->fd < 0)
		return closed_error(c, err, "receiving");
	if (len == 0)
		return err_set(err, ERR_INTERNAL, "conn_read: empty buffer");
	for (;;) {
		short want = POLLIN;
		if (c->ssl) {
			ERR_clear_error();
			c->io_errno = 0;
			if (SSL_read_ex(c->ssl, buf, len, &got) == 1)
				break;
			int e = SSL_get_error(c->ssl, 0);
			if (e == SSL_ERROR_ZERO_RETURN)
				return 0;
			if (e == SSL_ERROR_SYSCALL) {
				c->tls_dead = true;
				ERR_clear_error();
				if (c->io_errno)
					return io_error(c, err, "receiving", c->io_errno);
				return 0;
			}
			if (e == SSL_ERROR_WANT_WRITE)
				want = POLLOUT;
			else if (e != SSL_ERROR_WANT_READ) {
				char why[256];
				c->tls_dead = true;
				return err_set(
				    err, ERR_TRANSIENT,
				    "connection to %s lost while receiving: TLS error: %s",
				    c->where, ssl_reason(why, sizeof(why), NULL));
			}
		} else {
			ssize_t n = recv(c->fd, buf, len, 0);
			if (n > 0) {
				got = (size_t)n;
				break;
			}
			if (n == 0)
				return 0;
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return io_error(c, err, "receiving", errno);
		}
		int w = wait_fd(c->fd, want, deadline, NULL);
		if (w == 0) {
			char t[32];
			return err_set(err, ERR_TRANSIENT,
			               "timed out after %s waiting for data from %s",
			               secs(t, sizeof(t), tmo), c->where);
		}
		if (w < 0)
			return io_error(c, err, "receiving", errno);
	}
	c->rx_bytes += got;
	return (ssize_t)got;
}

#define ZBUF 65536
/* Corked bytes kept before a write: four full TLS records. */
#define CORK_MAX (64 * 1024)

ssize_t conn_read(struct conn *c, uint8_t *buf, size_t len, int timeout_ms, struct err *err)
{
	ssize_t n;
	/* whatever we wait for may depend on what we have not sent yet */
	if (c->out_len && !c->flushing && flush_out(c, err) < 0)
		return -1;
	if (!c->compress) {
		n = raw_read(c, buf, len, timeout_ms, err);
	} else {
		/* inflate what is there; read more only when it gave nothing */
		for (;;) {
			c->zin.next_out = buf;
			c->zin.avail_out = (uInt)(len > ZBUF ? ZBUF : len);
			int zr = inflate(&c->zin, Z_SYNC_FLUSH);
			size_t got = (size_t)(c->zin.next_out - buf);
			if (zr != Z_OK && zr != Z_BUF_ERROR && zr != Z_STREAM_END)
				return err_set(err, ERR_TRANSIENT,
					       "connection to %s: the compressed stream is damaged "
					       "(%s)",
					       c->where, c->zin.msg ? c->zin.msg : "inflate failed");
			if (got) {
				n = (ssize_t)got;
				break;
			}
			if (c->zin_eof)
				return 0;
			ssize_t r = raw_read(c, c->zin_buf, ZBUF, timeout_ms, err);
			if (r < 0)
				return -1;
			if (r == 0) {
				c->zin_eof = true;
				return 0;
			}
			c->zin.next_in = c->zin_buf;
			c->zin.avail_in = (uInt)r;
		}
	}
	if (n > 0 && c->trace)
		c->trace(c->trace_ctx, '<', buf, (size_t)n);
	return n;
}

int conn_compress_start(struct conn *c, struct err *err)
{
	/* what was written before the server's OK goes out uncompressed */
	if (flush_out(c, err) < 0)
		return -1;
	if (c->compress)
		return 0;
	memset(&c->zin, 0, sizeof(c->zin));
	memset(&c->zout, 0, sizeof(c->zout));
	if (inflateInit2(&c->zin, -15) != Z_OK)
		return err_set(err, ERR_INTERNAL, "cannot start decompression");
	/* level 1: the point is fewer bytes on a slow link, not CPU */
	if (deflateInit2(&c->zout, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		inflateEnd(&c->zin);
		return err_set(err, ERR_INTERNAL, "cannot start compression");
	}
	c->zin_buf = xmalloc(ZBUF);
	c->zout_buf = xmalloc(ZBUF);
	c->compress = true;
	return 0;
}

bool conn_is_compressed(const struct conn *c)
{
	return c->compress;
}

bool conn_has_buffered(struct conn *c)
{
	return (c->compress && c->zin.avail_in > 0) || (c->ssl && SSL_pending(c->ssl) > 0);
}

int conn_wait_readable(struct conn *c, int timeout_ms, struct err *err)
{
	int tmo = timeout_ms < 0 ? c->timeout_ms : timeout_ms;

	if (c->fd < 0)
		return closed_error(c, err, "receiving");
	if (c->out_len && !c->flushing && flush_out(c, err) < 0)
		return -1;
	if (conn_has_buffered(c))
		return 1;
	int w = wait_fd(c->fd, POLLIN, now_ms() + tmo, NULL);
	if (w < 0)
		return io_error(c, err, "receiving", errno);
	return w;
}

void conn_set_drain(struct conn *c, conn_drain_fn *fn, void *ctx)
{
	c->drain = fn;
	c->drain_ctx = ctx;
}

static int raw_write(struct conn *c, const void *data, size_t len, struct err *err);

/* Put bytes on the wire now: deflated first when COMPRESS is on. */
static int write_out(struct conn *c, const void *data, size_t len, struct err *err)
{
	if (!c->compress)
		return raw_write(c, data, len, err);
	/* Deflate it all, then a sync flush: a command must reach the
	 * server now, not when more data comes along. */
	c->zout.next_in = (Bytef *)(uintptr_t)data;
	c->zout.avail_in = (uInt)len;
	for (;;) {
		c->zout.next_out = c->zout_buf;
		c->zout.avail_out = ZBUF;
		if (deflate(&c->zout, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
			return err_set(err, ERR_INTERNAL, "compression failed");
		size_t out = ZBUF - c->zout.avail_out;
		if (out && raw_write(c, c->zout_buf, out, err) < 0)
			return -1;
		if (c->zout.avail_in == 0 && c->zout.avail_out != 0)
			return 0;
	}
}

static int flush_out(struct conn *c, struct err *err)
{
	if (!c->out_len)
		return 0;
	c->flushing = true;
	int r = write_out(c, c->out_buf, c->out_len, err);
	c->flushing = false;
	c->out_len = 0;
	return r;
}

int conn_flush(struct conn *c, struct err *err)
{
	return flush_out(c, err);
}

void conn_set_cork(struct conn *c, bool on)
{
	c->cork = on;
	if (on && !c->out_buf)
		c->out_buf = xmalloc(CORK_MAX);
}

int conn_write(struct conn *c, const void *data, size_t len, struct err *err)
{
	if (c->trace && len)
		c->trace(c->trace_ctx, '>', data, len);
	if (!c->cork || c->flushing) {
		if (c->out_len && !c->flushing && flush_out(c, err) < 0)
			return -1;
		return write_out(c, data, len, err);
	}
	if (c->out_len + len > CORK_MAX && flush_out(c, err) < 0)
		return -1;
	if (len >= CORK_MAX)
		return write_out(c, data, len, err);
	memcpy(c->out_buf + c->out_len, data, len);
	c->out_len += len;
	return 0;
}

static int raw_write(struct conn *c, const void *data, size_t len, struct err *err)
{
	const uint8_t *p = data;
	size_t off = 0;
	int64_t deadline = now_ms() + c->timeout_ms;
	/* When a drain read nothing (EOF, or an owner that chose not to
	 * read), stop waking up for input until something was read, or we
	 * would spin on a readable socket. */
	uint64_t idle_rx = UINT64_MAX;

	if (c->fd < 0)
		return closed_error(c, err, "sending");
	while (off < len) {
		size_t done = 0, chunk = len - off;
		short want = POLLOUT;

		/* a retry after WANT_WRITE passes the same (p + off, chunk) */
		if (chunk > WRITE_CHUNK)
			chunk = WRITE_CHUNK;

		if (c->ssl) {
			ERR_clear_error();
			c->io_errno = 0;
			if (SSL_write_ex(c->ssl, p + off, chunk, &done) == 1)
				goto sent;
			int e = SSL_get_error(c->ssl, 0);
			if (e == SSL_ERROR_WANT_READ) {
				want = POLLIN;
			} else if (e == SSL_ERROR_ZERO_RETURN) {
				c->tls_dead = true;
				return closed_error(c, err, "sending");
			} else if (e == SSL_ERROR_SYSCALL) {
				c->tls_dead = true;
				ERR_clear_error();
				if (c->io_errno)
					return io_error(c, err, "sending", c->io_errno);
				return closed_error(c, err, "sending");
			} else if (e != SSL_ERROR_WANT_WRITE) {
				char why[256];
				c->tls_dead = true;
				return err_set(err, ERR_TRANSIENT,
				               "connection to %s lost while sending: TLS error: %s",
				               c->where, ssl_reason(why, sizeof(why), NULL));
			}
		} else {
			ssize_t n = send(c->fd, p + off, chunk, MSG_NOSIGNAL);
			if (n >= 0) {
				done = (size_t)n;
				goto sent;
			}
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return io_error(c, err, "sending", errno);
		}

		short events = want, revents = 0;
		bool can_drain =
		    want == POLLOUT && c->drain && !c->draining && c->rx_bytes != idle_rx;
		if (can_drain)
			events |= POLLIN;
		int w = wait_fd(c->fd, events, deadline, &revents);
		if (w == 0) {
			char t[32];
			return err_set(err, ERR_TRANSIENT, "timed out after %s sending to %s",
			               secs(t, sizeof(t), c->timeout_ms), c->where);
		}
		if (w < 0)
			return io_error(c, err, "sending", errno);
		if (can_drain && !(revents & (POLLOUT | POLLERR | POLLHUP)) && (revents & POLLIN)) {
			uint64_t before = c->rx_bytes;
			c->draining = true;
			int r = c->drain(c->drain_ctx, c, err);
			c->draining = false;
			if (r < 0)
				return -1;
			/* Bytes coming in show the connection is alive: a server
			 * streaming a long FETCH reply may not read our bytes
			 * for longer than the timeout. */
			if (c->rx_bytes == before)
				idle_rx = before;
			else
				deadline = now_ms() + c->timeout_ms;
		}
		continue;
	sent:
		off += done;
		deadline = now_ms() + c->timeout_ms;
	}
	return 0;
}

void conn_set_trace(struct conn *c, conn_trace_fn *fn, void *ctx)
{
	c->trace = fn;
	c->trace_ctx = ctx;
}

bool conn_is_tls(const struct conn *c)
{
	return c->ssl != NULL;
}

const char *conn_host(const struct conn *c)
{
	return c->host;
}

uint16_t conn_port(const struct conn *c)
{
	return c->port;
}

const char *conn_tls_description(const struct conn *c)
{
	return c->ssl ? c->tls_desc : "plain";
}

void conn_close(struct conn **cp)
{
	struct conn *c = cp ? *cp : NULL;

	if (!c)
		return;
	if (c->ssl && !c->tls_dead && c->fd >= 0 && SSL_is_init_finished(c->ssl)) {
		/* One non-blocking try: close_notify goes out if the socket
		 * has room; we do not wait for the server's. */
		ERR_clear_error();
		SSL_shutdown(c->ssl);
	}
	drop(c);
	SSL_CTX_free(c->ctx);
	BIO_meth_free(c->biometh);
	X509_free(c->leaf);
	X509_free(c->bad_cert);
	if (c->compress) {
		inflateEnd(&c->zin);
		deflateEnd(&c->zout);
	}
	free(c->zin_buf);
	free(c->zout_buf);
	free(c->out_buf);
	free(c->host);
	free(c->ca_file);
	free(c);
	*cp = NULL;
}
