/* sync.c - one pass over a mailbox pair.  See sync.h for the contract.
 *
 * Per folder:
 *   1. EXAMINE the source.  Nothing new (same UIDNEXT) and no flag change
 *      (same HIGHESTMODSEQ) and no intent left over: done, the target is
 *      not even selected.
 *   2. SELECT the target.  A changed UIDVALIDITY on either side makes the
 *      state for this folder worthless: forget it and match by fingerprint.
 *   3. Matching (first time, leftover intents, UIDVALIDITY change): list
 *      the target folder's fingerprints into the state's tfp table and
 *      claim them: first for intents, then for each new source message.
 *   4. Flags of messages copied before: fetch source FLAGS (CHANGEDSINCE
 *      the stored modseq when the server has CONDSTORE), apply the
 *      difference to the target copy (+FLAGS/-FLAGS, so flags the user set
 *      on the target meanwhile survive).
 *   5. New messages, in UID windows: fetch metadata, decide (skip / already
 *      there / copy), commit intents, then pipeline the source FETCHes of
 *      bodies and stream each body into a target APPEND.  Completions are
 *      recorded; the high-water mark moves only after a whole window.
 *
 * The pass is split over four files that share sync_internal.h: this one
 * (the pass, one folder, the folder workers, events and progress),
 * sync_flags.c (flag lists, flag changes), sync_copy.c (new messages:
 * metadata windows, streamed APPENDs and MULTIAPPENDs) and sync_lanes.c
 * (spooled lanes for a target without LITERAL+).
 */
#include "engine/sync.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/fingerprint.h"
#include "engine/mailbox_list.h"
#include "engine/sync_internal.h"
#include "util/buf.h"
#include "util/lockfile.h"
#include "util/mem.h"

/* ---------- events ---------- */

void sync_emit(struct sync_run *run, const struct sync_event *ev)
{
	if (!run->o->event)
		return;
	struct sync_event e = *ev;
	e.state = run->st;
	/* the caller's callback need not be thread-safe */
	pthread_mutex_lock(&run->sh->lock);
	run->o->event(run->o->event_ctx, &e);
	pthread_mutex_unlock(&run->sh->lock);
}

/* A durable step happened (a commit, an APPEND sent whole).  Tests set
 * crash_after to die right after the Nth one, then check that the next
 * run ends with every message exactly once (isync's approach). */
void sync_step(struct sync_run *run)
{
	if (!run->o->crash_after)
		return;
	pthread_mutex_lock(&run->sh->lock);
	bool die_now = ++run->sh->steps == run->o->crash_after;
	pthread_mutex_unlock(&run->sh->lock);
	if (die_now)
		_exit(99);
}

int sync_commit(struct sync_run *run, struct err *err)
{
	if (state_commit(run->st, err) < 0)
		return -1;
	sync_step(run);
	return 0;
}

/* Count msgs/bytes as handled in this pass; tell the caller when a
 * message completes, or every MiB of a body in flight. */
void sync_count_handled(struct sync_run *run, const char *folder, uint64_t msgs, uint64_t bytes)
{
	struct sync_shared *sh = run->sh;
	pthread_mutex_lock(&sh->lock);
	sh->handled_msgs += msgs;
	sh->handled_bytes += bytes;
	bool tell = msgs > 0 || sh->handled_bytes - sh->bytes_at_last_event >= (1u << 20);
	if (tell)
		sh->bytes_at_last_event = sh->handled_bytes;
	struct sync_event ev = {
		.type = SYNC_EV_PROGRESS,
		.folder = folder,
		.count = sh->handled_msgs,
		.bytes = sh->handled_bytes,
		.state = run->st,
	};
	if (tell && run->o->event)
		run->o->event(run->o->event_ctx, &ev);
	pthread_mutex_unlock(&sh->lock);
}

/* Take back what sync_count_handled() counted for messages that will be
 * handled again (a refused MULTIAPPEND goes over the folder once more),
 * so progress never runs past its total. */
void sync_uncount_handled(struct folder_run *fr, uint64_t msgs, uint64_t bytes)
{
	struct sync_shared *sh = fr->run->sh;
	pthread_mutex_lock(&sh->lock);
	sh->handled_msgs -= msgs < sh->handled_msgs ? msgs : sh->handled_msgs;
	sh->handled_bytes -= bytes < sh->handled_bytes ? bytes : sh->handled_bytes;
	sh->bytes_at_last_event = sh->handled_bytes;
	pthread_mutex_unlock(&sh->lock);
	fr->handled_msgs -= msgs < fr->handled_msgs ? msgs : fr->handled_msgs;
	fr->handled_bytes -= bytes < fr->handled_bytes ? bytes : fr->handled_bytes;
}

void sync_handled(struct sync_run *run, const char *folder, uint64_t size)
{
	sync_count_handled(run, folder, 1, size);
}

bool sync_stop_requested(struct sync_run *run, struct err *err)
{
	pthread_mutex_lock(&run->sh->lock);
	bool other_failed = run->sh->stop;
	pthread_mutex_unlock(&run->sh->lock);
	if (other_failed) {
		err_set(err, ERR_STOPPED, "stopped: another connection of this mailbox failed");
		return true;
	}
	if (!run->o->should_stop || !run->o->should_stop(run->o->stop_ctx))
		return false;
	err_set(err, ERR_STOPPED, "stopped on request");
	err_hint(err, "run the same command again to go on where it stopped");
	return true;
}

void sync_warn(struct sync_run *run, const char *folder, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	struct sync_event ev = { .type = SYNC_EV_WARNING, .folder = folder, .text = text };
	sync_emit(run, &ev);
}

/* ---------- folder setup ---------- */

static int forget_folder_state(struct folder_run *fr, const char *why, struct err *err)
{
	struct sync_run *run = fr->run;
	sync_warn(run, fr->entry->source_name, "%s; matching messages by fingerprint", why);
	if (state_folder_forget_messages(run->st, fr->f.id, err) < 0)
		return -1;
	fr->f.src_uidnext = 0;
	fr->f.src_modseq = 0;
	return 0;
}

/* Load the target folder's fingerprints into the tfp table.  They arrive with a FETCH of the whole folder,
 * which can take long from a distant server: they are written in short
 * transactions of TFP_CHUNK rows between reads, never one transaction
 * held across the network (a batch's users share the database).  The
 * table is scratch: a pass that dies half-way fills it again. */
#define TFP_CHUNK 2000

struct tfp_load {
	struct folder_run *fr;
	uint32_t uids[TFP_CHUNK];
	char fps[TFP_CHUNK][STATE_FP_LEN + 1];
	size_t queued;
};

static int tfp_flush(struct tfp_load *tl, struct err *err)
{
	struct state *st = tl->fr->run->st;
	if (!tl->queued)
		return 0;
	if (state_begin(st, err) < 0)
		return -1;
	for (size_t i = 0; i < tl->queued; i++) {
		if (state_tfp_add(st, tl->fr->f.id, tl->fps[i], tl->uids[i], err) < 0) {
			state_rollback(st);
			return -1;
		}
	}
	tl->queued = 0;
	return sync_commit(tl->fr->run, err);
}

static int tfp_message(void *ctx, const struct imap_fetch_msg *m, struct err *err)
{
	struct tfp_load *tl = ctx;
	fingerprint_compute(m->headers, m->headers_len, m->size, tl->fps[tl->queued]);
	tl->uids[tl->queued++] = m->uid;
	return tl->queued == TFP_CHUNK ? tfp_flush(tl, err) : 0;
}

static int load_target_fingerprints(struct folder_run *fr, bool all, struct err *err)
{
	struct sync_run *run = fr->run;
	struct state *st = run->st;
	struct tfp_load *tl = xcalloc(1, sizeof(*tl));
	struct imap_fetch_handler h = { .message = tfp_message, .ctx = tl };
	int r = -1;

	tl->fr = fr;
	if (state_begin(st, err) < 0)
		goto out;
	if (state_tfp_clear(st, fr->f.id, err) < 0 || sync_commit(run, err) < 0) {
		state_rollback(st);
		goto out;
	}
	/* all: the folder changed since it was selected (our own APPENDs) */
	if (all || fr->tinfo.exists > 0) {
		if (imap_client_fetch_send(run->tgt, "1:*", IMAP_FETCH_SIZE | IMAP_FETCH_HEADERS,
					   FINGERPRINT_FIELDS, 0, &h, err) < 0 ||
		    imap_client_wait_all(run->tgt, err) < 0 || tfp_flush(tl, err) < 0)
			goto out;
	}
	if (state_begin(st, err) < 0)
		goto out;
	if (state_tfp_claim_done(st, fr->f.id, err) < 0 || sync_commit(run, err) < 0) {
		state_rollback(st);
		goto out;
	}
	fr->matching = true;
	r = 0;
out:
	free(tl);
	return r;
}

/* Intents left over from an interrupted pass: those whose copy reached the
 * target become done; the rest stay pending and are copied again. */
struct pending_list {
	uint32_t *uids;
	char (*fps)[STATE_FP_LEN + 1];
	char **flags;
	size_t n, alloc;
};

static int collect_pending(void *ctx, const struct state_msg *m, struct err *err)
{
	struct pending_list *pl = ctx;
	(void)err;
	if (pl->n == pl->alloc) {
		pl->alloc = pl->alloc ? pl->alloc * 2 : 64;
		pl->uids = xrealloc(pl->uids, pl->alloc * sizeof(*pl->uids));
		pl->fps = xrealloc(pl->fps, pl->alloc * sizeof(*pl->fps));
		pl->flags = xrealloc(pl->flags, pl->alloc * sizeof(*pl->flags));
	}
	pl->flags[pl->n] = xstrdup(m->flags);
	pl->uids[pl->n] = m->src_uid;
	memcpy(pl->fps[pl->n], m->fp, sizeof(pl->fps[0]));
	pl->n++;
	return 0;
}

static int resolve_pending(struct folder_run *fr, uint32_t *lowest_r, struct err *err)
{
	struct state *st = fr->run->st;
	struct pending_list pl = { 0 };
	int r = -1;
	*lowest_r = 0;
	if (state_msg_each(st, fr->f.id, 0, 0, MSG_PENDING, collect_pending, &pl, err) < 0)
		goto out;
	if (state_begin(st, err) < 0)
		goto out;
	for (size_t i = 0; i < pl.n; i++) {
		uint32_t tuid = 0;
		int c = state_tfp_claim(st, fr->f.id, pl.fps[i], &tuid, err);
		if (c < 0 || (c == 1 && state_msg_done(st, fr->f.id, pl.uids[i], tuid, err) < 0)) {
			state_rollback(st);
			goto out;
		}
		/* The copy got there, but the APPEND's end was not seen: a
		 * server that broke off in between may have stored it without
		 * its flags.  Set them as intended. */
		if (c == 1 && tuid && !fr->run->o->dry_run) {
			char set[16];
			snprintf(set, sizeof(set), "%u", tuid);
			if (imap_client_store_send(fr->run->tgt, set, '=', pl.flags[i], err) < 0) {
				state_rollback(st);
				goto out;
			}
		}
		if (c == 0 && (*lowest_r == 0 || pl.uids[i] < *lowest_r))
			*lowest_r = pl.uids[i];
	}
	r = sync_commit(fr->run, err);
out:
	for (size_t i = 0; i < pl.n; i++)
		free(pl.flags[i]);
	free(pl.flags);
	free(pl.uids);
	free(pl.fps);
	return r;
}

/* ---------- one folder ---------- */

static const struct folder_size *folder_size_find(const struct sync_run *run, const char *name)
{
	for (size_t i = 0; i < run->n_sizes; i++)
		if (strcmp(run->sizes[i].name, name) == 0)
			return &run->sizes[i];
	return NULL;
}

static void status_cb(void *ctx, const char *name, const struct imap_status_info *st)
{
	struct sync_run *run = ctx;
	for (size_t i = 0; i < run->n_sizes; i++) {
		if (strcmp(run->sizes[i].name, name) == 0) {
			run->sizes[i].messages = st->messages;
			run->sizes[i].bytes = st->size;
			run->sizes[i].st = *st;
			run->sizes[i].known = true;
		}
	}
}

/* STATUS every selected source folder: totals for progress, and the
 * --max-items check before anything is copied. */
static int preflight(struct sync_run *run, const struct folder_plan *plan, struct err *err)
{
	const char **names = xcalloc(plan->count + 1, sizeof(*names));
	run->sizes = xcalloc(plan->count + 1, sizeof(*run->sizes));
	for (size_t i = 0; i < plan->count; i++) {
		const struct folder_plan_entry *e = &plan->items[i];
		if (e->action != FP_COPY || (e->source_attrs & (FA_NOSELECT | FA_NONEXISTENT)))
			continue;
		run->sizes[run->n_sizes].name = xstrdup(e->source_name);
		names[run->n_sizes++] = e->source_name;
	}
	int r = imap_client_status(run->src, names, run->n_sizes, status_cb, run, err);
	free(names);
	if (r < 0)
		return -1;
	uint64_t msgs = 0, bytes = 0;
	for (size_t i = 0; i < run->n_sizes; i++) {
		msgs += run->sizes[i].messages;
		bytes += run->sizes[i].bytes;
	}
	struct sync_event ev = { .type = SYNC_EV_TOTALS, .count = msgs, .bytes = bytes };
	sync_emit(run, &ev);
	if (run->o->max_items && msgs > run->o->max_items) {
		err_set(err, ERR_ACCOUNT,
			"the source mailbox holds %llu messages, more than --max-items %llu; "
			"nothing was copied",
			(unsigned long long)msgs, (unsigned long long)run->o->max_items);
		err_hint(err, "raise --max-items, or split the mailbox with --include/--exclude");
		err_where(err, SIDE_SOURCE, run->o->source.host, run->o->source.user, NULL);
		return -1;
	}
	return 0;
}

static int sync_folder(struct sync_run *run, const struct folder_plan_entry *e, struct err *err)
{
	const struct sync_opts *o = run->o;
	struct folder_run fr = { .run = run, .entry = e };
	buf_init(&fr.dropped_keywords, 4096);
	int r = -1;

	if (state_folder_get(run->st, run->pair_id, e->source_name, e->target_name, &fr.f,
			     err) < 0)
		goto out;
	/* The preflight STATUS already says whether anything changed since
	 * the last pass: then neither side needs a SELECT at all. */
	const struct folder_size *pre = folder_size_find(run, e->source_name);
	if (pre && pre->known && pre->st.uidvalidity == fr.f.src_uidvalidity &&
	    pre->st.uidnext && pre->st.uidnext == fr.f.src_uidnext && pre->st.highestmodseq &&
	    pre->st.highestmodseq == fr.f.src_modseq) {
		struct state_counts c0;
		if (state_msg_counts(run->st, fr.f.id, &c0, err) < 0)
			goto out;
		if (!c0.pending && !c0.failed) {
			r = 0;
			goto done;
		}
	}
	if (imap_client_select(run->src, e->source_name, true, &fr.sinfo, err) < 0)
		goto out;
	struct sync_event start = { .type = SYNC_EV_FOLDER_START, .folder = e->source_name,
				    .target_folder = e->target_name, .count = fr.sinfo.exists };
	sync_emit(run, &start);

	struct state_counts counts;
	if (state_msg_counts(run->st, fr.f.id, &counts, err) < 0)
		goto out;
	bool need_match = fr.f.src_uidvalidity == 0 || counts.pending > 0;
	uint32_t lowest_failed = 0;
	if (counts.failed &&
	    state_msg_lowest(run->st, fr.f.id, MSG_FAILED, &lowest_failed, err) < 0)
		goto out;
	if (fr.f.src_uidvalidity && fr.f.src_uidvalidity != fr.sinfo.uidvalidity) {
		if (forget_folder_state(&fr, "the source folder's UIDVALIDITY changed", err) < 0)
			goto out;
		need_match = true;
	}
	/* Nothing new, no flag change, nothing pending: leave the target alone. */
	if (!need_match && !counts.failed && fr.sinfo.uidnext &&
	    fr.sinfo.uidnext == fr.f.src_uidnext &&
	    fr.sinfo.highestmodseq && fr.sinfo.highestmodseq == fr.f.src_modseq) {
		r = 0;
		goto done;
	}
	if (!e->target_exists && o->dry_run) {
		/* target folder does not exist yet: everything would be copied */
		memset(&fr.tinfo, 0, sizeof(fr.tinfo));
		fr.tinfo.keywords_allowed = true;
	} else {
		if (imap_client_select(run->tgt, e->target_name, o->dry_run, &fr.tinfo, err) < 0)
			goto out;
		if (fr.f.tgt_uidvalidity && fr.f.tgt_uidvalidity != fr.tinfo.uidvalidity) {
			if (forget_folder_state(&fr, "the target folder's UIDVALIDITY changed",
						err) < 0)
				goto out;
			need_match = true;
		}
	}
	uint32_t start_uid = fr.f.src_uidnext;
	if (need_match) {
		if (load_target_fingerprints(&fr, false, err) < 0)
			goto out;
		uint32_t lowest = 0;
		if (resolve_pending(&fr, &lowest, err) < 0)
			goto out;
		if (lowest && (start_uid == 0 || lowest < start_uid))
			start_uid = lowest;
	}
	/* messages the target refused last time are tried again */
	if (lowest_failed && (start_uid == 0 || lowest_failed < start_uid))
		start_uid = lowest_failed;
	if (sync_flags(&fr, err) < 0)
		goto out;
	int cn = sync_copy_new(&fr, start_uid, err);
	if (cn < 0)
		goto out;
	if (cn == 1) {
		/* pending messages of a refused MULTIAPPEND: match and redo */
		if (load_target_fingerprints(&fr, true, err) < 0)
			goto out;
		uint32_t lowest = 0;
		if (resolve_pending(&fr, &lowest, err) < 0)
			goto out;
		start_uid = lowest ? lowest : fr.f.src_uidnext;
		if (sync_copy_new(&fr, start_uid, err) != 0) {
			if (err->kind == ERR_NONE)
				err_set(err, ERR_INTERNAL, "MULTIAPPEND fallback failed");
			goto out;
		}
	}
	if (imap_client_wait_all(run->tgt, err) < 0)
		goto out;
	if (fr.dropped_keywords.len)
		sync_warn(
		    run, e->source_name,
		    "the target folder does not accept these keywords; they were not copied: %s",
		    buf_cstr(&fr.dropped_keywords));
	if (!o->dry_run) {
		fr.f.src_uidvalidity = fr.sinfo.uidvalidity;
		if (fr.sinfo.uidnext)
			fr.f.src_uidnext = fr.sinfo.uidnext;
		fr.f.src_modseq = fr.sinfo.highestmodseq;
		fr.f.tgt_uidvalidity = fr.tinfo.uidvalidity;
		if (state_folder_update(run->st, &fr.f, err) < 0 || (sync_step(run), 0))
			goto out;
		if (fr.matching && state_tfp_clear(run->st, fr.f.id, err) < 0)
			goto out;
	}
	r = 0;
done:;
	/* Everything in the folder is accounted for now, unchanged messages
	 * included, so the pass's progress reaches its total. */
	const struct folder_size *fs = folder_size_find(run, e->source_name);
	if (fs && fr.handled_msgs < fs->messages)
		sync_count_handled(run, e->source_name, fs->messages - fr.handled_msgs,
				   fs->bytes > fr.handled_bytes ? fs->bytes - fr.handled_bytes : 0);
	struct sync_event done = { .type = SYNC_EV_FOLDER_DONE, .folder = e->source_name,
				   .target_folder = e->target_name, .count = fr.copied };
	sync_emit(run, &done);
out:
	if (r < 0)
		err_where(err, SIDE_NONE, NULL, NULL, e->source_name);
	/* APPENDs still in flight point at this folder's items, and one may
	 * be stuck half-sent (its source broke): the target connection
	 * cannot be trusted any more.  Drop it before the items go. */
	if (r < 0 && run->tgt && imap_client_in_flight(run->tgt))
		imap_client_kill(run->tgt, "the folder's copy was interrupted");
	sync_items_free(&fr);
	free(fr.items);
	sync_groups_free(&fr);
	sync_flag_updates_free(&fr);
	free(fr.flag_updates);
	buf_release(&fr.dropped_keywords);
	return r;
}

/* ---------- folders ---------- */


static void connected(struct sync_run *run, enum side side, const struct imap_client_opts *o)
{
	char text[256];
	snprintf(text, sizeof(text), "%s:%u as %s", o->host, (unsigned)o->port, o->user);
	struct sync_event ev = { .type = SYNC_EV_CONNECTED, .side = side, .text = text };
	sync_emit(run, &ev);
}

struct vanished_ctx {
	struct sync_run *run;
	const struct folder_list *source;
};

static void vanished_cb(void *ctx, const char *name)
{
	struct vanished_ctx *vc = ctx;
	const struct folder_info *fi = folder_list_find(vc->source, name);
	if (!fi || (fi->attrs & FA_NONEXISTENT))
		sync_warn(vc->run, name,
			  "was copied before but is gone from the source (deleted or renamed); its "
			  "copy on the target is kept");
}

/* Folders copied by earlier passes that the source no longer has. */
static void report_vanished(struct sync_run *run, const struct folder_list *source,
			    struct err *err)
{
	struct vanished_ctx vc = { run, source };
	struct err ignore;
	(void)err;
	state_folder_names(run->st, run->pair_id, vanished_cb, &vc, &ignore);
}

static bool fatal_kind(enum err_kind k)
{
	return k == ERR_ACCOUNT || k == ERR_TRANSIENT || k == ERR_CONFIG || k == ERR_INTERNAL;
}

/* Log in, and turn on compression when asked for and offered. */
struct imap_client *sync_connect_side(struct sync_run *run, const struct imap_client_opts *co,
				      struct err *err)
{
	struct imap_client_opts numbered = *co;
	pthread_mutex_lock(&run->sh->lock);
	numbered.trace_no = ++run->sh->conns_opened[co->side == SIDE_TARGET];
	pthread_mutex_unlock(&run->sh->lock);
	struct imap_client *c = imap_client_connect(&numbered, err);
	if (c && run->o->compress && imap_client_compress(c, err) < 0)
		imap_client_free(&c);
	return c;
}

/* Take folders off the shared list until it is empty or someone failed
 * for good. */
static void sync_folders(struct sync_run *run)
{
	struct sync_shared *sh = run->sh;
	for (;;) {
		pthread_mutex_lock(&sh->lock);
		const struct folder_plan_entry *e =
			!sh->stop && sh->next < sh->n_todo ? sh->todo[sh->next++] : NULL;
		pthread_mutex_unlock(&sh->lock);
		if (!e)
			return;
		struct err ferr;
		err_clear(&ferr);
		if (sync_folder(run, e, &ferr) == 0)
			continue;
		if (imap_client_is_dead(run->src) || imap_client_is_dead(run->tgt) ||
		    run->lane_broke || ferr.kind == ERR_INTERNAL || ferr.kind == ERR_ACCOUNT ||
		    ferr.kind == ERR_STOPPED) {
			pthread_mutex_lock(&sh->lock);
			if (!sh->has_fatal) {
				sh->fatal = ferr;
				sh->has_fatal = true;
			}
			sh->stop = true;
			pthread_mutex_unlock(&sh->lock);
			return;
		}
		char text[1200];
		sync_warn(run, e->source_name, "%s", err_format(&ferr, text, sizeof(text)));
		run->stats->folders_failed++;
	}
}

/* An extra connection pair for --connections-per-user: its own clients
 * and state handle, the shared folder list. */
struct folder_worker {
	struct sync_run run;
	struct sync_stats stats;
	pthread_t thread;
};

static void *folder_worker_main(void *arg)
{
	struct folder_worker *w = arg;
	struct sync_run *run = &w->run;
	const struct sync_opts *o = run->o;
	struct err e;
	err_clear(&e);
	run->src = sync_connect_side(run, &o->source, &e);
	if (run->src)
		run->tgt = sync_connect_side(run, &o->target, &e);
	if (run->tgt)
		run->st = state_open(state_path(o->state), &e);
	if (run->st) {
		sync_folders(run);
	} else {
		/* fewer connections is not fatal: the others do the work */
		char text[1200];
		sync_warn(run, NULL, "an extra connection could not be opened: %s",
			  err_format(&e, text, sizeof(text)));
	}
	state_close(&run->st);
	imap_client_logout(&run->src);
	imap_client_logout(&run->tgt);
	sync_lanes_close(run);
	return NULL;
}

static void stats_add(struct sync_stats *t, const struct sync_stats *s)
{
	t->folders_failed += s->folders_failed;
	t->msgs_copied += s->msgs_copied;
	t->msgs_existing += s->msgs_existing;
	t->msgs_skipped += s->msgs_skipped;
	t->msgs_failed += s->msgs_failed;
	t->flags_updated += s->flags_updated;
	t->bytes_copied += s->bytes_copied;
	t->msgs_planned += s->msgs_planned;
}

int sync_run(const struct sync_opts *o, struct sync_stats *stats_r, struct err *err)
{
	struct sync_shared sh = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct sync_run run = { .o = o, .sh = &sh, .stats = stats_r, .err = err, .st = o->state };
	struct folder_list sl = { 0 }, tl = { 0 };
	struct folder_plan plan = { 0 };
	struct folder_worker *workers = NULL;
	size_t n_workers = 0;
	int r = -1;
	int lock_fd = -1;

	memset(stats_r, 0, sizeof(*stats_r));
	/* Two processes on one pair could both copy a message before either
	 * records it: one at a time, per state database and pair. */
	if (!o->dry_run) {
		uint64_t h = 1469598103934665603ull; /* FNV-1a over both keys */
		for (const char *k = o->source_key; *k; k++)
			h = (h ^ (unsigned char)*k) * 1099511628211ull;
		h = (h ^ '\n') * 1099511628211ull;
		for (const char *k = o->target_key; *k; k++)
			h = (h ^ (unsigned char)*k) * 1099511628211ull;
		char *path = xasprintf("%s.lock", state_path(o->state));
		char *what = xasprintf("the mailbox pair %s -> %s", o->source_key, o->target_key);
		int lr = lockfile_take(path, h, what, &lock_fd, err);
		free(path);
		free(what);
		if (lr < 0)
			return -1;
	}
	run.src = sync_connect_side(&run, &o->source, err);
	if (!run.src)
		goto out;
	connected(&run, SIDE_SOURCE, &o->source);
	run.tgt = sync_connect_side(&run, &o->target, err);
	if (!run.tgt)
		goto out;
	connected(&run, SIDE_TARGET, &o->target);
	stats_r->connected = true;
	if (state_pair_get(o->state, o->source_key, o->target_key, &run.pair_id, err) < 0)
		goto out;
	if (mailbox_list_read(run.src, &sl, err) < 0 || mailbox_list_read(run.tgt, &tl, err) < 0)
		goto out;
	if (folder_plan_build(&sl, &tl, &o->rules, &plan, err) < 0)
		goto out;
	if (preflight(&run, &plan, err) < 0)
		goto out;
	if (!(imap_client_caps(run.tgt) & IMAP_CAP_LITERALPLUS) && o->append_connections <= 1 &&
	    !o->dry_run)
		sync_warn(
		    &run, NULL,
		    "the target offers no LITERAL+: each new message waits one round trip for the "
		    "server's go-ahead; with a distant target, --append-connections 4 overlaps "
		    "those waits");
	report_vanished(&run, &sl, err);

	for (size_t i = 0; i < plan.count; i++) {
		const struct folder_plan_entry *e = &plan.items[i];
		const char *what = e->action == FP_COPY		     ? "copy"
				   : e->action == FP_SKIP_EXCLUDED    ? "excluded"
				   : e->action == FP_SKIP_NONEXISTENT ? "does not exist"
								      : "conflict";
		char text[1200];
		snprintf(text, sizeof(text), "%s%s%s", what, e->note ? ": " : "",
			 e->note ? e->note : "");
		struct sync_event ev = { .type = SYNC_EV_FOLDER_PLAN, .folder = e->source_name,
					 .target_folder = e->target_name, .text = text };
		sync_emit(&run, &ev);
		if (e->action == FP_CONFLICT) {
			sync_warn(&run, e->source_name, "not copied: %s",
				  e->note ? e->note : "name conflict");
			stats_r->folders_failed++;
		}
	}

	/* Folders and subscriptions first, parents before children, on one
	 * connection; then the folders' messages, on as many as allowed. */
	sh.todo = xcalloc(plan.count + 1, sizeof(*sh.todo));
	for (size_t i = 0; i < plan.count; i++) {
		const struct folder_plan_entry *e = &plan.items[i];
		if (e->action != FP_COPY)
			continue;
		if (sync_stop_requested(&run, err))
			goto out;
		stats_r->folders_total++;
		struct err ferr;
		err_clear(&ferr);
		if (!e->target_exists) {
			bool existed = false;
			if (!o->dry_run && imap_client_create(run.tgt, e->target_name, &existed,
							      &ferr) < 0) {
				if (fatal_kind(ferr.kind) && imap_client_is_dead(run.tgt)) {
					*err = ferr;
					goto out;
				}
				char text[1200];
				sync_warn(&run, e->source_name, "%s",
					  err_format(&ferr, text, sizeof(text)));
				stats_r->folders_failed++;
				continue;
			}
			if (!existed) {
				stats_r->folders_created++;
				struct sync_event ev = { .type = SYNC_EV_FOLDER_CREATED,
							 .folder = e->source_name,
							 .target_folder = e->target_name };
				sync_emit(&run, &ev);
			}
		}
		if ((e->source_attrs & FA_SUBSCRIBED) && !(e->target_attrs & FA_SUBSCRIBED) &&
		    !o->dry_run && imap_client_subscribe(run.tgt, e->target_name, &ferr) < 0) {
			char text[1200];
			sync_warn(&run, e->source_name, "%s",
				  err_format(&ferr, text, sizeof(text)));
			if (imap_client_is_dead(run.tgt)) {
				*err = ferr;
				goto out;
			}
			err_clear(&ferr);
		}
		if (e->source_attrs & (FA_NOSELECT | FA_NONEXISTENT))
			continue;
		sh.todo[sh.n_todo++] = e;
	}

	unsigned conns = o->connections ? o->connections : 1;
	n_workers = conns > 1 && sh.n_todo > 1 ? (conns - 1 < sh.n_todo - 1 ? conns - 1
									: sh.n_todo - 1)
					       : 0;
	workers = xcalloc(n_workers + 1, sizeof(*workers));
	size_t started = 0;
	for (size_t i = 0; i < n_workers; i++) {
		workers[i].run = (struct sync_run){ .o = o, .sh = &sh, .stats = &workers[i].stats,
						    .pair_id = run.pair_id, .sizes = run.sizes,
						    .n_sizes = run.n_sizes };
		if (pthread_create(&workers[i].thread, NULL, folder_worker_main, &workers[i]) != 0)
			break;
		started++;
	}
	sync_folders(&run);
	for (size_t i = 0; i < started; i++) {
		pthread_join(workers[i].thread, NULL);
		stats_add(stats_r, &workers[i].stats);
	}
	if (sh.has_fatal) {
		*err = sh.fatal;
		goto out;
	}
	r = 0;
out:
	free(workers);
	free(sh.todo);
	for (size_t i = 0; i < run.n_sizes; i++)
		free(run.sizes[i].name);
	free(run.sizes);
	folder_plan_release(&plan);
	folder_list_release(&sl);
	folder_list_release(&tl);
	imap_client_logout(&run.src);
	imap_client_logout(&run.tgt);
	sync_lanes_close(&run);
	lockfile_release(&lock_fd);
	return r;
}
