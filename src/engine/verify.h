/* verify.h - compare two mailboxes directly: did anything get lost?
 *
 * Independent of the state database: both servers are listed, the folder
 * plan is built with the same rules as the copy (folder_map.h), and every
 * selectable source folder is compared with its mapped target folder.
 *
 * Messages are matched as a multiset by a 128-bit key: the header
 * fingerprint (fingerprint.h: header fields + size), or with deep set the
 * first 128 bits of SHA-256 over the whole raw message (BODY.PEEK[],
 * streamed through the hash, never buffered).  Two identical source
 * messages need two target messages.  Matched pairs are compared on
 *  - flags: normalised sets (case-folded, \Recent dropped); a source
 *    keyword the target folder cannot store (PERMANENTFLAGS without \* and
 *    without it) is left out of the comparison and reported as a NOTE;
 *  - INTERNALDATE, as instants (the zone is applied).
 * Within one key, pairs that agree on both are taken first, so a folder
 * holding the same message twice with different flags is still exact.
 *
 * Cost: per side and folder, one SELECT and one pipelined
 * UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS
 * (...)]) -- no bodies unless deep.  The target is SELECTed (not EXAMINEd:
 * servers hide PERMANENTFLAGS from EXAMINE); nothing is written, and
 * BODY.PEEK sets no \Seen.  Memory: one 40-byte entry per message of the
 * folder being compared, per side; subject, date and flags for the
 * reported differences (at most max_details per folder) are fetched again
 * afterwards for just those UIDs.
 *
 * Policy, not differences: source messages larger than max_message_size
 * that are not on the target, and folders the rules exclude, are
 * reported as SKIPPED.  A source folder whose mapped target folder does
 * not exist is FOLDER_MISSING and its messages count as missing.
 *
 * The engine never prints: everything goes through verify_event.
 */
#ifndef IMAPMIG_ENGINE_VERIFY_H
#define IMAPMIG_ENGINE_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/folder_map.h"
#include "imap/imap_client.h"
#include "util/err.h"

enum verify_event_type {
	VERIFY_EV_CONNECTED,      /* side logged in; text = "host:port as user" */
	VERIFY_EV_FOLDER,         /* a folder was compared: count = source
	                           * messages, target_count = target messages,
	                           * missing/extra/mismatched = its differences */
	VERIFY_EV_MISSING,        /* on the source, not on the target: uid,
	                           * date, subject, size of the source message */
	VERIFY_EV_EXTRA,          /* on the target, not on the source: target_uid,
	                           * date, subject, size of the target message */
	VERIFY_EV_MISMATCH,       /* same message, different flags and/or date:
	                           * uid, target_uid, subject, size, flags/date
	                           * (source), target_flags/target_date;
	                           * text = "flags", "date" or "flags date" */
	VERIFY_EV_FOLDER_MISSING, /* target_folder does not exist; count =
	                           * source messages; text = why (conflict note) */
	VERIFY_EV_SKIPPED,        /* by policy.  A folder (uid 0, count =
	                           * its messages, text = why) or a message
	                           * (uid, date, subject, size, text = why) */
	VERIFY_EV_NOTE,           /* not a difference, but worth saying: text */
	VERIFY_EV_WARNING,        /* the folder could not be compared: text */
};

struct verify_event {
	enum verify_event_type type;
	enum side side;            /* CONNECTED only */
	const char *folder;        /* source folder (UTF-8), or NULL */
	const char *target_folder; /* or NULL */
	uint32_t uid;              /* source UID, 0 = none */
	uint32_t target_uid;       /* 0 = none */
	uint64_t size;
	const char *date; /* INTERNALDATE as the server sent it, or NULL */
	const char *target_date;
	const char *flags; /* as sent, or NULL */
	const char *target_flags;
	const char *subject; /* decoded header value as sent, or NULL */
	const char *text;
	uint64_t count, target_count;
	uint64_t missing, extra, mismatched; /* FOLDER only */
};

/* Strings in ev are valid during the call only. */
typedef void verify_event_fn(void *ctx, const struct verify_event *ev);

struct verify_opts {
	struct imap_client_opts source, target;
	struct folder_rules rules;
	uint64_t max_message_size; /* 0 = no limit */
	bool deep;                 /* match on SHA-256 of the raw message */
	unsigned max_details;      /* differences listed per folder (all are
	                            * counted); 0 = 50 */
	verify_event_fn *event;
	void *event_ctx;
};

struct verify_stats {
	uint64_t folders;  /* source folders compared (incl. missing ones) */
	uint64_t messages; /* source messages in them */
	uint64_t target_messages;
	uint64_t missing; /* incl. the messages of missing folders */
	uint64_t extra;
	uint64_t mismatched;
	uint64_t skipped;         /* messages skipped by policy (size, excluded folders) */
	uint64_t folders_skipped; /* excluded folders */
	uint64_t folders_missing; /* mapped target folder absent, or a name conflict */
	uint64_t folders_failed;  /* could not be compared (WARNING sent) */
	bool connected;           /* both sides logged in */
};

/* Compare the two mailboxes.  Returns 0 when every folder was looked at
 * (the differences are in stats: identical means missing, extra,
 * mismatched, folders_missing and folders_failed all 0), or -1 with err
 * when the comparison had to stop (connect/login failed: ERR_ACCOUNT or
 * ERR_TRANSIENT; bad rules: ERR_CONFIG; a connection lost midway).
 * stats are filled in either case. */
int verify_run(const struct verify_opts *opts, struct verify_stats *stats_r, struct err *err);

/* Parse an IMAP date-time ("17-Jul-1996 02:44:25 -0700"; the day may be
 * space-padded) into seconds since the epoch, UTC.  Returns 0, or -1 when
 * it is malformed.  Exposed for tests. */
int verify_parse_date(const char *text, int64_t *t_r);

#endif
