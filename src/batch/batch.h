/* batch.h - many mailbox pairs from a CSV, run in parallel, in passes.
 *
 * A batch is created once (batch_create: the CSV is validated, the users
 * and the options are stored, no secrets) and then run in passes:
 *   BATCH_PASS_START     initial copy for every user not yet synced
 *   BATCH_PASS_SYNC      an incremental pass over every user not completed
 *   BATCH_PASS_COMPLETE  a last incremental pass; users end Completed
 * Each pass re-reads the passwords from the CSV the batch remembers (its
 * path and SHA-256 are stored; a changed user list is refused) and from
 * the admin password files or environment.
 *
 * Users run on `jobs` worker threads (never more than max_connections at
 * once against a server: each user holds one connection per side), each
 * with its own state handle.  A transient failure (dropped connection,
 * BYE, [UNAVAILABLE], throttling) is retried with exponential backoff
 * (2 s doubling to 60 s, 5 attempts); then the user is Failed with the
 * last error.  One user failing never stops the others.  A pass that is
 * killed and run again resumes: the sync engine never copies twice.
 *
 * Statuses (strings, as shown to people and in reports): Created Queued
 * Syncing Synced IncrementalSyncing Completing Completed Failed Stopped,
 * and Interrupted: the process running the user's pass ended (killed,
 * machine down) before the user was done; the next pass runs it again.
 *
 * While a pass runs, its process holds a shared lock on the batch's byte
 * of <state>.lock (an OFD lock, dropped by the kernel however the process
 * ends, SIGKILL included).  That tells a user really being worked on from
 * one left "Syncing" by a dead process: see batch_hold().
 *
 * Events go to a callback, from worker threads: it must be thread-safe.
 */
#ifndef IMAPMIG_BATCH_BATCH_H
#define IMAPMIG_BATCH_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "engine/folder_map.h"
#include "imap/imap_client.h"
#include "util/err.h"
#include "util/strvec.h"

/* Everything `batch create` was told, except secrets (only paths to them). */
struct batch_config {
	char *source_url, *target_url;
	char *ca_file;
	struct strvec resolve; /* HOST:ADDR */
	bool allow_plaintext, insecure;
	unsigned timeout_s;
	char *source_admin, *target_admin;
	enum imap_admin_mode admin_mode;
	char *source_password_file, *target_password_file;
	struct strvec include, exclude, folder_map;
	uint64_t max_message_size, max_items;
	unsigned jobs, max_connections;
	unsigned connections_per_user; /* 0 = 1 */
	unsigned append_connections;   /* 0 = 1; see sync_opts */
	time_t start_after;
	struct strvec notify;
	char *smtp_url, *smtp_password_file, *smtp_from;
};

void batch_config_release(struct batch_config *c);
/* "key=value" lines (repeated keys for lists); caller frees. */
char *batch_config_serialize(const struct batch_config *c);
int batch_config_parse(const char *text, struct batch_config *c_r, struct err *err);

/* Validate the CSV (and the URLs) and store the batch.  state_path is
 * the database.  ERR_CONFIG for every input problem; nothing is stored
 * then. */
int batch_create(const char *state_path, const char *name, const char *csv_path,
		 const struct batch_config *c, struct err *err);

enum batch_pass {
	BATCH_PASS_START,
	BATCH_PASS_SYNC,
	BATCH_PASS_COMPLETE,
};

enum batch_event_type {
	BATCH_EV_USER_STATUS, /* user, status, text = error (Failed) */
	BATCH_EV_USER_TOTALS, /* count/bytes on the source */
	BATCH_EV_USER_PROGRESS, /* count/bytes handled in this pass */
	BATCH_EV_ITEM,        /* skipped/failed message: folder uid date subject size text */
	BATCH_EV_WARNING,     /* text */
	BATCH_EV_USER_DONE,   /* status, copied, skipped, failed, bytes, text = error */
	BATCH_EV_WAITING,     /* text: waiting for --start-after */
};

struct batch_event {
	enum batch_event_type type;
	size_t idx;        /* user slot */
	const char *user;  /* email */
	const char *status;
	const char *text;
	const char *folder;
	const char *kind;  /* "skipped" / "failed" */
	uint32_t uid;
	const char *date, *subject;
	uint64_t size;
	uint64_t count, bytes;
	uint64_t copied, skipped, failed;
};

typedef void batch_event_fn(void *ctx, const struct batch_event *ev);

struct batch_run_opts {
	const char *state_path;
	const char *name;
	enum batch_pass pass;
	batch_event_fn *event;
	void *event_ctx;
	bool (*should_stop)(void *ctx); /* e.g. Ctrl-C; NULL = never */
	void *stop_ctx;
	/* --debug: protocol trace of every user's connections, passwords
	 * masked, in chunks as sent/read (see imap_trace_fn); called from
	 * worker and engine threads.  NULL = none. */
	void (*trace)(void *ctx, const char *user, enum side side, unsigned conn_no, char dir,
		      const uint8_t *data, size_t len);
	void *trace_ctx;
};

struct batch_result {
	size_t users;   /* in the batch */
	size_t ran;     /* run in this pass */
	size_t failed;  /* Failed at the end */
	size_t stopped;
	char status[32]; /* batch status after the pass */
};

/* Run one pass (blocking until every user of it is done, failed or
 * stopped).  -1 only when the pass could not run at all (no such batch,
 * CSV changed, no password, database error); per-user failures are in
 * the result. */
int batch_run(const struct batch_run_opts *o, struct batch_result *res_r, struct err *err);

/* One user of a batch as the batch would connect it (for verify). */
struct batch_user_view {
	size_t index;
	const char *email;
	const char *status;
	struct imap_client_opts source, target; /* passwords filled in */
	struct folder_rules rules;
	uint64_t max_message_size;
};
typedef int batch_user_fn(void *ctx, const struct batch_user_view *u, struct err *err);
/* Load the batch and its passwords (as a pass would) and call fn for each
 * user in CSV order; stops at the first fn returning -1. */
int batch_each_user(const char *state_path, const char *name, batch_user_fn *fn, void *ctx,
		    struct err *err);

/* Ask running passes of the batch (in any process) to stop. */
int batch_request_stop(const char *state_path, const char *name, struct err *err);

/* The batch status from its users' statuses. */
const char *batch_status_from_users(const char *const *statuses, size_t n, enum batch_pass pass);

/* Syncing, IncrementalSyncing or Completing: a pass works on the user. */
bool batch_status_is_running(const char *status);

/* Take the batch's lock exclusively, without waiting, so that no pass can
 * start while the caller reads statuses.  true with *fd_r set: no pass of
 * the batch is running in any process, so a running status read now was
 * left by a process that died (show it as Interrupted); release with
 * batch_hold_release() soon (a pass starting meanwhile waits for it).
 * false (*fd_r = -1): a pass is running, or the lock file cannot be
 * opened; show the statuses as stored. */
bool batch_hold(const char *state_path, int64_t batch_id, int *fd_r);
/* Safe with -1; *fd becomes -1. */
void batch_hold_release(int *fd);

#endif
