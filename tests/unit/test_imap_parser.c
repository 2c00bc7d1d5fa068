/* test_imap_parser.c - the IMAP response parser against a table of fixtures.
 *
 * Each fixture is parsed whole, one byte at a time, and split in two at
 * every point; all runs must print the same thing.  A run prints every
 * response (kind, tag, status, code, args as a compact text), every
 * streamed literal's events and bytes, and the error text if any, so
 * "the same thing" means the same parse down to the byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap/imap_parser.h"
#include "util/buf.h"

enum cb_mode {
	CB_NONE,   /* NULL callbacks: every literal buffered */
	CB_BODIES, /* stream literals after BODY[...]/BINARY[...]/RFC822*, buffer others */
};

enum lim_mode {
	LIM_DEFAULT,
	LIM_SMALL, /* max_line 64, depth 4, buffer 32, literal 1000 */
};

struct fixture {
	const char *input;
	size_t len; /* 0: strlen(input) */
	enum cb_mode cb;
	enum lim_mode lim;
	const char *expect;
};

/* ---- printing a parse ----------------------------------------------- */

static void dump_args(struct buf *o, const struct imap_arg *a)
{
	for (; a; a = a->next) {
		switch (a->type) {
		case IMAP_ARG_ATOM:
			buf_append(o, a->str, a->len);
			break;
		case IMAP_ARG_STRING:
			buf_putc(o, '"');
			buf_append(o, a->str, a->len);
			buf_putc(o, '"');
			break;
		case IMAP_ARG_LITERAL:
			assert_int_equal(a->str[a->len], '\0');
			assert_int_equal(a->len, a->literal_size);
			buf_appendf(o, "{%llu}", (unsigned long long)a->literal_size);
			buf_append(o, a->str, a->len);
			break;
		case IMAP_ARG_LITERAL_STREAMED:
			buf_appendf(o, "{%llu}S", (unsigned long long)a->literal_size);
			break;
		case IMAP_ARG_NIL:
			buf_puts(o, "NIL");
			break;
		case IMAP_ARG_LIST:
			buf_putc(o, '(');
			dump_args(o, a->child);
			buf_putc(o, ')');
			break;
		}
		if (a->next)
			buf_putc(o, ' ');
	}
}

static void dump_response(struct buf *o, const struct imap_response *r)
{
	static const char *const st[] = {"", " OK", " NO", " BAD", " BYE", " PREAUTH"};
	switch (r->kind) {
	case IMAP_RESP_UNTAGGED:
		buf_putc(o, '*');
		break;
	case IMAP_RESP_TAGGED:
		buf_appendf(o, "T %s", r->tag);
		break;
	case IMAP_RESP_CONTINUATION:
		buf_putc(o, '+');
		break;
	}
	buf_puts(o, st[r->status]);
	if (r->code)
		buf_appendf(o, " code=%s", r->code);
	if (r->code_args) {
		buf_puts(o, " cargs=<");
		dump_args(o, r->code_args);
		buf_putc(o, '>');
	}
	if (r->code_raw)
		buf_appendf(o, " raw=[%s]", r->code_raw);
	if (r->text)
		buf_appendf(o, " text=[%s]", r->text);
	if (r->has_number)
		buf_appendf(o, " num=%u", r->number);
	if (r->name)
		buf_appendf(o, " name=%s", r->name);
	if (r->args) {
		buf_puts(o, " args=<");
		dump_args(o, r->args);
		buf_putc(o, '>');
	}
}

/* ---- callbacks ------------------------------------------------------ */

struct cbctx {
	struct buf *out;
	uint64_t announced, got;
	bool in_literal;
	int abort_after; /* literal_data calls before failing; <0 never */
	size_t chunks;
	/* what literal_begin was shown, for one test */
	const struct imap_response *seen_resp;
	char seen_list[64], seen_prev[64], seen_name[16];
};

static bool cb_begin(void *vctx, const struct imap_response *resp, const struct imap_arg *list,
                     const struct imap_arg *prev, uint64_t size)
{
	struct cbctx *c = vctx;
	const char *p = imap_arg_str(prev);
	snprintf(c->seen_list, sizeof(c->seen_list), "%s", list ? imap_arg_str(list) : "-");
	snprintf(c->seen_prev, sizeof(c->seen_prev), "%s", p ? p : "-");
	snprintf(c->seen_name, sizeof(c->seen_name), "%s", resp->name ? resp->name : "-");
	c->seen_resp = resp;
	if (!p || !(strncmp(p, "BODY[", 5) == 0 || strncmp(p, "BINARY[", 7) == 0 ||
	            strncmp(p, "RFC822", 6) == 0))
		return false;
	assert_false(c->in_literal);
	c->in_literal = true;
	c->announced = size;
	c->got = 0;
	buf_appendf(c->out, "<B %llu>", (unsigned long long)size);
	return true;
}

static int cb_data(void *vctx, const uint8_t *data, size_t len)
{
	struct cbctx *c = vctx;
	assert_true(c->in_literal);
	assert_true(len > 0);
	c->got += len;
	c->chunks++;
	assert_true(c->got <= c->announced);
	if (c->abort_after >= 0 && c->abort_after-- == 0)
		return -1;
	buf_append(c->out, data, len);
	return 0;
}

static int cb_end(void *vctx)
{
	struct cbctx *c = vctx;
	assert_true(c->in_literal);
	assert_int_equal(c->got, c->announced);
	c->in_literal = false;
	buf_puts(c->out, "<E>");
	return 0;
}

static const struct imap_parser_callbacks body_cbs = {cb_begin, cb_data, cb_end};

static struct imap_parser *new_parser(enum cb_mode cb, enum lim_mode lim, struct cbctx *ctx)
{
	static const struct imap_parser_limits small = {64, 4, 32, 1000};
	return imap_parser_new(lim == LIM_SMALL ? &small : NULL, cb == CB_BODIES ? &body_cbs : NULL,
	                       ctx);
}

/* ---- running a fixture ---------------------------------------------- */

/* Feed data in the pieces given by cuts (ascending offsets), print the
 * whole parse into out. */
static void run(const struct fixture *fx, const size_t *cuts, size_t ncuts, struct buf *out)
{
	const uint8_t *data = (const uint8_t *)fx->input;
	size_t len = fx->len ? fx->len : strlen(fx->input);
	struct cbctx ctx = {.out = out, .abort_after = -1};
	struct imap_parser *p = new_parser(fx->cb, fx->lim, &ctx);
	size_t start = 0;
	bool failed = false;

	buf_reset(out);
	for (size_t k = 0; k <= ncuts && !failed; k++) {
		size_t end = k < ncuts ? cuts[k] : len;
		while (start < end) {
			size_t used;
			enum imap_parse_result r =
			    imap_parser_feed(p, data + start, end - start, &used);
			assert_true(used <= end - start);
			start += used;
			if (r == IMAP_PARSE_RESPONSE) {
				dump_response(out, imap_parser_response(p));
				buf_putc(out, '\n');
			} else if (r == IMAP_PARSE_ERROR) {
				buf_appendf(out, "ERROR: %s\n", imap_parser_error(p));
				/* It stays in error. */
				assert_int_equal(imap_parser_feed(p, data, len, &used),
				                 IMAP_PARSE_ERROR);
				failed = true;
				break;
			} else {
				assert_int_equal(start, end);
			}
		}
	}
	if (!failed && start == len) {
		size_t used;
		/* The parser must not hold a finished response back. */
		if (imap_parser_feed(p, NULL, 0, &used) != IMAP_PARSE_MORE)
			fail();
	}
	imap_parser_free(&p);
	assert_null(p);
}

static void check_fixture(const struct fixture *fx)
{
	size_t len = fx->len ? fx->len : strlen(fx->input);
	struct buf whole = BUF_INIT(0), other = BUF_INIT(0);

	run(fx, NULL, 0, &whole);
	if (strcmp(buf_cstr(&whole), fx->expect) != 0) {
		print_error("input:    %s\nexpected: %s\ngot:      %s\n", fx->input, fx->expect,
		            buf_cstr(&whole));
		fail();
	}

	/* One byte at a time. */
	size_t *cuts = malloc((len + 1) * sizeof(*cuts));
	for (size_t i = 0; i < len; i++)
		cuts[i] = i + 1;
	run(fx, cuts, len ? len - 1 : 0, &other);
	assert_string_equal(buf_cstr(&other), buf_cstr(&whole));

	/* Two pieces, at every point. */
	for (size_t i = 1; i < len; i++) {
		cuts[0] = i;
		run(fx, cuts, 1, &other);
		if (strcmp(buf_cstr(&other), buf_cstr(&whole)) != 0) {
			print_error("split at %zu differs:\n%s\nvs\n%s\n", i, buf_cstr(&other),
			            buf_cstr(&whole));
			fail();
		}
	}
	/* Three pieces for short inputs. */
	if (len <= 120) {
		for (size_t i = 1; i < len; i++) {
			for (size_t j = i + 1; j < len; j++) {
				cuts[0] = i;
				cuts[1] = j;
				run(fx, cuts, 2, &other);
				assert_string_equal(buf_cstr(&other), buf_cstr(&whole));
			}
		}
	}
	free(cuts);
	buf_release(&whole);
	buf_release(&other);
}

/* ---- the fixtures --------------------------------------------------- */

#define FETCH_HDR "Message-ID: <123456789012@example.org>\r\n\r\n"
#define FETCH_12                                                                                   \
	"* 12 FETCH (UID 5 FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" "            \
	"RFC822.SIZE 4286 BODY[HEADER.FIELDS (MESSAGE-ID)] {42}\r\n" FETCH_HDR ")\r\n"
#define FETCH_12_ARGS                                                                              \
	"(UID 5 FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 4286 "      \
	"BODY[HEADER.FIELDS (MESSAGE-ID)] "
#define CAPS "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN"

/* clang-format off */
static const struct fixture fixtures[] = {
	/* status responses */
	{ "a1 OK [APPENDUID 38505 3955] APPEND completed\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "T a1 OK code=APPENDUID cargs=<38505 3955> raw=[APPENDUID 38505 3955] "
	  "text=[APPEND completed]\n" },
	{ "* OK [CAPABILITY " CAPS "] Dovecot ready.\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* OK code=CAPABILITY cargs=<" CAPS "> raw=[CAPABILITY " CAPS "] text=[Dovecot ready.]\n" },
	{ "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
	  "AUTH=PLAIN AUTH=LOGIN] Dovecot (Debian) ready.\r\n",
	  0, CB_NONE, LIM_DEFAULT,
	  "* OK code=CAPABILITY cargs=<IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ "
	  "AUTH=PLAIN AUTH=LOGIN> raw=[CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE "
	  "IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN] text=[Dovecot (Debian) ready.]\n" },
	{ "* BYE Logging out\r\n", 0, CB_NONE, LIM_DEFAULT, "* BYE text=[Logging out]\n" },
	{ "* BYE\r\n", 0, CB_NONE, LIM_DEFAULT, "* BYE text=[]\n" },
	{ "* PREAUTH [CAPABILITY IMAP4rev1] Logged in as alice\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* PREAUTH code=CAPABILITY cargs=<IMAP4rev1> raw=[CAPABILITY IMAP4rev1] "
	  "text=[Logged in as alice]\n" },
	{ "* NO [ALERT] Mailbox is almost full\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* NO code=ALERT raw=[ALERT] text=[Mailbox is almost full]\n" },
	{ "* OK\r\n", 0, CB_NONE, LIM_DEFAULT, "* OK text=[]\n" },
	{ "* ok \r\n", 0, CB_NONE, LIM_DEFAULT, "* OK text=[]\n" },
	{ "a2 NO [TRYCREATE] Mailbox doesn't exist: Foo\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "T a2 NO code=TRYCREATE raw=[TRYCREATE] text=[Mailbox doesn't exist: Foo]\n" },
	{ "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Flags permitted.\r\n", 0, CB_NONE,
	  LIM_DEFAULT,
	  "* OK code=PERMANENTFLAGS cargs=<(\\Deleted \\Seen \\*)> "
	  "raw=[PERMANENTFLAGS (\\Deleted \\Seen \\*)] text=[Flags permitted.]\n" },
	{ "A003 OK [COPYUID 1 1:3 4:6] Done\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "T A003 OK code=COPYUID cargs=<1 1:3 4:6> raw=[COPYUID 1 1:3 4:6] text=[Done]\n" },
	{ "* OK [uidvalidity 3857529045] UIDs valid\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* OK code=UIDVALIDITY cargs=<3857529045> raw=[uidvalidity 3857529045] "
	  "text=[UIDs valid]\n" },
	{ "a4 bad Error in IMAP command\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "T a4 BAD text=[Error in IMAP command]\n" },
	{ "a5 OK [READ-WRITE]\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "T a5 OK code=READ-WRITE raw=[READ-WRITE] text=[]\n" },
	{ "a6 OK [BADCHARSET (UTF-8 \"US-ASCII\")]x\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "T a6 OK code=BADCHARSET cargs=<(UTF-8 \"US-ASCII\")> "
	  "raw=[BADCHARSET (UTF-8 \"US-ASCII\")] text=[x]\n" },
	/* response codes whose arguments do not parse keep code and raw */
	{ "* OK [FOO (a] text\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* OK code=FOO raw=[FOO (a] text=[text]\n" },
	{ "* OK [X \"abc] rest\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* OK code=X raw=[X \"abc] text=[rest]\n" },
	{ "* OK [X a)] rest\r\n", 0, CB_NONE, LIM_DEFAULT, "* OK code=X raw=[X a)] text=[rest]\n" },
	{ "* OK [] empty\r\n", 0, CB_NONE, LIM_DEFAULT, "* OK raw=[] text=[empty]\n" },
	{ "* OK [ALERT\r\n", 0, CB_NONE, LIM_DEFAULT, "* OK code=ALERT raw=[ALERT] text=[]\n" },
	{ "* OK [\"q\" 1] t\r\n", 0, CB_NONE, LIM_DEFAULT, "* OK code=\"Q\" raw=[\"q\" 1] text=[t]\n" },
	{ "* NO [X (((((a)))))] deep\r\n", 0, CB_NONE, LIM_SMALL,
	  "* NO code=X raw=[X (((((a)))))] text=[deep]\n" },
	{ "* OK [X {3}\r\nabc] t\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* OK code=X cargs=<{3}abc> raw=[X {3}\r\nabc] text=[t]\n" },
	{ "* OK [REFERRAL imap://u@h/INBOX;UIDVALIDITY=1%20] see\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* OK code=REFERRAL cargs=<imap://u@h/INBOX;UIDVALIDITY=1%20> "
	  "raw=[REFERRAL imap://u@h/INBOX;UIDVALIDITY=1%20] text=[see]\n" },
	/* continuations */
	{ "+ Ready for literal data\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "+ text=[Ready for literal data]\n" },
	{ "+ \r\n", 0, CB_NONE, LIM_DEFAULT, "+ text=[]\n" },
	{ "+\r\n", 0, CB_NONE, LIM_DEFAULT, "+ text=[]\n" },
	{ "+ dGVzdA==\r\n", 0, CB_NONE, LIM_DEFAULT, "+ text=[dGVzdA==]\n" },
	/* FETCH, buffered and streamed */
	{ FETCH_12, 0, CB_NONE, LIM_DEFAULT,
	  "* num=12 name=FETCH args=<" FETCH_12_ARGS "{42}" FETCH_HDR ")>\n" },
	{ FETCH_12, 0, CB_BODIES, LIM_DEFAULT,
	  "<B 42>" FETCH_HDR "<E>* num=12 name=FETCH args=<" FETCH_12_ARGS "{42}S)>\n" },
	{ "* 1 FETCH (BODY[]<0> {5}\r\nhello BINARY[1] ~{3}\r\nabc UID 7)\r\n", 0, CB_NONE,
	  LIM_DEFAULT, "* num=1 name=FETCH args=<(BODY[]<0> {5}hello BINARY[1] {3}abc UID 7)>\n" },
	{ "* 1 FETCH (BODY[]<0> {5}\r\nhello BINARY[1] ~{3}\r\nabc UID 7)\r\n", 0, CB_BODIES,
	  LIM_DEFAULT,
	  "<B 5>hello<E><B 3>abc<E>* num=1 name=FETCH args=<(BODY[]<0> {5}S BINARY[1] {3}S "
	  "UID 7)>\n" },
	{ "* 1 fetch (BODY[HEADER.FIELDS (\"X-A]\" DATE)] {2}\r\nab)\r\n", 0, CB_NONE,
	  LIM_DEFAULT, "* num=1 name=FETCH args=<(BODY[HEADER.FIELDS (\"X-A]\" DATE)] {2}ab)>\n" },
	{ "* 2 FETCH (BODY[] {0}\r\n FLAGS ())\r\n", 0, CB_BODIES, LIM_DEFAULT,
	  "<B 0><E>* num=2 name=FETCH args=<(BODY[] {0}S FLAGS ())>\n" },
	{ "* 2 FETCH (RFC822 {4+}\r\n\x01\r\n\x02)\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* num=2 name=FETCH args=<(RFC822 {4}\x01\r\n\x02)>\n" },
	/* other untagged data */
	{ "* LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=LIST args=<(\\HasNoChildren \\Sent) \".\" Sent>\n" },
	{ "* LIST () NIL INBOX\r\n", 0, CB_NONE, LIM_DEFAULT, "* name=LIST args=<() NIL INBOX>\n" },
	{ "* LIST (\\Noselect) \"/\" {6}\r\nfoo/ba\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=LIST args=<(\\Noselect) \"/\" {6}foo/ba>\n" },
	{ "* LIST (\\Noselect) \"/\" {6}\r\nfoo/ba\r\n", 0, CB_BODIES, LIM_DEFAULT,
	  "* name=LIST args=<(\\Noselect) \"/\" {6}foo/ba>\n" },
	{ "* LIST () \"/\" \"a\\\"b\\\\c\"\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=LIST args=<() \"/\" \"a\"b\\c\">\n" },
	{ "* LIST () \"/\" \"Entw\xc3\xbcrfe\"\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=LIST args=<() \"/\" \"Entw\xc3\xbcrfe\">\n" },
	{ "* LIST () \"/\" ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=LIST args=<() \"/\" ~peter/mail/&U,BTFw-/&ZeVnLIqe->\n" },
	{ "* LSUB () \".\" foo]bar\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=LSUB args=<() \".\" foo]bar>\n" },
	{ "* STATUS \"x\" (MESSAGES 3 UIDNEXT 5)\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=STATUS args=<\"x\" (MESSAGES 3 UIDNEXT 5)>\n" },
	{ "* STATUS {3}\r\nabc (MESSAGES 3)\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=STATUS args=<{3}abc (MESSAGES 3)>\n" },
	{ "* NAMESPACE ((\"\" \".\")) NIL NIL\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=NAMESPACE args=<((\"\" \".\")) NIL NIL>\n" },
	{ "* ID (\"name\" \"Dovecot\")\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=ID args=<(\"name\" \"Dovecot\")>\n" },
	{ "* ID NIL\r\n", 0, CB_NONE, LIM_DEFAULT, "* name=ID args=<NIL>\n" },
	{ "* ENABLED CONDSTORE\r\n", 0, CB_NONE, LIM_DEFAULT, "* name=ENABLED args=<CONDSTORE>\n" },
	{ "* VANISHED (EARLIER) 1:3\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=VANISHED args=<(EARLIER) 1:3>\n" },
	{ "* 3 EXISTS\r\n", 0, CB_NONE, LIM_DEFAULT, "* num=3 name=EXISTS\n" },
	{ "* 4294967295 EXPUNGE\r\n", 0, CB_NONE, LIM_DEFAULT, "* num=4294967295 name=EXPUNGE\n" },
	{ "* 3 RECENT\n", 0, CB_NONE, LIM_DEFAULT, "* num=3 name=RECENT\n" },
	{ "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=CAPABILITY args=<IMAP4rev1 AUTH=PLAIN>\n" },
	{ "* SEARCH\r\n", 0, CB_NONE, LIM_DEFAULT, "* name=SEARCH\n" },
	{ "* SEARCH 2 3 \r\n", 0, CB_NONE, LIM_DEFAULT, "* name=SEARCH args=<2 3>\n" },
	{ "* FLAGS (\\Answered \\Flagged $Forwarded)\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* name=FLAGS args=<(\\Answered \\Flagged $Forwarded)>\n" },
	{ "* 1 EXISTS\r\n* 0 RECENT\r\n+ go\r\na1 OK done\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* num=1 name=EXISTS\n* num=0 name=RECENT\n+ text=[go]\nT a1 OK text=[done]\n" },
	{ "* LIST (\\Noselect) \"/\" \"\"\r\n* OK [X (a] y\r\n* 4 EXISTS\r\n", 0, CB_NONE, LIM_SMALL,
	  "* name=LIST args=<(\\Noselect) \"/\" \"\">\n* OK code=X raw=[X (a] text=[y]\n"
	  "* num=4 name=EXISTS\n" },
	/* errors */
	{ "* LIST () \"/\" \"abc\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "ERROR: unterminated quoted string\n" },
	{ "* X ((((((x))))))\r\n", 0, CB_NONE, LIM_SMALL, "ERROR: lists nested deeper than 4\n" },
	{ "* X ((((x))))\r\n", 0, CB_NONE, LIM_SMALL, "* name=X args=<((((x))))>\n" },
	{ "* OK 0123456789012345678901234567890123456789012345678901234567890123\r\n", 0, CB_NONE,
	  LIM_SMALL, "ERROR: response line too long (over 64 bytes)\n" },
	{ "* 1 FETCH (BODY[] {99999999999999999999}\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "ERROR: literal of 99999999999999999999 bytes is larger than the limit 4294967296\n" },
	{ "* 1 FETCH (BODY[] {2000}\r\n", 0, CB_BODIES, LIM_SMALL,
	  "ERROR: literal of 2000 bytes is larger than the limit 1000\n" },
	{ "* LIST () \"/\" {40}\r\n", 0, CB_BODIES, LIM_SMALL,
	  "ERROR: literal of 40 bytes is too large to buffer (limit 32 bytes per response)\n" },
	{ "* X {20}\r\n01234567890123456789 {20}\r\n", 0, CB_NONE, LIM_SMALL,
	  "ERROR: literal of 20 bytes is too large to buffer (limit 32 bytes per response)\n" },
	{ "\x01\x02garbage\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: response starts with byte 0x01\n" },
	{ "(foo)\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: response starts with byte 0x28\n" },
	{ "\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: empty response line\n" },
	{ "* OK hel\0lo\r\n", 13, CB_NONE, LIM_DEFAULT, "ERROR: NUL byte in response line\n" },
	{ "* 1 FETCH (UID 1))\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: unexpected )\n" },
	{ "* 1 FETCH (UID 1\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: unterminated list (missing ))\n" },
	{ "a1 BYE x\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: tagged response is not OK, NO or BAD\n" },
	{ "a1\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: missing status after tag\n" },
	{ "* 99999999999 EXISTS\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "ERROR: number 99999999999 out of range\n" },
	{ "* 12\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: missing response name after number\n" },
	{ "*X\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: missing space after *\n" },
	{ "* OK x\ry\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: CR not followed by LF\n" },
	{ "* 1 FETCH (a\"b)\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: unexpected byte 0x22 in atom\n" },
	{ "* 1 FETCH (BODY[HEADER\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "ERROR: unterminated [ in atom\n" },
	{ "* LIST () \"/\" {5x}\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: bad literal size\n" },
	{ "* LIST () \"/\" {}\r\n", 0, CB_NONE, LIM_DEFAULT, "ERROR: bad literal size\n" },
	{ "* 1 FETCH (BODY[] {5}x\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "ERROR: line does not end after literal size\n" },
	{ "* 1 FETCH \"a\"\"b\"\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "ERROR: missing space after string, literal or list\n" },
	{ "* 1 FETCH (BODY[] {3}\r\nabc\"x\")\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "ERROR: missing space after string, literal or list\n" },
	{ "* 1 EXISTS\r\n* OK \"\t\x7f\"\r\nbad\x01\r\n", 0, CB_NONE, LIM_DEFAULT,
	  "* num=1 name=EXISTS\n* OK text=[\"\t\x7f\"]\nERROR: unexpected byte 0x01 in tag\n" },
	/* regressions found by fuzzing */
};
/* clang-format on */

static void test_fixtures(void **state)
{
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
		check_fixture(&fixtures[i]);
}

/* ---- a 100 KB body, streamed ---------------------------------------- */

static void test_streamed_body(void **state)
{
	const size_t body_len = 100 * 1024;
	uint8_t *body = malloc(body_len);
	for (size_t i = 0; i < body_len; i++)
		body[i] = (uint8_t)((i * 7 + i / 251) & 0xff); /* every byte value, CRs, NULs */
	struct buf in = BUF_INIT(0);
	buf_puts(&in, "* 7 FETCH (UID 42 BODY[] {102400}\r\n");
	size_t hdr = in.len;
	buf_append(&in, body, body_len);
	buf_puts(&in, " FLAGS (\\Seen))\r\na1 OK done\r\n");

	struct buf out = BUF_INIT(0);
	struct cbctx ctx = {.out = &out, .abort_after = -1};
	struct imap_parser *p = new_parser(CB_BODIES, LIM_DEFAULT, &ctx);
	size_t used;

	/* Header and half the body: the half is delivered at once. */
	assert_int_equal(imap_parser_feed(p, in.data, hdr + body_len / 2, &used), IMAP_PARSE_MORE);
	assert_int_equal(used, hdr + body_len / 2);
	assert_string_equal(ctx.seen_prev, "BODY[]");
	assert_string_equal(ctx.seen_list, "UID");
	assert_string_equal(ctx.seen_name, "FETCH");
	assert_int_equal(ctx.got, body_len / 2);
	/* The rest in 1000-byte pieces. */
	size_t off = used;
	enum imap_parse_result r = IMAP_PARSE_MORE;
	while (off < in.len) {
		size_t n = in.len - off < 1000 ? in.len - off : 1000;
		r = imap_parser_feed(p, in.data + off, n, &used);
		off += used;
		if (r == IMAP_PARSE_RESPONSE)
			break;
		assert_int_equal(r, IMAP_PARSE_MORE);
	}
	assert_int_equal(r, IMAP_PARSE_RESPONSE);
	const struct imap_response *resp = imap_parser_response(p);
	assert_int_equal(resp->number, 7);
	const struct imap_arg *l = resp->args->child;
	assert_true(imap_arg_atom_is(l, "uid"));
	assert_true(imap_arg_atom_is(l->next->next, "BODY[]"));
	const struct imap_arg *lit = l->next->next->next;
	assert_int_equal(lit->type, IMAP_ARG_LITERAL_STREAMED);
	assert_int_equal(lit->literal_size, body_len);
	assert_null(imap_arg_str(lit));
	assert_int_equal(imap_arg_count(l), 6);

	/* Exactly the body's bytes came out, framed by begin and end. */
	assert_int_equal(out.len, strlen("<B 102400>") + body_len + strlen("<E>"));
	assert_memory_equal(out.data, "<B 102400>", 10);
	assert_memory_equal(out.data + 10, body, body_len);
	assert_memory_equal(out.data + 10 + body_len, "<E>", 3);

	r = imap_parser_feed(p, in.data + off, in.len - off, &used);
	assert_int_equal(r, IMAP_PARSE_RESPONSE);
	assert_string_equal(imap_parser_response(p)->tag, "a1");
	imap_parser_free(&p);

	/* Byte at a time and at random split points: same bytes out. */
	struct fixture fx = {(const char *)in.data, in.len, CB_BODIES, LIM_DEFAULT, NULL};
	struct buf whole = BUF_INIT(0), other = BUF_INIT(0);
	run(&fx, NULL, 0, &whole);
	size_t *cuts = malloc(in.len * sizeof(*cuts));
	for (size_t i = 0; i + 1 < in.len; i++)
		cuts[i] = i + 1;
	run(&fx, cuts, in.len - 1, &other);
	assert_int_equal(other.len, whole.len);
	assert_memory_equal(other.data, whole.data, whole.len);
	srand(1);
	for (int k = 0; k < 200; k++) {
		size_t n = 0, c = 0;
		for (;;) {
			c += 1 + (size_t)rand() % (in.len / 4);
			if (c >= in.len)
				break;
			cuts[n++] = c;
		}
		run(&fx, cuts, n, &other);
		assert_int_equal(other.len, whole.len);
		assert_memory_equal(other.data, whole.data, whole.len);
	}
	free(cuts);
	free(body);
	buf_release(&in);
	buf_release(&out);
	buf_release(&whole);
	buf_release(&other);
}

static void test_buffered_literal_limit_default(void **state)
{
	/* NULL callbacks buffer everything up to max_literal_buffer. */
	struct imap_parser *p = imap_parser_new(NULL, NULL, NULL);
	const char *in = "* 1 FETCH (BODY[] {1048577}\r\n";
	size_t used;
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)in, strlen(in), &used),
	                 IMAP_PARSE_ERROR);
	assert_string_equal(imap_parser_error(p), "literal of 1048577 bytes is too large to buffer "
	                                          "(limit 1048576 bytes per response)");
	/* reset makes it usable again */
	imap_parser_reset(p);
	in = "* 1 FETCH (BODY[] {1048576}\r\n";
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)in, strlen(in), &used),
	                 IMAP_PARSE_MORE);
	uint8_t *big = calloc(1, 1048576);
	assert_int_equal(imap_parser_feed(p, big, 1048576, &used), IMAP_PARSE_MORE);
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)")\r\n", 3, &used),
	                 IMAP_PARSE_RESPONSE);
	const struct imap_arg *lit = imap_parser_response(p)->args->child->next;
	assert_int_equal(lit->type, IMAP_ARG_LITERAL);
	assert_int_equal(lit->len, 1048576);
	assert_memory_equal(lit->str, big, 1048576);
	free(big);
	imap_parser_free(&p);
}

static void test_consumer_abort(void **state)
{
	struct buf out = BUF_INIT(0);
	struct cbctx ctx = {.out = &out, .abort_after = 1};
	struct imap_parser *p = new_parser(CB_BODIES, LIM_DEFAULT, &ctx);
	const char *in = "* 1 FETCH (BODY[] {10}\r\n0123456789)\r\n";
	size_t used, off = 0;
	enum imap_parse_result r = IMAP_PARSE_MORE;
	/* two bytes at a time: the second chunk is refused */
	while (r == IMAP_PARSE_MORE && off < strlen(in)) {
		r = imap_parser_feed(p, (const uint8_t *)in + off, 2, &used);
		off += used;
	}
	assert_int_equal(r, IMAP_PARSE_ERROR);
	assert_string_equal(imap_parser_error(p), "aborted by consumer");
	assert_null(imap_parser_response(p));
	/* after reset, a new response parses */
	imap_parser_reset(p);
	ctx.in_literal = false;
	ctx.abort_after = -1;
	in = "* 2 EXISTS\r\n";
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)in, strlen(in), &used),
	                 IMAP_PARSE_RESPONSE);
	assert_int_equal(imap_parser_response(p)->number, 2);
	imap_parser_free(&p);
	buf_release(&out);
}

static void test_consumed_stops_at_response(void **state)
{
	struct imap_parser *p = imap_parser_new(NULL, NULL, NULL);
	const char *in = "* 1 EXISTS\r\n* 2 EXISTS\r\n* 3 EX";
	size_t used;
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)in, strlen(in), &used),
	                 IMAP_PARSE_RESPONSE);
	assert_int_equal(used, 12);
	const struct imap_response *r1 = imap_parser_response(p);
	assert_int_equal(r1->number, 1);
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)in + 12, strlen(in) - 12, &used),
	                 IMAP_PARSE_RESPONSE);
	assert_int_equal(used, 12);
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)in + 24, strlen(in) - 24, &used),
	                 IMAP_PARSE_MORE);
	assert_int_equal(used, 6);
	assert_null(imap_parser_response(p));
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)"ISTS\r\n", 6, &used),
	                 IMAP_PARSE_RESPONSE);
	assert_int_equal(imap_parser_response(p)->number, 3);
	imap_parser_free(&p);
	imap_parser_free(&p); /* NULL is fine */
}

static void test_callback_sees_partial_response(void **state)
{
	struct buf out = BUF_INIT(0);
	struct cbctx ctx = {.out = &out, .abort_after = -1};
	struct imap_parser *p = new_parser(CB_BODIES, LIM_DEFAULT, &ctx);
	const char *in = "* 5 FETCH (UID 9 BODY[TEXT] {1}\r\nx)\r\n";
	size_t used;
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)in, strlen(in), &used),
	                 IMAP_PARSE_RESPONSE);
	assert_string_equal(ctx.seen_list, "UID");
	assert_string_equal(ctx.seen_prev, "BODY[TEXT]");
	assert_string_equal(ctx.seen_name, "FETCH");
	assert_ptr_equal(ctx.seen_resp, imap_parser_response(p));
	assert_true(ctx.seen_resp->has_number);
	assert_int_equal(ctx.seen_resp->number, 5);
	imap_parser_free(&p);
	buf_release(&out);
}

static void test_arg_helpers(void **state)
{
	struct imap_parser *p = imap_parser_new(NULL, NULL, NULL);
	const char *in = "* X 18446744073709551615 18446744073709551616 012 -1 1a \"7\" NIL () "
	                 "{2}\r\n42 fetch\r\n";
	size_t used;
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)in, strlen(in), &used),
	                 IMAP_PARSE_RESPONSE);
	const struct imap_arg *a = imap_parser_response(p)->args;
	uint64_t n = 0;
	assert_int_equal(imap_arg_count(a), 10);
	assert_int_equal(imap_arg_count(NULL), 0);
	assert_true(imap_arg_number(a, &n));
	assert_true(n == UINT64_MAX);
	a = a->next;
	assert_false(imap_arg_number(a, &n));
	a = a->next;
	assert_true(imap_arg_number(a, &n));
	assert_int_equal(n, 12);
	a = a->next;
	assert_false(imap_arg_number(a, &n));
	a = a->next;
	assert_false(imap_arg_number(a, &n));
	a = a->next; /* "7": a string, not an atom */
	assert_false(imap_arg_number(a, &n));
	assert_string_equal(imap_arg_str(a), "7");
	assert_false(imap_arg_atom_is(a, "7"));
	a = a->next; /* NIL */
	assert_int_equal(a->type, IMAP_ARG_NIL);
	assert_null(imap_arg_str(a));
	assert_false(imap_arg_atom_is(a, "NIL"));
	a = a->next; /* () */
	assert_int_equal(a->type, IMAP_ARG_LIST);
	assert_null(a->child);
	assert_null(imap_arg_str(a));
	a = a->next; /* literal */
	assert_string_equal(imap_arg_str(a), "42");
	assert_false(imap_arg_number(a, &n));
	a = a->next;
	assert_true(imap_arg_atom_is(a, "FETCH"));
	assert_false(imap_arg_atom_is(a, "FETC"));
	assert_false(imap_arg_atom_is(a, "FETCHX"));
	assert_null(a->next);
	assert_null(imap_arg_str(NULL));
	assert_false(imap_arg_atom_is(NULL, "x"));
	assert_false(imap_arg_number(NULL, &n));
	imap_parser_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fixtures),
	    cmocka_unit_test(test_streamed_body),
	    cmocka_unit_test(test_buffered_literal_limit_default),
	    cmocka_unit_test(test_consumer_abort),
	    cmocka_unit_test(test_consumed_stops_at_response),
	    cmocka_unit_test(test_callback_sees_partial_response),
	    cmocka_unit_test(test_arg_helpers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
