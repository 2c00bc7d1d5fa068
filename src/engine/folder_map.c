/* folder_map.c - the folder plan: which source folder goes where.
 *
 * Every source name is looked at in three forms:
 *  - as listed (source delimiter, with the personal-namespace prefix);
 *  - as levels: split on the source delimiter after the prefix is taken
 *    off, with a first level of INBOX (any case) written "INBOX";
 *  - as the "match name": those levels joined by '/', which is what
 *    --include, --exclude and --folder-map are written against, so a
 *    person writes the same rules whatever the servers use.
 *
 * The target name is built from levels again: each level has the target
 * delimiter replaced (never a silent extra level), levels are joined by
 * the target delimiter and put under the target prefix, except below
 * INBOX and below a special-use target folder, whose names are absolute.
 *
 * A flat target (delimiter NIL) has no levels at all, so a multi-level
 * source name has to become one name: its levels are joined with the
 * replacement character ('_' by default), e.g. "Projects.2019" ->
 * "Projects_2019".  Keeping the source delimiter instead would make the
 * result depend on which server the mail came from, and '/' or '.' are
 * the characters a flat server is most likely to treat specially.
 */
#include "engine/folder_map.h"

#include <fnmatch.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/mem.h"

/* ---- attributes ---------------------------------------------------- */

static const struct {
	const char *name;
	unsigned attr;
} attr_names[] = {
    {"\\Noselect", FA_NOSELECT},
    {"\\NonExistent", FA_NONEXISTENT},
    {"\\Noinferiors", FA_NOINFERIORS},
    {"\\Subscribed", FA_SUBSCRIBED},
    {"\\Sent", FA_SENT},
    {"\\Drafts", FA_DRAFTS},
    {"\\Trash", FA_TRASH},
    {"\\Junk", FA_JUNK},
    {"\\Archive", FA_ARCHIVE},
    {"\\All", FA_ALL},
    {"\\Flagged", FA_FLAGGED},
    {"\\HasChildren", FA_HASCHILDREN},
    {"\\HasNoChildren", FA_HASNOCHILDREN},
    /* Gmail's XLIST names, still sent by some servers in LIST */
    {"\\Spam", FA_JUNK},
    {"\\AllMail", FA_ALL},
    {"\\Starred", FA_FLAGGED},
};

unsigned folder_attr_from_name(const char *name)
{
	if (!name)
		return 0;
	for (size_t i = 0; i < sizeof(attr_names) / sizeof(attr_names[0]); i++)
		if (strcasecmp(name, attr_names[i].name) == 0)
			return attr_names[i].attr;
	return 0;
}

/* The special-use attributes in the order a folder carrying several of
 * them is matched, with the names that stand in for them when the source
 * marks nothing (rule 5). */
static const struct {
	unsigned attr;
	const char *label;
	const char *names[5];
} special_uses[] = {
    {FA_SENT, "\\Sent", {"Sent", "Sent Messages", "Sent Items", NULL}},
    {FA_DRAFTS, "\\Drafts", {"Drafts", NULL}},
    {FA_TRASH, "\\Trash", {"Trash", "Deleted Messages", "Deleted Items", NULL}},
    {FA_JUNK, "\\Junk", {"Junk", "Spam", "Junk Email", "Junk E-mail", NULL}},
    {FA_ARCHIVE, "\\Archive", {"Archive", "Archives", NULL}},
};
#define N_SPECIAL (sizeof(special_uses) / sizeof(special_uses[0]))

static unsigned special_by_name(const char *level)
{
	for (size_t i = 0; i < N_SPECIAL; i++)
		for (size_t j = 0; special_uses[i].names[j]; j++)
			if (strcasecmp(level, special_uses[i].names[j]) == 0)
				return special_uses[i].attr;
	return 0;
}

/* ---- names ----------------------------------------------------------- */

static bool is_inbox(const char *name)
{
	return strcasecmp(name, "INBOX") == 0;
}

/* Length of the first level of name; its whole length when flat. */
static size_t first_level_len(const char *name, char delim)
{
	const char *p = delim ? strchr(name, delim) : NULL;
	return p ? (size_t)(p - name) : strlen(name);
}

static bool first_level_is_inbox(const char *name, char delim)
{
	return first_level_len(name, delim) == 5 && strncasecmp(name, "INBOX", 5) == 0;
}

/* Same folder name?  INBOX, as a whole name or as the first level, in any
 * case; everything else byte for byte. */
static bool name_eq(const char *a, const char *b, char delim)
{
	if (strcmp(a, b) == 0)
		return true;
	return first_level_is_inbox(a, delim) && first_level_is_inbox(b, delim) &&
	       strcmp(a + 5, b + 5) == 0;
}

/* The prefix as it should be matched and prepended: ending with the
 * delimiter when the server has one ("INBOX" with '.' -> "INBOX.").
 * Caller frees. */
static char *norm_prefix(const char *prefix, char delim)
{
	size_t n;

	if (!prefix || !*prefix)
		return xstrdup("");
	n = strlen(prefix);
	if (delim && prefix[n - 1] != delim)
		return xasprintf("%s%c", prefix, delim);
	return xstrdup(prefix);
}

/* Does name start with prefix (non-empty), with something after it?  The
 * INBOX part of an "INBOX." prefix is matched in any case. */
static bool has_prefix(const char *name, const char *prefix, char delim)
{
	size_t n = strlen(prefix);

	if (!n || strlen(name) <= n)
		return false;
	if (strncmp(name, prefix, n) == 0)
		return true;
	return first_level_is_inbox(prefix, delim) && first_level_is_inbox(name, delim) &&
	       strncmp(name + 5, prefix + 5, n - 5) == 0;
}

/* Append to a "; "-separated note. */
static void note_add(char **note, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_add(char **note, const char *fmt, ...)
{
	char *text, *joined;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort(); /* out of memory, like xmalloc */
	if (!*note) {
		*note = text;
		return;
	}
	joined = xasprintf("%s; %s", *note, text);
	free(*note);
	free(text);
	*note = joined;
}

/* ---- folder_list ------------------------------------------------------ */

void folder_list_init(struct folder_list *l, char delim, const char *prefix)
{
	memset(l, 0, sizeof(*l));
	l->delim = delim;
	l->prefix = xstrdup(prefix ? prefix : "");
}

void folder_list_add(struct folder_list *l, const char *name, unsigned attrs)
{
	if (l->count == l->alloc) {
		l->alloc = l->alloc ? 2 * l->alloc : 16;
		l->items = xrealloc(l->items, l->alloc * sizeof(*l->items));
	}
	l->items[l->count].name = xstrdup(name);
	l->items[l->count].attrs = attrs;
	l->count++;
}

const struct folder_info *folder_list_find(const struct folder_list *l, const char *name)
{
	for (size_t i = 0; i < l->count; i++)
		if (name_eq(l->items[i].name, name, l->delim))
			return &l->items[i];
	return NULL;
}

void folder_list_release(struct folder_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i].name);
	free(l->items);
	free(l->prefix);
	l->items = NULL;
	l->prefix = NULL;
	l->count = l->alloc = 0;
}

/* ---- rules ------------------------------------------------------------- */

struct rename {
	const char *text; /* the rule as given, for notes */
	char *src;        /* match name, INBOX written "INBOX" */
	char **dst;       /* DST levels, INBOX written "INBOX"; own the strings */
	size_t n_dst;
};

/* Split s on '/' into fresh strings; false on an empty level. */
static bool split_slash(const char *s, char ***levels_r, size_t *n_r)
{
	size_t n = 1, i = 0;
	char **lv;

	for (const char *p = s; *p; p++)
		n += *p == '/';
	lv = xcalloc(n, sizeof(*lv));
	for (const char *p = s;; i++) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		lv[i] = xstrndup(p, len);
		if (!end)
			break;
		p = end + 1;
	}
	*levels_r = lv;
	*n_r = n;
	for (i = 0; i < n; i++)
		if (!lv[i][0])
			return false;
	return true;
}

static void free_levels(char **lv, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(lv[i]);
	free(lv);
}

static void canon_inbox_level(char *level)
{
	if (is_inbox(level))
		memcpy(level, "INBOX", 5);
}

static int parse_rename(const char *text, struct rename *r, struct err *err)
{
	const char *eq = strchr(text, '=');
	char **src;
	size_t n_src;
	bool ok;

	memset(r, 0, sizeof(*r));
	r->text = text;
	if (!eq || eq == text || !eq[1]) {
		err_set(err, ERR_CONFIG, "--folder-map '%s': expected SRC=DST", text);
		err_hint(err, "write --folder-map 'Old/Name=New/Name', levels separated by '/'");
		return -1;
	}
	r->src = xstrndup(text, (size_t)(eq - text));
	ok = split_slash(r->src, &src, &n_src);
	if (ok) {
		canon_inbox_level(src[0]);
		canon_inbox_level(r->src);
	}
	free_levels(src, n_src);
	if (ok)
		ok = split_slash(eq + 1, &r->dst, &r->n_dst);
	if (!ok) {
		err_set(err, ERR_CONFIG, "--folder-map '%s': empty folder level", text);
		err_hint(err, "levels are separated by a single '/', with none at either end");
		return -1;
	}
	canon_inbox_level(r->dst[0]);
	return 0;
}

static void release_rename(struct rename *r)
{
	free(r->src);
	free_levels(r->dst, r->n_dst);
}

/* ---- one source folder, seen in all its forms ---------------------------- */

struct view {
	const struct folder_info *fi;
	size_t index;  /* in the source list: ties sort stably */
	char delim;    /* the source's, for sorting */
	bool inbox;    /* INBOX itself */
	char **levels; /* prefix taken off, INBOX written "INBOX" */
	size_t n_levels;
	char *match;  /* levels joined by '/' */
	size_t *ends; /* ends[i]: length of match up to level i */
	const struct rename *rename;
	size_t rename_depth; /* levels of the source the rename's SRC covers */
	unsigned special;    /* the special-use attribute this folder claims */
	bool special_by_name;
	const struct view *special_parent; /* nearest claiming ancestor */
	char *target;
	char *note;
	enum folder_action action;
};

static void view_init(struct view *v, const struct folder_info *fi, size_t index,
                      const struct folder_list *src, const char *prefix)
{
	const char *name = fi->name;
	const char *p;
	size_t n = 1, i, len;

	memset(v, 0, sizeof(*v));
	v->fi = fi;
	v->index = index;
	v->delim = src->delim;
	v->inbox = is_inbox(name);
	if (!v->inbox && has_prefix(name, prefix, src->delim))
		name += strlen(prefix);

	if (src->delim)
		for (p = name; *p; p++)
			n += *p == src->delim;
	v->levels = xcalloc(n, sizeof(*v->levels));
	v->ends = xcalloc(n, sizeof(*v->ends));
	v->n_levels = n;
	len = 0;
	for (i = 0, p = name; i < n; i++) {
		size_t l = first_level_len(p, src->delim);

		v->levels[i] = xstrndup(p, l);
		len += (i ? 1 : 0) + l;
		v->ends[i] = len;
		p += l + (i + 1 < n);
	}
	canon_inbox_level(v->levels[0]);

	v->match = xmalloc(len + 1);
	for (i = 0, len = 0; i < n; i++) {
		size_t l = strlen(v->levels[i]);

		if (i)
			v->match[len++] = '/';
		memcpy(v->match + len, v->levels[i], l);
		len += l;
	}
	v->match[len] = '\0';
}

static void view_release(struct view *v)
{
	free_levels(v->levels, v->n_levels);
	free(v->ends);
	free(v->match);
	free(v->target);
	free(v->note);
}

/* Parents before children: the delimiter sorts below every other byte, so
 * "a" < "a.b" < "a b"; INBOX comes first of all. */
static int view_cmp(const void *pa, const void *pb)
{
	const struct view *a = pa, *b = pb;
	const unsigned char *x = (const unsigned char *)a->fi->name;
	const unsigned char *y = (const unsigned char *)b->fi->name;
	unsigned char d = (unsigned char)a->delim;

	if (a->inbox != b->inbox)
		return a->inbox ? -1 : 1;
	for (; *x && *x == *y; x++, y++)
		;
	if (*x != *y) {
		/* map the delimiter to 1: below any byte but the terminator */
		unsigned cx = d && *x == d ? 1 : *x ? *x + 1u : 0;
		unsigned cy = d && *y == d ? 1 : *y ? *y + 1u : 0;

		return cx < cy ? -1 : 1;
	}
	return a->index < b->index ? -1 : a->index > b->index;
}

/* ---- building target names ------------------------------------------------- */

struct ctx {
	const struct folder_list *dst;
	char *dst_prefix;
	char repl; /* replaces the target delimiter inside a level */
	bool source_marks_special;
	const struct folder_info *dst_special[N_SPECIAL];
};

/* Target name for levels[0..n), below head (an absolute target name) or,
 * with no head, under the target prefix (but INBOX is never prefixed).
 * Notes what had to change.  Caller frees. */
static char *build_name(const struct ctx *c, const char *head, char *const *levels, size_t n,
                        char **note)
{
	char tdelim = c->dst->delim;
	char sep = tdelim ? tdelim : c->repl;
	bool need_sep, replaced = false, joined = false;
	size_t len, i = 0;
	char *out, *q;

	if (!head && n && strcmp(levels[0], "INBOX") == 0) {
		head = "INBOX";
		i = 1;
	}
	len = strlen(head ? head : c->dst_prefix) + 1;
	for (size_t k = i; k < n; k++)
		len += strlen(levels[k]) + 1;
	out = xmalloc(len);
	q = stpcpy(out, head ? head : c->dst_prefix);
	need_sep = head != NULL;
	for (; i < n; i++) {
		if (need_sep) {
			*q++ = sep;
			joined = true;
		}
		for (const char *p = levels[i]; *p; p++) {
			if (tdelim && *p == tdelim) {
				*q++ = c->repl;
				replaced = true;
			} else {
				*q++ = *p;
			}
		}
		need_sep = true;
	}
	*q = '\0';
	if (replaced && note)
		note_add(
		    note,
		    "'%c' in folder name replaced by '%c' (the target uses '%c' between levels)",
		    tdelim, c->repl, tdelim);
	if (!tdelim && joined && note)
		note_add(note, "the target has no hierarchy: levels joined with '%c'", c->repl);
	return out;
}

/* ---- the rules, one folder at a time -------------------------------------- */

static bool globs_allow(const struct folder_rules *rules, const char *match, char **note)
{
	size_t i;

	for (i = 0; i < rules->n_exclude; i++) {
		if (fnmatch(rules->exclude[i], match, 0) == 0) {
			note_add(note, "matches --exclude '%s'", rules->exclude[i]);
			return false;
		}
	}
	if (!rules->n_include)
		return true;
	for (i = 0; i < rules->n_include; i++)
		if (fnmatch(rules->include[i], match, 0) == 0)
			return true;
	note_add(note, "matches no --include pattern");
	return false;
}

/* The longest --folder-map whose SRC is this folder or one of its parents. */
static void find_rename(struct view *v, const struct rename *renames, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(renames[i].src);

		if (strncmp(v->match, renames[i].src, len) != 0)
			continue;
		/* SRC must end at a level boundary, not inside a level */
		for (size_t k = 0; k < v->n_levels; k++) {
			if (v->ends[k] == len && k + 1 > v->rename_depth) {
				v->rename = &renames[i];
				v->rename_depth = k + 1;
			}
		}
	}
}

static const char *special_label(unsigned attr)
{
	for (size_t i = 0; i < N_SPECIAL; i++)
		if (special_uses[i].attr == attr)
			return special_uses[i].label;
	return "?";
}

static size_t special_slot(unsigned attr)
{
	size_t i;

	for (i = 0; i < N_SPECIAL; i++)
		if (special_uses[i].attr == attr)
			break;
	return i;
}

/* Rule 5, first half: which special-use attribute does each folder claim?
 * One source folder per attribute (the first, in plan order) goes to the
 * target's folder; a second one keeps its own name rather than become a
 * conflict whose mail would not be copied. */
static void claim_special(const struct ctx *c, struct view *views, size_t n)
{
	const struct view *claimed[N_SPECIAL] = {0};

	for (size_t i = 0; i < n; i++) {
		struct view *v = &views[i];
		unsigned attrs;

		if (v->inbox || v->rename || (v->fi->attrs & FA_NONEXISTENT))
			continue;
		if (c->source_marks_special) {
			attrs = v->fi->attrs & FA_SPECIAL_USE;
		} else {
			attrs = v->n_levels == 1 ? special_by_name(v->levels[0]) : 0;
			v->special_by_name = attrs != 0;
		}
		for (size_t s = 0; s < N_SPECIAL; s++) {
			if (!(attrs & special_uses[s].attr) || !c->dst_special[s])
				continue;
			if (claimed[s]) {
				note_add(&v->note,
				         "also %s, but '%s' already goes to the target's %s "
				         "folder: keeps its name",
				         special_uses[s].label, claimed[s]->fi->name,
				         special_uses[s].label);
				continue;
			}
			claimed[s] = v;
			v->special = special_uses[s].attr;
			break;
		}
	}

	/* children follow the nearest claiming ancestor; views are sorted, so
	 * an ancestor has been seen before its children */
	for (size_t i = 0; i < n; i++) {
		struct view *v = &views[i];

		for (size_t s = 0; s < N_SPECIAL; s++) {
			const struct view *p = claimed[s];

			if (!p || p == v || p->n_levels >= v->n_levels)
				continue;
			if (strncmp(v->match, p->match, strlen(p->match)) != 0 ||
			    v->ends[p->n_levels - 1] != strlen(p->match))
				continue;
			if (!v->special_parent || v->special_parent->n_levels < p->n_levels)
				v->special_parent = p;
		}
	}
}

static void map_one(const struct ctx *c, struct view *v)
{
	char *plain, **lv;
	size_t n;

	if (v->inbox) {
		v->target = xstrdup("INBOX");
		if (v->rename)
			note_add(&v->note,
			         "--folder-map '%s' does not move INBOX itself: INBOX always goes "
			         "to INBOX",
			         v->rename->text);
		return;
	}
	if (v->rename) {
		const struct rename *r = v->rename;

		n = r->n_dst + v->n_levels - v->rename_depth;
		lv = xcalloc(n, sizeof(*lv));
		for (size_t i = 0; i < r->n_dst; i++)
			lv[i] = r->dst[i];
		for (size_t i = v->rename_depth; i < v->n_levels; i++)
			lv[r->n_dst + i - v->rename_depth] = v->levels[i];
		note_add(&v->note, "renamed by --folder-map '%s'", r->text);
		v->target = build_name(c, NULL, lv, n, &v->note);
		free(lv);
		return;
	}

	plain = build_name(c, NULL, v->levels, v->n_levels, NULL);
	if (v->special) {
		const struct folder_info *t = c->dst_special[special_slot(v->special)];

		v->target = xstrdup(t->name);
		if (strcmp(v->target, plain) != 0) {
			if (v->special_by_name)
				note_add(&v->note,
				         "taken as %s by its name (the source marks no special-use "
				         "folders): goes to the target's %s folder '%s'",
				         special_label(v->special), special_label(v->special),
				         t->name);
			else
				note_add(&v->note, "%s folder: goes to the target's %s folder '%s'",
				         special_label(v->special), special_label(v->special),
				         t->name);
		}
	} else if (v->special_parent) {
		const struct view *p = v->special_parent;
		const struct folder_info *t = c->dst_special[special_slot(p->special)];

		v->target = build_name(c, t->name, v->levels + p->n_levels,
		                       v->n_levels - p->n_levels, &v->note);
		if (strcmp(v->target, plain) != 0)
			note_add(&v->note, "inside %s folder '%s', which goes to '%s'",
			         special_label(p->special), p->fi->name, t->name);
	} else {
		v->target = build_name(c, NULL, v->levels, v->n_levels, &v->note);
	}
	free(plain);
}

/* Rule 7.  Target names compared in plan order; the first keeps it. */
static void find_conflicts(const struct ctx *c, struct view *views, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct view *v = &views[i];

		if (v->action != FP_COPY)
			continue;
		for (size_t j = 0; j < i; j++) {
			const struct view *w = &views[j];
			char *note;

			if (w->action != FP_COPY || !name_eq(w->target, v->target, c->dst->delim))
				continue;
			note = xasprintf("conflict: '%s' and '%s' would both become '%s' on the "
			                 "target; only '%s' is copied",
			                 w->fi->name, v->fi->name, v->target, w->fi->name);
			if (v->note)
				note_add(&note, "%s", v->note);
			free(v->note);
			v->note = note;
			v->action = FP_CONFLICT;
			break;
		}
	}
}

int folder_rules_check(const struct folder_rules *rules, struct err *err)
{
	for (size_t i = 0; rules && i < rules->n_renames; i++) {
		struct rename r;
		memset(&r, 0, sizeof(r));
		int rc = parse_rename(rules->renames[i], &r, err);
		release_rename(&r);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int folder_plan_build(const struct folder_list *source, const struct folder_list *target,
                      const struct folder_rules *rules, struct folder_plan *plan_r, struct err *err)
{
	static const struct folder_rules no_rules;
	struct rename *renames = NULL;
	struct view *views = NULL;
	struct ctx c = {0};
	char *src_prefix;
	size_t n = source->count, i;

	plan_r->items = NULL;
	plan_r->count = 0;
	if (!rules)
		rules = &no_rules;

	if (rules->n_renames)
		renames = xcalloc(rules->n_renames, sizeof(*renames));
	for (i = 0; i < rules->n_renames; i++) {
		if (parse_rename(rules->renames[i], &renames[i], err) < 0) {
			release_rename(&renames[i]);
			while (i--)
				release_rename(&renames[i]);
			free(renames);
			return -1;
		}
	}

	c.dst = target;
	c.dst_prefix = norm_prefix(target->prefix, target->delim);
	c.repl = rules->delim_replacement ? rules->delim_replacement : '_';
	if (target->delim && c.repl == target->delim)
		c.repl = target->delim == '_' ? '-' : '_';
	for (i = 0; i < n; i++)
		if (source->items[i].attrs & FA_SPECIAL_USE)
			c.source_marks_special = true;
	for (size_t s = 0; s < N_SPECIAL; s++) {
		for (i = 0; i < target->count; i++) {
			const struct folder_info *t = &target->items[i];

			if ((t->attrs & special_uses[s].attr) &&
			    !(t->attrs & (FA_NOSELECT | FA_NONEXISTENT))) {
				c.dst_special[s] = t;
				break;
			}
		}
	}

	src_prefix = norm_prefix(source->prefix, source->delim);
	views = n ? xcalloc(n, sizeof(*views)) : NULL;
	for (i = 0; i < n; i++)
		view_init(&views[i], &source->items[i], i, source, src_prefix);
	free(src_prefix);
	if (n)
		qsort(views, n, sizeof(*views), view_cmp);

	for (i = 0; i < n; i++)
		find_rename(&views[i], renames, rules->n_renames);
	claim_special(&c, views, n);

	for (i = 0; i < n; i++) {
		struct view *v = &views[i];
		char *skip_note = NULL;

		if (v->fi->attrs & FA_NONEXISTENT) {
			v->action = FP_SKIP_NONEXISTENT;
			free(v->note);
			v->note = xstrdup("listed as \\NonExistent on the source: nothing to copy");
		} else if (!globs_allow(rules, v->match, &skip_note)) {
			free(v->note);
			v->note = skip_note;
			skip_note = NULL;
			v->action = FP_SKIP_EXCLUDED;
		} else {
			v->action = FP_COPY;
			map_one(&c, v);
		}
	}
	find_conflicts(&c, views, n);

	plan_r->items = n ? xcalloc(n, sizeof(*plan_r->items)) : NULL;
	plan_r->count = n;
	for (i = 0; i < n; i++) {
		struct folder_plan_entry *e = &plan_r->items[i];
		struct view *v = &views[i];

		e->source_name = xstrdup(v->fi->name);
		e->source_attrs = v->fi->attrs;
		e->action = v->action;
		e->note = v->note;
		v->note = NULL;
		if (v->action == FP_COPY) {
			const struct folder_info *t = folder_list_find(target, v->target);

			e->target_name = v->target;
			v->target = NULL;
			if (t && !(t->attrs & FA_NONEXISTENT)) {
				e->target_exists = true;
				e->target_attrs = t->attrs;
			}
		}
	}
	for (i = 0; i < n; i++)
		view_release(&views[i]);
	free(views);
	for (i = 0; i < rules->n_renames; i++)
		release_rename(&renames[i]);
	free(renames);
	free(c.dst_prefix);
	return 0;
}

void folder_plan_release(struct folder_plan *plan)
{
	for (size_t i = 0; i < plan->count; i++) {
		free(plan->items[i].source_name);
		free(plan->items[i].target_name);
		free(plan->items[i].note);
	}
	free(plan->items);
	plan->items = NULL;
	plan->count = 0;
}
