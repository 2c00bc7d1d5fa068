/* fuzz_state_open.c - state_open and a few reads on an arbitrary file.
 *
 * Seeds worth giving: a real state.db (it then mutates pages of a valid
 * schema, reaching the row readers with odd values).  Each run gets its
 * own directory, so no state crosses runs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store/state.h"
#include "util/mem.h"

static int count_fn(void *ctx, const struct state_msg *m, struct err *err)
{
	(*(size_t *)ctx)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[] = "/tmp/fuzz_state.XXXXXX";
	struct state_folder f;
	struct state_counts c;
	struct state *st;
	struct err err;
	size_t n = 0;
	int64_t pair;
	FILE *fp;

	if (!mkdtemp(dir))
		abort();
	char *path = xasprintf("%s/state.db", dir);
	fp = fopen(path, "wb");
	if (!fp || fwrite(data, 1, size, fp) != size || fclose(fp) != 0)
		abort();
	st = state_open(path, &err);
	if (st && state_pair_get(st, "s", "t", &pair, &err) == 0 &&
	    state_folder_get(st, pair, "INBOX", "INBOX", &f, &err) == 0) {
		state_msg_each(st, f.id, 0, 0, -1, count_fn, &n, &err);
		state_msg_counts(st, f.id, &c, &err);
	}
	state_close(&st);
	static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		char *name = xasprintf("%s%s", path, suffix[i]);
		unlink(name);
		free(name);
	}
	rmdir(dir);
	free(path);
	return 0;
}
