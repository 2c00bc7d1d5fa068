/* csv.h - the batch's user list: an Exchange-compatible CSV file.
 *
 *   EmailAddress,UserName,Password[,UserRoot][,TargetUserName][,TargetPassword]
 *
 * Header names are case-insensitive, trimmed of surrounding spaces, in any
 * order, each at most once.  The file is UTF-8 (an optional BOM is
 * skipped), records end with CRLF or LF (mixed is fine), the last one may
 * lack its newline and blank lines at the end are ignored.  Fields follow
 * RFC 4180: optionally in double quotes, where "" is a quote and commas
 * and line breaks are data.  Values are kept byte-exact: nothing is
 * trimmed except the header names, so passwords survive as written.
 *
 * Validation is strict and all-or-nothing: the first problem fails the
 * whole file with ERR_CONFIG and a message naming the place,
 *
 *   users.csv:7:2 (UserName): empty user name
 *
 * (file:line:field, the field's column name where the header is known)
 * plus a hint.  Line numbers count physical lines, so a record whose
 * quoted field holds a line break spans two; a record is named by the line
 * it starts on.  No error message ever contains a password.
 *
 * Limits: the file at most CSV_MAX_FILE bytes, at most CSV_MAX_USERS rows,
 * each field at most CSV_MAX_FIELD bytes.
 */
#ifndef IMAPMIG_BATCH_CSV_H
#define IMAPMIG_BATCH_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define CSV_MAX_FILE (64u * 1024 * 1024)
#define CSV_MAX_USERS 1000000u
#define CSV_MAX_FIELD (64u * 1024)
/* A record with more fields than this is refused by the reader before it
 * is stored (the header can name only six columns anyway). */
#define CSV_MAX_FIELDS 1024u

struct csv_user {
	char *email;           /* EmailAddress: target mailbox */
	char *user;            /* UserName: source login */
	char *password;        /* Password (may be "" when an admin is used) */
	char *user_root;       /* UserRoot or NULL */
	char *target_user;     /* TargetUserName or NULL (then email is the target login) */
	char *target_password; /* TargetPassword or NULL */
	unsigned line;         /* line number in the file (1-based) */
};

struct csv_users {
	struct csv_user *items;
	size_t count;
};

struct csv_rules {
	bool source_password_optional; /* an admin logs in on the source */
	bool target_password_optional; /* an admin logs in on the target */
};

/* Read, parse and validate the whole file at path (also used in messages).
 * 0, or -1 with err (ERR_CONFIG) "PATH:LINE:COL: what is wrong" + hint;
 * on failure *out is empty ({NULL, 0}): nothing partial is returned.
 * On success the caller owns *out and releases it with csv_users_release(),
 * which wipes the passwords.  The file's bytes are wiped after parsing. */
int csv_read_users(const char *path, const struct csv_rules *rules, struct csv_users *out,
                   struct err *err);
/* The same for bytes already in memory (not modified, not wiped);
 * path_for_messages only names the file in errors. */
int csv_parse_users(const char *path_for_messages, const uint8_t *data, size_t len,
                    const struct csv_rules *rules, struct csv_users *out, struct err *err);
/* Wipe the passwords, free everything; *u becomes empty.  Safe on an empty
 * or already released list. */
void csv_users_release(struct csv_users *u);

/*
 * Lower level, for fuzzing and reuse: split RFC 4180 records.
 *
 *   struct csv_reader r;
 *   struct csv_record rec = {0};
 *   csv_reader_init(&r, "users.csv", data, len);
 *   while ((rc = csv_reader_next(&r, &rec, &err)) > 0)
 *           ... csv_record_field(&rec, i, &n) for i < rec.count ...
 *   csv_record_release(&rec);
 *
 * The reader skips a leading UTF-8 BOM, validates UTF-8, refuses NUL bytes
 * and a carriage return that does not end a line outside quotes, and caps
 * fields at CSV_MAX_FIELD bytes and records at CSV_MAX_FIELDS fields.
 */
struct csv_reader {
	const char *path;    /* for messages; borrowed */
	const uint8_t *data; /* borrowed; must outlive the reader */
	size_t len;          /* without the trailing blank lines */
	size_t pos;
	unsigned line; /* line the next record starts on */
	/* Optional column names for messages ("users.csv:4:3 (Password): ...");
	 * borrowed, names[i] for field i+1; set after reading the header. */
	const char *const *names;
	size_t nnames;
};

struct csv_record {
	uint8_t *data; /* the fields' bytes, each followed by a NUL */
	size_t len, alloc;
	size_t *start; /* field i is data + start[i] ... */
	size_t *flen;  /* ... of flen[i] bytes (no NUL inside: the reader refuses NUL) */
	size_t count, fields_alloc;
	unsigned line; /* the line the record starts on (1-based) */
};

void csv_reader_init(struct csv_reader *r, const char *path, const uint8_t *data, size_t len);
/* Read the next record into rec (reused; its old contents are wiped).
 * 1 a record, 0 no more records (the rest was blank lines), -1 err
 * (ERR_CONFIG, "PATH:LINE:FIELD: ...").  A blank line before the end is a
 * record of one empty field. */
int csv_reader_next(struct csv_reader *r, struct csv_record *rec, struct err *err);
/* Field i (< rec->count) as NUL-terminated text; its length in *len_r if
 * not NULL.  Valid until the next csv_reader_next() or release. */
const char *csv_record_field(const struct csv_record *rec, size_t i, size_t *len_r);
/* Wipe (it may hold passwords) and free; rec becomes empty and reusable. */
void csv_record_release(struct csv_record *rec);

#endif
