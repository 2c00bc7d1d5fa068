/* Fingerprints: the same message on two servers must match whatever the
 * server's folding and field order; different messages must not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "engine/fingerprint.h"

static void fp(const char *headers, uint64_t size, char *out)
{
	fingerprint_compute((const uint8_t *)headers, strlen(headers), size, out);
}

static void test_same_despite_folding_and_order(void **state)
{
	(void)state;
	char a[STATE_FP_LEN + 1], b[STATE_FP_LEN + 1];
	fp("Message-ID: <1@x>\r\nSubject: Hello world\r\nFrom: a@x\r\n\r\n", 100, a);
	fp("From:   a@x\nSubject: Hello\r\n\tworld\r\nMessage-ID: <1@x>\r\n\r\n", 100, b);
	assert_string_equal(a, b);
	assert_int_equal(strlen(a), STATE_FP_LEN);
}

static void test_size_and_fields_matter(void **state)
{
	(void)state;
	char a[STATE_FP_LEN + 1], b[STATE_FP_LEN + 1], c[STATE_FP_LEN + 1];
	fp("Message-ID: <1@x>\r\nSubject: Hello\r\n\r\n", 100, a);
	fp("Message-ID: <1@x>\r\nSubject: Hello\r\n\r\n", 101, b);
	fp("Message-ID: <1@x>\r\nSubject: Hellp\r\n\r\n", 100, c);
	assert_string_not_equal(a, b);
	assert_string_not_equal(a, c);
}

static void test_no_message_id(void **state)
{
	(void)state;
	char a[STATE_FP_LEN + 1], b[STATE_FP_LEN + 1];
	/* without Message-ID, the other fields still tell messages apart */
	fp("Date: Mon, 1 Jan 2001 00:00:00 +0000\r\nFrom: a@x\r\nSubject: s1\r\n\r\n", 10, a);
	fp("Date: Mon, 1 Jan 2001 00:00:00 +0000\r\nFrom: a@x\r\nSubject: s2\r\n\r\n", 10, b);
	assert_string_not_equal(a, b);
	/* an empty header block is fine */
	fingerprint_compute(NULL, 0, 5, a);
	assert_int_equal(strlen(a), STATE_FP_LEN);
}

static void test_field_prefix_not_confused(void **state)
{
	(void)state;
	char a[STATE_FP_LEN + 1], b[STATE_FP_LEN + 1];
	/* "To-Do:" is not "To:" */
	fp("To-Do: x\r\n\r\n", 1, a);
	fp("\r\n", 1, b);
	assert_string_equal(a, b);
}

static void test_header_value(void **state)
{
	(void)state;
	const char *h = "X-A: 1\r\nSubject:  Re: a\r\n  folded   line \r\nFrom: b\r\n";
	struct buf out = BUF_INIT(100);
	assert_int_equal(header_field_value((const uint8_t *)h, strlen(h), "subject", &out), 1);
	assert_string_equal(buf_cstr(&out), "Re: a folded line");
	buf_reset(&out);
	assert_int_equal(header_field_value((const uint8_t *)h, strlen(h), "Cc", &out), 0);
	buf_release(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_despite_folding_and_order),
		cmocka_unit_test(test_size_and_fields_matter),
		cmocka_unit_test(test_no_message_id),
		cmocka_unit_test(test_field_prefix_not_confused),
		cmocka_unit_test(test_header_value),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
