/* fuzz_batch_config.c - libFuzzer target for the stored batch settings.
 *
 * batch_config_parse() reads text from the state database, which a person
 * (or a damaged disk) may have changed.  Beyond "no crash": whatever parses
 * must serialize and parse again to the same text (a fixed point).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch/batch.h"
#include "util/mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = xstrndup((const char *)data, size); /* stops at a NUL, like SQLite text */
	struct batch_config c, d;
	struct err e;
	if (batch_config_parse(text, &c, &e) == 0) {
		char *once = batch_config_serialize(&c);
		if (batch_config_parse(once, &d, &e) != 0)
			abort();
		char *twice = batch_config_serialize(&d);
		if (strcmp(once, twice) != 0)
			abort();
		free(once);
		free(twice);
		batch_config_release(&c);
		batch_config_release(&d);
	}
	free(text);
	return 0;
}
