/* The batch CSV: what is accepted byte-exact, and the exact words of every
 * refusal a person may see. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "batch/csv.h"

static const struct csv_rules strict = {false, false};

static int parse_n(const char *text, size_t len, const struct csv_rules *rules, struct csv_users *u,
                   struct err *e)
{
	err_clear(e);
	return csv_parse_users("users.csv", (const uint8_t *)text, len, rules, u, e);
}

static int parse(const char *text, struct csv_users *u, struct err *e)
{
	return parse_n(text, strlen(text), &strict, u, e);
}

/* The file is refused with exactly `what`; nothing is returned. */
static void refused_n(const char *text, size_t len, const struct csv_rules *rules, const char *what)
{
	struct csv_users u = {(struct csv_user *)1, 99};
	struct err e;
	assert_int_equal(parse_n(text, len, rules, &u, &e), -1);
	assert_int_equal(e.kind, ERR_CONFIG);
	assert_string_equal(e.what, what);
	assert_null(u.items);
	assert_int_equal(u.count, 0);
}

static void refused(const char *text, const char *what)
{
	refused_n(text, strlen(text), &strict, what);
}

#define HDR "EmailAddress,UserName,Password\n"

/* ---- accepted files ---- */

static void test_basic(void **state)
{
	(void)state;
	struct csv_users u;
	struct err e;
	assert_int_equal(parse(HDR "alice@example.org,alice,secret1\n"
	                           "bob@example.org,bob.old,secret2\n",
	                       &u, &e),
	                 0);
	assert_int_equal(u.count, 2);
	assert_string_equal(u.items[0].email, "alice@example.org");
	assert_string_equal(u.items[0].user, "alice");
	assert_string_equal(u.items[0].password, "secret1");
	assert_null(u.items[0].user_root);
	assert_null(u.items[0].target_user);
	assert_null(u.items[0].target_password);
	assert_int_equal(u.items[0].line, 2);
	assert_string_equal(u.items[1].user, "bob.old");
	assert_int_equal(u.items[1].line, 3);
	csv_users_release(&u);
	assert_null(u.items);
	assert_int_equal(u.count, 0);
	csv_users_release(&u); /* twice is fine */
}

static void test_bom_crlf_no_final_newline(void **state)
{
	(void)state;
	struct csv_users u;
	struct err e;
	assert_int_equal(parse("\xef\xbb\xbf"
	                       "EmailAddress,UserName,Password\r\n"
	                       "a@example.org,a,pa\r\n"
	                       "b@example.org,b,pb\n" /* mixed line ends */
	                       "c@example.org,c,pc",
	                       &u, &e),
	                 0);
	assert_int_equal(u.count, 3);
	assert_string_equal(u.items[0].password, "pa"); /* no CR left behind */
	assert_string_equal(u.items[1].password, "pb");
	assert_string_equal(u.items[2].password, "pc");
	assert_int_equal(u.items[2].line, 4);
	csv_users_release(&u);
}

static void test_trailing_blank_lines(void **state)
{
	(void)state;
	struct csv_users u;
	struct err e;
	assert_int_equal(parse(HDR "a@example.org,a,pa\r\n\r\n\n\r\n", &u, &e), 0);
	assert_int_equal(u.count, 1);
	assert_string_equal(u.items[0].password, "pa");
	csv_users_release(&u);
}

static void test_quoted_passwords_byte_exact(void **state)
{
	(void)state;
	struct csv_users u;
	struct err e;
	assert_int_equal(parse(HDR "a@example.org,a,\"p,w\"\n"
	                           "b@example.org,\"b\",\"say \"\"hi\"\"\"\n"
	                           "c@example.org,c,  spaced out  \n"
	                           "d@example.org,d,\"  quoted,\"\" \"\n"
	                           "e@example.org,e,\"two\nlines\"\n"
	                           "f@example.org,f,\"\"\"\"\n"
	                           "g@example.org,g,\"crlf\r\nkept\"\r\n"
	                           "h@example.org,h,tab\there\n",
	                       &u, &e),
	                 0);
	assert_int_equal(u.count, 8);
	assert_string_equal(u.items[0].password, "p,w");
	assert_string_equal(u.items[1].user, "b");
	assert_string_equal(u.items[1].password, "say \"hi\"");
	assert_string_equal(u.items[2].password, "  spaced out  ");
	assert_string_equal(u.items[3].password, "  quoted,\" ");
	assert_string_equal(u.items[4].password, "two\nlines");
	assert_string_equal(u.items[5].password, "\"");
	assert_string_equal(u.items[6].password, "crlf\r\nkept");
	assert_string_equal(u.items[7].password, "tab\there");
	/* a record is named by the line it starts on */
	assert_int_equal(u.items[4].line, 6);
	assert_int_equal(u.items[5].line, 8);
	assert_int_equal(u.items[6].line, 9);
	assert_int_equal(u.items[7].line, 11);
	csv_users_release(&u);
}

static void test_japanese(void **state)
{
	(void)state;
	struct csv_users u;
	struct err e;
	assert_int_equal(parse(HDR "yamada@例え.jp,山田太郎,パスワード🔑\n"
	                           "\"suzuki@example.jp\",\"鈴木, 花子\",\"秘密\"\"です\"\n",
	                       &u, &e),
	                 0);
	assert_int_equal(u.count, 2);
	assert_string_equal(u.items[0].email, "yamada@例え.jp");
	assert_string_equal(u.items[0].user, "山田太郎");
	assert_string_equal(u.items[0].password, "パスワード🔑");
	assert_string_equal(u.items[1].user, "鈴木, 花子");
	assert_string_equal(u.items[1].password, "秘密\"です");
	csv_users_release(&u);
}

static void test_optional_columns_any_order(void **state)
{
	(void)state;
	struct csv_users u;
	struct err e;
	assert_int_equal(parse(" targetpassword ,USERNAME,\"UserRoot\",emailaddress,  "
	                       "TargetUserName,password\n"
	                       "tp1,alice,/home/alice,alice@new.example,alice.new,sp1\n"
	                       ",bob,,bob@new.example,,sp2\n"
	                       "tp3,carol,,carol@new.example,,sp3\n",
	                       &u, &e),
	                 0);
	assert_int_equal(u.count, 3);
	assert_string_equal(u.items[0].email, "alice@new.example");
	assert_string_equal(u.items[0].user, "alice");
	assert_string_equal(u.items[0].password, "sp1");
	assert_string_equal(u.items[0].user_root, "/home/alice");
	assert_string_equal(u.items[0].target_user, "alice.new");
	assert_string_equal(u.items[0].target_password, "tp1");
	/* empty optional values are NULL */
	assert_null(u.items[1].user_root);
	assert_null(u.items[1].target_user);
	assert_null(u.items[1].target_password);
	/* a target password without a target user: the address logs in */
	assert_null(u.items[2].target_user);
	assert_string_equal(u.items[2].target_password, "tp3");
	csv_users_release(&u);
}

static void test_admin_rules(void **state)
{
	(void)state;
	struct csv_users u;
	struct err e;
	const struct csv_rules src_admin = {true, false}, tgt_admin = {false, true};
	const char *csv = HDR "a@example.org,a,\n";
	assert_int_equal(parse_n(csv, strlen(csv), &src_admin, &u, &e), 0);
	assert_string_equal(u.items[0].password, "");
	csv_users_release(&u);
	refused(csv, "users.csv:2:3 (Password): empty password");

	csv = "EmailAddress,UserName,Password,TargetUserName\na@example.org,a,p,a.new\n";
	assert_int_equal(parse_n(csv, strlen(csv), &tgt_admin, &u, &e), 0);
	assert_string_equal(u.items[0].target_user, "a.new");
	assert_null(u.items[0].target_password);
	csv_users_release(&u);
	/* NULL rules mean strict */
	assert_int_equal(csv_parse_users("u", (const uint8_t *)csv, strlen(csv), NULL, &u, &e), -1);
}

static void test_read_file(void **state)
{
	(void)state;
	char path[] = "/tmp/test_csv_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *csv = HDR "a@example.org,a,\"p,1\"\n";
	assert_int_equal(write(fd, csv, strlen(csv)), (ssize_t)strlen(csv));
	struct csv_users u;
	struct err e;
	err_clear(&e);
	assert_int_equal(csv_read_users(path, &strict, &u, &e), 0);
	assert_int_equal(u.count, 1);
	assert_string_equal(u.items[0].password, "p,1");
	csv_users_release(&u);

	/* errors name the path given */
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(csv_read_users(path, &strict, &u, &e), -1);
	char want[256];
	snprintf(want, sizeof(want), "%s: no users: the file is empty", path);
	assert_string_equal(e.what, want);

	assert_int_equal(ftruncate(fd, (off_t)CSV_MAX_FILE + 1), 0);
	assert_int_equal(csv_read_users(path, &strict, &u, &e), -1);
	snprintf(want, sizeof(want), "%s: the file is larger than 64 MiB (the limit)", path);
	assert_string_equal(e.what, want);
	close(fd);
	unlink(path);

	assert_int_equal(csv_read_users(path, &strict, &u, &e), -1);
	assert_int_equal(e.kind, ERR_CONFIG);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
	assert_string_equal(e.what, want);
	assert_null(u.items);
}

/* Every prefix of a good file either parses or fails cleanly. */
static void test_every_prefix(void **state)
{
	(void)state;
	const char *csv = "\xef\xbb\xbfTargetPassword,EmailAddress,UserName,Password,"
	                  "TargetUserName\r\n"
	                  "\"t,\"\"1\",a@example.org,\"山田\",\"p\nw\",ta\r\n"
	                  "t2,b@example.org,b,p2,\r\n";
	size_t n = strlen(csv);
	for (size_t i = 0; i <= n; i++) {
		struct csv_users u;
		struct err e;
		char *copy = malloc(i ? i : 1); /* exact size: ASan sees overreads */
		memcpy(copy, csv, i);
		if (parse_n(copy, i, &strict, &u, &e) == 0) {
			assert_true(u.count >= 1);
			csv_users_release(&u);
		} else {
			assert_int_equal(e.kind, ERR_CONFIG);
			assert_null(u.items);
		}
		free(copy);
	}
}

/* ---- the header ---- */

static void test_header_errors(void **state)
{
	(void)state;
	refused("EmailAddress,UserName,Password,Foo\na@example.org,a,p,x\n",
	        "users.csv:1:4: unknown column \"Foo\" (known: EmailAddress, UserName, Password, "
	        "UserRoot, TargetUserName, TargetPassword)");
	refused("EmailAddress,UserName,username\n",
	        "users.csv:1:3: duplicate column \"username\" (column 2 is UserName too)");
	refused(
	    "EmailAddress,UserName\na@example.org,a\n",
	    "users.csv:1: missing column Password (required: EmailAddress, UserName, Password)");
	refused("Password,UserRoot\n",
	        "users.csv:1: missing columns EmailAddress, UserName (required: EmailAddress, "
	        "UserName, Password)");
	refused("EmailAddress,,UserName,Password\n",
	        "users.csv:1:2: empty column name (known: EmailAddress, UserName, Password, "
	        "UserRoot, TargetUserName, TargetPassword)");
	refused("\nEmailAddress,UserName,Password\n",
	        "users.csv:1: line 1 is blank; the first line must be the header");

	/* data where the header should be gets a hint */
	struct csv_users u;
	struct err e;
	assert_int_equal(parse("alice@example.org,alice,pw\n", &u, &e), -1);
	assert_non_null(strstr(e.hint, "first line must be the header"));
	/* the password in that line is not repeated */
	assert_int_equal(parse("a@example.org,a,hunter2\n", &u, &e), -1);
	assert_string_equal(e.what, "users.csv:1:1: unknown column \"a@example.org\" (known: "
	                            "EmailAddress, UserName, Password, UserRoot, TargetUserName, "
	                            "TargetPassword)");
	/* control characters in a shown name are masked */
	refused("EmailAddress,UserName,Password,\"a\nb\"\n",
	        "users.csv:1:4: unknown column \"a?b\" (known: EmailAddress, UserName, Password, "
	        "UserRoot, TargetUserName, TargetPassword)");
}

static void test_no_users(void **state)
{
	(void)state;
	refused("", "users.csv: no users: the file is empty");
	refused("\xef\xbb\xbf", "users.csv: no users: the file is empty");
	refused("\r\n\n", "users.csv: no users: the file is empty");
	refused(HDR, "users.csv: no users: the file has only the header line");
	refused("EmailAddress,UserName,Password", "users.csv: no users: the file has only the "
	                                          "header line");
	refused(HDR "\n\n", "users.csv: no users: the file has only the header line");
}

static void test_field_count(void **state)
{
	(void)state;
	refused(HDR "a@example.org,a,p\nb@example.org,b,p,extra\n",
	        "users.csv:3: line 3 has 4 fields, the header has 3");
	refused(HDR "a@example.org,a\n", "users.csv:2: line 2 has 2 fields, the header has 3");
	/* a blank line in the middle */
	struct csv_users u;
	struct err e;
	assert_int_equal(parse(HDR "a@example.org,a,p\n\nb@example.org,b,p\n", &u, &e), -1);
	assert_string_equal(e.what, "users.csv:3: line 3 has 1 field, the header has 3");
	assert_string_equal(e.hint, "line 3 is blank; remove it");
	/* a quoted line break moves the line numbers on */
	refused(HDR "a@example.org,a,\"p\n\nq\"\nb@example.org,b\n",
	        "users.csv:5: line 5 has 2 fields, the header has 3");
}

/* ---- values ---- */

static void test_bad_email(void **state)
{
	(void)state;
	refused(HDR ",a,p\n", "users.csv:2:1 (EmailAddress): empty email address");
	refused(HDR "x,a,p\n", "users.csv:2:1 (EmailAddress): not an email address: \"x\" (no @)");
	refused(HDR "a@,a,p\n",
	        "users.csv:2:1 (EmailAddress): not an email address: \"a@\" (nothing after the @)");
	refused(
	    HDR "@b,a,p\n",
	    "users.csv:2:1 (EmailAddress): not an email address: \"@b\" (nothing before the @)");
	refused(HDR "a b@c,a,p\n", "users.csv:2:1 (EmailAddress): not an email address: \"a b@c\" "
	                           "(it contains a space)");
	refused(HDR " a@example.org,a,p\n", "users.csv:2:1 (EmailAddress): not an email address: "
	                                    "\" a@example.org\" (it contains a space)");
	refused(HDR "a@b@c,a,p\n",
	        "users.csv:2:1 (EmailAddress): not an email address: \"a@b@c\" (more than one @)");
	refused(HDR "a@b..c,a,p\n", "users.csv:2:1 (EmailAddress): not an email address: "
	                            "\"a@b..c\" (the domain has an empty part)");
	refused(HDR "a@b.,a,p\n", "users.csv:2:1 (EmailAddress): not an email address: \"a@b.\" "
	                          "(the domain has an empty part)");
	refused(HDR "a@-b.c,a,p\n", "users.csv:2:1 (EmailAddress): not an email address: "
	                            "\"a@-b.c\" (a domain part starts or ends with -)");
	refused(HDR "a@b_c.d,a,p\n", "users.csv:2:1 (EmailAddress): not an email address: "
	                             "\"a@b_c.d\" (the domain contains a character not allowed in "
	                             "a host name)");
	refused(HDR "<a@b.c>,a,p\n", "users.csv:2:1 (EmailAddress): not an email address: "
	                             "\"<a@b.c>\" (it contains a character not allowed in an "
	                             "address)");
	/* single-label domains are fine (test servers, intranets) */
	struct csv_users u;
	struct err e;
	assert_int_equal(parse(HDR "a@localhost,a,p\nb.c+d@x-y.example,b,p\n", &u, &e), 0);
	csv_users_release(&u);
}

static void test_bad_logins(void **state)
{
	(void)state;
	refused(HDR "a@example.org,,p\n", "users.csv:2:2 (UserName): empty user name");
	refused("UserName,Password,EmailAddress\n\"\",p,a@example.org\n",
	        "users.csv:2:1 (UserName): empty user name");
	refused(HDR "a@example.org, alice,p\n",
	        "users.csv:2:2 (UserName): user name \" alice\" starts or ends with a space");
	refused(HDR "a@example.org,\"al\nice\",p\n",
	        "users.csv:2:2 (UserName): user name \"al?ice\" contains a control character");
	refused(HDR "a@example.org,a,\n", "users.csv:2:3 (Password): empty password");
	refused("EmailAddress,UserName,Password,TargetUserName\na@example.org,a,p,a.new\n",
	        "users.csv:2:4 (TargetUserName): TargetUserName is set but there is no "
	        "TargetPassword column");
	refused("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n"
	        "a@example.org,a,p,a.new,\n",
	        "users.csv:2:5 (TargetPassword): empty target password (TargetUserName is set)");
	refused("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n"
	        "a@example.org,a,p,a.new ,tp\n",
	        "users.csv:2:4 (TargetUserName): target user name \"a.new \" starts or ends with a "
	        "space");
}

static void test_duplicate_targets(void **state)
{
	(void)state;
	struct csv_users u;
	struct err e;
	assert_int_equal(parse(HDR "alice@example.org,a,p\nbob@example.org,b,p\n"
	                           "ALICE@Example.org,a2,p\n",
	                       &u, &e),
	                 -1);
	assert_string_equal(e.what, "users.csv:4:1 (EmailAddress): duplicate target mailbox "
	                            "\"ALICE@Example.org\" (line 2 has it too)");
	assert_string_equal(e.hint, "each target mailbox may appear only once in a batch");
	/* the earliest second occurrence is the one named */
	refused(HDR "c@x.org,c,p\nb@x.org,b,p\na@x.org,a,p\nb@x.org,b,p\nc@x.org,c,p\n"
	            "a@x.org,a,p\n",
	        "users.csv:5:1 (EmailAddress): duplicate target mailbox \"b@x.org\" (line 3 has it "
	        "too)");
	/* by target login */
	refused("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n"
	        "a@x.org,a,p,shared,t\nb@x.org,b,p,SHARED,t\n",
	        "users.csv:3:4 (TargetUserName): duplicate target user \"SHARED\" (line 2 has it "
	        "too)");
	/* a target login that is another row's address */
	refused("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n"
	        "a@x.org,a,p,,\nb@x.org,b,p,a@x.org,t\n",
	        "users.csv:3:4 (TargetUserName): duplicate target user \"a@x.org\" (line 2 has it "
	        "too)");
	refused("EmailAddress,UserName,Password,TargetUserName,TargetPassword\n"
	        "b@x.org,b,p,a@x.org,t\na@x.org,a,p,,\n",
	        "users.csv:3:1 (EmailAddress): duplicate target user \"a@x.org\" (line 2 has it "
	        "too)");
	/* the same source user into two mailboxes is allowed */
	assert_int_equal(parse(HDR "a@x.org,same,p\nb@x.org,same,p\n", &u, &e), 0);
	csv_users_release(&u);
}

/* ---- RFC 4180 and bytes ---- */

static void test_quote_errors(void **state)
{
	(void)state;
	struct csv_users u;
	struct err e;
	assert_int_equal(parse(HDR "a@example.org,a,p\nb@example.org,b,\"hunter2\n", &u, &e), -1);
	assert_string_equal(e.what, "users.csv:3:3 (Password): unterminated quoted field (it "
	                            "starts on line 3 and never ends)");
	assert_null(strstr(e.what, "hunter2"));
	refused(HDR "a@example.org,\"a\nb\nc,p\n\n\n",
	        "users.csv:2:2 (UserName): unterminated quoted field (it starts on line 2 and "
	        "never ends)");
	refused(HDR "a@example.org,a,hun\"ter2\n",
	        "users.csv:2:3 (Password): quote inside an unquoted field");
	refused(HDR "a@example.org,a,\"hun\"ter2\n",
	        "users.csv:2:3 (Password): text after the closing quote");
	refused(HDR "a@example.org,\"a\" ,p\n",
	        "users.csv:2:2 (UserName): text after the closing quote");
	refused(HDR "a@example.org,a,\"p\"\rx\n",
	        "users.csv:2:3 (Password): text after the closing quote");
	refused(HDR "a@example.org,a,p\rb@example.org,b,p\n",
	        "users.csv:2:3 (Password): carriage return in the middle of a line");
	/* in the header, before the names are known */
	refused("EmailAddress,User\"Name,Password\n",
	        "users.csv:1:2: quote inside an unquoted field");
}

static void test_bytes(void **state)
{
	(void)state;
	refused(HDR "a@example.org,a,p\xff\n",
	        "users.csv:2:3 (Password): invalid UTF-8 (byte offset 48 in the file)");
	refused(HDR "a@example.org,\xc0\x80,p\n", /* overlong NUL */
	        "users.csv:2:2 (UserName): invalid UTF-8 (byte offset 45 in the file)");
	refused(HDR "a@example.org,\xed\xa0\x80,p\n", /* surrogate */
	        "users.csv:2:2 (UserName): invalid UTF-8 (byte offset 45 in the file)");
	refused(HDR "a@example.org,a,\xf4\x90\x80\x80\n", /* past U+10FFFF */
	        "users.csv:2:3 (Password): invalid UTF-8 (byte offset 47 in the file)");
	refused(HDR "a@example.org,a,\"p\n\xe3\x81\"\n", /* cut short, on line 3 */
	        "users.csv:3:3 (Password): invalid UTF-8 (byte offset 50 in the file)");
	refused(HDR "a@example.org,a,p\xe3\x81", /* cut short by the end of the file */
	        "users.csv:2:3 (Password): invalid UTF-8 (byte offset 48 in the file)");
	refused("\xff\xfe"
	        "E\0m\0",
	        "users.csv:1:1: invalid UTF-8 (byte offset 0 in the file)");
	static const char nul[] = HDR "a@example.org,a,p\0q\n";
	refused_n(nul, sizeof(nul) - 1, &strict,
	          "users.csv:2:3 (Password): NUL byte (byte offset 48 in the file)");
}

static void test_limits(void **state)
{
	(void)state;
	struct csv_users u;
	struct err e;
	/* a field of exactly 64 KiB is fine, one byte more is not */
	size_t cap = CSV_MAX_FIELD;
	char *big = malloc(cap + 200);
	size_t n = (size_t)sprintf(big, HDR "a@example.org,a,\"");
	memset(big + n, 'x', cap);
	strcpy(big + n + cap, "\"\n");
	assert_int_equal(parse(big, &u, &e), 0);
	assert_int_equal(strlen(u.items[0].password), cap);
	csv_users_release(&u);
	strcpy(big + n + cap, "x\"\n");
	refused(big, "users.csv:2:3 (Password): field is longer than 64 KiB (the limit)");
	/* "" counts as one byte of the field */
	memcpy(big + n + cap, "\"\"\"\n", 5);
	refused(big, "users.csv:2:3 (Password): field is longer than 64 KiB (the limit)");
	free(big);

	/* too many fields on one line */
	char *wide = malloc(sizeof(HDR) + 2 * CSV_MAX_FIELDS + 10);
	n = (size_t)sprintf(wide, HDR);
	for (unsigned i = 0; i <= CSV_MAX_FIELDS; i++)
		wide[n++] = ',';
	wide[n] = '\0';
	refused(wide, "users.csv:2: more than 1024 fields on line 2");
	free(wide);

	/* the file size, checked before any byte is read */
	uint8_t *huge = calloc(1, (size_t)CSV_MAX_FILE + 1);
	refused_n((const char *)huge, (size_t)CSV_MAX_FILE + 1, &strict,
	          "users.csv: the file is larger than 64 MiB (the limit)");
	free(huge);
}

static void test_max_users(void **state)
{
	(void)state;
	size_t rows = CSV_MAX_USERS + 1, cap = 64 + rows * 24;
	char *csv = malloc(cap);
	size_t n = (size_t)sprintf(csv, HDR);
	for (size_t i = 0; i < rows; i++)
		n += (size_t)sprintf(csv + n, "u%zu@x.org,u,p\n", i);
	refused_n(csv, n, &strict, "users.csv:1000002: more than 1000000 users (the limit)");
	/* exactly the limit is accepted */
	n -= strlen("u1000000@x.org,u,p\n");
	struct csv_users u;
	struct err e;
	assert_int_equal(parse_n(csv, n, &strict, &u, &e), 0);
	assert_int_equal(u.count, CSV_MAX_USERS);
	csv_users_release(&u);
	free(csv);
}

/* The low-level splitter on its own. */
static void test_reader(void **state)
{
	(void)state;
	const char *csv = "\xef\xbb\xbf"
	                  "a,\"b,c\",\n"
	                  "\"x\"\"y\"\r\n"
	                  "\n"
	                  "last";
	struct csv_reader r;
	struct csv_record rec = {0};
	struct err e;
	size_t len;
	csv_reader_init(&r, "t.csv", (const uint8_t *)csv, strlen(csv));
	assert_int_equal(csv_reader_next(&r, &rec, &e), 1);
	assert_int_equal(rec.line, 1);
	assert_int_equal(rec.count, 3);
	assert_string_equal(csv_record_field(&rec, 0, &len), "a");
	assert_string_equal(csv_record_field(&rec, 1, &len), "b,c");
	assert_int_equal(len, 3);
	assert_string_equal(csv_record_field(&rec, 2, &len), "");
	assert_int_equal(len, 0);
	assert_int_equal(csv_reader_next(&r, &rec, &e), 1);
	assert_int_equal(rec.line, 2);
	assert_int_equal(rec.count, 1);
	assert_string_equal(csv_record_field(&rec, 0, NULL), "x\"y");
	assert_int_equal(csv_reader_next(&r, &rec, &e), 1);
	assert_int_equal(rec.line, 3);
	assert_int_equal(rec.count, 1);
	assert_string_equal(csv_record_field(&rec, 0, NULL), "");
	assert_int_equal(csv_reader_next(&r, &rec, &e), 1);
	assert_int_equal(rec.line, 4);
	assert_string_equal(csv_record_field(&rec, 0, NULL), "last");
	assert_int_equal(csv_reader_next(&r, &rec, &e), 0);
	assert_int_equal(csv_reader_next(&r, &rec, &e), 0);
	csv_record_release(&rec);
	assert_null(rec.data);
}

/* tests/integration/data/csv/README.md promises each bad file's error:
 * hold the files to it, so the integration suite can rely on the table. */
static void test_integration_suite(void **state)
{
	(void)state;
	char dir[1024], path[1200], line[1024];
	snprintf(dir, sizeof(dir), "%s", __FILE__);
	char *slash = strrchr(dir, '/');
	if (!slash)
		skip();
	strcpy(slash, "/../integration/data/csv");
	snprintf(path, sizeof(path), "%s/README.md", dir);
	FILE *f = fopen(path, "r");
	if (!f)
		skip();
	int checked = 0;
	while (fgets(line, sizeof(line), f)) {
		char name[128];
		int used = 0;
		if (sscanf(line, "| %127[a-z0-9_].csv |%n", name, &used) != 1 || !used)
			continue;
		char *want = strchr(line + 2, '`'), *end = want ? strchr(want + 1, '`') : NULL;
		assert_non_null(end);
		*end = '\0';
		snprintf(path, sizeof(path), "%s/%s.csv", dir, name);
		struct csv_users u;
		struct err e;
		err_clear(&e);
		assert_int_equal(csv_read_users(path, &strict, &u, &e), -1);
		if (!strstr(e.what, want + 1))
			fail_msg("%s: got \"%s\", README says \"%s\"", name, e.what, want + 1);
		/* no harness password is ever repeated */
		assert_null(strstr(e.what, "-pw-"));
		checked++;
	}
	fclose(f);
	assert_int_equal(checked, 9);
	snprintf(path, sizeof(path), "%s/good_quoted.csv", dir);
	struct csv_users u;
	struct err e;
	assert_int_equal(csv_read_users(path, &strict, &u, &e), 0);
	assert_int_equal(u.count, 3);
	assert_string_equal(u.items[2].password, "Frank-pw-e5b2f3 q\"");
	assert_string_equal(u.items[2].target_password, "Frank-pw-e5b2f3 q\"");
	csv_users_release(&u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_basic),
	    cmocka_unit_test(test_bom_crlf_no_final_newline),
	    cmocka_unit_test(test_trailing_blank_lines),
	    cmocka_unit_test(test_quoted_passwords_byte_exact),
	    cmocka_unit_test(test_japanese),
	    cmocka_unit_test(test_optional_columns_any_order),
	    cmocka_unit_test(test_admin_rules),
	    cmocka_unit_test(test_read_file),
	    cmocka_unit_test(test_every_prefix),
	    cmocka_unit_test(test_header_errors),
	    cmocka_unit_test(test_no_users),
	    cmocka_unit_test(test_field_count),
	    cmocka_unit_test(test_bad_email),
	    cmocka_unit_test(test_bad_logins),
	    cmocka_unit_test(test_duplicate_targets),
	    cmocka_unit_test(test_quote_errors),
	    cmocka_unit_test(test_bytes),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_max_users),
	    cmocka_unit_test(test_reader),
	    cmocka_unit_test(test_integration_suite),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
