/* progress.c - live progress: a redrawn terminal area, periodic log lines
 * or JSON events, from the same per-user numbers.
 *
 * One mutex guards everything, the writes to out included, so lines from
 * different workers never interleave.  Nothing runs in the background:
 * output happens inside the update calls, throttled by time, which is
 * enough because a worker that makes progress calls us often and one that
 * does not has nothing new to show.
 */
#include "report/progress.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "report/progress_internal.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/mem.h"

#define RATE_WINDOW_S 10.0
#define SAMPLE_GAP_S 0.5
#define N_SAMPLES 32   /* >= 0.5 s apart: more than the 10 s window */
#define MIN_SPAN_S 1.0 /* a rate over less than this is noise */
#define REDRAW_GAP_S 0.2
#define JSON_GAP_S 1.0
#define DEFAULT_LOG_INTERVAL_S 30
#define DEFAULT_COLS 100
#define DEFAULT_ROWS 24
#define MAX_NAME_COLS 40
#define ETA_MAX_S (100.0 * 86400) /* beyond that an ETA means nothing */

struct sample {
	double t;
	uint64_t msgs, bytes;
};

struct slot {
	char *user;   /* NULL until named */
	char *status; /* NULL until set */
	uint64_t msgs_total, bytes_total, msgs_done, bytes_done;
	/* Ring of (time, done) samples at least SAMPLE_GAP_S apart, for the
	 * rate over the last RATE_WINDOW_S. */
	struct sample ring[N_SAMPLES];
	unsigned ring_next, ring_len;
	double json_last;
	bool json_sent;  /* a "progress" event went out (json_last valid) */
	bool json_dirty; /* numbers changed since the last "progress" event */
};

struct progress {
	pthread_mutex_t lock;
	enum progress_mode mode;
	FILE *out;
	char *batch;
	struct slot *slots;
	size_t n;
	unsigned log_interval_s;
	struct progress_clock clock;
	unsigned cols_override, rows_override;
	unsigned live_lines; /* TTY: lines of the live area, cursor below it */
	bool drawn;
	double last_draw;
	double last_log;
	bool finished;
};

static const char *const running_states[] = {"Syncing", "IncrementalSyncing", "Completing"};
static const char *const done_states[] = {"Synced", "Completed", "Failed", "Stopped"};

static bool in_list(const char *s, const char *const *list, size_t n)
{
	if (!s)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

static bool is_running(const char *status)
{
	return in_list(status, running_states, sizeof(running_states) / sizeof(*running_states));
}

static bool is_done(const char *status)
{
	return in_list(status, done_states, sizeof(done_states) / sizeof(*done_states));
}

/* ---- clocks ---- */

static double default_monotonic(void *ctx)
{
	(void)ctx;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static time_t default_wall(void *ctx)
{
	(void)ctx;
	return time(NULL);
}

static double now_s(const struct progress *p)
{
	return p->clock.monotonic(p->clock.ctx);
}

/* ---- number formatting ---- */

static const char *const units[] = {"B", "KB", "MB", "GB", "TB", "PB", "EB"};
#define N_UNITS (sizeof(units) / sizeof(*units))

/* B as an integer, KB and MB with one decimal, GB and up with two. */
static unsigned unit_decimals(unsigned u)
{
	return u == 0 ? 0 : u < 3 ? 1 : 2;
}

static uint64_t pow10u(unsigned d)
{
	uint64_t r = 1;
	while (d--)
		r *= 10;
	return r;
}

/* v expressed in unit u as a rounded fixed-point integer with the unit's
 * decimals: integer arithmetic, so 999950 B is exactly "1.0 MB" and never
 * "1000.0 KB". */
static uint64_t scaled(uint64_t v, unsigned u)
{
	uint64_t d = 1;
	for (unsigned i = 0; i < u; i++)
		d *= 1000;
	d /= pow10u(unit_decimals(u));
	return v / d + (v % d >= (d + 1) / 2 ? 1 : 0);
}

static unsigned pick_unit(uint64_t v)
{
	unsigned u = 0;
	while (u + 1 < N_UNITS && scaled(v, u) >= 1000 * pow10u(unit_decimals(u)))
		u++;
	return u;
}

static void format_in_unit(uint64_t v, unsigned u, char *out, size_t outlen)
{
	uint64_t q = scaled(v, u);
	unsigned dec = unit_decimals(u);
	if (!dec) {
		snprintf(out, outlen, "%" PRIu64, q);
		return;
	}
	uint64_t p = pow10u(dec);
	snprintf(out, outlen, "%" PRIu64 ".%0*" PRIu64, q / p, (int)dec, q % p);
}

void progress_format_bytes(uint64_t bytes, char *out, size_t outlen)
{
	char num[32];
	unsigned u = pick_unit(bytes);
	format_in_unit(bytes, u, num, sizeof(num));
	snprintf(out, outlen, "%s %s", num, units[u]);
}

void progress_format_eta(double seconds, char *out, size_t outlen)
{
	if (!(seconds >= 0) || seconds > ETA_MAX_S) { /* NaN, negative, infinite */
		snprintf(out, outlen, "--");
		return;
	}
	uint64_t t = (uint64_t)(seconds + 0.5);
	unsigned h = (unsigned)(t / 3600), m = (unsigned)(t / 60 % 60), s = (unsigned)(t % 60);
	if (h)
		snprintf(out, outlen, "%u:%02u:%02u", h, m, s);
	else
		snprintf(out, outlen, "%u:%02u", m, s);
}

/* ---- rates ---- */

static void ring_push(struct slot *s, double now, bool force)
{
	if (!force && s->ring_len) {
		const struct sample *last = &s->ring[(s->ring_next + N_SAMPLES - 1) % N_SAMPLES];
		if (now - last->t < SAMPLE_GAP_S)
			return;
	}
	s->ring[s->ring_next] = (struct sample){now, s->msgs_done, s->bytes_done};
	s->ring_next = (s->ring_next + 1) % N_SAMPLES;
	if (s->ring_len < N_SAMPLES)
		s->ring_len++;
}

static void ring_restart(struct slot *s, double now)
{
	s->ring_len = 0;
	s->ring_next = 0;
	ring_push(s, now, true);
}

/* Bytes and messages per second since the last sample taken before the
 * window (so the span is ~10 s however sparse the updates), or since the
 * oldest one early on.  An idle slot's rate falls towards 0 as time
 * passes.  false when the span is too short to say anything. */
static bool slot_rate(const struct slot *s, double now, double *bps_r, double *mps_r)
{
	*bps_r = *mps_r = 0;
	if (!s->ring_len)
		return false;
	unsigned oldest = (s->ring_next + N_SAMPLES - s->ring_len) % N_SAMPLES;
	const struct sample *ref = &s->ring[oldest];
	for (unsigned i = 1; i < s->ring_len; i++) {
		const struct sample *c = &s->ring[(oldest + i) % N_SAMPLES];
		if (c->t > now - RATE_WINDOW_S)
			break;
		ref = c;
	}
	double span = now - ref->t;
	if (span < MIN_SPAN_S)
		return false;
	if (s->bytes_done > ref->bytes)
		*bps_r = (double)(s->bytes_done - ref->bytes) / span;
	if (s->msgs_done > ref->msgs)
		*mps_r = (double)(s->msgs_done - ref->msgs) / span;
	return true;
}

/* What one line shows: a user, or the sum of all. */
struct figures {
	uint64_t msgs_done, msgs_total, bytes_done, bytes_total;
	double bps, mps;
	bool rate_known;
};

static void slot_figures(const struct slot *s, double now, struct figures *f)
{
	f->msgs_done = s->msgs_done;
	f->msgs_total = s->msgs_total;
	f->bytes_done = s->bytes_done;
	f->bytes_total = s->bytes_total;
	f->rate_known = slot_rate(s, now, &f->bps, &f->mps);
}

static void total_figures(const struct progress *p, double now, struct figures *f)
{
	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < p->n; i++) {
		struct figures u;
		slot_figures(&p->slots[i], now, &u);
		f->msgs_done += u.msgs_done;
		f->msgs_total += u.msgs_total;
		f->bytes_done += u.bytes_done;
		f->bytes_total += u.bytes_total;
		f->bps += u.bps;
		f->mps += u.mps;
		f->rate_known |= u.rate_known;
	}
}

/* Remaining bytes over the byte rate; messages when the byte total is
 * unknown; -1 (shown "--") when neither can be said. */
static double figures_eta(const struct figures *f)
{
	if (f->bytes_total) {
		if (f->bytes_done >= f->bytes_total)
			return 0;
		if (!f->rate_known || f->bps <= 0)
			return -1;
		return (double)(f->bytes_total - f->bytes_done) / f->bps;
	}
	if (f->msgs_total) {
		if (f->msgs_done >= f->msgs_total)
			return 0;
		if (!f->rate_known || f->mps <= 0)
			return -1;
		return (double)(f->msgs_total - f->msgs_done) / f->mps;
	}
	return -1;
}

/* "1234/5000 msgs<sep>45.2/120.0 MB<sep>3.1 MB/s<sep>ETA 0:25" */
static void put_figures(struct buf *b, const struct figures *f, const char *sep)
{
	char x[40], y[40];
	if (f->msgs_total)
		buf_appendf(b, "%" PRIu64 "/%" PRIu64 " msgs", f->msgs_done, f->msgs_total);
	else
		buf_appendf(b, "%" PRIu64 " msgs", f->msgs_done);
	buf_puts(b, sep);
	if (f->bytes_total) {
		unsigned u = pick_unit(f->bytes_total);
		format_in_unit(f->bytes_done, u, x, sizeof(x));
		format_in_unit(f->bytes_total, u, y, sizeof(y));
		buf_appendf(b, "%s/%s %s", x, y, units[u]);
	} else {
		progress_format_bytes(f->bytes_done, x, sizeof(x));
		buf_puts(b, x);
	}
	buf_puts(b, sep);
	if (f->rate_known) {
		progress_format_bytes((uint64_t)(f->bps + 0.5), x, sizeof(x));
		buf_appendf(b, "%s/s", x);
	} else {
		buf_puts(b, "--/s");
	}
	buf_puts(b, sep);
	progress_format_eta(figures_eta(f), x, sizeof(x));
	buf_appendf(b, "ETA %s", x);
}

/* ---- text ---- */

/* Screen columns of UTF-8 text, roughly: one per character. */
static size_t text_cols(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* Append text that came from outside (user names, server words) with
 * control characters replaced, so it cannot move the cursor or change the
 * terminal; keep_nl lets newlines of a note through. */
static void put_text(struct buf *b, const char *s, bool keep_nl)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && !(keep_nl && c == '\n') && c != '\t') || c == 0x7f)
			c = '?';
		buf_putc(b, (char)c);
	}
}

/* s in exactly cols columns: padded with spaces, or cut with a '~' at
 * the end when longer (so one long name does not push every line's
 * numbers off the screen).  cols 0: s as it is. */
static void put_padded(struct buf *b, const char *s, size_t cols)
{
	size_t n = text_cols(s);
	if (n <= cols || !cols) {
		put_text(b, s, false);
		for (; n < cols; n++)
			buf_putc(b, ' ');
		return;
	}
	struct buf cut = BUF_INIT(0);
	size_t i, k = 0;
	for (i = 0; s[i]; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80 && k++ == cols - 1)
			break;
	buf_append(&cut, s, i);
	put_text(b, buf_cstr(&cut), false);
	buf_release(&cut);
	buf_putc(b, '~');
}

static const char *slot_name(const struct slot *s, char *tmp, size_t tmplen, size_t i)
{
	if (s->user)
		return s->user;
	snprintf(tmp, tmplen, "#%zu", i + 1);
	return tmp;
}

static void put_users_done(const struct progress *p, struct buf *b)
{
	size_t done = 0, failed = 0;
	for (size_t i = 0; i < p->n; i++) {
		const char *st = p->slots[i].status;
		done += is_done(st);
		failed += st && !strcmp(st, "Failed");
	}
	buf_appendf(b, "%zu/%zu users done", done, p->n);
	if (failed)
		buf_appendf(b, ", %zu failed", failed);
}

static void put_stamp(const struct progress *p, struct buf *b)
{
	time_t t = p->clock.wall(p->clock.ctx);
	struct tm tm;
	char s[40];
	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%SZ", &tm);
	buf_puts(b, s);
}

static void emit(struct progress *p, struct buf *b)
{
	if (b->len) {
		fwrite(b->data, 1, b->len, p->out);
		fflush(p->out);
	}
	buf_release(b);
}

/* Lines shown: every running user, or the only user whatever its state
 * (then there is no total line: it would say the same). */
static bool slot_shown(const struct progress *p, size_t i)
{
	return p->n == 1 || is_running(p->slots[i].status);
}

/* ---- TTY ---- */

static void term_size(const struct progress *p, unsigned *cols_r, unsigned *rows_r)
{
	struct winsize ws;
	int fd = fileno(p->out);
	*cols_r = DEFAULT_COLS;
	*rows_r = DEFAULT_ROWS;
	if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0) {
		if (ws.ws_col)
			*cols_r = ws.ws_col;
		if (ws.ws_row)
			*rows_r = ws.ws_row;
	}
	if (p->cols_override)
		*cols_r = p->cols_override;
	if (p->rows_override)
		*rows_r = p->rows_override;
}

/* One live line: erase, text cut to cols-1 columns (writing the last
 * column would leave some terminals waiting to wrap), newline. */
static void tty_line(struct buf *frame, const struct buf *line, unsigned cols)
{
	size_t max = cols > 1 ? cols - 1 : 1, n = 0, i;
	const char *s = buf_cstr(line);
	for (i = 0; s[i]; i++) {
		if (((unsigned char)s[i] & 0xc0) != 0x80 && n++ == max)
			break;
	}
	buf_puts(frame, "\r\033[2K");
	buf_append(frame, s, i);
	buf_putc(frame, '\n');
}

/* Append the whole live area to frame, replacing the one drawn before. */
static void tty_frame(struct progress *p, double now, struct buf *frame)
{
	unsigned cols, rows;
	size_t running = 0, namew = 0, statw = 0;
	char tmp[32];
	struct figures f;
	struct buf line = BUF_INIT(0);
	bool total = p->n > 1;

	term_size(p, &cols, &rows);
	for (size_t i = 0; i < p->n; i++) {
		if (!slot_shown(p, i))
			continue;
		const struct slot *s = &p->slots[i];
		size_t w = text_cols(slot_name(s, tmp, sizeof(tmp), i));
		namew = w > namew ? w : namew;
		w = s->status ? text_cols(s->status) : 0;
		statw = w > statw ? w : statw;
		running++;
	}
	size_t namecap = cols / 3 < 8 ? 8 : cols / 3;
	if (namecap > MAX_NAME_COLS)
		namecap = MAX_NAME_COLS;
	if (namew > namecap)
		namew = namecap;

	/* A live area taller than the screen cannot be redrawn in place
	 * (the cursor cannot move above the top), so cap it. */
	size_t max_lines = rows > 3 ? rows - 1 : 2;
	size_t room = max_lines - total, show = running, more = 0;
	if (running > room) {
		show = room - 1;
		more = running - show;
	}

	if (p->live_lines)
		buf_appendf(frame, "\033[%uA", p->live_lines);
	unsigned lines = 0;
	for (size_t i = 0, k = 0; i < p->n && k < show; i++) {
		if (!slot_shown(p, i))
			continue;
		const struct slot *s = &p->slots[i];
		buf_reset(&line);
		put_padded(&line, slot_name(s, tmp, sizeof(tmp), i), namew);
		buf_puts(&line, "  ");
		put_padded(&line, s->status ? s->status : "", statw);
		buf_puts(&line, "  ");
		slot_figures(s, now, &f);
		put_figures(&line, &f, "  ");
		tty_line(frame, &line, cols);
		lines++;
		k++;
	}
	if (more) {
		buf_reset(&line);
		buf_appendf(&line, "... and %zu more running", more);
		tty_line(frame, &line, cols);
		lines++;
	}
	if (total) {
		buf_reset(&line);
		put_padded(&line, "Total", running ? namew + 2 + statw : 0);
		buf_puts(&line, "  ");
		total_figures(p, now, &f);
		put_figures(&line, &f, "  ");
		buf_puts(&line, "  (");
		put_users_done(p, &line);
		buf_putc(&line, ')');
		tty_line(frame, &line, cols);
		lines++;
	}
	if (lines < p->live_lines)
		buf_puts(frame, "\033[J"); /* the old area was taller */
	p->live_lines = lines;
	p->drawn = true;
	p->last_draw = now;
	buf_release(&line);
}

static void tty_draw(struct progress *p, double now)
{
	struct buf frame = BUF_INIT(0);
	tty_frame(p, now, &frame);
	emit(p, &frame);
}

/* ---- LOG ---- */

static void log_dump(struct progress *p, double now)
{
	struct buf b = BUF_INIT(0);
	struct figures f;
	char tmp[32];

	for (size_t i = 0; i < p->n; i++) {
		if (!slot_shown(p, i))
			continue;
		const struct slot *s = &p->slots[i];
		put_stamp(p, &b);
		buf_putc(&b, ' ');
		put_text(&b, slot_name(s, tmp, sizeof(tmp), i), false);
		buf_putc(&b, ' ');
		put_text(&b, s->status ? s->status : "-", false);
		buf_putc(&b, ' ');
		slot_figures(s, now, &f);
		put_figures(&b, &f, " ");
		buf_putc(&b, '\n');
	}
	if (p->n > 1) {
		put_stamp(p, &b);
		buf_puts(&b, " total ");
		total_figures(p, now, &f);
		put_figures(&b, &f, " ");
		buf_puts(&b, " (");
		put_users_done(p, &b);
		buf_puts(&b, ")\n");
	}
	emit(p, &b);
	p->last_log = now;
}

/* ---- JSON ---- */

static void json_head(const struct progress *p, struct buf *b, const char *event,
                      const struct slot *s)
{
	buf_appendf(b, "{\"event\":\"%s\"", event);
	if (p->batch) {
		buf_puts(b, ",\"batch\":");
		json_string(b, p->batch);
	}
	buf_puts(b, ",\"user\":");
	json_string(b, s->user);
}

static void json_progress(struct progress *p, struct slot *s, double now)
{
	struct buf b = BUF_INIT(0);
	json_head(p, &b, "progress", s);
	buf_appendf(&b,
	            ",\"messages_done\":%" PRIu64 ",\"messages_total\":%" PRIu64
	            ",\"bytes_done\":%" PRIu64 ",\"bytes_total\":%" PRIu64 "}\n",
	            s->msgs_done, s->msgs_total, s->bytes_done, s->bytes_total);
	emit(p, &b);
	s->json_last = now;
	s->json_sent = true;
	s->json_dirty = false;
}

static void json_status(struct progress *p, struct slot *s)
{
	struct buf b = BUF_INIT(0);
	json_head(p, &b, "user_status", s);
	buf_puts(&b, ",\"status\":");
	json_string(&b, s->status);
	buf_puts(&b, "}\n");
	emit(p, &b);
}

/* ---- the API ---- */

struct progress *progress_new(enum progress_mode mode, FILE *out, const char *batch, size_t n_users,
                              unsigned log_interval_s)
{
	struct progress *p = xcalloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	p->mode = out ? mode : PROGRESS_QUIET;
	p->out = out;
	p->batch = batch ? xstrdup(batch) : NULL;
	p->n = n_users;
	p->slots = xcalloc(n_users ? n_users : 1, sizeof(*p->slots));
	p->log_interval_s = log_interval_s ? log_interval_s : DEFAULT_LOG_INTERVAL_S;
	p->clock = (struct progress_clock){default_monotonic, default_wall, NULL};
	p->last_log = now_s(p);
	return p;
}

void progress_free(struct progress **pp)
{
	struct progress *p = *pp;
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->slots[i].user);
		free(p->slots[i].status);
	}
	free(p->slots);
	free(p->batch);
	pthread_mutex_destroy(&p->lock);
	free(p);
	*pp = NULL;
}

void progress_set_clock(struct progress *p, const struct progress_clock *c)
{
	pthread_mutex_lock(&p->lock);
	p->clock = *c;
	p->last_log = now_s(p);
	pthread_mutex_unlock(&p->lock);
}

void progress_set_term_size(struct progress *p, unsigned cols, unsigned rows)
{
	pthread_mutex_lock(&p->lock);
	p->cols_override = cols;
	p->rows_override = rows;
	pthread_mutex_unlock(&p->lock);
}

/* After any update: draw or log if it is time.  forced: a status change,
 * shown at once on a terminal. */
static void refresh(struct progress *p, double now, bool forced)
{
	switch (p->mode) {
	case PROGRESS_TTY:
		if (forced || !p->drawn || now - p->last_draw >= REDRAW_GAP_S)
			tty_draw(p, now);
		break;
	case PROGRESS_LOG:
		if (now - p->last_log >= p->log_interval_s)
			log_dump(p, now);
		break;
	default:
		break;
	}
}

void progress_status(struct progress *p, size_t slot, const char *user, const char *status)
{
	pthread_mutex_lock(&p->lock);
	if (slot >= p->n || p->finished)
		goto out;
	struct slot *s = &p->slots[slot];
	double now = now_s(p);
	if (user && (!s->user || strcmp(s->user, user))) {
		free(s->user);
		s->user = xstrdup(user);
	}
	if (!status || (s->status && !strcmp(s->status, status)))
		goto out;
	bool was_running = is_running(s->status);
	free(s->status);
	s->status = xstrdup(status);
	if (is_running(status) && !was_running)
		ring_restart(s, now); /* the rate of a new pass starts now */

	switch (p->mode) {
	case PROGRESS_LOG: {
		struct buf b = BUF_INIT(0);
		char tmp[32];
		put_stamp(p, &b);
		buf_putc(&b, ' ');
		put_text(&b, slot_name(s, tmp, sizeof(tmp), slot), false);
		buf_puts(&b, ": ");
		put_text(&b, status, false);
		buf_putc(&b, '\n');
		emit(p, &b);
		break;
	}
	case PROGRESS_JSON:
		/* The final numbers before the "Synced" that ends them. */
		if (s->json_dirty)
			json_progress(p, s, now);
		json_status(p, s);
		break;
	default:
		break;
	}
	refresh(p, now, true);
out:
	pthread_mutex_unlock(&p->lock);
}

/* The numbers of a slot changed: rates, JSON events, redraw. */
static void numbers_changed(struct progress *p, struct slot *s, double now, bool restarted)
{
	if (restarted)
		ring_restart(s, now);
	else
		ring_push(s, now, false);
	if (p->mode == PROGRESS_JSON) {
		s->json_dirty = true;
		if (!s->json_sent || now - s->json_last >= JSON_GAP_S)
			json_progress(p, s, now);
	}
	refresh(p, now, false);
}

void progress_totals(struct progress *p, size_t slot, uint64_t msgs_total, uint64_t bytes_total)
{
	pthread_mutex_lock(&p->lock);
	if (slot < p->n && !p->finished) {
		struct slot *s = &p->slots[slot];
		s->msgs_total = msgs_total;
		s->bytes_total = bytes_total;
		numbers_changed(p, s, now_s(p), false);
	}
	pthread_mutex_unlock(&p->lock);
}

void progress_done(struct progress *p, size_t slot, uint64_t msgs_done, uint64_t bytes_done)
{
	pthread_mutex_lock(&p->lock);
	if (slot < p->n && !p->finished) {
		struct slot *s = &p->slots[slot];
		/* Less than before: a new pass counts from 0 again. */
		bool restarted = msgs_done < s->msgs_done || bytes_done < s->bytes_done;
		s->msgs_done = msgs_done;
		s->bytes_done = bytes_done;
		numbers_changed(p, s, now_s(p), restarted);
	}
	pthread_mutex_unlock(&p->lock);
}

void progress_note(struct progress *p, const char *fmt, ...)
{
	if (p->mode == PROGRESS_QUIET || p->mode == PROGRESS_JSON)
		return;
	va_list ap;
	struct buf text = BUF_INIT(0), b = BUF_INIT(0);
	va_start(ap, fmt);
	buf_vappendf(&text, fmt, ap);
	va_end(ap);

	pthread_mutex_lock(&p->lock);
	bool live = p->mode == PROGRESS_TTY && !p->finished;
	if (live && p->live_lines) {
		/* Erase the live area; the note takes its place. */
		buf_appendf(&b, "\033[%uA\r\033[J", p->live_lines);
		p->live_lines = 0;
	}
	put_text(&b, buf_cstr(&text), true);
	if (!text.len || text.data[text.len - 1] != '\n')
		buf_putc(&b, '\n');
	if (live && p->drawn)
		tty_frame(p, now_s(p), &b);
	emit(p, &b);
	pthread_mutex_unlock(&p->lock);
	buf_release(&text);
}

void progress_finish(struct progress *p)
{
	pthread_mutex_lock(&p->lock);
	if (p->finished)
		goto out;
	double now = now_s(p);
	switch (p->mode) {
	case PROGRESS_TTY:
		tty_draw(p, now);
		p->live_lines = 0; /* the cursor is below it: later output stays */
		break;
	case PROGRESS_LOG:
		log_dump(p, now);
		break;
	case PROGRESS_JSON:
		for (size_t i = 0; i < p->n; i++)
			if (p->slots[i].json_dirty)
				json_progress(p, &p->slots[i], now);
		break;
	default:
		break;
	}
	p->finished = true;
out:
	pthread_mutex_unlock(&p->lock);
}
