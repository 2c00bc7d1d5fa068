#include "store/batch_store.h"

#include <stdlib.h>
#include <string.h>

#include "store/state_internal.h"
#include "util/mem.h"

/* Batch statements run a handful of times per user, not per message:
 * prepared on each call, no cache needed. */
static sqlite3_stmt *prep(struct state *st, const char *sql, struct err *err)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(state_sqlite(st), sql, -1, &s, NULL) != SQLITE_OK) {
		state_fail(st, "cannot prepare a batch statement", err);
		return NULL;
	}
	return s;
}

static int done(struct state *st, sqlite3_stmt *s, const char *action, struct err *err)
{
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE) {
		state_fail(st, action, err);
		sqlite3_finalize(s);
		return -1;
	}
	sqlite3_finalize(s);
	return 0;
}

static char *col(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return xstrdup(t ? (const char *)t : "");
}

static void text(sqlite3_stmt *s, int i, const char *t)
{
	sqlite3_bind_text(s, i, t ? t : "", -1, SQLITE_TRANSIENT);
}

/* Run a SELECT (?1 = id when id >= 0) and collect one struct of elem bytes
 * per row, filled by read(); the caller owns the array. */
typedef void row_reader(sqlite3_stmt *s, void *row);

static int read_rows(struct state *st, const char *sql, int64_t id, size_t elem,
		     row_reader *read, void **rows_r, size_t *n_r, const char *action,
		     struct err *err)
{
	*rows_r = NULL;
	*n_r = 0;
	sqlite3_stmt *s = prep(st, sql, err);
	if (!s)
		return -1;
	if (id >= 0)
		sqlite3_bind_int64(s, 1, id);
	size_t alloc = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (*n_r == alloc) {
			alloc = alloc ? alloc * 2 : 16;
			*rows_r = xrealloc(*rows_r, alloc * elem);
		}
		void *row = (char *)*rows_r + elem * (*n_r)++;
		memset(row, 0, elem);
		read(s, row);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return state_fail(st, action, err);
	return 0;
}

int batch_store_create(struct state *st, const struct batch_row *b,
		       const struct batch_user_row *users, size_t n_users, struct err *err)
{
	struct batch_row existing;
	int found = batch_store_get(st, b->name, &existing, err);
	if (found < 0)
		return -1;
	if (found) {
		batch_row_release(&existing);
		err_set(err, ERR_CONFIG, "a batch named '%s' exists already", b->name);
		err_hint(err, "choose another name, or 'imapmig batch remove %s' first", b->name);
		return -1;
	}
	if (state_begin(st, err) < 0)
		return -1;
	sqlite3_stmt *s = prep(st,
			       "INSERT INTO batch (name, status, config, csv_path, csv_sha256,"
			       " created, start_after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
			       err);
	if (!s)
		goto fail;
	text(s, 1, b->name);
	text(s, 2, b->status ? b->status : "Created");
	text(s, 3, b->config);
	text(s, 4, b->csv_path);
	text(s, 5, b->csv_sha256);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)b->created);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)b->start_after);
	if (done(st, s, "cannot create the batch", err) < 0)
		goto fail;
	int64_t id = sqlite3_last_insert_rowid(state_sqlite(st));
	for (size_t i = 0; i < n_users; i++) {
		s = prep(st,
			 "INSERT INTO batch_user (batch_id, idx, email, source_user, target_user,"
			 " status) VALUES (?1, ?2, ?3, ?4, ?5, 'Created')",
			 err);
		if (!s)
			goto fail;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)i);
		text(s, 3, users[i].email);
		text(s, 4, users[i].source_user);
		text(s, 5, users[i].target_user);
		if (done(st, s, "cannot add a batch user", err) < 0)
			goto fail;
	}
	return state_commit(st, err) < 0 ? (state_rollback(st), -1) : 0;
fail:
	state_rollback(st);
	return -1;
}

#define BATCH_COLS \
	"id, name, status, config, csv_path, csv_sha256, created, start_after," \
	" stop_requested, notified_status"

static void read_batch(sqlite3_stmt *s, struct batch_row *b)
{
	b->id = sqlite3_column_int64(s, 0);
	b->name = col(s, 1);
	b->status = col(s, 2);
	b->config = col(s, 3);
	b->csv_path = col(s, 4);
	b->csv_sha256 = col(s, 5);
	b->created = (time_t)sqlite3_column_int64(s, 6);
	b->start_after = (time_t)sqlite3_column_int64(s, 7);
	b->stop_requested = sqlite3_column_int(s, 8) != 0;
	b->notified_status = col(s, 9);
}

int batch_store_get(struct state *st, const char *name, struct batch_row *b_r, struct err *err)
{
	memset(b_r, 0, sizeof(*b_r));
	sqlite3_stmt *s = prep(st, "SELECT " BATCH_COLS " FROM batch WHERE name = ?1", err);
	if (!s)
		return -1;
	text(s, 1, name);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		read_batch(s, b_r);
		sqlite3_finalize(s);
		return 1;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return state_fail(st, "cannot read the batch", err);
	return 0;
}

void batch_row_release(struct batch_row *b)
{
	free(b->name);
	free(b->status);
	free(b->config);
	free(b->csv_path);
	free(b->csv_sha256);
	free(b->notified_status);
	memset(b, 0, sizeof(*b));
}

static void read_batch_row(sqlite3_stmt *s, void *row)
{
	read_batch(s, row);
}

int batch_store_list(struct state *st, struct batch_row **rows_r, size_t *n_r, struct err *err)
{
	return read_rows(st, "SELECT " BATCH_COLS " FROM batch ORDER BY id", -1,
			 sizeof(**rows_r), read_batch_row, (void **)rows_r, n_r,
			 "cannot list batches", err);
}

static int exec_id(struct state *st, const char *sql, int64_t id, const char *t,
		   const char *action, struct err *err)
{
	sqlite3_stmt *s = prep(st, sql, err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	if (t)
		text(s, 2, t);
	return done(st, s, action, err);
}

int batch_store_remove(struct state *st, int64_t batch_id, struct err *err)
{
	return exec_id(st, "DELETE FROM batch WHERE id = ?1", batch_id, NULL,
		       "cannot remove the batch", err);
}

int batch_store_set_status(struct state *st, int64_t batch_id, const char *status,
			   struct err *err)
{
	return exec_id(st, "UPDATE batch SET status = ?2 WHERE id = ?1", batch_id, status,
		       "cannot update the batch", err);
}

int batch_store_set_stop(struct state *st, int64_t batch_id, bool stop, struct err *err)
{
	return exec_id(st,
		       stop ? "UPDATE batch SET stop_requested = 1 WHERE id = ?1"
			    : "UPDATE batch SET stop_requested = 0 WHERE id = ?1",
		       batch_id, NULL, "cannot update the batch", err);
}

int batch_store_set_notified(struct state *st, int64_t batch_id, const char *status,
			     struct err *err)
{
	return exec_id(st, "UPDATE batch SET notified_status = ?2 WHERE id = ?1", batch_id,
		       status, "cannot update the batch", err);
}

int batch_store_stop_requested(struct state *st, int64_t batch_id, bool *stop_r,
			       struct err *err)
{
	*stop_r = false;
	sqlite3_stmt *s = prep(st, "SELECT stop_requested FROM batch WHERE id = ?1", err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, batch_id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*stop_r = sqlite3_column_int(s, 0) != 0;
	else if (rc == SQLITE_DONE)
		*stop_r = true; /* removed under us: stop */
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return state_fail(st, "cannot read the batch", err);
	return 0;
}

static void read_user_row(sqlite3_stmt *s, void *row)
{
	struct batch_user_row *u = row;
	u->idx = (size_t)sqlite3_column_int64(s, 0);
	u->email = col(s, 1);
	u->source_user = col(s, 2);
	u->target_user = col(s, 3);
	u->status = col(s, 4);
	u->error = col(s, 5);
	u->pair_id = sqlite3_column_int64(s, 6);
	u->items_copied = (uint64_t)sqlite3_column_int64(s, 7);
	u->items_existing = (uint64_t)sqlite3_column_int64(s, 8);
	u->bytes = (uint64_t)sqlite3_column_int64(s, 9);
	u->folders = (uint64_t)sqlite3_column_int64(s, 10);
	u->started = (time_t)sqlite3_column_int64(s, 11);
	u->last_synced = (time_t)sqlite3_column_int64(s, 12);
	u->completed = (time_t)sqlite3_column_int64(s, 13);
	u->duration = sqlite3_column_double(s, 14);
}

#define USER_COLS \
	"idx, email, source_user, target_user, status, error, pair_id, items_copied," \
	" items_existing, bytes, folders, started, last_synced, completed, duration"

int batch_store_users(struct state *st, int64_t batch_id, struct batch_user_row **rows_r,
		      size_t *n_r, struct err *err)
{
	return read_rows(st,
			 "SELECT " USER_COLS " FROM batch_user WHERE batch_id = ?1 ORDER BY idx",
			 batch_id, sizeof(**rows_r), read_user_row, (void **)rows_r, n_r,
			 "cannot read the batch users", err);
}

int batch_store_user_get(struct state *st, int64_t batch_id, size_t idx,
			 struct batch_user_row *u_r, struct err *err)
{
	memset(u_r, 0, sizeof(*u_r));
	sqlite3_stmt *s = prep(st,
			       "SELECT " USER_COLS " FROM batch_user WHERE batch_id = ?1 AND idx = ?2",
			       err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, batch_id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)idx);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		read_user_row(s, u_r);
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc != SQLITE_DONE)
		return state_fail(st, "cannot read a batch user", err);
	return 0;
}

void batch_user_row_release(struct batch_user_row *u)
{
	free(u->email);
	free(u->source_user);
	free(u->target_user);
	free(u->status);
	free(u->error);
	memset(u, 0, sizeof(*u));
}

void batch_user_rows_free(struct batch_user_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++)
		batch_user_row_release(&rows[i]);
	free(rows);
}

#define USER_SET \
	"UPDATE batch_user SET status = ?3, error = ?4, pair_id = ?5, items_copied = ?6," \
	" items_existing = ?7, bytes = ?8, folders = ?9, started = ?10, last_synced = ?11," \
	" completed = ?12, duration = ?13 WHERE batch_id = ?1 AND idx = ?2"

/* Run an UPDATE of u's row (USER_SET plus perhaps a condition);
 * *changed_r: whether it matched the row. */
static int user_write(struct state *st, const char *sql, int64_t batch_id,
		      const struct batch_user_row *u, bool *changed_r, struct err *err)
{
	sqlite3_stmt *s = prep(st, sql, err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, batch_id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)u->idx);
	text(s, 3, u->status);
	text(s, 4, u->error);
	sqlite3_bind_int64(s, 5, u->pair_id);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)u->items_copied);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)u->items_existing);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)u->bytes);
	sqlite3_bind_int64(s, 9, (sqlite3_int64)u->folders);
	sqlite3_bind_int64(s, 10, (sqlite3_int64)u->started);
	sqlite3_bind_int64(s, 11, (sqlite3_int64)u->last_synced);
	sqlite3_bind_int64(s, 12, (sqlite3_int64)u->completed);
	sqlite3_bind_double(s, 13, u->duration);
	if (done(st, s, "cannot update a batch user", err) < 0)
		return -1;
	if (changed_r)
		*changed_r = sqlite3_changes(state_sqlite(st)) > 0;
	return 0;
}

int batch_store_user_update(struct state *st, int64_t batch_id, const struct batch_user_row *u,
			    struct err *err)
{
	return user_write(st, USER_SET, batch_id, u, NULL, err);
}

int batch_store_user_update_pass(struct state *st, int64_t batch_id,
				 const struct batch_user_row *u, bool completing, bool *written_r,
				 struct err *err)
{
	/* The condition sits in the UPDATE itself: a read first and a write
	 * after would let another process complete the user in between. */
	*written_r = false;
	return user_write(st,
			  completing ? USER_SET " AND status <> 'Completed'"
				     : USER_SET " AND status NOT IN ('Completed', 'Completing')",
			  batch_id, u, written_r, err);
}

int batch_store_item_add(struct state *st, int64_t batch_id, const struct batch_item_row *it,
			 struct err *err)
{
	sqlite3_stmt *s = prep(st,
			       "INSERT OR REPLACE INTO batch_item (batch_id, idx, folder, uid, kind,"
			       " date, subject, size, reason) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
			       err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, batch_id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)it->idx);
	text(s, 3, it->folder);
	sqlite3_bind_int64(s, 4, it->uid);
	text(s, 5, it->kind);
	text(s, 6, it->date);
	text(s, 7, it->subject);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)it->size);
	text(s, 9, it->reason);
	return done(st, s, "cannot record a skipped message", err);
}

static void read_item_row(sqlite3_stmt *s, void *row)
{
	struct batch_item_row *it = row;
	it->idx = (size_t)sqlite3_column_int64(s, 0);
	it->folder = col(s, 1);
	it->uid = (uint32_t)sqlite3_column_int64(s, 2);
	it->kind = col(s, 3);
	it->date = col(s, 4);
	it->subject = col(s, 5);
	it->size = (uint64_t)sqlite3_column_int64(s, 6);
	it->reason = col(s, 7);
}

int batch_store_items(struct state *st, int64_t batch_id, struct batch_item_row **rows_r,
		      size_t *n_r, struct err *err)
{
	return read_rows(st,
			 "SELECT idx, folder, uid, kind, date, subject, size, reason"
			 " FROM batch_item WHERE batch_id = ?1 ORDER BY idx, folder, uid",
			 batch_id, sizeof(**rows_r), read_item_row, (void **)rows_r, n_r,
			 "cannot read skipped messages", err);
}

void batch_item_rows_free(struct batch_item_row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(rows[i].folder);
		free(rows[i].kind);
		free(rows[i].date);
		free(rows[i].subject);
		free(rows[i].reason);
	}
	free(rows);
}

int batch_store_item_counts(struct state *st, int64_t batch_id, size_t idx, uint64_t *skipped_r,
			    uint64_t *failed_r, struct err *err)
{
	*skipped_r = *failed_r = 0;
	sqlite3_stmt *s = prep(st,
			       "SELECT kind, count(*) FROM batch_item WHERE batch_id = ?1"
			       " AND idx = ?2 GROUP BY kind",
			       err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, batch_id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)idx);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(s, 0);
		uint64_t n = (uint64_t)sqlite3_column_int64(s, 1);
		if (k && strcmp(k, "skipped") == 0)
			*skipped_r = n;
		else
			*failed_r += n;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return state_fail(st, "cannot count skipped messages", err);
	return 0;
}

int batch_store_pair_totals(struct state *st, int64_t pair_id, uint64_t *done_r,
			    uint64_t *bytes_r, uint64_t *folders_r, struct err *err)
{
	*done_r = *bytes_r = *folders_r = 0;
	sqlite3_stmt *s = prep(st,
			       "SELECT (SELECT count(*) FROM folder WHERE pair_id = ?1),"
			       " count(m.src_uid), coalesce(sum(m.size), 0)"
			       " FROM folder f JOIN msg m ON m.folder_id = f.id"
			       " WHERE f.pair_id = ?1 AND m.status = 1",
			       err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, pair_id);
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*folders_r = (uint64_t)sqlite3_column_int64(s, 0);
		*done_r = (uint64_t)sqlite3_column_int64(s, 1);
		*bytes_r = (uint64_t)sqlite3_column_int64(s, 2);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW)
		return state_fail(st, "cannot count a mailbox's messages", err);
	return 0;
}

int batch_store_items_prune(struct state *st, int64_t batch_id, size_t idx, int64_t pair_id,
			    struct err *err)
{
	sqlite3_stmt *s = prep(st,
			       "DELETE FROM batch_item WHERE batch_id = ?1 AND idx = ?2"
			       " AND kind = 'failed' AND EXISTS (SELECT 1 FROM folder f"
			       " JOIN msg m ON m.folder_id = f.id WHERE f.pair_id = ?3"
			       " AND f.source_name = batch_item.folder"
			       " AND m.src_uid = batch_item.uid AND m.status = 1)",
			       err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, batch_id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)idx);
	sqlite3_bind_int64(s, 3, pair_id);
	return done(st, s, "cannot update skipped messages", err);
}
