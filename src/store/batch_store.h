/* batch_store.h - batches and their users in the state database.
 *
 * A batch row holds its name, status, the options it was created with
 * (config: "key=value" lines, no secrets), the path and SHA-256 of its
 * CSV (passwords are re-read from there, never stored), its start time
 * and a stop request flag that another process can set.  batch_user rows
 * hold each user's life-cycle status, last error and counters; batch_item
 * rows list messages skipped by policy or refused by the target.
 *
 * Strings in the structs returned here are owned by the struct; release
 * with the matching _release().  All functions: 0 ok, -1 with err.
 */
#ifndef IMAPMIG_STORE_BATCH_STORE_H
#define IMAPMIG_STORE_BATCH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "store/state.h"

struct batch_row {
	int64_t id;
	char *name;
	char *status;
	char *config;
	char *csv_path;
	char *csv_sha256;
	time_t created;
	time_t start_after;
	bool stop_requested;
	char *notified_status; /* status the last mailed report was for */
};

struct batch_user_row {
	size_t idx;
	char *email;
	char *source_user;
	char *target_user;
	char *status;
	char *error; /* "" when none */
	int64_t pair_id;
	uint64_t items_copied, items_existing, bytes, folders;
	time_t started, last_synced, completed;
	double duration;
};

struct batch_item_row {
	size_t idx;
	char *folder;
	uint32_t uid;
	char *kind; /* "skipped" or "failed" */
	char *date;
	char *subject;
	uint64_t size;
	char *reason;
};

/* Create a batch and its users (status "Created") in one transaction.
 * A name already taken: ERR_CONFIG. */
int batch_store_create(struct state *st, const struct batch_row *b,
		       const struct batch_user_row *users, size_t n_users, struct err *err);
/* 1 found (*b_r filled), 0 no such batch, -1 error. */
int batch_store_get(struct state *st, const char *name, struct batch_row *b_r, struct err *err);
void batch_row_release(struct batch_row *b);
/* All batches, oldest first; caller releases each and frees the array. */
int batch_store_list(struct state *st, struct batch_row **rows_r, size_t *n_r, struct err *err);
int batch_store_remove(struct state *st, int64_t batch_id, struct err *err);
int batch_store_set_status(struct state *st, int64_t batch_id, const char *status,
			   struct err *err);
int batch_store_set_stop(struct state *st, int64_t batch_id, bool stop, struct err *err);
/* Reads the flag afresh (another process may have set it). */
int batch_store_stop_requested(struct state *st, int64_t batch_id, bool *stop_r,
			       struct err *err);
int batch_store_set_notified(struct state *st, int64_t batch_id, const char *status,
			     struct err *err);

int batch_store_users(struct state *st, int64_t batch_id, struct batch_user_row **rows_r,
		      size_t *n_r, struct err *err);
void batch_user_rows_free(struct batch_user_row *rows, size_t n);
/* Write back status, error, pair_id, counters and times of u (by idx),
 * whatever the row holds now.  For a process that knows no other pass
 * runs the batch; a pass uses batch_store_user_update_pass(). */
int batch_store_user_update(struct state *st, int64_t batch_id, const struct batch_user_row *u,
			    struct err *err);
/* The same write from a pass, which read the row when it started and may
 * overlap passes in other processes: a row another process has set
 * Completed meanwhile is left alone, and so is one now Completing unless
 * `completing` (the caller is itself a complete pass).  Checked and
 * written in one statement, so nothing can come in between.  *written_r
 * says whether the row was written; if not, u is stale: re-read it with
 * batch_store_user_get(). */
int batch_store_user_update_pass(struct state *st, int64_t batch_id,
				 const struct batch_user_row *u, bool completing, bool *written_r,
				 struct err *err);
/* One user, by idx, as the database holds it now: 1 found (*u_r filled;
 * the caller releases it with batch_user_row_release()), 0 no such user,
 * -1 error. */
int batch_store_user_get(struct state *st, int64_t batch_id, size_t idx,
			 struct batch_user_row *u_r, struct err *err);
void batch_user_row_release(struct batch_user_row *u);

/* Record (or replace) one skipped/failed message of user idx. */
int batch_store_item_add(struct state *st, int64_t batch_id, const struct batch_item_row *it,
			 struct err *err);
int batch_store_items(struct state *st, int64_t batch_id, struct batch_item_row **rows_r,
		      size_t *n_r, struct err *err);
void batch_item_rows_free(struct batch_item_row *rows, size_t n);
/* Per user: how many items were skipped/failed. */
int batch_store_item_counts(struct state *st, int64_t batch_id, size_t idx, uint64_t *skipped_r,
			    uint64_t *failed_r, struct err *err);

/* Forget "failed" items of user idx that a later pass copied after all. */
int batch_store_items_prune(struct state *st, int64_t batch_id, size_t idx, int64_t pair_id,
			    struct err *err);

/* What the state knows about a pair: messages on the target (done),
 * their octets, and folders. */
int batch_store_pair_totals(struct state *st, int64_t pair_id, uint64_t *done_r,
			    uint64_t *bytes_r, uint64_t *folders_r, struct err *err);

#endif
