/* report.h - a batch's report: CSV, JSON, HTML, and mailed to the admin.
 *
 * The report is built from a plain data model (filled by the batch layer
 * from the state database) so the writers know nothing about SQLite or
 * IMAP.  It never contains a password.  Times are UTC, written as ISO 8601
 * ("2026-11-29T16:04:05Z"); 0 means "not yet" and is written empty (CSV,
 * HTML) or null (JSON).
 *
 * Formats:
 *   CSV   one header row, then one row per user (RFC 4180 quoting,
 *         UTF-8, CRLF), then a blank line and a second table of skipped
 *         and failed items with its own header row.  Excel-friendly.
 *   JSON  one object: {"batch": {...totals...}, "users": [...],
 *         "skipped": [...]}.
 *   HTML  one self-contained page (inline CSS, no scripts, no external
 *         resources): a title with batch name and status, totals, a table
 *         of users with status badges, and the skipped items.  All text is
 *         HTML-escaped.
 */
#ifndef IMAPMIG_REPORT_REPORT_H
#define IMAPMIG_REPORT_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "util/buf.h"
#include "util/err.h"

struct report_user {
	const char *email;       /* target mailbox (EmailAddress) */
	const char *source_user; /* source login (UserName) */
	const char *status;      /* "Synced", "Failed", ... */
	const char *error;       /* NULL when none */
	uint64_t items_synced;   /* messages on the target (copied or found there) */
	uint64_t items_skipped;  /* by policy (size limit) */
	uint64_t items_failed;   /* refused by the target */
	uint64_t bytes;          /* bytes copied */
	uint64_t folders;
	time_t started, last_synced, completed;
	double duration_s;       /* time spent syncing, all passes */
};

struct report_item {
	const char *user;   /* email */
	const char *folder;
	uint32_t uid;
	const char *date;   /* INTERNALDATE as the server sent it, or NULL */
	const char *subject;
	uint64_t size;
	const char *reason;
};

struct report {
	const char *batch;  /* name */
	const char *status; /* batch status */
	const char *source; /* endpoint URLs, no passwords */
	const char *target;
	time_t created, generated;
	const struct report_user *users;
	size_t n_users;
	const struct report_item *items;
	size_t n_items;
};

/* Write the report to out.  0, or -1 with err (ERR_INTERNAL, e.g. a
 * write error). */
int report_write_csv(const struct report *r, struct buf *out, struct err *err);
int report_write_json(const struct report *r, struct buf *out, struct err *err);
int report_write_html(const struct report *r, struct buf *out, struct err *err);
/* A few lines of plain text: batch, status, totals, failed users with
 * their errors; the body of the mail. */
int report_write_text(const struct report *r, struct buf *out, struct err *err);

struct mail_opts {
	const char *smtp_url;     /* smtp://host:587 (STARTTLS required) or smtps://host:465;
				   * user may be in the URL: smtp://user@host */
	const char *password;     /* SMTP password or NULL (no AUTH) */
	const char *from;         /* envelope and header From */
	const char *const *to;    /* recipients */
	size_t n_to;
	const char *ca_file;      /* extra trusted CA, or NULL */
	int timeout_ms;           /* 0 = 60000 */
	bool allow_plaintext;     /* smtp:// without STARTTLS (tests only) */
};

/* Mail the report: a multipart/mixed message with the text summary as the
 * body and report.csv and report.html attached (base64), subject
 * "imapmig batch NAME: STATUS", sent with libcurl (STARTTLS required for
 * smtp:// unless allow_plaintext, TLS verified).  0, or -1 with err
 * naming the SMTP server and what it said (ERR_TRANSIENT for connection
 * problems, ERR_CONFIG for refused recipients or auth). */
int report_mail(const struct report *r, const struct mail_opts *o, struct err *err);

#endif
