/* The IMAP client against a scripted fake server: the exact bytes we send
 * and what we make of what a real server will not do on demand (BYE in
 * the middle of a command, a disconnect inside a literal, a stall,
 * throttling replies).  Real-server behaviour is covered by the
 * integration tests against Dovecot.
 *
 * Every test states the client's whole side of the conversation: the
 * fake server fails on any byte it did not expect, and the transcript is
 * compared byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <openssl/evp.h>

#include "../fake-server/fake_server.h"
#include "imap/imap_client.h"
#include "imap/imap_parser.h"
#include "util/buf.h"

#define GREETING "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR LITERAL+ UIDPLUS] hi\r\n"
/* base64("\0alice\0pw") */
#define PLAIN_ALICE "AGFsaWNlAHB3"
#define LOGIN_SENT "A1 AUTHENTICATE PLAIN " PLAIN_ALICE "\r\nA2 CAPABILITY\r\n"
#define APPEND_DATE "17-Jul-1996 02:44:25 -0700"

/* ---------- helpers ---------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct imap_client_opts opts_for(uint16_t port)
{
	struct imap_client_opts o = {
	    .side = SIDE_SOURCE,
	    .host = "127.0.0.1",
	    .port = port,
	    .allow_plaintext = true,
	    .user = "alice",
	    .password = "pw",
	    .timeout_ms = 2000,
	};
	return o;
}

/* Greeting with SASL-IR, AUTHENTICATE PLAIN for alice/pw, then the
 * post-login CAPABILITY answered with caps.  Tags A1, A2. */
static void script_login(struct fake_server *fs, const char *caps)
{
	char line[512];
	fake_server_send(fs, GREETING);
	fake_server_expect(fs, "* AUTHENTICATE PLAIN " PLAIN_ALICE);
	fake_server_send(fs, "$T OK Logged in\r\n");
	fake_server_expect(fs, "* CAPABILITY");
	snprintf(line, sizeof(line), "* CAPABILITY %s\r\n$T OK Capability completed.\r\n", caps);
	fake_server_send(fs, line);
}

static struct imap_client *connect_opts(struct fake_server *fs, struct imap_client_opts *o)
{
	struct err e;
	err_clear(&e);
	struct imap_client *c = imap_client_connect(o, &e);
	if (!c)
		fail_msg("connect failed: %s (server said: %s)", e.what, e.server);
	return c;
}

static struct imap_client *connect_ok(struct fake_server *fs, int timeout_ms)
{
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	if (timeout_ms)
		o.timeout_ms = timeout_ms;
	return connect_opts(fs, &o);
}

static void escape(char *out, size_t outlen, const uint8_t *p, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 5 < outlen; i++) {
		if (p[i] == '\r')
			o += (size_t)snprintf(out + o, outlen - o, "\\r");
		else if (p[i] == '\n')
			o += (size_t)snprintf(out + o, outlen - o, "\\n");
		else if (p[i] < 0x20 || p[i] >= 0x7f)
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", p[i]);
		else
			out[o++] = (char)p[i];
	}
	out[o < outlen ? o : outlen - 1] = '\0';
}

/* The script played to its end, and the client sent exactly want. */
static void server_done(struct fake_server *fs, const char *want)
{
	if (fake_server_finish(fs) != 0)
		fail_msg("%s", fake_server_error(fs));
	size_t len;
	const uint8_t *got = fake_server_received(fs, &len);
	if (len != strlen(want) || memcmp(got, want, len) != 0) {
		char g[4096], w[4096];
		escape(g, sizeof(g), got, len);
		escape(w, sizeof(w), (const uint8_t *)want, strlen(want));
		fail_msg("client sent\n  \"%s\"\nexpected\n  \"%s\"", g, w);
	}
}

/* Decode base64 into out (NUL-terminated); returns the length. */
static size_t b64_decode(const char *in, size_t inlen, uint8_t *out)
{
	int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)inlen);
	assert_true(n >= 0);
	while (inlen && in[inlen - 1] == '=') {
		inlen--;
		n--;
	}
	out[n] = '\0';
	return (size_t)n;
}

/* The SASL PLAIN message in "A1 AUTHENTICATE PLAIN <b64>\r\n..." */
static size_t sent_plain(struct fake_server *fs, uint8_t *out)
{
	const char *got = (const char *)fake_server_received(fs, NULL);
	const char *p = strstr(got, "AUTHENTICATE PLAIN ");
	assert_non_null(p);
	p += strlen("AUTHENTICATE PLAIN ");
	const char *end = strstr(p, "\r\n");
	assert_non_null(end);
	return b64_decode(p, (size_t)(end - p), out);
}

/* ---------- connect and authentication ---------- */

static void test_sasl_ir_then_capability_then_id(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1 LITERAL+ UIDPLUS ID CONDSTORE");
	fake_server_expect(fs, "* ID (\"name\" \"imapmig\" \"version\" \"0.1\")");
	fake_server_send(fs, "* ID (\"name\" \"fake\")\r\n$T OK ID completed\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	assert_true(imap_client_caps(c) & IMAP_CAP_ID);
	assert_true(imap_client_caps(c) & IMAP_CAP_CONDSTORE);
	/* post-login capabilities replace the greeting's */
	assert_false(imap_client_caps(c) & IMAP_CAP_AUTH_PLAIN);
	assert_true(imap_client_has_cap(c, "uidplus"));
	assert_false(imap_client_has_cap(c, "UIDPLUS2"));
	assert_int_equal(imap_client_in_flight(c), 0);
	imap_client_free(&c);
	assert_null(c);
	server_done(fs, LOGIN_SENT "A3 ID (\"name\" \"imapmig\" \"version\" \"0.1\")\r\n");
	uint8_t plain[64];
	assert_int_equal(sent_plain(fs, plain), 9);
	assert_memory_equal(plain, "\0alice\0pw", 9);
	fake_server_free(&fs);
}

/* Without CAPABILITY in the greeting the client asks first. */
static void test_capability_asked_when_greeting_has_none(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, "* OK ready\r\n");
	fake_server_expect(fs, "* CAPABILITY");
	fake_server_send(fs, "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n$T OK\r\n");
	/* no SASL-IR: the initial response goes after the "+" */
	fake_server_expect(fs, "* AUTHENTICATE PLAIN");
	fake_server_expect_silence(fs, 100);
	fake_server_send(fs, "+ \r\n");
	fake_server_expect(fs, PLAIN_ALICE);
	fake_server_send(fs, "$T OK [CAPABILITY IMAP4rev1 UIDPLUS] Logged in\r\n");
	fake_server_expect(fs, "* CAPABILITY");
	fake_server_send(fs, "* CAPABILITY IMAP4rev1 UIDPLUS\r\n$T OK\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	assert_true(imap_client_caps(c) & IMAP_CAP_UIDPLUS);
	imap_client_free(&c);
	server_done(fs, "A1 CAPABILITY\r\nA2 AUTHENTICATE PLAIN\r\n" PLAIN_ALICE
	                "\r\nA3 CAPABILITY\r\n");
	fake_server_free(&fs);
}

static void test_admin_authzid(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, GREETING);
	fake_server_expect_prefix(fs, "* AUTHENTICATE PLAIN ");
	fake_server_send(fs, "$T OK Logged in\r\n");
	fake_server_expect(fs, "* CAPABILITY");
	fake_server_send(fs, "* CAPABILITY IMAP4rev1\r\n$T OK\r\n");
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	o.admin = "admin";
	o.password = "adminpw";
	struct imap_client *c = connect_opts(fs, &o);
	imap_client_free(&c);
	if (fake_server_finish(fs) != 0)
		fail_msg("%s", fake_server_error(fs));
	uint8_t plain[64];
	assert_int_equal(sent_plain(fs, plain), 19);
	/* authzid = the mailbox owner, authcid = the admin, the admin's password */
	assert_memory_equal(plain, "alice\0admin\0adminpw", 19);
	fake_server_free(&fs);
}

static void test_admin_master_separator(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, GREETING);
	fake_server_expect(fs, "* LOGIN \"alice*admin\" \"pw\"");
	fake_server_send(fs, "$T OK Logged in\r\n");
	fake_server_expect(fs, "* CAPABILITY");
	fake_server_send(fs, "* CAPABILITY IMAP4rev1\r\n$T OK\r\n");
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	o.admin = "admin";
	o.admin_mode = IMAP_ADMIN_MASTER_SEP;
	struct imap_client *c = connect_opts(fs, &o);
	imap_client_free(&c);
	server_done(fs, "A1 LOGIN \"alice*admin\" \"pw\"\r\nA2 CAPABILITY\r\n");
	fake_server_free(&fs);
}

static void test_login_quotes_specials(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, "* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n");
	fake_server_expect(fs, "* LOGIN \"al ice\" \"p\\\"w\\\\x\"");
	fake_server_send(fs, "$T OK Logged in\r\n");
	fake_server_expect(fs, "* CAPABILITY");
	fake_server_send(fs, "* CAPABILITY IMAP4rev1\r\n$T OK\r\n");
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	o.user = "al ice";
	o.password = "p\"w\\x";
	struct imap_client *c = connect_opts(fs, &o);
	imap_client_free(&c);
	server_done(fs, "A1 LOGIN \"al ice\" \"p\\\"w\\\\x\"\r\nA2 CAPABILITY\r\n");
	fake_server_free(&fs);
}

static void test_login_8bit_password_literal_plus(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, "* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n");
	fake_server_expect(fs, "* LOGIN \"alice\" {4+}");
	fake_server_expect(fs, "p\xc3\xa9w");
	fake_server_send(fs, "A1 OK Logged in\r\n");
	fake_server_expect(fs, "* CAPABILITY");
	fake_server_send(fs, "* CAPABILITY IMAP4rev1\r\n$T OK\r\n");
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	o.password = "p\xc3\xa9w";
	struct imap_client *c = connect_opts(fs, &o);
	imap_client_free(&c);
	server_done(fs, "A1 LOGIN \"alice\" {4+}\r\np\xc3\xa9w\r\nA2 CAPABILITY\r\n");
	fake_server_free(&fs);
}

static void test_login_8bit_password_sync_literal(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, "* OK [CAPABILITY IMAP4rev1] hi\r\n");
	fake_server_expect(fs, "* LOGIN \"alice\" {4}");
	/* nothing may follow before our "+" */
	fake_server_expect_silence(fs, 150);
	fake_server_send(fs, "+ Ready for literal data\r\n");
	fake_server_expect(fs, "p\xc3\xa9w");
	fake_server_send(fs, "$T OK Logged in\r\n");
	fake_server_expect(fs, "* CAPABILITY");
	fake_server_send(fs, "* CAPABILITY IMAP4rev1\r\n$T OK\r\n");
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	o.password = "p\xc3\xa9w";
	struct imap_client *c = connect_opts(fs, &o);
	imap_client_free(&c);
	server_done(fs, "A1 LOGIN \"alice\" {4}\r\np\xc3\xa9w\r\nA2 CAPABILITY\r\n");
	fake_server_free(&fs);
}

static void test_wrong_password(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, GREETING);
	fake_server_expect(fs, "* AUTHENTICATE PLAIN " PLAIN_ALICE);
	fake_server_send(fs, "$T NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	struct err e;
	err_clear(&e);
	assert_null(imap_client_connect(&o, &e));
	server_done(fs, "A1 AUTHENTICATE PLAIN " PLAIN_ALICE "\r\n");
	assert_int_equal(e.kind, ERR_ACCOUNT);
	assert_int_equal(e.side, SIDE_SOURCE);
	assert_string_equal(e.host, "127.0.0.1");
	assert_string_equal(e.user, "alice");
	assert_string_equal(e.what, "login as alice failed: AUTHENTICATE PLAIN failed");
	assert_string_equal(e.server, "NO [AUTHENTICATIONFAILED] Authentication failed.");
	assert_non_null(strstr(e.hint, "--source-password-file"));
	/* the password is never repeated */
	assert_null(strstr(e.what, "pw"));
	assert_null(strstr(e.hint, PLAIN_ALICE));
	fake_server_free(&fs);
}

static void test_target_wrong_password_hint(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, "* OK [CAPABILITY IMAP4rev1] hi\r\n");
	fake_server_expect(fs, "* LOGIN \"alice\" \"pw\"");
	fake_server_send(fs, "$T NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	o.side = SIDE_TARGET;
	struct err e;
	err_clear(&e);
	assert_null(imap_client_connect(&o, &e));
	server_done(fs, "A1 LOGIN \"alice\" \"pw\"\r\n");
	assert_int_equal(e.kind, ERR_ACCOUNT);
	assert_int_equal(e.side, SIDE_TARGET);
	assert_string_equal(e.what, "login as alice failed: LOGIN failed");
	assert_non_null(strstr(e.hint, "--target-password-file"));
	fake_server_free(&fs);
}

/* A per-server setting, so ERR_ACCOUNT: other users on other servers go on. */
static void test_no_starttls_refused_before_password(void **state)
{
	(void)state;
	/* capabilities in the greeting: the client sends nothing at all */
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN LOGIN] hi\r\n");
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	o.allow_plaintext = false;
	struct err e;
	err_clear(&e);
	assert_null(imap_client_connect(&o, &e));
	server_done(fs, "");
	assert_int_equal(e.kind, ERR_ACCOUNT);
	assert_int_equal(e.side, SIDE_SOURCE);
	assert_non_null(strstr(e.what, "does not offer STARTTLS"));
	assert_non_null(strstr(e.what, "unencrypted"));
	assert_non_null(strstr(e.hint, "--allow-plaintext"));
	fake_server_free(&fs);

	/* capabilities asked for: CAPABILITY is all that goes out */
	fs = fake_server_new();
	fake_server_send(fs, "* OK hi\r\n");
	fake_server_expect(fs, "* CAPABILITY");
	fake_server_send(fs, "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n$T OK\r\n");
	o = opts_for(fake_server_start(fs));
	o.allow_plaintext = false;
	err_clear(&e);
	assert_null(imap_client_connect(&o, &e));
	server_done(fs, "A1 CAPABILITY\r\n");
	assert_int_equal(e.kind, ERR_ACCOUNT);
	assert_non_null(strstr(e.what, "STARTTLS"));
	assert_non_null(strstr(e.hint, "--allow-plaintext"));
	fake_server_free(&fs);
}

static void test_greeting_bye(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, "* BYE too many connections\r\n");
	fake_server_close(fs);
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	struct err e;
	err_clear(&e);
	assert_null(imap_client_connect(&o, &e));
	server_done(fs, "");
	assert_int_equal(e.kind, ERR_TRANSIENT);
	assert_int_equal(e.side, SIDE_SOURCE);
	assert_string_equal(e.server, "BYE too many connections");
	assert_string_equal(e.what, "reading the server greeting: server refused the connection");
	fake_server_free(&fs);
}

static void test_greeting_not_imap(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, "* NO go away\r\n");
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	struct err e;
	err_clear(&e);
	assert_null(imap_client_connect(&o, &e));
	server_done(fs, "");
	assert_int_equal(e.kind, ERR_ACCOUNT);
	assert_non_null(strstr(e.what, "unexpected greeting"));
	fake_server_free(&fs);
}

/* ---------- pipelining ---------- */

static void test_pipelined_store(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1 LITERAL+");
	/* all three arrive before any answer; answers out of order */
	fake_server_expect(fs, "A3 UID STORE 1:3 +FLAGS.SILENT (\\Seen)");
	fake_server_expect(fs, "A4 UID STORE 4 -FLAGS.SILENT (\\Deleted $Junk)");
	fake_server_expect(fs, "A5 UID STORE 5 FLAGS.SILENT ()");
	fake_server_send(fs, "A5 OK Store completed.\r\nA3 OK Store completed.\r\n"
	                     "* 4 FETCH (FLAGS (\\Seen))\r\nA4 OK Store completed.\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_store_send(c, "1:3", '+', "\\Seen", &e), 0);
	assert_int_equal(imap_client_store_send(c, "4", '-', "\\Deleted $Junk", &e), 0);
	assert_int_equal(imap_client_store_send(c, "5", '=', "", &e), 0);
	assert_int_equal(imap_client_in_flight(c), 3);
	assert_int_equal(imap_client_wait_all(c, &e), 0);
	assert_int_equal(imap_client_in_flight(c), 0);
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 UID STORE 1:3 +FLAGS.SILENT (\\Seen)\r\n"
	                           "A4 UID STORE 4 -FLAGS.SILENT (\\Deleted $Junk)\r\n"
	                           "A5 UID STORE 5 FLAGS.SILENT ()\r\n");
	fake_server_free(&fs);
}

/* A failed pipelined command without a callback surfaces from wait_all,
 * after every other command finished; the first failure wins. */
static void test_pipelined_store_failures(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1");
	fake_server_expect(fs, "A3 UID STORE 1 +FLAGS.SILENT (\\Seen)");
	fake_server_expect(fs, "A4 UID STORE 2 +FLAGS.SILENT (\\Seen)");
	fake_server_send(fs, "A4 NO [THROTTLED] slow down\r\nA3 NO [SERVERBUG] oops\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_store_send(c, "1", '+', "\\Seen", &e), 0);
	assert_int_equal(imap_client_store_send(c, "2", '+', "\\Seen", &e), 0);
	assert_int_equal(imap_client_wait_all(c, &e), -1);
	assert_int_equal(imap_client_in_flight(c), 0);
	assert_int_equal(e.kind, ERR_TRANSIENT);
	assert_int_equal(e.side, SIDE_SOURCE);
	assert_string_equal(e.what, "STORE failed");
	assert_string_equal(e.server, "NO [THROTTLED] slow down");
	assert_non_null(strstr(e.hint, "retries"));
	/* reported once; the connection is still fine */
	assert_false(imap_client_is_dead(c));
	err_clear(&e);
	assert_int_equal(imap_client_wait_all(c, &e), 0);
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 UID STORE 1 +FLAGS.SILENT (\\Seen)\r\n"
	                           "A4 UID STORE 2 +FLAGS.SILENT (\\Seen)\r\n");
	fake_server_free(&fs);
}

/* ---------- APPEND ---------- */

struct append_rec {
	int calls;
	struct imap_append_result res;
	struct err err;
};

static void append_done(void *ctx, const struct imap_append_result *res, const struct err *err)
{
	struct append_rec *r = ctx;
	r->calls++;
	r->res = *res;
	if (err)
		r->err = *err;
	else
		err_clear(&r->err);
}

/* Login without capabilities in the greeting, with ID: the APPEND is A5. */
static void script_login_to_a5(struct fake_server *fs, const char *caps)
{
	char line[512];
	fake_server_send(fs, "* OK ready\r\n");
	fake_server_expect(fs, "A1 CAPABILITY");
	fake_server_send(fs, "* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR\r\nA1 OK\r\n");
	fake_server_expect(fs, "A2 AUTHENTICATE PLAIN " PLAIN_ALICE);
	fake_server_send(fs, "A2 OK Logged in\r\n");
	fake_server_expect(fs, "A3 CAPABILITY");
	snprintf(line, sizeof(line), "* CAPABILITY %s ID\r\nA3 OK\r\n", caps);
	fake_server_send(fs, line);
	fake_server_expect(fs, "A4 ID (\"name\" \"imapmig\" \"version\" \"0.1\")");
	fake_server_send(fs, "* ID NIL\r\nA4 OK\r\n");
}

#define A5_LOGIN_SENT                                                                              \
	"A1 CAPABILITY\r\nA2 AUTHENTICATE PLAIN " PLAIN_ALICE "\r\nA3 CAPABILITY\r\n"              \
	"A4 ID (\"name\" \"imapmig\" \"version\" \"0.1\")\r\n"

static void append_hello(struct imap_client *c, struct append_rec *rec, int want_begin)
{
	struct err e;
	err_clear(&e);
	int r =
	    imap_client_append_begin(c, "INBOX", "\\Seen", APPEND_DATE, 11, append_done, rec, &e);
	assert_int_equal(r, want_begin);
	if (r != 0)
		return;
	assert_int_equal(imap_client_append_data(c, (const uint8_t *)"hello ", 6, &e), 0);
	assert_int_equal(imap_client_append_data(c, (const uint8_t *)"world", 5, &e), 0);
	assert_int_equal(imap_client_append_end(c, &e), 0);
	assert_int_equal(rec->calls, 0);
	assert_int_equal(imap_client_wait_all(c, &e), 0);
}

static void test_append_literal_plus(void **state)
{
	(void)state;
	static const char sent[] =
	    "A5 APPEND \"INBOX\" (\\Seen) \"" APPEND_DATE "\" {11+}\r\nhello world\r\n";
	struct fake_server *fs = fake_server_new();
	script_login_to_a5(fs, "IMAP4rev1 LITERAL+ UIDPLUS");
	fake_server_expect_bytes(fs, sent, strlen(sent));
	fake_server_send(fs, "A5 OK [APPENDUID 38505 3955] done\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct append_rec rec = {0};
	append_hello(c, &rec, 0);
	assert_int_equal(rec.calls, 1);
	assert_true(rec.res.ok);
	assert_int_equal(rec.res.uidvalidity, 38505);
	assert_int_equal(rec.res.uid, 3955);
	imap_client_free(&c);
	server_done(fs, A5_LOGIN_SENT "A5 APPEND \"INBOX\" (\\Seen) \"" APPEND_DATE
	                              "\" {11+}\r\nhello world\r\n");
	fake_server_free(&fs);
}

static void test_append_refused_after_data(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1 LITERAL+");
	fake_server_expect(fs, "* APPEND \"INBOX\" (\\Seen) \"" APPEND_DATE "\" {11+}");
	fake_server_expect(fs, "hello world");
	fake_server_send(fs, "$T NO [OVERQUOTA] quota\r\n");
	fake_server_expect(fs, "* APPEND \"INBOX\" (\\Seen) \"" APPEND_DATE "\" {11+}");
	fake_server_expect(fs, "hello world");
	fake_server_send(fs, "$T NO [TRYCREATE] no such mailbox\r\n");
	struct imap_client *c = connect_ok(fs, 0);

	struct append_rec rec = {0};
	append_hello(c, &rec, 0);
	assert_int_equal(rec.calls, 1);
	assert_false(rec.res.ok);
	assert_int_equal(rec.err.kind, ERR_MESSAGE);
	assert_int_equal(rec.err.side, SIDE_SOURCE);
	assert_string_equal(rec.err.what, "APPEND failed");
	assert_string_equal(rec.err.folder, "INBOX");
	assert_string_equal(rec.err.server, "NO [OVERQUOTA] quota");

	memset(&rec, 0, sizeof(rec));
	append_hello(c, &rec, 0);
	assert_int_equal(rec.calls, 1);
	assert_int_equal(rec.err.kind, ERR_FOLDER);
	assert_string_equal(rec.err.server, "NO [TRYCREATE] no such mailbox");
	assert_false(imap_client_is_dead(c));
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT
	            "A3 APPEND \"INBOX\" (\\Seen) \"" APPEND_DATE "\" {11+}\r\nhello world\r\n"
	            "A4 APPEND \"INBOX\" (\\Seen) \"" APPEND_DATE "\" {11+}\r\nhello world\r\n");
	fake_server_free(&fs);
}

static void test_append_sync_literal(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1 UIDPLUS");
	fake_server_expect(fs, "A3 APPEND \"INBOX\" (\\Seen) \"" APPEND_DATE "\" {11}");
	fake_server_expect_silence(fs, 150);
	fake_server_send(fs, "+ Ready for literal data\r\n");
	fake_server_expect(fs, "hello world");
	fake_server_send(fs, "A3 OK [APPENDUID 7 8] done\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct append_rec rec = {0};
	append_hello(c, &rec, 0);
	assert_int_equal(rec.calls, 1);
	assert_true(rec.res.ok);
	assert_int_equal(rec.res.uidvalidity, 7);
	assert_int_equal(rec.res.uid, 8);
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 APPEND \"INBOX\" (\\Seen) \"" APPEND_DATE
	                           "\" {11}\r\nhello world\r\n");
	fake_server_free(&fs);
}

static void test_append_sync_refused_before_data(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1");
	fake_server_expect(fs, "A3 APPEND \"INBOX\" (\\Seen) \"" APPEND_DATE "\" {11}");
	fake_server_send(fs, "A3 NO [TOOBIG] message too big\r\n");
	/* the connection goes on: nothing of the refused message is sent */
	fake_server_expect(fs, "A4 UID STORE 1 +FLAGS.SILENT (\\Seen)");
	fake_server_send(fs, "A4 OK\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct append_rec rec = {0};
	append_hello(c, &rec, 1);
	assert_int_equal(rec.calls, 1);
	assert_false(rec.res.ok);
	assert_int_equal(rec.err.kind, ERR_MESSAGE);
	assert_string_equal(rec.err.server, "NO [TOOBIG] message too big");
	assert_string_equal(rec.err.folder, "INBOX");
	assert_int_equal(imap_client_in_flight(c), 0);
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_store_send(c, "1", '+', "\\Seen", &e), 0);
	assert_int_equal(imap_client_wait_all(c, &e), 0);
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 APPEND \"INBOX\" (\\Seen) \"" APPEND_DATE "\" {11}\r\n"
	                           "A4 UID STORE 1 +FLAGS.SILENT (\\Seen)\r\n");
	fake_server_free(&fs);
}

/* Regression (was a bug in imap_client.c, imap_client_append_begin, the synchronising-literal
 * path): when the "+" and the tagged NO arrive in the same read,
 * wait_continuation() returns 0 although complete_cmd() has already freed
 * the command, and append_begin then writes cmd->result / append_done
 * into freed memory (heap-use-after-free under ASan); done never fires. */
static void test_append_sync_plus_then_no_same_read(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1");
	fake_server_expect(fs, "A3 APPEND \"INBOX\" () {11}");
	fake_server_send(fs, "+ go ahead\r\nA3 NO [OVERQUOTA] changed my mind\r\n");
	fake_server_stall(fs, 300);
	struct imap_client *c = connect_ok(fs, 0);
	struct append_rec rec = {0};
	struct err e;
	err_clear(&e);
	int r = imap_client_append_begin(c, "INBOX", "", NULL, 11, append_done, &rec, &e);
	/* the refusal must reach the caller: 1 with done called */
	assert_int_equal(r, 1);
	assert_int_equal(rec.calls, 1);
	assert_int_equal(rec.err.kind, ERR_MESSAGE);
	imap_client_free(&c);
	fake_server_finish(fs);
	fake_server_free(&fs);
}

/* ---------- FETCH ---------- */

struct fetch_rec {
	struct buf body;
	int begins, ends, messages;
	uint32_t begin_uid;
	uint64_t begin_size;
	uint32_t msg_uid;
	bool has_body;
	char flags[256];
	char date[64];
	bool date_null;
	uint64_t size, modseq;
	char headers[256];
	size_t headers_len;
	bool headers_null;
};

static int on_message(void *ctx, const struct imap_fetch_msg *m, struct err *err)
{
	struct fetch_rec *r = ctx;
	(void)err;
	r->messages++;
	r->msg_uid = m->uid;
	r->has_body = m->has_body;
	snprintf(r->flags, sizeof(r->flags), "%s", m->flags);
	r->date_null = m->internaldate == NULL;
	snprintf(r->date, sizeof(r->date), "%s", m->internaldate ? m->internaldate : "");
	r->size = m->size;
	r->modseq = m->modseq;
	r->headers_null = m->headers == NULL;
	r->headers_len =
	    m->headers_len < sizeof(r->headers) - 1 ? m->headers_len : sizeof(r->headers) - 1;
	if (m->headers)
		memcpy(r->headers, m->headers, r->headers_len);
	r->headers[r->headers_len] = '\0';
	return 0;
}

static int on_begin(void *ctx, uint32_t uid, uint64_t size, struct err *err)
{
	struct fetch_rec *r = ctx;
	(void)err;
	r->begins++;
	r->begin_uid = uid;
	r->begin_size = size;
	return 0;
}

static int on_data(void *ctx, const uint8_t *data, size_t len, struct err *err)
{
	struct fetch_rec *r = ctx;
	(void)err;
	buf_append(&r->body, data, len);
	return 0;
}

static int on_end(void *ctx, struct err *err)
{
	struct fetch_rec *r = ctx;
	(void)err;
	r->ends++;
	return 0;
}

#define BODY_SIZE 200000

static void test_fetch_streams_body(void **state)
{
	(void)state;
	uint8_t *body = malloc(BODY_SIZE);
	assert_non_null(body);
	/* every byte value, CR, LF, NUL and ")" included */
	for (size_t i = 0; i < BODY_SIZE; i++)
		body[i] = (uint8_t)((i * 7 + i / 251) & 0xff);
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1 LITERAL+");
	fake_server_expect(fs, "* UID FETCH 7 (UID BODY.PEEK[])");
	fake_server_send(fs, "* 1 FETCH (UID 7 BODY[] {200000}\r\n");
	/* uneven pieces with small stalls: the client sees many partial reads */
	size_t pieces[] = {1, 999, 30000, 65536, 3, 50000, 0};
	size_t off = 0;
	for (size_t i = 0; pieces[i]; i++) {
		fake_server_send_bytes(fs, body + off, pieces[i]);
		fake_server_stall(fs, 5);
		off += pieces[i];
	}
	fake_server_send_bytes(fs, body + off, BODY_SIZE - off);
	fake_server_send(fs, ")\r\n$T OK Fetch completed.\r\n");
	struct imap_client *c = connect_ok(fs, 0);

	struct fetch_rec rec = {.body = BUF_INIT(0)};
	struct imap_fetch_handler h = {on_message, on_begin, on_data, on_end, &rec};
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_fetch_send(c, "7", IMAP_FETCH_BODY, NULL, 0, &h, &e), 0);
	assert_int_equal(imap_client_wait_all(c, &e), 0);
	assert_int_equal(rec.begins, 1);
	assert_int_equal(rec.begin_uid, 7);
	assert_int_equal(rec.begin_size, BODY_SIZE);
	assert_int_equal(rec.body.len, BODY_SIZE);
	assert_memory_equal(rec.body.data, body, BODY_SIZE);
	assert_int_equal(rec.ends, 1);
	assert_int_equal(rec.messages, 1);
	assert_int_equal(rec.msg_uid, 7);
	assert_true(rec.has_body);
	assert_true(rec.date_null);
	assert_true(rec.headers_null);
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 UID FETCH 7 (UID BODY.PEEK[])\r\n");
	fake_server_free(&fs);
	buf_release(&rec.body);
	free(body);
}

/* The UID after the body: body_begin gets 0 and message() tells the UID. */
static void test_fetch_uid_after_body(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1");
	fake_server_expect(fs, "* UID FETCH 9 (UID BODY.PEEK[])");
	fake_server_send(fs, "* 3 FETCH (BODY[] {5}\r\nhello UID 9)\r\n$T OK done\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct fetch_rec rec = {.body = BUF_INIT(0)};
	struct imap_fetch_handler h = {on_message, on_begin, on_data, on_end, &rec};
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_fetch_send(c, "9", IMAP_FETCH_BODY, NULL, 0, &h, &e), 0);
	assert_int_equal(imap_client_wait_all(c, &e), 0);
	assert_int_equal(rec.begins, 1);
	assert_int_equal(rec.begin_uid, 0);
	assert_int_equal(rec.begin_size, 5);
	assert_string_equal(buf_cstr(&rec.body), "hello");
	assert_int_equal(rec.ends, 1);
	assert_int_equal(rec.messages, 1);
	assert_int_equal(rec.msg_uid, 9);
	assert_true(rec.has_body);
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 UID FETCH 9 (UID BODY.PEEK[])\r\n");
	fake_server_free(&fs);
	buf_release(&rec.body);
}

static void test_fetch_metadata(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1 CONDSTORE");
	fake_server_expect(fs, "* UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ "
	                       "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)]) (CHANGEDSINCE 5)");
	fake_server_send(
	    fs, "* 2 FETCH (UID 8 FLAGS (\\Seen \\Recent $Label1) INTERNALDATE \"" APPEND_DATE
	        "\" RFC822.SIZE 1234 MODSEQ (99) "
	        "BODY[HEADER.FIELDS (MESSAGE-ID DATE)] {21}\r\n"
	        "Message-ID: <a@b>\r\n\r\n)\r\n"
	        /* no UID: not passed on */
	        "* 3 FETCH (FLAGS (\\Seen))\r\n"
	        "$T OK done\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct fetch_rec rec = {.body = BUF_INIT(0)};
	struct imap_fetch_handler h = {on_message, on_begin, on_data, on_end, &rec};
	struct err e;
	err_clear(&e);
	unsigned items = IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_SIZE |
	                 IMAP_FETCH_MODSEQ | IMAP_FETCH_HEADERS;
	assert_int_equal(imap_client_fetch_send(c, "1:*", items, "MESSAGE-ID DATE", 5, &h, &e), 0);
	assert_int_equal(imap_client_wait_all(c, &e), 0);
	assert_int_equal(rec.messages, 1);
	assert_int_equal(rec.msg_uid, 8);
	assert_string_equal(rec.flags, "\\Seen $Label1");
	assert_string_equal(rec.date, APPEND_DATE);
	assert_int_equal(rec.size, 1234);
	assert_int_equal(rec.modseq, 99);
	assert_int_equal(rec.headers_len, 21);
	assert_string_equal(rec.headers, "Message-ID: <a@b>\r\n\r\n");
	assert_false(rec.has_body);
	assert_int_equal(rec.begins, 0);
	imap_client_free(&c);
	server_done(fs,
	            LOGIN_SENT "A3 UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ "
	                       "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE)]) (CHANGEDSINCE 5)\r\n");
	fake_server_free(&fs);
	buf_release(&rec.body);
}

/* A consumer callback that fails aborts the read: its words come back and
 * the connection is unusable (the rest of the literal is still on it). */
static int on_data_fail(void *ctx, const uint8_t *data, size_t len, struct err *err)
{
	(void)ctx;
	(void)data;
	(void)len;
	return err_set(err, ERR_INTERNAL, "cannot write the spool file");
}

static void test_fetch_callback_error_aborts(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1");
	fake_server_expect(fs, "* UID FETCH 7 (UID BODY.PEEK[])");
	fake_server_send(fs, "* 1 FETCH (UID 7 BODY[] {5}\r\nhello)\r\n$T OK done\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct fetch_rec rec = {.body = BUF_INIT(0)};
	struct imap_fetch_handler h = {on_message, on_begin, on_data_fail, on_end, &rec};
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_fetch_send(c, "7", IMAP_FETCH_BODY, NULL, 0, &h, &e), 0);
	assert_int_equal(imap_client_wait_all(c, &e), -1);
	assert_string_equal(e.what, "cannot write the spool file");
	assert_true(imap_client_is_dead(c));
	assert_int_equal(rec.begins, 1);
	assert_int_equal(rec.ends, 0);
	assert_int_equal(rec.messages, 0);
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 UID FETCH 7 (UID BODY.PEEK[])\r\n");
	fake_server_free(&fs);
	buf_release(&rec.body);
}

/* Regression (was a bug in imap_client.c, imap_client_fetch_send): c->untagged = fetch_untagged
 * and c->fetch = *h stay installed after the FETCH completes, so an
 * unsolicited FETCH during a later command (STORE with CONDSTORE enabled
 * answers "* n FETCH (UID u MODSEQ (m))"; another session changing flags)
 * calls the old handler with its old ctx - in src/engine/sync.c
 * load_target_fingerprints() that ctx is a dead stack frame (&tl).  The
 * header says untagged data goes to the operation *in progress*. */
static void test_fetch_handler_not_used_after_fetch(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1 CONDSTORE");
	fake_server_expect(fs, "* UID FETCH 7 (UID FLAGS)");
	fake_server_send(fs, "* 1 FETCH (UID 7 FLAGS (\\Seen))\r\n$T OK done\r\n");
	fake_server_expect(fs, "* UID STORE 7 +FLAGS.SILENT (\\Flagged)");
	fake_server_send(fs, "* 1 FETCH (UID 7 MODSEQ (124))\r\n$T OK done\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct fetch_rec rec = {.body = BUF_INIT(0)};
	struct imap_fetch_handler h = {on_message, on_begin, on_data, on_end, &rec};
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_fetch_send(c, "7", IMAP_FETCH_FLAGS, NULL, 0, &h, &e), 0);
	assert_int_equal(imap_client_wait_all(c, &e), 0);
	assert_int_equal(rec.messages, 1);
	assert_int_equal(imap_client_store_send(c, "7", '+', "\\Flagged", &e), 0);
	assert_int_equal(imap_client_wait_all(c, &e), 0);
	assert_int_equal(rec.messages, 1); /* the finished FETCH's handler is not called */
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 UID FETCH 7 (UID FLAGS)\r\n"
	                           "A4 UID STORE 7 +FLAGS.SILENT (\\Flagged)\r\n");
	fake_server_free(&fs);
	buf_release(&rec.body);
}

/* ---------- a dying server ---------- */

static void assert_fails_fast(struct imap_client *c)
{
	struct err e;
	int64_t t0 = now_ms();
	err_clear(&e);
	assert_int_equal(imap_client_store_send(c, "1", '+', "\\Seen", &e), -1);
	assert_int_equal(e.kind, ERR_TRANSIENT);
	err_clear(&e);
	struct imap_select_info info;
	assert_int_equal(imap_client_select(c, "INBOX", false, &info, &e), -1);
	assert_int_equal(e.kind, ERR_TRANSIENT);
	err_clear(&e);
	assert_int_equal(imap_client_wait_all(c, &e), -1);
	assert_int_equal(e.kind, ERR_TRANSIENT);
	assert_int_equal(e.side, SIDE_SOURCE);
	assert_true(now_ms() - t0 < 200);
}

static void test_bye_mid_command(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1");
	fake_server_expect(fs, "* UID STORE 1 +FLAGS.SILENT (\\Seen)");
	fake_server_send(fs, "* BYE server shutting down\r\n");
	fake_server_close(fs);
	struct imap_client *c = connect_ok(fs, 0);
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_store_send(c, "1", '+', "\\Seen", &e), 0);
	assert_int_equal(imap_client_wait_all(c, &e), -1);
	assert_int_equal(e.kind, ERR_TRANSIENT);
	assert_int_equal(e.side, SIDE_SOURCE);
	assert_string_equal(e.host, "127.0.0.1");
	assert_string_equal(e.user, "alice");
	assert_string_equal(e.what, "server closed the connection");
	assert_string_equal(e.server, "BYE server shutting down");
	assert_true(imap_client_is_dead(c));
	assert_fails_fast(c);
	imap_client_free(&c);
	/* nothing was written after the BYE */
	server_done(fs, LOGIN_SENT "A3 UID STORE 1 +FLAGS.SILENT (\\Seen)\r\n");
	fake_server_free(&fs);
}

static void test_disconnect_mid_literal(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1");
	fake_server_expect(fs, "* UID FETCH 7 (UID BODY.PEEK[])");
	fake_server_send(fs, "* 1 FETCH (UID 7 BODY[] {1000}\r\n");
	fake_server_send_bytes(fs, "From: x\r\n\r\nhalf a", 18);
	fake_server_close(fs);
	struct imap_client *c = connect_ok(fs, 0);
	struct fetch_rec rec = {.body = BUF_INIT(0)};
	struct imap_fetch_handler h = {on_message, on_begin, on_data, on_end, &rec};
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_fetch_send(c, "7", IMAP_FETCH_BODY, NULL, 0, &h, &e), 0);
	assert_int_equal(imap_client_wait_all(c, &e), -1);
	assert_int_equal(e.kind, ERR_TRANSIENT);
	assert_int_equal(e.side, SIDE_SOURCE);
	assert_string_equal(e.what, "connection closed by the server");
	assert_true(imap_client_is_dead(c));
	assert_int_equal(rec.begins, 1);
	assert_int_equal(rec.begin_size, 1000);
	assert_int_equal(rec.body.len, 18);
	assert_int_equal(rec.ends, 0);
	assert_int_equal(rec.messages, 0);
	assert_fails_fast(c);
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 UID FETCH 7 (UID BODY.PEEK[])\r\n");
	fake_server_free(&fs);
	buf_release(&rec.body);
}

static void test_stall_times_out(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1");
	fake_server_expect(fs, "* UID STORE 1 +FLAGS.SILENT (\\Seen)");
	fake_server_stall(fs, 3000); /* ends when the client goes away */
	struct imap_client *c = connect_ok(fs, 300);
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_store_send(c, "1", '+', "\\Seen", &e), 0);
	int64_t t0 = now_ms();
	assert_int_equal(imap_client_wait_all(c, &e), -1);
	int64_t took = now_ms() - t0;
	assert_true(took >= 250);
	assert_true(took < 1000);
	assert_int_equal(e.kind, ERR_TRANSIENT);
	assert_int_equal(e.side, SIDE_SOURCE);
	assert_non_null(strstr(e.what, "timed out"));
	assert_true(imap_client_is_dead(c));
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 UID STORE 1 +FLAGS.SILENT (\\Seen)\r\n");
	fake_server_free(&fs);
}

/* ---------- response codes -> error kinds ---------- */

static void status_case(struct imap_client *c, const char *line, enum err_kind dflt,
                        enum err_kind want, const char *server)
{
	struct imap_parser *p = imap_parser_new(NULL, NULL, NULL);
	size_t used;
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)line, strlen(line), &used),
	                 IMAP_PARSE_RESPONSE);
	struct err e;
	err_clear(&e);
	imap_client_status_err(c, imap_parser_response(p), dflt, &e);
	if (e.kind != want)
		fail_msg("%s: kind %s, want %s", line, err_kind_name(e.kind), err_kind_name(want));
	assert_string_equal(e.server, server);
	assert_int_equal(e.side, SIDE_SOURCE);
	assert_string_equal(e.host, "127.0.0.1");
	assert_string_equal(e.user, "alice");
	assert_true(e.what[0] != '\0');
	imap_parser_free(&p);
}

static void test_status_err_kinds(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1");
	fake_server_expect(fs, "* SELECT \"Busy\"");
	fake_server_send(fs, "$T NO [UNAVAILABLE] backend down\r\n");
	struct imap_client *c = connect_ok(fs, 0);

	status_case(c, "A1 NO [UNAVAILABLE] try later\r\n", ERR_FOLDER, ERR_TRANSIENT,
	            "NO [UNAVAILABLE] try later");
	status_case(c, "A1 NO [THROTTLED] slow down\r\n", ERR_MESSAGE, ERR_TRANSIENT,
	            "NO [THROTTLED] slow down");
	status_case(c, "A1 NO [LIMIT] too many\r\n", ERR_FOLDER, ERR_TRANSIENT,
	            "NO [LIMIT] too many");
	status_case(c, "A1 NO [INUSE] locked\r\n", ERR_FOLDER, ERR_TRANSIENT, "NO [INUSE] locked");
	status_case(c, "* BYE idle too long\r\n", ERR_FOLDER, ERR_TRANSIENT, "BYE idle too long");
	status_case(c, "A1 NO [TRYCREATE] no mailbox\r\n", ERR_MESSAGE, ERR_FOLDER,
	            "NO [TRYCREATE] no mailbox");
	status_case(c, "A1 NO [NONEXISTENT] gone\r\n", ERR_MESSAGE, ERR_FOLDER,
	            "NO [NONEXISTENT] gone");
	status_case(c, "A1 NO [OVERQUOTA] full\r\n", ERR_FOLDER, ERR_MESSAGE,
	            "NO [OVERQUOTA] full");
	status_case(c, "A1 NO [TOOBIG] big\r\n", ERR_FOLDER, ERR_MESSAGE, "NO [TOOBIG] big");
	status_case(c, "A1 NO [AUTHORIZATIONFAILED] not admin\r\n", ERR_MESSAGE, ERR_ACCOUNT,
	            "NO [AUTHORIZATIONFAILED] not admin");
	/* no known code: the caller's default */
	status_case(c, "A1 NO [ALERT] something\r\n", ERR_MESSAGE, ERR_MESSAGE,
	            "NO [ALERT] something");
	status_case(c, "A1 BAD Error in IMAP command\r\n", ERR_FOLDER, ERR_FOLDER,
	            "BAD Error in IMAP command");
	/* response code arguments are kept as sent */
	status_case(c, "A1 NO [TOOBIG 1000] big\r\n", ERR_FOLDER, ERR_MESSAGE,
	            "NO [TOOBIG 1000] big");

	/* and on the wire: a throttled SELECT is transient, not a folder error */
	struct imap_select_info info;
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_select(c, "Busy", false, &info, &e), -1);
	assert_int_equal(e.kind, ERR_TRANSIENT);
	assert_string_equal(e.server, "NO [UNAVAILABLE] backend down");
	assert_string_equal(e.folder, "Busy");
	assert_non_null(strstr(e.hint, "retries"));
	assert_false(imap_client_is_dead(c));
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 SELECT \"Busy\"\r\n");
	fake_server_free(&fs);
}

/* ---------- LIST ---------- */

struct list_rec {
	int n;
	char names[8][64];
	char delims[8];
	char attrs[8][128];
};

static int on_list(void *ctx, const struct imap_mailbox *mb, struct err *err)
{
	struct list_rec *r = ctx;
	(void)err;
	assert_true(r->n < 8);
	snprintf(r->names[r->n], sizeof(r->names[0]), "%s", mb->name);
	r->delims[r->n] = mb->delim;
	snprintf(r->attrs[r->n], sizeof(r->attrs[0]), "%s", mb->attrs);
	r->n++;
	return 0;
}

static void test_list_and_lsub(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1 LITERAL+");
	fake_server_expect(fs, "* LIST \"\" \"*\"");
	fake_server_send(fs, "* LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n"
	                     "* LIST () \".\" &ZeVnLIqe-\r\n"
	                     "* LIST (\\HasNoChildren) \".\" {8}\r\nSay \"hi\"\r\n"
	                     "* LIST (\\HasChildren) \".\" inbox\r\n"
	                     "* LIST (\\HasNoChildren) \".\" \"Bad &-name&\"\r\n"
	                     "$T OK List completed.\r\n");
	fake_server_expect(fs, "* LSUB \"\" \"*\"");
	fake_server_send(fs, "* LSUB () \".\" Sent\r\n"
	                     "* LSUB (\\Noselect) \".\" Gone\r\n" /* subscribed, not existing */
	                     "* LSUB () \".\" INBOX\r\n"
	                     "$T OK Lsub completed.\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct list_rec rec = {0};
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_list(c, on_list, &rec, &e), 0);
	assert_int_equal(rec.n, 5);
	assert_string_equal(rec.names[0], "Sent");
	assert_int_equal(rec.delims[0], '.');
	assert_string_equal(rec.attrs[0], "\\HasNoChildren \\Sent \\Subscribed");
	assert_string_equal(rec.names[1], "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"); /* 日本語 */
	assert_string_equal(rec.attrs[1], "");
	assert_string_equal(rec.names[2], "Say \"hi\"");
	assert_string_equal(rec.attrs[2], "\\HasNoChildren");
	assert_string_equal(rec.names[3], "INBOX");
	assert_string_equal(rec.attrs[3], "\\HasChildren \\Subscribed");
	/* not valid modified UTF-7: passed through as sent */
	assert_string_equal(rec.names[4], "Bad &-name&");
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 LIST \"\" \"*\"\r\nA4 LSUB \"\" \"*\"\r\n");
	fake_server_free(&fs);
}

static void test_list_extended(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1 LIST-EXTENDED SPECIAL-USE");
	fake_server_expect(fs, "* LIST \"\" \"*\" RETURN (SUBSCRIBED SPECIAL-USE)");
	fake_server_send(fs, "* LIST (\\Subscribed \\HasNoChildren \\Sent) \"/\" Sent\r\n"
	                     "* LIST (\\HasNoChildren) \"/\" Archive/2024\r\n"
	                     "* LIST (\\Noselect \\HasChildren) NIL Flat\r\n"
	                     "$T OK List completed.\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct list_rec rec = {0};
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_list(c, on_list, &rec, &e), 0);
	assert_int_equal(rec.n, 3);
	assert_string_equal(rec.names[0], "Sent");
	assert_int_equal(rec.delims[0], '/');
	assert_string_equal(rec.attrs[0], "\\Subscribed \\HasNoChildren \\Sent");
	assert_string_equal(rec.names[1], "Archive/2024");
	assert_string_equal(rec.attrs[1], "\\HasNoChildren");
	assert_string_equal(rec.names[2], "Flat");
	assert_int_equal(rec.delims[2], '\0');
	imap_client_free(&c);
	/* one command, no LSUB */
	server_done(fs, LOGIN_SENT "A3 LIST \"\" \"*\" RETURN (SUBSCRIBED SPECIAL-USE)\r\n");
	fake_server_free(&fs);
}

/* ---------- SELECT ---------- */

static void test_select_condstore(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1 CONDSTORE");
	fake_server_expect(fs, "* SELECT \"Sent\" (CONDSTORE)");
	fake_server_send(fs, "* 172 EXISTS\r\n"
	                     "* 1 RECENT\r\n"
	                     "* OK [UNSEEN 12] Message 12 is first unseen\r\n"
	                     "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
	                     "* OK [UIDNEXT 4392] Predicted next UID\r\n"
	                     "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
	                     "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"
	                     "* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"
	                     "$T OK [READ-WRITE] SELECT completed\r\n");
	fake_server_expect(fs, "* SELECT \"&ZeVnLIqe-\" (CONDSTORE)");
	fake_server_send(fs, "* 0 EXISTS\r\n"
	                     "* OK [UIDVALIDITY 1] Ok\r\n"
	                     "* OK [PERMANENTFLAGS (\\Seen)] Ok\r\n"
	                     "* OK [NOMODSEQ] No modseqs\r\n"
	                     "$T OK [READ-WRITE] SELECT completed\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct imap_select_info info;
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_select(c, "Sent", false, &info, &e), 0);
	assert_int_equal(info.exists, 172);
	assert_int_equal(info.uidvalidity, 3857529045u);
	assert_int_equal(info.uidnext, 4392);
	assert_int_equal(info.highestmodseq, 715194045007ull);
	assert_false(info.read_only);
	assert_true(info.keywords_allowed);
	assert_string_equal(info.permanentflags, "\\Deleted \\Seen \\*");

	assert_int_equal(
	    imap_client_select(c, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", false, &info, &e), 0);
	assert_int_equal(info.exists, 0);
	assert_int_equal(info.uidvalidity, 1);
	assert_int_equal(info.uidnext, 0);
	assert_int_equal(info.highestmodseq, 0);
	assert_false(info.keywords_allowed);
	assert_string_equal(info.permanentflags, "\\Seen");
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 SELECT \"Sent\" (CONDSTORE)\r\n"
	                           "A4 SELECT \"&ZeVnLIqe-\" (CONDSTORE)\r\n");
	fake_server_free(&fs);
}

static void test_examine_without_condstore(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1");
	fake_server_expect(fs, "* EXAMINE \"INBOX\"");
	fake_server_send(fs, "* 3 EXISTS\r\n* OK [UIDVALIDITY 5] x\r\n$T OK [READ-ONLY] done\r\n");
	fake_server_expect(fs, "* SELECT \"Gone\"");
	fake_server_send(fs, "$T NO [NONEXISTENT] Mailbox doesn't exist: Gone\r\n");
	struct imap_client *c = connect_ok(fs, 0);
	struct imap_select_info info;
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_select(c, "inbox", true, &info, &e), 0);
	assert_int_equal(info.exists, 3);
	assert_int_equal(info.uidvalidity, 5);
	assert_true(info.read_only);
	err_clear(&e);
	assert_int_equal(imap_client_select(c, "Gone", false, &info, &e), -1);
	assert_int_equal(e.kind, ERR_FOLDER);
	assert_int_equal(e.side, SIDE_SOURCE);
	assert_string_equal(e.folder, "Gone");
	assert_string_equal(e.what, "SELECT failed");
	assert_string_equal(e.server, "NO [NONEXISTENT] Mailbox doesn't exist: Gone");
	imap_client_free(&c);
	server_done(fs, LOGIN_SENT "A3 EXAMINE \"INBOX\"\r\nA4 SELECT \"Gone\"\r\n");
	fake_server_free(&fs);
}

/* Regression (was a bug in imap_client.c, imap_client_select via cmd_start): the command is
 * put on the in-flight list before its arguments are built; when
 * add_mailbox() fails (a name that is not UTF-8) it returns -1 but the
 * never-sent command stays in flight, its result pointing at select's
 * stack.  imap_client_in_flight() stays 1 and the next
 * imap_client_wait_all() waits for a reply that cannot come until the
 * timeout kills the connection.  Same in mailbox_cmd (CREATE/SUBSCRIBE)
 * and append_begin. */
static void test_bad_folder_name_leaves_nothing_in_flight(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	script_login(fs, "IMAP4rev1");
	fake_server_expect(fs, "* UID STORE 1 +FLAGS.SILENT (\\Seen)");
	fake_server_send(fs, "$T OK\r\n");
	struct imap_client *c = connect_ok(fs, 500);
	struct imap_select_info info;
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_client_select(c, "bad\xff", false, &info, &e), -1);
	assert_int_equal(e.kind, ERR_FOLDER);
	assert_int_equal(imap_client_in_flight(c), 0);
	err_clear(&e);
	assert_int_equal(imap_client_store_send(c, "1", '+', "\\Seen", &e), 0);
	assert_int_equal(imap_client_wait_all(c, &e), 0);
	imap_client_free(&c);
	fake_server_finish(fs);
	fake_server_free(&fs);
}

/* ---------- the fake server itself ---------- */

/* A wrong command fails the script at that step, and the client sees the
 * connection drop. */
static void test_fake_server_reports_mismatch(void **state)
{
	(void)state;
	struct fake_server *fs = fake_server_new();
	fake_server_send(fs, "* OK hi\r\n");
	fake_server_expect(fs, "* NOOP");
	fake_server_send(fs, "$T OK\r\n");
	struct imap_client_opts o = opts_for(fake_server_start(fs));
	struct err e;
	err_clear(&e);
	assert_null(imap_client_connect(&o, &e));
	assert_int_equal(e.kind, ERR_TRANSIENT);
	assert_int_equal(fake_server_finish(fs), -1);
	assert_string_equal(
	    fake_server_error(fs),
	    "fake server step 2 (expect): expected \"* NOOP\", got \"A1 CAPABILITY\"");
	fake_server_free(&fs);
}

/* ---------- quoting ---------- */

static void quote_case(const char *in, int want_r, const char *want_out)
{
	struct buf b = BUF_INIT(0);
	buf_puts(&b, "X ");
	assert_int_equal(imap_quote(&b, in), want_r);
	assert_string_equal(buf_cstr(&b), want_out);
	buf_release(&b);
}

static void test_quote(void **state)
{
	(void)state;
	quote_case("INBOX", 0, "X \"INBOX\"");
	quote_case("", 0, "X \"\"");
	quote_case("a b", 0, "X \"a b\"");
	quote_case("say \"hi\"", 0, "X \"say \\\"hi\\\"\"");
	quote_case("back\\slash", 0, "X \"back\\\\slash\"");
	quote_case("\\\"", 0, "X \"\\\\\\\"\"");
	quote_case("(){}%*]", 0, "X \"(){}%*]\"");
	/* these need a literal; nothing is appended */
	quote_case("caf\xc3\xa9", 1, "X ");
	quote_case("a\rb", 1, "X ");
	quote_case("a\nb", 1, "X ");
	quote_case("\x80", 1, "X ");
	char longs[1026];
	memset(longs, 'a', 1024);
	longs[1024] = '\0';
	struct buf b = BUF_INIT(0);
	assert_int_equal(imap_quote(&b, longs), 0);
	assert_int_equal(b.len, 1026);
	buf_release(&b);
	longs[1024] = 'a';
	longs[1025] = '\0';
	quote_case(longs, 1, "X ");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sasl_ir_then_capability_then_id),
	    cmocka_unit_test(test_capability_asked_when_greeting_has_none),
	    cmocka_unit_test(test_admin_authzid),
	    cmocka_unit_test(test_admin_master_separator),
	    cmocka_unit_test(test_login_quotes_specials),
	    cmocka_unit_test(test_login_8bit_password_literal_plus),
	    cmocka_unit_test(test_login_8bit_password_sync_literal),
	    cmocka_unit_test(test_wrong_password),
	    cmocka_unit_test(test_target_wrong_password_hint),
	    cmocka_unit_test(test_no_starttls_refused_before_password),
	    cmocka_unit_test(test_greeting_bye),
	    cmocka_unit_test(test_greeting_not_imap),
	    cmocka_unit_test(test_pipelined_store),
	    cmocka_unit_test(test_pipelined_store_failures),
	    cmocka_unit_test(test_append_literal_plus),
	    cmocka_unit_test(test_append_refused_after_data),
	    cmocka_unit_test(test_append_sync_literal),
	    cmocka_unit_test(test_append_sync_refused_before_data),
	    cmocka_unit_test(test_append_sync_plus_then_no_same_read),
	    cmocka_unit_test(test_fetch_streams_body),
	    cmocka_unit_test(test_fetch_uid_after_body),
	    cmocka_unit_test(test_fetch_metadata),
	    cmocka_unit_test(test_fetch_callback_error_aborts),
	    cmocka_unit_test(test_fetch_handler_not_used_after_fetch),
	    cmocka_unit_test(test_bye_mid_command),
	    cmocka_unit_test(test_disconnect_mid_literal),
	    cmocka_unit_test(test_stall_times_out),
	    cmocka_unit_test(test_status_err_kinds),
	    cmocka_unit_test(test_list_and_lsub),
	    cmocka_unit_test(test_list_extended),
	    cmocka_unit_test(test_select_condstore),
	    cmocka_unit_test(test_examine_without_condstore),
	    cmocka_unit_test(test_bad_folder_name_leaves_nothing_in_flight),
	    cmocka_unit_test(test_fake_server_reports_mismatch),
	    cmocka_unit_test(test_quote),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
