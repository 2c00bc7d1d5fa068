/* progress.h - live progress for one or many mailbox pairs.
 *
 * Three renderings of the same numbers:
 *   PROGRESS_TTY   on a terminal: one line per running user and a total
 *                  line, redrawn in place (ANSI cursor-up + erase-line),
 *                  at most every 200 ms; lines printed with
 *                  progress_note() appear above the live area.
 *   PROGRESS_LOG   not a terminal: every log_interval seconds one plain
 *                  line per running user and a total line, each starting
 *                  with an ISO 8601 UTC time stamp.
 *   PROGRESS_JSON  one JSON object per line (see notes/batch.md):
 *                  "user_status" at each status change, "progress" at
 *                  most once a second per user and at the end.
 * A user's line: "alice@example.org  Syncing  1234/5000 msgs  45.2/120.0 MB
 * 3.1 MB/s  ETA 0:25"; the total line sums every user and adds users done
 * ("(12/20 users done, 1 failed)": done = Synced, Completed, Failed or
 * Stopped).  Running = Syncing, IncrementalSyncing, Completing; with a
 * single slot its line is always shown and there is no total line.
 * Rates use the last ~10 s, ETA = remaining bytes / rate (remaining
 * messages when bytes are unknown; "--" unknown).  Sizes are decimal SI
 * (1 KB = 1000 B).  Text from outside (names, notes) has control
 * characters replaced.  LOG: log_interval_s 0 means 30; status changes
 * print "<time> alice@example.org: Synced" at once.  JSON: a user's
 * pending "progress" goes out before its next "user_status" and at
 * progress_finish().  After progress_finish() only notes print.
 *
 * Thread-safe: workers call the update functions concurrently.  The
 * object never owns out; strings passed in are copied.
 */
#ifndef IMAPMIG_REPORT_PROGRESS_H
#define IMAPMIG_REPORT_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum progress_mode {
	PROGRESS_QUIET = 0,
	PROGRESS_TTY,
	PROGRESS_LOG,
	PROGRESS_JSON,
};

struct progress;

/* batch may be NULL (single sync).  n_users slots, addressed 0..n-1.
 * Caller frees with progress_free(). */
struct progress *progress_new(enum progress_mode mode, FILE *out, const char *batch,
			      size_t n_users, unsigned log_interval_s);
void progress_free(struct progress **pp);

/* Name a slot and set its status ("Queued", "Syncing", "Synced", ...). */
void progress_status(struct progress *p, size_t slot, const char *user, const char *status);
/* Totals known for the pass (0 = unknown). */
void progress_totals(struct progress *p, size_t slot, uint64_t msgs_total, uint64_t bytes_total);
/* Done so far in this pass (absolute values, not increments). */
void progress_done(struct progress *p, size_t slot, uint64_t msgs_done, uint64_t bytes_done);
/* A line for the person (warning, skipped message, user failed): printed
 * above the live area on a terminal, as is otherwise.  Not used in JSON
 * mode (callers emit their own events). */
void progress_note(struct progress *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Final state: redraw once more and leave the cursor below. */
void progress_finish(struct progress *p);

/* Format helpers, exposed for tests: "45.2 MB", "0:25" / "1:02:03" / "--". */
void progress_format_bytes(uint64_t bytes, char *out, size_t outlen);
void progress_format_eta(double seconds, char *out, size_t outlen);

#endif
