/* folder_map.h - decide which source folder goes to which target folder.
 *
 * Pure logic, no I/O: the engine lists both servers, decodes names from
 * modified UTF-7 to UTF-8, and hands both lists here.  The plan says, for
 * every source folder, the target name (UTF-8, target delimiter) or why it
 * is skipped.
 *
 * Rules, in order:
 *  1. \NonExistent source entries are skipped (FP_SKIP_NONEXISTENT).
 *  2. --exclude / --include globs (fnmatch(3), '*' also crosses levels)
 *     match the source name written with '/' between levels, whatever the
 *     source delimiter, and without the personal-namespace prefix.
 *     A folder is copied when it matches an include (or there are none)
 *     and no exclude.  Excluded: FP_SKIP_EXCLUDED.
 *  3. INBOX (any case) maps to INBOX.
 *  4. --folder-map SRC=DST (both '/'-separated) renames SRC and, with it,
 *     everything below it.
 *  5. A special-use source folder (\Sent \Drafts \Trash \Junk \Archive)
 *     maps to the target folder with the same attribute, whatever its
 *     name.  When the source marks no folder special-use at all, the
 *     common names (Sent, Sent Messages, Sent Items; Drafts; Trash,
 *     Deleted Messages, Deleted Items; Junk, Spam, Junk Email, Junk
 *     E-mail; Archive, Archives) stand in for the attribute.  Children
 *     follow their parent ("Sent.2019" -> "Sent Items/2019").
 *  6. Otherwise each level keeps its name; levels are joined with the
 *     target delimiter, under the target's personal-namespace prefix.
 *     A level that contains the target delimiter gets it replaced by
 *     rules->delim_replacement (default '_') and the entry's note says so:
 *     never a silent extra level.
 *  7. Two source folders that would land on the same target name: the
 *     second becomes FP_CONFLICT with a note naming both (never merged
 *     silently).
 * Entries come out parents before children (sorted by source name).
 */
#ifndef IMAPMIG_ENGINE_FOLDER_MAP_H
#define IMAPMIG_ENGINE_FOLDER_MAP_H

#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

enum folder_attr {
	FA_NOSELECT = 1 << 0,
	FA_NONEXISTENT = 1 << 1,
	FA_NOINFERIORS = 1 << 2,
	FA_SUBSCRIBED = 1 << 3,
	FA_SENT = 1 << 4,
	FA_DRAFTS = 1 << 5,
	FA_TRASH = 1 << 6,
	FA_JUNK = 1 << 7,
	FA_ARCHIVE = 1 << 8,
	FA_ALL = 1 << 9,
	FA_FLAGGED = 1 << 10,
	FA_HASCHILDREN = 1 << 11,
	FA_HASNOCHILDREN = 1 << 12,
};
#define FA_SPECIAL_USE (FA_SENT | FA_DRAFTS | FA_TRASH | FA_JUNK | FA_ARCHIVE)

/* Parse one LIST attribute ("\Sent", case-insensitive); 0 if unknown. */
unsigned folder_attr_from_name(const char *name);

struct folder_info {
	char *name;     /* UTF-8, levels joined by the server's delimiter */
	unsigned attrs; /* enum folder_attr bits */
};

struct folder_list {
	char delim;     /* hierarchy delimiter; '\0' when the server has none */
	char *prefix;   /* personal namespace prefix, e.g. "" or "INBOX." */
	struct folder_info *items;
	size_t count, alloc;
};

void folder_list_init(struct folder_list *l, char delim, const char *prefix);
/* Copies name. */
void folder_list_add(struct folder_list *l, const char *name, unsigned attrs);
/* NULL if absent; INBOX compared case-insensitively. */
const struct folder_info *folder_list_find(const struct folder_list *l, const char *name);
void folder_list_release(struct folder_list *l);

struct folder_rules {
	const char *const *include; size_t n_include;
	const char *const *exclude; size_t n_exclude;
	const char *const *renames; size_t n_renames; /* "SRC=DST" */
	char delim_replacement;                       /* 0 = '_' */
};

enum folder_action {
	FP_COPY = 0,
	FP_SKIP_EXCLUDED,
	FP_SKIP_NONEXISTENT,
	FP_CONFLICT,
};

struct folder_plan_entry {
	char *source_name;      /* as listed (UTF-8, source delimiter) */
	char *target_name;      /* UTF-8, target delimiter; NULL unless FP_COPY */
	unsigned source_attrs;
	enum folder_action action;
	bool target_exists;     /* target_name is already on the target */
	unsigned target_attrs;  /* its attributes when it exists */
	char *note;             /* why renamed/skipped, or NULL */
};

struct folder_plan {
	struct folder_plan_entry *items;
	size_t count;
};

/* Build the plan.  Fails (ERR_CONFIG) only on a malformed rule, e.g. a
 * --folder-map without '=' or with an empty side; the error names it.
 * The plan owns all its strings; release with folder_plan_release(). */
int folder_plan_build(const struct folder_list *source, const struct folder_list *target,
		      const struct folder_rules *rules, struct folder_plan *plan_r,
		      struct err *err);
void folder_plan_release(struct folder_plan *plan);
/* Check the rules alone (a malformed --folder-map), before connecting. */
int folder_rules_check(const struct folder_rules *rules, struct err *err);

#endif
