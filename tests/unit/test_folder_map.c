/* test_folder_map.c - the folder plan, rule by rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "engine/folder_map.h"

/* An Exchange Online-like target: '/' delimiter, no prefix. */
static void exchange_target(struct folder_list *t)
{
	folder_list_init(t, '/', "");
	folder_list_add(t, "INBOX", FA_HASNOCHILDREN);
	folder_list_add(t, "Archive", FA_ARCHIVE | FA_HASNOCHILDREN);
	folder_list_add(t, "Deleted Items", FA_TRASH | FA_HASNOCHILDREN);
	folder_list_add(t, "Drafts", FA_DRAFTS | FA_HASNOCHILDREN);
	folder_list_add(t, "Junk Email", FA_JUNK | FA_HASNOCHILDREN);
	folder_list_add(t, "Sent Items", FA_SENT | FA_HASNOCHILDREN);
	folder_list_add(t, "Outbox", FA_HASNOCHILDREN);
}

static const struct folder_plan_entry *entry(const struct folder_plan *p, const char *src)
{
	for (size_t i = 0; i < p->count; i++)
		if (strcmp(p->items[i].source_name, src) == 0)
			return &p->items[i];
	fail_msg("no plan entry for source '%s'", src);
	return NULL;
}

static void assert_copy(const struct folder_plan *p, const char *src, const char *dst)
{
	const struct folder_plan_entry *e = entry(p, src);

	assert_int_equal(e->action, FP_COPY);
	assert_non_null(e->target_name);
	assert_string_equal(e->target_name, dst);
}

static void assert_note(const struct folder_plan *p, const char *src, const char *note)
{
	const struct folder_plan_entry *e = entry(p, src);

	assert_non_null(e->note);
	assert_string_equal(e->note, note);
}

static void assert_note_has(const struct folder_plan *p, const char *src, const char *part)
{
	const struct folder_plan_entry *e = entry(p, src);

	assert_non_null(e->note);
	if (!strstr(e->note, part))
		fail_msg("note for '%s' is \"%s\", wanted it to contain \"%s\"", src, e->note,
		         part);
}

static void build_ok(const struct folder_list *s, const struct folder_list *t,
                     const struct folder_rules *r, struct folder_plan *p)
{
	struct err e;

	err_clear(&e);
	if (folder_plan_build(s, t, r, p, &e) != 0)
		fail_msg("folder_plan_build failed: %s", e.what);
}

static void test_attr_names(void **state)
{
	(void)state;
	assert_int_equal(folder_attr_from_name("\\Sent"), FA_SENT);
	assert_int_equal(folder_attr_from_name("\\sent"), FA_SENT);
	assert_int_equal(folder_attr_from_name("\\NOSELECT"), FA_NOSELECT);
	assert_int_equal(folder_attr_from_name("\\NonExistent"), FA_NONEXISTENT);
	assert_int_equal(folder_attr_from_name("\\Noinferiors"), FA_NOINFERIORS);
	assert_int_equal(folder_attr_from_name("\\Subscribed"), FA_SUBSCRIBED);
	assert_int_equal(folder_attr_from_name("\\Drafts"), FA_DRAFTS);
	assert_int_equal(folder_attr_from_name("\\Trash"), FA_TRASH);
	assert_int_equal(folder_attr_from_name("\\Junk"), FA_JUNK);
	assert_int_equal(folder_attr_from_name("\\Archive"), FA_ARCHIVE);
	assert_int_equal(folder_attr_from_name("\\All"), FA_ALL);
	assert_int_equal(folder_attr_from_name("\\Flagged"), FA_FLAGGED);
	assert_int_equal(folder_attr_from_name("\\HasChildren"), FA_HASCHILDREN);
	assert_int_equal(folder_attr_from_name("\\hasnochildren"), FA_HASNOCHILDREN);
	/* XLIST spellings */
	assert_int_equal(folder_attr_from_name("\\Spam"), FA_JUNK);
	assert_int_equal(folder_attr_from_name("\\AllMail"), FA_ALL);
	assert_int_equal(folder_attr_from_name("\\Inbox"), 0);
	assert_int_equal(folder_attr_from_name("\\Marked"), 0);
	assert_int_equal(folder_attr_from_name("Sent"), 0);
	assert_int_equal(folder_attr_from_name(""), 0);
}

static void test_list_find(void **state)
{
	struct folder_list l;

	(void)state;
	folder_list_init(&l, '.', NULL);
	assert_string_equal(l.prefix, "");
	for (int i = 0; i < 40; i++) {
		char name[16];

		snprintf(name, sizeof(name), "f%d", i);
		folder_list_add(&l, name, 0);
	}
	folder_list_add(&l, "Inbox", FA_HASCHILDREN);
	folder_list_add(&l, "Inbox.sub", 0);
	assert_int_equal(l.count, 42);
	assert_non_null(folder_list_find(&l, "f39"));
	assert_null(folder_list_find(&l, "F39"));
	assert_null(folder_list_find(&l, "f4."));
	assert_string_equal(folder_list_find(&l, "INBOX")->name, "Inbox");
	assert_string_equal(folder_list_find(&l, "inbox")->name, "Inbox");
	assert_string_equal(folder_list_find(&l, "INBOX.sub")->name, "Inbox.sub");
	assert_null(folder_list_find(&l, "INBOX.SUB"));
	folder_list_release(&l);
	assert_int_equal(l.count, 0);
	assert_null(l.items);
}

/* Postfix + Dovecot Maildir++ with SPECIAL-USE, to Exchange Online. */
static void test_dovecot_to_exchange(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	folder_list_init(&s, '.', "");
	folder_list_add(&s, "INBOX", FA_HASNOCHILDREN);
	folder_list_add(&s, "Sent", FA_SENT | FA_HASCHILDREN);
	folder_list_add(&s, "Sent.2019", FA_HASNOCHILDREN);
	folder_list_add(&s, "Trash", FA_TRASH);
	folder_list_add(&s, "Junk", FA_JUNK);
	folder_list_add(&s, "Drafts", FA_DRAFTS);
	folder_list_add(&s, "Archive", FA_ARCHIVE);
	folder_list_add(&s, "Projects", FA_HASCHILDREN);
	folder_list_add(&s, "Projects.Alpha", FA_HASCHILDREN);
	folder_list_add(&s, "Projects.Alpha.Specs", 0);
	folder_list_add(&s, "Projects Old", 0);
	folder_list_add(&s, "Outbox", 0);
	exchange_target(&t);

	build_ok(&s, &t, NULL, &p);
	assert_int_equal(p.count, s.count);

	assert_copy(&p, "INBOX", "INBOX");
	assert_true(entry(&p, "INBOX")->target_exists);
	assert_null(entry(&p, "INBOX")->note);

	assert_copy(&p, "Sent", "Sent Items");
	assert_note(&p, "Sent", "\\Sent folder: goes to the target's \\Sent folder 'Sent Items'");
	assert_true(entry(&p, "Sent")->target_exists);
	assert_int_equal(entry(&p, "Sent")->target_attrs, FA_SENT | FA_HASNOCHILDREN);

	assert_copy(&p, "Sent.2019", "Sent Items/2019");
	assert_note(&p, "Sent.2019", "inside \\Sent folder 'Sent', which goes to 'Sent Items'");
	assert_false(entry(&p, "Sent.2019")->target_exists);

	assert_copy(&p, "Trash", "Deleted Items");
	assert_copy(&p, "Junk", "Junk Email");
	assert_copy(&p, "Drafts", "Drafts");
	assert_null(entry(&p, "Drafts")->note); /* same name: nothing to explain */
	assert_true(entry(&p, "Drafts")->target_exists);
	assert_copy(&p, "Archive", "Archive");
	assert_copy(&p, "Projects", "Projects");
	assert_null(entry(&p, "Projects")->note);
	assert_copy(&p, "Projects.Alpha", "Projects/Alpha");
	assert_copy(&p, "Projects.Alpha.Specs", "Projects/Alpha/Specs");
	assert_null(entry(&p, "Projects.Alpha.Specs")->note);
	assert_false(entry(&p, "Projects.Alpha.Specs")->target_exists);
	assert_copy(&p, "Projects Old", "Projects Old");
	assert_copy(&p, "Outbox", "Outbox");
	assert_true(entry(&p, "Outbox")->target_exists);

	/* INBOX first, parents before children, '.' before ' ' */
	assert_string_equal(p.items[0].source_name, "INBOX");
	for (size_t i = 0; i < p.count; i++) {
		if (strcmp(p.items[i].source_name, "Projects") == 0) {
			assert_string_equal(p.items[i + 1].source_name, "Projects.Alpha");
			assert_string_equal(p.items[i + 2].source_name, "Projects.Alpha.Specs");
			assert_string_equal(p.items[i + 3].source_name, "Projects Old");
		}
		if (strcmp(p.items[i].source_name, "Sent") == 0)
			assert_string_equal(p.items[i + 1].source_name, "Sent.2019");
	}

	folder_plan_release(&p);
	assert_null(p.items);
	folder_list_release(&s);
	folder_list_release(&t);
}

static void test_japanese_and_deep(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	folder_list_init(&s, '.', "");
	folder_list_add(&s, "日本語", FA_HASCHILDREN);
	folder_list_add(&s, "日本語.報告", 0);
	folder_list_add(&s, "a", 0);
	folder_list_add(&s, "a.b", 0);
	folder_list_add(&s, "a.b.c", 0);
	folder_list_add(&s, "a.b.c.d", 0);
	exchange_target(&t);
	folder_list_add(&t, "日本語", FA_HASCHILDREN);

	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "日本語", "日本語");
	assert_true(entry(&p, "日本語")->target_exists);
	assert_copy(&p, "日本語.報告", "日本語/報告");
	assert_null(entry(&p, "日本語.報告")->note);
	assert_copy(&p, "a.b.c.d", "a/b/c/d");
	assert_string_equal(p.items[0].source_name, "a");
	assert_string_equal(p.items[1].source_name, "a.b");
	assert_string_equal(p.items[2].source_name, "a.b.c");
	assert_string_equal(p.items[3].source_name, "a.b.c.d");
	folder_plan_release(&p);

	/* globs and renames see '/' between levels, in UTF-8 */
	const char *inc[] = {"日本語/*"};
	const char *ren[] = {"日本語/報告=Reports/日本"};
	struct folder_rules r = {.include = inc, .n_include = 1, .renames = ren, .n_renames = 1};
	build_ok(&s, &t, &r, &p);
	assert_int_equal(entry(&p, "日本語")->action, FP_SKIP_EXCLUDED);
	assert_copy(&p, "日本語.報告", "Reports/日本");
	assert_note(&p, "日本語.報告", "renamed by --folder-map '日本語/報告=Reports/日本'");
	folder_plan_release(&p);

	folder_list_release(&s);
	folder_list_release(&t);
}

static void test_delimiter_in_name(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	folder_list_init(&s, '.', "");
	folder_list_add(&s, "a/b", 0);
	folder_list_add(&s, "x.c/d/e", 0);
	exchange_target(&t);
	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "a/b", "a_b");
	assert_note(&p, "a/b",
	            "'/' in folder name replaced by '_' (the target uses '/' between levels)");
	assert_copy(&p, "x.c/d/e", "x/c_d_e");
	folder_plan_release(&p);

	/* a chosen replacement */
	struct folder_rules r = {.delim_replacement = '-'};
	build_ok(&s, &t, &r, &p);
	assert_copy(&p, "a/b", "a-b");
	assert_note(&p, "a/b",
	            "'/' in folder name replaced by '-' (the target uses '/' between levels)");
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);

	/* the other way: '/' source, '.' target */
	folder_list_init(&s, '/', "");
	folder_list_add(&s, "Releases", 0);
	folder_list_add(&s, "Releases/v1.2", 0);
	folder_list_init(&t, '.', "");
	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "Releases/v1.2", "Releases.v1_2");
	assert_note(&p, "Releases/v1.2",
	            "'.' in folder name replaced by '_' (the target uses '.' between levels)");
	assert_null(entry(&p, "Releases")->note);
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);
}

static void test_inbox_case_and_children(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	folder_list_init(&s, '/', "");
	folder_list_add(&s, "Zeta", 0);
	folder_list_add(&s, "inbox/Sub", 0);
	folder_list_add(&s, "Inbox", FA_HASCHILDREN);
	exchange_target(&t);
	folder_list_add(&t, "INBOX/Sub", 0);

	build_ok(&s, &t, NULL, &p);
	assert_string_equal(p.items[0].source_name, "Inbox");
	assert_copy(&p, "Inbox", "INBOX");
	assert_true(entry(&p, "Inbox")->target_exists);
	assert_copy(&p, "inbox/Sub", "INBOX/Sub");
	assert_true(entry(&p, "inbox/Sub")->target_exists);
	assert_copy(&p, "Zeta", "Zeta");
	folder_plan_release(&p);

	/* globs see INBOX as "INBOX" */
	const char *exc[] = {"INBOX/*"};
	struct folder_rules r = {.exclude = exc, .n_exclude = 1};
	build_ok(&s, &t, &r, &p);
	assert_int_equal(entry(&p, "inbox/Sub")->action, FP_SKIP_EXCLUDED);
	assert_null(entry(&p, "inbox/Sub")->target_name);
	assert_note(&p, "inbox/Sub", "matches --exclude 'INBOX/*'");
	assert_copy(&p, "Inbox", "INBOX");
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);
}

/* Courier/Cyrus: everything lives under "INBOX.". */
static void test_inbox_prefixed_source(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	folder_list_init(&s, '.', "INBOX.");
	folder_list_add(&s, "INBOX", FA_HASCHILDREN);
	folder_list_add(&s, "INBOX.Sent", FA_SENT);
	folder_list_add(&s, "INBOX.Sent.2020", 0);
	folder_list_add(&s, "INBOX.a", 0);
	folder_list_add(&s, "INBOX.a.b", 0);
	folder_list_add(&s, "INBOX.Trash", 0); /* no \Trash, and others are marked */
	exchange_target(&t);

	const char *exc[] = {"a/b"};
	struct folder_rules r = {.exclude = exc, .n_exclude = 1};
	build_ok(&s, &t, &r, &p);
	assert_string_equal(p.items[0].source_name, "INBOX");
	assert_copy(&p, "INBOX", "INBOX");
	assert_copy(&p, "INBOX.Sent", "Sent Items");
	assert_copy(&p, "INBOX.Sent.2020", "Sent Items/2020");
	assert_copy(&p, "INBOX.a", "a");
	assert_int_equal(entry(&p, "INBOX.a.b")->action, FP_SKIP_EXCLUDED);
	assert_copy(&p, "INBOX.Trash", "Trash");
	folder_plan_release(&p);
	folder_list_release(&t);

	/* the same to a target with an "INBOX/" prefix: prepended, but not to INBOX */
	folder_list_init(&t, '/', "INBOX/");
	folder_list_add(&t, "INBOX", FA_HASCHILDREN);
	folder_list_add(&t, "INBOX/Sent", FA_SENT);
	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "INBOX", "INBOX");
	assert_copy(&p, "INBOX.Sent", "INBOX/Sent");
	assert_null(entry(&p, "INBOX.Sent")->note);
	assert_copy(&p, "INBOX.Sent.2020", "INBOX/Sent/2020");
	assert_copy(&p, "INBOX.a.b", "INBOX/a/b");
	assert_copy(&p, "INBOX.Trash", "INBOX/Trash");
	folder_plan_release(&p);
	folder_list_release(&t);

	/* prefix given without its delimiter */
	folder_list_init(&t, '.', "INBOX");
	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "INBOX.a.b", "INBOX.a.b");
	assert_copy(&p, "INBOX", "INBOX");
	folder_plan_release(&p);
	folder_list_release(&t);
	folder_list_release(&s);
}

static void test_special_use_by_attribute(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	/* names that mean nothing: only the attributes count */
	folder_list_init(&s, '.', "");
	folder_list_add(&s, "INBOX", 0);
	folder_list_add(&s, "Gesendet", FA_SENT);
	folder_list_add(&s, "Papierkorb", FA_TRASH | FA_HASCHILDREN);
	folder_list_add(&s, "Papierkorb.Alt", 0);
	folder_list_add(&s, "Sent", 0);                /* not special here */
	folder_list_add(&s, "Sent Messages", FA_SENT); /* a second \Sent */
	folder_list_add(&s, "Aufbewahren", FA_ARCHIVE);
	folder_list_init(&t, '/', "");
	folder_list_add(&t, "INBOX", 0);
	folder_list_add(&t, "Elementos enviados", FA_SENT);
	folder_list_add(&t, "Papelera", FA_TRASH);
	/* no \Archive on the target */

	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "Gesendet", "Elementos enviados");
	assert_true(entry(&p, "Gesendet")->target_exists);
	assert_copy(&p, "Papierkorb", "Papelera");
	assert_copy(&p, "Papierkorb.Alt", "Papelera/Alt");
	assert_copy(&p, "Sent", "Sent");
	assert_null(entry(&p, "Sent")->note);
	assert_copy(&p, "Sent Messages", "Sent Messages");
	assert_note(&p, "Sent Messages",
	            "also \\Sent, but 'Gesendet' already goes to the target's \\Sent folder: keeps "
	            "its name");
	assert_copy(&p, "Aufbewahren", "Aufbewahren");
	assert_null(entry(&p, "Aufbewahren")->note);
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);

	/* Gmail-style: nested special-use folder and a \Noselect parent */
	folder_list_init(&s, '/', "");
	folder_list_add(&s, "INBOX", 0);
	folder_list_add(&s, "[Gmail]", FA_NOSELECT | FA_HASCHILDREN);
	folder_list_add(&s, "[Gmail]/Sent Mail", FA_SENT | FA_HASCHILDREN);
	folder_list_add(&s, "[Gmail]/Sent Mail/old", 0);
	folder_list_add(&s, "[Gmail]/Spam", FA_JUNK);
	exchange_target(&t);
	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "[Gmail]", "[Gmail]");
	assert_int_equal(entry(&p, "[Gmail]")->source_attrs, FA_NOSELECT | FA_HASCHILDREN);
	assert_copy(&p, "[Gmail]/Sent Mail", "Sent Items");
	assert_copy(&p, "[Gmail]/Sent Mail/old", "Sent Items/old");
	assert_copy(&p, "[Gmail]/Spam", "Junk Email");
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);
}

static void test_special_use_by_name(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	/* an old server that marks nothing */
	folder_list_init(&s, '.', "");
	folder_list_add(&s, "INBOX", 0);
	folder_list_add(&s, "Sent", FA_HASCHILDREN);
	folder_list_add(&s, "Sent.2019", 0);
	folder_list_add(&s, "Sent Messages", 0);
	folder_list_add(&s, "Deleted Messages", 0);
	folder_list_add(&s, "spam", 0);
	folder_list_add(&s, "Drafts", 0);
	folder_list_add(&s, "Archives", 0);
	folder_list_add(&s, "Work.Trash", 0); /* not top level */
	exchange_target(&t);

	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "Sent", "Sent Items");
	assert_note(&p, "Sent",
	            "taken as \\Sent by its name (the source marks no special-use folders): goes "
	            "to the target's \\Sent folder 'Sent Items'");
	assert_copy(&p, "Sent.2019", "Sent Items/2019");
	assert_copy(&p, "Sent Messages", "Sent Messages");
	assert_note_has(&p, "Sent Messages", "'Sent' already goes to the target's \\Sent folder");
	assert_copy(&p, "Deleted Messages", "Deleted Items");
	assert_copy(&p, "spam", "Junk Email");
	assert_copy(&p, "Drafts", "Drafts");
	assert_copy(&p, "Archives", "Archive");
	assert_copy(&p, "Work.Trash", "Work/Trash");
	assert_null(entry(&p, "Work.Trash")->note);
	folder_plan_release(&p);
	folder_list_release(&t);

	/* the fallback is for the source only: a target that marks nothing
	 * keeps the source's names */
	folder_list_init(&t, '/', "");
	folder_list_add(&t, "INBOX", 0);
	folder_list_add(&t, "Sent Items", 0);
	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "Sent", "Sent");
	assert_copy(&p, "Sent.2019", "Sent/2019");
	assert_copy(&p, "Deleted Messages", "Deleted Messages");
	folder_plan_release(&p);
	folder_list_release(&t);
	folder_list_release(&s);

	/* a source that marks one folder: names no longer count */
	folder_list_init(&s, '.', "");
	folder_list_add(&s, "Trash", 0);
	folder_list_add(&s, "Drafts", FA_DRAFTS);
	exchange_target(&t);
	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "Trash", "Trash");
	folder_plan_release(&p);
	folder_list_release(&t);
	folder_list_release(&s);
}

static void test_include_exclude(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	folder_list_init(&s, '.', "");
	folder_list_add(&s, "INBOX", 0);
	folder_list_add(&s, "Lists", 0);
	folder_list_add(&s, "Lists.linux", 0);
	folder_list_add(&s, "Lists.linux.kernel", 0);
	folder_list_add(&s, "Lists.bsd", 0);
	folder_list_add(&s, "Work", 0);
	exchange_target(&t);

	/* '*' crosses levels */
	const char *exc[] = {"Lists/linux*"};
	struct folder_rules r = {.exclude = exc, .n_exclude = 1};
	build_ok(&s, &t, &r, &p);
	assert_int_equal(entry(&p, "Lists.linux")->action, FP_SKIP_EXCLUDED);
	assert_int_equal(entry(&p, "Lists.linux.kernel")->action, FP_SKIP_EXCLUDED);
	assert_note(&p, "Lists.linux.kernel", "matches --exclude 'Lists/linux*'");
	assert_copy(&p, "Lists.bsd", "Lists/bsd");
	assert_copy(&p, "Lists", "Lists");
	folder_plan_release(&p);

	const char *inc[] = {"INBOX", "Lists*"};
	const char *exc2[] = {"*/bsd"};
	struct folder_rules r2 = {.include = inc, .n_include = 2, .exclude = exc2, .n_exclude = 1};
	build_ok(&s, &t, &r2, &p);
	assert_copy(&p, "INBOX", "INBOX");
	assert_copy(&p, "Lists", "Lists");
	assert_copy(&p, "Lists.linux.kernel", "Lists/linux/kernel");
	assert_int_equal(entry(&p, "Lists.bsd")->action, FP_SKIP_EXCLUDED);
	assert_int_equal(entry(&p, "Work")->action, FP_SKIP_EXCLUDED);
	assert_note(&p, "Work", "matches no --include pattern");
	assert_null(entry(&p, "Work")->target_name);
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);
}

static void test_folder_map(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	folder_list_init(&s, '.', "");
	folder_list_add(&s, "INBOX", 0);
	folder_list_add(&s, "A", 0);
	folder_list_add(&s, "A.B", 0);
	folder_list_add(&s, "A.B.C", 0);
	folder_list_add(&s, "A.B.D", 0);
	folder_list_add(&s, "A.BB", 0);
	folder_list_add(&s, "Sent", FA_SENT);
	folder_list_add(&s, "Sent.2018", 0);
	folder_list_add(&s, "INBOX.x", 0);
	exchange_target(&t);
	folder_list_add(&t, "X/Y", 0);

	const char *ren[] = {"A/B=X/Y", "A/B/D=Z", "Sent/2018=Old/Sent 2018", "INBOX=Old Inbox"};
	struct folder_rules r = {.renames = ren, .n_renames = 4};
	build_ok(&s, &t, &r, &p);
	assert_copy(&p, "A", "A");
	assert_null(entry(&p, "A")->note);
	assert_copy(&p, "A.B", "X/Y");
	assert_true(entry(&p, "A.B")->target_exists);
	assert_note(&p, "A.B", "renamed by --folder-map 'A/B=X/Y'");
	assert_copy(&p, "A.B.C", "X/Y/C");
	assert_note(&p, "A.B.C", "renamed by --folder-map 'A/B=X/Y'");
	assert_copy(&p, "A.B.D", "Z");   /* the longer SRC wins */
	assert_copy(&p, "A.BB", "A/BB"); /* "A/B" is not a parent of "A/BB" */
	assert_copy(&p, "Sent", "Sent Items");
	assert_copy(&p, "Sent.2018", "Old/Sent 2018"); /* rename beats special-use */
	assert_copy(&p, "INBOX", "INBOX");
	assert_note(&p, "INBOX",
	            "--folder-map 'INBOX=Old Inbox' does not move INBOX itself: INBOX always goes "
	            "to INBOX");
	assert_copy(&p, "INBOX.x", "Old Inbox/x");
	folder_plan_release(&p);
	folder_list_release(&t);

	/* DST in '/' is converted to a '.' target; a '.' in it is not a level */
	folder_list_init(&t, '.', "INBOX.");
	const char *ren2[] = {"A=Projects/v1.0"};
	struct folder_rules r2 = {.renames = ren2, .n_renames = 1};
	build_ok(&s, &t, &r2, &p);
	assert_copy(&p, "A.B.C", "INBOX.Projects.v1_0.B.C");
	assert_note(&p, "A.B.C",
	            "renamed by --folder-map 'A=Projects/v1.0'; '.' in folder name replaced by '_' "
	            "(the target uses '.' between levels)");
	folder_plan_release(&p);
	folder_list_release(&t);
	folder_list_release(&s);
}

static void expect_bad_rename(const char *rule, const char *what)
{
	struct folder_list s, t;
	struct folder_plan p = {(void *)&p, 99};
	struct err e;
	const char *ren[] = {"Good=Fine", rule};
	struct folder_rules r = {.renames = ren, .n_renames = 2};

	folder_list_init(&s, '.', "");
	folder_list_add(&s, "INBOX", 0);
	folder_list_init(&t, '/', "");
	err_clear(&e);
	assert_int_equal(folder_plan_build(&s, &t, &r, &p, &e), -1);
	assert_int_equal(e.kind, ERR_CONFIG);
	assert_string_equal(e.what, what);
	assert_null(p.items);
	assert_int_equal(p.count, 0);
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);
}

static void test_folder_map_malformed(void **state)
{
	(void)state;
	expect_bad_rename("x", "--folder-map 'x': expected SRC=DST");
	expect_bad_rename("=x", "--folder-map '=x': expected SRC=DST");
	expect_bad_rename("x=", "--folder-map 'x=': expected SRC=DST");
	expect_bad_rename("", "--folder-map '': expected SRC=DST");
	expect_bad_rename("a//b=c", "--folder-map 'a//b=c': empty folder level");
	expect_bad_rename("a=b/", "--folder-map 'a=b/': empty folder level");
	expect_bad_rename("a=/b", "--folder-map 'a=/b': empty folder level");
}

static void test_conflicts(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	folder_list_init(&s, '.', "");
	folder_list_add(&s, "INBOX", 0);
	folder_list_add(&s, "Sent", FA_SENT);
	folder_list_add(&s, "Sent Items", 0);
	folder_list_add(&s, "a/b", 0);
	folder_list_add(&s, "a_b", 0);
	folder_list_add(&s, "Old", 0);
	folder_list_add(&s, "New", 0);
	exchange_target(&t);

	const char *ren[] = {"Old=New"};
	struct folder_rules r = {.renames = ren, .n_renames = 1};
	build_ok(&s, &t, &r, &p);
	assert_copy(&p, "Sent", "Sent Items");
	assert_int_equal(entry(&p, "Sent Items")->action, FP_CONFLICT);
	assert_null(entry(&p, "Sent Items")->target_name);
	assert_note(&p, "Sent Items",
	            "conflict: 'Sent' and 'Sent Items' would both become 'Sent Items' on the "
	            "target; only 'Sent' is copied");
	assert_copy(&p, "a/b", "a_b");
	assert_int_equal(entry(&p, "a_b")->action, FP_CONFLICT);
	assert_copy(&p, "New", "New");
	assert_int_equal(entry(&p, "Old")->action, FP_CONFLICT);
	assert_note(&p, "Old",
	            "conflict: 'New' and 'Old' would both become 'New' on the target; only 'New' "
	            "is copied; renamed by --folder-map 'Old=New'");
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);

	/* INBOX compared in any case; an excluded folder takes no name */
	folder_list_init(&s, '/', "");
	folder_list_add(&s, "INBOX", 0);
	folder_list_add(&s, "Mail", 0);
	folder_list_add(&s, "Mail/Inbox", 0);
	folder_list_add(&s, "x", 0);
	folder_list_add(&s, "y", 0);
	exchange_target(&t);
	const char *ren2[] = {"Mail/Inbox=inbox", "x=z", "y=z"};
	const char *exc[] = {"x"};
	struct folder_rules r2 = {.renames = ren2, .n_renames = 3, .exclude = exc, .n_exclude = 1};
	build_ok(&s, &t, &r2, &p);
	assert_copy(&p, "INBOX", "INBOX");
	assert_int_equal(entry(&p, "Mail/Inbox")->action, FP_CONFLICT);
	assert_note_has(&p, "Mail/Inbox", "'INBOX' and 'Mail/Inbox' would both become 'INBOX'");
	assert_int_equal(entry(&p, "x")->action, FP_SKIP_EXCLUDED);
	assert_copy(&p, "y", "z");
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);
}

static void test_nonexistent_and_noselect(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	folder_list_init(&s, '/', "");
	folder_list_add(&s, "INBOX", 0);
	folder_list_add(&s, "Gone", FA_NONEXISTENT | FA_SUBSCRIBED);
	folder_list_add(&s, "Gone/Child", 0);
	folder_list_add(&s, "Container", FA_NOSELECT | FA_HASCHILDREN);
	folder_list_add(&s, "Container/Leaf", 0);
	folder_list_init(&t, '/', "");
	folder_list_add(&t, "INBOX", 0);
	folder_list_add(&t, "Container", FA_NONEXISTENT); /* subscribed only */

	const char *exc[] = {"Gone"};
	struct folder_rules r = {.exclude = exc, .n_exclude = 1};
	build_ok(&s, &t, &r, &p);
	/* \NonExistent goes first, before the globs */
	assert_int_equal(entry(&p, "Gone")->action, FP_SKIP_NONEXISTENT);
	assert_null(entry(&p, "Gone")->target_name);
	assert_note(&p, "Gone", "listed as \\NonExistent on the source: nothing to copy");
	assert_copy(&p, "Gone/Child", "Gone/Child");
	assert_copy(&p, "Container", "Container");
	assert_false(entry(&p, "Container")->target_exists);
	assert_int_equal(entry(&p, "Container")->source_attrs, FA_NOSELECT | FA_HASCHILDREN);
	assert_copy(&p, "Container/Leaf", "Container/Leaf");
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);
}

static void test_flat(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	/* hierarchical source, flat target */
	folder_list_init(&s, '.', "");
	folder_list_add(&s, "INBOX", 0);
	folder_list_add(&s, "INBOX.x", 0);
	folder_list_add(&s, "Projects", 0);
	folder_list_add(&s, "Projects.2019", 0);
	folder_list_add(&s, "a/b", 0);
	folder_list_add(&s, "Sent", FA_SENT);
	folder_list_add(&s, "Sent.old", 0);
	folder_list_init(&t, '\0', "");
	folder_list_add(&t, "INBOX", 0);
	folder_list_add(&t, "Sent Items", FA_SENT);
	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "INBOX.x", "INBOX_x");
	assert_copy(&p, "Projects", "Projects");
	assert_null(entry(&p, "Projects")->note);
	assert_copy(&p, "Projects.2019", "Projects_2019");
	assert_note(&p, "Projects.2019", "the target has no hierarchy: levels joined with '_'");
	assert_copy(&p, "a/b", "a/b"); /* no delimiter on the target to clash with */
	assert_null(entry(&p, "a/b")->note);
	assert_copy(&p, "Sent", "Sent Items");
	assert_copy(&p, "Sent.old", "Sent Items_old");
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);

	/* flat source, hierarchical target: the whole name is one level */
	folder_list_init(&s, '\0', "");
	folder_list_add(&s, "INBOX", 0);
	folder_list_add(&s, "a.b", 0);
	folder_list_add(&s, "c/d", 0);
	folder_list_init(&t, '.', "");
	build_ok(&s, &t, NULL, &p);
	assert_copy(&p, "a.b", "a_b");
	assert_note(&p, "a.b",
	            "'.' in folder name replaced by '_' (the target uses '.' between levels)");
	assert_copy(&p, "c/d", "c/d");
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);
}

static void test_empty(void **state)
{
	struct folder_list s, t;
	struct folder_plan p;

	(void)state;
	folder_list_init(&s, '.', "");
	folder_list_init(&t, '/', "");
	build_ok(&s, &t, NULL, &p);
	assert_int_equal(p.count, 0);
	folder_plan_release(&p);
	folder_list_release(&s);
	folder_list_release(&t);
}

/* Random lists of awkward names: no crash, no leak, and the plan's
 * promises hold (no two copies land on one name, INBOX first, parents
 * before children). */
static unsigned next_rand(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return (*seed >> 16) & 0x7fff;
}

static bool same_target(const char *a, const char *b)
{
	if (strncasecmp(a, "INBOX", 5) == 0 && strncasecmp(b, "INBOX", 5) == 0)
		return strcmp(a + 5, b + 5) == 0;
	return strcmp(a, b) == 0;
}

static void test_random_names(void **state)
{
	static const char alphabet[] = "ab./_ INBOXinbox";
	static const char delims[] = {'.', '/', '\0'};
	static const char *prefixes[] = {"", "INBOX.", "INBOX/"};
	const char *inc[] = {"*"};
	const char *exc[] = {"a*b"};
	const char *ren[] = {"a=b/a", "INBOX/a=x"};
	unsigned seed = 1;

	(void)state;
	for (int round = 0; round < 3000; round++) {
		struct folder_list s, t;
		struct folder_plan p;
		struct folder_rules r = {0};
		char sd = delims[next_rand(&seed) % 3], td = delims[next_rand(&seed) % 3];

		folder_list_init(&s, sd, prefixes[next_rand(&seed) % 3]);
		folder_list_init(&t, td, prefixes[next_rand(&seed) % 3]);
		for (unsigned n = next_rand(&seed) % 12; n; n--) {
			char name[8];
			unsigned len = next_rand(&seed) % (sizeof(name) - 1);

			for (unsigned i = 0; i < len; i++)
				name[i] = alphabet[next_rand(&seed) % (sizeof(alphabet) - 1)];
			name[len] = '\0';
			folder_list_add(&s, name, 1u << (next_rand(&seed) % 13));
			if (next_rand(&seed) % 2)
				folder_list_add(&t, name, 1u << (next_rand(&seed) % 13));
		}
		if (next_rand(&seed) % 2) {
			r.include = inc, r.n_include = 1;
			r.exclude = exc, r.n_exclude = 1;
			r.renames = ren, r.n_renames = 2;
		}
		build_ok(&s, &t, &r, &p);
		assert_int_equal(p.count, s.count);
		for (size_t i = 0; i < p.count; i++) {
			const struct folder_plan_entry *e = &p.items[i];

			assert_true((e->target_name != NULL) == (e->action == FP_COPY));
			if (i && strcasecmp(e->source_name, "INBOX") == 0)
				fail_msg("INBOX not first");
			for (size_t j = 0; j < i && e->action == FP_COPY; j++)
				if (p.items[j].action == FP_COPY)
					assert_false(
					    same_target(p.items[j].target_name, e->target_name));
			/* a parent listed after its child? */
			for (size_t j = i + 1; sd && j < p.count; j++) {
				size_t l = strlen(p.items[j].source_name);

				if (strncmp(e->source_name, p.items[j].source_name, l) == 0 &&
				    e->source_name[l] == sd)
					fail_msg("'%s' before its parent '%s'", e->source_name,
					         p.items[j].source_name);
			}
		}
		folder_plan_release(&p);
		folder_list_release(&s);
		folder_list_release(&t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_attr_names),
	    cmocka_unit_test(test_list_find),
	    cmocka_unit_test(test_dovecot_to_exchange),
	    cmocka_unit_test(test_japanese_and_deep),
	    cmocka_unit_test(test_delimiter_in_name),
	    cmocka_unit_test(test_inbox_case_and_children),
	    cmocka_unit_test(test_inbox_prefixed_source),
	    cmocka_unit_test(test_special_use_by_attribute),
	    cmocka_unit_test(test_special_use_by_name),
	    cmocka_unit_test(test_include_exclude),
	    cmocka_unit_test(test_folder_map),
	    cmocka_unit_test(test_folder_map_malformed),
	    cmocka_unit_test(test_conflicts),
	    cmocka_unit_test(test_nonexistent_and_noselect),
	    cmocka_unit_test(test_flat),
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_random_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
