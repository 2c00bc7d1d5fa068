/* One imapmig per mailbox pair: the lock is per byte (pair) of one file. */
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

#include "util/lockfile.h"

static void test_lock(void **state)
{
	(void)state;
	char path[] = "/tmp/imapmig-lock-XXXXXX";
	int tmp = mkstemp(path);
	assert_true(tmp >= 0);
	close(tmp);
	unlink(path);
	struct err e;
	int a = -1, b = -1, c = -1;
	assert_int_equal(lockfile_take(path, 42, "pair A", &a, &e), 0);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* the same pair again (another descriptor, as another process) */
	assert_int_equal(lockfile_take(path, 42, "pair A", &b, &e), -1);
	assert_int_equal(e.kind, ERR_TRANSIENT);
	assert_non_null(strstr(e.what, "pair A is in use by another imapmig"));
	assert_int_equal(b, -1);
	/* another pair in the same file is free */
	assert_int_equal(lockfile_take(path, 43, "pair B", &c, &e), 0);
	lockfile_release(&a);
	assert_int_equal(a, -1);
	assert_int_equal(lockfile_take(path, 42, "pair A", &b, &e), 0);
	lockfile_release(&b);
	lockfile_release(&c);
	lockfile_release(&c); /* twice is fine */
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_lock) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
