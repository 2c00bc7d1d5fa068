/* fuzz_csv.c - libFuzzer target for the batch CSV reader.
 *
 * Feeds the input to csv_parse_users() under both rule settings and to the
 * bare record splitter.  Checked beyond "no crash": a refusal is
 * ERR_CONFIG with words and returns nothing; an accepted list has at least
 * one user, every user an address with one @, a non-empty user name, a
 * password that is empty only when the rules allow it, increasing line
 * numbers, and no two users with the same address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_users(const uint8_t *data, size_t size, const struct csv_rules *rules)
{
	struct csv_users u = {(struct csv_user *)1, 7};
	struct err e;
	err_clear(&e);
	if (csv_parse_users("fuzz.csv", data, size, rules, &u, &e) < 0) {
		if (e.kind != ERR_CONFIG || strncmp(e.what, "fuzz.csv", 8) != 0 || u.items ||
		    u.count)
			abort();
		return;
	}
	if (u.count == 0 || !u.items)
		abort();
	for (size_t i = 0; i < u.count; i++) {
		const struct csv_user *x = &u.items[i];
		const char *at = strchr(x->email, '@');
		if (!at || at == x->email || !at[1] || strchr(at + 1, '@'))
			abort();
		if (!x->user[0] || (!x->password[0] && !rules->source_password_optional))
			abort();
		if (x->target_user && !x->target_user[0])
			abort();
		if (x->target_user && !x->target_password && !rules->target_password_optional)
			abort();
		if (i > 0 && x->line <= u.items[i - 1].line)
			abort();
		/* quadratic, but fuzz inputs are small */
		for (size_t j = 0; j < i && u.count < 2000; j++)
			if (!strcasecmp(u.items[j].email, x->email))
				abort();
	}
	csv_users_release(&u);
	if (u.items || u.count)
		abort();
}

static void check_records(const uint8_t *data, size_t size)
{
	struct csv_reader r;
	struct csv_record rec = {0};
	struct err e;
	unsigned last = 0;
	int rc;
	err_clear(&e);
	csv_reader_init(&r, "fuzz.csv", data, size);
	while ((rc = csv_reader_next(&r, &rec, &e)) > 0) {
		if (rec.count == 0 || rec.count > CSV_MAX_FIELDS || rec.line <= last)
			abort();
		last = rec.line;
		for (size_t i = 0; i < rec.count; i++) {
			size_t n;
			const char *f = csv_record_field(&rec, i, &n);
			if (n > CSV_MAX_FIELD || strlen(f) != n)
				abort();
		}
	}
	if (rc < 0 && (e.kind != ERR_CONFIG || !e.what[0]))
		abort();
	csv_record_release(&rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct csv_rules strict = {false, false}, admins = {true, true};
	/* an exact-size copy, so ASan sees any read past the end */
	uint8_t *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	check_users(copy, size, &strict);
	check_users(copy, size, &admins);
	check_records(copy, size);
	free(copy);
	return 0;
}
