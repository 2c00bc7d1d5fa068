/* sync_internal.h - the private contract between the files of the sync
 * engine (sync.c, sync_flags.c, sync_copy.c, sync_lanes.c).
 *
 * Included ONLY by src/engine/sync*.c.  Everything else uses engine/sync.h
 * (sync_run()); nothing here is an API.  Each function's comment stays
 * with its definition.
 */
#ifndef IMAPMIG_ENGINE_SYNC_INTERNAL_H
#define IMAPMIG_ENGINE_SYNC_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/sync.h"
#include "util/buf.h"
#include "util/err.h"
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
	bool started, answered;
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
	/* flags sent to the target (STORE), recorded in the state only once
	 * the target said OK: sync_flags_record() */
	struct flag_update *flag_updates;
	size_t n_flag_updates, alloc_flag_updates;
};

struct flag_update {
	uint32_t src_uid;
	char *flags;
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
	unsigned long steps; /* durable steps so far (see sync_step()) */
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

/* ---------- spooled lanes (explained in sync_lanes.c) ----------
 * Here because body_data() in sync_copy.c writes the arriving body into
 * lanes.cur. */

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

/* ---------- sync.c: events, progress, durable steps, connections ---------- */

void sync_emit(struct sync_run *run, const struct sync_event *ev);
void sync_step(struct sync_run *run);
int sync_commit(struct sync_run *run, struct err *err);
void sync_count_handled(struct sync_run *run, const char *folder, uint64_t msgs,
			uint64_t bytes);
void sync_uncount_handled(struct folder_run *fr, uint64_t msgs, uint64_t bytes);
void sync_handled(struct sync_run *run, const char *folder, uint64_t size);
bool sync_stop_requested(struct sync_run *run, struct err *err);
void sync_warn(struct sync_run *run, const char *folder, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
struct imap_client *sync_connect_side(struct sync_run *run, const struct imap_client_opts *co,
				      struct err *err);

/* ---------- sync_flags.c ---------- */

void sync_flags_normalize(const char *in, struct buf *out);
void sync_flags_for_target(struct folder_run *fr, const char *flags, struct buf *out);
int sync_flags_record(struct folder_run *fr, struct err *err);
void sync_flag_updates_free(struct folder_run *fr);
int sync_apply_flag_change(struct folder_run *fr, const struct state_msg *row,
			   const char *src_flags, struct err *err);
int sync_flags(struct folder_run *fr, struct err *err);

/* ---------- sync_copy.c ---------- */

void sync_items_free(struct folder_run *fr);
void sync_append_done(void *ctx, const struct imap_append_result *res, const struct err *e);
void sync_groups_free(struct folder_run *fr);
int sync_send_body_fetches(struct folder_run *fr, struct err *err);
int sync_copy_new(struct folder_run *fr, uint32_t start, struct err *err);

/* ---------- sync_lanes.c ---------- */

void sync_lanes_close(struct sync_run *run);
int sync_spool_begin(struct folder_run *fr, struct copy_item *it, uint64_t size,
		     struct err *err);
int sync_spool_end(struct folder_run *fr, struct err *err);
int sync_transfer_spooled(struct folder_run *fr, unsigned n_lanes, struct err *err);

#endif
