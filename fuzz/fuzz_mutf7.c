/* fuzz_mutf7.c - libFuzzer target for modified UTF-7.
 *
 * Whatever decodes is valid UTF-8 that encodes back and decodes to the
 * same text; whatever is valid UTF-8 (without NUL) encodes to printable
 * ASCII that decodes back to the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/mutf7.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct buf a = BUF_INIT(0), b = BUF_INIT(0), c = BUF_INIT(0);

	if (mutf7_to_utf8(in, size, &a) == 0) {
		if (!utf8_is_valid((const char *)a.data, a.len) ||
		    utf8_to_mutf7((const char *)a.data, a.len, &b) < 0 ||
		    mutf7_to_utf8((const char *)b.data, b.len, &c) < 0 || c.len != a.len ||
		    (a.len && memcmp(c.data, a.data, a.len) != 0))
			abort();
	} else if (a.len) {
		abort(); /* failure must leave out unchanged */
	}
	buf_reset(&b);
	buf_reset(&c);
	if (utf8_is_valid(in, size) && !(size && memchr(in, 0, size))) {
		if (utf8_to_mutf7(in, size, &b) < 0)
			abort();
		for (size_t i = 0; i < b.len; i++)
			if (b.data[i] < 0x20 || b.data[i] > 0x7e)
				abort();
		if (mutf7_to_utf8((const char *)b.data, b.len, &c) < 0 || c.len != size ||
		    (size && memcmp(c.data, in, size) != 0))
			abort();
	} else if (utf8_to_mutf7(in, size, &b) == 0) {
		abort();
	}
	buf_release(&a);
	buf_release(&b);
	buf_release(&c);
	return 0;
}
