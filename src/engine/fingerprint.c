#include "engine/fingerprint.h"

#include <ctype.h>
#include <stdbool.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const fields[] = { "Message-ID", "Date", "From", "To", "Cc", "Subject" };

/* Find the start of the field called name at a line start; returns its
 * value start and sets *end_r to the end of the (possibly folded) field. */
static const uint8_t *find_field(const uint8_t *h, size_t len, const char *name,
				 const uint8_t **end_r)
{
	size_t nlen = strlen(name);
	size_t i = 0;
	while (i < len) {
		size_t line = i;
		/* the field ends at a newline not followed by space/tab */
		size_t j = i;
		for (;;) {
			while (j < len && h[j] != '\n')
				j++;
			if (j + 1 < len && (h[j + 1] == ' ' || h[j + 1] == '\t')) {
				j++;
				continue;
			}
			break;
		}
		if (j - line > nlen && h[line + nlen] == ':' &&
		    strncasecmp((const char *)h + line, name, nlen) == 0) {
			*end_r = h + j;
			return h + line + nlen + 1;
		}
		i = j + 1;
	}
	return NULL;
}

int header_field_value(const uint8_t *headers, size_t len, const char *name, struct buf *out)
{
	const uint8_t *end;
	const uint8_t *v = headers ? find_field(headers, len, name, &end) : NULL;
	if (!v)
		return 0;
	/* unfold: CR/LF dropped, runs of white space become one space */
	bool space = true; /* also trims leading white space */
	size_t start = out->len;
	for (; v < end; v++) {
		unsigned char ch = *v;
		if (ch == '\r' || ch == '\n' || ch == ' ' || ch == '\t') {
			space = true;
			continue;
		}
		if (space && out->len > start)
			buf_putc(out, ' ');
		space = false;
		buf_putc(out, (char)ch);
	}
	return 1;
}

void fingerprint_compute(const uint8_t *headers, size_t len, uint64_t size, char *out)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	char sz[32];
	struct buf v = BUF_INIT(64 * 1024);

	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	int n = snprintf(sz, sizeof(sz), "%llu\n", (unsigned long long)size);
	EVP_DigestUpdate(md, sz, (size_t)n);
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		buf_reset(&v);
		buf_puts(&v, fields[i]);
		buf_putc(&v, ':');
		if (!header_field_value(headers, len, fields[i], &v))
			buf_puts(&v, "<none>");
		buf_putc(&v, '\n');
		EVP_DigestUpdate(md, v.data, v.len);
	}
	EVP_DigestFinal_ex(md, digest, &dlen);
	EVP_MD_CTX_free(md);
	buf_release(&v);
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < STATE_FP_LEN / 2; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 15];
	}
	out[STATE_FP_LEN] = '\0';
}
