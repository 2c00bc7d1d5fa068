/* test_conn.c - conn against real sockets on loopback.
 *
 * A server thread per test plays the peer (plain or TLS through OpenSSL's
 * own server side); certificates are made at start-up with the OpenSSL
 * API into a temporary directory.  Nothing is mocked.  The tests assert
 * the exact words a person will see.
 *
 * SIGPIPE keeps its default action in this process: if conn ever wrote to
 * a closed socket without MSG_NOSIGNAL, the test would die.  The server
 * thread blocks SIGPIPE for itself only (its stock socket BIO uses
 * write()).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/conn.h"

#define BULK (8u << 20)
#define TEST_HOST "imap.test.example"
#define SAN_GOOD "DNS:imap.test.example, DNS:*.wild.example, IP:127.0.0.1, IP:::1"

/* ---- certificates ---- */

struct pki {
	char dir[64];
	char ca_path[128];
	EVP_PKEY *ca_key, *key;
	X509 *ca;
	X509 *good;    /* SAN_GOOD */
	X509 *partial; /* SAN f*.part.example only */
	X509 *cn_only; /* no SAN, CN=cn.test.example */
	X509 *expired;
	long serial;
	uint8_t *pattern; /* BULK bytes both sides send and check */
};

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v;
	X509V3_set_ctx_nodb(&v);
	X509V3_set_ctx(&v, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v, nid, value);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

/* A certificate for key, signed by issuer (NULL: self-signed CA), valid
 * from now+from_s to now+to_s seconds. */
static X509 *make_cert(struct pki *p, EVP_PKEY *key, const char *cn, const char *san, X509 *issuer,
                       EVP_PKEY *issuer_key, long from_s, long to_s)
{
	X509 *x = X509_new();
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), ++p->serial);
	X509_gmtime_adj(X509_getm_notBefore(x), from_s);
	X509_gmtime_adj(X509_getm_notAfter(x), to_s);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509 *signer = issuer ? issuer : x;
	if (!issuer) {
		add_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		add_ext(x, signer, NID_basic_constraints, "CA:FALSE");
		add_ext(x, signer, NID_ext_key_usage, "serverAuth");
	}
	if (san)
		add_ext(x, signer, NID_subject_alt_name, san);
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

static int pki_setup(void **state)
{
	struct pki *p = calloc(1, sizeof(*p));
	assert_non_null(p);
	snprintf(p->dir, sizeof(p->dir), "/tmp/test_conn.XXXXXX");
	assert_non_null(mkdtemp(p->dir));
	snprintf(p->ca_path, sizeof(p->ca_path), "%s/ca.pem", p->dir);

	p->ca_key = EVP_EC_gen("P-256");
	p->key = EVP_EC_gen("P-256");
	assert_non_null(p->ca_key);
	assert_non_null(p->key);
	p->ca = make_cert(p, p->ca_key, "imapmig test CA", NULL, NULL, NULL, -3600, 86400);
	p->good = make_cert(p, p->key, TEST_HOST, SAN_GOOD, p->ca, p->ca_key, -3600, 86400);
	p->partial =
	    make_cert(p, p->key, "part", "DNS:f*.part.example", p->ca, p->ca_key, -3600, 86400);
	p->cn_only = make_cert(p, p->key, "cn.test.example", NULL, p->ca, p->ca_key, -3600, 86400);
	p->expired = make_cert(p, p->key, TEST_HOST, SAN_GOOD, p->ca, p->ca_key, -7200, -3600);

	p->pattern = malloc(BULK);
	assert_non_null(p->pattern);
	for (size_t i = 0; i < BULK; i++)
		p->pattern[i] = (uint8_t)(i % 251);

	FILE *f = fopen(p->ca_path, "w");
	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, p->ca), 1);
	fclose(f);
	*state = p;
	return 0;
}

static int pki_teardown(void **state)
{
	struct pki *p = *state;
	unlink(p->ca_path);
	rmdir(p->dir);
	X509_free(p->ca);
	X509_free(p->good);
	X509_free(p->partial);
	X509_free(p->cn_only);
	X509_free(p->expired);
	EVP_PKEY_free(p->ca_key);
	EVP_PKEY_free(p->key);
	free(p->pattern);
	free(p);
	return 0;
}

/* ---- the server thread ---- */

enum srv_mode {
	SRV_ECHO,     /* (TLS) echo one line, then close_notify */
	SRV_TRUNCATE, /* TLS: send a line, close TCP without close_notify */
	SRV_SILENT,   /* accept, say nothing, wait for the client to go */
	SRV_STARTTLS, /* plain greeting, STARTTLS, then TLS echo */
	SRV_BULK,     /* write BULK bytes, then read BULK bytes */
	SRV_CLOSE,    /* accept and close at once */
};

struct server {
	enum srv_mode mode;
	bool tls;
	int lfd;
	uint16_t port;
	SSL_CTX *ctx;
	const uint8_t *pattern;
	pthread_t th;
	/* results, read after join */
	bool handshake_ok;
	size_t got;
	bool data_ok;
};

/* Blocking I/O helpers that work on either a plain fd or an SSL. */
static int s_read(int fd, SSL *ssl, void *buf, size_t len)
{
	if (ssl) {
		size_t n = 0;
		return SSL_read_ex(ssl, buf, len, &n) == 1 ? (int)n : -1;
	}
	ssize_t n = recv(fd, buf, len, 0);
	return n > 0 ? (int)n : -1;
}

static int s_write(int fd, SSL *ssl, const void *buf, size_t len)
{
	if (ssl) {
		size_t n = 0;
		return SSL_write_ex(ssl, buf, len, &n) == 1 && n == len ? 0 : -1;
	}
	const uint8_t *p = buf;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One line including "\n" into buf (NUL-terminated); length or -1. */
static int s_line(int fd, SSL *ssl, char *buf, size_t len)
{
	size_t n = 0;
	while (n + 1 < len) {
		if (s_read(fd, ssl, buf + n, 1) != 1)
			return -1;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return (int)n;
}

static SSL *s_accept_tls(struct server *s, int fd)
{
	SSL *ssl = SSL_new(s->ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_accept(ssl) != 1) {
		SSL_free(ssl);
		ERR_clear_error();
		return NULL;
	}
	s->handshake_ok = true;
	return ssl;
}

static void *server_main(void *arg)
{
	struct server *s = arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	struct pollfd pfd = {.fd = s->lfd, .events = POLLIN};
	if (poll(&pfd, 1, 5000) != 1)
		return NULL;
	int fd = accept(s->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	SSL *ssl = NULL;
	char line[256];

	if (s->mode == SRV_STARTTLS) {
		s_write(fd, NULL, "* OK ready\r\n", 12);
		if (s_line(fd, NULL, line, sizeof(line)) < 0 || strcmp(line, "a STARTTLS\r\n"))
			goto out;
		s_write(fd, NULL, "a OK go\r\n", 9);
		if (!(ssl = s_accept_tls(s, fd)))
			goto out;
		s->mode = SRV_ECHO;
	} else if (s->tls && s->mode != SRV_SILENT && s->mode != SRV_CLOSE) {
		if (!(ssl = s_accept_tls(s, fd)))
			goto out;
	}

	switch (s->mode) {
	case SRV_ECHO: {
		int n = s_line(fd, ssl, line, sizeof(line));
		if (n > 0)
			s_write(fd, ssl, line, (size_t)n);
		if (ssl)
			SSL_shutdown(ssl);
		break;
	}
	case SRV_TRUNCATE:
		s_write(fd, ssl, "* BYE\r\n", 7);
		break;
	case SRV_SILENT:
		while (recv(fd, line, sizeof(line), 0) > 0)
			;
		break;
	case SRV_BULK: {
		uint8_t *b = malloc(BULK);
		if (s_write(fd, ssl, s->pattern, BULK) == 0) {
			s->data_ok = true;
			while (s->got < BULK) {
				int n = s_read(fd, ssl, b, BULK - s->got);
				if (n <= 0)
					break;
				if (memcmp(b, s->pattern + s->got, (size_t)n) != 0)
					s->data_ok = false;
				s->got += (size_t)n;
			}
		}
		free(b);
		if (ssl)
			SSL_shutdown(ssl);
		break;
	}
	case SRV_STARTTLS:
	case SRV_CLOSE:
		break;
	}
out:
	SSL_free(ssl);
	ERR_clear_error();
	close(fd);
	return NULL;
}

/* Listen on loopback (family AF_INET or AF_INET6) and start the thread;
 * cert NULL = plain.  Returns false when the family is not available. */
static bool server_start(struct server *s, struct pki *p, int family, enum srv_mode mode,
                         X509 *cert)
{
	memset(s, 0, sizeof(*s));
	s->mode = mode;
	s->tls = cert != NULL;
	s->pattern = p->pattern;
	s->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->lfd >= 0);
	int one = 1;
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (mode == SRV_BULK) {
		/* small buffers, inherited by the accepted socket, so both
		 * directions fill up long before BULK bytes; not below two
		 * loopback MSS (64 KiB), or silly-window avoidance stalls the
		 * sender on the persist timer for seconds */
		int sz = 128 * 1024;
		setsockopt(s->lfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(s->lfd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	struct sockaddr_storage ss = {0};
	socklen_t sl;
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		sl = sizeof(*a);
	}
	if (bind(s->lfd, (struct sockaddr *)&ss, sl) < 0) {
		close(s->lfd);
		return false;
	}
	assert_int_equal(listen(s->lfd, 4), 0);
	assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&ss, &sl), 0);
	s->port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
	                                  : ((struct sockaddr_in6 *)&ss)->sin6_port);
	if (cert) {
		s->ctx = SSL_CTX_new(TLS_server_method());
		assert_non_null(s->ctx);
		assert_int_equal(SSL_CTX_use_certificate(s->ctx, cert), 1);
		assert_int_equal(SSL_CTX_use_PrivateKey(s->ctx, p->key), 1);
	}
	assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
	return true;
}

static void server_join(struct server *s)
{
	pthread_join(s->th, NULL);
	close(s->lfd);
	SSL_CTX_free(s->ctx);
}

/* ---- helpers on the client side ---- */

static struct conn_opts opts_for(const struct server *s, const char *host, const char *addr,
                                 const char *ca)
{
	struct conn_opts o = {0};
	o.host = host;
	o.port = s->port;
	o.connect_addr = addr;
	o.tls = s->tls;
	o.ca_file = ca;
	o.timeout_ms = 5000;
	return o;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Read exactly len bytes (test helper). */
static void read_exact(struct conn *c, char *buf, size_t len)
{
	struct err err = {0};
	size_t got = 0;
	while (got < len) {
		ssize_t n = conn_read(c, (uint8_t *)buf + got, len - got, -1, &err);
		if (n <= 0)
			fail_msg("read: %zd %s", n, err.what);
		got += (size_t)n;
	}
	buf[got] = '\0';
}

struct trace_log {
	char in[256], out[256];
};

static void trace_cb(void *ctx, char dir, const uint8_t *data, size_t len)
{
	struct trace_log *t = ctx;
	char *dst = dir == '<' ? t->in : t->out;
	strncat(dst, (const char *)data, len < 100 ? len : 100);
}

/* A full TLS round trip: connect, echo a line, see close_notify as EOF. */
static void echo_ok(struct server *s, const char *host, const char *addr, const char *ca)
{
	struct err err = {0};
	struct conn_opts o = opts_for(s, host, addr, ca);
	struct conn *c = conn_open(&o, &err);
	if (!c)
		fail_msg("conn_open: %s -- %s", err.what, err.hint);
	struct trace_log t = {0};
	conn_set_trace(c, trace_cb, &t);
	assert_true(conn_is_tls(c));
	assert_string_equal(conn_host(c), host);
	assert_int_equal(conn_port(c), s->port);
	assert_true(strncmp(conn_tls_description(c), "TLSv1.", 6) == 0);
	assert_int_equal(conn_write(c, "hello\r\n", 7, &err), 0);
	char buf[16];
	read_exact(c, buf, 7);
	assert_string_equal(buf, "hello\r\n");
	assert_int_equal(conn_read(c, (uint8_t *)buf, sizeof(buf), -1, &err), 0);
	assert_string_equal(t.in, "hello\r\n");
	assert_string_equal(t.out, "hello\r\n");
	conn_close(&c);
	assert_null(c);
	conn_close(&c); /* safe on NULL */
	server_join(s);
	assert_true(s->handshake_ok);
}

/* conn_open must fail; returns the error. */
static struct err open_fails(struct server *s, struct conn_opts *o)
{
	struct err err = {0};
	struct conn *c = conn_open(o, &err);
	assert_null(c);
	if (s)
		server_join(s);
	return err;
}

/* ---- the tests ---- */

static void test_tls_verify_ok(void **state)
{
	struct pki *p = *state;
	struct server s;
	server_start(&s, p, AF_INET, SRV_ECHO, p->good);
	echo_ok(&s, TEST_HOST, "127.0.0.1", p->ca_path);
}

static void test_tls_ip_literal(void **state)
{
	struct pki *p = *state;
	struct server s;
	server_start(&s, p, AF_INET, SRV_ECHO, p->good);
	echo_ok(&s, "127.0.0.1", NULL, p->ca_path);
}

static void test_tls_ipv6(void **state)
{
	struct pki *p = *state;
	struct server s;
	if (!server_start(&s, p, AF_INET6, SRV_ECHO, p->good))
		skip();
	echo_ok(&s, "::1", NULL, p->ca_path);

	/* and a name verified over IPv6 with connect_addr */
	server_start(&s, p, AF_INET6, SRV_ECHO, p->good);
	echo_ok(&s, "x.wild.example", "::1", p->ca_path);
}

static void test_tls_wildcard(void **state)
{
	struct pki *p = *state;
	struct server s;
	server_start(&s, p, AF_INET, SRV_ECHO, p->good);
	echo_ok(&s, "mail.wild.example", "127.0.0.1", p->ca_path);

	/* a wildcard covers one label only */
	server_start(&s, p, AF_INET, SRV_ECHO, p->good);
	struct conn_opts o = opts_for(&s, "a.b.wild.example", "127.0.0.1", p->ca_path);
	struct err err = open_fails(&s, &o);
	assert_int_equal(err.kind, ERR_ACCOUNT);
	assert_string_equal(err.what, "TLS certificate does not match a.b.wild.example: it is "
	                              "for imap.test.example, *.wild.example, 127.0.0.1, ::1");

	/* no partial wildcards: f*.part.example does not cover foo.part.example */
	server_start(&s, p, AF_INET, SRV_ECHO, p->partial);
	o = opts_for(&s, "foo.part.example", "127.0.0.1", p->ca_path);
	err = open_fails(&s, &o);
	assert_string_equal(err.what, "TLS certificate does not match foo.part.example: it is for "
	                              "f*.part.example");
}

static void test_tls_mismatch(void **state)
{
	struct pki *p = *state;
	struct server s;
	server_start(&s, p, AF_INET, SRV_ECHO, p->good);
	struct conn_opts o = opts_for(&s, "localhost", "127.0.0.1", p->ca_path);
	struct err err = open_fails(&s, &o);
	assert_false(s.handshake_ok);
	assert_int_equal(err.kind, ERR_ACCOUNT);
	assert_string_equal(err.what, "TLS certificate does not match localhost: it is for "
	                              "imap.test.example, *.wild.example, 127.0.0.1, ::1");
	assert_string_equal(err.hint, "connect with the name on the certificate (its FQDN)");
	assert_string_equal(err.host, ""); /* callers add where */

	/* an IP literal must match a SAN IP entry */
	server_start(&s, p, AF_INET, SRV_ECHO, p->partial);
	o = opts_for(&s, "127.0.0.1", NULL, p->ca_path);
	err = open_fails(&s, &o);
	assert_string_equal(err.what, "TLS certificate does not match 127.0.0.1: it is for "
	                              "f*.part.example");

	/* no SAN: the names come from the CN */
	server_start(&s, p, AF_INET, SRV_ECHO, p->cn_only);
	o = opts_for(&s, TEST_HOST, "127.0.0.1", p->ca_path);
	err = open_fails(&s, &o);
	assert_string_equal(err.what, "TLS certificate does not match imap.test.example: it "
	                              "is for cn.test.example");
}

static void test_tls_untrusted(void **state)
{
	struct pki *p = *state;
	struct server s;
	char want[256];
	server_start(&s, p, AF_INET, SRV_ECHO, p->good);
	struct conn_opts o = opts_for(&s, TEST_HOST, "127.0.0.1", NULL);
	struct err err = open_fails(&s, &o);
	assert_int_equal(err.kind, ERR_ACCOUNT);
	snprintf(want, sizeof(want),
	         "TLS certificate chain of imap.test.example:%u could not be verified: "
	         "unable to get local issuer certificate",
	         s.port);
	assert_string_equal(err.what, want);
	assert_string_equal(err.hint, "if the server uses a private or self-signed CA, pass "
	                              "that CA's certificate with --ca-file");
}

static void test_tls_expired(void **state)
{
	struct pki *p = *state;
	struct server s;
	char want[256];
	server_start(&s, p, AF_INET, SRV_ECHO, p->expired);
	struct conn_opts o = opts_for(&s, TEST_HOST, "127.0.0.1", p->ca_path);
	struct err err = open_fails(&s, &o);
	assert_int_equal(err.kind, ERR_ACCOUNT);
	snprintf(want, sizeof(want),
	         "TLS certificate of imap.test.example:%u has expired "
	         "(valid until ",
	         s.port);
	assert_true(strncmp(err.what, want, strlen(want)) == 0);
	assert_string_equal(err.hint, "the server's certificate must be renewed");
}

static void test_tls_insecure(void **state)
{
	struct pki *p = *state;
	struct server s;
	server_start(&s, p, AF_INET, SRV_ECHO, p->expired);
	struct err err = {0};
	/* wrong name, expired, unknown CA: insecure connects anyway */
	struct conn_opts o = opts_for(&s, "localhost", "127.0.0.1", NULL);
	o.insecure = true;
	struct conn *c = conn_open(&o, &err);
	if (!c)
		fail_msg("%s", err.what);
	assert_int_equal(conn_write(c, "x\n", 2, &err), 0);
	char buf[4];
	read_exact(c, buf, 2);
	conn_close(&c);
	server_join(&s);
}

static void test_bad_ca_file(void **state)
{
	struct conn_opts o = {
	    .host = TEST_HOST, .port = 993, .tls = true, .ca_file = "/nonexistent/ca.pem"};
	struct err err = open_fails(NULL, &o);
	assert_int_equal(err.kind, ERR_CONFIG);
	assert_true(strncmp(err.what, "cannot load CA file /nonexistent/ca.pem: ", 41) == 0);
}

static void test_tls_truncated_is_eof(void **state)
{
	struct pki *p = *state;
	struct server s;
	struct err err = {0};
	server_start(&s, p, AF_INET, SRV_TRUNCATE, p->good);
	struct conn_opts o = opts_for(&s, TEST_HOST, "127.0.0.1", p->ca_path);
	struct conn *c = conn_open(&o, &err);
	assert_non_null(c);
	char buf[16];
	read_exact(c, buf, 7);
	assert_string_equal(buf, "* BYE\r\n");
	assert_int_equal(conn_read(c, (uint8_t *)buf, sizeof(buf), -1, &err), 0);
	conn_close(&c);
	server_join(&s);
}

static void test_refused(void **state)
{
	/* a port nobody listens on: bind one, note it, close it */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sl), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
	uint16_t port = ntohs(a.sin_port);
	close(fd);

	char want[256];
	struct conn_opts o = {.host = "127.0.0.1", .port = port, .timeout_ms = 2000};
	struct err err = open_fails(NULL, &o);
	assert_int_equal(err.kind, ERR_TRANSIENT);
	snprintf(want, sizeof(want), "cannot connect to 127.0.0.1:%u: connection refused", port);
	assert_string_equal(err.what, want);
	assert_string_equal(err.hint, "is the server running and the port right?");

	/* with connect_addr the address tried is named too */
	o.host = TEST_HOST;
	o.connect_addr = "127.0.0.1";
	err = open_fails(NULL, &o);
	snprintf(want, sizeof(want),
	         "cannot connect to imap.test.example:%u (127.0.0.1): connection refused", port);
	assert_string_equal(err.what, want);

	o.connect_addr = "not-an-ip";
	err = open_fails(NULL, &o);
	assert_int_equal(err.kind, ERR_CONFIG);
	snprintf(want, sizeof(want),
	         "cannot connect to imap.test.example:%u: connect address \"not-an-ip\" is "
	         "not an IP address",
	         port);
	assert_string_equal(err.what, want);
}

static void test_name_not_found(void **state)
{
	struct conn_opts o = {.host = "no-such-host.invalid", .port = 993};
	struct err err = open_fails(NULL, &o);
	if (err.kind == ERR_TRANSIENT && strstr(err.what, "temporary failure"))
		skip(); /* no resolver reachable here: the other answer */
	assert_int_equal(err.kind, ERR_CONFIG);
	assert_string_equal(err.what, "cannot connect to no-such-host.invalid:993: host name "
	                              "not found");
	assert_string_equal(err.hint, "check the host name");
}

static void test_connect_timeout(void **state)
{
	/* A listener that never accepts, with its queue full: Linux drops
	 * further SYNs, so the next connect hangs until our timeout. */
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof(a);
	assert_int_equal(bind(lfd, (struct sockaddr *)&a, sl), 0);
	assert_int_equal(listen(lfd, 0), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &sl), 0);
	int filler[4];
	for (int i = 0; i < 4; i++) {
		filler[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(filler[i], (struct sockaddr *)&a, sl);
	}
	usleep(50 * 1000);

	struct conn_opts o = {.host = "127.0.0.1", .port = ntohs(a.sin_port), .timeout_ms = 300};
	struct err err = {0};
	int64_t t0 = mono_ms();
	struct conn *c = conn_open(&o, &err);
	int64_t dt = mono_ms() - t0;
	for (int i = 0; i < 4; i++)
		close(filler[i]);
	close(lfd);
	if (c) {
		conn_close(&c);
		skip(); /* this kernel accepted anyway */
	}
	char want[256];
	snprintf(want, sizeof(want), "cannot connect to 127.0.0.1:%u: timed out after 0.3 s",
	         o.port);
	assert_string_equal(err.what, want);
	assert_int_equal(err.kind, ERR_TRANSIENT);
	assert_string_equal(err.hint, "is the server running and the port right? (a firewall "
	                              "may be dropping the connection)");
	assert_true(dt >= 250 && dt < 2000);
}

static void test_read_timeout(void **state)
{
	struct pki *p = *state;
	struct server s;
	struct err err = {0};
	char want[256];
	server_start(&s, p, AF_INET, SRV_SILENT, NULL);
	struct conn_opts o = opts_for(&s, "127.0.0.1", NULL, NULL);
	struct conn *c = conn_open(&o, &err);
	assert_non_null(c);
	assert_false(conn_is_tls(c));
	assert_string_equal(conn_tls_description(c), "plain");
	assert_false(conn_has_buffered(c));
	assert_int_equal(conn_wait_readable(c, 50, &err), 0);

	uint8_t buf[16];
	int64_t t0 = mono_ms();
	assert_int_equal(conn_read(c, buf, sizeof(buf), 300, &err), -1);
	int64_t dt = mono_ms() - t0;
	assert_true(dt >= 280 && dt < 1500);
	assert_int_equal(err.kind, ERR_TRANSIENT);
	snprintf(want, sizeof(want), "timed out after 0.3 s waiting for data from 127.0.0.1:%u",
	         s.port);
	assert_string_equal(err.what, want);
	conn_close(&c);
	server_join(&s);
}

static void test_tls_handshake_timeout(void **state)
{
	struct pki *p = *state;
	struct server s;
	char want[256];
	server_start(&s, p, AF_INET, SRV_SILENT, NULL);
	struct conn_opts o = opts_for(&s, "127.0.0.1", NULL, p->ca_path);
	o.tls = true;
	o.timeout_ms = 300;
	int64_t t0 = mono_ms();
	struct err err = open_fails(&s, &o);
	assert_true(mono_ms() - t0 < 1500);
	assert_int_equal(err.kind, ERR_TRANSIENT);
	snprintf(want, sizeof(want), "TLS handshake with 127.0.0.1:%u timed out after 0.3 s",
	         s.port);
	assert_string_equal(err.what, want);
}

static void test_tls_to_plain_port(void **state)
{
	struct pki *p = *state;
	struct server s;
	char want[256];
	server_start(&s, p, AF_INET, SRV_CLOSE, NULL);
	struct conn_opts o = opts_for(&s, "127.0.0.1", NULL, p->ca_path);
	o.tls = true;
	struct err err = open_fails(&s, &o);
	snprintf(want, sizeof(want), "TLS handshake with 127.0.0.1:%u failed: ", s.port);
	assert_true(strncmp(err.what, want, strlen(want)) == 0);
	assert_string_equal(err.hint, "is this a TLS port? imaps:// is usually port 993, "
	                              "imap:// (STARTTLS) port 143");
}

static void test_starttls(void **state)
{
	struct pki *p = *state;
	struct server s;
	struct err err = {0};
	char buf[64];
	server_start(&s, p, AF_INET, SRV_STARTTLS, p->good);
	struct conn_opts o = opts_for(&s, TEST_HOST, "127.0.0.1", p->ca_path);
	o.tls = false;
	struct conn *c = conn_open(&o, &err);
	assert_non_null(c);
	assert_false(conn_is_tls(c));
	read_exact(c, buf, 12);
	assert_string_equal(buf, "* OK ready\r\n");
	assert_int_equal(conn_write(c, "a STARTTLS\r\n", 12, &err), 0);
	read_exact(c, buf, 9);
	assert_string_equal(buf, "a OK go\r\n");
	if (conn_starttls(c, &err) < 0)
		fail_msg("%s", err.what);
	assert_true(conn_is_tls(c));
	assert_int_equal(conn_starttls(c, &err), -1); /* not twice */
	assert_int_equal(conn_write(c, "a NOOP\r\n", 8, &err), 0);
	read_exact(c, buf, 8);
	assert_string_equal(buf, "a NOOP\r\n");
	conn_close(&c);
	server_join(&s);
	assert_true(s.handshake_ok);
}

static void test_starttls_mismatch(void **state)
{
	struct pki *p = *state;
	struct server s;
	struct err err = {0};
	char buf[64];
	server_start(&s, p, AF_INET, SRV_STARTTLS, p->good);
	struct conn_opts o = opts_for(&s, "localhost", "127.0.0.1", p->ca_path);
	o.tls = false;
	struct conn *c = conn_open(&o, &err);
	assert_non_null(c);
	read_exact(c, buf, 12);
	assert_int_equal(conn_write(c, "a STARTTLS\r\n", 12, &err), 0);
	read_exact(c, buf, 9);
	assert_int_equal(conn_starttls(c, &err), -1);
	assert_int_equal(err.kind, ERR_ACCOUNT);
	assert_true(strncmp(err.what, "TLS certificate does not match localhost: it is for ", 52) ==
	            0);
	/* the connection is unusable afterwards, and says so */
	assert_int_equal(conn_write(c, "x", 1, &err), -1);
	assert_int_equal(err.kind, ERR_TRANSIENT);
	conn_close(&c);
	server_join(&s);
}

struct drain_state {
	const uint8_t *pattern;
	size_t got;
	int calls;
	bool ok;
};

static int drain_cb(void *ctx, struct conn *c, struct err *err)
{
	struct drain_state *d = ctx;
	uint8_t buf[65536];
	d->calls++;
	do {
		ssize_t n = conn_read(c, buf, sizeof(buf), -1, err);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		if (memcmp(buf, d->pattern + d->got, (size_t)n) != 0)
			d->ok = false;
		d->got += (size_t)n;
	} while (conn_has_buffered(c));
	return 0;
}

static void bulk(struct pki *p, bool tls)
{
	struct server s;
	struct err err = {0};
	server_start(&s, p, AF_INET, SRV_BULK, tls ? p->good : NULL);
	struct conn_opts o = opts_for(&s, TEST_HOST, "127.0.0.1", p->ca_path);
	struct conn *c = conn_open(&o, &err);
	if (!c)
		fail_msg("%s", err.what);
	struct drain_state d = {.pattern = p->pattern, .ok = true};
	conn_set_drain(c, drain_cb, &d);

	if (conn_write(c, p->pattern, BULK, &err) < 0)
		fail_msg("write: %s", err.what);
	/* the rest of what the server wrote, then its EOF */
	while (drain_cb(&d, c, &err) == 0 && d.got < BULK)
		;
	assert_int_equal(d.got, BULK);
	assert_true(d.ok);
	assert_true(d.calls > 1); /* the write really had to drain */
	uint8_t x;
	assert_int_equal(conn_read(c, &x, 1, -1, &err), 0);
	conn_close(&c);
	server_join(&s);
	assert_true(s.data_ok);
	assert_int_equal(s.got, BULK);
}

static void test_bulk_plain_no_deadlock(void **state)
{
	bulk(*state, false);
}

static void test_bulk_tls_no_deadlock(void **state)
{
	bulk(*state, true);
}

static void test_write_to_closed_peer(void **state)
{
	struct pki *p = *state;
	struct server s;
	struct err err = {0};
	char want[256];
	server_start(&s, p, AF_INET, SRV_CLOSE, NULL);
	struct conn_opts o = opts_for(&s, "127.0.0.1", NULL, NULL);
	struct conn *c = conn_open(&o, &err);
	assert_non_null(c);
	server_join(&s);
	/* keep writing until the kernel reports the reset: no SIGPIPE */
	static uint8_t junk[65536];
	int r = 0;
	for (int i = 0; i < 200 && r == 0; i++)
		r = conn_write(c, junk, sizeof(junk), &err);
	assert_int_equal(r, -1);
	assert_int_equal(err.kind, ERR_TRANSIENT);
	snprintf(want, sizeof(want), "connection to 127.0.0.1:%u lost while sending: ", s.port);
	assert_true(strncmp(err.what, want, strlen(want)) == 0);
	conn_close(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tls_verify_ok),
	    cmocka_unit_test(test_tls_ip_literal),
	    cmocka_unit_test(test_tls_ipv6),
	    cmocka_unit_test(test_tls_wildcard),
	    cmocka_unit_test(test_tls_mismatch),
	    cmocka_unit_test(test_tls_untrusted),
	    cmocka_unit_test(test_tls_expired),
	    cmocka_unit_test(test_tls_insecure),
	    cmocka_unit_test(test_bad_ca_file),
	    cmocka_unit_test(test_tls_truncated_is_eof),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_name_not_found),
	    cmocka_unit_test(test_connect_timeout),
	    cmocka_unit_test(test_read_timeout),
	    cmocka_unit_test(test_tls_handshake_timeout),
	    cmocka_unit_test(test_tls_to_plain_port),
	    cmocka_unit_test(test_starttls),
	    cmocka_unit_test(test_starttls_mismatch),
	    cmocka_unit_test(test_bulk_plain_no_deadlock),
	    cmocka_unit_test(test_bulk_tls_no_deadlock),
	    cmocka_unit_test(test_write_to_closed_peer),
	};
	/* TEST_CONN_FILTER=test_starttls* runs a subset (cmocka glob) */
	if (getenv("TEST_CONN_FILTER"))
		cmocka_set_test_filter(getenv("TEST_CONN_FILTER"));
	return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
