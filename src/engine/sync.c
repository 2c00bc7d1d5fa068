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
 */
#include "engine/sync.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "engine/fingerprint.h"
#include "engine/mailbox_list.h"
#include "util/buf.h"
#include "util/lockfile.h"
#include "util/mem.h"
#include "util/spool.h"

#define WINDOW_UIDS 2000         /* UIDs per metadata window */
#define BODY_BATCH_MSGS 50       /* messages per body FETCH command */
#define BODY_BATCH_BYTES (8u << 20)
#define MAX_FLAGS_TEXT 65536
/* Spooled bodies (targets without LITERAL+): a body up to SPOOL_MEM_ONE
 * stays in memory while the spooled bodies in memory stay under
 * SPOOL_MEM_ALL, the rest goes to temporary files; the source waits while
 * SPOOL_QUEUE_MAX bytes are queued (but one body always fits). */
#define SPOOL_MEM_ONE (256u << 10)
#define SPOOL_MEM_ALL (8u << 20)
#define SPOOL_QUEUE_MAX (64u << 20)
#define MAX_APPEND_CONNECTIONS 16

struct copy_item {
	uint32_t uid;
	uint64_t size;
	char fp[STATE_FP_LEN + 1];
	char *flags; /* as appended (filtered for the target) */
	char *date;
	/* transfer */
	bool started, appended, refused, answered;
	bool ok;
	uint32_t tgt_uid;
	struct err err;
	char *subject;
	struct folder_run *fr;
	size_t group;  /* which body FETCH (and MULTIAPPEND) it belongs to */
	bool want;     /* part of the current transfer round */
};

/* The messages of one body FETCH, appended with one MULTIAPPEND (in the
 * order their bodies arrived). */
struct append_group {
	struct folder_run *fr;
	size_t expected;          /* items in the FETCH */
	struct copy_item **items; /* appended so far, in order */
	size_t n;
};

struct folder_run {
	struct sync_run *run;
	const struct folder_plan_entry *entry;
	struct state_folder f;
	struct imap_select_info sinfo, tinfo;
	bool matching; /* the tfp table holds the target's fingerprints */
	/* current window */
	struct copy_item *items;
	size_t n_items, alloc_items;
	/* body streaming */
	struct copy_item *cur;
	bool cur_discard;
	uint64_t handled_msgs, handled_bytes; /* of this folder, for progress */
	bool multi;                  /* this round uses MULTIAPPEND */
	struct append_group *groups; /* one per body FETCH of the round */
	size_t n_groups;
	struct append_group *open;   /* the MULTIAPPEND being written, or NULL */
	struct lanes *lanes;         /* spooled round in progress, or NULL */
	uint64_t copied;
	bool warned_unknown_uid;
	struct buf dropped_keywords;
};

/* What STATUS said about a source folder before the pass. */
struct folder_size {
	char *name;
	uint32_t messages;
	uint64_t bytes;
	struct imap_status_info st;
	bool known; /* the server answered STATUS for it */
};

/* What the connections working on one mailbox share (one per pass).
 * Everything here is read or written under lock. */
struct sync_shared {
	pthread_mutex_t lock;
	/* progress of this pass: messages handled (copied, found, skipped,
	 * failed, or unchanged) and octets (counted as bodies stream, so a
	 * big message shows progress while it moves) */
	uint64_t handled_msgs, handled_bytes;
	uint64_t bytes_at_last_event;
	unsigned long steps; /* durable steps so far (see step()) */
	unsigned conns_opened[2]; /* per side, to number them in traces */
	/* folders for the workers */
	const struct folder_plan_entry **todo;
	size_t n_todo, next;
	bool stop;        /* a fatal error somewhere: everyone stops */
	bool has_fatal;
	struct err fatal;
};

/* One connection pair's view of a pass (the caller's, or a worker
 * thread's with its own connections and state handle). */
struct sync_run {
	const struct sync_opts *o;
	struct sync_shared *sh;
	struct sync_stats *stats;
	struct imap_client *src, *tgt;
	struct state *st;
	int64_t pair_id;
	struct err *err;
	struct folder_size *sizes; /* read-only once the workers start */
	size_t n_sizes;
	bool no_multi; /* a MULTIAPPEND was refused: one message per APPEND */
	/* target connections beside tgt for spooled APPENDs (opened when
	 * first needed, kept for the pass) */
	struct imap_client *lane_tgt[MAX_APPEND_CONNECTIONS];
	unsigned n_lane_tgt;
	bool lane_warned;
	bool lane_broke; /* a lane's connection failed: like tgt dying */
};

/* ---------- events ---------- */

static void emit(struct sync_run *run, const struct sync_event *ev)
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
static void step(struct sync_run *run)
{
	if (!run->o->crash_after)
		return;
	pthread_mutex_lock(&run->sh->lock);
	bool die_now = ++run->sh->steps == run->o->crash_after;
	pthread_mutex_unlock(&run->sh->lock);
	if (die_now)
		_exit(99);
}

static int commit(struct sync_run *run, struct err *err)
{
	if (state_commit(run->st, err) < 0)
		return -1;
	step(run);
	return 0;
}

/* Count msgs/bytes as handled in this pass; tell the caller when a
 * message completes, or every MiB of a body in flight. */
static void count_handled(struct sync_run *run, const char *folder, uint64_t msgs,
			  uint64_t bytes)
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

/* Take back what count_handled() counted for messages that will be
 * handled again (a refused MULTIAPPEND goes over the folder once more),
 * so progress never runs past its total. */
static void uncount_handled(struct folder_run *fr, uint64_t msgs, uint64_t bytes)
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

static void handled(struct sync_run *run, const char *folder, uint64_t size)
{
	count_handled(run, folder, 1, size);
}

static bool stop_requested(struct sync_run *run, struct err *err)
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

static void warn(struct sync_run *run, const char *folder, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void warn(struct sync_run *run, const char *folder, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	struct sync_event ev = { .type = SYNC_EV_WARNING, .folder = folder, .text = text };
	emit(run, &ev);
}

/* ---------- flags ---------- */

/* Sort the words of a flag list so equal sets compare equal as text. */
static int cmp_str(const void *a, const void *b)
{
	return strcasecmp(*(char *const *)a, *(char *const *)b);
}

static void flags_normalize(const char *in, struct buf *out)
{
	char *copy = xstrdup(in);
	char *words[512];
	size_t n = 0;
	for (char *save = NULL, *w = strtok_r(copy, " ", &save); w && n < 512;
	     w = strtok_r(NULL, " ", &save)) {
		if (strcasecmp(w, "\\Recent") == 0)
			continue;
		words[n++] = w;
	}
	qsort(words, n, sizeof(words[0]), cmp_str);
	buf_reset(out);
	for (size_t i = 0; i < n; i++) {
		if (i && strcasecmp(words[i], words[i - 1]) == 0)
			continue;
		if (out->len)
			buf_putc(out, ' ');
		buf_puts(out, words[i]);
	}
	free(copy);
}

static bool flag_in(const char *list, const char *flag)
{
	size_t fl = strlen(flag);
	for (const char *p = list; *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if ((size_t)(e - p) == fl && strncasecmp(p, flag, fl) == 0)
			return true;
		p = e;
	}
	return false;
}

/* Words of a that are not in b, into out. */
static void flags_minus(const char *a, const char *b, struct buf *out)
{
	buf_reset(out);
	char *copy = xstrdup(a);
	for (char *save = NULL, *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		if (flag_in(b, w))
			continue;
		if (out->len)
			buf_putc(out, ' ');
		buf_puts(out, w);
	}
	free(copy);
}

/* Keep only the flags the target can store: system flags always, keywords
 * when PERMANENTFLAGS has \* or names them.  Dropped ones go to dropped. */
static void flags_for_target(struct folder_run *fr, const char *flags, struct buf *out)
{
	buf_reset(out);
	char *copy = xstrdup(flags);
	for (char *save = NULL, *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		bool ok = w[0] == '\\' || fr->tinfo.keywords_allowed ||
			  flag_in(fr->tinfo.permanentflags, w) || !fr->tinfo.permanentflags[0];
		if (!ok) {
			if (!flag_in(buf_cstr(&fr->dropped_keywords), w)) {
				if (fr->dropped_keywords.len)
					buf_putc(&fr->dropped_keywords, ' ');
				buf_puts(&fr->dropped_keywords, w);
			}
			continue;
		}
		if (out->len)
			buf_putc(out, ' ');
		buf_puts(out, w);
	}
	free(copy);
}

/* ---------- folder setup ---------- */

static int forget_folder_state(struct folder_run *fr, const char *why, struct err *err)
{
	struct sync_run *run = fr->run;
	warn(run, fr->entry->source_name, "%s; matching messages by fingerprint", why);
	if (state_folder_forget_messages(run->st, fr->f.id, err) < 0)
		return -1;
	fr->f.src_uidnext = 0;
	fr->f.src_modseq = 0;
	return 0;
}

/* Load the target folder's fingerprints into the tfp table. */
struct tfp_load {
	struct folder_run *fr;
	uint64_t n;
};

static int tfp_message(void *ctx, const struct imap_fetch_msg *m, struct err *err)
{
	struct tfp_load *tl = ctx;
	char fp[STATE_FP_LEN + 1];
	fingerprint_compute(m->headers, m->headers_len, m->size, fp);
	tl->n++;
	return state_tfp_add(tl->fr->run->st, tl->fr->f.id, fp, m->uid, err);
}

static int load_target_fingerprints(struct folder_run *fr, bool all, struct err *err)
{
	struct sync_run *run = fr->run;
	struct state *st = run->st;
	struct tfp_load tl = { fr, 0 };
	struct imap_fetch_handler h = { .message = tfp_message, .ctx = &tl };

	if (state_begin(st, err) < 0)
		return -1;
	if (state_tfp_clear(st, fr->f.id, err) < 0)
		goto fail;
	/* all: the folder changed since it was selected (our own APPENDs) */
	if (all || fr->tinfo.exists > 0) {
		if (imap_client_fetch_send(run->tgt, "1:*", IMAP_FETCH_SIZE | IMAP_FETCH_HEADERS,
					   FINGERPRINT_FIELDS, 0, &h, err) < 0 ||
		    imap_client_wait_all(run->tgt, err) < 0)
			goto fail;
	}
	if (state_tfp_claim_done(st, fr->f.id, err) < 0)
		goto fail;
	if (commit(fr->run, err) < 0)
		goto fail;
	fr->matching = true;
	return 0;
fail:
	state_rollback(st);
	return -1;
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
	r = commit(fr->run, err);
out:
	for (size_t i = 0; i < pl.n; i++)
		free(pl.flags[i]);
	free(pl.flags);
	free(pl.uids);
	free(pl.fps);
	return r;
}

/* ---------- flag changes ---------- */

/* Bring the target copy's flags in line with the source's, given the
 * flags we last put there. */
static int apply_flag_change(struct folder_run *fr, const struct state_msg *row,
			     const char *src_flags, struct err *err)
{
	struct sync_run *run = fr->run;
	struct buf want = BUF_INIT(MAX_FLAGS_TEXT), have = BUF_INIT(MAX_FLAGS_TEXT),
		   add = BUF_INIT(MAX_FLAGS_TEXT), del = BUF_INIT(MAX_FLAGS_TEXT),
		   filtered = BUF_INIT(MAX_FLAGS_TEXT);
	int r = 0;
	flags_for_target(fr, src_flags, &filtered);
	flags_normalize(buf_cstr(&filtered), &want);
	flags_normalize(row->flags, &have);
	if (strcmp(buf_cstr(&want), buf_cstr(&have)) == 0)
		goto out;
	if (!row->tgt_uid) {
		if (!fr->warned_unknown_uid)
			warn(run, fr->entry->source_name,
			     "flags changed on the source but the target copy's UID is unknown "
			     "(the target has no UIDPLUS); flags not updated");
		fr->warned_unknown_uid = true;
		goto out;
	}
	if (run->o->dry_run) {
		run->stats->flags_updated++;
		goto out;
	}
	flags_minus(buf_cstr(&want), buf_cstr(&have), &add);
	flags_minus(buf_cstr(&have), buf_cstr(&want), &del);
	char uid[16];
	snprintf(uid, sizeof(uid), "%u", row->tgt_uid);
	if (add.len && imap_client_store_send(run->tgt, uid, '+', buf_cstr(&add), err) < 0)
		r = -1;
	if (r == 0 && del.len && imap_client_store_send(run->tgt, uid, '-', buf_cstr(&del), err) < 0)
		r = -1;
	if (r == 0)
		r = state_msg_set_flags(run->st, fr->f.id, row->src_uid, buf_cstr(&want), err);
	if (r == 0)
		run->stats->flags_updated++;
out:
	buf_release(&want);
	buf_release(&have);
	buf_release(&add);
	buf_release(&del);
	buf_release(&filtered);
	return r;
}

static int flags_message(void *ctx, const struct imap_fetch_msg *m, struct err *err)
{
	struct folder_run *fr = ctx;
	struct state_msg row;
	int found = state_msg_get(fr->run->st, fr->f.id, m->uid, &row, err);
	if (found <= 0 || row.status != MSG_DONE)
		return found < 0 ? -1 : 0;
	/* row's strings live until the next state call: copy what we use */
	struct state_msg copy = row;
	char *flags = xstrdup(row.flags);
	copy.flags = flags;
	int r = apply_flag_change(fr, &copy, m->flags, err);
	free(flags);
	return r;
}

static int sync_flags(struct folder_run *fr, struct err *err)
{
	struct sync_run *run = fr->run;
	if (fr->f.src_uidnext <= 1)
		return 0;
	char set[32];
	snprintf(set, sizeof(set), "1:%u", fr->f.src_uidnext - 1);
	uint64_t since = 0;
	if (fr->sinfo.highestmodseq && fr->f.src_modseq && !fr->matching)
		since = fr->f.src_modseq;
	struct imap_fetch_handler h = { .message = flags_message, .ctx = fr };
	if (state_begin(run->st, err) < 0)
		return -1;
	if (imap_client_fetch_send(run->src, set, IMAP_FETCH_FLAGS, NULL, since, &h, err) < 0 ||
	    imap_client_wait_all(run->src, err) < 0 || imap_client_wait_all(run->tgt, err) < 0) {
		state_rollback(run->st);
		return -1;
	}
	return commit(run, err);
}

/* ---------- new messages: metadata window ---------- */

static void items_free(struct folder_run *fr)
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
	emit(fr->run, &ev);
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
		int r = apply_flag_change(fr, &copy, m->flags, err);
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
		handled(run, fr->entry->source_name, m->size);
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
			handled(run, fr->entry->source_name, m->size);
			struct state_msg s = { .src_uid = m->uid, .size = m->size, .tgt_uid = tuid,
					       .status = MSG_DONE, .flags = "", .reason = "" };
			memcpy(s.fp, fp, sizeof(fp));
			if (!run->o->dry_run)
				r = state_msg_put(st, fr->f.id, &s, err);
			if (r == 0)
				r = apply_flag_change(fr, &s, m->flags, err);
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
	flags_for_target(fr, m->flags, &fl);
	flags_normalize(buf_cstr(&fl), &norm);
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

static void append_done(void *ctx, const struct imap_append_result *res, const struct err *e)
{
	struct copy_item *it = ctx;
	it->answered = true;
	it->ok = res->ok;
	it->tgt_uid = res->uid;
	if (e)
		it->err = *e;
	/* its octets were counted while they streamed */
	it->fr->handled_msgs++;
	count_handled(it->fr->run, it->fr->entry->source_name, 1, 0);
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
	count_handled(g->fr->run, g->fr->entry->source_name, g->n, 0);
}

static int finish_group(struct folder_run *fr, struct err *err)
{
	if (!fr->open)
		return 0;
	fr->open = NULL;
	if (imap_client_append_finish(fr->run->tgt, err) < 0)
		return -1;
	step(fr->run);
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
						size, append_done, it, err);
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

static struct imap_client *connect_side(struct sync_run *run, const struct imap_client_opts *co,
					struct err *err);

/* ---------- bodies for a target without LITERAL+: spooled lanes ----------
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

/* A body read from the source, waiting for a lane. */
struct spooled {
	struct copy_item *it;
	struct spool *body;
	struct spooled *next;
};

struct lanes {
	struct folder_run *fr;
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct spooled *head, *tail;
	uint64_t queued;      /* bytes of the queued bodies */
	uint64_t queued_mem;  /* of which in memory */
	bool closed;          /* the source sent all it will */
	bool failed;          /* a lane's connection broke: everyone stops */
	struct err fail_err;
	struct spooled *cur;  /* the body arriving from the source */
};

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
	append_done(ctx, res, e);
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
		if (r < 0) {
			lanes_fail(ls, &err);
			return NULL;
		}
		if (r == 0)
			step(fr->run);
	}
	/* the last replies; a refused message was handed to lane_done */
	if (imap_client_wait_all(l->tgt, &err) < 0 && err.kind != ERR_MESSAGE)
		lanes_fail(ls, &err);
	return NULL;
}

static void lanes_close(struct sync_run *run)
{
	for (unsigned i = 0; i < run->n_lane_tgt; i++)
		imap_client_logout(&run->lane_tgt[i]);
	run->n_lane_tgt = 0;
}

static int spool_begin(struct folder_run *fr, struct copy_item *it, uint64_t size,
		       struct err *err)
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

static int spool_end(struct folder_run *fr, struct err *err)
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
	*slot = connect_side(run, &run->o->target, &e);
	if (!*slot && !run->lane_warned) {
		char text[1200];
		warn(run, NULL, "an extra target connection for APPENDs could not be opened: %s",
		     err_format(&e, text, sizeof(text)));
		run->lane_warned = true;
	}
	return *slot;
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
			warn(fr->run, fr->entry->source_name,
			     "the source sent a message body before its UID; it is retried on "
			     "the next pass");
			fr->warned_unknown_uid = true;
		}
		return 0;
	}
	struct copy_item *it = fr->cur;
	it->started = true;
	int r = fr->lanes ? spool_begin(fr, it, size, err) : start_append(fr, it, size, err);
	if (r < 0)
		return -1;
	if (r == 0) {
		it->appended = true;
		fr->cur_discard = false;
	}
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
	count_handled(run, fr->entry->source_name, 0, len);
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
		return spool_end(fr, err);
	if (fr->multi) {
		if (imap_client_append_message_end(fr->run->tgt, err) < 0)
			return -1;
		struct append_group *g = &fr->groups[fr->cur->group];
		/* the group's last message closes the command at once */
		return g->n == g->expected ? finish_group(fr, err) : 0;
	}
	if (imap_client_append_end(fr->run->tgt, err) < 0)
		return -1;
	step(fr->run);
	return 0;
}

static int body_message(void *ctx, const struct imap_fetch_msg *m, struct err *err)
{
	(void)ctx;
	(void)m;
	(void)err;
	return 0;
}

static void groups_free(struct folder_run *fr)
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
static int send_body_fetches(struct folder_run *fr, struct err *err)
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

/* A round for a target without LITERAL+: the source's bodies are spooled
 * and lanes append them (see above). */
static int transfer_spooled(struct folder_run *fr, unsigned n_lanes, struct err *err)
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
	if (r == 0 && (send_body_fetches(fr, err) < 0 || imap_client_wait_all(run->src, err) < 0))
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

/* One round: body FETCHes for the wanted items, all sent at once, each
 * body streamed into the target as it arrives; then wait for both sides.
 * The groups stay (for the caller to look at) until the next round. */
static int transfer_round(struct folder_run *fr, bool multi, struct err *err)
{
	struct sync_run *run = fr->run;
	groups_free(fr);
	fr->multi = multi;
	if (send_body_fetches(fr, err) < 0 || imap_client_wait_all(run->src, err) < 0)
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
	if (commit(run, err) < 0)
		return -1;

	/* 2. bodies stream into APPENDs, MULTIAPPEND where the target has it */
	for (size_t i = 0; i < fr->n_items; i++)
		fr->items[i].want = true;
	bool multi = !run->o->no_multiappend && !run->no_multi &&
		     imap_client_can_multiappend(run->tgt);
	bool spooled = !(imap_client_caps(run->tgt) & IMAP_CAP_LITERALPLUS);
	if (spooled) {
		multi = false;
		groups_free(fr);
		if (transfer_spooled(fr, run->o->append_connections ? run->o->append_connections : 1,
				     err) < 0)
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
		uncount_handled(fr, group_failed, group_failed_bytes);

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
	if (commit(run, err) < 0)
		return -1;
	if (group_failed) {
		run->no_multi = true;
		warn(run, fr->entry->source_name,
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

static int copy_new(struct folder_run *fr, uint32_t start, struct err *err)
{
	struct sync_run *run = fr->run;
	uint32_t end = fr->sinfo.uidnext; /* exclusive; 0 = unknown */
	struct imap_fetch_handler h = { .message = window_message, .ctx = fr };
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
		items_free(fr);
		if (stop_requested(run, err))
			return -1;
		if (state_begin(run->st, err) < 0)
			return -1;
		if (imap_client_fetch_send(run->src, set, meta, FINGERPRINT_FIELDS, 0, &h, err) < 0 ||
		    imap_client_wait_all(run->src, err) < 0 ||
		    imap_client_wait_all(run->tgt, err) < 0) {
			state_rollback(run->st);
			return -1;
		}
		if (commit(run, err) < 0)
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
			if (state_folder_update(run->st, &fr->f, err) < 0 || (step(run), 0))
				return -1;
		}
	}
	return 0;
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
	emit(run, &ev);
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
	emit(run, &start);

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
	int cn = copy_new(&fr, start_uid, err);
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
		if (copy_new(&fr, start_uid, err) != 0) {
			if (err->kind == ERR_NONE)
				err_set(err, ERR_INTERNAL, "MULTIAPPEND fallback failed");
			goto out;
		}
	}
	if (imap_client_wait_all(run->tgt, err) < 0)
		goto out;
	if (fr.dropped_keywords.len)
		warn(run, e->source_name,
		     "the target folder does not accept these keywords; they were not copied: %s",
		     buf_cstr(&fr.dropped_keywords));
	if (!o->dry_run) {
		fr.f.src_uidvalidity = fr.sinfo.uidvalidity;
		if (fr.sinfo.uidnext)
			fr.f.src_uidnext = fr.sinfo.uidnext;
		fr.f.src_modseq = fr.sinfo.highestmodseq;
		fr.f.tgt_uidvalidity = fr.tinfo.uidvalidity;
		if (state_folder_update(run->st, &fr.f, err) < 0 || (step(run), 0))
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
		count_handled(run, e->source_name, fs->messages - fr.handled_msgs,
			      fs->bytes > fr.handled_bytes ? fs->bytes - fr.handled_bytes : 0);
	struct sync_event done = { .type = SYNC_EV_FOLDER_DONE, .folder = e->source_name,
				   .target_folder = e->target_name, .count = fr.copied };
	emit(run, &done);
out:
	if (r < 0)
		err_where(err, SIDE_NONE, NULL, NULL, e->source_name);
	/* APPENDs still in flight point at this folder's items, and one may
	 * be stuck half-sent (its source broke): the target connection
	 * cannot be trusted any more.  Drop it before the items go. */
	if (r < 0 && run->tgt && imap_client_in_flight(run->tgt))
		imap_client_kill(run->tgt, "the folder's copy was interrupted");
	items_free(&fr);
	free(fr.items);
	groups_free(&fr);
	buf_release(&fr.dropped_keywords);
	return r;
}

/* ---------- folders ---------- */


static void connected(struct sync_run *run, enum side side, const struct imap_client_opts *o)
{
	char text[256];
	snprintf(text, sizeof(text), "%s:%u as %s", o->host, (unsigned)o->port, o->user);
	struct sync_event ev = { .type = SYNC_EV_CONNECTED, .side = side, .text = text };
	emit(run, &ev);
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
		warn(vc->run, name,
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
static struct imap_client *connect_side(struct sync_run *run, const struct imap_client_opts *co,
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
		warn(run, e->source_name, "%s", err_format(&ferr, text, sizeof(text)));
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
	run->src = connect_side(run, &o->source, &e);
	if (run->src)
		run->tgt = connect_side(run, &o->target, &e);
	if (run->tgt)
		run->st = state_open(state_path(o->state), &e);
	if (run->st) {
		sync_folders(run);
	} else {
		/* fewer connections is not fatal: the others do the work */
		char text[1200];
		warn(run, NULL, "an extra connection could not be opened: %s",
		     err_format(&e, text, sizeof(text)));
	}
	state_close(&run->st);
	imap_client_logout(&run->src);
	imap_client_logout(&run->tgt);
	lanes_close(run);
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
	run.src = connect_side(&run, &o->source, err);
	if (!run.src)
		goto out;
	connected(&run, SIDE_SOURCE, &o->source);
	run.tgt = connect_side(&run, &o->target, err);
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
		warn(&run, NULL,
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
		emit(&run, &ev);
		if (e->action == FP_CONFLICT) {
			warn(&run, e->source_name, "not copied: %s", e->note ? e->note : "name conflict");
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
		if (stop_requested(&run, err))
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
				warn(&run, e->source_name, "%s", err_format(&ferr, text, sizeof(text)));
				stats_r->folders_failed++;
				continue;
			}
			if (!existed) {
				stats_r->folders_created++;
				struct sync_event ev = { .type = SYNC_EV_FOLDER_CREATED,
							 .folder = e->source_name,
							 .target_folder = e->target_name };
				emit(&run, &ev);
			}
		}
		if ((e->source_attrs & FA_SUBSCRIBED) && !(e->target_attrs & FA_SUBSCRIBED) &&
		    !o->dry_run && imap_client_subscribe(run.tgt, e->target_name, &ferr) < 0) {
			char text[1200];
			warn(&run, e->source_name, "%s", err_format(&ferr, text, sizeof(text)));
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
	lanes_close(&run);
	lockfile_release(&lock_fd);
	return r;
}
