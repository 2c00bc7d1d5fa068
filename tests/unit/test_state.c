/* test_state.c - the state database, each test in a fresh temporary dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/state.h"
#include "util/mem.h"

struct fixture {
	char dir[64];
	char *path; /* dir/sub/dir/state.db */
	struct state *st;
	struct err err;
};

static int setup(void **state)
{
	struct fixture *fx = xcalloc(1, sizeof(*fx));

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/test_state.XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	fx->path = xasprintf("%s/a/b/state.db", fx->dir);
	*state = fx;
	return 0;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(p);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	state_close(&fx->st);
	nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(fx->path);
	free(fx);
	return 0;
}

static struct state *open_ok(struct fixture *fx)
{
	struct state *st = state_open(fx->path, &fx->err);

	if (!st)
		fail_msg("state_open: %s", fx->err.what);
	return st;
}

static mode_t mode_of(const char *path)
{
	struct stat sb;

	if (stat(path, &sb) < 0)
		fail_msg("stat %s: %m", path);
	return sb.st_mode & 07777;
}

static void put(struct fixture *fx, int64_t folder, uint32_t uid, const char *fp, uint64_t size,
                enum state_msg_status status, const char *flags)
{
	struct state_msg m = {
	    .src_uid = uid,
	    .size = size,
	    .status = status,
	    .flags = flags,
	    .reason = status == MSG_SKIPPED ? "too big" : "",
	};

	snprintf(m.fp, sizeof(m.fp), "%s", fp);
	assert_int_equal(state_msg_put(fx->st, folder, &m, &fx->err), 0);
}

static int64_t make_folder(struct fixture *fx, const char *name)
{
	struct state_folder f;
	int64_t pair;

	assert_int_equal(state_pair_get(fx->st, "imaps://a@src", "imaps://a@tgt", &pair, &fx->err),
	                 0);
	assert_int_equal(state_folder_get(fx->st, pair, name, name, &f, &fx->err), 0);
	return f.id;
}

#define FP_A "0123456789abcdef0123456789abcdef"
#define FP_B "fedcba9876543210fedcba9876543210"

/* --- open --- */

static void test_open_creates_private(void **state)
{
	struct fixture *fx = *state;
	char *sub = xasprintf("%s/a", fx->dir);
	char *subsub = xasprintf("%s/a/b", fx->dir);
	int64_t id1, id2;

	umask(022);
	fx->st = open_ok(fx);
	assert_int_equal(mode_of(fx->path), 0600);
	assert_int_equal(mode_of(sub), 0700);
	assert_int_equal(mode_of(subsub), 0700);
	assert_string_equal(state_path(fx->st), fx->path);

	assert_int_equal(state_pair_get(fx->st, "s", "t", &id1, &fx->err), 0);
	state_close(&fx->st);
	assert_null(fx->st);
	fx->st = open_ok(fx);
	assert_int_equal(state_pair_get(fx->st, "s", "t", &id2, &fx->err), 0);
	assert_int_equal(id1, id2);
	free(sub);
	free(subsub);
}

/* SQLite gives -wal/-shm the main file's mode; a pre-existing 0644 file
 * is narrowed first, so those come out 0600 too. */
static void test_wal_files_private(void **state)
{
	struct fixture *fx = *state;
	char *sub = xasprintf("%s/a", fx->dir);
	char *dir = xasprintf("%s/a/b", fx->dir);
	char *wal = xasprintf("%s-wal", fx->path);
	char *shm = xasprintf("%s-shm", fx->path);
	int64_t folder;
	int fd;

	umask(022);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_int_equal(mkdir(dir, 0755), 0);
	fd = open(fx->path, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(mode_of(fx->path), 0644);

	fx->st = open_ok(fx);
	assert_int_equal(mode_of(fx->path), 0600);
	folder = make_folder(fx, "INBOX");
	for (uint32_t uid = 1; uid <= 100; uid++)
		put(fx, folder, uid, FP_A, 10, MSG_DONE, "");
	assert_int_equal(access(wal, F_OK), 0);
	assert_int_equal(mode_of(wal), 0600);
	assert_int_equal(mode_of(shm), 0600);
	free(sub);
	free(dir);
	free(wal);
	free(shm);
}

static void test_open_newer_schema(void **state)
{
	struct fixture *fx = *state;
	char expect[512];
	sqlite3 *db;

	fx->st = open_ok(fx);
	state_close(&fx->st);
	assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), 0);
	sqlite3_close(db);

	assert_null(state_open(fx->path, &fx->err));
	assert_int_equal(fx->err.kind, ERR_CONFIG);
	snprintf(expect, sizeof(expect),
	         "state database %s was written by a newer imapmig (schema 99); this one knows"
	         " schema 2 at most",
	         fx->path);
	assert_string_equal(fx->err.what, expect);
	assert_non_null(strstr(fx->err.hint, "--state"));
}

static void test_open_not_sqlite(void **state)
{
	struct fixture *fx = *state;
	char expect[512];
	FILE *f;

	fx->st = open_ok(fx); /* just to make the directories */
	state_close(&fx->st);
	f = fopen(fx->path, "w");
	assert_non_null(f);
	for (int i = 0; i < 100; i++)
		fputs("From: someone\nthis is a mail, not a database\n", f);
	fclose(f);

	assert_null(state_open(fx->path, &fx->err));
	assert_int_equal(fx->err.kind, ERR_CONFIG);
	snprintf(expect, sizeof(expect),
	         "state database %s is not a SQLite database (file is not a database)", fx->path);
	assert_string_equal(fx->err.what, expect);
	assert_string_equal(fx->err.hint, "move the file away, or use another file with --state");
}

static void test_open_foreign_sqlite(void **state)
{
	struct fixture *fx = *state;
	char *path = xasprintf("%s/other.db", fx->dir);
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL), 0);
	sqlite3_close(db);
	assert_null(state_open(path, &fx->err));
	assert_int_equal(fx->err.kind, ERR_CONFIG);
	assert_non_null(strstr(fx->err.what, "is a SQLite database of another program"));
	free(path);
}

static void test_open_directory(void **state)
{
	struct fixture *fx = *state;
	char expect[512];

	assert_null(state_open(fx->dir, &fx->err));
	assert_int_equal(fx->err.kind, ERR_CONFIG);
	snprintf(expect, sizeof(expect), "state database %s is a directory, not a regular file",
	         fx->dir);
	assert_string_equal(fx->err.what, expect);
}

static void test_open_unwritable_dir(void **state)
{
	struct fixture *fx = *state;
	char *ro = xasprintf("%s/ro", fx->dir);
	char *path = xasprintf("%s/ro/x/state.db", fx->dir);

	if (geteuid() == 0) {
		free(ro);
		free(path);
		skip(); /* root writes anywhere */
	}
	assert_int_equal(mkdir(ro, 0500), 0);
	assert_null(state_open(path, &fx->err));
	assert_int_equal(fx->err.kind, ERR_CONFIG);
	assert_non_null(strstr(fx->err.what, "cannot create directory"));
	chmod(ro, 0700);
	free(ro);
	free(path);
}

static void test_default_path(void **state)
{
	char *p;

	setenv("XDG_STATE_HOME", "/xdg/state", 1);
	setenv("HOME", "/home/alice", 1);
	p = state_default_path();
	assert_string_equal(p, "/xdg/state/imapmig/state.db");
	free(p);

	setenv("XDG_STATE_HOME", "relative/ignored", 1);
	p = state_default_path();
	assert_string_equal(p, "/home/alice/.local/state/imapmig/state.db");
	free(p);

	unsetenv("XDG_STATE_HOME");
	p = state_default_path();
	assert_string_equal(p, "/home/alice/.local/state/imapmig/state.db");
	free(p);
}

/* --- pairs and folders --- */

static void test_pair_get(void **state)
{
	struct fixture *fx = *state;
	int64_t a, b, c;

	fx->st = open_ok(fx);
	assert_int_equal(state_pair_get(fx->st, "imaps://a@s", "imaps://a@t", &a, &fx->err), 0);
	assert_int_equal(state_pair_get(fx->st, "imaps://a@s", "imaps://a@t", &b, &fx->err), 0);
	assert_int_equal(state_pair_get(fx->st, "imaps://b@s", "imaps://a@t", &c, &fx->err), 0);
	assert_int_equal(a, b);
	assert_int_not_equal(a, c);
}

static void test_folder(void **state)
{
	struct fixture *fx = *state;
	struct state_folder f, g;
	uint32_t uid;
	int64_t pair;

	fx->st = open_ok(fx);
	assert_int_equal(state_pair_get(fx->st, "s", "t", &pair, &fx->err), 0);
	assert_int_equal(state_folder_get(fx->st, pair, "Sent", "Sent Items", &f, &fx->err), 0);
	assert_true(f.id > 0);
	assert_int_equal(f.pair_id, pair);
	assert_string_equal(f.source_name, "Sent");
	assert_string_equal(f.target_name, "Sent Items");
	assert_int_equal(f.src_uidvalidity, 0);
	assert_int_equal(f.src_uidnext, 0);
	assert_int_equal(f.src_modseq, 0);
	assert_int_equal(f.tgt_uidvalidity, 0);

	f.src_uidvalidity = 4000000000u;
	f.src_uidnext = 1234;
	f.src_modseq = UINT64_MAX - 1; /* kept bit for bit */
	f.tgt_uidvalidity = 77;
	assert_int_equal(state_folder_update(fx->st, &f, &fx->err), 0);

	state_close(&fx->st);
	fx->st = open_ok(fx);
	assert_int_equal(state_folder_get(fx->st, pair, "Sent", "Gesendet", &g, &fx->err), 0);
	assert_int_equal(g.id, f.id);
	assert_string_equal(g.target_name, "Gesendet");
	assert_int_equal(g.src_uidvalidity, 4000000000u);
	assert_int_equal(g.src_uidnext, 1234);
	assert_true(g.src_modseq == UINT64_MAX - 1);
	assert_int_equal(g.tgt_uidvalidity, 77);

	/* a second folder of the same pair is a different row */
	assert_int_equal(state_folder_get(fx->st, pair, "INBOX", "INBOX", &g, &fx->err), 0);
	assert_int_not_equal(g.id, f.id);

	/* updating a row that isn't there is an error, not a silent no-op */
	g.id = 999999;
	assert_int_equal(state_folder_update(fx->st, &g, &fx->err), -1);
	assert_int_equal(fx->err.kind, ERR_INTERNAL);

	/* forget_messages clears msg and tfp of that folder only */
	put(fx, f.id, 1, FP_A, 10, MSG_DONE, "");
	put(fx, g.id = make_folder(fx, "Other"), 1, FP_A, 10, MSG_DONE, "");
	assert_int_equal(state_tfp_add(fx->st, f.id, FP_A, 5, &fx->err), 0);
	assert_int_equal(state_folder_forget_messages(fx->st, f.id, &fx->err), 0);
	struct state_msg m;
	assert_int_equal(state_msg_get(fx->st, f.id, 1, &m, &fx->err), 0);
	assert_int_equal(state_msg_get(fx->st, g.id, 1, &m, &fx->err), 1);
	assert_int_equal(state_tfp_claim(fx->st, f.id, FP_A, &uid, &fx->err), 0);
}

static void test_folder_name_too_long(void **state)
{
	struct fixture *fx = *state;
	struct state_folder f;
	char name[1100];
	int64_t pair;

	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	fx->st = open_ok(fx);
	assert_int_equal(state_pair_get(fx->st, "s", "t", &pair, &fx->err), 0);
	assert_int_equal(state_folder_get(fx->st, pair, name, "t", &f, &fx->err), -1);
	assert_int_equal(fx->err.kind, ERR_FOLDER);
}

/* --- messages --- */

static void test_msg_put_get(void **state)
{
	struct fixture *fx = *state;
	struct state_msg m;
	int64_t folder;

	fx->st = open_ok(fx);
	folder = make_folder(fx, "INBOX");
	assert_int_equal(state_msg_get(fx->st, folder, 7, &m, &fx->err), 0);

	put(fx, folder, 7, FP_A, 1234, MSG_PENDING, "\\Seen $Label1");
	assert_int_equal(state_msg_get(fx->st, folder, 7, &m, &fx->err), 1);
	assert_int_equal(m.src_uid, 7);
	assert_string_equal(m.fp, FP_A);
	assert_int_equal(m.size, 1234);
	assert_int_equal(m.tgt_uid, 0);
	assert_int_equal(m.status, MSG_PENDING);
	assert_string_equal(m.flags, "\\Seen $Label1");
	assert_string_equal(m.reason, "");

	assert_int_equal(state_msg_done(fx->st, folder, 7, 42, &fx->err), 0);
	assert_int_equal(state_msg_set_flags(fx->st, folder, 7, "\\Answered \\Seen", &fx->err), 0);
	assert_int_equal(state_msg_get(fx->st, folder, 7, &m, &fx->err), 1);
	assert_int_equal(m.status, MSG_DONE);
	assert_int_equal(m.tgt_uid, 42);
	assert_string_equal(m.flags, "\\Answered \\Seen");
	assert_string_equal(m.fp, FP_A);

	/* replace */
	put(fx, folder, 7, FP_B, 99999999999ull, MSG_SKIPPED, "");
	assert_int_equal(state_msg_get(fx->st, folder, 7, &m, &fx->err), 1);
	assert_int_equal(m.status, MSG_SKIPPED);
	assert_string_equal(m.reason, "too big");
	assert_string_equal(m.fp, FP_B);
	assert_true(m.size == 99999999999ull);
	assert_int_equal(m.tgt_uid, 0);

	/* the full UID range */
	put(fx, folder, UINT32_MAX, FP_A, 1, MSG_DONE, "");
	assert_int_equal(state_msg_get(fx->st, folder, UINT32_MAX, &m, &fx->err), 1);
	assert_int_equal(m.src_uid, UINT32_MAX);

	/* done/set_flags on a row that isn't there */
	assert_int_equal(state_msg_done(fx->st, folder, 8, 1, &fx->err), -1);
	assert_int_equal(fx->err.kind, ERR_INTERNAL);
	assert_non_null(strstr(fx->err.what, "no message with source UID 8"));
	assert_int_equal(state_msg_set_flags(fx->st, folder, 8, "", &fx->err), -1);

	/* a message in a folder that doesn't exist breaks a foreign key */
	struct state_msg bad = {.src_uid = 1, .flags = "", .reason = ""};
	assert_int_equal(state_msg_put(fx->st, 424242, &bad, &fx->err), -1);
	assert_int_equal(fx->err.kind, ERR_INTERNAL);
	assert_non_null(strstr(fx->err.what, "FOREIGN KEY constraint failed"));
	assert_non_null(strstr(fx->err.what, fx->path));
}

struct collect {
	uint32_t uids[16];
	int n;
	int stop_after;
};

static int collect_fn(void *ctx, const struct state_msg *m, struct err *err)
{
	struct collect *c = ctx;

	c->uids[c->n++] = m->src_uid;
	if (c->stop_after && c->n == c->stop_after)
		return err_set(err, ERR_FOLDER, "stopped at %u", m->src_uid);
	return 0;
}

static int nested_fn(void *ctx, const struct state_msg *m, struct err *err)
{
	struct fixture *fx = ctx;
	struct collect c = {0};

	return state_msg_each(fx->st, 1, 0, 0, -1, collect_fn, &c, err);
}

static void test_msg_each_counts(void **state)
{
	struct fixture *fx = *state;
	struct state_counts cnt;
	struct collect c;
	int64_t folder, other;

	fx->st = open_ok(fx);
	folder = make_folder(fx, "INBOX");
	other = make_folder(fx, "Other");
	/* out of order on purpose */
	put(fx, folder, 30, FP_A, 300, MSG_DONE, "");
	put(fx, folder, 10, FP_A, 100, MSG_DONE, "");
	put(fx, folder, 50, FP_A, 500, MSG_SKIPPED, "");
	put(fx, folder, 20, FP_A, 200, MSG_PENDING, "");
	put(fx, folder, 40, FP_A, 400, MSG_DONE, "");
	put(fx, other, 15, FP_A, 1, MSG_DONE, "");

	memset(&c, 0, sizeof(c));
	assert_int_equal(state_msg_each(fx->st, folder, 0, 0, -1, collect_fn, &c, &fx->err), 0);
	assert_int_equal(c.n, 5);
	uint32_t all[] = {10, 20, 30, 40, 50};
	assert_memory_equal(c.uids, all, sizeof(all));

	memset(&c, 0, sizeof(c));
	assert_int_equal(state_msg_each(fx->st, folder, 20, 40, -1, collect_fn, &c, &fx->err), 0);
	uint32_t mid[] = {20, 30, 40};
	assert_int_equal(c.n, 3);
	assert_memory_equal(c.uids, mid, sizeof(mid));

	memset(&c, 0, sizeof(c));
	assert_int_equal(state_msg_each(fx->st, folder, 25, 0, MSG_DONE, collect_fn, &c, &fx->err),
	                 0);
	uint32_t done[] = {30, 40};
	assert_int_equal(c.n, 2);
	assert_memory_equal(c.uids, done, sizeof(done));

	memset(&c, 0, sizeof(c));
	assert_int_equal(
	    state_msg_each(fx->st, folder, 0, 0, MSG_PENDING, collect_fn, &c, &fx->err), 0);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.uids[0], 20);

	/* the callback stops the walk and its error comes back as it set it */
	memset(&c, 0, sizeof(c));
	c.stop_after = 2;
	assert_int_equal(state_msg_each(fx->st, folder, 0, 0, -1, collect_fn, &c, &fx->err), -1);
	assert_int_equal(c.n, 2);
	assert_int_equal(fx->err.kind, ERR_FOLDER);
	assert_string_equal(fx->err.what, "stopped at 20");
	/* and the statement was reset: the next walk starts over */
	memset(&c, 0, sizeof(c));
	assert_int_equal(state_msg_each(fx->st, folder, 0, 0, -1, collect_fn, &c, &fx->err), 0);
	assert_int_equal(c.n, 5);

	/* a nested walk is refused, not undefined */
	assert_int_equal(state_msg_each(fx->st, folder, 0, 0, -1, nested_fn, fx, &fx->err), -1);
	assert_non_null(strstr(fx->err.what, "called from its own callback"));

	assert_int_equal(state_msg_counts(fx->st, folder, &cnt, &fx->err), 0);
	assert_int_equal(cnt.done, 3);
	assert_int_equal(cnt.pending, 1);
	assert_int_equal(cnt.skipped, 1);
	assert_int_equal(cnt.done_bytes, 800);

	assert_int_equal(state_msg_counts(fx->st, 999, &cnt, &fx->err), 0);
	assert_int_equal(cnt.done + cnt.pending + cnt.skipped + cnt.done_bytes, 0);
}

/* --- target fingerprints --- */

static void test_tfp(void **state)
{
	struct fixture *fx = *state;
	uint32_t uid = 0;
	int64_t folder;

	fx->st = open_ok(fx);
	folder = make_folder(fx, "INBOX");
	assert_int_equal(state_tfp_add(fx->st, folder, FP_A, 10, &fx->err), 0);
	assert_int_equal(state_tfp_add(fx->st, folder, FP_A, 5, &fx->err), 0);
	assert_int_equal(state_tfp_add(fx->st, folder, FP_B, 7, &fx->err), 0);

	/* two identical fingerprints: lowest UID first, then the other, then none */
	assert_int_equal(state_tfp_claim(fx->st, folder, FP_A, &uid, &fx->err), 1);
	assert_int_equal(uid, 5);
	assert_int_equal(state_tfp_claim(fx->st, folder, FP_A, &uid, &fx->err), 1);
	assert_int_equal(uid, 10);
	uid = 123;
	assert_int_equal(state_tfp_claim(fx->st, folder, FP_A, &uid, &fx->err), 0);
	assert_int_equal(uid, 123);
	/* re-adding a claimed target UID does not free it again */
	assert_int_equal(state_tfp_add(fx->st, folder, FP_A, 5, &fx->err), 0);
	assert_int_equal(state_tfp_claim(fx->st, folder, FP_A, &uid, &fx->err), 0);
	assert_int_equal(state_tfp_add(fx->st, folder, FP_A, 0, &fx->err), -1);

	/* claim_done: target 7 already stands for a done message */
	put(fx, folder, 1, FP_B, 10, MSG_PENDING, "");
	assert_int_equal(state_msg_done(fx->st, folder, 1, 7, &fx->err), 0);
	assert_int_equal(state_tfp_add(fx->st, folder, FP_B, 8, &fx->err), 0);
	assert_int_equal(state_tfp_claim_done(fx->st, folder, &fx->err), 0);
	assert_int_equal(state_tfp_claim(fx->st, folder, FP_B, &uid, &fx->err), 1);
	assert_int_equal(uid, 8);
	assert_int_equal(state_tfp_claim(fx->st, folder, FP_B, &uid, &fx->err), 0);

	/* pending and tgt_uid 0 rows claim nothing */
	assert_int_equal(state_tfp_clear(fx->st, folder, &fx->err), 0);
	assert_int_equal(state_tfp_add(fx->st, folder, FP_A, 20, &fx->err), 0);
	put(fx, folder, 2, FP_A, 10, MSG_PENDING, "");
	struct state_msg m = {.src_uid = 3, .tgt_uid = 20, .status = MSG_PENDING};
	snprintf(m.fp, sizeof(m.fp), FP_A);
	assert_int_equal(state_msg_put(fx->st, folder, &m, &fx->err), 0);
	assert_int_equal(state_tfp_claim_done(fx->st, folder, &fx->err), 0);
	assert_int_equal(state_tfp_claim(fx->st, folder, FP_A, &uid, &fx->err), 1);
	assert_int_equal(uid, 20);

	/* tfp_clear empties only that folder */
	int64_t other = make_folder(fx, "Other");
	assert_int_equal(state_tfp_add(fx->st, other, FP_A, 1, &fx->err), 0);
	assert_int_equal(state_tfp_add(fx->st, folder, FP_A, 1, &fx->err), 0);
	assert_int_equal(state_tfp_clear(fx->st, folder, &fx->err), 0);
	assert_int_equal(state_tfp_claim(fx->st, folder, FP_A, &uid, &fx->err), 0);
	assert_int_equal(state_tfp_claim(fx->st, other, FP_A, &uid, &fx->err), 1);
}

/* --- transactions --- */

static void test_transactions(void **state)
{
	struct fixture *fx = *state;
	struct state_msg m;
	int64_t folder;

	fx->st = open_ok(fx);
	folder = make_folder(fx, "INBOX");

	assert_int_equal(state_begin(fx->st, &fx->err), 0);
	put(fx, folder, 1, FP_A, 1, MSG_PENDING, "");
	assert_int_equal(state_msg_get(fx->st, folder, 1, &m, &fx->err), 1);
	state_rollback(fx->st);
	assert_int_equal(state_msg_get(fx->st, folder, 1, &m, &fx->err), 0);
	state_rollback(fx->st); /* harmless outside a transaction */

	assert_int_equal(state_begin(fx->st, &fx->err), 0);
	put(fx, folder, 2, FP_A, 1, MSG_PENDING, "");
	/* forget_messages nests a savepoint inside the caller's transaction */
	assert_int_equal(state_folder_forget_messages(fx->st, folder, &fx->err), 0);
	put(fx, folder, 3, FP_A, 1, MSG_PENDING, "");
	assert_int_equal(state_commit(fx->st, &fx->err), 0);
	state_close(&fx->st);
	fx->st = open_ok(fx);
	assert_int_equal(state_msg_get(fx->st, folder, 2, &m, &fx->err), 0);
	assert_int_equal(state_msg_get(fx->st, folder, 3, &m, &fx->err), 1);

	/* a transaction is not nested */
	assert_int_equal(state_begin(fx->st, &fx->err), 0);
	assert_int_equal(state_begin(fx->st, &fx->err), -1);
	assert_int_equal(fx->err.kind, ERR_INTERNAL);
	assert_non_null(strstr(fx->err.what, "cannot write: cannot start a transaction within"));
	state_rollback(fx->st);
	assert_int_equal(state_commit(fx->st, &fx->err), -1);
}

/* Two handles on one file, as two workers have: the second sees what the
 * first committed. */
static void test_two_handles(void **state)
{
	struct fixture *fx = *state;
	struct state *st2;
	struct state_msg m;
	int64_t folder;

	fx->st = open_ok(fx);
	st2 = open_ok(fx);
	folder = make_folder(fx, "INBOX");
	assert_int_equal(state_begin(fx->st, &fx->err), 0);
	put(fx, folder, 1, FP_A, 1, MSG_DONE, "");
	assert_int_equal(state_msg_get(st2, folder, 1, &m, &fx->err), 0);
	assert_int_equal(state_commit(fx->st, &fx->err), 0);
	assert_int_equal(state_msg_get(st2, folder, 1, &m, &fx->err), 1);
	state_close(&st2);
}

/* Another handle holds the write lock past the busy timeout (10 s: this
 * test is slow on purpose) and the person sees which file and why. */
static void test_locked(void **state)
{
	struct fixture *fx = *state;
	struct state *st2;
	char expect[512];

	fx->st = open_ok(fx);
	st2 = open_ok(fx);
	assert_int_equal(state_begin(st2, &fx->err), 0);
	assert_int_equal(state_begin(fx->st, &fx->err), -1);
	assert_int_equal(fx->err.kind, ERR_INTERNAL);
	snprintf(expect, sizeof(expect), "state database %s: cannot write: database is locked",
	         fx->path);
	assert_string_equal(fx->err.what, expect);
	assert_non_null(strstr(fx->err.hint, "another imapmig"));
	state_rollback(st2);
	assert_int_equal(state_begin(fx->st, &fx->err), 0);
	state_rollback(fx->st);
	state_close(&st2);
}

static void test_bulk(void **state)
{
	struct fixture *fx = *state;
	struct state_counts cnt;
	struct state_msg m;
	int64_t folder;

	fx->st = open_ok(fx);
	folder = make_folder(fx, "INBOX");
	assert_int_equal(state_begin(fx->st, &fx->err), 0);
	for (uint32_t uid = 1; uid <= 20000; uid++) {
		put(fx, folder, uid, FP_A, uid, MSG_PENDING, "\\Seen");
		assert_int_equal(state_msg_get(fx->st, folder, uid, &m, &fx->err), 1);
		assert_int_equal(state_msg_done(fx->st, folder, uid, uid + 1, &fx->err), 0);
	}
	assert_int_equal(state_commit(fx->st, &fx->err), 0);
	assert_int_equal(state_msg_counts(fx->st, folder, &cnt, &fx->err), 0);
	assert_int_equal(cnt.done, 20000);
	assert_int_equal(cnt.done_bytes, 20000ull * 20001 / 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_creates_private, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wal_files_private, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_newer_schema, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_not_sqlite, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_foreign_sqlite, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_directory, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_unwritable_dir, setup, teardown),
	    cmocka_unit_test(test_default_path),
	    cmocka_unit_test_setup_teardown(test_pair_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_folder, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_folder_name_too_long, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_msg_put_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_msg_each_counts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tfp, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_two_handles, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_locked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bulk, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
