/* imap_client.h - an IMAP4rev1 client connection, pipelined.
 *
 * Knows IMAP, nothing about migration.  Callers use typed operations
 * ("select this folder", "fetch these UIDs", "append this stream"); tags,
 * quoting, literals and response matching stay in here.
 *
 * Pipelining: every command is written at once and put on an in-flight
 * list; responses are matched to commands by tag, so any number of
 * commands may be outstanding.  The _send functions return after
 * writing; imap_client_wait_all() (or one of the blocking helpers, which
 * are send + wait) reads until all finished.  While a write is blocked,
 * incoming responses are read and dispatched (no deadlock with a server
 * that is busy writing to us).  Untagged data is dispatched to the
 * handler of the operation in progress (one kind of operation at a time).
 *
 * Literals in commands: LITERAL+ ({n+}) when offered, otherwise a
 * synchronising literal that waits for the server's "+".
 *
 * Errors: one function, imap_client_status_err(), turns a NO/BAD/BYE
 * reply into an err kind (see err.h): [AUTHENTICATIONFAILED] and
 * [AUTHORIZATIONFAILED] -> ERR_ACCOUNT; [TOOBIG] [OVERQUOTA] -> ERR_MESSAGE
 * (for APPEND); [UNAVAILABLE] [LIMIT] [INUSE] [SERVERBUG] [THROTTLED], BYE,
 * dropped connections -> ERR_TRANSIENT; [NONEXISTENT] [TRYCREATE]
 * [NOPERM] -> ERR_FOLDER; other NO -> the caller's default.  The err
 * always carries side/host/user from the connection and the server's
 * words.  After a transport error or BYE the client is dead: every call
 * fails at once with ERR_TRANSIENT, and the caller reconnects.
 */
#ifndef IMAPMIG_IMAP_CLIENT_H
#define IMAPMIG_IMAP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"

enum imap_cap {
	IMAP_CAP_IMAP4REV1 = 1 << 0,
	IMAP_CAP_STARTTLS = 1 << 1,
	IMAP_CAP_LOGINDISABLED = 1 << 2,
	IMAP_CAP_AUTH_PLAIN = 1 << 3,
	IMAP_CAP_SASL_IR = 1 << 4,
	IMAP_CAP_LITERALPLUS = 1 << 5,  /* LITERAL+ (or LITERAL- for small ones) */
	IMAP_CAP_UIDPLUS = 1 << 6,
	IMAP_CAP_NAMESPACE = 1 << 7,
	IMAP_CAP_LIST_EXTENDED = 1 << 8,
	IMAP_CAP_SPECIAL_USE = 1 << 9,
	IMAP_CAP_CONDSTORE = 1 << 10,
	IMAP_CAP_QRESYNC = 1 << 11,
	IMAP_CAP_MULTIAPPEND = 1 << 12,
	IMAP_CAP_ID = 1 << 13,
	IMAP_CAP_ENABLE = 1 << 14,
	IMAP_CAP_LIST_STATUS = 1 << 15,
	IMAP_CAP_COMPRESS = 1 << 16,
	IMAP_CAP_UTF8_ACCEPT = 1 << 17,
	IMAP_CAP_AUTH_XOAUTH2 = 1 << 18,
	IMAP_CAP_LITERALMINUS = 1 << 19,
	IMAP_CAP_IMAP4REV2 = 1 << 20,
};

enum imap_admin_mode {
	IMAP_ADMIN_AUTHZID = 0, /* AUTHENTICATE PLAIN authzid=user, authcid=admin */
	IMAP_ADMIN_MASTER_SEP,  /* LOGIN "user*admin" (Dovecot master users) */
};

/* conn_no: the trace_no of the connection (see imap_client_opts). */
typedef void imap_trace_fn(void *ctx, unsigned conn_no, char dir, const uint8_t *data,
			   size_t len);

struct imap_client_opts {
	enum side side;           /* for error messages */
	const char *host;
	uint16_t port;            /* 0 = 993 with implicit_tls, else 143 */
	bool implicit_tls;        /* imaps:// */
	bool allow_plaintext;     /* imap:// without STARTTLS accepted */
	bool insecure;            /* no certificate verification */
	const char *ca_file;
	const char *connect_addr; /* see conn_opts */
	int timeout_ms;           /* 0 = 60 s */
	const char *user;         /* the mailbox owner */
	const char *password;     /* user's, or admin's when admin is set */
	const char *admin;        /* act for user as this admin, or NULL */
	enum imap_admin_mode admin_mode;
	char master_sep;          /* for IMAP_ADMIN_MASTER_SEP; 0 = '*' */
	imap_trace_fn *trace;     /* protocol trace (passwords masked), or NULL */
	void *trace_ctx;
	unsigned trace_no;        /* tells this connection's trace from others of
				   * the same side (1 = the first; 0 = 1) */
};

struct imap_client;

/* Connect, read the greeting, STARTTLS unless implicit TLS (refused when
 * not offered unless allow_plaintext), authenticate, and learn the
 * capabilities.  Secrets in opts are not kept.  Caller frees with
 * imap_client_logout() or imap_client_free(). */
struct imap_client *imap_client_connect(const struct imap_client_opts *opts, struct err *err);
/* LOGOUT (best effort, short wait) then free; *cp = NULL. */
void imap_client_logout(struct imap_client **cp);
/* Give up on the connection now (e.g. an APPEND literal can no longer be
 * finished because its source broke): it is closed, commands in flight
 * are dropped WITHOUT their callbacks, and every later call fails with
 * ERR_TRANSIENT.  The caller still frees it. */
void imap_client_kill(struct imap_client *c, const char *why);
/* Free without talking to the server; *cp = NULL. */
void imap_client_free(struct imap_client **cp);

/* COMPRESS DEFLATE (RFC 4978) when the server offers it: 1 on, 0 not
 * offered (nothing done), -1 error.  For slow links: it costs CPU on both
 * ends. */
int imap_client_compress(struct imap_client *c, struct err *err);

unsigned imap_client_caps(const struct imap_client *c);
bool imap_client_has_cap(const struct imap_client *c, const char *name);
/* Connection lost or BYE received: only freeing is left. */
bool imap_client_is_dead(const struct imap_client *c);

/* Personal namespace: prefix (caller frees) and delimiter ('\0' = none).
 * Without NAMESPACE support: "" and the delimiter from LIST "" "". */
int imap_client_namespace(struct imap_client *c, char **prefix_r, char *delim_r, struct err *err);

/* One mailbox from LIST: name decoded to UTF-8, delimiter, attributes as
 * sent ("\HasNoChildren \Sent"), subscription folded into attrs as
 * "\Subscribed".  Valid during the callback only. */
struct imap_mailbox {
	const char *name;
	char delim;
	const char *attrs;
};
typedef int imap_list_fn(void *ctx, const struct imap_mailbox *mb, struct err *err);
/* All mailboxes with special-use and subscription information (LIST-EXTENDED
 * RETURN (SUBSCRIBED SPECIAL-USE) when offered, else LIST + LSUB). A name
 * that is not valid modified UTF-7 is passed through undecoded. */
int imap_client_list(struct imap_client *c, imap_list_fn *fn, void *ctx, struct err *err);

struct imap_select_info {
	uint32_t exists;
	uint32_t uidvalidity;
	uint32_t uidnext;       /* 0 if the server did not say */
	uint64_t highestmodseq; /* 0 = no CONDSTORE for this mailbox */
	bool read_only;
	bool keywords_allowed;  /* PERMANENTFLAGS has \* */
	char permanentflags[1024];
};
/* SELECT (or EXAMINE when read_only), with CONDSTORE when offered.
 * name is UTF-8. */
int imap_client_select(struct imap_client *c, const char *name, bool read_only,
		       struct imap_select_info *info_r, struct err *err);
/* STATUS of many mailboxes at once (pipelined): fn is called for each
 * answer with the mailbox name (UTF-8) and what the server said.  A
 * mailbox the server refuses is skipped (its error is not fatal). */
struct imap_status_info {
	uint32_t messages;
	uint64_t size;          /* total octets; 0 without STATUS=SIZE */
	uint32_t uidnext, uidvalidity;
	uint64_t highestmodseq; /* 0 without CONDSTORE */
};
typedef void imap_status_fn(void *ctx, const char *name, const struct imap_status_info *st);
int imap_client_status(struct imap_client *c, const char *const *names, size_t n,
		       imap_status_fn *fn, void *ctx, struct err *err);

/* CREATE; an existing mailbox ([ALREADYEXISTS]) counts as success with
 * *existed_r = true. */
int imap_client_create(struct imap_client *c, const char *name, bool *existed_r,
		       struct err *err);
int imap_client_subscribe(struct imap_client *c, const char *name, struct err *err);

enum imap_fetch_item {
	IMAP_FETCH_FLAGS = 1 << 0,
	IMAP_FETCH_INTERNALDATE = 1 << 1,
	IMAP_FETCH_SIZE = 1 << 2,    /* RFC822.SIZE */
	IMAP_FETCH_HEADERS = 1 << 3, /* BODY.PEEK[HEADER.FIELDS (...)] */
	IMAP_FETCH_BODY = 1 << 4,    /* BODY.PEEK[], streamed */
	IMAP_FETCH_MODSEQ = 1 << 5,
};

/* One message's metadata from a FETCH response; valid during the call. */
struct imap_fetch_msg {
	uint32_t uid;
	const char *flags;        /* "\Seen $Label1" as sent, without \Recent; "" */
	const char *internaldate; /* "17-Jul-1996 02:44:25 -0700", or NULL */
	uint64_t size;
	const uint8_t *headers;   /* raw header fields, or NULL */
	size_t headers_len;
	uint64_t modseq;
	bool has_body;            /* BODY[] was streamed to the body callbacks */
};

struct imap_fetch_handler {
	/* After each FETCH response that carries a UID. */
	int (*message)(void *ctx, const struct imap_fetch_msg *m, struct err *err);
	/* BODY[] streaming: begin with the UID and literal size (the UID may
	 * be 0 when the server sent it after the body; then message() tells
	 * it), chunks, end. Return -1 with err to abort (the connection is
	 * then unusable). */
	int (*body_begin)(void *ctx, uint32_t uid, uint64_t size, struct err *err);
	int (*body_data)(void *ctx, const uint8_t *data, size_t len, struct err *err);
	int (*body_end)(void *ctx, struct err *err);
	void *ctx;
};

/* Send "UID FETCH set (items) [(CHANGEDSINCE n)]" without waiting; the
 * handler gets the data as it arrives during any later read.  header
 * fields come from header_fields ("MESSAGE-ID DATE FROM SUBJECT"). */
int imap_client_fetch_send(struct imap_client *c, const char *uidset, unsigned items,
			   const char *header_fields, uint64_t changedsince,
			   const struct imap_fetch_handler *h, struct err *err);

/* Completion of a pipelined command: status_ok, or err filled. */
struct imap_append_result {
	bool ok;
	uint32_t uidvalidity; /* from APPENDUID, 0 if none */
	uint32_t uid;         /* single APPEND: the new UID, 0 if unknown */
	const char *uidset;   /* APPENDUID's set as sent ("3955:3964"), or NULL;
			       * for MULTIAPPEND, in the order appended */
};
typedef void imap_append_done_fn(void *ctx, const struct imap_append_result *res,
				 const struct err *err);

/* APPEND name (flags) "date" {size+}: writes the command head; then
 * exactly size bytes through imap_client_append_data(), then
 * imap_client_append_end().  done fires when the server answers (during
 * some later read).  flags may be "" and date NULL.  Returns 0 (send the
 * data), 1 when a server without LITERAL+ refused the APPEND before the
 * data (done has been called; send nothing), or -1 (connection error). */
int imap_client_append_begin(struct imap_client *c, const char *name, const char *flags,
			     const char *date, uint64_t size, imap_append_done_fn *done,
			     void *ctx, struct err *err);
int imap_client_append_data(struct imap_client *c, const uint8_t *data, size_t len,
			    struct err *err);
int imap_client_append_end(struct imap_client *c, struct err *err);

/* MULTIAPPEND (RFC 3502): several messages in one APPEND command, stored
 * by the server in one transaction (all or none).  Only with LITERAL+,
 * so nothing waits for "+".  After append_begin and a message's data,
 * imap_client_append_message_end() ends that message but keeps the
 * command open; imap_client_append_next() adds the next message;
 * imap_client_append_finish() ends the command (done fires once, with
 * APPENDUID's uid set for all of them). */
bool imap_client_can_multiappend(const struct imap_client *c);
int imap_client_append_message_end(struct imap_client *c, struct err *err);
int imap_client_append_next(struct imap_client *c, const char *flags, const char *date,
			    uint64_t size, struct err *err);
int imap_client_append_finish(struct imap_client *c, struct err *err);
/* A message of an open MULTIAPPEND has ended and the command awaits
 * append_next or append_finish. */
bool imap_client_append_between(const struct imap_client *c);

/* UID STORE set +FLAGS.SILENT (flags) (op '+', '-' or '='), pipelined;
 * failures are reported through imap_client_wait_all(). */
int imap_client_store_send(struct imap_client *c, const char *uidset, char op,
			   const char *flags, struct err *err);

/* Read and dispatch until no command is in flight.  Returns -1 on a
 * transport error/BYE, or on the first failed command whose error was not
 * handed to a completion callback (err describes it). */
int imap_client_wait_all(struct imap_client *c, struct err *err);
/* Number of commands in flight. */
size_t imap_client_in_flight(const struct imap_client *c);

/* Turn a tagged/untagged status reply into err (the one place that knows
 * response codes); default_kind for a NO without a known code. */
struct imap_response;
void imap_client_status_err(const struct imap_client *c, const struct imap_response *r,
			    enum err_kind default_kind, struct err *err);

/* Append s to out quoted as an IMAP astring/quoted string, or as a literal
 * marker when it must be (CR, LF, NUL, 8-bit): used by the command
 * builder; exposed for tests.  Returns 1 when s needs a literal instead
 * (nothing appended), else 0. */
int imap_quote(struct buf *out, const char *s);

#endif
