/* verify.c - compare two mailboxes.  See verify.h for the contract.
 *
 * Per folder:
 *   1. SELECT the target (for its PERMANENTFLAGS), EXAMINE the source.
 *   2. One UID FETCH 1:* on each side, both in flight at once; every
 *      response becomes a 40-byte entry (key, date, flags hash, UID).
 *   3. Sort both arrays by (key, flags hash, date, UID) and walk them
 *      together, one key at a time: exact pairs first, then the remaining
 *      pairs are mismatches, then what is left is missing or extra.
 *   4. Fetch subject/date/flags/size again for the first max_details
 *      differences only, and report them.
 */
#include "engine/verify.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/fingerprint.h"
#include "engine/mailbox_list.h"
#include "util/buf.h"
#include "util/mem.h"

#define DEFAULT_DETAILS 50
#define DETAIL_CHUNK 256    /* UIDs per detail FETCH command */
#define MAX_FLAG_WORDS 4096 /* a server sending more is truncated, not trusted */
#define DATE_UNKNOWN INT64_MIN

enum entry_mark {
	ENT_MATCHED = 1 << 0,
	ENT_OVERSIZE = 1 << 1, /* larger than max_message_size (source) */
};

/* One message, compactly: 40 bytes whatever its size or header. */
struct entry {
	uint8_t key[16];
	int64_t date;   /* INTERNALDATE as an instant, or DATE_UNKNOWN */
	uint64_t fhash; /* of the normalised flag set */
	uint32_t uid;
	uint32_t mark; /* enum entry_mark */
};

/* One side's scan of a folder: the fetch handler context. */
struct scan {
	enum side side;
	bool deep;
	uint64_t max_size;                  /* source only; 0 = none */
	const struct imap_select_info *tgt; /* source only: filter keywords */
	struct buf *dropped;                /* keywords the target can't store */
	struct entry *v;
	size_t n, alloc;
	/* deep: the body streamed last, hashed */
	EVP_MD_CTX *md;
	bool have_body;
	uint32_t body_uid;
	uint8_t body_key[16];
};

enum diff_kind { D_MISSING, D_EXTRA, D_MISMATCH, D_SKIPPED };
enum { WHAT_FLAGS = 1 << 0, WHAT_DATE = 1 << 1 };

struct diff {
	enum diff_kind kind;
	uint32_t suid, tuid;
	unsigned what;
};

/* Subject, date, flags, size of one message, fetched for reporting. */
struct detail {
	uint32_t uid;
	bool found;
	uint64_t size;
	char *flags, *date, *subject;
};

struct details {
	struct detail *v;
	size_t n;
};

struct verify_run {
	const struct verify_opts *o;
	struct verify_stats *stats;
	struct imap_client *src, *tgt;
	unsigned max_details;
};

/* ---------- events ---------- */

static void emit(struct verify_run *run, const struct verify_event *ev)
{
	if (run->o->event)
		run->o->event(run->o->event_ctx, ev);
}

static void note(struct verify_run *run, enum verify_event_type type,
                 const struct folder_plan_entry *e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void note(struct verify_run *run, enum verify_event_type type,
                 const struct folder_plan_entry *e, const char *fmt, ...)
{
	char text[1400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	struct verify_event ev = {
	    .type = type, .folder = e->source_name, .target_folder = e->target_name, .text = text};
	emit(run, &ev);
}

/* ---------- dates ---------- */

static int month_index(const char *m)
{
	static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	for (int i = 0; i < 12; i++)
		if (strncasecmp(m, names + 3 * i, 3) == 0)
			return i;
	return -1;
}

static bool leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Leap days in years [1, y) for y >= 1. */
static int64_t leaps_before(int64_t y)
{
	return (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400;
}

/* Days from 1970-01-01 to y-m-d (m 0..11, y 0..9999).  Shifted by 400
 * years (one leap cycle) so the divisions never see a negative number. */
static int64_t days_since_epoch(int64_t y, int m, int d)
{
	static const int before[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
	return 365 * (y - 1970) + leaps_before(y + 400) - leaps_before(1970 + 400) + before[m] +
	       (m > 1 && leap(y)) + d - 1;
}

static bool digits(const char *s, int n, int *v_r)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*v_r = v;
	return true;
}

int verify_parse_date(const char *s, int64_t *t_r)
{
	/* date-day-fixed "-" date-month "-" date-year SP time SP zone */
	int day, year, hh, mm, ss, zh, zm;
	if (!s)
		return -1;
	if (s[0] == ' ' && isdigit((unsigned char)s[1]))
		s++;
	if (digits(s, 2, &day))
		s += 2;
	else if (digits(s, 1, &day))
		s += 1;
	else
		return -1;
	if (*s++ != '-')
		return -1;
	int mon = month_index(s);
	if (mon < 0 || s[3] != '-')
		return -1;
	s += 4;
	if (!digits(s, 4, &year) || s[4] != ' ')
		return -1;
	s += 5;
	if (!digits(s, 2, &hh) || s[2] != ':' || !digits(s + 3, 2, &mm) || s[5] != ':' ||
	    !digits(s + 6, 2, &ss) || s[8] != ' ')
		return -1;
	s += 9;
	if ((s[0] != '+' && s[0] != '-') || !digits(s + 1, 2, &zh) || !digits(s + 3, 2, &zm) ||
	    s[5] != '\0')
		return -1;
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (day < 1 || day > mdays[mon] || (mon == 1 && day == 29 && !leap(year)) || hh > 23 ||
	    mm > 59 || ss > 60 || zm > 59)
		return -1;
	int64_t t = days_since_epoch(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss;
	int64_t zone = zh * 3600 + zm * 60;
	/* local time = UTC + zone */
	*t_r = s[0] == '+' ? t - zone : t + zone;
	return 0;
}

/* ---------- flags ---------- */

static bool word_in(const char *list, const char *w, size_t wl)
{
	for (const char *p = list; *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == wl && wl && strncasecmp(p, w, wl) == 0)
			return true;
		p = e;
	}
	return false;
}

static int cmp_cstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* FNV-1a over the sorted, case-folded, de-duplicated flag words, without
 * \Recent.  With tgt (source side), keywords the target folder cannot
 * store are left out and listed in dropped. */
static uint64_t flags_hash(const char *flags, const struct imap_select_info *tgt,
                           struct buf *dropped)
{
	char *copy = xstrdup(flags ? flags : "");
	char *words[MAX_FLAG_WORDS];
	size_t n = 0;
	for (char *save = NULL, *w = strtok_r(copy, " ", &save); w && n < MAX_FLAG_WORDS;
	     w = strtok_r(NULL, " ", &save)) {
		size_t wl = strlen(w);
		if (strcasecmp(w, "\\Recent") == 0)
			continue;
		if (tgt && w[0] != '\\' && !tgt->keywords_allowed && tgt->permanentflags[0] &&
		    !word_in(tgt->permanentflags, w, wl)) {
			if (!word_in(buf_cstr(dropped), w, wl) &&
			    dropped->len + wl + 1 < (dropped->max ? dropped->max : SIZE_MAX)) {
				if (dropped->len)
					buf_putc(dropped, ' ');
				buf_puts(dropped, w);
			}
			continue;
		}
		for (char *p = w; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		words[n++] = w;
	}
	qsort(words, n, sizeof(words[0]), cmp_cstr);
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++) {
		if (i && strcmp(words[i], words[i - 1]) == 0)
			continue;
		for (const char *p = words[i]; *p; p++) {
			h ^= (unsigned char)*p;
			h *= 0x100000001b3ull;
		}
		h ^= ' ';
		h *= 0x100000001b3ull;
	}
	free(copy);
	return h;
}

/* ---------- scanning one side of a folder ---------- */

static int hexval(char c)
{
	return c >= 'a' ? c - 'a' + 10 : c - '0';
}

static int scan_message(void *ctx, const struct imap_fetch_msg *m, struct err *err)
{
	struct scan *sc = ctx;
	/* Only responses to our FETCH carry the headers (or the body):
	 * unsolicited flag updates with a UID are not messages. */
	if (sc->deep ? !m->has_body : !m->headers)
		return 0;
	struct entry e = {.uid = m->uid};
	if (sc->deep) {
		if (!sc->have_body || (sc->body_uid && sc->body_uid != m->uid))
			return err_set(err, ERR_FOLDER, "the %s server's body for UID %u got lost",
			               side_name(sc->side), m->uid);
		memcpy(e.key, sc->body_key, sizeof(e.key));
		sc->have_body = false;
	} else {
		char fp[STATE_FP_LEN + 1];
		fingerprint_compute(m->headers, m->headers_len, m->size, fp);
		for (size_t i = 0; i < sizeof(e.key); i++)
			e.key[i] = (uint8_t)(hexval(fp[2 * i]) << 4 | hexval(fp[2 * i + 1]));
	}
	if (verify_parse_date(m->internaldate, &e.date) < 0)
		e.date = DATE_UNKNOWN;
	e.fhash = flags_hash(m->flags, sc->tgt, sc->dropped);
	if (sc->max_size && m->size > sc->max_size)
		e.mark |= ENT_OVERSIZE;
	if (sc->n == sc->alloc) {
		sc->alloc = sc->alloc ? sc->alloc * 2 : 1024;
		sc->v = xrealloc(sc->v, sc->alloc * sizeof(*sc->v));
	}
	sc->v[sc->n++] = e;
	return 0;
}

static int scan_body_begin(void *ctx, uint32_t uid, uint64_t size, struct err *err)
{
	struct scan *sc = ctx;
	(void)size;
	sc->have_body = false;
	sc->body_uid = uid;
	if (EVP_DigestInit_ex(sc->md, EVP_sha256(), NULL) != 1)
		return err_set(err, ERR_INTERNAL, "SHA-256 unavailable");
	return 0;
}

static int scan_body_data(void *ctx, const uint8_t *data, size_t len, struct err *err)
{
	struct scan *sc = ctx;
	if (EVP_DigestUpdate(sc->md, data, len) != 1)
		return err_set(err, ERR_INTERNAL, "SHA-256 failed");
	return 0;
}

static int scan_body_end(void *ctx, struct err *err)
{
	struct scan *sc = ctx;
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	if (EVP_DigestFinal_ex(sc->md, digest, &len) != 1 || len < sizeof(sc->body_key))
		return err_set(err, ERR_INTERNAL, "SHA-256 failed");
	memcpy(sc->body_key, digest, sizeof(sc->body_key));
	sc->have_body = true;
	return 0;
}

static int scan_send(struct imap_client *c, struct scan *sc, uint32_t exists, struct err *err)
{
	struct imap_fetch_handler h = {.message = scan_message, .ctx = sc};
	unsigned items = IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_SIZE;
	if (sc->deep) {
		items |= IMAP_FETCH_BODY;
		h.body_begin = scan_body_begin;
		h.body_data = scan_body_data;
		h.body_end = scan_body_end;
	} else {
		items |= IMAP_FETCH_HEADERS;
	}
	if (exists == 0)
		return 0;
	/* room for what SELECT announced, but not blindly: EXISTS is the
	 * server's word, the array grows as responses really arrive */
	sc->alloc = (exists < (1u << 20) ? exists : (1u << 20)) + 16;
	sc->v = xrealloc(sc->v, sc->alloc * sizeof(*sc->v));
	return imap_client_fetch_send(c, "1:*", items, FINGERPRINT_FIELDS, 0, &h, err);
}

static int cmp_entry(const void *pa, const void *pb)
{
	const struct entry *a = pa, *b = pb;
	int c = memcmp(a->key, b->key, sizeof(a->key));
	if (c)
		return c;
	if (a->fhash != b->fhash)
		return a->fhash < b->fhash ? -1 : 1;
	if (a->date != b->date)
		return a->date < b->date ? -1 : 1;
	return a->uid < b->uid ? -1 : a->uid > b->uid;
}

static int cmp_entry_uid(const void *pa, const void *pb)
{
	const struct entry *a = pa, *b = pb;
	return a->uid < b->uid ? -1 : a->uid > b->uid;
}

/* Sort for matching, dropping a second entry for the same UID (a server
 * that repeats a FETCH response must not make one message two). */
static void scan_sort(struct scan *sc)
{
	if (sc->n == 0)
		return;
	qsort(sc->v, sc->n, sizeof(*sc->v), cmp_entry_uid);
	size_t keep = 0;
	for (size_t i = 0; i < sc->n; i++)
		if (keep == 0 || sc->v[keep - 1].uid != sc->v[i].uid)
			sc->v[keep++] = sc->v[i];
	sc->n = keep;
	qsort(sc->v, sc->n, sizeof(*sc->v), cmp_entry);
}

/* ---------- matching ---------- */

struct match {
	struct verify_run *run;
	struct diff *diffs;
	size_t n_diffs, n_skipped_listed;
	uint64_t missing, extra, mismatched, skipped;
};

static void record(struct match *mt, enum diff_kind kind, uint32_t suid, uint32_t tuid,
                   unsigned what)
{
	unsigned cap = mt->run->max_details;
	switch (kind) {
	case D_MISSING:
		mt->missing++;
		break;
	case D_EXTRA:
		mt->extra++;
		break;
	case D_MISMATCH:
		mt->mismatched++;
		break;
	case D_SKIPPED:
		mt->skipped++;
		break;
	}
	/* differences and skipped messages are listed up to cap each */
	size_t listed_diffs = mt->n_diffs - mt->n_skipped_listed;
	if (kind == D_SKIPPED ? mt->n_skipped_listed >= cap : listed_diffs >= cap)
		return;
	struct diff *d = &mt->diffs[mt->n_diffs++];
	d->kind = kind;
	d->suid = suid;
	d->tuid = tuid;
	d->what = what;
	if (kind == D_SKIPPED)
		mt->n_skipped_listed++;
}

static void unmatched_source(struct match *mt, const struct entry *s)
{
	record(mt, (s->mark & ENT_OVERSIZE) ? D_SKIPPED : D_MISSING, s->uid, 0, 0);
}

/* One key: s[0..ns) and t[0..nt), each sorted by (fhash, date, uid). */
static void match_group(struct match *mt, struct entry *s, size_t ns, struct entry *t, size_t nt)
{
	size_t a = 0, b = 0;
	while (a < ns && b < nt) {
		if (s[a].fhash == t[b].fhash && s[a].date == t[b].date) {
			s[a++].mark |= ENT_MATCHED;
			t[b++].mark |= ENT_MATCHED;
		} else if (s[a].fhash < t[b].fhash ||
		           (s[a].fhash == t[b].fhash && s[a].date < t[b].date)) {
			a++;
		} else {
			b++;
		}
	}
	a = b = 0;
	for (;;) {
		while (a < ns && (s[a].mark & ENT_MATCHED))
			a++;
		while (b < nt && (t[b].mark & ENT_MATCHED))
			b++;
		if (a == ns || b == nt)
			break;
		unsigned what = (s[a].fhash != t[b].fhash ? WHAT_FLAGS : 0) |
		                (s[a].date != t[b].date ? WHAT_DATE : 0);
		record(mt, D_MISMATCH, s[a].uid, t[b].uid, what);
		s[a++].mark |= ENT_MATCHED;
		t[b++].mark |= ENT_MATCHED;
	}
	for (; a < ns; a++)
		if (!(s[a].mark & ENT_MATCHED))
			unmatched_source(mt, &s[a]);
	for (; b < nt; b++)
		if (!(t[b].mark & ENT_MATCHED))
			record(mt, D_EXTRA, 0, t[b].uid, 0);
}

static size_t key_run(const struct entry *v, size_t i, size_t n)
{
	size_t e = i + 1;
	while (e < n && memcmp(v[e].key, v[i].key, sizeof(v[i].key)) == 0)
		e++;
	return e;
}

static void match_all(struct match *mt, struct scan *s, struct scan *t)
{
	size_t i = 0, j = 0;
	while (i < s->n || j < t->n) {
		int c = i == s->n   ? 1
		        : j == t->n ? -1
		                    : memcmp(s->v[i].key, t->v[j].key, sizeof(s->v[i].key));
		size_t ie = c <= 0 ? key_run(s->v, i, s->n) : i;
		size_t je = c >= 0 ? key_run(t->v, j, t->n) : j;
		match_group(mt, s->v + i, ie - i, t->v + j, je - j);
		i = ie;
		j = je;
	}
}

/* ---------- details for the reported differences ---------- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static struct detail *detail_find(struct details *d, uint32_t uid)
{
	size_t lo = 0, hi = d->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (d->v[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < d->n && d->v[lo].uid == uid ? &d->v[lo] : NULL;
}

static int detail_message(void *ctx, const struct imap_fetch_msg *m, struct err *err)
{
	struct details *d = ctx;
	(void)err;
	struct detail *x = detail_find(d, m->uid);
	if (!x || x->found || !m->headers)
		return 0;
	struct buf subject = BUF_INIT(1024);
	header_field_value(m->headers, m->headers_len, "Subject", &subject);
	x->found = true;
	x->size = m->size;
	x->flags = xstrdup(m->flags ? m->flags : "");
	x->date = m->internaldate ? xstrdup(m->internaldate) : NULL;
	x->subject = buf_detach(&subject, NULL);
	return 0;
}

static void details_release(struct details *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].flags);
		free(d->v[i].date);
		free(d->v[i].subject);
	}
	free(d->v);
	d->v = NULL;
	d->n = 0;
}

/* Make d hold the distinct uids[0..n) (sorted here) and send the FETCHes. */
static int details_send(struct imap_client *c, struct details *d, uint32_t *uids, size_t n,
                        struct err *err)
{
	qsort(uids, n, sizeof(*uids), cmp_u32);
	d->v = xcalloc(n ? n : 1, sizeof(*d->v));
	d->n = 0;
	for (size_t i = 0; i < n; i++)
		if (uids[i] && (d->n == 0 || d->v[d->n - 1].uid != uids[i]))
			d->v[d->n++].uid = uids[i];
	struct imap_fetch_handler h = {.message = detail_message, .ctx = d};
	unsigned items =
	    IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_SIZE | IMAP_FETCH_HEADERS;
	struct buf set = BUF_INIT(0);
	int r = 0;
	for (size_t i = 0; i < d->n && r == 0; i++) {
		if (set.len)
			buf_putc(&set, ',');
		buf_appendf(&set, "%u", d->v[i].uid);
		if ((i + 1) % DETAIL_CHUNK == 0 || i + 1 == d->n) {
			r = imap_client_fetch_send(c, buf_cstr(&set), items, "SUBJECT", 0, &h, err);
			buf_reset(&set);
		}
	}
	buf_release(&set);
	return r;
}

static int cmp_diff(const void *pa, const void *pb)
{
	const struct diff *a = pa, *b = pb;
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	uint32_t x = a->suid ? a->suid : a->tuid, y = b->suid ? b->suid : b->tuid;
	return x < y ? -1 : x > y;
}

static void what_text(unsigned what, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s", (what & WHAT_FLAGS) ? "flags" : "",
	         (what & WHAT_FLAGS) && (what & WHAT_DATE) ? " " : "",
	         (what & WHAT_DATE) ? "date" : "");
}

static void report_diffs(struct verify_run *run, const struct folder_plan_entry *e,
                         struct match *mt, struct details *sd, struct details *td)
{
	char why[160];
	snprintf(why, sizeof(why), "larger than --max-message-size (%llu bytes)",
	         (unsigned long long)run->o->max_message_size);
	qsort(mt->diffs, mt->n_diffs, sizeof(*mt->diffs), cmp_diff);
	for (size_t i = 0; i < mt->n_diffs; i++) {
		const struct diff *d = &mt->diffs[i];
		const struct detail *s = d->suid ? detail_find(sd, d->suid) : NULL;
		const struct detail *t = d->tuid ? detail_find(td, d->tuid) : NULL;
		/* the message the event is about: source unless extra */
		const struct detail *x = s ? s : t;
		char what[32] = "";
		struct verify_event ev = {
		    .folder = e->source_name,
		    .target_folder = e->target_name,
		    .uid = d->suid,
		    .target_uid = d->tuid,
		};
		if (x && x->found) {
			ev.size = x->size;
			ev.subject = x->subject;
		}
		if (s && s->found) {
			ev.date = s->date;
			ev.flags = s->flags;
		}
		if (t && t->found) {
			ev.target_date = t->date;
			ev.target_flags = t->flags;
		}
		switch (d->kind) {
		case D_MISSING:
			ev.type = VERIFY_EV_MISSING;
			break;
		case D_EXTRA:
			ev.type = VERIFY_EV_EXTRA;
			/* an extra message's own date is the target's */
			ev.date = ev.target_date;
			ev.flags = ev.target_flags;
			ev.target_date = ev.target_flags = NULL;
			break;
		case D_MISMATCH:
			ev.type = VERIFY_EV_MISMATCH;
			what_text(d->what, what, sizeof(what));
			ev.text = what;
			break;
		case D_SKIPPED:
			ev.type = VERIFY_EV_SKIPPED;
			ev.text = why;
			break;
		}
		emit(run, &ev);
	}
	uint64_t diffs = mt->missing + mt->extra + mt->mismatched;
	uint64_t listed = mt->n_diffs - mt->n_skipped_listed;
	if (diffs > listed)
		note(run, VERIFY_EV_NOTE, e,
		     "%llu more differences in this folder are counted but not listed",
		     (unsigned long long)(diffs - listed));
	if (mt->skipped > mt->n_skipped_listed)
		note(run, VERIFY_EV_NOTE, e,
		     "%llu more messages skipped by policy in this folder are not listed",
		     (unsigned long long)(mt->skipped - mt->n_skipped_listed));
}

/* ---------- one folder ---------- */

static int compare_folder(struct verify_run *run, const struct folder_plan_entry *e,
                          struct err *err)
{
	const struct verify_opts *o = run->o;
	struct imap_select_info sinfo, tinfo;
	struct buf dropped = BUF_INIT(2048);
	struct scan ss = {.side = SIDE_SOURCE,
	                  .deep = o->deep,
	                  .max_size = o->max_message_size,
	                  .tgt = &tinfo,
	                  .dropped = &dropped};
	struct scan ts = {.side = SIDE_TARGET, .deep = o->deep, .dropped = &dropped};
	struct match mt = {.run = run};
	struct details sd = {0}, td = {0};
	uint32_t *suids = NULL, *tuids = NULL;
	int r = -1;

	if (o->deep) {
		ss.md = EVP_MD_CTX_new();
		ts.md = EVP_MD_CTX_new();
		if (!ss.md || !ts.md) {
			err_set(err, ERR_INTERNAL, "out of memory for SHA-256");
			goto out;
		}
	}
	/* Target first: the source's flags are filtered by what it can store. */
	if (imap_client_select(run->tgt, e->target_name, false, &tinfo, err) < 0) {
		err_where(err, SIDE_TARGET, NULL, NULL, e->target_name);
		goto out;
	}
	if (imap_client_select(run->src, e->source_name, true, &sinfo, err) < 0) {
		err_where(err, SIDE_SOURCE, NULL, NULL, e->source_name);
		goto out;
	}
	if (scan_send(run->src, &ss, sinfo.exists, err) < 0 ||
	    scan_send(run->tgt, &ts, tinfo.exists, err) < 0 ||
	    imap_client_wait_all(run->src, err) < 0 || imap_client_wait_all(run->tgt, err) < 0)
		goto out;

	scan_sort(&ss);
	scan_sort(&ts);
	size_t cap = 2 * (size_t)run->max_details + 2;
	mt.diffs = xcalloc(cap, sizeof(*mt.diffs));
	match_all(&mt, &ss, &ts);

	/* details for what is listed */
	suids = xcalloc(mt.n_diffs + 1, sizeof(*suids));
	tuids = xcalloc(mt.n_diffs + 1, sizeof(*tuids));
	size_t ns = 0, nt = 0;
	for (size_t i = 0; i < mt.n_diffs; i++) {
		if (mt.diffs[i].suid)
			suids[ns++] = mt.diffs[i].suid;
		if (mt.diffs[i].tuid)
			tuids[nt++] = mt.diffs[i].tuid;
	}
	if (details_send(run->src, &sd, suids, ns, err) < 0 ||
	    details_send(run->tgt, &td, tuids, nt, err) < 0 ||
	    imap_client_wait_all(run->src, err) < 0 || imap_client_wait_all(run->tgt, err) < 0)
		goto out;
	report_diffs(run, e, &mt, &sd, &td);
	if (dropped.len)
		note(run, VERIFY_EV_NOTE, e,
		     "the target folder cannot store these keywords; they were not compared: %s",
		     buf_cstr(&dropped));

	struct verify_stats *st = run->stats;
	st->messages += ss.n;
	st->target_messages += ts.n;
	st->missing += mt.missing;
	st->extra += mt.extra;
	st->mismatched += mt.mismatched;
	st->skipped += mt.skipped;
	struct verify_event ev = {
	    .type = VERIFY_EV_FOLDER,
	    .folder = e->source_name,
	    .target_folder = e->target_name,
	    .count = ss.n,
	    .target_count = ts.n,
	    .missing = mt.missing,
	    .extra = mt.extra,
	    .mismatched = mt.mismatched,
	};
	emit(run, &ev);
	r = 0;
out:
	EVP_MD_CTX_free(ss.md);
	EVP_MD_CTX_free(ts.md);
	free(ss.v);
	free(ts.v);
	free(mt.diffs);
	free(suids);
	free(tuids);
	details_release(&sd);
	details_release(&td);
	buf_release(&dropped);
	return r;
}

/* Messages in a source folder we do not compare, for the counts. */
static int source_count(struct verify_run *run, const struct folder_plan_entry *e, uint64_t *n_r,
                        struct err *err)
{
	struct imap_select_info info;
	*n_r = 0;
	if (e->source_attrs & (FA_NOSELECT | FA_NONEXISTENT))
		return 0;
	if (imap_client_select(run->src, e->source_name, true, &info, err) < 0) {
		err_where(err, SIDE_SOURCE, NULL, NULL, e->source_name);
		return -1;
	}
	*n_r = info.exists;
	return 0;
}

/* ---------- folders ---------- */


static struct imap_client *connect_side(struct verify_run *run, enum side side,
                                        const struct imap_client_opts *co, struct err *err)
{
	struct imap_client *c = imap_client_connect(co, err);
	if (!c)
		return NULL;
	char text[512];
	snprintf(text, sizeof(text), "%s:%u as %s", co->host, (unsigned)co->port, co->user);
	struct verify_event ev = {.type = VERIFY_EV_CONNECTED, .side = side, .text = text};
	emit(run, &ev);
	return c;
}

/* A folder-level failure the run survives, or a fatal one? */
static bool fatal(struct verify_run *run, const struct err *e)
{
	return imap_client_is_dead(run->src) || imap_client_is_dead(run->tgt) ||
	       e->kind == ERR_ACCOUNT || e->kind == ERR_INTERNAL;
}

static int folder_failed(struct verify_run *run, const struct folder_plan_entry *e,
                         struct err *ferr, struct err *err)
{
	if (fatal(run, ferr)) {
		*err = *ferr;
		return -1;
	}
	char text[1200];
	note(run, VERIFY_EV_WARNING, e, "%s", err_format(ferr, text, sizeof(text)));
	run->stats->folders_failed++;
	return 0;
}

static int verify_entry(struct verify_run *run, const struct folder_plan_entry *e, struct err *err)
{
	struct verify_stats *st = run->stats;
	struct err ferr;
	uint64_t n = 0;
	err_clear(&ferr);

	switch (e->action) {
	case FP_SKIP_NONEXISTENT:
		return 0;
	case FP_SKIP_EXCLUDED: {
		if (source_count(run, e, &n, &ferr) < 0)
			return folder_failed(run, e, &ferr, err);
		st->folders_skipped++;
		st->skipped += n;
		struct verify_event ev = {.type = VERIFY_EV_SKIPPED,
		                          .folder = e->source_name,
		                          .count = n,
		                          .text = "excluded by the folder filters"};
		emit(run, &ev);
		return 0;
	}
	case FP_CONFLICT:
	case FP_COPY:
		break;
	}
	if (e->action == FP_COPY && (e->source_attrs & (FA_NOSELECT | FA_NONEXISTENT)))
		return 0;
	st->folders++;
	if (e->action == FP_COPY && e->target_exists) {
		if (compare_folder(run, e, &ferr) < 0)
			return folder_failed(run, e, &ferr, err);
		return 0;
	}
	if (source_count(run, e, &n, &ferr) < 0)
		return folder_failed(run, e, &ferr, err);
	st->folders_missing++;
	st->messages += n;
	st->missing += n;
	struct verify_event ev = {
	    .type = VERIFY_EV_FOLDER_MISSING,
	    .folder = e->source_name,
	    .target_folder = e->target_name,
	    .count = n,
	    .text = e->action == FP_CONFLICT ? (e->note ? e->note : "name conflict")
	                                     : "the target folder does not exist",
	};
	emit(run, &ev);
	return 0;
}

int verify_run(const struct verify_opts *o, struct verify_stats *stats_r, struct err *err)
{
	struct verify_run run = {.o = o,
	                         .stats = stats_r,
	                         .max_details = o->max_details ? o->max_details : DEFAULT_DETAILS};
	struct folder_list sl = {0}, tl = {0};
	struct folder_plan plan = {0};
	int r = -1;

	memset(stats_r, 0, sizeof(*stats_r));
	run.src = connect_side(&run, SIDE_SOURCE, &o->source, err);
	if (!run.src)
		goto out;
	run.tgt = connect_side(&run, SIDE_TARGET, &o->target, err);
	if (!run.tgt)
		goto out;
	stats_r->connected = true;
	if (mailbox_list_read(run.src, &sl, err) < 0 || mailbox_list_read(run.tgt, &tl, err) < 0)
		goto out;
	if (folder_plan_build(&sl, &tl, &o->rules, &plan, err) < 0)
		goto out;
	for (size_t i = 0; i < plan.count; i++)
		if (verify_entry(&run, &plan.items[i], err) < 0)
			goto out;
	r = 0;
out:
	folder_plan_release(&plan);
	folder_list_release(&sl);
	folder_list_release(&tl);
	imap_client_logout(&run.src);
	imap_client_logout(&run.tgt);
	return r;
}
