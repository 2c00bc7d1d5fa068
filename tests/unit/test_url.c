/* Endpoint URLs, sizes and JSON strings: what the command line accepts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "util/json.h"
#include "util/url.h"

static void test_imaps_with_user_and_port(void **state)
{
	(void)state;
	struct imap_url u;
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_url_parse("imaps://alice@old.example.org:1993", &u, &e), 0);
	assert_true(u.tls);
	assert_string_equal(u.host, "old.example.org");
	assert_int_equal(u.port, 1993);
	assert_string_equal(u.user, "alice");
	char *key = imap_url_key(&u);
	assert_string_equal(key, "imaps://alice@old.example.org:1993");
	free(key);
	imap_url_release(&u);
}

static void test_defaults_and_encoding(void **state)
{
	(void)state;
	struct imap_url u;
	struct err e;
	assert_int_equal(imap_url_parse("imap://frank%40example.test@[::1]/", &u, &e), 0);
	assert_false(u.tls);
	assert_int_equal(u.port, 143);
	assert_string_equal(u.host, "::1");
	assert_string_equal(u.user, "frank@example.test");
	imap_url_release(&u);
	/* a raw @ in the user part: the last @ splits */
	assert_int_equal(imap_url_parse("imaps://bob@example.org@mail.example.org", &u, &e), 0);
	assert_string_equal(u.user, "bob@example.org");
	assert_string_equal(u.host, "mail.example.org");
	assert_int_equal(u.port, 993);
	imap_url_release(&u);
}

static void test_rejects(void **state)
{
	(void)state;
	struct imap_url u;
	struct err e;
	err_clear(&e);
	assert_int_equal(imap_url_parse("imaps://alice:secret@host", &u, &e), -1);
	assert_non_null(strstr(e.what, "password"));
	/* the password itself is never repeated in the error */
	assert_null(strstr(e.what, "secret"));
	assert_int_equal(e.kind, ERR_CONFIG);
	assert_int_equal(imap_url_parse("http://host", &u, &e), -1);
	assert_non_null(strstr(e.what, "not an IMAP URL"));
	assert_int_equal(imap_url_parse("imaps://host:0", &u, &e), -1);
	assert_int_equal(imap_url_parse("imaps://host:70000", &u, &e), -1);
	assert_int_equal(imap_url_parse("imaps://host:12x", &u, &e), -1);
	assert_int_equal(imap_url_parse("imaps://a%4@host", &u, &e), -1);
	assert_int_equal(imap_url_parse("imaps://a%00@host", &u, &e), -1);
	assert_int_equal(imap_url_parse("imaps://@host", &u, &e), -1);
	assert_int_equal(imap_url_parse("imaps://", &u, &e), -1);
	assert_int_equal(imap_url_parse("imaps://[::1", &u, &e), -1);
	assert_int_equal(imap_url_parse("imaps://ho st", &u, &e), -1);
	assert_int_equal(imap_url_parse("imaps://host/INBOX", &u, &e), -1);
}

static void test_sizes(void **state)
{
	(void)state;
	uint64_t n;
	assert_int_equal(size_parse("35M", &n), 0);
	assert_int_equal(n, 35ull << 20);
	assert_int_equal(size_parse("512k", &n), 0);
	assert_int_equal(n, 512ull << 10);
	assert_int_equal(size_parse("2GB", &n), 0);
	assert_int_equal(n, 2ull << 30);
	assert_int_equal(size_parse("1000", &n), 0);
	assert_int_equal(n, 1000);
	assert_int_equal(size_parse("-1", &n), -1);
	assert_int_equal(size_parse("M", &n), -1);
	assert_int_equal(size_parse("10X", &n), -1);
	assert_int_equal(size_parse("99999999999999999999G", &n), -1);
}

static void test_resolve(void **state)
{
	(void)state;
	const char *rules[] = { "old.example.org:10.0.0.1", "new.example.com:[::1]",
				"OLD.example.org:10.0.0.2" };
	char *addr = NULL;
	struct err e;
	assert_int_equal(resolve_lookup(rules, 3, "old.example.org", &addr, &e), 0);
	assert_string_equal(addr, "10.0.0.2"); /* last match wins, names case-blind */
	free(addr);
	assert_int_equal(resolve_lookup(rules, 3, "new.example.com", &addr, &e), 0);
	assert_string_equal(addr, "::1");
	free(addr);
	assert_int_equal(resolve_lookup(rules, 3, "other.example", &addr, &e), 0);
	assert_null(addr);
	const char *bad[] = { "nocolon" };
	assert_int_equal(resolve_lookup(bad, 1, "x", &addr, &e), -1);
	assert_int_equal(e.kind, ERR_CONFIG);
	assert_non_null(strstr(e.what, "expected HOST:ADDR"));
	assert_null(addr);
}

static void test_json_string(void **state)
{
	(void)state;
	struct buf b = BUF_INIT(0);
	json_string(&b, "a\"b\\c\n\x01 日本語 \xff");
	assert_string_equal(buf_cstr(&b), "\"a\\\"b\\\\c\\u000a\\u0001 日本語 \\ufffd\"");
	buf_reset(&b);
	json_string(&b, NULL);
	assert_string_equal(buf_cstr(&b), "null");
	buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_imaps_with_user_and_port),
		cmocka_unit_test(test_defaults_and_encoding),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_resolve),
		cmocka_unit_test(test_json_string),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
