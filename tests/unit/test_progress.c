/* test_progress.c - live progress: exact LOG, JSON and terminal output
 * under a hand-driven clock, throttling, format helpers, and many threads
 * updating at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/progress.h"
#include "report/progress_internal.h"
#include "util/mem.h"

#define T0 ((time_t)1795969200) /* 2026-11-29T16:20:00Z */

struct fx {
	char *text;
	size_t len;
	size_t seen; /* output already checked */
	FILE *out;
	double now;
	struct progress *p;
};

static double fake_mono(void *ctx)
{
	return ((struct fx *)ctx)->now;
}

static time_t fake_wall(void *ctx)
{
	return T0 + (time_t)((struct fx *)ctx)->now;
}

static struct fx *fx_new(enum progress_mode mode, const char *batch, size_t n, unsigned interval)
{
	struct fx *fx = xcalloc(1, sizeof(*fx));
	fx->out = open_memstream(&fx->text, &fx->len);
	assert_non_null(fx->out);
	fx->p = progress_new(mode, fx->out, batch, n, interval);
	struct progress_clock c = {fake_mono, fake_wall, fx};
	progress_set_clock(fx->p, &c);
	progress_set_term_size(fx->p, 100, 24);
	return fx;
}

static void fx_free(struct fx *fx)
{
	progress_free(&fx->p);
	assert_null(fx->p);
	fclose(fx->out);
	free(fx->text);
	free(fx);
}

/* Output written since the last call; valid until the next write. */
static const char *fresh(struct fx *fx)
{
	fflush(fx->out);
	const char *s = fx->text + fx->seen;
	fx->seen = fx->len;
	return s;
}

static void test_format_bytes(void **state)
{
	(void)state;
	static const struct {
		uint64_t v;
		const char *s;
	} cases[] = {
	    {0, "0 B"},
	    {999, "999 B"},
	    {1000, "1.0 KB"},
	    {1049, "1.0 KB"},
	    {1050, "1.1 KB"},
	    {999949, "999.9 KB"},
	    {999950, "1.0 MB"}, /* never "1000.0 KB" */
	    {45200000, "45.2 MB"},
	    {120000000, "120.0 MB"},
	    {1500000000, "1.50 GB"},
	    {999995000000ULL, "1.00 TB"},
	    {UINT64_MAX, "18.45 EB"},
	};
	char buf[32];
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		progress_format_bytes(cases[i].v, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].s);
	}
	progress_format_bytes(45200000, buf, 4); /* truncated, still a string */
	assert_string_equal(buf, "45.");
}

static void test_format_eta(void **state)
{
	(void)state;
	static const struct {
		double s;
		const char *text;
	} cases[] = {
	    {0, "0:00"},
	    {25, "0:25"},
	    {59.6, "1:00"},
	    {725, "12:05"},
	    {3599.4, "59:59"},
	    {3723, "1:02:03"},
	    {100 * 3600, "100:00:00"},
	    {-1, "--"},
	    {1e12, "--"},
	};
	char buf[32];
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		progress_format_eta(cases[i].s, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].text);
	}
	progress_format_eta(NAN, buf, sizeof(buf));
	assert_string_equal(buf, "--");
	progress_format_eta(INFINITY, buf, sizeof(buf));
	assert_string_equal(buf, "--");
}

static void test_log(void **state)
{
	(void)state;
	struct fx *fx = fx_new(PROGRESS_LOG, "b1", 2, 10);
	struct progress *p = fx->p;

	progress_status(p, 0, "alice@example.org", "Syncing");
	assert_string_equal(fresh(fx), "2026-11-29T16:20:00Z alice@example.org: Syncing\n");
	progress_status(p, 0, "alice@example.org", "Syncing"); /* no change, no line */
	progress_totals(p, 0, 5000, 120000000);
	fx->now = 5;
	progress_done(p, 0, 1234, 45200000);
	assert_string_equal(fresh(fx), "");
	fx->now = 10;
	progress_done(p, 0, 2000, 76200000);
	/* 76.2 MB over the 10 s since Syncing; 43.8 MB left at 7.62 MB/s.
	 * Slot 1 is not running: only counted in the total. */
	assert_string_equal(fresh(fx),
	                    "2026-11-29T16:20:10Z alice@example.org Syncing 2000/5000 msgs "
	                    "76.2/120.0 MB 7.6 MB/s ETA 0:06\n"
	                    "2026-11-29T16:20:10Z total 2000/5000 msgs 76.2/120.0 MB 7.6 MB/s "
	                    "ETA 0:06 (0/2 users done)\n");
	fx->now = 12;
	progress_done(p, 0, 5000, 120000000);
	progress_status(p, 0, NULL, "Synced");
	assert_string_equal(fresh(fx), "2026-11-29T16:20:12Z alice@example.org: Synced\n");
	progress_status(p, 1, "bob@example.org", "Failed");
	assert_string_equal(fresh(fx), "2026-11-29T16:20:12Z bob@example.org: Failed\n");
	progress_note(p, "bob@example.org: %s", "target: NO [OVERQUOTA]\033[2J");
	assert_string_equal(fresh(fx), "bob@example.org: target: NO [OVERQUOTA]?[2J\n");

	/* The final lines always: nobody runs, the total remains.  The rate
	 * goes back to the last sample before the 10 s window: 120 MB in 13 s. */
	fx->now = 13;
	progress_finish(p);
	assert_string_equal(fresh(fx), "2026-11-29T16:20:13Z total 5000/5000 msgs 120.0/120.0 MB "
	                               "9.2 MB/s ETA 0:00 (2/2 users done, 1 failed)\n");
	progress_finish(p);
	progress_done(p, 0, 1, 1);
	assert_string_equal(fresh(fx), "");
	fx_free(fx);
}

static void test_log_single_user_and_unknown_totals(void **state)
{
	(void)state;
	struct fx *fx = fx_new(PROGRESS_LOG, NULL, 1, 0); /* 0: every 30 s */
	struct progress *p = fx->p;

	progress_status(p, 0, "carol", "Syncing");
	fresh(fx);
	fx->now = 20;
	progress_done(p, 0, 40, 4000);
	assert_string_equal(fresh(fx), "");
	fx->now = 30;
	progress_done(p, 0, 60, 6000);
	/* No totals: no "/total" and no ETA; single slot: no total line. */
	assert_string_equal(fresh(fx),
	                    "2026-11-29T16:20:30Z carol Syncing 60 msgs 6.0 KB 200 B/s ETA --\n");
	/* Messages known, bytes not. */
	progress_totals(p, 0, 100, 0);
	fx->now = 60;
	progress_done(p, 0, 80, 8000);
	/* Updates 30 s apart: the rate spans back to the previous sample
	 * (2000 B, 20 msgs in 30 s); the ETA comes from messages. */
	assert_string_equal(
	    fresh(fx), "2026-11-29T16:21:00Z carol Syncing 80/100 msgs 8.0 KB 67 B/s ETA 0:30\n");
	fx_free(fx);
}

static void test_json(void **state)
{
	(void)state;
	struct fx *fx = fx_new(PROGRESS_JSON, "b1", 2, 10);
	struct progress *p = fx->p;

	progress_status(p, 0, "alice@example.org", "Syncing");
	assert_string_equal(fresh(fx), "{\"event\":\"user_status\",\"batch\":\"b1\","
	                               "\"user\":\"alice@example.org\",\"status\":\"Syncing\"}\n");
	progress_totals(p, 0, 10, 1000);
	assert_string_equal(
	    fresh(fx), "{\"event\":\"progress\",\"batch\":\"b1\",\"user\":\"alice@example.org\","
	               "\"messages_done\":0,\"messages_total\":10,\"bytes_done\":0,"
	               "\"bytes_total\":1000}\n");
	fx->now = 0.5;
	progress_done(p, 0, 1, 100); /* within a second of the last one */
	assert_string_equal(fresh(fx), "");
	fx->now = 1.0;
	progress_done(p, 0, 2, 200);
	assert_string_equal(
	    fresh(fx), "{\"event\":\"progress\",\"batch\":\"b1\",\"user\":\"alice@example.org\","
	               "\"messages_done\":2,\"messages_total\":10,\"bytes_done\":200,"
	               "\"bytes_total\":1000}\n");
	fx->now = 1.2;
	progress_done(p, 0, 10, 1000);
	progress_note(p, "not in JSON mode");
	assert_string_equal(fresh(fx), "");
	/* The pending numbers go out before the status that ends them. */
	progress_status(p, 0, NULL, "Synced");
	assert_string_equal(
	    fresh(fx), "{\"event\":\"progress\",\"batch\":\"b1\",\"user\":\"alice@example.org\","
	               "\"messages_done\":10,\"messages_total\":10,\"bytes_done\":1000,"
	               "\"bytes_total\":1000}\n"
	               "{\"event\":\"user_status\",\"batch\":\"b1\","
	               "\"user\":\"alice@example.org\",\"status\":\"Synced\"}\n");
	/* Other users are throttled on their own; escaping by json_string. */
	progress_status(p, 1, "b\"ob", "Syncing");
	progress_done(p, 1, 1, 5);
	fx->now = 1.5;
	progress_done(p, 1, 2, 9);
	assert_string_equal(fresh(fx),
	                    "{\"event\":\"user_status\",\"batch\":\"b1\",\"user\":\"b\\\"ob\","
	                    "\"status\":\"Syncing\"}\n"
	                    "{\"event\":\"progress\",\"batch\":\"b1\",\"user\":\"b\\\"ob\","
	                    "\"messages_done\":1,\"messages_total\":0,\"bytes_done\":5,"
	                    "\"bytes_total\":0}\n");
	progress_finish(p); /* only bob's pending numbers */
	assert_string_equal(fresh(fx),
	                    "{\"event\":\"progress\",\"batch\":\"b1\",\"user\":\"b\\\"ob\","
	                    "\"messages_done\":2,\"messages_total\":0,\"bytes_done\":9,"
	                    "\"bytes_total\":0}\n");
	fx_free(fx);

	fx = fx_new(PROGRESS_JSON, NULL, 1, 10); /* no batch: no "batch" key */
	progress_status(fx->p, 0, "alice", "Queued");
	assert_string_equal(
	    fresh(fx), "{\"event\":\"user_status\",\"user\":\"alice\",\"status\":\"Queued\"}\n");
	fx_free(fx);
}

static void test_quiet(void **state)
{
	(void)state;
	struct fx *fx = fx_new(PROGRESS_QUIET, "b1", 1, 1);
	progress_status(fx->p, 0, "alice", "Syncing");
	progress_totals(fx->p, 0, 1, 1);
	fx->now = 100;
	progress_done(fx->p, 0, 1, 1);
	progress_note(fx->p, "hello");
	progress_finish(fx->p);
	assert_string_equal(fresh(fx), "");
	fx_free(fx);
}

#define EL "\r\033[2K" /* start of each live line */

static void test_tty_redraw(void **state)
{
	(void)state;
	struct fx *fx = fx_new(PROGRESS_TTY, "b1", 3, 10);
	struct progress *p = fx->p;

	progress_status(p, 2, "carol", "Queued");
	assert_string_equal(fresh(fx), EL "Total  0 msgs  0 B  --/s  ETA --  (0/3 users done)\n");
	progress_status(p, 0, "alice", "Syncing");
	assert_string_equal(fresh(fx),
	                    "\033[1A" EL "alice  Syncing  0 msgs  0 B  --/s  ETA --\n" EL
	                    "Total           0 msgs  0 B  --/s  ETA --  (0/3 users done)\n");
	/* Status changes redraw at once; columns line up. */
	fx->now = 0.05;
	progress_status(p, 1, "bob", "IncrementalSyncing");
	assert_string_equal(
	    fresh(fx), "\033[2A" EL "alice  Syncing             0 msgs  0 B  --/s  ETA --\n" EL
	               "bob    IncrementalSyncing  0 msgs  0 B  --/s  ETA --\n" EL
	               "Total                      0 msgs  0 B  --/s  ETA --  (0/3 users done)\n");
	/* Numbers: at most every 200 ms. */
	fx->now = 0.1;
	progress_totals(p, 0, 10, 10000);
	fx->now = 0.2;
	progress_done(p, 0, 1, 1000);
	assert_string_equal(fresh(fx), "");
	fx->now = 0.25;
	progress_done(p, 0, 2, 2000);
	assert_string_equal(
	    fresh(fx),
	    "\033[3A" EL "alice  Syncing             2/10 msgs  2.0/10.0 KB  --/s  ETA --\n" EL
	    "bob    IncrementalSyncing  0 msgs  0 B  --/s  ETA --\n" EL
	    "Total                      2/10 msgs  2.0/10.0 KB  --/s  ETA --  (0/3 users done)\n");

	/* A note: erase the area, print it, draw the area below it. */
	fx->now = 0.3;
	progress_note(p, "skipped %s", "INBOX 7");
	assert_string_equal(
	    fresh(fx),
	    "\033[3A\r\033[J"
	    "skipped INBOX 7\n" EL
	    "alice  Syncing             2/10 msgs  2.0/10.0 KB  --/s  ETA --\n" EL
	    "bob    IncrementalSyncing  0 msgs  0 B  --/s  ETA --\n" EL
	    "Total                      2/10 msgs  2.0/10.0 KB  --/s  ETA --  (0/3 users done)\n");

	/* Rates once a second of history exists: 10 KB in 2.1 s since
	 * Syncing (the other users add 0 or nothing known). */
	fx->now = 2;
	progress_done(p, 0, 10, 10000);
	progress_status(p, 0, NULL, "Synced"); /* area shrinks: clear below */
	fresh(fx);
	fx->now = 2.1;
	progress_status(p, 1, NULL, "Failed");
	assert_string_equal(fresh(fx),
	                    "\033[2A" EL "Total  10/10 msgs  10.0/10.0 KB  4.8 KB/s  ETA 0:00  "
	                    "(2/3 users done, 1 failed)\n"
	                    "\033[J");
	fx->now = 2.15;
	progress_finish(p); /* not throttled */
	assert_string_equal(fresh(fx),
	                    "\033[1A" EL "Total  10/10 msgs  10.0/10.0 KB  4.7 KB/s  ETA 0:00  "
	                    "(2/3 users done, 1 failed)\n");
	/* Afterwards notes go below the final lines, nothing is redrawn. */
	progress_note(p, "done\n");
	progress_done(p, 2, 1, 1);
	assert_string_equal(fresh(fx), "done\n");
	fx_free(fx);
}

static void test_tty_width_and_height(void **state)
{
	(void)state;
	struct fx *fx = fx_new(PROGRESS_TTY, NULL, 1, 10);
	progress_set_term_size(fx->p, 40, 24);
	/* Single slot: its line, no total.  The name gets at most a third of
	 * the width (cut with '~', UTF-8 kept whole, escapes neutralised),
	 * the line at most 39 columns. */
	progress_status(fx->p, 0, "j\xc3\xbcrgen\033[2J@example.org", "Syncing");
	assert_string_equal(fresh(fx), EL "j\xc3\xbcrgen?[2J@e~  Syncing  0 msgs  0 B  --\n");
	progress_set_term_size(fx->p, 20, 24);
	progress_status(fx->p, 0, "\xc3\xa9mile", "Completing");
	assert_string_equal(fresh(fx), "\033[1A" EL "\xc3\xa9mile  Completing  \n");
	fx_free(fx);

	fx = fx_new(PROGRESS_TTY, "b1", 10, 10);
	progress_set_term_size(fx->p, 100, 5); /* room for 4 live lines */
	char name[8];
	for (size_t i = 0; i < 10; i++) {
		snprintf(name, sizeof(name), "u%zu", i);
		progress_status(fx->p, i, name, "Syncing");
	}
	const char *all = fresh(fx);
	const char *want =
	    EL "u0  Syncing  0 msgs  0 B  --/s  ETA --\n" EL
	       "u1  Syncing  0 msgs  0 B  --/s  ETA --\n" EL "... and 8 more running\n" EL
	       "Total        0 msgs  0 B  --/s  ETA --  (0/10 users done)\n";
	/* The last frame: cursor up over the 4 lines before, then these. */
	size_t len = strlen(all), wlen = strlen(want);
	assert_true(len > wlen + 4);
	assert_memory_equal(all + len - wlen - 4, "\033[4A", 4);
	assert_string_equal(all + len - wlen, want);
	fx_free(fx);
}

/* ---- many threads at once (real clock) ---- */

#define N_THREADS 4
#define N_UPDATES 10000

struct worker {
	struct progress *p;
	size_t slot;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	char name[16];
	snprintf(name, sizeof(name), "user%zu", w->slot);
	progress_status(w->p, w->slot, name, "Syncing");
	progress_totals(w->p, w->slot, N_UPDATES, (uint64_t)N_UPDATES * 1000);
	for (uint64_t i = 1; i <= N_UPDATES; i++) {
		progress_done(w->p, w->slot, i, i * 1000);
		if (i % 2500 == 0)
			progress_note(w->p, "%s at %" PRIu64, name, i);
	}
	progress_status(w->p, w->slot, NULL, "Synced");
	return NULL;
}

static void run_threads(enum progress_mode mode, const char *want)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	struct progress *p = progress_new(mode, out, "b1", N_THREADS, 1);
	pthread_t th[N_THREADS];
	struct worker w[N_THREADS];
	for (size_t i = 0; i < N_THREADS; i++) {
		w[i] = (struct worker){p, i};
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (size_t i = 0; i < N_THREADS; i++)
		pthread_join(th[i], NULL);
	progress_finish(p);
	progress_free(&p);
	fclose(out);
	assert_non_null(strstr(text, want));
	if (mode == PROGRESS_JSON) {
		/* Each user's last progress event has the final numbers. */
		for (size_t i = 0; i < N_THREADS; i++) {
			char last[160];
			snprintf(last, sizeof(last),
			         "\"user\":\"user%zu\",\"messages_done\":10000,"
			         "\"messages_total\":10000,",
			         i);
			assert_non_null(strstr(text, last));
		}
	}
	free(text);
}

static void test_threads(void **state)
{
	(void)state;
	run_threads(PROGRESS_LOG, " total 40000/40000 msgs 40.0/40.0 MB ");
	run_threads(PROGRESS_TTY, "Total  40000/40000 msgs  40.0/40.0 MB  ");
	run_threads(PROGRESS_JSON, "\"status\":\"Synced\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format_bytes),
	    cmocka_unit_test(test_format_eta),
	    cmocka_unit_test(test_log),
	    cmocka_unit_test(test_log_single_user_and_unknown_totals),
	    cmocka_unit_test(test_json),
	    cmocka_unit_test(test_quiet),
	    cmocka_unit_test(test_tty_redraw),
	    cmocka_unit_test(test_tty_width_and_height),
	    cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
