/* Batch layer without servers: settings round trip, status rules, and the
 * batch tables of the state database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "batch/batch.h"
#include "store/batch_store.h"
#include "store/state.h"

static void test_config_round_trip(void **state)
{
	(void)state;
	struct batch_config c = { 0 }, d;
	c.source_url = strdup("imaps://old.example.org");
	c.target_url = strdup("imaps://new.example.com:1993");
	c.ca_file = strdup("/etc/ca\nwith newline and \\ backslash");
	strvec_push(&c.resolve, "old.example.org:10.0.0.1");
	strvec_push(&c.exclude, "Junk");
	strvec_push(&c.exclude, "Trash/*");
	strvec_push(&c.folder_map, "Old=Archive/Old");
	strvec_push(&c.notify, "admin@example.com");
	c.admin_mode = IMAP_ADMIN_MASTER_SEP;
	c.source_admin = strdup("admin");
	c.max_items = 500000;
	c.max_message_size = 35ull << 20;
	c.jobs = 8;
	c.connections_per_user = 3;
	c.append_connections = 4;
	c.insecure = true;
	char *text = batch_config_serialize(&c);
	/* no secrets are ever part of it: there is no field for one */
	struct err e;
	assert_int_equal(batch_config_parse(text, &d, &e), 0);
	assert_string_equal(d.source_url, c.source_url);
	assert_string_equal(d.target_url, c.target_url);
	assert_string_equal(d.ca_file, c.ca_file);
	assert_int_equal(d.resolve.n, 1);
	assert_int_equal(d.exclude.n, 2);
	assert_string_equal(d.exclude.items[1], "Trash/*");
	assert_string_equal(d.folder_map.items[0], "Old=Archive/Old");
	assert_string_equal(d.notify.items[0], "admin@example.com");
	assert_int_equal(d.admin_mode, IMAP_ADMIN_MASTER_SEP);
	assert_string_equal(d.source_admin, "admin");
	assert_null(d.target_admin);
	assert_int_equal(d.max_items, 500000);
	assert_int_equal(d.max_message_size, 35ull << 20);
	assert_int_equal(d.jobs, 8);
	assert_int_equal(d.connections_per_user, 3);
	assert_int_equal(d.append_connections, 4);
	assert_true(d.insecure);
	assert_false(d.allow_plaintext);
	free(text);
	batch_config_release(&c);
	batch_config_release(&d);
}

static void test_status_rules(void **state)
{
	(void)state;
	const char *a[] = { "Synced", "Synced", "Failed" };
	assert_string_equal(batch_status_from_users(a, 3, BATCH_PASS_START), "Synced");
	const char *b[] = { "Completed", "Failed" };
	assert_string_equal(batch_status_from_users(b, 2, BATCH_PASS_COMPLETE), "Completed");
	const char *c[] = { "Synced", "Syncing" };
	assert_string_equal(batch_status_from_users(c, 2, BATCH_PASS_START), "Syncing");
	const char *d[] = { "Synced", "Stopped" };
	assert_string_equal(batch_status_from_users(d, 2, BATCH_PASS_START), "Stopped");
	const char *e[] = { "Failed", "Failed" };
	assert_string_equal(batch_status_from_users(e, 2, BATCH_PASS_START), "Failed");
	const char *f[] = { "Created", "Created" };
	assert_string_equal(batch_status_from_users(f, 2, BATCH_PASS_START), "Created");
	const char *g[] = { "Completed", "Synced" };
	assert_string_equal(batch_status_from_users(g, 2, BATCH_PASS_SYNC), "Synced");
}

static void test_store(void **state)
{
	(void)state;
	char dir[] = "/tmp/imapmig-test-batch-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/state.db", dir);
	struct err e;
	struct state *st = state_open(path, &e);
	assert_non_null(st);
	struct batch_row b = { .name = "b1", .status = "Created", .config = "source=x\n",
			       .csv_path = "/x.csv", .csv_sha256 = "00", .created = 1000 };
	struct batch_user_row users[2] = {
		{ .email = "a@x", .source_user = "a", .target_user = "a@x" },
		{ .email = "b@x", .source_user = "b", .target_user = "b" },
	};
	assert_int_equal(batch_store_create(st, &b, users, 2, &e), 0);
	/* the same name twice is refused, naming it */
	assert_int_equal(batch_store_create(st, &b, users, 2, &e), -1);
	assert_int_equal(e.kind, ERR_CONFIG);
	assert_non_null(strstr(e.what, "'b1' exists"));

	struct batch_row got;
	assert_int_equal(batch_store_get(st, "b1", &got, &e), 1);
	assert_string_equal(got.status, "Created");
	assert_int_equal(got.created, 1000);
	struct batch_user_row *rows;
	size_t n;
	assert_int_equal(batch_store_users(st, got.id, &rows, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(rows[1].target_user, "b");
	free(rows[1].status);
	rows[1].status = strdup("Failed");
	free(rows[1].error);
	rows[1].error = strdup("source: login failed");
	rows[1].bytes = 42;
	assert_int_equal(batch_store_user_update(st, got.id, &rows[1], &e), 0);
	batch_user_rows_free(rows, n);
	assert_int_equal(batch_store_users(st, got.id, &rows, &n, &e), 0);
	assert_string_equal(rows[1].status, "Failed");
	assert_string_equal(rows[1].error, "source: login failed");
	assert_int_equal(rows[1].bytes, 42);
	batch_user_rows_free(rows, n);

	struct batch_item_row it = { .idx = 0, .folder = "INBOX", .uid = 7, .kind = "skipped",
				     .date = "", .subject = "big", .size = 99, .reason = "too big" };
	assert_int_equal(batch_store_item_add(st, got.id, &it, &e), 0);
	assert_int_equal(batch_store_item_add(st, got.id, &it, &e), 0); /* replaces */
	uint64_t sk, fa;
	assert_int_equal(batch_store_item_counts(st, got.id, 0, &sk, &fa, &e), 0);
	assert_int_equal(sk, 1);
	assert_int_equal(fa, 0);

	bool stop = false;
	assert_int_equal(batch_store_set_stop(st, got.id, true, &e), 0);
	assert_int_equal(batch_store_stop_requested(st, got.id, &stop, &e), 0);
	assert_true(stop);

	assert_int_equal(batch_store_remove(st, got.id, &e), 0);
	batch_row_release(&got);
	assert_int_equal(batch_store_get(st, "b1", &got, &e), 0);
	state_close(&st);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* Set user idx's status (unconditionally, as a pass's own process would). */
static void put_status(struct state *st, int64_t id, size_t idx, const char *status)
{
	struct err e;
	struct batch_user_row u;
	assert_int_equal(batch_store_user_get(st, id, idx, &u, &e), 1);
	free(u.status);
	u.status = strdup(status);
	assert_int_equal(batch_store_user_update(st, id, &u, &e), 0);
	batch_user_row_release(&u);
}

static char *status_of(struct state *st, int64_t id, size_t idx)
{
	struct err e;
	struct batch_user_row u;
	assert_int_equal(batch_store_user_get(st, id, idx, &u, &e), 1);
	char *s = strdup(u.status);
	batch_user_row_release(&u);
	return s;
}

/* Write `status` from a pass that read the row long ago (row is a copy
 * taken before another process moved the user on). */
static bool pass_write(struct state *st, int64_t id, struct batch_user_row *row,
		       const char *status, bool completing)
{
	struct err e;
	bool written = true;
	free(row->status);
	row->status = strdup(status);
	assert_int_equal(batch_store_user_update_pass(st, id, row, completing, &written, &e), 0);
	return written;
}

/* The lost update of overlapping passes: a sync pass that read a user
 * before `batch complete` (another process, another handle) completed
 * it must not write its Synced over that. */
static void test_store_pass_never_undoes_completed(void **state)
{
	(void)state;
	char dir[] = "/tmp/imapmig-test-batch-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/state.db", dir);
	struct err e;
	struct state *sync_st = state_open(path, &e);
	assert_non_null(sync_st);
	struct state *complete_st = state_open(path, &e);
	assert_non_null(complete_st);
	struct batch_row b = { .name = "b1", .status = "Synced", .config = "source=x\n",
			       .csv_path = "/x.csv", .csv_sha256 = "00", .created = 1000 };
	struct batch_user_row users[2] = {
		{ .email = "a@x", .source_user = "a", .target_user = "a@x" },
		{ .email = "b@x", .source_user = "b", .target_user = "b" },
	};
	assert_int_equal(batch_store_create(sync_st, &b, users, 2, &e), 0);
	struct batch_row got;
	assert_int_equal(batch_store_get(sync_st, "b1", &got, &e), 1);
	int64_t id = got.id;
	batch_row_release(&got);
	put_status(sync_st, id, 0, "Synced");
	put_status(sync_st, id, 1, "Synced");

	/* the sync pass reads its users (its queue) */
	struct batch_user_row *rows;
	size_t n;
	assert_int_equal(batch_store_users(sync_st, id, &rows, &n, &e), 0);
	assert_int_equal(n, 2);
	/* it starts on user 0 */
	assert_true(pass_write(sync_st, id, &rows[0], "IncrementalSyncing", false));

	/* meanwhile the complete pass takes user 0 over and completes both */
	struct batch_user_row c0;
	assert_int_equal(batch_store_user_get(complete_st, id, 0, &c0, &e), 1);
	assert_string_equal(c0.status, "IncrementalSyncing");
	assert_true(pass_write(complete_st, id, &c0, "Completing", true));
	/* while Completing: the sync pass's end of user 0 is not written */
	assert_false(pass_write(sync_st, id, &rows[0], "Synced", false));
	char *s = status_of(sync_st, id, 0);
	assert_string_equal(s, "Completing");
	free(s);
	c0.completed = 2000;
	assert_true(pass_write(complete_st, id, &c0, "Completed", true));
	batch_user_row_release(&c0);
	struct batch_user_row c1;
	assert_int_equal(batch_store_user_get(complete_st, id, 1, &c1, &e), 1);
	c1.completed = 2001;
	assert_true(pass_write(complete_st, id, &c1, "Completed", true));
	batch_user_row_release(&c1);

	/* the sync pass's late writes change nothing: not user 0's end, not
	 * user 1's start still in its queue, not a Stopped */
	assert_false(pass_write(sync_st, id, &rows[0], "Synced", false));
	assert_false(pass_write(sync_st, id, &rows[1], "IncrementalSyncing", false));
	assert_false(pass_write(sync_st, id, &rows[1], "Stopped", false));
	/* nor does a second complete pass that ends after the first */
	assert_false(pass_write(sync_st, id, &rows[1], "Failed", true));
	batch_user_rows_free(rows, n);
	assert_int_equal(batch_store_users(complete_st, id, &rows, &n, &e), 0);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(rows[i].status, "Completed");
		assert_int_equal(rows[i].completed, 2000 + (time_t)i);
	}

	/* the unconditional write (a process that knows no pass runs, e.g.
	 * marking Interrupted) still writes */
	free(rows[0].status);
	rows[0].status = strdup("Interrupted");
	assert_int_equal(batch_store_user_update(sync_st, id, &rows[0], &e), 0);
	batch_user_rows_free(rows, n);
	s = status_of(complete_st, id, 0);
	assert_string_equal(s, "Interrupted");
	free(s);
	/* a user that is not there */
	struct batch_user_row none;
	assert_int_equal(batch_store_user_get(sync_st, id, 7, &none, &e), 0);

	state_close(&sync_st);
	state_close(&complete_st);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* The child of test_store_other_process_sees_locks: as `batch complete`
 * in another process, complete user 0 of batch `id` and close. */
static int child_complete(const char *path, const char *id_text)
{
	struct err e;
	struct state *st = state_open(path, &e);
	if (!st)
		return 2;
	int64_t id = strtoll(id_text, NULL, 10);
	struct batch_user_row u;
	if (batch_store_user_get(st, id, 0, &u, &e) != 1)
		return 3;
	free(u.status);
	u.status = strdup("Completed");
	u.completed = 3000;
	int r = batch_store_user_update(st, id, &u, &e) < 0 ? 4 : 0;
	batch_user_row_release(&u);
	state_close(&st);
	return r;
}

/* A process with more than one handle on the state (a pass: the
 * coordinator's and each worker's) must keep its SQLite locks: if a
 * second state_open() dropped them (closing a descriptor of the file
 * drops every POSIX lock of the process on it), another process closing
 * its last handle would think itself alone, checkpoint and delete the
 * WAL, and the pass would go on in a private copy of the database,
 * blind to the other's writes and writing over them later.  That is
 * what undid `batch complete` under an overlapping `batch sync`. */
static void test_store_other_process_sees_locks(void **state)
{
	(void)state;
	char dir[] = "/tmp/imapmig-test-batch-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256], wal[300];
	snprintf(path, sizeof(path), "%s/state.db", dir);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	struct err e;
	struct state *coord = state_open(path, &e);
	assert_non_null(coord);
	struct batch_row b = { .name = "b1", .status = "Synced", .config = "source=x\n",
			       .csv_path = "/x.csv", .csv_sha256 = "00", .created = 1000 };
	struct batch_user_row users[1] = {
		{ .email = "a@x", .source_user = "a", .target_user = "a@x" },
	};
	assert_int_equal(batch_store_create(coord, &b, users, 1, &e), 0);
	struct batch_row got;
	assert_int_equal(batch_store_get(coord, "b1", &got, &e), 1);
	int64_t id = got.id;
	batch_row_release(&got);
	put_status(coord, id, 0, "IncrementalSyncing");
	/* a worker's handle, opened after the coordinator's */
	struct state *worker = state_open(path, &e);
	assert_non_null(worker);
	char *s = status_of(worker, id, 0);
	assert_string_equal(s, "IncrementalSyncing");
	free(s);

	/* another process completes the user and closes its handle */
	char id_text[32];
	snprintf(id_text, sizeof(id_text), "%lld", (long long)id);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl("/proc/self/exe", "test_batch", "--child-complete", path, id_text,
		      (char *)NULL);
		_exit(127);
	}
	int ws = 0;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws));
	assert_int_equal(WEXITSTATUS(ws), 0);

	/* it must have seen us: the WAL is still there ... */
	struct stat sb;
	assert_int_equal(stat(wal, &sb), 0);
	/* ... both our handles see its write ... */
	s = status_of(worker, id, 0);
	assert_string_equal(s, "Completed");
	free(s);
	s = status_of(coord, id, 0);
	assert_string_equal(s, "Completed");
	free(s);
	/* ... and the pass's late "Synced" leaves it Completed */
	struct batch_user_row late;
	assert_int_equal(batch_store_user_get(worker, id, 0, &late, &e), 1);
	assert_false(pass_write(worker, id, &late, "Synced", false));
	batch_user_row_release(&late);
	state_close(&worker);
	state_close(&coord);
	struct state *again = state_open(path, &e);
	assert_non_null(again);
	s = status_of(again, id, 0);
	assert_string_equal(s, "Completed");
	free(s);
	state_close(&again);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--child-complete") == 0)
		return child_complete(argv[2], argv[3]);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_round_trip),
		cmocka_unit_test(test_status_rules),
		cmocka_unit_test(test_store),
		cmocka_unit_test(test_store_pass_never_undoes_completed),
		cmocka_unit_test(test_store_other_process_sees_locks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
