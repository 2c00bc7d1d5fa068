/* sync_lanes.c - bodies for a target without LITERAL+: spooled lanes.
 *
 * Without LITERAL+ every APPEND waits for the server's "+" before its
 * literal, so a message costs the target a round trip plus its
 * transmission, and nothing of the next one can be sent meanwhile.
 * Streaming would hold the source's FETCH reply still during each wait.
 * So the source's bodies are spooled (memory, or a temporary file for big
 * ones) and queued, and "lanes" (threads, each with its own target
 * connection; lane 0 uses the pass's) take them off the queue in order
 * and APPEND them.  With one lane the target's UIDs keep the source's
 * order; with --append-connections N, N round trips overlap and the
 * order follows completion (INTERNALDATE is kept either way).
 * The source thread only reads and spools; a lane only appends; what
 * they share is the queue, under lanes.lock. */

#include "engine/sync_internal.h"

#include <pthread.h>
#include <stdlib.h>

#include "util/mem.h"
#include "util/spool.h"

struct lane {
	struct lanes *ls;
	struct imap_client *tgt;
	pthread_t thread;
};

static void spooled_free(struct spooled *e)
{
	spool_free(&e->body);
	free(e);
}

static void lanes_fail(struct lanes *ls, const struct err *e)
{
	pthread_mutex_lock(&ls->lock);
	if (!ls->failed) {
		ls->failed = true;
		ls->fail_err = *e;
	}
	pthread_cond_broadcast(&ls->changed);
	pthread_mutex_unlock(&ls->lock);
}

/* Completions arrive on the lanes' threads; the folder's counts are
 * shared. */
static void lane_done(void *ctx, const struct imap_append_result *res, const struct err *e)
{
	struct copy_item *it = ctx;
	struct lanes *ls = it->fr->lanes;
	pthread_mutex_lock(&ls->lock);
	sync_append_done(ctx, res, e);
	pthread_mutex_unlock(&ls->lock);
}

static int lane_data(void *ctx, const uint8_t *data, size_t len, struct err *err)
{
	return imap_client_append_data(ctx, data, len, err);
}

static void *lane_main(void *arg)
{
	struct lane *l = arg;
	struct lanes *ls = l->ls;
	struct folder_run *fr = ls->fr;
	struct err err;
	err_clear(&err);
	for (;;) {
		pthread_mutex_lock(&ls->lock);
		while (!ls->head && !ls->closed && !ls->failed)
			pthread_cond_wait(&ls->changed, &ls->lock);
		struct spooled *e = ls->failed ? NULL : ls->head;
		if (e) {
			ls->head = e->next;
			if (!ls->head)
				ls->tail = NULL;
			ls->queued -= spool_size(e->body);
			ls->queued_mem -= spool_mem(e->body);
			pthread_cond_broadcast(&ls->changed);
		}
		pthread_mutex_unlock(&ls->lock);
		if (!e)
			break;
		struct copy_item *it = e->it;
		int r = imap_client_append_begin(l->tgt, fr->entry->target_name, it->flags, it->date,
						 spool_size(e->body), lane_done, it, &err);
		if (r == 0 && (spool_replay(e->body, lane_data, l->tgt, &err) < 0 ||
			       imap_client_append_end(l->tgt, &err) < 0))
			r = -1;
		spooled_free(e);
		if (r < 0)
			goto fail;
		if (r == 0)
			sync_step(fr->run);
	}
	/* the last replies; a refused message was handed to lane_done */
	if (imap_client_wait_all(l->tgt, &err) < 0 && err.kind != ERR_MESSAGE)
		goto fail;
	return NULL;
fail:
	/* APPENDs still in flight point at this folder's items, and one may
	 * be half-sent: the connection is done for (no callback fires
	 * later, when the items are gone); a later folder opens a new one */
	imap_client_kill(l->tgt, "an APPEND could not be finished");
	lanes_fail(ls, &err);
	return NULL;
}

void sync_lanes_close(struct sync_run *run)
{
	for (unsigned i = 0; i < run->n_lane_tgt; i++)
		imap_client_logout(&run->lane_tgt[i]);
	run->n_lane_tgt = 0;
}

int sync_spool_begin(struct folder_run *fr, struct copy_item *it, uint64_t size, struct err *err)
{
	struct lanes *ls = fr->lanes;
	pthread_mutex_lock(&ls->lock);
	bool in_memory = size <= SPOOL_MEM_ONE && ls->queued_mem + size <= SPOOL_MEM_ALL;
	bool failed = ls->failed;
	if (failed)
		*err = ls->fail_err;
	pthread_mutex_unlock(&ls->lock);
	if (failed)
		return -1;
	ls->cur = xcalloc(1, sizeof(*ls->cur));
	ls->cur->it = it;
	ls->cur->body = spool_new(in_memory ? (size_t)size : 0);
	return 0;
}

int sync_spool_end(struct folder_run *fr, struct err *err)
{
	struct lanes *ls = fr->lanes;
	struct spooled *e = ls->cur;
	ls->cur = NULL;
	uint64_t size = spool_size(e->body);
	pthread_mutex_lock(&ls->lock);
	while (!ls->failed && ls->queued && ls->queued + size > SPOOL_QUEUE_MAX)
		pthread_cond_wait(&ls->changed, &ls->lock);
	bool failed = ls->failed;
	if (failed) {
		*err = ls->fail_err;
	} else {
		if (ls->tail)
			ls->tail->next = e;
		else
			ls->head = e;
		ls->tail = e;
		ls->queued += size;
		ls->queued_mem += spool_mem(e->body);
		pthread_cond_broadcast(&ls->changed);
	}
	pthread_mutex_unlock(&ls->lock);
	if (failed) {
		spooled_free(e);
		return -1;
	}
	return 0;
}

/* Lane i's target connection: the pass's for lane 0, else an extra one
 * opened on first use.  NULL when it cannot be opened (fewer lanes work
 * on; the first such failure is a warning). */
static struct imap_client *lane_client(struct sync_run *run, unsigned i)
{
	if (i == 0)
		return run->tgt;
	struct imap_client **slot = &run->lane_tgt[i - 1];
	if (i > run->n_lane_tgt)
		run->n_lane_tgt = i;
	if (*slot && !imap_client_is_dead(*slot))
		return *slot;
	/* never opened, or dropped since (an idle timeout, a failed folder) */
	imap_client_free(slot);
	struct err e;
	err_clear(&e);
	*slot = sync_connect_side(run, &run->o->target, &e);
	if (!*slot && !run->lane_warned) {
		char text[1200];
		sync_warn(run, NULL,
			  "an extra target connection for APPENDs could not be opened: %s",
			  err_format(&e, text, sizeof(text)));
		run->lane_warned = true;
	}
	return *slot;
}

/* A round for a target without LITERAL+: the source's bodies are spooled
 * and lanes append them (see above). */
int sync_transfer_spooled(struct folder_run *fr, unsigned n_lanes, struct err *err)
{
	struct sync_run *run = fr->run;
	struct lanes ls = { .fr = fr, .lock = PTHREAD_MUTEX_INITIALIZER };
	struct lane lane[MAX_APPEND_CONNECTIONS];
	unsigned started = 0;
	pthread_cond_init(&ls.changed, NULL);
	fr->lanes = &ls;
	for (unsigned i = 0; i < n_lanes; i++) {
		struct imap_client *c = lane_client(run, i);
		if (!c)
			break;
		lane[started] = (struct lane){ .ls = &ls, .tgt = c };
		if (pthread_create(&lane[started].thread, NULL, lane_main, &lane[started]) != 0)
			break;
		started++;
	}
	int r = 0;
	if (!started)
		r = err_set(err, ERR_INTERNAL, "cannot start a thread to append messages");
	if (r == 0 &&
	    (sync_send_body_fetches(fr, err) < 0 || imap_client_wait_all(run->src, err) < 0))
		r = -1;
	pthread_mutex_lock(&ls.lock);
	/* after a broken source too: what is queued is whole, it goes in */
	ls.closed = true;
	pthread_cond_broadcast(&ls.changed);
	pthread_mutex_unlock(&ls.lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(lane[i].thread, NULL);
	if (ls.failed) {
		run->lane_broke = true;
		if (r == 0)
			*err = ls.fail_err;
		r = -1;
	}
	/* a body cut short by a broken source, or bodies no lane took */
	if (ls.cur)
		spooled_free(ls.cur);
	while (ls.head) {
		struct spooled *e = ls.head;
		ls.head = e->next;
		spooled_free(e);
	}
	fr->lanes = NULL;
	pthread_cond_destroy(&ls.changed);
	pthread_mutex_destroy(&ls.lock);
	return r;
}
