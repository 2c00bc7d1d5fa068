/* Spooled message bodies: memory while small, an unlinked private file
 * past the limit, the same bytes back either way. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "util/buf.h"
#include "util/spool.h"

static int collect(void *ctx, const uint8_t *data, size_t len, struct err *err)
{
	(void)err;
	assert_true(len > 0 && len <= 64 * 1024);
	return buf_append(ctx, data, len);
}

static int refuse(void *ctx, const uint8_t *data, size_t len, struct err *err)
{
	(void)data;
	(void)len;
	++*(int *)ctx;
	return err_set(err, ERR_MESSAGE, "target refused");
}

static size_t entries(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* A pattern that shows misplaced or lost chunks. */
static void pattern(uint8_t *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)((i * 131 + seed) ^ (i >> 9));
}

static void test_memory(void **state)
{
	(void)state;
	struct err e;
	struct spool *s = spool_new(1000);
	assert_int_equal(spool_write(s, "hello ", 6, &e), 0);
	assert_int_equal(spool_write(s, "world", 5, &e), 0);
	assert_int_equal(spool_size(s), 11);
	assert_int_equal(spool_mem(s), 11);
	struct buf out = BUF_INIT(0);
	assert_int_equal(spool_replay(s, collect, &out, &e), 0);
	assert_string_equal(buf_cstr(&out), "hello world");
	/* twice: a retried APPEND sends it again */
	buf_reset(&out);
	assert_int_equal(spool_replay(s, collect, &out, &e), 0);
	assert_string_equal(buf_cstr(&out), "hello world");
	buf_release(&out);
	spool_free(&s);
	assert_null(s);
	spool_free(&s);
}

static void test_file(void **state)
{
	(void)state;
	char dir[] = "/tmp/imapmig-spool-test-XXXXXX";
	assert_non_null(mkdtemp(dir));
	setenv("TMPDIR", dir, 1);
	struct err e;
	size_t total = 300 * 1024 + 17;
	uint8_t *want = malloc(total);
	pattern(want, total, 7);
	struct spool *s = spool_new(100 * 1024);
	size_t off = 0, step = 999;
	while (off < total) {
		size_t n = total - off < step ? total - off : step;
		assert_int_equal(spool_write(s, want + off, n, &e), 0);
		off += n;
		step = step * 3 % 70001 + 1;
	}
	assert_int_equal(spool_size(s), total);
	assert_int_equal(spool_mem(s), 0); /* moved to the file */
	/* the file was unlinked at once: nothing to leak, nothing to read */
	assert_int_equal(entries(dir), 0);
	struct buf out = BUF_INIT(0);
	assert_int_equal(spool_replay(s, collect, &out, &e), 0);
	assert_int_equal(out.len, total);
	assert_memory_equal(out.data, want, total);
	/* the callback's error stops the replay and is the result */
	int calls = 0;
	assert_int_equal(spool_replay(s, refuse, &calls, &e), -1);
	assert_int_equal(calls, 1);
	assert_int_equal(e.kind, ERR_MESSAGE);
	buf_release(&out);
	spool_free(&s);
	free(want);
	rmdir(dir);
	unsetenv("TMPDIR");
}

static void test_no_tmpdir(void **state)
{
	(void)state;
	setenv("TMPDIR", "/nonexistent/imapmig-spool", 1);
	struct err e;
	struct spool *s = spool_new(4);
	assert_int_equal(spool_write(s, "abc", 3, &e), 0);
	assert_int_equal(spool_write(s, "defg", 4, &e), -1);
	assert_int_equal(e.kind, ERR_INTERNAL);
	assert_non_null(strstr(e.what, "/nonexistent/imapmig-spool"));
	assert_non_null(strstr(e.hint, "TMPDIR"));
	spool_free(&s);
	unsetenv("TMPDIR");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_file),
		cmocka_unit_test(test_no_tmpdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
