/* state.h - the state database: what has been copied, kept in SQLite.
 *
 * One file (default $XDG_STATE_HOME/imapmig/state.db), created 0600 in a
 * directory created 0700, journal_mode=WAL, synchronous=NORMAL, foreign
 * keys on, a busy timeout so several workers (each with its own handle)
 * can share it.  Schema versions are migrated forward in state_open();
 * a database from a newer imapmig is refused (ERR_CONFIG).
 *
 * It never holds a password or message content: only names, UIDs,
 * fingerprints, flags and counters.
 *
 * Model:
 *   pair    - one source account + one target account, by key
 *             ("imaps://alice@old.example:993"), created on first use.
 *   folder  - per pair and source folder name: the target name, the
 *             source UIDVALIDITY and high-water mark (UIDNEXT seen at the
 *             last complete scan), HIGHESTMODSEQ, the target UIDVALIDITY.
 *   msg     - per folder and source UID: fingerprint, size, the flags last
 *             set on the target copy, the target UID, and a status:
 *               MSG_PENDING  intent recorded before APPEND; the copy may
 *                            or may not have reached the target
 *               MSG_DONE     the target holds it (tgt_uid 0 = unknown)
 *               MSG_SKIPPED  not copied on purpose (reason says why)
 *   tfp     - scratch list of the target folder's messages (fingerprint,
 *             target UID, claimed) used to match pending intents and
 *             messages someone else already copied, without holding the
 *             list in memory.
 *
 * Writes are cheap only inside a transaction: callers group work with
 * state_begin()/state_commit() (one commit per batch of messages, never
 * per message).  All functions return 0 on success, -1 with err
 * (ERR_INTERNAL, naming the database path and SQLite's message).
 */
#ifndef IMAPMIG_STORE_STATE_H
#define IMAPMIG_STORE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/err.h"

struct state;

/* Open or create.  Creates missing parent directories (0700).  Caller
 * closes with state_close(). */
struct state *state_open(const char *path, struct err *err);
void state_close(struct state **stp);
const char *state_path(const struct state *st);

/* Default path: $XDG_STATE_HOME/imapmig/state.db, else
 * $HOME/.local/state/imapmig/state.db.  Caller frees. */
char *state_default_path(void);

int state_begin(struct state *st, struct err *err);
int state_commit(struct state *st, struct err *err);
/* Never fails visibly; used on error paths. */
void state_rollback(struct state *st);

/* Find or create the pair for these keys; *id_r is its row id. */
int state_pair_get(struct state *st, const char *source_key, const char *target_key,
		   int64_t *id_r, struct err *err);

struct state_folder {
	int64_t id;
	int64_t pair_id;
	char source_name[1024]; /* UTF-8 */
	char target_name[1024]; /* UTF-8 */
	uint32_t src_uidvalidity; /* 0 = never scanned */
	uint32_t src_uidnext;     /* every UID below this was scanned */
	uint64_t src_modseq;      /* HIGHESTMODSEQ at the last complete scan; 0 = none */
	uint32_t tgt_uidvalidity; /* 0 = unknown */
};

/* Find or create the folder row for (pair, source_name); a new row has
 * target_name set and zeros elsewhere.  An existing row keeps its
 * counters but takes the new target_name. */
int state_folder_get(struct state *st, int64_t pair_id, const char *source_name,
		     const char *target_name, struct state_folder *f_r, struct err *err);
/* Write back uidvalidity/uidnext/modseq/tgt_uidvalidity of f (by f->id). */
int state_folder_update(struct state *st, const struct state_folder *f, struct err *err);
/* Forget every msg and tfp row of the folder (UIDVALIDITY changed). */
int state_folder_forget_messages(struct state *st, int64_t folder_id, struct err *err);

enum state_msg_status {
	MSG_PENDING = 0,
	MSG_DONE = 1,
	MSG_SKIPPED = 2,
	MSG_FAILED = 3, /* refused by the target (reason says how); retried next pass */
};

#define STATE_FP_LEN 32 /* hex characters of a fingerprint */

struct state_msg {
	uint32_t src_uid;
	char fp[STATE_FP_LEN + 1];
	uint64_t size;
	uint32_t tgt_uid; /* 0 = unknown */
	enum state_msg_status status;
	const char *flags;  /* space-separated, sorted; "" for none */
	const char *reason; /* MSG_SKIPPED and MSG_FAILED only, else "" */
};

/* Insert or replace the row for m->src_uid. */
int state_msg_put(struct state *st, int64_t folder_id, const struct state_msg *m,
		  struct err *err);
/* Look one up: 1 found (strings in *m_r valid until the next state_ call),
 * 0 not found, -1 error. */
int state_msg_get(struct state *st, int64_t folder_id, uint32_t src_uid,
		  struct state_msg *m_r, struct err *err);
/* Mark a pending row done with its target UID (0 = unknown). */
int state_msg_done(struct state *st, int64_t folder_id, uint32_t src_uid, uint32_t tgt_uid,
		   struct err *err);
/* Record the flags now on the target copy. */
int state_msg_set_flags(struct state *st, int64_t folder_id, uint32_t src_uid,
			const char *flags, struct err *err);

/* Call fn for each row with lo <= src_uid <= hi (hi 0 = no upper bound),
 * in UID order, optionally only one status (status < 0 = all).  The
 * struct and its strings are valid only during the call.  fn returns 0 to
 * go on, -1 to stop (state_msg_each then returns -1 and leaves err as fn
 * set it).  fn may not call other state_ functions on st. */
typedef int state_msg_fn(void *ctx, const struct state_msg *m, struct err *err);
int state_msg_each(struct state *st, int64_t folder_id, uint32_t lo, uint32_t hi, int status,
		   state_msg_fn *fn, void *ctx, struct err *err);

struct state_counts {
	uint64_t done, pending, skipped, failed;
	uint64_t done_bytes;
};
int state_msg_counts(struct state *st, int64_t folder_id, struct state_counts *c_r,
		     struct err *err);

/* The lowest source UID with this status: 1 found (*uid_r), 0 none. */
int state_msg_lowest(struct state *st, int64_t folder_id, enum state_msg_status status,
		     uint32_t *uid_r, struct err *err);

/* Call fn with the source name of every folder the pair has state for. */
typedef void state_name_fn(void *ctx, const char *name);
int state_folder_names(struct state *st, int64_t pair_id, state_name_fn *fn, void *ctx,
		       struct err *err);

/* --- target fingerprint scratch list (per folder) --- */
int state_tfp_clear(struct state *st, int64_t folder_id, struct err *err);
int state_tfp_add(struct state *st, int64_t folder_id, const char *fp, uint32_t tgt_uid,
		  struct err *err);
/* Mark as claimed every tfp row whose tgt_uid belongs to a MSG_DONE row of
 * the folder (those target messages already stand for a source message). */
int state_tfp_claim_done(struct state *st, int64_t folder_id, struct err *err);
/* Claim one unclaimed target message with this fingerprint: 1 and its UID
 * in *tgt_uid_r, 0 when none is left, -1 error. */
int state_tfp_claim(struct state *st, int64_t folder_id, const char *fp, uint32_t *tgt_uid_r,
		    struct err *err);

#endif
