/* fuzz_url.c - libFuzzer target for imap_url_parse() and size_parse().
 *
 * Command-line text is untrusted input too (batch CSV files feed it).
 * Checked beyond "no crash": a parsed URL has a host without brackets, a
 * port, a non-empty user or none, and a key that says its scheme; a
 * refused one is ERR_CONFIG with words; a parsed size is exactly the
 * digits times the unit.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/err.h"
#include "util/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_url(const char *text)
{
	struct imap_url u;
	struct err e;
	err_clear(&e);
	if (imap_url_parse(text, &u, &e) < 0) {
		if (e.kind != ERR_CONFIG || !e.what[0])
			abort();
		return;
	}
	if (!u.host || !u.host[0] || strchr(u.host, '[') || strchr(u.host, ']') || u.port == 0)
		abort();
	if (u.user && !u.user[0])
		abort();
	char *key = imap_url_key(&u);
	if (!key || strncmp(key, u.tls ? "imaps://" : "imap://", u.tls ? 8 : 7) != 0)
		abort();
	free(key);
	imap_url_release(&u);
}

static void check_size(const char *text)
{
	uint64_t n = 0;
	if (size_parse(text, &n) < 0)
		return;
	/* digits, then at most one of K/M/G, then an optional B */
	uint64_t digits = 0;
	const char *p = text;
	if (!isdigit((unsigned char)*p))
		abort();
	for (; isdigit((unsigned char)*p); p++) {
		uint64_t d = (uint64_t)(*p - '0');
		if (digits > UINT64_MAX / 10 || (digits == UINT64_MAX / 10 && d > UINT64_MAX % 10))
			abort(); /* accepted a number that overflows */
		digits = digits * 10 + d;
	}
	uint64_t mult = 1;
	switch (toupper((unsigned char)*p)) {
	case 'K':
		mult = 1024;
		p++;
		break;
	case 'M':
		mult = 1024 * 1024;
		p++;
		break;
	case 'G':
		mult = 1024ull * 1024 * 1024;
		p++;
		break;
	default:
		break;
	}
	if (*p == 'B' || *p == 'b')
		p++;
	if (*p || digits > UINT64_MAX / mult || n != digits * mult)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0'; /* the C API takes text: an embedded NUL ends it */
	check_url(text);
	check_size(text);
	free(text);
	return 0;
}
