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
#include <unistd.h>
#include <cmocka.h>

#include "batch/batch.h"
#include "store/batch_store.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_round_trip),
		cmocka_unit_test(test_status_rules),
		cmocka_unit_test(test_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
