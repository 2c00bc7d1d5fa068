/* sync_copy.c - new messages (step 5 in sync.c): metadata in UID windows,
 * intents, then bodies streamed from the source's FETCH into the target's
 * APPEND or MULTIAPPEND, or handed to the spooled lanes (sync_lanes.c).
 */
#include "engine/sync_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/fingerprint.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/spool.h"

/* ---------- new messages: metadata window ---------- */

void sync_items_free(struct folder_run *fr)
{
	for (size_t i = 0; i < fr->n_items; i++) {
		free(fr->items[i].flags);
		free(fr->items[i].date);
		free(fr->items[i].subject);
	}
	fr->n_items = 0;
}

static void skip_event(struct folder_run *fr, enum sync_event_type type,
		       const struct imap_fetch_msg *m, const char *subject, const char *why)
{
	struct sync_event ev = {
		.type = type,
		.folder = fr->entry->source_name,
		.target_folder = fr->entry->target_name,
		.uid = m->uid,
		.size = m->size,
		.date = m->internaldate,
		.subject = subject,
		.text = why,
	};
	sync_emit(fr->run, &ev);
}

/* A window's FETCH responses, kept whole until the FETCH is over: what
 * they mean for the state is written afterwards, in one transaction with
 * no network wait inside (a batch's users share the database, and its
 * write lock must not wait on a distant server). */
struct fetched {
	struct imap_fetch_msg *msgs;
	size_t n, alloc;
};

static int fetched_add(void *ctx, const struct imap_fetch_msg *m, struct err *err)
{
	struct fetched *f = ctx;
	(void)err;
	if (f->n == f->alloc) {
		f->alloc = f->alloc ? 2 * f->alloc : 256;
		f->msgs = xrealloc(f->msgs, f->alloc * sizeof(*f->msgs));
	}
	struct imap_fetch_msg *c = &f->msgs[f->n++];
	*c = *m;
	c->flags = xstrdup(m->flags ? m->flags : "");
	c->internaldate = m->internaldate ? xstrdup(m->internaldate) : NULL;
	if (m->headers) {
		uint8_t *h = xmalloc(m->headers_len + 1);
		memcpy(h, m->headers, m->headers_len);
		h[m->headers_len] = 0;
		c->headers = h;
	}
	return 0;
}

static void fetched_free(struct fetched *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free((char *)f->msgs[i].flags);
		free((char *)f->msgs[i].internaldate);
		free((uint8_t *)f->msgs[i].headers);
	}
	free(f->msgs);
	memset(f, 0, sizeof(*f));
}

static int window_message(void *ctx, const struct imap_fetch_msg *m, struct err *err)
{
	struct folder_run *fr = ctx;
	struct sync_run *run = fr->run;
	struct state *st = run->st;
	struct state_msg row;

	int found = state_msg_get(st, fr->f.id, m->uid, &row, err);
	if (found < 0)
		return -1;
	if (found && row.status == MSG_SKIPPED)
		return 0;
	if (found && row.status == MSG_DONE) {
		struct state_msg copy = row;
		char *flags = xstrdup(row.flags);
		copy.flags = flags;
		int r = sync_apply_flag_change(fr, &copy, m->flags, err);
		free(flags);
		return r;
	}

	char fp[STATE_FP_LEN + 1];
	fingerprint_compute(m->headers, m->headers_len, m->size, fp);
	struct buf subject = BUF_INIT(1024);
	header_field_value(m->headers, m->headers_len, "Subject", &subject);
	int r = 0;

	if (run->o->max_message_size && m->size > run->o->max_message_size) {
		char why[128];
		snprintf(why, sizeof(why), "larger than --max-message-size (%llu > %llu bytes)",
			 (unsigned long long)m->size, (unsigned long long)run->o->max_message_size);
		skip_event(fr, SYNC_EV_MESSAGE_SKIPPED, m, buf_cstr(&subject), why);
		run->stats->msgs_skipped++;
		fr->handled_msgs++;
		fr->handled_bytes += m->size;
		sync_handled(run, fr->entry->source_name, m->size);
		if (!run->o->dry_run) {
			struct state_msg s = { .src_uid = m->uid, .size = m->size,
					       .status = MSG_SKIPPED, .flags = "", .reason = why };
			memcpy(s.fp, fp, sizeof(fp));
			r = state_msg_put(st, fr->f.id, &s, err);
		}
		goto out;
	}
	if (fr->matching) {
		uint32_t tuid = 0;
		int c = state_tfp_claim(st, fr->f.id, fp, &tuid, err);
		if (c < 0) {
			r = -1;
			goto out;
		}
		if (c == 1) {
			/* Someone (maybe an earlier pass) already put it there. */
			run->stats->msgs_existing++;
			fr->handled_msgs++;
			fr->handled_bytes += m->size;
			sync_handled(run, fr->entry->source_name, m->size);
			struct state_msg s = { .src_uid = m->uid, .size = m->size, .tgt_uid = tuid,
					       .status = MSG_DONE, .flags = "", .reason = "" };
			memcpy(s.fp, fp, sizeof(fp));
			if (!run->o->dry_run)
				r = state_msg_put(st, fr->f.id, &s, err);
			if (r == 0)
				r = sync_apply_flag_change(fr, &s, m->flags, err);
			goto out;
		}
	}
	if (fr->n_items == fr->alloc_items) {
		fr->alloc_items = fr->alloc_items ? fr->alloc_items * 2 : 256;
		fr->items = xrealloc(fr->items, fr->alloc_items * sizeof(*fr->items));
	}
	struct copy_item *it = &fr->items[fr->n_items++];
	memset(it, 0, sizeof(*it));
	it->fr = fr;
	it->uid = m->uid;
	it->size = m->size;
	memcpy(it->fp, fp, sizeof(fp));
	struct buf fl = BUF_INIT(MAX_FLAGS_TEXT), norm = BUF_INIT(MAX_FLAGS_TEXT);
	sync_flags_for_target(fr, m->flags, &fl);
	sync_flags_normalize(buf_cstr(&fl), &norm);
	it->flags = buf_detach(&norm, NULL);
	buf_release(&fl);
	it->date = m->internaldate ? xstrdup(m->internaldate) : NULL;
	it->subject = xstrdup(buf_cstr(&subject));
out:
	buf_release(&subject);
	return r;
}

/* ---------- new messages: body transfer ---------- */

static struct copy_item *find_item(struct folder_run *fr, uint32_t uid)
{
	size_t lo = 0, hi = fr->n_items;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (fr->items[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < fr->n_items && fr->items[lo].uid == uid ? &fr->items[lo] : NULL;
}

void sync_append_done(void *ctx, const struct imap_append_result *res, const struct err *e)
{
	struct copy_item *it = ctx;
	it->answered = true;
	it->ok = res->ok;
	it->tgt_uid = res->uid;
	if (e)
		it->err = *e;
	/* its octets were counted while they streamed */
	it->fr->handled_msgs++;
	sync_count_handled(it->fr->run, it->fr->entry->source_name, 1, 0);
}

/* Next UID of an APPENDUID uid set, in order: "3955:3957,3960" gives
 * 3955 3956 3957 3960.  *pos walks the text; *range_next carries a range. */
static uint32_t uidset_next(const char **pos, uint32_t *range_next, uint32_t *range_end)
{
	if (*range_next && *range_next <= *range_end)
		return (*range_next)++;
	const char *p = *pos;
	if (!p || !*p)
		return 0;
	if (*p == ',')
		p++;
	char *end;
	unsigned long a = strtoul(p, &end, 10), b = a;
	if (end == p)
		return 0;
	if (*end == ':') {
		const char *q = end + 1;
		b = strtoul(q, &end, 10);
		if (end == q)
			return 0;
	}
	*pos = end;
	if (b < a) { /* "10:5" means 5..10 */
		unsigned long t = a;
		a = b;
		b = t;
	}
	if (a > UINT32_MAX || b > UINT32_MAX)
		return 0;
	*range_next = (uint32_t)a + 1;
	*range_end = (uint32_t)b;
	if (a == b)
		*range_next = *range_end = 0;
	return (uint32_t)a;
}

static void group_done(void *ctx, const struct imap_append_result *res, const struct err *e)
{
	struct append_group *g = ctx;
	const char *pos = res->uidset;
	uint32_t next = 0, last = 0;
	for (size_t i = 0; i < g->n; i++) {
		struct copy_item *it = g->items[i];
		it->answered = true;
		it->ok = res->ok;
		it->tgt_uid = res->ok ? uidset_next(&pos, &next, &last) : 0;
		if (e)
			it->err = *e;
	}
	g->fr->handled_msgs += g->n;
	sync_count_handled(g->fr->run, g->fr->entry->source_name, g->n, 0);
}

static int finish_group(struct folder_run *fr, struct err *err)
{
	if (!fr->open)
		return 0;
	fr->open = NULL;
	if (imap_client_append_finish(fr->run->tgt, err) < 0)
		return -1;
	sync_step(fr->run);
	return 0;
}

/* Start the item's message on the target: a new APPEND, or the next
 * message of the open MULTIAPPEND of its group. */
static int start_append(struct folder_run *fr, struct copy_item *it, uint64_t size,
			struct err *err)
{
	struct imap_client *tgt = fr->run->tgt;
	if (!fr->multi)
		return imap_client_append_begin(tgt, fr->entry->target_name, it->flags, it->date,
						size, sync_append_done, it, err);
	struct append_group *g = &fr->groups[it->group];
	if (fr->open && fr->open != g && finish_group(fr, err) < 0)
		return -1;
	int r;
	if (fr->open == g) {
		r = imap_client_append_next(tgt, it->flags, it->date, size, err);
	} else {
		r = imap_client_append_begin(tgt, fr->entry->target_name, it->flags, it->date,
					     size, group_done, g, err);
		if (r == 0)
			fr->open = g;
	}
	if (r == 0)
		g->items[g->n++] = it;
	return r;
}

static int body_begin(void *ctx, uint32_t uid, uint64_t size, struct err *err)
{
	struct folder_run *fr = ctx;
	fr->cur_discard = true;
	fr->cur = uid ? find_item(fr, uid) : NULL;
	if (!fr->cur || fr->cur->started || !fr->cur->want) {
		if (!uid && !fr->warned_unknown_uid) {
			/* The server sent BODY[] before UID; such bodies are
			 * dropped here and fetched again next pass. */
			sync_warn(fr->run, fr->entry->source_name,
				  "the source sent a message body before its UID; it is retried on "
				  "the next pass");
			fr->warned_unknown_uid = true;
		}
		return 0;
	}
	struct copy_item *it = fr->cur;
	it->started = true;
	int r = fr->lanes ? sync_spool_begin(fr, it, size, err) : start_append(fr, it, size, err);
	if (r < 0)
		return -1;
	if (r == 0)
		fr->cur_discard = false;
	it->size = size;
	return 0;
}

static int body_data(void *ctx, const uint8_t *data, size_t len, struct err *err)
{
	struct folder_run *fr = ctx;
	if (fr->cur_discard)
		return 0;
	struct sync_run *run = fr->run;
	fr->handled_bytes += len;
	sync_count_handled(run, fr->entry->source_name, 0, len);
	if (fr->lanes)
		return spool_write(fr->lanes->cur->body, data, len, err);
	return imap_client_append_data(run->tgt, data, len, err);
}

static int body_end(void *ctx, struct err *err)
{
	struct folder_run *fr = ctx;
	if (fr->cur_discard)
		return 0;
	fr->cur_discard = true;
	if (fr->lanes)
		return sync_spool_end(fr, err);
	if (fr->multi) {
		if (imap_client_append_message_end(fr->run->tgt, err) < 0)
			return -1;
		struct append_group *g = &fr->groups[fr->cur->group];
		/* the group's last message closes the command at once */
		return g->n == g->expected ? finish_group(fr, err) : 0;
	}
	if (imap_client_append_end(fr->run->tgt, err) < 0)
		return -1;
	sync_step(fr->run);
	return 0;
}

static int body_message(void *ctx, const struct imap_fetch_msg *m, struct err *err)
{
	(void)ctx;
	(void)m;
	(void)err;
	return 0;
}

void sync_groups_free(struct folder_run *fr)
{
	for (size_t i = 0; i < fr->n_groups; i++)
		free(fr->groups[i].items);
	free(fr->groups);
	fr->groups = NULL;
	fr->n_groups = 0;
	fr->open = NULL;
}

/* Send the body FETCHes for the wanted items: BODY_BATCH_MSGS or
 * BODY_BATCH_BYTES per command, each its own group (MULTIAPPEND). */
int sync_send_body_fetches(struct folder_run *fr, struct err *err)
{
	struct sync_run *run = fr->run;
	static const struct imap_fetch_handler handler = { .message = body_message,
							    .body_begin = body_begin,
							    .body_data = body_data,
							    .body_end = body_end };
	struct imap_fetch_handler h = handler;
	h.ctx = fr;
	fr->groups = xcalloc(fr->n_items + 1, sizeof(*fr->groups));
	struct buf set = BUF_INIT(0);
	size_t n = 0, last = 0;
	uint64_t bytes = 0;
	int r = 0;
	for (size_t i = 0; i < fr->n_items; i++)
		if (fr->items[i].want)
			last = i;
	for (size_t i = 0; i < fr->n_items && r == 0; i++) {
		struct copy_item *it = &fr->items[i];
		if (!it->want)
			continue;
		if (set.len)
			buf_putc(&set, ',');
		buf_appendf(&set, "%u", it->uid);
		it->group = fr->n_groups;
		n++;
		bytes += it->size;
		if (n == BODY_BATCH_MSGS || bytes >= BODY_BATCH_BYTES || i == last) {
			struct append_group *g = &fr->groups[fr->n_groups++];
			g->fr = fr;
			g->expected = n;
			g->items = xcalloc(n, sizeof(*g->items));
			r = imap_client_fetch_send(run->src, buf_cstr(&set), IMAP_FETCH_BODY, NULL, 0,
						   &h, err);
			buf_reset(&set);
			n = 0;
			bytes = 0;
		}
	}
	buf_release(&set);
	return r;
}

/* One round: body FETCHes for the wanted items, all sent at once, each
 * body streamed into the target as it arrives; then wait for both sides.
 * The groups stay (for the caller to look at) until the next round. */
static int transfer_round(struct folder_run *fr, bool multi, struct err *err)
{
	struct sync_run *run = fr->run;
	sync_groups_free(fr);
	fr->multi = multi;
	if (sync_send_body_fetches(fr, err) < 0 || imap_client_wait_all(run->src, err) < 0)
		return -1;
	/* a group whose last message never came (gone from the source) */
	if (fr->open && imap_client_append_between(run->tgt) && finish_group(fr, err) < 0)
		return -1;
	if (imap_client_wait_all(run->tgt, err) < 0 && err->kind != ERR_MESSAGE)
		return -1;
	return 0;
}

static int transfer_window(struct folder_run *fr, struct err *err)
{
	struct sync_run *run = fr->run;
	struct state *st = run->st;

	/* 1. intents, durable before any APPEND is sent */
	if (state_begin(st, err) < 0)
		return -1;
	for (size_t i = 0; i < fr->n_items; i++) {
		struct copy_item *it = &fr->items[i];
		struct state_msg s = { .src_uid = it->uid, .size = it->size, .status = MSG_PENDING,
				       .flags = it->flags, .reason = "" };
		memcpy(s.fp, it->fp, sizeof(s.fp));
		if (state_msg_put(st, fr->f.id, &s, err) < 0) {
			state_rollback(st);
			return -1;
		}
	}
	if (sync_commit(run, err) < 0)
		return -1;

	/* 2. bodies stream into APPENDs, MULTIAPPEND where the target has it */
	for (size_t i = 0; i < fr->n_items; i++)
		fr->items[i].want = true;
	bool multi = !run->o->no_multiappend && !run->no_multi &&
		     imap_client_can_multiappend(run->tgt);
	bool spooled = !(imap_client_caps(run->tgt) & IMAP_CAP_LITERALPLUS);
	if (spooled) {
		multi = false;
		sync_groups_free(fr);
		if (sync_transfer_spooled(
			fr, run->o->append_connections ? run->o->append_connections : 1, err) < 0)
			return -1;
	} else if (transfer_round(fr, multi, err) < 0) {
		return -1;
	}
	/* A refused MULTIAPPEND should store none of its messages, but not
	 * every server keeps to that (Dovecot stores part of one that hits
	 * the quota).  Its messages stay pending (their intents are
	 * recorded) and the caller goes over the folder again with one
	 * APPEND per message: pending intents are matched by fingerprint
	 * first, so what did get stored is not copied twice. */
	size_t group_failed = 0;
	uint64_t group_failed_bytes = 0;
	for (size_t i = 0; multi && i < fr->n_items; i++) {
		struct copy_item *it = &fr->items[i];
		if (it->answered && !it->ok && fr->groups[it->group].n > 1) {
			it->answered = false; /* result unknown: leave it pending */
			group_failed++;
			group_failed_bytes += it->size;
		}
	}
	if (group_failed)
		sync_uncount_handled(fr, group_failed, group_failed_bytes);

	/* 3. record results */
	size_t over_quota = 0;
	struct err quota_err;
	err_clear(&quota_err);
	if (state_begin(st, err) < 0)
		return -1;
	for (size_t i = 0; i < fr->n_items; i++) {
		struct copy_item *it = &fr->items[i];
		int r = 0;
		if (it->answered && it->ok) {
			r = state_msg_done(st, fr->f.id, it->uid, it->tgt_uid, err);
			run->stats->msgs_copied++;
			run->stats->bytes_copied += it->size;
			fr->copied++;
		} else if (it->answered && it->err.kind == ERR_MESSAGE) {
			char text[1200];
			err_format(&it->err, text, sizeof(text));
			struct imap_fetch_msg m = { .uid = it->uid, .size = it->size,
						    .internaldate = it->date };
			skip_event(fr, SYNC_EV_MESSAGE_FAILED, &m, it->subject, text);
			run->stats->msgs_failed++;
			if (strstr(it->err.server, "[OVERQUOTA]") && !over_quota++)
				quota_err = it->err;
			/* failed, not skipped: the next pass tries it again */
			struct state_msg s = { .src_uid = it->uid, .size = it->size,
					       .status = MSG_FAILED, .flags = "", .reason = text };
			memcpy(s.fp, it->fp, sizeof(s.fp));
			r = state_msg_put(st, fr->f.id, &s, err);
		} else if (it->answered) {
			*err = it->err;
			state_rollback(st);
			return -1;
		}
		/* not started: gone from the source meanwhile; stays pending
		 * and is matched or retried next pass */
		if (r < 0) {
			state_rollback(st);
			return -1;
		}
	}
	if (sync_commit(run, err) < 0)
		return -1;
	if (group_failed) {
		run->no_multi = true;
		sync_warn(run, fr->entry->source_name,
			  "the target refused a MULTIAPPEND of %zu messages; going over the folder "
			  "again one message at a time",
			  group_failed);
		return 1;
	}
	if (over_quota) {
		/* Every further APPEND would be refused the same way: stop this
		 * mailbox, keep what is there; a later pass copies the rest. */
		*err = quota_err;
		err->kind = ERR_ACCOUNT;
		snprintf(err->what, sizeof(err->what),
			 "the target mailbox is over its quota; %zu message(s) in this folder "
			 "were refused",
			 over_quota);
		err_hint(err, "raise the quota or free space on the target, then run again: what "
			      "was copied stays, the rest is copied then");
		return -1;
	}
	return 0;
}

int sync_copy_new(struct folder_run *fr, uint32_t start, struct err *err)
{
	struct sync_run *run = fr->run;
	uint32_t end = fr->sinfo.uidnext; /* exclusive; 0 = unknown */
	struct fetched fx = { 0 };
	struct imap_fetch_handler h = { .message = fetched_add, .ctx = &fx };
	unsigned meta = IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE | IMAP_FETCH_SIZE |
			IMAP_FETCH_HEADERS;

	if (fr->sinfo.exists == 0)
		return 0;
	for (uint64_t lo = start ? start : 1; end == 0 || lo < end; lo += WINDOW_UIDS) {
		uint64_t hi = lo + WINDOW_UIDS - 1;
		char set[48];
		if (end == 0)
			snprintf(set, sizeof(set), "%llu:*", (unsigned long long)lo);
		else {
			if (hi >= end)
				hi = end - 1;
			snprintf(set, sizeof(set), "%llu:%llu", (unsigned long long)lo,
				 (unsigned long long)hi);
		}
		sync_items_free(fr);
		if (sync_stop_requested(run, err))
			return -1;
		int r = imap_client_fetch_send(run->src, set, meta, FINGERPRINT_FIELDS, 0, &h, err);
		if (r == 0)
			r = imap_client_wait_all(run->src, err);
		if (r == 0)
			r = state_begin(run->st, err);
		for (size_t i = 0; r == 0 && i < fx.n; i++) {
			r = window_message(fr, &fx.msgs[i], err);
			if (r < 0)
				state_rollback(run->st);
		}
		fetched_free(&fx);
		if (r == 0)
			r = sync_commit(run, err);
		/* flag changes found on the way: once the target took them */
		if (r == 0)
			r = imap_client_wait_all(run->tgt, err);
		if (r == 0)
			r = sync_flags_record(fr, err);
		sync_flag_updates_free(fr);
		if (r < 0)
			return -1;
		/* "lo:*" also returns the highest message when it is below lo */
		size_t keep = 0;
		for (size_t i = 0; i < fr->n_items; i++) {
			if (fr->items[i].uid < lo) {
				free(fr->items[i].flags);
				free(fr->items[i].date);
				free(fr->items[i].subject);
				continue;
			}
			fr->items[keep++] = fr->items[i];
		}
		fr->n_items = keep;
		if (run->o->dry_run) {
			run->stats->msgs_planned += fr->n_items;
		} else if (fr->n_items) {
			int t = transfer_window(fr, err);
			if (t != 0)
				return t; /* -1 error, 1 go over the folder again */
		}
		if (end == 0)
			break;
		if (!run->o->dry_run) {
			fr->f.src_uidnext = (uint32_t)(hi + 1);
			if (state_folder_update(run->st, &fr->f, err) < 0 || (sync_step(run), 0))
				return -1;
		}
	}
	return 0;
}
