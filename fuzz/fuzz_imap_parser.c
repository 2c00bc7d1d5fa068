/* fuzz_imap_parser.c - libFuzzer target for the IMAP response parser.
 *
 * data[0] picks the piece sizes and whether literals are streamed; the
 * rest is the server's byte stream.  Small limits so every cap is hit.
 * The stream is parsed twice, in random pieces and whole, and both runs
 * must produce the same digest of every response, streamed byte and
 * error: the parser may not depend on where the input was split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	uint64_t hash;
	uint8_t mode;
	uint64_t announced, got;
	int open;
};

static void mix(struct run *r, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		r->hash = (r->hash ^ b[i]) * 1099511628211u;
}

static bool lit_begin(void *ctx, const struct imap_response *resp, const struct imap_arg *list,
                      const struct imap_arg *prev, uint64_t size)
{
	struct run *r = ctx;
	if (r->open || (prev && prev->next))
		abort();
	if (!(r->mode & 1) && !(size & 1))
		return false;
	r->open = 1;
	r->announced = size;
	r->got = 0;
	mix(r, &size, sizeof(size));
	return true;
}

static int lit_data(void *ctx, const uint8_t *d, size_t n)
{
	struct run *r = ctx;
	r->got += n;
	if (!r->open || !n || r->got > r->announced)
		abort();
	/* mode bit 1: refuse the chunk holding the 3rd byte (consumer abort);
	 * its bytes are left out of the digest as chunks differ per run */
	if (r->mode & 2)
		return r->got > 2 ? -1 : 0;
	mix(r, d, n);
	return 0;
}

static int lit_end(void *ctx)
{
	struct run *r = ctx;
	if (!r->open || r->got != r->announced)
		abort();
	r->open = 0;
	return 0;
}

static void walk(struct run *r, const struct imap_arg *a, unsigned depth)
{
	if (depth > 6)
		abort(); /* deeper than max_depth */
	for (; a; a = a->next) {
		mix(r, &a->type, sizeof(a->type));
		if (a->str) {
			if (a->str[a->len] != '\0')
				abort();
			mix(r, a->str, a->len);
		}
		if (a->type == IMAP_ARG_LIST)
			walk(r, a->child, depth + 1);
		else if (a->child)
			abort();
	}
}

static void digest(struct run *r, const struct imap_response *resp)
{
	const char *s[] = {resp->tag, resp->code, resp->code_raw, resp->text, resp->name};
	for (size_t i = 0; i < 5; i++)
		if (s[i])
			mix(r, s[i], strlen(s[i]) + 1);
	mix(r, &resp->number, sizeof(resp->number));
	walk(r, resp->code_args, 0);
	walk(r, resp->args, 0);
}

static uint64_t parse(const uint8_t *data, size_t size, uint8_t mode, int split)
{
	static const struct imap_parser_limits lim = {200, 5, 40, 5000};
	static const struct imap_parser_callbacks cb = {lit_begin, lit_data, lit_end};
	struct run r = {1469598103934665603u, mode, 0, 0, 0};
	struct imap_parser *p = imap_parser_new(&lim, (mode & 4) ? NULL : &cb, &r);
	uint32_t rnd = mode * 2654435761u + 1;
	size_t off = 0;

	while (off < size) {
		rnd = rnd * 1103515245u + 12345u;
		size_t n = split ? 1 + (rnd >> 16) % 17 : size - off;
		if (n > size - off)
			n = size - off;
		size_t end = off + n;
		while (off < end) {
			size_t used;
			enum imap_parse_result res =
			    imap_parser_feed(p, data + off, end - off, &used);
			if (used > end - off)
				abort();
			off += used;
			if (res == IMAP_PARSE_RESPONSE) {
				digest(&r, imap_parser_response(p));
			} else if (res == IMAP_PARSE_ERROR) {
				const char *e = imap_parser_error(p);
				bool aborted = strcmp(e, "aborted by consumer") == 0;
				mix(&r, e, strlen(e));
				/* Go on after the bad byte: both runs fail at the
				 * same offset, and later responses get fuzzed too.
				 * Not after a consumer abort, whose offset is the
				 * end of whatever chunk the consumer refused. */
				imap_parser_reset(p);
				r.open = 0;
				if (aborted)
					off = end = size;
				else
					mix(&r, &off, sizeof(off));
			}
		}
	}
	imap_parser_free(&p);
	return r.hash;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (parse(data + 1, size - 1, data[0], 1) != parse(data + 1, size - 1, data[0], 0))
		abort();
	return 0;
}
