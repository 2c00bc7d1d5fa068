#include "report/batch_report.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"
#include "util/mem.h"

/* The endpoint lines from the stored settings ("source=..."). */
static char *config_value(const char *config, const char *key)
{
	size_t kl = strlen(key);
	for (const char *p = config; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=')
			return xstrndup(p + kl + 1, len - kl - 1);
		p = nl ? nl + 1 : NULL;
	}
	return xstrdup("");
}

/* No process runs a pass of the batch: users (and the batch) it left
 * running are shown as Interrupted. */
static void show_interrupted(struct batch_report *br)
{
	bool any = false;
	for (size_t i = 0; i < br->n_users; i++) {
		struct batch_user_row *u = &br->users[i];
		if (batch_status_is_running(u->status)) {
			free(u->status);
			u->status = xstrdup("Interrupted");
			any = true;
		}
	}
	if (!any && !batch_status_is_running(br->batch.status))
		return;
	const char **sts = xcalloc(br->n_users + 1, sizeof(*sts));
	for (size_t i = 0; i < br->n_users; i++)
		sts[i] = br->users[i].status;
	const char *status = batch_status_from_users(sts, br->n_users, BATCH_PASS_SYNC);
	free(sts);
	/* killed between users: none of them running, the pass unfinished */
	if (batch_status_is_running(status))
		status = "Interrupted";
	free(br->batch.status);
	br->batch.status = xstrdup(status);
}

int batch_report_load(struct state *st, const char *name, struct batch_report *br,
		      struct err *err)
{
	memset(br, 0, sizeof(*br));
	int found = batch_store_get(st, name, &br->batch, err);
	if (found <= 0)
		return found;
	/* Held while the users are read, so that no pass starts meanwhile:
	 * with it, a running status can only be a dead process's leftover. */
	int hold_fd;
	bool idle = batch_hold(state_path(st), br->batch.id, &hold_fd);
	if (batch_store_users(st, br->batch.id, &br->users, &br->n_users, err) < 0 ||
	    batch_store_items(st, br->batch.id, &br->items, &br->n_items, err) < 0) {
		batch_hold_release(&hold_fd);
		batch_report_release(br);
		return -1;
	}
	batch_hold_release(&hold_fd);
	if (idle)
		show_interrupted(br);
	br->ru = xcalloc(br->n_users + 1, sizeof(*br->ru));
	for (size_t i = 0; i < br->n_users; i++) {
		const struct batch_user_row *u = &br->users[i];
		struct report_user *r = &br->ru[i];
		r->email = u->email;
		r->source_user = u->source_user;
		r->status = u->status;
		r->error = u->error[0] ? u->error : NULL;
		r->items_synced = u->items_copied;
		r->bytes = u->bytes;
		r->folders = u->folders;
		r->started = u->started;
		r->last_synced = u->last_synced;
		r->completed = u->completed;
		r->duration_s = u->duration;
		if (batch_store_item_counts(st, br->batch.id, u->idx, &r->items_skipped,
					    &r->items_failed, err) < 0) {
			batch_report_release(br);
			return -1;
		}
	}
	br->ri = xcalloc(br->n_items + 1, sizeof(*br->ri));
	for (size_t i = 0; i < br->n_items; i++) {
		const struct batch_item_row *it = &br->items[i];
		struct report_item *r = &br->ri[i];
		r->user = it->idx < br->n_users ? br->users[it->idx].email : "";
		r->folder = it->folder;
		r->uid = it->uid;
		r->date = it->date[0] ? it->date : NULL;
		r->subject = it->subject;
		r->size = it->size;
		r->reason = it->reason;
	}
	br->source = config_value(br->batch.config, "source");
	br->target = config_value(br->batch.config, "target");
	br->r = (struct report){
		.batch = br->batch.name,
		.status = br->batch.status,
		.source = br->source,
		.target = br->target,
		.created = br->batch.created,
		.generated = time(NULL),
		.users = br->ru,
		.n_users = br->n_users,
		.items = br->ri,
		.n_items = br->n_items,
	};
	return 1;
}

void batch_report_release(struct batch_report *br)
{
	batch_row_release(&br->batch);
	batch_user_rows_free(br->users, br->n_users);
	batch_item_rows_free(br->items, br->n_items);
	free(br->ru);
	free(br->ri);
	free(br->source);
	free(br->target);
	memset(br, 0, sizeof(*br));
}
