/* report.c - the batch report as CSV, JSON, HTML and a plain-text summary.
 *
 * Every writer appends to the caller's buffer through a small context that
 * remembers the first failed append (the buffer's cap); on failure the
 * buffer is put back to the length it had and the caller gets
 * ERR_INTERNAL, so a half-written report never escapes.
 */
#include "report/report.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util/json.h"
#include "util/mem.h"

/* ------------------------------------------------------------ output */

struct out {
	struct buf *b;
	size_t start; /* b->len when the writer began */
	int rc;
};

static void out_begin(struct out *o, struct buf *b)
{
	o->b = b;
	o->start = b->len;
	o->rc = 0;
}

static void put(struct out *o, const char *s)
{
	if (o->rc == 0 && buf_puts(o->b, s) < 0)
		o->rc = -1;
}

static void putn(struct out *o, const char *s, size_t n)
{
	if (o->rc == 0 && buf_append(o->b, s, n) < 0)
		o->rc = -1;
}

static void putc_(struct out *o, char c)
{
	if (o->rc == 0 && buf_putc(o->b, c) < 0)
		o->rc = -1;
}

__attribute__((format(printf, 2, 3))) static void putf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	if (o->rc)
		return;
	va_start(ap, fmt);
	if (buf_vappendf(o->b, fmt, ap) < 0)
		o->rc = -1;
	va_end(ap);
}

/* Finish a writer: on failure restore the buffer and fill err. */
static int out_end(struct out *o, const char *what, struct err *err)
{
	if (o->rc == 0)
		return 0;
	o->b->len = o->start;
	if (o->b->data)
		o->b->data[o->b->len] = '\0';
	return err_set(err, ERR_INTERNAL, "writing the %s report: it does not fit in %zu bytes",
	               what, o->b->max);
}

/* json_string() cannot report a full buffer, so build the literal in a
 * scratch buffer without a cap and append that. */
static void put_json(struct out *o, const char *s)
{
	struct buf tmp = BUF_INIT(0);
	json_string(&tmp, s);
	putn(o, (const char *)tmp.data, tmp.len);
	buf_release(&tmp);
}

/* ------------------------------------------------------ small formats */

static const char *str(const char *s)
{
	return s ? s : "";
}

/* ISO 8601 UTC, or "" for 0 ("not yet"). */
static const char *iso_time(time_t t, char *out, size_t outlen)
{
	struct tm tm;
	out[0] = '\0';
	if (t != 0 && gmtime_r(&t, &tm))
		strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return out;
}

/* "2026-11-29 16:04 UTC" for people, or "" for 0; without the " UTC"
 * in table cells, whose header says it once. */
static const char *human_time_z(time_t t, bool utc, char *out, size_t outlen)
{
	struct tm tm;
	out[0] = '\0';
	if (t != 0 && gmtime_r(&t, &tm))
		strftime(out, outlen, utc ? "%Y-%m-%d %H:%M UTC" : "%Y-%m-%d %H:%M", &tm);
	return out;
}

static const char *human_time(time_t t, char *out, size_t outlen)
{
	return human_time_z(t, true, out, outlen);
}

/* A duration that can go into any format: finite, not negative. */
static double sane_seconds(double s)
{
	/* NaN fails every comparison; infinity is no duration either */
	return s > 0 && s < 1e15 ? s : 0;
}

/* "1.5 GB", "312 KB", "17 B" (powers of 1024, like the progress lines). */
static const char *human_bytes(uint64_t n, char *out, size_t outlen)
{
	static const char *const unit[] = {"B", "KB", "MB", "GB", "TB", "PB"};
	double v = (double)n;
	size_t u = 0;
	while (v >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, outlen, "%llu B", (unsigned long long)n);
	else
		snprintf(out, outlen, v < 10 ? "%.1f %s" : "%.0f %s", v, unit[u]);
	return out;
}

/* "45s", "12m 03s", "3h 07m", "2d 4h". */
static const char *human_duration(double secs, char *out, size_t outlen)
{
	uint64_t s = (uint64_t)(sane_seconds(secs) + 0.5);
	if (s < 60)
		snprintf(out, outlen, "%llus", (unsigned long long)s);
	else if (s < 3600)
		snprintf(out, outlen, "%llum %02llus", (unsigned long long)(s / 60),
		         (unsigned long long)(s % 60));
	else if (s < 86400)
		snprintf(out, outlen, "%lluh %02llum", (unsigned long long)(s / 3600),
		         (unsigned long long)(s % 3600 / 60));
	else
		snprintf(out, outlen, "%llud %lluh", (unsigned long long)(s / 86400),
		         (unsigned long long)(s % 86400 / 3600));
	return out;
}

/* "1,234,567": big counts are easier to read with separators. */
static const char *human_count(uint64_t n, char *out, size_t outlen)
{
	char digits[32];
	int len = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)n);
	size_t j = 0;
	for (int i = 0; i < len && j + 2 < outlen; i++) {
		if (i > 0 && (len - i) % 3 == 0)
			out[j++] = ',';
		out[j++] = digits[i];
	}
	out[j] = '\0';
	return out;
}

/* ---------------------------------------------------------- totals */

/* Statuses in life-cycle order, so summaries always list them the same
 * way; anything else follows in the order first seen. */
static const char *const known_status[] = {
    "Created",    "Queued",    "Syncing", "Synced",  "IncrementalSyncing",
    "Completing", "Completed", "Failed",  "Stopped",
};
#define N_KNOWN (sizeof(known_status) / sizeof(known_status[0]))

struct status_count {
	const char *status;
	size_t n;
};

struct totals {
	uint64_t synced, skipped, failed, bytes, folders;
	double duration_s;        /* sum over users */
	time_t first_start, last; /* earliest started, latest activity */
	size_t failed_users;      /* status "Failed" */
	struct status_count *st;  /* n_st entries with n > 0; owned */
	size_t n_st;
};

static void totals_make(const struct report *r, struct totals *t)
{
	memset(t, 0, sizeof(*t));
	size_t cap = N_KNOWN + r->n_users;
	struct status_count *all = xcalloc(cap, sizeof(*all));
	size_t n_all = N_KNOWN;
	for (size_t i = 0; i < N_KNOWN; i++)
		all[i].status = known_status[i];

	for (size_t i = 0; i < r->n_users; i++) {
		const struct report_user *u = &r->users[i];
		const char *s = u->status && u->status[0] ? u->status : "Unknown";
		size_t k;
		for (k = 0; k < n_all; k++)
			if (strcmp(all[k].status, s) == 0)
				break;
		if (k == n_all)
			all[n_all++].status = s;
		all[k].n++;
		if (strcmp(s, "Failed") == 0)
			t->failed_users++;
		t->synced += u->items_synced;
		t->skipped += u->items_skipped;
		t->failed += u->items_failed;
		t->bytes += u->bytes;
		t->folders += u->folders;
		t->duration_s += sane_seconds(u->duration_s);
		if (u->started && (!t->first_start || u->started < t->first_start))
			t->first_start = u->started;
		if (u->last_synced > t->last)
			t->last = u->last_synced;
		if (u->completed > t->last)
			t->last = u->completed;
	}
	/* keep only statuses someone has, in order */
	size_t j = 0;
	for (size_t k = 0; k < n_all; k++)
		if (all[k].n)
			all[j++] = all[k];
	t->st = all;
	t->n_st = j;
}

static void totals_release(struct totals *t)
{
	free(t->st);
	t->st = NULL;
}

/* Wall-clock time from the first user's start to the last activity, or 0
 * when unknown. */
static double totals_elapsed(const struct totals *t)
{
	if (!t->first_start || t->last <= t->first_start)
		return 0;
	return difftime(t->last, t->first_start);
}

/* ------------------------------------------------------------- CSV */

static bool csv_needs_quotes(const char *s)
{
	return strpbrk(s, ",\"\r\n") != NULL || s[0] == ' ' || (s[0] && s[strlen(s) - 1] == ' ');
}

/* One RFC 4180 field.  Text that a spreadsheet would take for a formula
 * (=, +, -, @ at the start: mail subjects and folder names come from
 * strangers) gets a leading apostrophe, the usual Excel escape. */
static void csv_field(struct out *o, const char *s)
{
	s = str(s);
	bool formula = s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' ||
	               s[0] == '\r';
	if (!formula && !csv_needs_quotes(s)) {
		put(o, s);
		return;
	}
	putc_(o, '"');
	if (formula)
		putc_(o, '\'');
	for (const char *p = s; *p; p++) {
		if (*p == '"')
			putc_(o, '"');
		putc_(o, *p);
	}
	putc_(o, '"');
}

int report_write_csv(const struct report *r, struct buf *out, struct err *err)
{
	struct out o;
	char t1[32], t2[32], t3[32];
	out_begin(&o, out);

	put(&o, "EmailAddress,SourceUser,Status,ItemsSynced,ItemsSkipped,ItemsFailed,"
	        "Bytes,Folders,Started,LastSynced,Completed,DurationSeconds,Error\r\n");
	for (size_t i = 0; i < r->n_users; i++) {
		const struct report_user *u = &r->users[i];
		csv_field(&o, u->email);
		putc_(&o, ',');
		csv_field(&o, u->source_user);
		putc_(&o, ',');
		csv_field(&o, u->status);
		putf(&o, ",%llu,%llu,%llu,%llu,%llu,%s,%s,%s,%.0f,",
		     (unsigned long long)u->items_synced, (unsigned long long)u->items_skipped,
		     (unsigned long long)u->items_failed, (unsigned long long)u->bytes,
		     (unsigned long long)u->folders, iso_time(u->started, t1, sizeof(t1)),
		     iso_time(u->last_synced, t2, sizeof(t2)),
		     iso_time(u->completed, t3, sizeof(t3)), sane_seconds(u->duration_s));
		csv_field(&o, u->error);
		put(&o, "\r\n");
	}

	put(&o, "\r\nUser,Folder,UID,Date,Subject,Size,Reason\r\n");
	for (size_t i = 0; i < r->n_items; i++) {
		const struct report_item *it = &r->items[i];
		csv_field(&o, it->user);
		putc_(&o, ',');
		csv_field(&o, it->folder);
		putf(&o, ",%lu,", (unsigned long)it->uid);
		csv_field(&o, it->date);
		putc_(&o, ',');
		csv_field(&o, it->subject);
		putf(&o, ",%llu,", (unsigned long long)it->size);
		csv_field(&o, it->reason);
		put(&o, "\r\n");
	}
	return out_end(&o, "CSV", err);
}

/* ------------------------------------------------------------ JSON */

static void json_time(struct out *o, time_t t)
{
	char tb[32];
	if (t == 0)
		put(o, "null");
	else
		put_json(o, iso_time(t, tb, sizeof(tb)));
}

int report_write_json(const struct report *r, struct buf *out, struct err *err)
{
	struct out o;
	struct totals t;
	out_begin(&o, out);
	totals_make(r, &t);

	put(&o, "{\"batch\":{\"name\":");
	put_json(&o, r->batch);
	put(&o, ",\"status\":");
	put_json(&o, r->status);
	put(&o, ",\"source\":");
	put_json(&o, r->source);
	put(&o, ",\"target\":");
	put_json(&o, r->target);
	put(&o, ",\"created\":");
	json_time(&o, r->created);
	put(&o, ",\"generated\":");
	json_time(&o, r->generated);
	putf(&o, ",\"users\":%zu,\"failed_users\":%zu,\"by_status\":{", r->n_users, t.failed_users);
	for (size_t k = 0; k < t.n_st; k++) {
		if (k)
			putc_(&o, ',');
		put_json(&o, t.st[k].status);
		putf(&o, ":%zu", t.st[k].n);
	}
	putf(&o,
	     "},\"items_synced\":%llu,\"items_skipped\":%llu,\"items_failed\":%llu,"
	     "\"bytes\":%llu,\"folders\":%llu,\"duration_s\":%.1f,\"started\":",
	     (unsigned long long)t.synced, (unsigned long long)t.skipped,
	     (unsigned long long)t.failed, (unsigned long long)t.bytes,
	     (unsigned long long)t.folders, t.duration_s);
	json_time(&o, t.first_start);
	put(&o, ",\"last_activity\":");
	json_time(&o, t.last);
	put(&o, "},\n\"users\":[");

	for (size_t i = 0; i < r->n_users; i++) {
		const struct report_user *u = &r->users[i];
		put(&o, i ? ",\n{\"email\":" : "\n{\"email\":");
		put_json(&o, u->email);
		put(&o, ",\"source_user\":");
		put_json(&o, u->source_user);
		put(&o, ",\"status\":");
		put_json(&o, u->status);
		putf(&o,
		     ",\"items_synced\":%llu,\"items_skipped\":%llu,\"items_failed\":%llu,"
		     "\"bytes\":%llu,\"folders\":%llu,\"started\":",
		     (unsigned long long)u->items_synced, (unsigned long long)u->items_skipped,
		     (unsigned long long)u->items_failed, (unsigned long long)u->bytes,
		     (unsigned long long)u->folders);
		json_time(&o, u->started);
		put(&o, ",\"last_synced\":");
		json_time(&o, u->last_synced);
		put(&o, ",\"completed\":");
		json_time(&o, u->completed);
		putf(&o, ",\"duration_s\":%.1f,\"error\":", sane_seconds(u->duration_s));
		put_json(&o, u->error);
		putc_(&o, '}');
	}
	put(&o, "],\n\"skipped\":[");
	for (size_t i = 0; i < r->n_items; i++) {
		const struct report_item *it = &r->items[i];
		put(&o, i ? ",\n{\"user\":" : "\n{\"user\":");
		put_json(&o, it->user);
		put(&o, ",\"folder\":");
		put_json(&o, it->folder);
		putf(&o, ",\"uid\":%lu,\"date\":", (unsigned long)it->uid);
		put_json(&o, it->date);
		put(&o, ",\"subject\":");
		put_json(&o, it->subject);
		putf(&o, ",\"size\":%llu,\"reason\":", (unsigned long long)it->size);
		put_json(&o, it->reason);
		putc_(&o, '}');
	}
	put(&o, "]}\n");
	totals_release(&t);
	return out_end(&o, "JSON", err);
}

/* ------------------------------------------------------------ HTML */

/* Escape for element content and quoted attributes.  Control characters
 * (other than tab and newline) become U+FFFD: they have no business in a
 * page and some are invalid in HTML. */
static void html(struct out *o, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)str(s); *p; p++) {
		switch (*p) {
		case '&':
			put(o, "&amp;");
			break;
		case '<':
			put(o, "&lt;");
			break;
		case '>':
			put(o, "&gt;");
			break;
		case '"':
			put(o, "&quot;");
			break;
		case '\'':
			put(o, "&#39;");
			break;
		case '\t':
		case '\n':
			putc_(o, (char)*p);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				put(o, "\xef\xbf\xbd");
			else
				putc_(o, (char)*p);
		}
	}
}

/* The badge colour class for a status. */
static const char *badge_class(const char *status)
{
	status = str(status);
	if (!strcmp(status, "Synced") || !strcmp(status, "Completed"))
		return "ok";
	if (!strcmp(status, "Failed"))
		return "bad";
	if (!strcmp(status, "Syncing") || !strcmp(status, "IncrementalSyncing") ||
	    !strcmp(status, "Completing"))
		return "run";
	return "idle"; /* Created, Queued, Stopped, anything unknown */
}

static void html_badge(struct out *o, const char *status)
{
	putf(o, "<span class=\"badge %s\">", badge_class(status));
	html(o, status && status[0] ? status : "Unknown");
	put(o, "</span>");
}

static void html_card(struct out *o, const char *label, const char *value, const char *note,
                      const char *cls)
{
	putf(o, "<div class=\"card%s%s\"><div class=\"label\">", cls ? " " : "", cls ? cls : "");
	html(o, label);
	put(o, "</div><div class=\"value\">");
	html(o, value);
	put(o, "</div>");
	if (note && note[0]) {
		put(o, "<div class=\"note\">");
		html(o, note);
		put(o, "</div>");
	}
	put(o, "</div>\n");
}

static const char html_css[] =
    ":root{--fg:#1f2328;--muted:#656d76;--line:#d8dee4;--bg:#f6f8fa;"
    "--ok:#1a7f37;--okbg:#dafbe1;--bad:#cf222e;--badbg:#ffebe9;"
    "--run:#0969da;--runbg:#ddf4ff;--idle:#57606a;--idlebg:#eaeef2}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;padding:32px;font:14px/1.5 -apple-system,'Segoe UI',Helvetica,Arial,"
    "'Noto Sans','Noto Sans CJK JP',sans-serif;color:var(--fg);background:#fff}\n"
    "main{max-width:1200px;margin:0 auto}\n"
    "h1{font-size:24px;margin:0 0 4px;display:flex;align-items:center;gap:12px;"
    "flex-wrap:wrap}\n"
    "h2{font-size:17px;margin:32px 0 10px}\n"
    ".meta{color:var(--muted);margin:0 0 24px}\n"
    ".meta b{color:var(--fg);font-weight:600}\n"
    ".cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px}\n"
    ".card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;background:var(--bg)}\n"
    ".card .label{color:var(--muted);font-size:12px;text-transform:uppercase;"
    "letter-spacing:.04em}\n"
    ".card .value{font-size:22px;font-weight:600;margin-top:2px}\n"
    ".card .note{color:var(--muted);font-size:12px;margin-top:2px}\n"
    ".card.bad{border-color:#ffcecb;background:var(--badbg)}\n"
    ".card.bad .value{color:var(--bad)}\n"
    ".statuses{margin-top:12px;display:flex;gap:8px;flex-wrap:wrap}\n"
    ".badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;"
    "font-weight:600;white-space:nowrap;border:1px solid transparent}\n"
    "h1 .badge{font-size:14px;padding:3px 12px}\n"
    ".badge.ok{color:var(--ok);background:var(--okbg);border-color:#aceebb}\n"
    ".badge.bad{color:var(--bad);background:var(--badbg);border-color:#ffcecb}\n"
    ".badge.run{color:var(--run);background:var(--runbg);border-color:#b6e3ff}\n"
    ".badge.idle{color:var(--idle);background:var(--idlebg);border-color:#d0d7de}\n"
    ".failures{margin-top:24px;border:1px solid #ffcecb;border-left:4px solid var(--bad);"
    "border-radius:8px;background:var(--badbg);padding:12px 16px}\n"
    ".failures h2{margin:0 0 8px;color:var(--bad)}\n"
    ".failures ul{margin:0;padding:0;list-style:none}\n"
    ".failures li{padding:6px 0;border-top:1px solid #ffcecb}\n"
    ".failures li:first-child{border-top:0}\n"
    ".failures .who{font-weight:600}\n"
    ".failures .why{display:block;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"
    "monospace;font-size:12.5px;white-space:pre-wrap;word-break:break-word}\n"
    ".scroll{overflow-x:auto;border:1px solid var(--line);border-radius:8px}\n"
    "table{width:100%;border-collapse:collapse}\n"
    "th,td{padding:7px 10px;text-align:left;vertical-align:top;"
    "border-bottom:1px solid var(--line)}\n"
    "tbody tr:last-child td{border-bottom:0}\n"
    "th{background:var(--bg);font-size:12px;color:var(--muted);font-weight:600;"
    "white-space:nowrap}\n"
    "tr.failed td{background:#fff8f7}\n"
    "tr.has-err td{border-bottom:0}\n"
    "tr.err td{padding:0 10px 9px 24px;font-family:ui-monospace,SFMono-Regular,Menlo,"
    "Consolas,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word}\n"
    "tr.err.failed td{color:var(--bad)}\n"
    "tr.err.warn td{color:#9a6700}\n"
    "td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\n"
    "td.time{white-space:nowrap;color:var(--muted);font-size:12.5px}\n"
    "td .sub{display:block;color:var(--muted);font-size:12px}\n"
    "td.subject{word-break:break-word}\n"
    ".empty{color:var(--muted);font-style:italic}\n"
    "footer{margin-top:32px;color:var(--muted);font-size:12px}\n"
    "@media print{body{padding:0}.card,.failures{break-inside:avoid}}\n";

static void html_td_time(struct out *o, time_t t)
{
	char tb[40];
	put(o, "<td class=\"time\">");
	html(o, human_time_z(t, false, tb, sizeof(tb)));
	put(o, "</td>");
}

static void html_td_num(struct out *o, uint64_t n)
{
	char nb[40];
	putf(o, "<td class=\"num\">%s</td>", human_count(n, nb, sizeof(nb)));
}

int report_write_html(const struct report *r, struct buf *out, struct err *err)
{
	struct out o;
	struct totals t;
	char a[64], b[64], c[64];
	out_begin(&o, out);
	totals_make(r, &t);

	/* The page never needs to load anything: say so to the browser, so
	 * even a mistake in escaping cannot fetch or run anything. */
	put(&o, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
	        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
	        "style-src 'unsafe-inline'\">\n"
	        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
	        "<title>imapmig batch ");
	html(&o, r->batch);
	put(&o, ": ");
	html(&o, r->status);
	put(&o, "</title>\n<style>\n");
	put(&o, html_css);
	put(&o, "</style>\n</head>\n<body>\n<main>\n<h1>Batch ");
	html(&o, r->batch);
	put(&o, " ");
	html_badge(&o, r->status);
	put(&o, "</h1>\n<p class=\"meta\">");
	if (r->source || r->target) {
		put(&o, "<b>");
		html(&o, r->source);
		put(&o, "</b> &rarr; <b>");
		html(&o, r->target);
		put(&o, "</b>");
	}
	if (r->created) {
		put(&o, " &middot; created ");
		html(&o, human_time(r->created, a, sizeof(a)));
	}
	put(&o, "</p>\n");

	/* totals */
	put(&o, "<section class=\"cards\">\n");
	snprintf(b, sizeof(b), "%zu failed", t.failed_users);
	html_card(&o, "Users", human_count(r->n_users, a, sizeof(a)),
	          t.failed_users ? b : "none failed", t.failed_users ? "bad" : NULL);
	html_card(&o, "Items synced", human_count(t.synced, a, sizeof(a)), NULL, NULL);
	html_card(&o, "Items skipped", human_count(t.skipped, a, sizeof(a)),
	          t.skipped ? "over a limit; listed below" : NULL, NULL);
	html_card(&o, "Items failed", human_count(t.failed, a, sizeof(a)),
	          t.failed ? "refused by the target" : NULL, t.failed ? "bad" : NULL);
	snprintf(b, sizeof(b), "in %s folders", human_count(t.folders, c, sizeof(c)));
	html_card(&o, "Data copied", human_bytes(t.bytes, a, sizeof(a)), b, NULL);
	double elapsed = totals_elapsed(&t);
	snprintf(b, sizeof(b), "%s of sync time, all users",
	         human_duration(t.duration_s, c, sizeof(c)));
	html_card(&o, elapsed > 0 ? "Elapsed" : "Sync time",
	          human_duration(elapsed > 0 ? elapsed : t.duration_s, a, sizeof(a)),
	          elapsed > 0 ? b : NULL, NULL);
	put(&o, "</section>\n<div class=\"statuses\">");
	for (size_t k = 0; k < t.n_st; k++) {
		putf(&o, "<span class=\"badge %s\">%zu ", badge_class(t.st[k].status), t.st[k].n);
		html(&o, t.st[k].status);
		put(&o, "</span>");
	}
	put(&o, "</div>\n");

	/* failed users first: they are why someone opens this page */
	if (t.failed_users) {
		put(&o, "<section class=\"failures\">\n<h2>Failed users</h2>\n<ul>\n");
		for (size_t i = 0; i < r->n_users; i++) {
			const struct report_user *u = &r->users[i];
			if (strcmp(str(u->status), "Failed") != 0)
				continue;
			put(&o, "<li><span class=\"who\">");
			html(&o, u->email);
			put(&o, "</span><span class=\"why\">");
			html(&o, u->error && u->error[0] ? u->error : "(no reason recorded)");
			put(&o, "</span></li>\n");
		}
		put(&o, "</ul>\n</section>\n");
	}

	/* users */
	put(&o, "<h2>Users</h2>\n<div class=\"scroll\"><table>\n<thead><tr><th>Mailbox</th>"
	        "<th>Status</th><th class=\"num\">Synced</th><th class=\"num\">Skipped</th>"
	        "<th class=\"num\">Failed</th><th class=\"num\">Data</th>"
	        "<th class=\"num\">Folders</th><th>Started (UTC)</th><th>Last synced</th>"
	        "<th>Completed</th><th class=\"num\">Duration</th></tr></thead>\n<tbody>\n");
	for (size_t i = 0; i < r->n_users; i++) {
		const struct report_user *u = &r->users[i];
		bool failed = strcmp(str(u->status), "Failed") == 0;
		bool has_err = u->error && u->error[0];
		putf(&o, "<tr class=\"%s%s\"><td>", failed ? "failed" : "user",
		     has_err ? " has-err" : "");
		html(&o, u->email);
		if (u->source_user && strcmp(u->source_user, str(u->email)) != 0) {
			put(&o, "<span class=\"sub\">from ");
			html(&o, u->source_user);
			put(&o, "</span>");
		}
		put(&o, "</td><td>");
		html_badge(&o, u->status);
		put(&o, "</td>");
		html_td_num(&o, u->items_synced);
		html_td_num(&o, u->items_skipped);
		html_td_num(&o, u->items_failed);
		putf(&o, "<td class=\"num\">%s</td>", human_bytes(u->bytes, a, sizeof(a)));
		html_td_num(&o, u->folders);
		html_td_time(&o, u->started);
		html_td_time(&o, u->last_synced);
		html_td_time(&o, u->completed);
		putf(&o, "<td class=\"num\">%s</td></tr>\n",
		     u->duration_s > 0 ? human_duration(u->duration_s, a, sizeof(a)) : "");
		/* the error on its own full-width row: a narrow column would
		 * squeeze a long server message into a tower of letters */
		if (has_err) {
			putf(&o, "<tr class=\"err %s\"><td colspan=\"11\">",
			     failed ? "failed" : "warn");
			html(&o, u->error);
			put(&o, "</td></tr>\n");
		}
	}
	if (r->n_users == 0)
		put(&o, "<tr><td colspan=\"11\" class=\"empty\">No users.</td></tr>\n");
	put(&o, "</tbody>\n</table></div>\n");

	/* skipped items */
	putf(&o, "<h2>Skipped items (%s)</h2>\n", human_count(r->n_items, a, sizeof(a)));
	if (r->n_items == 0) {
		put(&o, "<p class=\"empty\">No message was skipped.</p>\n");
	} else {
		put(&o, "<div class=\"scroll\"><table>\n<thead><tr><th>User</th><th>Folder</th><th "
		        "class=\"num\">UID</th>"
		        "<th>Date</th><th>Subject</th><th class=\"num\">Size</th><th>Reason</th>"
		        "</tr></thead>\n<tbody>\n");
		for (size_t i = 0; i < r->n_items; i++) {
			const struct report_item *it = &r->items[i];
			put(&o, "<tr><td>");
			html(&o, it->user);
			put(&o, "</td><td>");
			html(&o, it->folder);
			putf(&o, "</td><td class=\"num\">%lu</td><td class=\"time\">",
			     (unsigned long)it->uid);
			html(&o, it->date);
			put(&o, "</td><td class=\"subject\">");
			html(&o, it->subject);
			putf(&o, "</td><td class=\"num\">%s</td><td>",
			     human_bytes(it->size, a, sizeof(a)));
			html(&o, it->reason);
			put(&o, "</td></tr>\n");
		}
		put(&o, "</tbody>\n</table></div>\n");
	}

	put(&o, "<footer>Generated by imapmig");
	if (r->generated) {
		put(&o, " on ");
		html(&o, human_time(r->generated, a, sizeof(a)));
	}
	put(&o, ". Passwords are never part of this report.</footer>\n</main>\n</body>\n</html>\n");
	totals_release(&t);
	return out_end(&o, "HTML", err);
}

/* ------------------------------------------------------------ text */

/* Text on one line: newlines and other controls in an error would break
 * the indented list. */
static void text_line(struct out *o, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)str(s); *p; p++)
		putc_(o, *p < 0x20 || *p == 0x7f ? ' ' : (char)*p);
}

int report_write_text(const struct report *r, struct buf *out, struct err *err)
{
	struct out o;
	struct totals t;
	char a[64], b[64], c[64], d[64];
	out_begin(&o, out);
	totals_make(r, &t);

	put(&o, "Batch ");
	text_line(&o, r->batch);
	put(&o, ": ");
	text_line(&o, r->status);
	putf(&o, "\n%zu user%s", r->n_users, r->n_users == 1 ? "" : "s");
	for (size_t k = 0; k < t.n_st; k++) {
		put(&o, k ? ", " : ": ");
		putf(&o, "%zu ", t.st[k].n);
		text_line(&o, t.st[k].status);
	}
	putf(&o, "\nItems: %s synced, %s skipped, %s failed; %s copied\n",
	     human_count(t.synced, a, sizeof(a)), human_count(t.skipped, b, sizeof(b)),
	     human_count(t.failed, c, sizeof(c)), human_bytes(t.bytes, d, sizeof(d)));
	double elapsed = totals_elapsed(&t);
	if (elapsed > 0)
		putf(&o, "Elapsed: %s (sync time %s, all users)\n",
		     human_duration(elapsed, a, sizeof(a)),
		     human_duration(t.duration_s, b, sizeof(b)));
	else if (t.duration_s > 0)
		putf(&o, "Sync time: %s\n", human_duration(t.duration_s, a, sizeof(a)));
	if (r->source || r->target) {
		put(&o, "Source: ");
		text_line(&o, r->source);
		put(&o, "\nTarget: ");
		text_line(&o, r->target);
		putc_(&o, '\n');
	}

	if (t.failed_users) {
		put(&o, "Failed:\n");
		for (size_t i = 0; i < r->n_users; i++) {
			const struct report_user *u = &r->users[i];
			if (strcmp(str(u->status), "Failed") != 0)
				continue;
			put(&o, "  ");
			text_line(&o, u->email);
			put(&o, ": ");
			text_line(&o, u->error && u->error[0] ? u->error : "(no reason recorded)");
			putc_(&o, '\n');
		}
	}
	/* errors on users that did not fail (a refused message, a stop) */
	bool other = false;
	for (size_t i = 0; i < r->n_users; i++) {
		const struct report_user *u = &r->users[i];
		if (!u->error || !u->error[0] || strcmp(str(u->status), "Failed") == 0)
			continue;
		if (!other)
			put(&o, "Other errors:\n");
		other = true;
		put(&o, "  ");
		text_line(&o, u->email);
		put(&o, " (");
		text_line(&o, u->status);
		put(&o, "): ");
		text_line(&o, u->error);
		putc_(&o, '\n');
	}
	if (r->n_items)
		putf(&o, "Skipped items: %zu (listed in the attached report)\n", r->n_items);
	if (r->generated)
		putf(&o, "Generated %s\n", iso_time(r->generated, a, sizeof(a)));
	totals_release(&t);
	return out_end(&o, "text", err);
}
