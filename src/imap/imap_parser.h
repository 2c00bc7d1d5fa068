/* imap_parser.h - incremental parser for IMAP server responses (RFC 9051,
 * RFC 3501).
 *
 * A push parser: it never reads a socket.  The caller feeds whatever bytes
 * it has; the parser consumes up to the end of one response and says
 * "need more", "here is a response", or "error".  It keeps no more than
 * limits->max_line bytes of non-literal data per response, nests lists at
 * most limits->max_depth deep, and buffers a literal only when the
 * callback asks for it and it is at most limits->max_literal_buffer bytes;
 * any other literal is streamed to the callback in chunks as it arrives,
 * so a 50 MB message body never sits in the parser.  Any byte sequence
 * either parses or gives IMAP_PARSE_ERROR: never a crash, never unbounded
 * growth.
 *
 * Grammar handled: tagged, untagged ("*") and continuation ("+")
 * responses; atoms (including flag atoms like \Seen and \*, and fetch
 * attribute atoms whose [...] section may contain spaces and parentheses,
 * e.g. BODY[HEADER.FIELDS (DATE FROM)]<0>), numbers (as atoms), quoted
 * strings with \" and \\ escapes (8-bit bytes accepted), literals {n}
 * and literal8 ~{n} (also {n+}), NIL, nested lists.  Status responses
 * (OK/NO/BAD/BYE/PREAUTH, tagged or untagged) are split into status,
 * optional [CODE args] and free text.  Lines end in CRLF; a bare LF is
 * accepted.
 *
 * Memory: a response and everything it points to lives in the parser's
 * arena and is valid until the next imap_parser_feed() or reset.
 */
#ifndef IMAPMIG_IMAP_PARSER_H
#define IMAPMIG_IMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_arg_type {
	IMAP_ARG_ATOM,             /* includes numbers and flags */
	IMAP_ARG_STRING,           /* quoted string, unescaped */
	IMAP_ARG_LITERAL,          /* literal buffered in full */
	IMAP_ARG_LITERAL_STREAMED, /* literal passed to the callback; only size kept */
	IMAP_ARG_NIL,
	IMAP_ARG_LIST,
};

struct imap_arg {
	enum imap_arg_type type;
	/* ATOM, STRING, LITERAL: str[0..len) plus a NUL at str[len] (the
	 * content itself may contain NULs for literals). */
	const char *str;
	size_t len;
	uint64_t literal_size;        /* LITERAL and LITERAL_STREAMED */
	const struct imap_arg *child; /* LIST: first element, or NULL when empty */
	const struct imap_arg *next;  /* next sibling, or NULL */
};

enum imap_resp_kind {
	IMAP_RESP_UNTAGGED,
	IMAP_RESP_TAGGED,
	IMAP_RESP_CONTINUATION,
};

enum imap_status {
	IMAP_STATUS_NONE = 0, /* not a status response (e.g. "* 3 EXISTS") */
	IMAP_STATUS_OK,
	IMAP_STATUS_NO,
	IMAP_STATUS_BAD,
	IMAP_STATUS_BYE,
	IMAP_STATUS_PREAUTH,
};

struct imap_response {
	enum imap_resp_kind kind;
	const char *tag;            /* TAGGED only */
	enum imap_status status;
	/* Status responses: the response code, upper-cased ("APPENDUID",
	 * "CAPABILITY", "TRYCREATE"), or NULL; its arguments parsed as
	 * atoms/strings/lists (NULL if none or unparseable); code_raw is the
	 * text between the brackets as sent. */
	const char *code;
	const struct imap_arg *code_args;
	const char *code_raw;
	/* Status responses and continuations: the human-readable rest of the
	 * line (without CRLF), possibly "". */
	const char *text;
	/* Untagged non-status responses: "* 12 FETCH (...)" gives
	 * has_number, number=12, name="FETCH"; "* CAPABILITY a b" gives
	 * name="CAPABILITY".  name is upper-cased. */
	bool has_number;
	uint32_t number;
	const char *name;
	const struct imap_arg *args; /* arguments after name, or NULL */
};

enum imap_parse_result {
	IMAP_PARSE_MORE = 0,  /* all input consumed; feed more */
	IMAP_PARSE_RESPONSE,  /* one complete response is ready */
	IMAP_PARSE_ERROR,     /* syntax error or a limit passed */
};

struct imap_parser_limits {
	size_t max_line;           /* non-literal bytes in one response; 0 = 8 MiB */
	unsigned max_depth;        /* list nesting; 0 = 32 */
	size_t max_literal_buffer; /* largest literal kept in memory; 0 = 1 MiB */
	uint64_t max_literal;      /* largest literal announced at all; 0 = 4 GiB */
};

struct imap_parser_callbacks {
	/* A literal of size bytes begins.  resp is the response parsed so
	 * far (kind, tag, number, name are set); list is the first element of
	 * the innermost list being built (NULL if empty) and prev the element
	 * just before the literal (e.g. the atom "BODY[]"), or NULL.
	 * Return true to stream it (literal_data gets the bytes, then
	 * literal_end), false to buffer it into an IMAP_ARG_LITERAL.
	 * When NULL, every literal is buffered. */
	bool (*literal_begin)(void *ctx, const struct imap_response *resp,
			      const struct imap_arg *list, const struct imap_arg *prev,
			      uint64_t size);
	/* Return 0, or -1 to stop: imap_parser_feed() then returns
	 * IMAP_PARSE_ERROR with error "aborted by consumer". */
	int (*literal_data)(void *ctx, const uint8_t *data, size_t len);
	int (*literal_end)(void *ctx);
};

struct imap_parser;

/* limits and cb may be NULL (defaults; buffer everything).  Caller frees
 * with imap_parser_free(). */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits,
				    const struct imap_parser_callbacks *cb, void *ctx);
void imap_parser_free(struct imap_parser **pp);

/* Feed up to len bytes.  *consumed_r says how many were used: all of them
 * for IMAP_PARSE_MORE, up to and including the response's final LF for
 * IMAP_PARSE_RESPONSE (feed the rest again afterwards).  After
 * IMAP_PARSE_ERROR the parser stays in error until imap_parser_reset(). */
enum imap_parse_result imap_parser_feed(struct imap_parser *p, const uint8_t *data, size_t len,
					size_t *consumed_r);
/* The response after IMAP_PARSE_RESPONSE; valid until the next feed. */
const struct imap_response *imap_parser_response(const struct imap_parser *p);
/* Why IMAP_PARSE_ERROR, e.g. "line too long (over 8388608 bytes)". */
const char *imap_parser_error(const struct imap_parser *p);
void imap_parser_reset(struct imap_parser *p);

/* Helpers for consumers. */
size_t imap_arg_count(const struct imap_arg *first);
/* Atom or string text, else NULL. */
const char *imap_arg_str(const struct imap_arg *a);
/* Atom equal to s, case-insensitively. */
bool imap_arg_atom_is(const struct imap_arg *a, const char *s);
/* Atom holding a decimal number that fits (no sign, no leading junk). */
bool imap_arg_number(const struct imap_arg *a, uint64_t *n_r);

#endif
