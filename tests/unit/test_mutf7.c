/* test_mutf7.c - modified UTF-7: known vectors both ways, strict rejection
 * of everything non-canonical, and round trips over random names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap/mutf7.h"
#include "util/buf.h"

struct vector {
	const char *mutf7;
	const char *utf8;
};

/* Expected encodings cross-checked against Python's UTF-16 + base64. */
/* clang-format off */
static const struct vector vectors[] = {
	{ "", "" },
	{ "INBOX", "INBOX" },
	{ "&ZeVnLIqe-", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" },         /* 日本語 */
	{ "&U,BTFw-", "\xe5\x8f\xb0\xe5\x8c\x97" },                       /* 台北 */
	{ "Entw&APw-rfe", "Entw\xc3\xbcrfe" },                            /* Entwürfe */
	{ "&-", "&" },
	{ "a&-b&-&-", "a&b&&" },
	{ "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
	  "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" },
	{ "&2D3eAA-", "\xf0\x9f\x98\x80" },                                /* U+1F600 */
	{ "a&2D3eAA-b&2DzfiQ-", "a\xf0\x9f\x98\x80" "b\xf0\x9f\x8e\x89" },
	{ "&AAk-", "\t" },
	{ "&AH8-", "\x7f" },
	{ "&IKw-", "\xe2\x82\xac" },                                      /* € */
	{ "&ANw-n&AO8-c&APY-d&AOk- &- Co", "\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 & Co" },
	{ "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-",
	  "\xd0\x9e\xd1\x82\xd0\xbf\xd1\x80\xd0\xb0\xd0\xb2\xd0\xbb\xd0\xb5\xd0\xbd\xd0\xbd\xd1\x8b"
	  "\xd0\xb5" },                                                    /* Отправленные */
	{ "&kAFP4W4IMH8wojCkMMYw4A-",
	  "\xe9\x80\x81\xe4\xbf\xa1\xe6\xb8\x88\xe3\x81\xbf\xe3\x82\xa2\xe3\x82\xa4\xe3\x83\x86"
	  "\xe3\x83\xa0" },                                                /* 送信済みアイテム */
};
/* clang-format on */

static void test_vectors(void **state)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const struct vector *v = &vectors[i];
		struct buf b = BUF_INIT(0);
		assert_int_equal(mutf7_to_utf8(v->mutf7, strlen(v->mutf7), &b), 0);
		assert_string_equal(buf_cstr(&b), v->utf8);
		buf_reset(&b);
		assert_int_equal(utf8_to_mutf7(v->utf8, strlen(v->utf8), &b), 0);
		assert_string_equal(buf_cstr(&b), v->mutf7);
		assert_true(utf8_is_valid(v->utf8, strlen(v->utf8)));
		buf_release(&b);
	}
}

static void test_appends(void **state)
{
	struct buf b = BUF_INIT(0);
	buf_puts(&b, "pre:");
	assert_int_equal(mutf7_to_utf8("&U,BTFw-", 8, &b), 0);
	assert_string_equal(buf_cstr(&b), "pre:\xe5\x8f\xb0\xe5\x8c\x97");
	buf_reset(&b);
	buf_puts(&b, "pre:");
	assert_int_equal(utf8_to_mutf7("&x", 2, &b), 0);
	assert_string_equal(buf_cstr(&b), "pre:&-x");
	/* only len bytes are read */
	buf_reset(&b);
	assert_int_equal(mutf7_to_utf8("&-XYZ", 2, &b), 0);
	assert_string_equal(buf_cstr(&b), "&");
	buf_release(&b);

	/* a cap that the result would pass: -1, buffer unchanged */
	struct buf capped = BUF_INIT(5);
	buf_puts(&capped, "ab");
	assert_int_equal(mutf7_to_utf8("&ZeVnLIqe-", 10, &capped), -1);
	assert_string_equal(buf_cstr(&capped), "ab");
	assert_int_equal(utf8_to_mutf7("\xe6\x97\xa5", 3, &capped), -1);
	assert_string_equal(buf_cstr(&capped), "ab");
	buf_release(&capped);
}

static const char *const bad_mutf7[] = {
    "&ZeVn",       /* not closed */
    "&ZeVnLIqe",   /* not closed */
    "&",           /* not closed */
    "abc&",        /* not closed */
    "&AGE-",       /* 'a' must be literal */
    "&ACY-",       /* '&' must be "&-" */
    "&ACA-",       /* ' ' must be literal */
    "&AH4-",       /* '~' must be literal */
    "&AAA-",       /* U+0000 */
    "&Ze!n-",      /* bad base64 */
    "&ZeVn/Iqe-",  /* '/' is ',' in modified base64 */
    "&ZeVnLIqe=-", /* no padding in modified base64 */
    "&&",          /* '&' inside a run */
    "&&-",
    "&2D0-",           /* lone high surrogate */
    "&2D3YPQ-",        /* high followed by high */
    "&3gA-",           /* lone low surrogate */
    "&AOTeAA-",        /* low after an ordinary char */
    "&U,BTFx-",        /* non-zero padding bits */
    "&U,BTFwA-",       /* a whole base64 char of padding */
    "&U-",             /* 6 bits: not even one unit */
    "&U,B-",           /* 2 bits left over, not zero */
    "Entw\xc3\xbcrfe", /* 8-bit */
    "\xff",
    "a\x01", /* control characters are encoded, never raw */
    "\x7f",
    "a\tb",
};

static void test_bad_mutf7(void **state)
{
	for (size_t i = 0; i < sizeof(bad_mutf7) / sizeof(bad_mutf7[0]); i++) {
		struct buf b = BUF_INIT(0);
		buf_puts(&b, "keep");
		if (mutf7_to_utf8(bad_mutf7[i], strlen(bad_mutf7[i]), &b) != -1) {
			print_error("accepted: %s -> %s\n", bad_mutf7[i], buf_cstr(&b));
			fail();
		}
		assert_string_equal(buf_cstr(&b), "keep");
		buf_release(&b);
	}
	/* a NUL byte inside the input */
	struct buf b = BUF_INIT(0);
	assert_int_equal(mutf7_to_utf8("a\0b", 3, &b), -1);
	assert_int_equal(b.len, 0);
	buf_release(&b);
}

static const char *const bad_utf8[] = {
    "\xc0\xaf",                 /* overlong '/' */
    "\xc1\xbf",                 /* overlong */
    "\xe0\x80\xaf",             /* overlong */
    "\xe0\x9f\xbf",             /* overlong (below U+0800) */
    "\xf0\x8f\xbf\xbf",         /* overlong (below U+10000) */
    "\xed\xa0\x80",             /* U+D800 */
    "\xed\xbf\xbf",             /* U+DFFF */
    "\xed\xa0\xbd\xed\xb8\x80", /* CESU-8 surrogate pair */
    "\xf4\x90\x80\x80",         /* above U+10FFFF */
    "\xf5\x80\x80\x80",
    "\xe6\x97",     /* truncated */
    "abc\xe6",      /* truncated at end */
    "\xf0\x9f\x98", /* truncated */
    "\x80",         /* stray continuation */
    "a\xbf"
    "b",
    "\xc3\x28", /* bad continuation */
    "\xff",
    "\xfe",
};

static void test_bad_utf8(void **state)
{
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
		const char *s = bad_utf8[i];
		struct buf b = BUF_INIT(0);
		buf_puts(&b, "keep");
		assert_false(utf8_is_valid(s, strlen(s)));
		assert_int_equal(utf8_to_mutf7(s, strlen(s), &b), -1);
		assert_string_equal(buf_cstr(&b), "keep");
		buf_release(&b);
	}
	/* Edges that are valid. */
	assert_true(utf8_is_valid("\xed\x9f\xbf", 3));     /* U+D7FF */
	assert_true(utf8_is_valid("\xee\x80\x80", 3));     /* U+E000 */
	assert_true(utf8_is_valid("\xf4\x8f\xbf\xbf", 4)); /* U+10FFFF */
	assert_true(utf8_is_valid("\xc2\x80", 2));
	assert_true(utf8_is_valid("", 0));
	/* U+0000 is valid UTF-8 but cannot be a mailbox name. */
	assert_true(utf8_is_valid("a\0b", 3));
	struct buf b = BUF_INIT(0);
	assert_int_equal(utf8_to_mutf7("a\0b", 3, &b), -1);
	assert_int_equal(b.len, 0);
	assert_int_equal(utf8_to_mutf7("\xf4\x8f\xbf\xbf", 4, &b), 0);
	assert_string_equal(buf_cstr(&b), "&2,,f,w-");
	buf_release(&b);
}

/* A random name from a mix of ASCII, '&', control characters, Latin,
 * CJK, the surrogate neighbourhood and the supplementary planes. */
static size_t random_utf8(char *out, unsigned *seed)
{
	size_t n = 0;
	int count = rand_r(seed) % 12;
	for (int i = 0; i < count; i++) {
		uint32_t cp;
		switch (rand_r(seed) % 7) {
		case 0:
			cp = 0x20 + (uint32_t)rand_r(seed) % 0x5f;
			break;
		case 1:
			cp = '&';
			break;
		case 2:
			cp = 1 + (uint32_t)rand_r(seed) % 0x1f;
			break;
		case 3:
			cp = 0x80 + (uint32_t)rand_r(seed) % 0x780;
			break;
		case 4:
			cp = 0xd000 + (uint32_t)rand_r(seed) % 0x2fff;
			break;
		case 5:
			cp = 0x10000 + (uint32_t)rand_r(seed) % 0x100000;
			break;
		default:
			cp = 0x3000 + (uint32_t)rand_r(seed) % 0x6000;
			break;
		}
		if (cp >= 0xd800 && cp <= 0xdfff)
			cp = 0xfffd;
		if (cp < 0x80) {
			out[n++] = (char)cp;
		} else if (cp < 0x800) {
			out[n++] = (char)(0xc0 | (cp >> 6));
			out[n++] = (char)(0x80 | (cp & 0x3f));
		} else if (cp < 0x10000) {
			out[n++] = (char)(0xe0 | (cp >> 12));
			out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			out[n++] = (char)(0x80 | (cp & 0x3f));
		} else {
			out[n++] = (char)(0xf0 | (cp >> 18));
			out[n++] = (char)(0x80 | ((cp >> 12) & 0x3f));
			out[n++] = (char)(0x80 | ((cp >> 6) & 0x3f));
			out[n++] = (char)(0x80 | (cp & 0x3f));
		}
	}
	return n;
}

static void test_round_trip(void **state)
{
	unsigned seed = 12345;
	char name[64];
	for (int i = 0; i < 100000; i++) {
		size_t n = random_utf8(name, &seed);
		struct buf m = BUF_INIT(0), u = BUF_INIT(0), m2 = BUF_INIT(0);
		assert_true(utf8_is_valid(name, n));
		assert_int_equal(utf8_to_mutf7(name, n, &m), 0);
		/* the encoding is printable ASCII only */
		for (size_t k = 0; k < m.len; k++)
			assert_true(m.data[k] >= 0x20 && m.data[k] <= 0x7e);
		assert_int_equal(mutf7_to_utf8((const char *)m.data, m.len, &u), 0);
		assert_int_equal(u.len, n);
		assert_memory_equal(u.data, name, n);
		/* and it is canonical: encoding the decoded name gives it back */
		assert_int_equal(utf8_to_mutf7((const char *)u.data, u.len, &m2), 0);
		assert_int_equal(m2.len, m.len);
		assert_memory_equal(m2.data, m.data, m.len);
		buf_release(&m);
		buf_release(&u);
		buf_release(&m2);
	}
}

/* Random printable strings: whatever decodes must re-encode and decode to
 * the same UTF-8 (the decoder never invents text). */
static void test_random_mutf7(void **state)
{
	static const char alpha[] = "&-AZaz09+,/=gE2D3e.";
	unsigned seed = 777;
	char in[24];
	size_t ok = 0;
	for (int i = 0; i < 200000; i++) {
		size_t n = (size_t)rand_r(&seed) % sizeof(in);
		for (size_t k = 0; k < n; k++)
			in[k] = alpha[rand_r(&seed) % (int)(sizeof(alpha) - 1)];
		struct buf u = BUF_INIT(0), m = BUF_INIT(0), u2 = BUF_INIT(0);
		if (mutf7_to_utf8(in, n, &u) == 0) {
			ok++;
			assert_true(utf8_is_valid((const char *)u.data, u.len));
			assert_int_equal(utf8_to_mutf7((const char *)u.data, u.len, &m), 0);
			assert_int_equal(mutf7_to_utf8((const char *)m.data, m.len, &u2), 0);
			assert_int_equal(u2.len, u.len);
			assert_memory_equal(u2.data, u.data, u.len);
		} else {
			assert_int_equal(u.len, 0);
		}
		buf_release(&u);
		buf_release(&m);
		buf_release(&u2);
	}
	assert_true(ok > 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vectors),    cmocka_unit_test(test_appends),
	    cmocka_unit_test(test_bad_mutf7),  cmocka_unit_test(test_bad_utf8),
	    cmocka_unit_test(test_round_trip), cmocka_unit_test(test_random_mutf7),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
