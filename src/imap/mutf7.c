/* mutf7.c - IMAP modified UTF-7 <-> UTF-8.
 *
 * Both directions build into a scratch buffer and append it to the
 * caller's only when the whole name converted, so a failure leaves out as
 * it was.  Decoding rejects everything that a canonical encoder would not
 * produce inside a run, so one server name has one UTF-8 spelling.
 */
#include "imap/mutf7.h"

#include <stdint.h>
#include <string.h>

#include "util/buf.h"

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

static int put_utf8(struct buf *b, uint32_t cp)
{
	char s[4];
	size_t n;
	if (cp < 0x80) {
		s[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		s[0] = (char)(0xc0 | (cp >> 6));
		s[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		s[0] = (char)(0xe0 | (cp >> 12));
		s[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		s[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		s[0] = (char)(0xf0 | (cp >> 18));
		s[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		s[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		s[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return buf_append(b, s, n);
}

static bool is_literal_ascii(uint32_t c)
{
	return c >= 0x20 && c <= 0x7e;
}

/* Decode the base64 run in[0..len) (between '&' and '-', not empty). */
static int decode_run(const unsigned char *in, size_t len, struct buf *tmp)
{
	uint32_t bits = 0;
	unsigned nbits = 0;
	uint32_t high = 0; /* pending high surrogate, or 0 */

	for (size_t i = 0; i < len; i++) {
		int v = b64_value(in[i]);
		if (v < 0)
			return -1;
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		uint32_t u = (bits >> nbits) & 0xffff;
		bits &= (1u << nbits) - 1;
		if (high) {
			if (u < 0xdc00 || u > 0xdfff)
				return -1;
			uint32_t cp = 0x10000 + ((high - 0xd800) << 10) + (u - 0xdc00);
			high = 0;
			if (put_utf8(tmp, cp) < 0)
				return -1;
		} else if (u >= 0xd800 && u <= 0xdbff) {
			high = u;
		} else if (u >= 0xdc00 && u <= 0xdfff) {
			return -1;
		} else if (u == 0 || is_literal_ascii(u)) {
			/* NUL cannot be in a C string; printable ASCII must be
			 * sent as itself. */
			return -1;
		} else if (put_utf8(tmp, u) < 0) {
			return -1;
		}
	}
	/* A canonical run leaves fewer than 6 bits, all zero, and no half of
	 * a surrogate pair. */
	if (high || nbits >= 6 || bits != 0)
		return -1;
	return 0;
}

int mutf7_to_utf8(const char *in, size_t len, struct buf *out)
{
	const unsigned char *s = (const unsigned char *)in;
	struct buf tmp = BUF_INIT(0);
	int ret = -1;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		if (!is_literal_ascii(c))
			goto out;
		if (c != '&') {
			if (buf_putc(&tmp, (char)c) < 0)
				goto out;
			i++;
			continue;
		}
		size_t start = ++i;
		while (i < len && s[i] != '-')
			i++;
		if (i == len)
			goto out; /* not closed */
		if (i == start) {
			if (buf_putc(&tmp, '&') < 0)
				goto out;
		} else if (decode_run(s + start, i - start, &tmp) < 0) {
			goto out;
		}
		i++; /* the '-' */
	}
	ret = len ? buf_append(out, tmp.data, tmp.len) : 0;
out:
	buf_release(&tmp);
	return ret;
}

/* Length of the UTF-8 sequence at s[0..len) and its code point, or 0 when
 * it is not valid (overlong, surrogate, above U+10FFFF, truncated). */
static size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp_r)
{
	unsigned char c = s[0];
	size_t n;
	uint32_t cp, min;

	if (c < 0x80) {
		*cp_r = c;
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return n;
}

bool utf8_is_valid(const char *in, size_t len)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t i = 0;
	while (i < len) {
		uint32_t cp;
		size_t n = utf8_decode(s + i, len - i, &cp);
		if (!n)
			return false;
		i += n;
	}
	return true;
}

struct b64_out {
	uint32_t bits;
	unsigned nbits;
	bool open;
};

static int emit_unit(struct buf *b, struct b64_out *st, uint32_t u)
{
	st->bits = (st->bits << 16) | u;
	st->nbits += 16;
	while (st->nbits >= 6) {
		st->nbits -= 6;
		if (buf_putc(b, b64chars[(st->bits >> st->nbits) & 0x3f]) < 0)
			return -1;
	}
	st->bits &= (1u << st->nbits) - 1;
	return 0;
}

static int close_run(struct buf *b, struct b64_out *st)
{
	if (!st->open)
		return 0;
	if (st->nbits && buf_putc(b, b64chars[(st->bits << (6 - st->nbits)) & 0x3f]) < 0)
		return -1;
	st->bits = 0;
	st->nbits = 0;
	st->open = false;
	return buf_putc(b, '-');
}

int utf8_to_mutf7(const char *in, size_t len, struct buf *out)
{
	const unsigned char *s = (const unsigned char *)in;
	struct buf tmp = BUF_INIT(0);
	struct b64_out st = {0, 0, false};
	int ret = -1;
	size_t i = 0;

	while (i < len) {
		uint32_t cp;
		size_t n = utf8_decode(s + i, len - i, &cp);
		if (!n || cp == 0)
			goto out;
		i += n;
		if (is_literal_ascii(cp)) {
			if (close_run(&tmp, &st) < 0)
				goto out;
			if (buf_puts(&tmp, cp == '&' ? "&-" : (char[]){(char)cp, 0}) < 0)
				goto out;
			continue;
		}
		if (!st.open) {
			if (buf_putc(&tmp, '&') < 0)
				goto out;
			st.open = true;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			if (emit_unit(&tmp, &st, 0xd800 | (cp >> 10)) < 0 ||
			    emit_unit(&tmp, &st, 0xdc00 | (cp & 0x3ff)) < 0)
				goto out;
		} else if (emit_unit(&tmp, &st, cp) < 0) {
			goto out;
		}
	}
	if (close_run(&tmp, &st) < 0)
		goto out;
	ret = len ? buf_append(out, tmp.data, tmp.len) : 0;
out:
	buf_release(&tmp);
	return ret;
}
