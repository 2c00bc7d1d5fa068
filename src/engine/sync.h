/* sync.h - copy one mailbox pair: folders, messages, flags, exactly once.
 *
 * The engine talks to the two servers only through imap_client's typed
 * operations and remembers what it did in the state database.  One call
 * is one pass: the first copies everything, later ones only what is new
 * or changed (new messages, flag changes on the source).
 *
 * Exactly once, even when killed at any instant: before a message is
 * appended, an intent (source UID + fingerprint) is committed; after the
 * server confirms, the target UID is recorded.  A pass that finds
 * intents left over, or meets a folder for the first time, or sees a
 * UIDVALIDITY change, first lists the target folder's fingerprints and
 * matches them (as a multiset) before copying anything: what is already
 * there is not copied again, two identical source messages are still two.
 *
 * Memory: source messages are handled in UID windows; bodies stream from
 * the source's FETCH literal into the target's APPEND literal.
 *
 * The engine never prints.  It reports through sync_event callbacks and
 * its return value.
 */
#ifndef IMAPMIG_ENGINE_SYNC_H
#define IMAPMIG_ENGINE_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/folder_map.h"
#include "imap/imap_client.h"
#include "store/state.h"
#include "util/err.h"

enum sync_event_type {
	SYNC_EV_CONNECTED,     /* side logged in; text = server/TLS description */
	SYNC_EV_FOLDER_PLAN,   /* one plan entry: folder, target, text = note/action */
	SYNC_EV_FOLDER_CREATED,
	SYNC_EV_FOLDER_START,  /* folder, count = messages on the source */
	SYNC_EV_FOLDER_DONE,   /* folder, count = messages copied in it */
	SYNC_EV_MESSAGE_SKIPPED, /* by policy: uid, size, date, subject, text = reason */
	SYNC_EV_MESSAGE_FAILED,  /* refused by the target: ... text = error */
	SYNC_EV_WARNING,       /* text; folder maybe */
	SYNC_EV_PROGRESS,      /* count/bytes = handled so far in this pass */
	SYNC_EV_TOTALS,        /* count/bytes = messages/octets on the source */
};

struct sync_event {
	enum sync_event_type type;
	enum side side;
	const char *folder;        /* source folder name (UTF-8), or NULL */
	const char *target_folder; /* or NULL */
	const char *text;          /* or NULL */
	uint32_t uid;
	uint64_t size;
	const char *date;
	const char *subject;
	uint64_t count;
	uint64_t bytes;
	/* The state handle of the connection pair that emitted it (with
	 * --connections-per-user each pair has its own, maybe inside a
	 * transaction): record things about the event through this one. */
	struct state *state;
};

/* Called from the thread of the connection pair that emitted the event,
 * one call at a time. */
typedef void sync_event_fn(void *ctx, const struct sync_event *ev);

struct sync_opts {
	struct imap_client_opts source, target;
	const char *source_key, *target_key; /* identify the pair in the state */
	struct folder_rules rules;
	uint64_t max_message_size;           /* 0 = no limit */
	uint64_t max_items;                  /* 0 = no limit; more fails the pass */
	bool no_multiappend;                 /* one APPEND per message even when the
					      * target offers MULTIAPPEND */
	bool compress;                       /* COMPRESS=DEFLATE where offered */
	unsigned connections;                /* connection pairs working on folders
					      * at once (0 = 1); each extra one opens
					      * its own state handle by path */
	/* Target connections appending one folder's messages at once when the
	 * target has no LITERAL+ (each APPEND then waits a round trip for
	 * the server's "+"); 0 = 1, at most 16.  Above 1 the target's UIDs
	 * follow completion, not the source's order. */
	unsigned append_connections;
	bool dry_run;                        /* plan and count; change nothing */
	struct state *state;
	sync_event_fn *event;
	void *event_ctx;
	/* Asked between folders and UID windows, from any connection pair's
	 * thread (so it must be thread-safe and should be cheap); true ends
	 * the pass with ERR_STOPPED (state consistent, resumable).  NULL =
	 * never. */
	bool (*should_stop)(void *ctx);
	void *stop_ctx;
	/* Tests only: _exit(99) right after the Nth durable step (commit,
	 * APPEND sent).  0 = never. */
	unsigned long crash_after;
};

struct sync_stats {
	uint64_t folders_total;   /* folders selected for copying */
	uint64_t folders_created;
	uint64_t msgs_copied;
	uint64_t msgs_existing;   /* already on the target, matched by fingerprint */
	uint64_t msgs_skipped;    /* by policy (size limit) */
	uint64_t msgs_failed;     /* refused by the target */
	uint64_t flags_updated;   /* target messages whose flags were changed */
	uint64_t bytes_copied;
	uint64_t folders_failed;
	uint64_t msgs_planned;    /* dry run: would be copied */
	bool connected;           /* both sides logged in */
};

/* Run one pass.  Returns 0 when every selected folder was processed
 * (individual messages may still have failed: see stats), -1 with err
 * when the pass had to stop (ERR_ACCOUNT / ERR_TRANSIENT / ERR_CONFIG /
 * ERR_INTERNAL).  A folder that fails is reported as a WARNING event and
 * counted in folders_failed; the pass goes on with the others.  stats are
 * filled in either case. */
int sync_run(const struct sync_opts *opts, struct sync_stats *stats_r, struct err *err);

#endif
