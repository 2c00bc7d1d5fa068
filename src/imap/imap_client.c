/* imap_client.c - see imap_client.h for the contract.
 *
 * Structure: a connection (net/conn) and a push parser (imap_parser);
 * read_some() pulls bytes, feeds the parser and dispatches each complete
 * response: tagged ones to their command on the in-flight list, untagged
 * ones to the handler of the operation in progress.  Commands are
 * written immediately (pipelining); completion is observed later.
 */
#include "imap/imap_client.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_parser.h"
#include "imap/mutf7.h"
#include "net/conn.h"
#include "util/mem.h"

#define READ_CHUNK 65536
#define MAX_LIST_MAILBOXES 100000

/* What a synchronous caller waits for. */
struct cmd_result {
	bool done;
	enum imap_status status;
	struct err err;
};

struct cmd {
	struct cmd *next;
	unsigned tag;
	char name[24];                 /* command name, for error messages */
	char folder[256];              /* the mailbox it is about, or "" */
	enum err_kind default_kind;    /* for a NO with no known code */
	struct cmd_result *result;     /* a waiting caller's, or NULL */
	imap_append_done_fn *append_done;
	void *append_ctx;
	bool is_fetch;
};

typedef int untagged_fn(struct imap_client *c, const struct imap_response *r, struct err *err);

struct imap_client {
	struct conn *conn;
	struct imap_parser *parser;
	enum side side;
	char *host;
	char *user;
	unsigned caps;
	struct buf capstr; /* " CAP1 CAP2 " upper-case, for imap_client_has_cap */
	unsigned next_tag;
	struct cmd *inflight_head, *inflight_tail;
	size_t n_inflight;
	bool dead;
	struct err dead_err;
	bool greeting_seen;
	bool preauth;
	bool continuation;     /* a "+" arrived since it was last cleared */
	bool in_read;          /* re-entrancy guard for the drain callback */
	bool hide_trace;       /* credentials being written */
	struct err pending_err; /* first failed command with no callback */
	bool has_pending_err;
	/* Untagged data of the operation in progress. */
	untagged_fn *untagged;
	void *untagged_ctx;
	/* FETCH data and BODY[] streaming. */
	struct imap_fetch_handler fetch;
	size_t fetches_in_flight; /* the handler lives until the last one ends */
	bool streaming_body;
	struct err cb_err; /* error set by a consumer callback */
	bool has_cb_err;
	/* APPEND in progress: bytes still owed. */
	uint64_t append_left;
	bool append_open;    /* a message literal is being sent */
	bool append_between; /* MULTIAPPEND: between two messages */
	imap_trace_fn *trace;
	void *trace_ctx;
	unsigned trace_no;
};

/* ---------- errors ---------- */

static void where(const struct imap_client *c, struct err *err, const char *folder)
{
	err_where(err, c->side, c->host, c->user, folder && *folder ? folder : NULL);
}

static int fail(struct imap_client *c, struct err *err, enum err_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(struct imap_client *c, struct err *err, enum err_kind kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_vset(err, kind, fmt, ap);
	va_end(ap);
	where(c, err, NULL);
	return -1;
}

/* The connection is unusable from now on; remember why. */
static int die(struct imap_client *c, struct err *err)
{
	if (!c->dead) {
		c->dead = true;
		c->dead_err = *err;
		/* A local failure (disk, database) reported by a callback keeps
		 * its kind: retrying the connection would not help. */
		if (c->dead_err.kind != ERR_ACCOUNT && c->dead_err.kind != ERR_CONFIG &&
		    c->dead_err.kind != ERR_INTERNAL)
			c->dead_err.kind = ERR_TRANSIENT;
	}
	*err = c->dead_err;
	return -1;
}

static bool code_is(const struct imap_response *r, const char *code)
{
	return r->code && strcmp(r->code, code) == 0;
}

void imap_client_status_err(const struct imap_client *c, const struct imap_response *r,
			    enum err_kind default_kind, struct err *err)
{
	enum err_kind kind = default_kind;
	const char *hint = NULL;

	if (r->status == IMAP_STATUS_BYE) {
		kind = ERR_TRANSIENT;
		hint = "the server closed the connection; imapmig retries such failures";
	} else if (code_is(r, "AUTHENTICATIONFAILED") || code_is(r, "AUTHORIZATIONFAILED") ||
		   code_is(r, "EXPIRED") || code_is(r, "PRIVACYREQUIRED") ||
		   code_is(r, "CONTACTADMIN")) {
		kind = ERR_ACCOUNT;
	} else if (code_is(r, "TOOBIG") || code_is(r, "OVERQUOTA")) {
		kind = ERR_MESSAGE;
	} else if (code_is(r, "UNAVAILABLE") || code_is(r, "LIMIT") || code_is(r, "INUSE") ||
		   code_is(r, "SERVERBUG") || code_is(r, "THROTTLED")) {
		kind = ERR_TRANSIENT;
		hint = "the server asked us to wait; imapmig retries such failures";
	} else if (code_is(r, "NONEXISTENT") || code_is(r, "TRYCREATE") ||
		   code_is(r, "NOPERM") || code_is(r, "CANNOT")) {
		kind = ERR_FOLDER;
	}
	if (err->what[0] == '\0')
		snprintf(err->what, sizeof(err->what), "command failed");
	err->kind = kind;
	char words[600];
	if (r->code_raw)
		snprintf(words, sizeof(words), "[%s] %s", r->code_raw, r->text ? r->text : "");
	else
		snprintf(words, sizeof(words), "%s", r->text ? r->text : "");
	const char *status = r->status == IMAP_STATUS_NO    ? "NO "
			     : r->status == IMAP_STATUS_BAD ? "BAD "
			     : r->status == IMAP_STATUS_BYE ? "BYE "
							    : "";
	char full[640];
	snprintf(full, sizeof(full), "%s%s", status, words);
	err_server(err, full, strlen(full));
	if (hint && !err->hint[0])
		err_hint(err, "%s", hint);
	err_where(err, c->side, c->host, c->user, NULL);
}

/* ---------- capabilities ---------- */

static const struct {
	const char *name;
	unsigned bit;
} cap_names[] = {
	{ "IMAP4REV1", IMAP_CAP_IMAP4REV1 },   { "IMAP4REV2", IMAP_CAP_IMAP4REV2 },
	{ "STARTTLS", IMAP_CAP_STARTTLS },     { "LOGINDISABLED", IMAP_CAP_LOGINDISABLED },
	{ "AUTH=PLAIN", IMAP_CAP_AUTH_PLAIN }, { "SASL-IR", IMAP_CAP_SASL_IR },
	{ "LITERAL+", IMAP_CAP_LITERALPLUS },  { "LITERAL-", IMAP_CAP_LITERALMINUS },
	{ "UIDPLUS", IMAP_CAP_UIDPLUS },       { "NAMESPACE", IMAP_CAP_NAMESPACE },
	{ "LIST-EXTENDED", IMAP_CAP_LIST_EXTENDED }, { "SPECIAL-USE", IMAP_CAP_SPECIAL_USE },
	{ "CONDSTORE", IMAP_CAP_CONDSTORE },   { "QRESYNC", IMAP_CAP_QRESYNC },
	{ "MULTIAPPEND", IMAP_CAP_MULTIAPPEND }, { "ID", IMAP_CAP_ID },
	{ "ENABLE", IMAP_CAP_ENABLE },         { "LIST-STATUS", IMAP_CAP_LIST_STATUS },
	{ "COMPRESS=DEFLATE", IMAP_CAP_COMPRESS }, { "UTF8=ACCEPT", IMAP_CAP_UTF8_ACCEPT },
	{ "AUTH=XOAUTH2", IMAP_CAP_AUTH_XOAUTH2 },
};

static void set_caps(struct imap_client *c, const struct imap_arg *a)
{
	c->caps = 0;
	buf_reset(&c->capstr);
	buf_putc(&c->capstr, ' ');
	for (; a; a = a->next) {
		const char *s = imap_arg_str(a);
		if (!s)
			continue;
		for (const char *p = s; *p; p++)
			buf_putc(&c->capstr, (char)toupper((unsigned char)*p));
		buf_putc(&c->capstr, ' ');
		for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
			if (strcasecmp(s, cap_names[i].name) == 0)
				c->caps |= cap_names[i].bit;
	}
	/* IMAP4rev2 includes these. */
	if (c->caps & IMAP_CAP_IMAP4REV2)
		c->caps |= IMAP_CAP_NAMESPACE | IMAP_CAP_UIDPLUS | IMAP_CAP_LIST_EXTENDED |
			   IMAP_CAP_SPECIAL_USE | IMAP_CAP_SASL_IR | IMAP_CAP_LITERALMINUS |
			   IMAP_CAP_ENABLE | IMAP_CAP_LIST_STATUS;
}

unsigned imap_client_caps(const struct imap_client *c)
{
	return c->caps;
}

bool imap_client_has_cap(const struct imap_client *c, const char *name)
{
	char needle[128];
	size_t n = 0;
	needle[n++] = ' ';
	for (; *name && n < sizeof(needle) - 2; name++)
		needle[n++] = (char)toupper((unsigned char)*name);
	needle[n++] = ' ';
	needle[n] = '\0';
	return strstr(buf_cstr(&c->capstr), needle) != NULL;
}

bool imap_client_is_dead(const struct imap_client *c)
{
	return c->dead;
}

size_t imap_client_in_flight(const struct imap_client *c)
{
	return c->n_inflight;
}

/* ---------- reading and dispatch ---------- */

/* Take cmd off the in-flight list (it was never completely sent, and the
 * connection is still usable); false when it is not there any more. */
static bool unlink_cmd(struct imap_client *c, struct cmd *cmd)
{
	struct cmd *prev = NULL;
	for (struct cmd *it = c->inflight_head; it; prev = it, it = it->next) {
		if (it != cmd)
			continue;
		if (prev)
			prev->next = it->next;
		else
			c->inflight_head = it->next;
		if (c->inflight_tail == it)
			c->inflight_tail = prev;
		c->n_inflight--;
		return true;
	}
	return false;
}

/* A command that failed before it was sent whole: forget it, unless the
 * connection died (then imap_client_free() cleans up). */
static void drop_cmd(struct imap_client *c, struct cmd *cmd)
{
	if (!c->dead && unlink_cmd(c, cmd))
		free(cmd);
}

static struct cmd *take_cmd(struct imap_client *c, const char *tag)
{
	if (tag[0] != 'A')
		return NULL;
	char *end;
	unsigned long n = strtoul(tag + 1, &end, 10);
	if (*end)
		return NULL;
	struct cmd **pp = &c->inflight_head, *prev = NULL;
	for (; *pp; prev = *pp, pp = &(*pp)->next) {
		if ((*pp)->tag == n) {
			struct cmd *cmd = *pp;
			*pp = cmd->next;
			if (c->inflight_tail == cmd)
				c->inflight_tail = prev;
			c->n_inflight--;
			return cmd;
		}
	}
	return NULL;
}

static int fetch_untagged(struct imap_client *c, const struct imap_response *r, struct err *err);

static void complete_cmd(struct imap_client *c, struct cmd *cmd, const struct imap_response *r)
{
	struct err e;
	err_clear(&e);
	bool ok = r->status == IMAP_STATUS_OK;
	/* [APPENDUID uidvalidity uid-set]: one UID for APPEND, a set for
	 * MULTIAPPEND */
	uint32_t v = 0, u = 0;
	const char *uidset = NULL;
	if (ok && code_is(r, "APPENDUID") && r->code_args && r->code_args->next) {
		uint64_t n = 0;
		if (imap_arg_number(r->code_args, &n) && n <= UINT32_MAX)
			v = (uint32_t)n;
		uidset = imap_arg_str(r->code_args->next);
		if (imap_arg_number(r->code_args->next, &n) && n <= UINT32_MAX)
			u = (uint32_t)n;
	}
	if (!ok) {
		err_set(&e, cmd->default_kind, "%s failed", cmd->name);
		where(c, &e, cmd->folder);
		imap_client_status_err(c, r, cmd->default_kind, &e);
	}
	if (cmd->result) {
		cmd->result->done = true;
		cmd->result->status = r->status;
		cmd->result->err = e;
	} else if (cmd->append_done) {
		struct imap_append_result res = { ok, v, u, uidset };
		cmd->append_done(cmd->append_ctx, &res, ok ? NULL : &e);
	} else if (!ok && !c->has_pending_err) {
		c->pending_err = e;
		c->has_pending_err = true;
	}
	if (cmd->is_fetch && --c->fetches_in_flight == 0) {
		/* Later unsolicited FETCH data (flag changes by others, MODSEQ
		 * after STORE) must not reach a handler whose owner is gone. */
		memset(&c->fetch, 0, sizeof(c->fetch));
		if (c->untagged == fetch_untagged)
			c->untagged = NULL;
	}
	free(cmd);
}

static int dispatch(struct imap_client *c, const struct imap_response *r, struct err *err)
{
	if (r->kind == IMAP_RESP_CONTINUATION) {
		c->continuation = true;
		return 0;
	}
	if (r->status != IMAP_STATUS_NONE && code_is(r, "CAPABILITY"))
		set_caps(c, r->code_args);
	if (r->kind == IMAP_RESP_TAGGED) {
		struct cmd *cmd = take_cmd(c, r->tag);
		if (!cmd)
			return fail(c, err, ERR_TRANSIENT,
				    "server answered a command we did not send (tag %s)", r->tag);
		complete_cmd(c, cmd, r);
		return 0;
	}
	/* untagged */
	if (!c->greeting_seen) {
		c->greeting_seen = true;
		if (r->status == IMAP_STATUS_OK)
			return 0;
		if (r->status == IMAP_STATUS_PREAUTH) {
			c->preauth = true;
			return 0;
		}
		err_set(err, ERR_TRANSIENT, "server refused the connection");
		imap_client_status_err(c, r, ERR_TRANSIENT, err);
		if (r->status != IMAP_STATUS_BYE)
			err_set(err, ERR_ACCOUNT, "unexpected greeting (not an IMAP server?)");
		return -1;
	}
	if (r->status == IMAP_STATUS_BYE) {
		err_set(err, ERR_TRANSIENT, "server closed the connection");
		imap_client_status_err(c, r, ERR_TRANSIENT, err);
		/* BYE during LOGOUT is normal; the caller decides. */
		return -1;
	}
	if (r->name && strcmp(r->name, "CAPABILITY") == 0) {
		set_caps(c, r->args);
		return 0;
	}
	if (c->untagged)
		return c->untagged(c, r, err);
	return 0;
}

/* Read once (waiting up to timeout_ms, <0 = the default) and dispatch
 * every complete response.  After STARTTLS's OK the rest of the read must
 * be empty; stop_after_tag makes it stop and report leftover bytes. */
static int read_some(struct imap_client *c, int timeout_ms, struct err *err)
{
	uint8_t chunk[READ_CHUNK];

	if (c->dead) {
		*err = c->dead_err;
		return -1;
	}
	ssize_t n = conn_read(c->conn, chunk, sizeof(chunk), timeout_ms, err);
	if (n == 0) {
		err_set(err, ERR_TRANSIENT, "connection closed by the server");
		where(c, err, NULL);
		return die(c, err);
	}
	if (n < 0) {
		where(c, err, NULL);
		return die(c, err);
	}
	c->in_read = true;
	size_t off = 0;
	while (off < (size_t)n) {
		size_t used = 0;
		enum imap_parse_result pr =
			imap_parser_feed(c->parser, chunk + off, (size_t)n - off, &used);
		off += used;
		if (pr == IMAP_PARSE_ERROR) {
			c->in_read = false;
			if (c->has_cb_err) {
				*err = c->cb_err;
				c->has_cb_err = false;
			} else {
				fail(c, err, ERR_TRANSIENT, "cannot parse the server's response: %s",
				     imap_parser_error(c->parser));
			}
			return die(c, err);
		}
		if (pr == IMAP_PARSE_RESPONSE) {
			if (dispatch(c, imap_parser_response(c->parser), err) < 0) {
				c->in_read = false;
				return die(c, err);
			}
		}
	}
	c->in_read = false;
	return 0;
}

static int drain(void *ctx, struct conn *conn, struct err *err)
{
	struct imap_client *c = ctx;
	(void)conn;
	if (c->in_read)
		return 0; /* writing from inside a callback: cannot read here */
	return read_some(c, 0, err);
}

static void trace_filter(void *ctx, char dir, const uint8_t *data, size_t len)
{
	struct imap_client *c = ctx;
	if (!c->trace)
		return;
	if (dir == '>' && c->hide_trace) {
		static const char masked[] = "<credentials hidden>\r\n";
		c->trace(c->trace_ctx, c->trace_no, dir, (const uint8_t *)masked,
			 sizeof(masked) - 1);
		return;
	}
	c->trace(c->trace_ctx, c->trace_no, dir, data, len);
}

/* ---------- command building and sending ---------- */

int imap_quote(struct buf *out, const char *s)
{
	size_t len = strlen(s);
	if (len > 1024)
		return 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '\r' || ch == '\n' || ch >= 0x80 || ch == 0)
			return 1;
	}
	buf_putc(out, '"');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			buf_putc(out, '\\');
		buf_putc(out, s[i]);
	}
	buf_putc(out, '"');
	return 0;
}

static int write_all(struct imap_client *c, const void *data, size_t len, struct err *err)
{
	if (c->dead) {
		*err = c->dead_err;
		return -1;
	}
	if (conn_write(c->conn, data, len, err) < 0) {
		where(c, err, NULL);
		return die(c, err);
	}
	return 0;
}

static bool literal_plus_ok(const struct imap_client *c, uint64_t size)
{
	return (c->caps & IMAP_CAP_LITERALPLUS) ||
	       ((c->caps & IMAP_CAP_LITERALMINUS) && size <= 4096);
}

/* Wait for the server's "+" (or the command's failure). */
static int wait_continuation(struct imap_client *c, struct cmd_result *res, struct err *err)
{
	/* The tagged reply can arrive in the same read as a "+" (or instead
	 * of it): a finished command means the literal was refused. */
	while (!c->continuation && !(res && res->done)) {
		if (read_some(c, -1, err) < 0)
			return -1;
	}
	c->continuation = false;
	if (res && res->done) {
		*err = res->err;
		if (!err->what[0])
			fail(c, err, ERR_TRANSIENT, "server did not accept the literal");
		return -1;
	}
	return 0;
}

/* Append an astring argument: quoted when possible, else a literal; a
 * synchronising literal flushes the line and waits for "+". */
static int add_astring(struct imap_client *c, struct buf *line, const char *s,
		       struct cmd_result *res, struct err *err)
{
	if (imap_quote(line, s) == 0)
		return 0;
	size_t len = strlen(s);
	if (literal_plus_ok(c, len)) {
		buf_appendf(line, "{%zu+}\r\n", len);
		buf_append(line, s, len);
		return 0;
	}
	buf_appendf(line, "{%zu}\r\n", len);
	c->continuation = false;
	if (write_all(c, line->data, line->len, err) < 0)
		return -1;
	buf_reset(line);
	if (wait_continuation(c, res, err) < 0)
		return -1;
	buf_append(line, s, len);
	return 0;
}

static void enqueue(struct imap_client *c, struct cmd *cmd)
{
	cmd->next = NULL;
	if (c->inflight_tail)
		c->inflight_tail->next = cmd;
	else
		c->inflight_head = cmd;
	c->inflight_tail = cmd;
	c->n_inflight++;
}

/* Start a command: allocates it, puts "A<n> " into line, and puts it on
 * the in-flight list (responses can only arrive after we write). */
static struct cmd *cmd_start(struct imap_client *c, struct buf *line, const char *name,
			     const char *folder, enum err_kind default_kind,
			     struct cmd_result *res)
{
	struct cmd *cmd = xcalloc(1, sizeof(*cmd));
	cmd->tag = ++c->next_tag;
	snprintf(cmd->name, sizeof(cmd->name), "%s", name);
	snprintf(cmd->folder, sizeof(cmd->folder), "%s", folder ? folder : "");
	cmd->default_kind = default_kind;
	cmd->result = res;
	if (res)
		memset(res, 0, sizeof(*res));
	buf_reset(line);
	buf_appendf(line, "A%u ", cmd->tag);
	enqueue(c, cmd);
	return cmd;
}

static int cmd_finish_line(struct imap_client *c, struct buf *line, struct err *err)
{
	buf_puts(line, "\r\n");
	int r = write_all(c, line->data, line->len, err);
	buf_reset(line);
	return r;
}

static int wait_result(struct imap_client *c, struct cmd_result *res, struct err *err)
{
	while (!res->done) {
		if (read_some(c, -1, err) < 0)
			return -1;
	}
	if (res->status != IMAP_STATUS_OK) {
		*err = res->err;
		return -1;
	}
	return 0;
}

/* A simple command with a fixed text, waited for. */
static int simple(struct imap_client *c, const char *text, const char *name,
		  enum err_kind kind, struct err *err)
{
	struct buf line = BUF_INIT(0);
	struct cmd_result res;
	cmd_start(c, &line, name, NULL, kind, &res);
	buf_puts(&line, text);
	int r = cmd_finish_line(c, &line, err);
	buf_release(&line);
	if (r < 0)
		return -1;
	return wait_result(c, &res, err);
}

/* Mailbox names go out in modified UTF-7. */
static int add_mailbox(struct imap_client *c, struct buf *line, const char *name,
		       struct cmd_result *res, struct err *err)
{
	struct buf enc = BUF_INIT(0);
	if (strcasecmp(name, "INBOX") == 0)
		buf_puts(&enc, "INBOX");
	else if (utf8_to_mutf7(name, strlen(name), &enc) < 0) {
		buf_release(&enc);
		err_set(err, ERR_FOLDER, "folder name is not valid UTF-8");
		where(c, err, name);
		return -1;
	}
	int r = add_astring(c, line, buf_cstr(&enc), res, err);
	buf_release(&enc);
	return r;
}

/* ---------- BODY[] streaming out of the parser ---------- */

static bool is_body_section(const struct imap_arg *prev)
{
	return prev && prev->type == IMAP_ARG_ATOM &&
	       (strcasecmp(prev->str, "BODY[]") == 0 || strcasecmp(prev->str, "BINARY[]") == 0);
}

static bool lit_begin(void *ctx, const struct imap_response *resp, const struct imap_arg *list,
		      const struct imap_arg *prev, uint64_t size)
{
	struct imap_client *c = ctx;
	if (!c->fetch.body_begin || resp->kind != IMAP_RESP_UNTAGGED || !resp->name ||
	    strcmp(resp->name, "FETCH") != 0 || !is_body_section(prev))
		return false;
	uint32_t uid = 0;
	for (const struct imap_arg *a = list; a && a != prev; a = a->next) {
		uint64_t n;
		if (imap_arg_atom_is(a, "UID") && a->next && imap_arg_number(a->next, &n) &&
		    n <= UINT32_MAX)
			uid = (uint32_t)n;
	}
	c->streaming_body = true;
	if (c->fetch.body_begin(c->fetch.ctx, uid, size, &c->cb_err) < 0) {
		c->has_cb_err = true;
		c->streaming_body = false;
		/* Stream it anyway; literal_data will abort the parse. */
	}
	return true;
}

static int lit_data(void *ctx, const uint8_t *data, size_t len)
{
	struct imap_client *c = ctx;
	if (c->has_cb_err)
		return -1;
	if (c->fetch.body_data(c->fetch.ctx, data, len, &c->cb_err) < 0) {
		c->has_cb_err = true;
		return -1;
	}
	return 0;
}

static int lit_end(void *ctx)
{
	struct imap_client *c = ctx;
	c->streaming_body = false;
	if (c->has_cb_err)
		return -1;
	if (c->fetch.body_end(c->fetch.ctx, &c->cb_err) < 0) {
		c->has_cb_err = true;
		return -1;
	}
	return 0;
}

static const struct imap_parser_callbacks parser_cb = {
	.literal_begin = lit_begin,
	.literal_data = lit_data,
	.literal_end = lit_end,
};

/* ---------- connect, STARTTLS, authentication ---------- */

static int read_greeting(struct imap_client *c, struct err *err)
{
	while (!c->greeting_seen)
		if (read_some(c, -1, err) < 0) {
			err_prefix(err, "reading the server greeting");
			return -1;
		}
	return 0;
}

static int capability(struct imap_client *c, struct err *err)
{
	return simple(c, "CAPABILITY", "CAPABILITY", ERR_ACCOUNT, err);
}

static int starttls(struct imap_client *c, struct err *err)
{
	struct buf line = BUF_INIT(0);
	struct cmd_result res;
	cmd_start(c, &line, "STARTTLS", NULL, ERR_ACCOUNT, &res);
	buf_puts(&line, "STARTTLS");
	int r = cmd_finish_line(c, &line, err);
	buf_release(&line);
	if (r < 0)
		return -1;
	/* Read byte-exactly up to the tagged reply: anything the server
	 * sends after OK and before the handshake would be plaintext
	 * injected into the encrypted session (CVE-2011-0411 class). */
	while (!res.done) {
		if (read_some(c, -1, err) < 0)
			return -1;
	}
	if (res.status != IMAP_STATUS_OK) {
		*err = res.err;
		err_prefix(err, "STARTTLS refused");
		return -1;
	}
	if (conn_has_buffered(c->conn)) {
		fail(c, err, ERR_ACCOUNT, "server sent data after accepting STARTTLS");
		err_hint(err, "this can be an attack on the connection; refusing to go on");
		return die(c, err);
	}
	if (conn_starttls(c->conn, err) < 0) {
		where(c, err, NULL);
		return die(c, err);
	}
	imap_parser_reset(c->parser);
	c->caps = 0; /* pre-TLS capabilities must not be trusted */
	return capability(c, err);
}

static char *b64(const uint8_t *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

static int authenticate_plain(struct imap_client *c, const char *authzid, const char *authcid,
			      const char *password, struct err *err)
{
	struct buf raw = BUF_INIT(0);
	buf_puts(&raw, authzid ? authzid : "");
	buf_putc(&raw, '\0');
	buf_puts(&raw, authcid);
	buf_putc(&raw, '\0');
	buf_puts(&raw, password);
	char *enc = b64(raw.data, raw.len);
	mem_wipe(raw.data, raw.len);
	buf_release(&raw);

	struct buf line = BUF_INIT(0);
	struct cmd_result res;
	cmd_start(c, &line, "AUTHENTICATE PLAIN", NULL, ERR_ACCOUNT, &res);
	int r;
	c->hide_trace = true;
	if (c->caps & IMAP_CAP_SASL_IR) {
		buf_appendf(&line, "AUTHENTICATE PLAIN %s", enc);
		r = cmd_finish_line(c, &line, err);
	} else {
		buf_puts(&line, "AUTHENTICATE PLAIN");
		c->continuation = false;
		c->hide_trace = false;
		r = cmd_finish_line(c, &line, err);
		if (r == 0)
			r = wait_continuation(c, &res, err);
		c->hide_trace = true;
		if (r == 0) {
			buf_appendf(&line, "%s\r\n", enc);
			r = write_all(c, line.data, line.len, err);
		}
	}
	c->hide_trace = false;
	mem_wipe(line.data, line.len);
	buf_release(&line);
	mem_wipe(enc, strlen(enc));
	free(enc);
	if (r < 0)
		return -1;
	return wait_result(c, &res, err);
}

static int login(struct imap_client *c, const char *user, const char *password, struct err *err)
{
	struct buf line = BUF_INIT(0);
	struct cmd_result res;
	cmd_start(c, &line, "LOGIN", NULL, ERR_ACCOUNT, &res);
	buf_puts(&line, "LOGIN ");
	c->hide_trace = true;
	int r = add_astring(c, &line, user, &res, err);
	if (r == 0) {
		buf_putc(&line, ' ');
		r = add_astring(c, &line, password, &res, err);
	}
	if (r == 0)
		r = cmd_finish_line(c, &line, err);
	c->hide_trace = false;
	mem_wipe(line.data, line.len);
	buf_release(&line);
	if (r < 0)
		return -1;
	return wait_result(c, &res, err);
}

static int authenticate(struct imap_client *c, const struct imap_client_opts *o, struct err *err)
{
	const char *password = o->password ? o->password : "";
	int r;
	if (o->admin && o->admin_mode == IMAP_ADMIN_AUTHZID) {
		if (!(c->caps & IMAP_CAP_AUTH_PLAIN))
			return fail(c, err, ERR_CONFIG,
				    "cannot act for %s as admin %s: the server does not offer "
				    "AUTHENTICATE PLAIN",
				    o->user, o->admin);
		r = authenticate_plain(c, o->user, o->admin, password, err);
	} else if (o->admin) {
		char *who = xasprintf("%s%c%s", o->user, o->master_sep ? o->master_sep : '*',
				      o->admin);
		if (c->caps & IMAP_CAP_LOGINDISABLED)
			r = authenticate_plain(c, NULL, who, password, err);
		else
			r = login(c, who, password, err);
		free(who);
	} else if (c->caps & IMAP_CAP_AUTH_PLAIN) {
		r = authenticate_plain(c, NULL, o->user, password, err);
	} else if (c->caps & IMAP_CAP_LOGINDISABLED) {
		return fail(c, err, ERR_ACCOUNT,
			    "the server allows neither LOGIN nor AUTHENTICATE PLAIN here");
	} else {
		r = login(c, o->user, password, err);
	}
	if (r < 0) {
		if (c->dead)
			return -1;
		err_prefix(err, "login as %s%s%s failed", o->user, o->admin ? " by admin " : "",
			   o->admin ? o->admin : "");
		if (!err->hint[0])
			err_hint(err, "check the %s user name and password (%s-password-file or "
				      "$IMAPMIG_%s_PASSWORD)%s",
				 side_name(c->side), c->side == SIDE_TARGET ? "--target" : "--source",
				 c->side == SIDE_TARGET ? "TARGET" : "SOURCE",
				 o->admin ? ", and that the admin may act for this user" : "");
		return -1;
	}
	return 0;
}

static void send_id(struct imap_client *c)
{
	struct err ignore;
	err_clear(&ignore);
	simple(c, "ID (\"name\" \"imapmig\" \"version\" \"0.1\")", "ID", ERR_TRANSIENT, &ignore);
}

struct imap_client *imap_client_connect(const struct imap_client_opts *o, struct err *err)
{
	struct conn_opts co = {
		.host = o->host,
		.port = o->port ? o->port : (o->implicit_tls ? 993 : 143),
		.connect_addr = o->connect_addr,
		.tls = o->implicit_tls,
		.ca_file = o->ca_file,
		.insecure = o->insecure,
		.timeout_ms = o->timeout_ms,
	};
	struct imap_client *c = xcalloc(1, sizeof(*c));
	c->side = o->side;
	c->host = xstrdup(o->host);
	c->user = xstrdup(o->user ? o->user : "");
	buf_init(&c->capstr, 64 * 1024);
	c->trace = o->trace;
	c->trace_ctx = o->trace_ctx;
	c->trace_no = o->trace_no ? o->trace_no : 1;

	c->conn = conn_open(&co, err);
	if (!c->conn) {
		where(c, err, NULL);
		goto fail;
	}
	if (c->trace)
		conn_set_trace(c->conn, trace_filter, c);
	conn_set_drain(c->conn, drain, c);
	/* Every wait for a reply reads through conn, which sends what is
	 * corked first; so pipelined commands and streamed APPENDs leave in
	 * full TLS records. */
	conn_set_cork(c->conn, true);

	c->parser = imap_parser_new(NULL, &parser_cb, c);

	if (read_greeting(c, err) < 0)
		goto fail;
	if (!c->caps && capability(c, err) < 0)
		goto fail;
	if (!o->implicit_tls) {
		if (c->caps & IMAP_CAP_STARTTLS) {
			if (starttls(c, err) < 0)
				goto fail;
		} else if (!o->allow_plaintext) {
			fail(c, err, ERR_ACCOUNT,
			     "the server does not offer STARTTLS on port %u, and imapmig will "
			     "not send a password unencrypted",
			     (unsigned)co.port);
			err_hint(err, "use imaps:// if the server has an implicit-TLS port (993), or "
				      "--allow-plaintext if you really mean it");
			goto fail;
		}
	}
	if (!c->preauth && authenticate(c, o, err) < 0)
		goto fail;
	/* Capabilities change after login; the OK may have carried them. */
	if (capability(c, err) < 0)
		goto fail;
	if (c->caps & IMAP_CAP_ID)
		send_id(c);
	if (c->dead) {
		*err = c->dead_err;
		goto fail;
	}
	return c;
fail:
	imap_client_free(&c);
	return NULL;
}

void imap_client_kill(struct imap_client *c, const char *why)
{
	while (c->inflight_head) {
		struct cmd *next = c->inflight_head->next;
		free(c->inflight_head);
		c->inflight_head = next;
	}
	c->inflight_tail = NULL;
	c->n_inflight = 0;
	c->fetches_in_flight = 0;
	memset(&c->fetch, 0, sizeof(c->fetch));
	c->untagged = NULL;
	c->append_open = false;
	c->append_between = false;
	if (!c->dead) {
		struct err e;
		err_set(&e, ERR_TRANSIENT, "connection abandoned: %s", why);
		where(c, &e, NULL);
		die(c, &e);
	}
	conn_close(&c->conn);
}

int imap_client_compress(struct imap_client *c, struct err *err)
{
	if (!(c->caps & IMAP_CAP_COMPRESS))
		return 0;
	if (c->n_inflight)
		return fail(c, err, ERR_INTERNAL, "COMPRESS with commands in flight");
	if (simple(c, "COMPRESS DEFLATE", "COMPRESS", ERR_TRANSIENT, err) < 0) {
		err_prefix(err, "turning on compression");
		return -1;
	}
	/* The server compresses everything after its OK; we read nothing
	 * beyond that OK unless it sent more in the same packet, which
	 * would be compressed data parsed as text: refuse that. */
	if (conn_has_buffered(c->conn)) {
		fail(c, err, ERR_TRANSIENT, "server sent data right after accepting COMPRESS");
		return die(c, err);
	}
	if (conn_compress_start(c->conn, err) < 0) {
		where(c, err, NULL);
		return die(c, err);
	}
	return 1;
}

void imap_client_free(struct imap_client **cp)
{
	struct imap_client *c = *cp;
	if (!c)
		return;
	while (c->inflight_head) {
		struct cmd *next = c->inflight_head->next;
		free(c->inflight_head);
		c->inflight_head = next;
	}
	conn_close(&c->conn);
	imap_parser_free(&c->parser);
	buf_release(&c->capstr);
	free(c->host);
	free(c->user);
	free(c);
	*cp = NULL;
}

void imap_client_logout(struct imap_client **cp)
{
	struct imap_client *c = *cp;
	if (c && !c->dead) {
		struct err ignore;
		err_clear(&ignore);
		struct buf line = BUF_INIT(0);
		struct cmd_result res;
		cmd_start(c, &line, "LOGOUT", NULL, ERR_TRANSIENT, &res);
		buf_puts(&line, "LOGOUT");
		if (cmd_finish_line(c, &line, &ignore) == 0) {
			while (!res.done && read_some(c, 2000, &ignore) == 0)
				;
		}
		buf_release(&line);
	}
	imap_client_free(cp);
}

/* ---------- waiting ---------- */

int imap_client_wait_all(struct imap_client *c, struct err *err)
{
	while (c->inflight_head) {
		if (read_some(c, -1, err) < 0)
			return -1;
	}
	if (c->has_pending_err) {
		*err = c->pending_err;
		c->has_pending_err = false;
		return -1;
	}
	return 0;
}

/* ---------- typed operations ---------- */

/* Decode a mailbox name from modified UTF-7; undecodable names pass
 * through as sent.  Appends to out. */
static void decode_name(const char *s, size_t len, struct buf *out)
{
	if (mutf7_to_utf8(s, len, out) < 0)
		buf_append(out, s, len);
}

struct ns_ctx {
	char *prefix;
	char delim;
	bool found;
};

static int ns_untagged(struct imap_client *c, const struct imap_response *r, struct err *err)
{
	struct ns_ctx *ns = c->untagged_ctx;
	(void)err;
	if (!r->name)
		return 0;
	if (strcmp(r->name, "NAMESPACE") == 0 && !ns->found) {
		/* ((prefix delim)...) other shared */
		const struct imap_arg *personal = r->args;
		if (personal && personal->type == IMAP_ARG_LIST && personal->child &&
		    personal->child->type == IMAP_ARG_LIST) {
			const struct imap_arg *p = personal->child->child;
			const char *pfx = p ? imap_arg_str(p) : NULL;
			if (pfx) {
				struct buf b = BUF_INIT(0);
				decode_name(pfx, strlen(pfx), &b);
				ns->prefix = buf_detach(&b, NULL);
				const char *d = p->next ? imap_arg_str(p->next) : NULL;
				ns->delim = d && *d ? d[0] : '\0';
				ns->found = true;
			}
		}
	} else if (strcmp(r->name, "LIST") == 0 && !ns->found) {
		const struct imap_arg *d = r->args ? r->args->next : NULL;
		const char *ds = d ? imap_arg_str(d) : NULL;
		ns->delim = ds && *ds ? ds[0] : '\0';
		ns->prefix = xstrdup("");
		ns->found = true;
	}
	return 0;
}

int imap_client_namespace(struct imap_client *c, char **prefix_r, char *delim_r, struct err *err)
{
	struct ns_ctx ns = { NULL, '\0', false };
	c->untagged = ns_untagged;
	c->untagged_ctx = &ns;
	int r = simple(c, (c->caps & IMAP_CAP_NAMESPACE) ? "NAMESPACE" : "LIST \"\" \"\"",
		       "NAMESPACE", ERR_ACCOUNT, err);
	c->untagged = NULL;
	if (r < 0) {
		free(ns.prefix);
		return -1;
	}
	*prefix_r = ns.prefix ? ns.prefix : xstrdup("");
	*delim_r = ns.delim;
	return 0;
}

struct list_entry {
	char *name;
	char delim;
	struct buf attrs;
	bool subscribed;
};

struct list_ctx {
	struct list_entry *items;
	size_t count, alloc;
	bool lsub_pass;
	bool too_many;
};

static struct list_entry *list_find(struct list_ctx *l, const char *name)
{
	for (size_t i = 0; i < l->count; i++)
		if (strcmp(l->items[i].name, name) == 0)
			return &l->items[i];
	return NULL;
}

static int list_untagged(struct imap_client *c, const struct imap_response *r, struct err *err)
{
	struct list_ctx *l = c->untagged_ctx;
	(void)err;
	if (!r->name || (strcmp(r->name, "LIST") != 0 && strcmp(r->name, "LSUB") != 0))
		return 0;
	const struct imap_arg *attrs = r->args;
	const struct imap_arg *delim = attrs ? attrs->next : NULL;
	const struct imap_arg *name = delim ? delim->next : NULL;
	if (!attrs || attrs->type != IMAP_ARG_LIST || !name)
		return 0;
	const char *raw = imap_arg_str(name);
	if (!raw) {
		if (name->type != IMAP_ARG_LITERAL)
			return 0;
		raw = name->str;
	}
	struct buf nb = BUF_INIT(0);
	if (strcasecmp(raw, "INBOX") == 0)
		buf_puts(&nb, "INBOX");
	else
		decode_name(raw, strlen(raw), &nb);
	struct list_entry *e = list_find(l, buf_cstr(&nb));
	bool is_lsub = strcmp(r->name, "LSUB") == 0;
	if (!e) {
		if (is_lsub || l->count >= MAX_LIST_MAILBOXES) {
			l->too_many = l->count >= MAX_LIST_MAILBOXES;
			buf_release(&nb);
			return 0; /* subscribed but not existing: nothing to copy */
		}
		if (l->count == l->alloc) {
			l->alloc = l->alloc ? l->alloc * 2 : 32;
			l->items = xrealloc(l->items, l->alloc * sizeof(*l->items));
		}
		e = &l->items[l->count++];
		memset(e, 0, sizeof(*e));
		e->name = buf_detach(&nb, NULL);
		const char *ds = imap_arg_str(delim);
		e->delim = ds && *ds ? ds[0] : '\0';
		buf_init(&e->attrs, 4096);
	} else {
		buf_release(&nb);
	}
	if (is_lsub) {
		e->subscribed = true;
		return 0;
	}
	for (const struct imap_arg *a = attrs->child; a; a = a->next) {
		const char *s = imap_arg_str(a);
		if (!s)
			continue;
		if (strcasecmp(s, "\\Subscribed") == 0)
			e->subscribed = true;
		if (e->attrs.len)
			buf_putc(&e->attrs, ' ');
		buf_puts(&e->attrs, s);
	}
	return 0;
}

int imap_client_list(struct imap_client *c, imap_list_fn *fn, void *ctx, struct err *err)
{
	struct list_ctx l = { 0 };
	c->untagged = list_untagged;
	c->untagged_ctx = &l;
	int r;
	bool extended = (c->caps & IMAP_CAP_LIST_EXTENDED) != 0;
	if (extended)
		r = simple(c,
			   (c->caps & IMAP_CAP_SPECIAL_USE)
				   ? "LIST \"\" \"*\" RETURN (SUBSCRIBED SPECIAL-USE)"
				   : "LIST \"\" \"*\" RETURN (SUBSCRIBED)",
			   "LIST", ERR_ACCOUNT, err);
	else
		r = simple(c, "LIST \"\" \"*\"", "LIST", ERR_ACCOUNT, err);
	if (r == 0 && !extended)
		r = simple(c, "LSUB \"\" \"*\"", "LSUB", ERR_ACCOUNT, err);
	c->untagged = NULL;
	if (r == 0 && l.too_many)
		r = fail(c, err, ERR_ACCOUNT, "the server lists more than %d folders",
			 MAX_LIST_MAILBOXES);
	for (size_t i = 0; i < l.count; i++) {
		struct list_entry *e = &l.items[i];
		if (r == 0) {
			if (e->subscribed && !strstr(buf_cstr(&e->attrs), "\\Subscribed")) {
				if (e->attrs.len)
					buf_putc(&e->attrs, ' ');
				buf_puts(&e->attrs, "\\Subscribed");
			}
			struct imap_mailbox mb = { e->name, e->delim, buf_cstr(&e->attrs) };
			r = fn(ctx, &mb, err);
		}
		free(e->name);
		buf_release(&e->attrs);
	}
	free(l.items);
	return r;
}

static int select_untagged(struct imap_client *c, const struct imap_response *r, struct err *err)
{
	struct imap_select_info *info = c->untagged_ctx;
	(void)err;
	uint64_t n = 0;
	if (r->status == IMAP_STATUS_OK && r->code) {
		const struct imap_arg *a = r->code_args;
		if (strcmp(r->code, "UIDVALIDITY") == 0 && imap_arg_number(a, &n) && n <= UINT32_MAX)
			info->uidvalidity = (uint32_t)n;
		else if (strcmp(r->code, "UIDNEXT") == 0 && imap_arg_number(a, &n) && n <= UINT32_MAX)
			info->uidnext = (uint32_t)n;
		else if (strcmp(r->code, "HIGHESTMODSEQ") == 0 && imap_arg_number(a, &n))
			info->highestmodseq = n;
		else if (strcmp(r->code, "NOMODSEQ") == 0)
			info->highestmodseq = 0;
		else if (strcmp(r->code, "PERMANENTFLAGS") == 0 && a && a->type == IMAP_ARG_LIST) {
			struct buf b = BUF_INIT(sizeof(info->permanentflags) - 1);
			for (const struct imap_arg *f = a->child; f; f = f->next) {
				const char *s = imap_arg_str(f);
				if (!s)
					continue;
				if (strcmp(s, "\\*") == 0)
					info->keywords_allowed = true;
				if (b.len)
					buf_putc(&b, ' ');
				buf_puts(&b, s);
			}
			snprintf(info->permanentflags, sizeof(info->permanentflags), "%s",
				 buf_cstr(&b));
			buf_release(&b);
		}
	} else if (r->name && r->has_number && strcmp(r->name, "EXISTS") == 0) {
		info->exists = r->number;
	}
	return 0;
}

int imap_client_select(struct imap_client *c, const char *name, bool read_only,
		       struct imap_select_info *info_r, struct err *err)
{
	memset(info_r, 0, sizeof(*info_r));
	struct buf line = BUF_INIT(0);
	struct cmd_result res;
	const char *verb = read_only ? "EXAMINE" : "SELECT";
	struct cmd *cmd = cmd_start(c, &line, verb, name, ERR_FOLDER, &res);
	buf_puts(&line, verb);
	buf_putc(&line, ' ');
	c->untagged = select_untagged;
	c->untagged_ctx = info_r;
	int r = add_mailbox(c, &line, name, &res, err);
	if (r < 0)
		drop_cmd(c, cmd);
	if (r == 0 && (c->caps & IMAP_CAP_CONDSTORE))
		buf_puts(&line, " (CONDSTORE)");
	if (r == 0)
		r = cmd_finish_line(c, &line, err);
	buf_release(&line);
	if (r == 0)
		r = wait_result(c, &res, err);
	c->untagged = NULL;
	if (r < 0) {
		where(c, err, name);
		return -1;
	}
	info_r->read_only = read_only;
	return 0;
}

struct status_ctx {
	imap_status_fn *fn;
	void *ctx;
};

static int status_untagged(struct imap_client *c, const struct imap_response *r, struct err *err)
{
	struct status_ctx *sc = c->untagged_ctx;
	(void)err;
	if (!r->name || strcmp(r->name, "STATUS") != 0 || !r->args || !r->args->next ||
	    r->args->next->type != IMAP_ARG_LIST)
		return 0;
	const char *raw = imap_arg_str(r->args);
	if (!raw && r->args->type == IMAP_ARG_LITERAL)
		raw = r->args->str;
	if (!raw)
		return 0;
	struct imap_status_info si = { 0 };
	uint64_t n;
	for (const struct imap_arg *a = r->args->next->child; a && a->next; a = a->next->next) {
		if (!imap_arg_number(a->next, &n))
			continue;
		if (imap_arg_atom_is(a, "MESSAGES"))
			si.messages = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
		else if (imap_arg_atom_is(a, "SIZE"))
			si.size = n;
		else if (imap_arg_atom_is(a, "UIDNEXT") && n <= UINT32_MAX)
			si.uidnext = (uint32_t)n;
		else if (imap_arg_atom_is(a, "UIDVALIDITY") && n <= UINT32_MAX)
			si.uidvalidity = (uint32_t)n;
		else if (imap_arg_atom_is(a, "HIGHESTMODSEQ"))
			si.highestmodseq = n;
	}
	struct buf name = BUF_INIT(0);
	if (strcasecmp(raw, "INBOX") == 0)
		buf_puts(&name, "INBOX");
	else
		decode_name(raw, strlen(raw), &name);
	sc->fn(sc->ctx, buf_cstr(&name), &si);
	buf_release(&name);
	return 0;
}

int imap_client_status(struct imap_client *c, const char *const *names, size_t n,
		       imap_status_fn *fn, void *ctx, struct err *err)
{
	struct status_ctx sc = { fn, ctx };
	bool want_size = imap_client_has_cap(c, "STATUS=SIZE");
	c->untagged = status_untagged;
	c->untagged_ctx = &sc;
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		struct buf line = BUF_INIT(0);
		struct cmd *cmd = cmd_start(c, &line, "STATUS", names[i], ERR_FOLDER, NULL);
		buf_puts(&line, "STATUS ");
		r = add_mailbox(c, &line, names[i], NULL, err);
		if (r < 0)
			drop_cmd(c, cmd);
		else {
			buf_puts(&line, " (MESSAGES UIDNEXT UIDVALIDITY");
			if (want_size)
				buf_puts(&line, " SIZE");
			if (c->caps & IMAP_CAP_CONDSTORE)
				buf_puts(&line, " HIGHESTMODSEQ");
			buf_putc(&line, ')');
			r = cmd_finish_line(c, &line, err);
		}
		buf_release(&line);
	}
	/* a refused STATUS only loses that folder's count */
	if (r == 0 && imap_client_wait_all(c, err) < 0 && imap_client_is_dead(c))
		r = -1;
	c->untagged = NULL;
	return r;
}

static int mailbox_cmd(struct imap_client *c, const char *verb, const char *name,
		       struct cmd_result *res, struct err *err)
{
	struct buf line = BUF_INIT(0);
	struct cmd *cmd = cmd_start(c, &line, verb, name, ERR_FOLDER, res);
	buf_puts(&line, verb);
	buf_putc(&line, ' ');
	int r = add_mailbox(c, &line, name, res, err);
	if (r < 0)
		drop_cmd(c, cmd);
	if (r == 0)
		r = cmd_finish_line(c, &line, err);
	buf_release(&line);
	if (r < 0)
		return -1;
	while (!res->done)
		if (read_some(c, -1, err) < 0)
			return -1;
	return 0;
}

int imap_client_create(struct imap_client *c, const char *name, bool *existed_r,
		       struct err *err)
{
	struct cmd_result res;
	*existed_r = false;
	if (mailbox_cmd(c, "CREATE", name, &res, err) < 0)
		return -1;
	if (res.status == IMAP_STATUS_OK)
		return 0;
	if (strstr(res.err.server, "[ALREADYEXISTS]") ||
	    strcasestr(res.err.server, "already exists")) {
		*existed_r = true;
		return 0;
	}
	*err = res.err;
	err_prefix(err, "creating the folder");
	return -1;
}

int imap_client_subscribe(struct imap_client *c, const char *name, struct err *err)
{
	struct cmd_result res;
	if (mailbox_cmd(c, "SUBSCRIBE", name, &res, err) < 0)
		return -1;
	if (res.status == IMAP_STATUS_OK)
		return 0;
	*err = res.err;
	err_prefix(err, "subscribing to the folder");
	return -1;
}

/* ---------- FETCH ---------- */

static void flags_to_text(const struct imap_arg *list, struct buf *out)
{
	for (const struct imap_arg *f = list ? list->child : NULL; f; f = f->next) {
		const char *s = imap_arg_str(f);
		if (!s || strcasecmp(s, "\\Recent") == 0)
			continue;
		if (out->len)
			buf_putc(out, ' ');
		buf_puts(out, s);
	}
}

static int fetch_untagged(struct imap_client *c, const struct imap_response *r, struct err *err)
{
	if (!r->name || strcmp(r->name, "FETCH") != 0 || !r->args ||
	    r->args->type != IMAP_ARG_LIST)
		return 0;
	struct imap_fetch_msg m = { 0 };
	struct buf flags = BUF_INIT(64 * 1024);
	bool have_uid = false;
	for (const struct imap_arg *a = r->args->child; a && a->next; a = a->next->next) {
		const struct imap_arg *v = a->next;
		const char *key = imap_arg_str(a);
		uint64_t n;
		if (!key)
			continue;
		if (strcasecmp(key, "UID") == 0 && imap_arg_number(v, &n) && n && n <= UINT32_MAX) {
			m.uid = (uint32_t)n;
			have_uid = true;
		} else if (strcasecmp(key, "FLAGS") == 0 && v->type == IMAP_ARG_LIST) {
			flags_to_text(v, &flags);
		} else if (strcasecmp(key, "INTERNALDATE") == 0) {
			m.internaldate = imap_arg_str(v);
		} else if (strcasecmp(key, "RFC822.SIZE") == 0 && imap_arg_number(v, &n)) {
			m.size = n;
		} else if (strcasecmp(key, "MODSEQ") == 0 && v->type == IMAP_ARG_LIST &&
			   imap_arg_number(v->child, &n)) {
			m.modseq = n;
		} else if (strncasecmp(key, "BODY[HEADER", 11) == 0) {
			if (v->type == IMAP_ARG_LITERAL || v->type == IMAP_ARG_STRING) {
				m.headers = (const uint8_t *)v->str;
				m.headers_len = v->len;
			} else {
				m.headers = (const uint8_t *)"";
			}
		} else if (is_body_section(a) && v->type == IMAP_ARG_LITERAL_STREAMED) {
			m.has_body = true;
		}
	}
	m.flags = buf_cstr(&flags);
	int rc = 0;
	if (have_uid && c->fetch.message)
		rc = c->fetch.message(c->fetch.ctx, &m, err);
	buf_release(&flags);
	return rc;
}

int imap_client_fetch_send(struct imap_client *c, const char *uidset, unsigned items,
			   const char *header_fields, uint64_t changedsince,
			   const struct imap_fetch_handler *h, struct err *err)
{
	c->fetch = *h;
	c->untagged = fetch_untagged;
	c->untagged_ctx = NULL;
	struct buf line = BUF_INIT(0);
	struct cmd *cmd = cmd_start(c, &line, "FETCH", NULL, ERR_FOLDER, NULL);
	cmd->is_fetch = true;
	c->fetches_in_flight++;
	buf_appendf(&line, "UID FETCH %s (UID", uidset);
	if (items & IMAP_FETCH_FLAGS)
		buf_puts(&line, " FLAGS");
	if (items & IMAP_FETCH_INTERNALDATE)
		buf_puts(&line, " INTERNALDATE");
	if (items & IMAP_FETCH_SIZE)
		buf_puts(&line, " RFC822.SIZE");
	if (items & IMAP_FETCH_MODSEQ)
		buf_puts(&line, " MODSEQ");
	if (items & IMAP_FETCH_HEADERS)
		buf_appendf(&line, " BODY.PEEK[HEADER.FIELDS (%s)]", header_fields);
	if (items & IMAP_FETCH_BODY)
		buf_puts(&line, " BODY.PEEK[]");
	buf_putc(&line, ')');
	if (changedsince)
		buf_appendf(&line, " (CHANGEDSINCE %llu)", (unsigned long long)changedsince);
	int r = cmd_finish_line(c, &line, err);
	buf_release(&line);
	return r;
}

/* ---------- APPEND ---------- */

int imap_client_append_begin(struct imap_client *c, const char *name, const char *flags,
			     const char *date, uint64_t size, imap_append_done_fn *done,
			     void *ctx, struct err *err)
{
	if (c->append_open || c->append_between)
		return fail(c, err, ERR_INTERNAL, "APPEND started while another is open");
	struct buf line = BUF_INIT(0);
	struct cmd_result res;
	bool sync_lit = !literal_plus_ok(c, size);
	/* A synchronising literal needs the tagged reply watched while we wait
	 * for "+", so track it through res until the data is sent. */
	struct cmd *cmd = cmd_start(c, &line, "APPEND", name, ERR_MESSAGE, sync_lit ? &res : NULL);
	buf_puts(&line, "APPEND ");
	int r = add_mailbox(c, &line, name, NULL, err);
	if (r < 0)
		drop_cmd(c, cmd);
	if (r == 0) {
		buf_appendf(&line, " (%s)", flags ? flags : "");
		if (date)
			buf_appendf(&line, " \"%s\"", date);
		buf_appendf(&line, sync_lit ? " {%llu}\r\n" : " {%llu+}\r\n",
			    (unsigned long long)size);
		c->continuation = false;
		r = write_all(c, line.data, line.len, err);
	}
	buf_release(&line);
	if (r == 0 && sync_lit) {
		r = wait_continuation(c, &res, err);
		if (r < 0 && !c->dead) {
			/* refused before the data: report through the callback */
			struct imap_append_result ar = { false, 0, 0, NULL };
			done(ctx, &ar, err);
			return 1;
		}
		cmd->result = NULL;
	}
	if (r < 0)
		return -1;
	cmd->append_done = done;
	cmd->append_ctx = ctx;
	c->append_left = size;
	c->append_open = true;
	return 0;
}

int imap_client_append_data(struct imap_client *c, const uint8_t *data, size_t len,
			    struct err *err)
{
	if (!c->append_open || len > c->append_left)
		return fail(c, err, ERR_INTERNAL, "APPEND data beyond the announced size");
	c->append_left -= len;
	return write_all(c, data, len, err);
}

int imap_client_append_end(struct imap_client *c, struct err *err)
{
	if (imap_client_append_message_end(c, err) < 0)
		return -1;
	return imap_client_append_finish(c, err);
}

bool imap_client_can_multiappend(const struct imap_client *c)
{
	return (c->caps & IMAP_CAP_MULTIAPPEND) && (c->caps & IMAP_CAP_LITERALPLUS);
}

bool imap_client_append_between(const struct imap_client *c)
{
	return c->append_between;
}

int imap_client_append_message_end(struct imap_client *c, struct err *err)
{
	if (!c->append_open || c->append_left)
		return fail(c, err, ERR_INTERNAL, "APPEND ended %llu bytes short",
			    (unsigned long long)c->append_left);
	c->append_open = false;
	c->append_between = true;
	return 0;
}

int imap_client_append_next(struct imap_client *c, const char *flags, const char *date,
			    uint64_t size, struct err *err)
{
	if (!c->append_between || !imap_client_can_multiappend(c))
		return fail(c, err, ERR_INTERNAL, "no MULTIAPPEND open for another message");
	struct buf line = BUF_INIT(0);
	buf_appendf(&line, " (%s)", flags ? flags : "");
	if (date)
		buf_appendf(&line, " \"%s\"", date);
	buf_appendf(&line, " {%llu+}\r\n", (unsigned long long)size);
	int r = write_all(c, line.data, line.len, err);
	buf_release(&line);
	if (r < 0)
		return -1;
	c->append_between = false;
	c->append_open = true;
	c->append_left = size;
	return 0;
}

int imap_client_append_finish(struct imap_client *c, struct err *err)
{
	if (!c->append_between)
		return fail(c, err, ERR_INTERNAL, "APPEND finished in the middle of a message");
	c->append_between = false;
	return write_all(c, "\r\n", 2, err);
}

/* ---------- STORE ---------- */

int imap_client_store_send(struct imap_client *c, const char *uidset, char op,
			   const char *flags, struct err *err)
{
	struct buf line = BUF_INIT(0);
	cmd_start(c, &line, "STORE", NULL, ERR_MESSAGE, NULL);
	buf_appendf(&line, "UID STORE %s %sFLAGS.SILENT (%s)", uidset,
		    op == '+' ? "+" : op == '-' ? "-" : "", flags);
	int r = cmd_finish_line(c, &line, err);
	buf_release(&line);
	return r;
}
