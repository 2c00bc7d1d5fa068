/* csv.c - the batch's user list: RFC 4180 records, then the columns.
 *
 * Two passes over one record at a time: csv_reader_next() splits a record
 * into fields (quotes, UTF-8, limits), and csv_parse_users() gives the
 * fields their meaning (header, values, duplicates).  Everything that may
 * hold a password is wiped before its memory is given back.
 */
#include "batch/csv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/mem.h"

/* ---- messages ---- */

/* "PATH:LINE:COL (Name): " + fmt; line 0 or col 0 leave that part out. */
static int vfail(struct err *err, const char *path, unsigned line, size_t col, const char *name,
                 const char *fmt, va_list ap)
{
	char where[600], what[700];
	int n = snprintf(where, sizeof(where), "%s", path);
	if (line && n >= 0 && (size_t)n < sizeof(where))
		n += snprintf(where + n, sizeof(where) - (size_t)n, ":%u", line);
	if (line && col && n >= 0 && (size_t)n < sizeof(where))
		n += snprintf(where + n, sizeof(where) - (size_t)n, ":%zu", col);
	if (line && col && name && n >= 0 && (size_t)n < sizeof(where))
		snprintf(where + n, sizeof(where) - (size_t)n, " (%s)", name);
	vsnprintf(what, sizeof(what), fmt, ap);
	return err_set(err, ERR_CONFIG, "%s: %s", where, what);
}

static int fail(struct err *err, const char *path, unsigned line, size_t col, const char *name,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int fail(struct err *err, const char *path, unsigned line, size_t col, const char *name,
                const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(err, path, line, col, name, fmt, ap);
	va_end(ap);
	return -1;
}

static const char *reader_name(const struct csv_reader *r, size_t col)
{
	return r->names && col >= 1 && col <= r->nnames ? r->names[col - 1] : NULL;
}

static int rfail(const struct csv_reader *r, struct err *err, unsigned line, size_t col,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int rfail(const struct csv_reader *r, struct err *err, unsigned line, size_t col,
                 const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(err, r->path, line, col, reader_name(r, col), fmt, ap);
	va_end(ap);
	return -1;
}

/* A value as it may appear in a message: at most ~60 bytes, cut on a
 * character boundary, control characters shown as '?'.  Never used on
 * passwords. */
static const char *shown(const char *s, char out[80])
{
	size_t n = strlen(s), max = 60, i;
	bool cut = n > max;
	if (cut) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	if (cut) {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = '\0';
	return out;
}

/* ---- records ---- */

/* Length of the valid UTF-8 sequence at p (2..4 bytes), or 0 when it is
 * not one: overlong forms, surrogates and code points past U+10FFFF are
 * refused like any other bad byte. */
static size_t utf8_seq(const uint8_t *p, size_t avail)
{
	uint8_t c = p[0], lo = 0x80, hi = 0xbf;
	size_t n;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (avail < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* Grow by hand rather than with realloc so the old copy, which may hold a
 * password, is wiped before it is freed. */
static void *grow_wiped(void *old, size_t used, size_t newsize)
{
	void *p = xmalloc(newsize);
	if (old) {
		memcpy(p, old, used);
		mem_wipe(old, used);
		free(old);
	}
	return p;
}

static void rec_append(struct csv_record *rec, const uint8_t *bytes, size_t n)
{
	if (rec->len + n + 1 > rec->alloc) {
		size_t want = rec->alloc ? rec->alloc * 2 : 256;
		while (want < rec->len + n + 1)
			want *= 2;
		rec->data = grow_wiped(rec->data, rec->len, want);
		rec->alloc = want;
	}
	memcpy(rec->data + rec->len, bytes, n);
	rec->len += n;
}

static void rec_begin_field(struct csv_record *rec)
{
	if (rec->count == rec->fields_alloc) {
		rec->fields_alloc = rec->fields_alloc ? rec->fields_alloc * 2 : 8;
		rec->start = xrealloc(rec->start, rec->fields_alloc * sizeof(*rec->start));
		rec->flen = xrealloc(rec->flen, rec->fields_alloc * sizeof(*rec->flen));
	}
	rec->start[rec->count] = rec->len;
}

static void rec_end_field(struct csv_record *rec)
{
	static const uint8_t nul = 0;
	rec->flen[rec->count] = rec->len - rec->start[rec->count];
	rec_append(rec, &nul, 1);
	rec->count++;
}

static void rec_reset(struct csv_record *rec)
{
	if (rec->data)
		mem_wipe(rec->data, rec->len);
	rec->len = 0;
	rec->count = 0;
	rec->line = 0;
}

void csv_record_release(struct csv_record *rec)
{
	if (rec->data) {
		mem_wipe(rec->data, rec->alloc);
		free(rec->data);
	}
	free(rec->start);
	free(rec->flen);
	memset(rec, 0, sizeof(*rec));
}

const char *csv_record_field(const struct csv_record *rec, size_t i, size_t *len_r)
{
	if (len_r)
		*len_r = rec->flen[i];
	return (const char *)rec->data + rec->start[i];
}

void csv_reader_init(struct csv_reader *r, const char *path, const uint8_t *data, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->path = path ? path : "CSV";
	r->data = data;
	/* Blank lines at the end are not records.  Only line ends are cut:
	 * trailing spaces may be the end of an unquoted password. */
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		len--;
	r->len = len;
	r->line = 1;
	if (len >= 3 && data[0] == 0xef && data[1] == 0xbb && data[2] == 0xbf)
		r->pos = 3;
}

/* Take the character at r->pos into the current field. */
static int take(struct csv_reader *r, struct csv_record *rec, size_t col, struct err *err)
{
	const uint8_t *p = r->data + r->pos;
	size_t n = 1;
	if (*p == 0) {
		rfail(r, err, r->line, col, "NUL byte (byte offset %zu in the file)", r->pos);
		err_hint(err, "save the file as UTF-8 text (UTF-16 is not supported)");
		return -1;
	}
	if (*p >= 0x80 && !(n = utf8_seq(p, r->len - r->pos))) {
		rfail(r, err, r->line, col, "invalid UTF-8 (byte offset %zu in the file)", r->pos);
		err_hint(err, "save the file as UTF-8 (in Excel: \"CSV UTF-8\")");
		return -1;
	}
	/* Take a run of plain ASCII at once; stop where a caller must look
	 * (quote, separator, line end) so its rules stay in one place. */
	if (*p < 0x80)
		while (r->pos + n < r->len && p[n] && p[n] < 0x80 && p[n] != '"' && p[n] != ',' &&
		       p[n] != '\n' && p[n] != '\r')
			n++;
	if (rec->len - rec->start[rec->count] + n > CSV_MAX_FIELD) {
		rfail(r, err, r->line, col, "field is longer than 64 KiB (the limit)");
		return -1;
	}
	rec_append(rec, p, n);
	r->pos += n;
	return 0;
}

static int quoted_field(struct csv_reader *r, struct csv_record *rec, size_t col, struct err *err)
{
	static const uint8_t quote = '"';
	const uint8_t *d = r->data;
	unsigned start_line = r->line;
	r->pos++; /* the opening quote */
	for (;;) {
		if (r->pos >= r->len) {
			rfail(r, err, start_line, col,
			      "unterminated quoted field (it starts on line %u and never ends)",
			      start_line);
			err_hint(err, "add the closing quote; a quote inside a quoted field is "
			              "written as two (\"\")");
			return -1;
		}
		if (d[r->pos] == '"') {
			if (r->pos + 1 < r->len && d[r->pos + 1] == '"') {
				if (rec->len - rec->start[rec->count] + 1 > CSV_MAX_FIELD)
					return rfail(r, err, r->line, col,
					             "field is longer than 64 KiB (the limit)");
				rec_append(rec, &quote, 1);
				r->pos += 2;
				continue;
			}
			r->pos++;
			break;
		}
		if (d[r->pos] == '\n')
			r->line++;
		if (take(r, rec, col, err) < 0)
			return -1;
	}
	if (r->pos < r->len) {
		uint8_t c = d[r->pos];
		if (c != ',' && c != '\n' &&
		    !(c == '\r' && r->pos + 1 < r->len && d[r->pos + 1] == '\n')) {
			rfail(r, err, r->line, col, "text after the closing quote");
			err_hint(err, "a quote inside a quoted field is written as two (\"\")");
			return -1;
		}
	}
	return 0;
}

static int plain_field(struct csv_reader *r, struct csv_record *rec, size_t col, struct err *err)
{
	const uint8_t *d = r->data;
	while (r->pos < r->len) {
		uint8_t c = d[r->pos];
		if (c == ',' || c == '\n')
			break;
		if (c == '\r') {
			if (r->pos + 1 < r->len && d[r->pos + 1] == '\n')
				break;
			rfail(r, err, r->line, col, "carriage return in the middle of a line");
			err_hint(err, "end lines with CRLF or LF");
			return -1;
		}
		if (c == '"') {
			rfail(r, err, r->line, col, "quote inside an unquoted field");
			err_hint(err,
			         "put the whole field in double quotes and write each quote in it "
			         "as two (\"\")");
			return -1;
		}
		if (take(r, rec, col, err) < 0)
			return -1;
	}
	return 0;
}

int csv_reader_next(struct csv_reader *r, struct csv_record *rec, struct err *err)
{
	rec_reset(rec);
	if (r->pos >= r->len)
		return 0;
	rec->line = r->line;
	for (;;) {
		size_t col = rec->count + 1;
		if (rec->count >= CSV_MAX_FIELDS)
			return rfail(r, err, rec->line, 0, "more than %u fields on line %u",
			             CSV_MAX_FIELDS, rec->line);
		rec_begin_field(rec);
		int rc = r->pos < r->len && r->data[r->pos] == '"' ? quoted_field(r, rec, col, err)
		                                                   : plain_field(r, rec, col, err);
		if (rc < 0) {
			rec_reset(rec);
			return -1;
		}
		rec_end_field(rec);
		if (r->pos >= r->len)
			return 1;
		if (r->data[r->pos] == ',') {
			r->pos++;
			continue;
		}
		/* a line end: CRLF or LF (the field parsers checked which) */
		if (r->data[r->pos] == '\r')
			r->pos++;
		r->pos++;
		r->line++;
		return 1;
	}
}

/* ---- users ---- */

enum col { COL_EMAIL, COL_USER, COL_PASSWORD, COL_ROOT, COL_TUSER, COL_TPASS, NCOLS };

static const char *const col_names[NCOLS] = {
    "EmailAddress", "UserName", "Password", "UserRoot", "TargetUserName", "TargetPassword",
};

#define KNOWN_COLUMNS "EmailAddress, UserName, Password, UserRoot, TargetUserName, TargetPassword"

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* ASCII-only case folding: a non-ASCII byte matches only itself. */
static int ascii_casecmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		int x = lower((unsigned char)*a), y = lower((unsigned char)*b);
		if (x != y || !x)
			return x - y;
	}
}

static bool name_is(const char *s, size_t n, const char *name)
{
	if (strlen(name) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)s[i]) != lower((unsigned char)name[i]))
			return false;
	return true;
}

/* Map the header's fields to columns: field_col[i] is the column of field
 * i, idx[c] the field of column c or -1. */
static int read_header(const char *path, const struct csv_record *rec, int field_col[NCOLS],
                       int idx[NCOLS], struct err *err)
{
	char show[80];
	for (int c = 0; c < NCOLS; c++)
		idx[c] = -1;
	if (rec->count == 1 && rec->flen[0] == 0) {
		fail(err, path, rec->line, 0, NULL,
		     "line %u is blank; the first line must be the header", rec->line);
		err_hint(err, "start the file with EmailAddress,UserName,Password");
		return -1;
	}
	for (size_t i = 0; i < rec->count; i++) {
		size_t n;
		const char *s = csv_record_field(rec, i, &n);
		while (n > 0 && is_space(*s))
			s++, n--;
		while (n > 0 && is_space(s[n - 1]))
			n--;
		if (n == 0) {
			fail(err, path, rec->line, i + 1, NULL, "empty column name (known: %s)",
			     KNOWN_COLUMNS);
			return -1;
		}
		int c;
		for (c = 0; c < NCOLS; c++)
			if (name_is(s, n, col_names[c]))
				break;
		if (c == NCOLS) {
			char *name = xstrndup(s, n);
			fail(err, path, rec->line, i + 1, NULL, "unknown column \"%s\" (known: %s)",
			     shown(name, show), KNOWN_COLUMNS);
			if (memchr(s, '@', n))
				err_hint(err, "the first line must be the header, e.g. "
				              "EmailAddress,UserName,Password");
			free(name);
			return -1;
		}
		if (idx[c] >= 0) {
			char *name = xstrndup(s, n);
			fail(err, path, rec->line, i + 1, NULL,
			     "duplicate column \"%s\" (column %d is %s too)", shown(name, show),
			     idx[c] + 1, col_names[c]);
			free(name);
			return -1;
		}
		/* six known names, none twice: i < NCOLS here */
		idx[c] = (int)i;
		field_col[i] = c;
	}
	char missing[128] = "";
	int nmissing = 0;
	for (int c = COL_EMAIL; c <= COL_PASSWORD; c++) {
		if (idx[c] >= 0)
			continue;
		size_t k = strlen(missing);
		snprintf(missing + k, sizeof(missing) - k, "%s%s", nmissing ? ", " : "",
		         col_names[c]);
		nmissing++;
	}
	if (nmissing) {
		fail(err, path, rec->line, 0, NULL,
		     "missing column%s %s (required: EmailAddress, "
		     "UserName, Password)",
		     nmissing > 1 ? "s" : "", missing);
		return -1;
	}
	return 0;
}

/* Why s is not an address we accept, or NULL.  Reasonable, not RFC 5321:
 * local@domain, one @, no spaces or specials, domain labels of letters,
 * digits, hyphens or non-ASCII (IDN), a single label allowed. */
static const char *email_problem(const char *s)
{
	static const char specials[] = "\"(),:;<>[\\]";
	const char *at = strchr(s, '@');
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == ' ' || c == '\t')
			return "it contains a space";
		if (c < 0x20 || c == 0x7f)
			return "it contains a control character";
		if (strchr(specials, c))
			return "it contains a character not allowed in an address";
	}
	if (!at)
		return "no @";
	if (strchr(at + 1, '@'))
		return "more than one @";
	if (at == s)
		return "nothing before the @";
	if (!at[1])
		return "nothing after the @";
	if (at - s > 64 || n > 254)
		return "too long";
	const char *label = at + 1;
	for (const char *p = at + 1;; p++) {
		if (*p == '.' || !*p) {
			if (p == label)
				return "the domain has an empty part";
			if (*label == '-' || p[-1] == '-')
				return "a domain part starts or ends with -";
			if (!*p)
				break;
			label = p + 1;
			continue;
		}
		unsigned char c = (unsigned char)*p;
		if (!(c >= 0x80 || c == '-' || (c >= '0' && c <= '9') ||
		      (lower(c) >= 'a' && lower(c) <= 'z')))
			return "the domain contains a character not allowed in a host name";
	}
	return NULL;
}

/* A login name: not empty, no control characters (they cannot be sent
 * to a server) and no spaces at either end (almost surely a stray space
 * after a comma; we never trim, so say so).  0 or -1. */
static int check_login(const char *path, unsigned line, size_t col, const char *name,
                       const char *what, const char *s, struct err *err)
{
	char show[80];
	size_t n = strlen(s);
	if (n == 0)
		return fail(err, path, line, col, name, "empty %s", what);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return fail(err, path, line, col, name,
			            "%s \"%s\" contains a control character", what, shown(s, show));
	}
	if (is_space(s[0]) || is_space(s[n - 1])) {
		fail(err, path, line, col, name, "%s \"%s\" starts or ends with a space", what,
		     shown(s, show));
		err_hint(err, "values are used exactly as written; remove the space");
		return -1;
	}
	return 0;
}

struct key {
	const char *key;
	unsigned line;
	size_t col;
	const char *name;
};

static int key_cmp(const void *a, const void *b)
{
	const struct key *x = a, *y = b;
	int c = ascii_casecmp(x->key, y->key);
	if (c)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* The first line (in file order) whose key an earlier line has too. */
static int no_duplicates(const char *path, struct key *keys, size_t n, const char *what,
                         struct err *err)
{
	char show[80];
	const struct key *dup = NULL, *first = NULL;
	qsort(keys, n, sizeof(*keys), key_cmp);
	for (size_t i = 1; i < n; i++) {
		if (ascii_casecmp(keys[i - 1].key, keys[i].key))
			continue;
		size_t g = i - 1; /* keys[g] is the group's first line, keys[i] its second */
		while (g > 0 && !ascii_casecmp(keys[g - 1].key, keys[i].key))
			g--;
		if (!dup || keys[i].line < dup->line) {
			dup = &keys[i];
			first = &keys[g];
		}
		while (i + 1 < n && !ascii_casecmp(keys[i + 1].key, keys[i].key))
			i++;
	}
	if (!dup)
		return 0;
	fail(err, path, dup->line, dup->col, dup->name, "duplicate %s \"%s\" (line %u has it too)",
	     what, shown(dup->key, show), first->line);
	err_hint(err, "each target mailbox may appear only once in a batch");
	return -1;
}

static char *opt_dup(const char *s, size_t n)
{
	return n ? xstrndup(s, n) : NULL;
}

static int read_row(const char *path, const struct csv_record *rec, const int idx[NCOLS],
                    const struct csv_rules *rules, struct csv_user *u, struct err *err)
{
	char show[80];
	const char *f[NCOLS];
	size_t len[NCOLS];
	for (int c = 0; c < NCOLS; c++) {
		f[c] = idx[c] >= 0 ? csv_record_field(rec, (size_t)idx[c], &len[c]) : "";
		if (idx[c] < 0)
			len[c] = 0;
	}
#define AT(c) path, rec->line, (size_t)idx[c] + 1, col_names[c]
	const char *why;
	if (!len[COL_EMAIL])
		return fail(err, AT(COL_EMAIL), "empty email address");
	if ((why = email_problem(f[COL_EMAIL]))) {
		fail(err, AT(COL_EMAIL), "not an email address: \"%s\" (%s)",
		     shown(f[COL_EMAIL], show), why);
		err_hint(err, "EmailAddress is the target mailbox, like alice@example.org");
		return -1;
	}
	if (check_login(AT(COL_USER), "user name", f[COL_USER], err) < 0) {
		if (!err->hint[0])
			err_hint(err, "UserName is the login on the source server");
		return -1;
	}
	if (!len[COL_PASSWORD] && !rules->source_password_optional) {
		fail(err, AT(COL_PASSWORD), "empty password");
		err_hint(err, "give the source password, or use --source-admin");
		return -1;
	}
	if (len[COL_TUSER] && check_login(AT(COL_TUSER), "target user name", f[COL_TUSER], err) < 0)
		return -1;
	if (len[COL_TUSER] && !len[COL_TPASS] && !rules->target_password_optional) {
		if (idx[COL_TPASS] < 0)
			fail(err, AT(COL_TUSER),
			     "TargetUserName is set but there is no TargetPassword column");
		else
			fail(err, AT(COL_TPASS), "empty target password (TargetUserName is set)");
		err_hint(err, "give the target password, or use --target-admin");
		return -1;
	}
#undef AT
	u->email = xstrndup(f[COL_EMAIL], len[COL_EMAIL]);
	u->user = xstrndup(f[COL_USER], len[COL_USER]);
	u->password = xstrndup(f[COL_PASSWORD], len[COL_PASSWORD]);
	u->user_root = opt_dup(f[COL_ROOT], len[COL_ROOT]);
	u->target_user = opt_dup(f[COL_TUSER], len[COL_TUSER]);
	u->target_password = opt_dup(f[COL_TPASS], len[COL_TPASS]);
	u->line = rec->line;
	return 0;
}

static int check_targets(const char *path, const struct csv_users *out, const int idx[NCOLS],
                         struct err *err)
{
	struct key *keys = xcalloc(out->count, sizeof(*keys));
	int rc = 0;
	/* the same mailbox twice, by address ... */
	for (size_t i = 0; i < out->count; i++)
		keys[i] = (struct key){out->items[i].email, out->items[i].line,
		                       (size_t)idx[COL_EMAIL] + 1, col_names[COL_EMAIL]};
	if (no_duplicates(path, keys, out->count, "target mailbox", err) < 0)
		rc = -1;
	/* ... or by the target login, which is the address unless given */
	if (!rc && idx[COL_TUSER] >= 0) {
		for (size_t i = 0; i < out->count; i++) {
			const struct csv_user *u = &out->items[i];
			int c = u->target_user ? COL_TUSER : COL_EMAIL;
			keys[i] = (struct key){u->target_user ? u->target_user : u->email, u->line,
			                       (size_t)idx[c] + 1, col_names[c]};
		}
		if (no_duplicates(path, keys, out->count, "target user", err) < 0)
			rc = -1;
	}
	free(keys);
	return rc;
}

int csv_parse_users(const char *path_for_messages, const uint8_t *data, size_t len,
                    const struct csv_rules *rules, struct csv_users *out, struct err *err)
{
	static const struct csv_rules strict = {false, false};
	const char *path = path_for_messages ? path_for_messages : "CSV";
	struct csv_reader r;
	struct csv_record rec = {0};
	int field_col[NCOLS], idx[NCOLS];
	const char *names[NCOLS];
	size_t alloc = 0;
	int rc;

	out->items = NULL;
	out->count = 0;
	if (!rules)
		rules = &strict;
	if (len > CSV_MAX_FILE)
		return fail(err, path, 0, 0, NULL, "the file is larger than 64 MiB (the limit)");

	csv_reader_init(&r, path, data, len);
	rc = csv_reader_next(&r, &rec, err);
	if (rc == 0) {
		fail(err, path, 0, 0, NULL, "no users: the file is empty");
		err_hint(err, "the first line is the header: EmailAddress,UserName,Password");
		goto fail;
	}
	if (rc < 0 || read_header(path, &rec, field_col, idx, err) < 0)
		goto fail;
	size_t nfields = rec.count;
	for (size_t i = 0; i < nfields; i++)
		names[i] = col_names[field_col[i]];
	r.names = names;
	r.nnames = nfields;

	while ((rc = csv_reader_next(&r, &rec, err)) > 0) {
		if (rec.count != nfields) {
			fail(err, path, rec.line, 0, NULL,
			     "line %u has %zu field%s, the header has %zu", rec.line, rec.count,
			     rec.count == 1 ? "" : "s", nfields);
			if (rec.count == 1 && rec.flen[0] == 0)
				err_hint(err, "line %u is blank; remove it", rec.line);
			else
				err_hint(err, "a value with a comma must be in double quotes");
			goto fail;
		}
		if (out->count == CSV_MAX_USERS) {
			fail(err, path, rec.line, 0, NULL, "more than %u users (the limit)",
			     CSV_MAX_USERS);
			err_hint(err, "split the users over several batches");
			goto fail;
		}
		if (out->count == alloc) {
			alloc = alloc ? alloc * 2 : 16;
			out->items = xrealloc(out->items, alloc * sizeof(*out->items));
		}
		if (read_row(path, &rec, idx, rules, &out->items[out->count], err) < 0)
			goto fail;
		out->count++;
	}
	if (rc < 0)
		goto fail;
	if (out->count == 0) {
		fail(err, path, 0, 0, NULL, "no users: the file has only the header line");
		goto fail;
	}
	if (check_targets(path, out, idx, err) < 0)
		goto fail;
	csv_record_release(&rec);
	return 0;

fail:
	csv_record_release(&rec);
	csv_users_release(out);
	return -1;
}

void csv_users_release(struct csv_users *u)
{
	for (size_t i = 0; i < u->count; i++) {
		struct csv_user *x = &u->items[i];
		secret_free(&x->password);
		secret_free(&x->target_password);
		free(x->email);
		free(x->user);
		free(x->user_root);
		free(x->target_user);
	}
	free(u->items);
	u->items = NULL;
	u->count = 0;
}

int csv_read_users(const char *path, const struct csv_rules *rules, struct csv_users *out,
                   struct err *err)
{
	char ebuf[128];
	struct stat st;
	uint8_t *data = NULL;
	size_t len = 0, alloc;
	int rc = -1;

	out->items = NULL;
	out->count = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fail(err, path, 0, 0, NULL, "cannot open: %s",
		     strerror_r(errno, ebuf, sizeof(ebuf)));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		fail(err, path, 0, 0, NULL, "cannot read: %s",
		     strerror_r(errno, ebuf, sizeof(ebuf)));
		goto out;
	}
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > CSV_MAX_FILE) {
		fail(err, path, 0, 0, NULL, "the file is larger than 64 MiB (the limit)");
		goto out;
	}
	/* Read to the end rather than trusting st_size: the file may grow
	 * or be a pipe.  One byte past the cap tells "too large" apart. */
	alloc = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 64 * 1024;
	data = xmalloc(alloc);
	for (;;) {
		if (len == alloc) {
			size_t want = alloc * 2 > (size_t)CSV_MAX_FILE + 1
			                  ? (size_t)CSV_MAX_FILE + 1
			                  : alloc * 2;
			if (want <= alloc) {
				fail(err, path, 0, 0, NULL,
				     "the file is larger than 64 MiB (the limit)");
				goto out;
			}
			data = grow_wiped(data, len, want);
			alloc = want;
		}
		ssize_t n = read(fd, data + len, alloc - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail(err, path, 0, 0, NULL, "cannot read: %s",
			     strerror_r(errno, ebuf, sizeof(ebuf)));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	rc = csv_parse_users(path, data, len, rules, out, err);
out:
	if (data) {
		mem_wipe(data, len);
		free(data);
	}
	close(fd);
	return rc;
}
