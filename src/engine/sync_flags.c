/* sync_flags.c - flag lists as text, and bringing the flags of target
 * copies in line with the source's (step 4 in sync.c).
 */
#include "engine/sync_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/buf.h"
#include "util/mem.h"

/* ---------- flags ---------- */

/* Sort the words of a flag list so equal sets compare equal as text. */
static int cmp_str(const void *a, const void *b)
{
	return strcasecmp(*(char *const *)a, *(char *const *)b);
}

void sync_flags_normalize(const char *in, struct buf *out)
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
void sync_flags_for_target(struct folder_run *fr, const char *flags, struct buf *out)
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

/* ---------- flag changes ---------- */

/* Bring the target copy's flags in line with the source's, given the
 * flags we last put there: STOREs are sent (not waited for), and the new
 * flags wait in fr->flag_updates for sync_flags_record(), which the
 * caller runs once the target has answered them all. */
int sync_apply_flag_change(struct folder_run *fr, const struct state_msg *row,
			   const char *src_flags, struct err *err)
{
	struct sync_run *run = fr->run;
	struct buf want = BUF_INIT(MAX_FLAGS_TEXT), have = BUF_INIT(MAX_FLAGS_TEXT),
		   add = BUF_INIT(MAX_FLAGS_TEXT), del = BUF_INIT(MAX_FLAGS_TEXT),
		   filtered = BUF_INIT(MAX_FLAGS_TEXT);
	int r = 0;
	sync_flags_for_target(fr, src_flags, &filtered);
	sync_flags_normalize(buf_cstr(&filtered), &want);
	sync_flags_normalize(row->flags, &have);
	if (strcmp(buf_cstr(&want), buf_cstr(&have)) == 0)
		goto out;
	if (!row->tgt_uid) {
		if (!fr->warned_unknown_uid)
			sync_warn(
			    run, fr->entry->source_name,
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
	if (r == 0) {
		if (fr->n_flag_updates == fr->alloc_flag_updates) {
			fr->alloc_flag_updates = fr->alloc_flag_updates ? 2 * fr->alloc_flag_updates : 64;
			fr->flag_updates = xrealloc(fr->flag_updates, fr->alloc_flag_updates *
									  sizeof(*fr->flag_updates));
		}
		fr->flag_updates[fr->n_flag_updates++] =
			(struct flag_update){ row->src_uid, xstrdup(buf_cstr(&want)) };
		run->stats->flags_updated++;
	}
out:
	buf_release(&want);
	buf_release(&have);
	buf_release(&add);
	buf_release(&del);
	buf_release(&filtered);
	return r;
}

void sync_flag_updates_free(struct folder_run *fr)
{
	for (size_t i = 0; i < fr->n_flag_updates; i++)
		free(fr->flag_updates[i].flags);
	fr->n_flag_updates = 0;
}

/* Record the flags of the STOREs the target has accepted (the caller has
 * waited for them): one short transaction, no network inside.  A STORE
 * that failed made the caller stop before this, so its message keeps its
 * old flags in the state and the next pass sends it again. */
int sync_flags_record(struct folder_run *fr, struct err *err)
{
	struct sync_run *run = fr->run;
	if (!fr->n_flag_updates)
		return 0;
	if (state_begin(run->st, err) < 0)
		return -1;
	for (size_t i = 0; i < fr->n_flag_updates; i++) {
		if (state_msg_set_flags(run->st, fr->f.id, fr->flag_updates[i].src_uid,
					fr->flag_updates[i].flags, err) < 0) {
			state_rollback(run->st);
			return -1;
		}
	}
	sync_flag_updates_free(fr);
	return sync_commit(run, err);
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
	int r = sync_apply_flag_change(fr, &copy, m->flags, err);
	free(flags);
	return r;
}

int sync_flags(struct folder_run *fr, struct err *err)
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
	/* No transaction around the FETCH: its answers only read the state
	 * (and send STOREs); what changed is written once both sides have
	 * answered, so the write lock is never held across the network
	 * (other users' passes in a batch share the database). */
	if (imap_client_fetch_send(run->src, set, IMAP_FETCH_FLAGS, NULL, since, &h, err) < 0 ||
	    imap_client_wait_all(run->src, err) < 0 || imap_client_wait_all(run->tgt, err) < 0) {
		sync_flag_updates_free(fr);
		return -1;
	}
	return sync_flags_record(fr, err);
}
