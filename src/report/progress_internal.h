/* progress_internal.h - test hooks for progress.c; not part of the API.
 *
 * Only tests/unit/test_progress.c includes this.  The hooks are per
 * object (no global state), so a test can drive time and terminal size
 * by hand and assert exact output.
 */
#ifndef IMAPMIG_REPORT_PROGRESS_INTERNAL_H
#define IMAPMIG_REPORT_PROGRESS_INTERNAL_H

#include <time.h>

#include "report/progress.h"

struct progress_clock {
	double (*monotonic)(void *ctx); /* seconds, any origin */
	time_t (*wall)(void *ctx);      /* for LOG time stamps */
	void *ctx;
};

/* Replace the clocks (clock_gettime(CLOCK_MONOTONIC) and time()).  Call
 * right after progress_new(), before any update: the object's start time
 * is re-read from the new clock. */
void progress_set_clock(struct progress *p, const struct progress_clock *c);
/* Pretend the terminal is cols x rows instead of asking the out fd
 * (0 = ask again). */
void progress_set_term_size(struct progress *p, unsigned cols, unsigned rows);

#endif
