/* imap_parser.c - incremental IMAP response parser.
 *
 * One byte at a time through a flat state machine (literal data in bulk),
 * so a response split at any point parses exactly as if it came whole.
 * Lists are tracked on an explicit stack of at most max_depth frames:
 * hostile nesting costs memory bounded by the limits, never C stack.
 *
 * Everything a response points to lives in a per-response arena that is
 * emptied when the next response starts.  Scratch text (the token being
 * read, the status text, the raw response code) sits in capped buffers
 * and is copied into the arena when complete.
 *
 * If a literal is being streamed when the parser is reset or freed, its
 * literal_end callback is not called: the consumer sees the stream stop.
 */
#include "imap/imap_parser.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/mem.h"

#define DEFAULT_MAX_LINE ((size_t)8 << 20)
#define DEFAULT_MAX_DEPTH 32u
#define DEFAULT_MAX_LITERAL_BUFFER ((size_t)1 << 20)
#define DEFAULT_MAX_LITERAL ((uint64_t)4 << 30)
#define ARENA_BLOCK 4096
#define SCRATCH_KEEP (64 * 1024)
/* BODY[1.2] sections do not nest in IMAP; a few levels is generous. */
#define MAX_SECTION_DEPTH 8

enum state {
	ST_START,      /* first byte of a response */
	ST_TAG,        /* reading the tag */
	ST_STAR,       /* after '*', a space must follow */
	ST_WORD1,      /* untagged: a number or the response name */
	ST_NAME,       /* untagged: the name after a number */
	ST_STATUS,     /* tagged: OK, NO or BAD */
	ST_PLUS,       /* after '+' */
	ST_RESP_TEXT,  /* after the status word and a space: '[' or text */
	ST_AFTER_CODE, /* after the ']' closing a response code */
	ST_TEXT,       /* free text up to the end of the line */
	ST_CODE_RAW,   /* code arguments did not parse: raw bytes up to ']' */
	ST_BETWEEN,    /* arguments: before a token */
	ST_AFTER,      /* arguments: right after a string, literal or list */
	ST_ATOM,
	ST_TILDE, /* '~': literal8 if '{' follows, else an atom */
	ST_QUOTED,
	ST_QUOTED_ESC,
	ST_LIT_SIZE,  /* digits inside {...} */
	ST_LIT_PLUS,  /* after the '+' of {n+} */
	ST_LIT_CLOSE, /* after '}', the line must end */
	ST_LIT_DATA,
	ST_DONE,
	ST_ERROR,
};

/* What one step of the state machine tells its caller. */
enum step {
	R_OK,     /* byte used */
	R_AGAIN,  /* state changed; give the same byte to the new state */
	R_DONE,   /* byte ended the response */
	R_SYNTAX, /* malformed input (recoverable inside a response code) */
	R_HARD,   /* malformed input or a limit passed: the response fails */
};

struct arena_block {
	struct arena_block *next;
	size_t size;
	size_t used;
	max_align_t data[];
};

struct frame {
	struct imap_arg *list; /* NULL for the top level */
	struct imap_arg *first;
	struct imap_arg *last;
};

struct imap_parser {
	struct imap_parser_limits lim;
	struct imap_parser_callbacks cb;
	bool have_cb;
	void *ctx;

	enum state state;
	struct imap_response resp;
	struct arena_block *arena;

	struct buf tok;  /* the token or word being read */
	struct buf text; /* status or continuation text */
	struct buf raw;  /* response code as sent, while in_code */

	size_t line_len;    /* non-literal bytes of this response */
	uint64_t buffered;  /* literal bytes buffered for this response */
	bool cr;            /* last byte was CR; LF must follow */
	bool lf_after_cr;   /* the LF being handled followed a CR */
	bool in_code;       /* tokens belong to a [response code] */
	unsigned section;   /* [ ] depth inside an atom */
	bool section_quote; /* inside "..." within an atom's [ ] */
	bool section_esc;
	bool literal8;

	struct frame *frames; /* frames[0] is the top level */
	size_t nframes;       /* allocated */
	unsigned sp;          /* open lists */

	uint64_t lit_left; /* literal bytes still to come */
	uint64_t lit_size;
	bool lit_stream;
	uint8_t *lit_buf; /* buffered literal, in the arena */
	size_t lit_got;

	char errmsg[256];
};

/* ---- arena ---------------------------------------------------------- */

static void *arena_alloc(struct imap_parser *p, size_t n)
{
	const size_t align = _Alignof(max_align_t);
	n = (n + align - 1) & ~(align - 1);
	struct arena_block *b = p->arena;
	if (!b || b->size - b->used < n) {
		size_t sz = n > ARENA_BLOCK ? n : ARENA_BLOCK;
		b = xmalloc(sizeof(*b) + sz);
		b->size = sz;
		b->used = 0;
		b->next = p->arena;
		p->arena = b;
	}
	void *r = (unsigned char *)b->data + b->used;
	b->used += n;
	return r;
}

/* Free everything but one ordinary block, kept to avoid malloc churn. */
static void arena_clear(struct imap_parser *p)
{
	struct arena_block *keep = NULL;
	struct arena_block *b = p->arena;
	while (b) {
		struct arena_block *next = b->next;
		if (!keep && b->size == ARENA_BLOCK) {
			keep = b;
			keep->next = NULL;
			keep->used = 0;
		} else {
			free(b);
		}
		b = next;
	}
	p->arena = keep;
}

static char *arena_strndup(struct imap_parser *p, const void *s, size_t len)
{
	char *r = arena_alloc(p, len + 1);
	if (len)
		memcpy(r, s, len);
	r[len] = '\0';
	return r;
}

static char *arena_upper(struct imap_parser *p, const void *s, size_t len)
{
	char *r = arena_strndup(p, s, len);
	for (size_t i = 0; i < len; i++)
		if (r[i] >= 'a' && r[i] <= 'z')
			r[i] = (char)(r[i] - 'a' + 'A');
	return r;
}

/* ---- errors --------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static enum step fail(struct imap_parser *p, enum step kind,
                                                            const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
	va_end(ap);
	return kind;
}

#define syntax(p, ...) fail((p), R_SYNTAX, __VA_ARGS__)
#define hard(p, ...) fail((p), R_HARD, __VA_ARGS__)

/* ---- life cycle ----------------------------------------------------- */

/* Keep small scratch storage for the next response; give back what one
 * huge response made us allocate. */
static void scratch_reset(struct buf *b)
{
	if (b->alloc > SCRATCH_KEEP)
		buf_release(b);
	else
		buf_reset(b);
}

static void begin_response(struct imap_parser *p)
{
	arena_clear(p);
	memset(&p->resp, 0, sizeof(p->resp));
	scratch_reset(&p->tok);
	scratch_reset(&p->text);
	scratch_reset(&p->raw);
	p->state = ST_START;
	p->line_len = 0;
	p->buffered = 0;
	p->cr = p->lf_after_cr = false;
	p->in_code = false;
	p->section = 0;
	p->section_quote = p->section_esc = false;
	p->sp = 0;
	memset(&p->frames[0], 0, sizeof(p->frames[0]));
	p->lit_left = p->lit_size = 0;
	p->lit_stream = false;
	p->lit_buf = NULL;
	p->lit_got = 0;
	p->errmsg[0] = '\0';
}

struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits,
                                    const struct imap_parser_callbacks *cb, void *ctx)
{
	struct imap_parser *p = xcalloc(1, sizeof(*p));
	if (limits)
		p->lim = *limits;
	if (!p->lim.max_line)
		p->lim.max_line = DEFAULT_MAX_LINE;
	if (!p->lim.max_depth)
		p->lim.max_depth = DEFAULT_MAX_DEPTH;
	if (!p->lim.max_literal_buffer)
		p->lim.max_literal_buffer = DEFAULT_MAX_LITERAL_BUFFER;
	if (!p->lim.max_literal)
		p->lim.max_literal = DEFAULT_MAX_LITERAL;
	/* Room for the NUL and the arena's rounding never overflows. */
	if (p->lim.max_literal_buffer > SIZE_MAX / 4)
		p->lim.max_literal_buffer = SIZE_MAX / 4;
	if (cb) {
		p->cb = *cb;
		p->have_cb = true;
	}
	p->ctx = ctx;
	/* Scratch text is part of the line, so max_line bounds it too. */
	buf_init(&p->tok, p->lim.max_line);
	buf_init(&p->text, p->lim.max_line);
	/* The raw code is line bytes plus buffered literal bytes, each capped. */
	buf_init(&p->raw, 0);
	p->nframes = 8;
	p->frames = xcalloc(p->nframes, sizeof(*p->frames));
	begin_response(p);
	return p;
}

void imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;
	if (!p)
		return;
	arena_clear(p);
	free(p->arena);
	buf_release(&p->tok);
	buf_release(&p->text);
	buf_release(&p->raw);
	free(p->frames);
	free(p);
	*pp = NULL;
}

void imap_parser_reset(struct imap_parser *p)
{
	begin_response(p);
}

const struct imap_response *imap_parser_response(const struct imap_parser *p)
{
	return p->state == ST_DONE ? &p->resp : NULL;
}

const char *imap_parser_error(const struct imap_parser *p)
{
	return p->errmsg;
}

/* ---- building arguments --------------------------------------------- */

static struct imap_arg *add_arg(struct imap_parser *p, enum imap_arg_type type)
{
	struct imap_arg *a = arena_alloc(p, sizeof(*a));
	memset(a, 0, sizeof(*a));
	a->type = type;
	struct frame *f = &p->frames[p->sp];
	if (f->last)
		f->last->next = a;
	else if (f->list)
		f->list->child = a;
	else if (!p->in_code)
		p->resp.args = a;
	if (!f->first)
		f->first = a;
	f->last = a;
	return a;
}

static enum step push_list(struct imap_parser *p)
{
	if (p->sp >= p->lim.max_depth)
		return syntax(p, "lists nested deeper than %u", p->lim.max_depth);
	if (p->sp + 1 >= p->nframes) {
		size_t n = p->nframes * 2;
		if (n > (size_t)p->lim.max_depth + 1)
			n = (size_t)p->lim.max_depth + 1;
		p->frames = xrealloc(p->frames, (size_t)n * sizeof(*p->frames));
		p->nframes = n;
	}
	struct imap_arg *a = add_arg(p, IMAP_ARG_LIST);
	p->sp++;
	p->frames[p->sp].list = a;
	p->frames[p->sp].first = p->frames[p->sp].last = NULL;
	return R_OK;
}

static bool tok_is(const struct buf *b, const char *s)
{
	size_t n = strlen(s);
	if (b->len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		int c = b->data[i];
		if (c >= 'a' && c <= 'z')
			c -= 'a' - 'A';
		if (c != s[i])
			return false;
	}
	return true;
}

static void end_atom(struct imap_parser *p)
{
	if (tok_is(&p->tok, "NIL")) {
		add_arg(p, IMAP_ARG_NIL);
	} else {
		struct imap_arg *a = add_arg(p, IMAP_ARG_ATOM);
		a->len = p->tok.len;
		a->str = arena_strndup(p, p->tok.data, p->tok.len);
	}
	buf_reset(&p->tok);
}

static enum step tok_putc(struct imap_parser *p, uint8_t c)
{
	if (buf_putc(&p->tok, (char)c) < 0)
		return hard(p, "response line too long (over %zu bytes)", p->lim.max_line);
	return R_OK;
}

/* ---- finishing ------------------------------------------------------ */

static enum step finish(struct imap_parser *p)
{
	if (p->resp.status != IMAP_STATUS_NONE || p->resp.kind == IMAP_RESP_CONTINUATION)
		p->resp.text = arena_strndup(p, p->text.data, p->text.len);
	p->state = ST_DONE;
	return R_DONE;
}

/* The code name when the arguments could not be parsed: the first word. */
static void code_from_raw(struct imap_parser *p, size_t rawlen)
{
	const uint8_t *r = p->raw.data;
	size_t n = 0;
	while (n < rawlen && r[n] != ' ')
		n++;
	p->resp.code = n ? arena_upper(p, r, n) : NULL;
	p->resp.code_args = NULL;
	p->resp.code_raw = arena_strndup(p, r, rawlen);
}

static void code_end(struct imap_parser *p)
{
	struct imap_arg *first = p->frames[0].first;
	p->in_code = false;
	if (first && first->type == IMAP_ARG_ATOM) {
		p->resp.code = arena_upper(p, first->str, first->len);
		p->resp.code_args = first->next;
		p->resp.code_raw = arena_strndup(p, p->raw.data, p->raw.len);
	} else {
		code_from_raw(p, p->raw.len);
	}
	p->state = ST_AFTER_CODE;
}

/* The code's arguments did not parse.  Do not fail the response: the code
 * ends at the first ']' seen, and what follows it is text. */
static void code_fallback(struct imap_parser *p)
{
	p->in_code = false;
	p->sp = 0;
	p->section = 0;
	buf_reset(&p->tok);
	p->errmsg[0] = '\0';
	const uint8_t *r = p->raw.data;
	size_t len = p->raw.len;
	const uint8_t *close = len ? memchr(r, ']', len) : NULL;
	if (!close) {
		p->state = ST_CODE_RAW;
		return;
	}
	size_t k = (size_t)(close - r);
	code_from_raw(p, k);
	size_t rest = k + 1;
	if (rest == len) {
		p->state = ST_AFTER_CODE;
		return;
	}
	if (r[rest] == ' ')
		rest++;
	/* Cannot pass the cap: these bytes were part of the line. */
	buf_append(&p->text, r + rest, len - rest);
	p->state = ST_TEXT;
}

static enum step end_of_args(struct imap_parser *p)
{
	if (p->in_code)
		return syntax(p, "unterminated response code (missing ])");
	if (p->sp)
		return syntax(p, "unterminated list (missing ))");
	return finish(p);
}

/* c after a token or between tokens: a space, ')', a code's ']' or the
 * end of the line.  R_SYNTAX with no message when c is none of them. */
static enum step delimiter(struct imap_parser *p, uint8_t c)
{
	switch (c) {
	case ' ':
		p->state = ST_BETWEEN;
		return R_OK;
	case ')':
		if (!p->sp)
			return syntax(p, "unexpected )");
		p->sp--;
		p->state = ST_AFTER;
		return R_OK;
	case ']':
		if (!p->in_code)
			break;
		if (p->sp)
			return syntax(p, "unterminated list (missing ))");
		code_end(p);
		return R_OK;
	case '\n':
		return end_of_args(p);
	}
	p->errmsg[0] = '\0';
	return R_SYNTAX;
}

/* ---- literals ------------------------------------------------------- */

static enum step literal_done(struct imap_parser *p)
{
	struct imap_arg *a;
	if (p->lit_stream) {
		if (p->cb.literal_end && p->cb.literal_end(p->ctx) < 0)
			return hard(p, "aborted by consumer");
		a = add_arg(p, IMAP_ARG_LITERAL_STREAMED);
	} else {
		a = add_arg(p, IMAP_ARG_LITERAL);
		p->lit_buf[p->lit_size] = '\0';
		a->str = (const char *)p->lit_buf;
		a->len = (size_t)p->lit_size;
	}
	a->literal_size = p->lit_size;
	p->lit_buf = NULL;
	p->state = ST_AFTER;
	return R_OK;
}

static enum step literal_begin(struct imap_parser *p)
{
	uint64_t n = 0;
	bool over = false;
	for (size_t i = 0; i < p->tok.len; i++) {
		unsigned d = (unsigned)(p->tok.data[i] - '0');
		if (n > (UINT64_MAX - d) / 10)
			over = true;
		else
			n = n * 10 + d;
	}
	if (over || n > p->lim.max_literal)
		return hard(p, "literal of %.40s bytes is larger than the limit %" PRIu64,
		            buf_cstr(&p->tok), p->lim.max_literal);
	buf_reset(&p->tok);

	struct frame *f = &p->frames[p->sp];
	p->lit_stream = false;
	if (p->cb.literal_begin)
		p->lit_stream = p->cb.literal_begin(p->ctx, &p->resp, f->first, f->last, n);
	if (!p->lit_stream) {
		uint64_t cap = p->lim.max_literal_buffer;
		if (n > cap || p->buffered + n > cap)
			return hard(p,
			            "literal of %" PRIu64 " bytes is too large to buffer "
			            "(limit %" PRIu64 " bytes per response)",
			            n, cap);
		p->buffered += n;
		p->lit_buf = arena_alloc(p, (size_t)n + 1);
	}
	p->lit_size = p->lit_left = n;
	p->lit_got = 0;
	if (!n)
		return literal_done(p);
	p->state = ST_LIT_DATA;
	return R_OK;
}

/* ---- the state machine ---------------------------------------------- */

static bool is_word_char(uint8_t c)
{
	return c > ' ' && c < 0x7f && !strchr("(){%*\"\\[]", c);
}

static bool is_ctl(uint8_t c)
{
	return c < ' ' || c == 0x7f;
}

static enum imap_status status_of(const struct buf *w)
{
	if (tok_is(w, "OK"))
		return IMAP_STATUS_OK;
	if (tok_is(w, "NO"))
		return IMAP_STATUS_NO;
	if (tok_is(w, "BAD"))
		return IMAP_STATUS_BAD;
	if (tok_is(w, "BYE"))
		return IMAP_STATUS_BYE;
	if (tok_is(w, "PREAUTH"))
		return IMAP_STATUS_PREAUTH;
	return IMAP_STATUS_NONE;
}

/* After a status word: the line ends, or a space and resp-text follow. */
static enum step after_status(struct imap_parser *p, uint8_t c)
{
	if (c == '\n')
		return finish(p);
	p->state = ST_RESP_TEXT;
	return R_OK;
}

static enum step word_end(struct imap_parser *p, uint8_t c, const char *what)
{
	if (c == ' ' || c == '\n')
		return R_OK;
	return syntax(p, "unexpected byte 0x%02x in %s", c, what);
}

static enum step st_word1(struct imap_parser *p, uint8_t c)
{
	if (is_word_char(c))
		return tok_putc(p, c);
	enum step r = word_end(p, c, "untagged response");
	if (r != R_OK)
		return r;
	if (!p->tok.len)
		return syntax(p, "missing response name after *");
	const uint8_t *w = p->tok.data;
	size_t n = p->tok.len;
	size_t digits = 0;
	while (digits < n && w[digits] >= '0' && w[digits] <= '9')
		digits++;
	if (p->state == ST_WORD1 && digits == n) {
		uint64_t v = 0;
		for (size_t i = 0; i < n; i++) {
			v = v * 10 + (uint64_t)(w[i] - '0');
			if (v > UINT32_MAX)
				return syntax(p, "number %.20s out of range", buf_cstr(&p->tok));
		}
		if (c != ' ')
			return syntax(p, "missing response name after number");
		p->resp.has_number = true;
		p->resp.number = (uint32_t)v;
		buf_reset(&p->tok);
		p->state = ST_NAME;
		return R_OK;
	}
	enum imap_status st = p->resp.has_number ? IMAP_STATUS_NONE : status_of(&p->tok);
	if (st != IMAP_STATUS_NONE) {
		buf_reset(&p->tok);
		p->resp.status = st;
		return after_status(p, c);
	}
	p->resp.name = arena_upper(p, w, n);
	buf_reset(&p->tok);
	if (c == '\n')
		return finish(p);
	p->state = ST_BETWEEN;
	return R_OK;
}

static enum step st_atom(struct imap_parser *p, uint8_t c)
{
	if (p->section) {
		if (c == '\n')
			return syntax(p, "unterminated [ in atom");
		if (is_ctl(c))
			return syntax(p, "unexpected byte 0x%02x in atom", c);
		if (p->section_esc)
			p->section_esc = false;
		else if (p->section_quote && c == '\\')
			p->section_esc = true;
		else if (c == '"')
			p->section_quote = !p->section_quote;
		else if (!p->section_quote && c == '[') {
			if (++p->section > MAX_SECTION_DEPTH)
				return syntax(p, "brackets nested too deep in atom");
		} else if (!p->section_quote && c == ']')
			p->section--;
		return tok_putc(p, c);
	}
	if (c == '[') {
		p->section = 1;
		p->section_quote = p->section_esc = false;
		return tok_putc(p, c);
	}
	if (c == ' ' || c == ')' || c == '\n' || (c == ']' && p->in_code)) {
		end_atom(p);
		return delimiter(p, c);
	}
	if (c == '(' || c == '"' || is_ctl(c))
		return syntax(p, "unexpected byte 0x%02x in atom", c);
	return tok_putc(p, c);
}

static enum step st_between(struct imap_parser *p, uint8_t c)
{
	switch (c) {
	case ' ':
		return R_OK; /* tolerate extra spaces */
	case '(':
		return push_list(p);
	case '"':
		p->state = ST_QUOTED;
		return R_OK;
	case '{':
		p->literal8 = false;
		p->state = ST_LIT_SIZE;
		return R_OK;
	case '~':
		p->state = ST_TILDE;
		return R_OK;
	case ')':
	case '\n':
		return delimiter(p, c);
	case ']':
		if (p->in_code)
			return delimiter(p, c);
		break;
	}
	if (is_ctl(c))
		return syntax(p, "unexpected byte 0x%02x", c);
	p->section = 0;
	p->state = ST_ATOM;
	return R_AGAIN;
}

static enum step dispatch(struct imap_parser *p, uint8_t c)
{
	enum step r;

	switch (p->state) {
	case ST_START:
		if (c == '*') {
			p->resp.kind = IMAP_RESP_UNTAGGED;
			p->state = ST_STAR;
			return R_OK;
		}
		if (c == '+') {
			p->resp.kind = IMAP_RESP_CONTINUATION;
			p->state = ST_PLUS;
			return R_OK;
		}
		if (c == '\n')
			return syntax(p, "empty response line");
		if (!is_word_char(c) && c != ']')
			return syntax(p, "response starts with byte 0x%02x", c);
		p->resp.kind = IMAP_RESP_TAGGED;
		p->state = ST_TAG;
		return tok_putc(p, c);

	case ST_TAG:
		if (is_word_char(c) || c == ']')
			return tok_putc(p, c);
		if (c == '\n')
			return syntax(p, "missing status after tag");
		if ((r = word_end(p, c, "tag")) != R_OK)
			return r;
		p->resp.tag = arena_strndup(p, p->tok.data, p->tok.len);
		buf_reset(&p->tok);
		p->state = ST_STATUS;
		return R_OK;

	case ST_STATUS:
		if (is_word_char(c))
			return tok_putc(p, c);
		if ((r = word_end(p, c, "status")) != R_OK)
			return r;
		p->resp.status = status_of(&p->tok);
		if (p->resp.status != IMAP_STATUS_OK && p->resp.status != IMAP_STATUS_NO &&
		    p->resp.status != IMAP_STATUS_BAD)
			return syntax(p, "tagged response is not OK, NO or BAD");
		buf_reset(&p->tok);
		return after_status(p, c);

	case ST_STAR:
		if (c != ' ')
			return syntax(p, "missing space after *");
		p->state = ST_WORD1;
		return R_OK;

	case ST_WORD1:
	case ST_NAME:
		return st_word1(p, c);

	case ST_PLUS:
		if (c == '\n')
			return finish(p);
		p->state = ST_TEXT;
		return c == ' ' ? R_OK : R_AGAIN;

	case ST_RESP_TEXT:
		if (c == '[') {
			p->in_code = true;
			p->sp = 0;
			memset(&p->frames[0], 0, sizeof(p->frames[0]));
			buf_reset(&p->raw);
			p->state = ST_BETWEEN;
			return R_OK;
		}
		if (c == '\n')
			return finish(p);
		p->state = ST_TEXT;
		return R_AGAIN;

	case ST_AFTER_CODE:
		if (c == '\n')
			return finish(p);
		p->state = ST_TEXT;
		return c == ' ' ? R_OK : R_AGAIN;

	case ST_TEXT:
		if (c == '\n')
			return finish(p);
		if (buf_putc(&p->text, (char)c) < 0)
			return hard(p, "response line too long (over %zu bytes)", p->lim.max_line);
		return R_OK;

	case ST_CODE_RAW:
		if (c == ']') {
			code_from_raw(p, p->raw.len);
			p->state = ST_AFTER_CODE;
			return R_OK;
		}
		if (c == '\n') {
			code_from_raw(p, p->raw.len);
			return finish(p);
		}
		if (buf_putc(&p->raw, (char)c) < 0)
			return hard(p, "response line too long (over %zu bytes)", p->lim.max_line);
		return R_OK;

	case ST_BETWEEN:
		return st_between(p, c);

	case ST_AFTER:
		r = delimiter(p, c);
		if (r == R_SYNTAX && !p->errmsg[0])
			return syntax(p, "missing space after string, literal or list");
		return r;

	case ST_ATOM:
		return st_atom(p, c);

	case ST_TILDE:
		if (c == '{') {
			p->literal8 = true;
			p->state = ST_LIT_SIZE;
			return R_OK;
		}
		buf_reset(&p->tok);
		if ((r = tok_putc(p, '~')) != R_OK)
			return r;
		p->section = 0;
		p->state = ST_ATOM;
		return R_AGAIN;

	case ST_QUOTED:
		if (c == '"') {
			struct imap_arg *a = add_arg(p, IMAP_ARG_STRING);
			a->len = p->tok.len;
			a->str = arena_strndup(p, p->tok.data, p->tok.len);
			buf_reset(&p->tok);
			p->state = ST_AFTER;
			return R_OK;
		}
		if (c == '\n')
			return syntax(p, "unterminated quoted string");
		if (c == '\\') {
			p->state = ST_QUOTED_ESC;
			return R_OK;
		}
		return tok_putc(p, c);

	case ST_QUOTED_ESC:
		if (c == '\n')
			return syntax(p, "unterminated quoted string");
		p->state = ST_QUOTED;
		return tok_putc(p, c);

	case ST_LIT_SIZE:
		if (c >= '0' && c <= '9')
			return tok_putc(p, c);
		if (p->tok.len && c == '+') {
			p->state = ST_LIT_PLUS;
			return R_OK;
		}
		if (p->tok.len && c == '}') {
			p->state = ST_LIT_CLOSE;
			return R_OK;
		}
		return syntax(p, "bad literal size");

	case ST_LIT_PLUS:
		if (c != '}')
			return syntax(p, "bad literal size");
		p->state = ST_LIT_CLOSE;
		return R_OK;

	case ST_LIT_CLOSE:
		if (c != '\n')
			return syntax(p, "line does not end after literal size");
		return literal_begin(p);

	case ST_LIT_DATA:
	case ST_DONE:
	case ST_ERROR:
		break;
	}
	return hard(p, "internal error: byte in state %d", (int)p->state);
}

/* One byte of line data, with the response-code recovery around it. */
static enum step step(struct imap_parser *p, uint8_t c)
{
	for (;;) {
		bool code = p->in_code;
		enum step r = dispatch(p, c);
		if (r == R_AGAIN)
			continue;
		if (r == R_SYNTAX && code) {
			code_fallback(p);
			continue;
		}
		if (r == R_SYNTAX)
			r = R_HARD;
		/* The brackets themselves are not part of code_raw. */
		if (r == R_OK && code && p->in_code) {
			if (c == '\n' && p->lf_after_cr)
				buf_putc(&p->raw, '\r');
			buf_putc(&p->raw, (char)c);
		}
		return r;
	}
}

static enum step literal_data(struct imap_parser *p, const uint8_t *data, size_t len,
                              size_t *used_r)
{
	size_t n = len;
	if (n > p->lit_left)
		n = (size_t)p->lit_left;
	*used_r = n;
	if (p->lit_stream) {
		if (p->cb.literal_data && p->cb.literal_data(p->ctx, data, n) < 0)
			return hard(p, "aborted by consumer");
	} else {
		memcpy(p->lit_buf + p->lit_got, data, n);
		if (p->in_code)
			buf_append(&p->raw, data, n);
	}
	p->lit_got += n;
	p->lit_left -= n;
	if (!p->lit_left)
		return literal_done(p);
	return R_OK;
}

enum imap_parse_result imap_parser_feed(struct imap_parser *p, const uint8_t *data, size_t len,
                                        size_t *consumed_r)
{
	size_t i = 0;
	enum step r = R_OK;

	*consumed_r = 0;
	if (p->state == ST_ERROR)
		return IMAP_PARSE_ERROR;
	if (p->state == ST_DONE)
		begin_response(p);

	while (i < len) {
		if (p->state == ST_LIT_DATA) {
			size_t used;
			r = literal_data(p, data + i, len - i, &used);
			i += used;
			if (r != R_OK)
				break;
			continue;
		}
		uint8_t c = data[i++];
		if (++p->line_len > p->lim.max_line) {
			r = hard(p, "response line too long (over %zu bytes)", p->lim.max_line);
			break;
		}
		p->lf_after_cr = false;
		if (p->cr) {
			if (c != '\n') {
				r = hard(p, "CR not followed by LF");
				break;
			}
			p->cr = false;
			p->lf_after_cr = true;
		} else if (c == '\r') {
			p->cr = true;
			continue;
		}
		if (c == '\0') {
			r = hard(p, "NUL byte in response line");
			break;
		}
		r = step(p, c);
		if (r != R_OK)
			break;
	}
	*consumed_r = i;
	if (r == R_DONE)
		return IMAP_PARSE_RESPONSE;
	if (r == R_OK)
		return IMAP_PARSE_MORE;
	p->state = ST_ERROR;
	return IMAP_PARSE_ERROR;
}

/* ---- helpers for consumers ------------------------------------------ */

size_t imap_arg_count(const struct imap_arg *first)
{
	size_t n = 0;
	for (; first; first = first->next)
		n++;
	return n;
}

const char *imap_arg_str(const struct imap_arg *a)
{
	if (!a)
		return NULL;
	switch (a->type) {
	case IMAP_ARG_ATOM:
	case IMAP_ARG_STRING:
	case IMAP_ARG_LITERAL:
		return a->str;
	default:
		return NULL;
	}
}

/* ASCII only: strcasecmp() would follow the locale (Turkish dotless i). */
bool imap_arg_atom_is(const struct imap_arg *a, const char *s)
{
	if (!a || a->type != IMAP_ARG_ATOM || strlen(s) != a->len)
		return false;
	for (size_t i = 0; i < a->len; i++) {
		unsigned char x = (unsigned char)a->str[i], y = (unsigned char)s[i];
		if (x >= 'a' && x <= 'z')
			x = (unsigned char)(x - 'a' + 'A');
		if (y >= 'a' && y <= 'z')
			y = (unsigned char)(y - 'a' + 'A');
		if (x != y)
			return false;
	}
	return true;
}

bool imap_arg_number(const struct imap_arg *a, uint64_t *n_r)
{
	if (!a || a->type != IMAP_ARG_ATOM || !a->len)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < a->len; i++) {
		unsigned d = (unsigned)(a->str[i] - '0');
		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*n_r = v;
	return true;
}
