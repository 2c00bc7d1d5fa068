/* test_report.c - the batch report writers on a fixed report whose fields
 * hold commas, quotes, newlines, Japanese and HTML, and report_mail's
 * checks that need no server.
 *
 * test_mail_env sends a real mail only when $IMAPMIG_SMTP_URL is set; it
 * is driven by tests/integration/test_report_mail.py, which starts an SMTP
 * server and reads what arrives:
 *   IMAPMIG_SMTP_URL        smtp://user@host:port or smtps://...
 *   IMAPMIG_SMTP_PASSWORD   SMTP password (optional)
 *   IMAPMIG_SMTP_CA         CA file (optional)
 *   IMAPMIG_SMTP_TO         recipients, comma-separated
 *   IMAPMIG_SMTP_FROM       sender (default imapmig@example.org)
 *   IMAPMIG_SMTP_PLAINTEXT  set: allow smtp:// without STARTTLS
 *   IMAPMIG_SMTP_BATCH      a batch name instead of "b1" (the subject)
 *   IMAPMIG_SMTP_EXPECT_FAIL  an error kind name ("config", "transient"):
 *                          the mail must fail with that kind, the error
 *                          must name the host and never the password.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"
#include "util/mem.h"

#define T0 ((time_t)1796054645) /* 2026-11-30T16:04:05Z */
#define T1 ((time_t)1796058245) /* 2026-11-30T17:04:05Z */
#define T2 ((time_t)1796140800) /* 2026-12-01T16:00:00Z */

static const struct report_user users[] = {
    {
        .email = "alice@example.org",
        .source_user = "alice",
        .status = "Synced",
        .items_synced = 1234,
        .bytes = 5u << 20,
        .folders = 7,
        .started = T0,
        .last_synced = T1,
        .duration_s = 3599.6,
    },
    {
        .email = "carol@example.org",
        .source_user = "carol, \"the boss\"",
        .status = "Failed",
        .error = "source imap.old.example (user carol): login failed: server said "
                 "\"[AUTHENTICATIONFAILED] Authentication failed.\"\nsecond line",
    },
    {
        .email = "山田@example.jp",
        .source_user = "yamada",
        .status = "Completed",
        .items_synced = 10,
        .items_skipped = 2,
        .items_failed = 1,
        .bytes = 999,
        .folders = 3,
        .started = T0,
        .last_synced = T1,
        .completed = T2,
        .duration_s = 12,
    },
    {
        .email = "dave&co@example.org",
        .source_user = "<script>alert('x')</script>",
        .status = "Stopped",
        .error = "=HYPERLINK(\"http://evil\")",
    },
};

static const struct report_item items[] = {
    {
        .user = "山田@example.jp",
        .folder = "Sent, Items",
        .uid = 42,
        .date = NULL,
        .subject = "Re: 会議 <b>&amp;</b>, \"quoted\"",
        .size = 40u << 20,
        .reason = "over --max-message-size (35 MB)",
    },
    {
        .user = "山田@example.jp",
        .folder = "INBOX",
        .uid = 7,
        .date = "30-Nov-2026 16:04:05 +0100",
        .subject = "-- weekly",
        .size = 12,
        .reason = "target said [TOOBIG]",
    },
};

static const struct report fixed = {
    .batch = "b1",
    .status = "Synced",
    .source = "imaps://imap.old.example",
    .target = "imaps://imap.new.example",
    .created = T0,
    .generated = T2,
    .users = users,
    .n_users = sizeof(users) / sizeof(users[0]),
    .items = items,
    .n_items = sizeof(items) / sizeof(items[0]),
};

static void test_csv_exact(void **state)
{
	(void)state;
	struct buf b = BUF_INIT(0);
	struct err e;
	err_clear(&e);
	assert_int_equal(report_write_csv(&fixed, &b, &e), 0);
	assert_string_equal(
	    buf_cstr(&b),
	    "EmailAddress,SourceUser,Status,ItemsSynced,ItemsSkipped,ItemsFailed,Bytes,Folders,"
	    "Started,LastSynced,Completed,DurationSeconds,Error\r\n"
	    "alice@example.org,alice,Synced,1234,0,0,5242880,7,2026-11-30T16:04:05Z,"
	    "2026-11-30T17:04:05Z,,3600,\r\n"
	    "carol@example.org,\"carol, \"\"the boss\"\"\",Failed,0,0,0,0,0,,,,0,"
	    "\"source imap.old.example (user carol): login failed: server said "
	    "\"\"[AUTHENTICATIONFAILED] Authentication failed.\"\"\nsecond line\"\r\n"
	    "山田@example.jp,yamada,Completed,10,2,1,999,3,2026-11-30T16:04:05Z,"
	    "2026-11-30T17:04:05Z,2026-12-01T16:00:00Z,12,\r\n"
	    "dave&co@example.org,<script>alert('x')</script>,Stopped,0,0,0,0,0,,,,0,"
	    "\"'=HYPERLINK(\"\"http://evil\"\")\"\r\n"
	    "\r\n"
	    "User,Folder,UID,Date,Subject,Size,Reason\r\n"
	    "山田@example.jp,\"Sent, Items\",42,,\"Re: 会議 <b>&amp;</b>, \"\"quoted\"\"\","
	    "41943040,over --max-message-size (35 MB)\r\n"
	    "山田@example.jp,INBOX,7,30-Nov-2026 16:04:05 +0100,\"'-- weekly\",12,"
	    "target said [TOOBIG]\r\n");
	buf_release(&b);
}

static void test_csv_empty(void **state)
{
	(void)state;
	struct report r = {.batch = "empty", .status = "Created"};
	struct buf b = BUF_INIT(0);
	struct err e;
	assert_int_equal(report_write_csv(&r, &b, &e), 0);
	assert_string_equal(buf_cstr(&b),
	                    "EmailAddress,SourceUser,Status,ItemsSynced,ItemsSkipped,ItemsFailed,"
	                    "Bytes,Folders,Started,LastSynced,Completed,DurationSeconds,Error\r\n"
	                    "\r\nUser,Folder,UID,Date,Subject,Size,Reason\r\n");
	buf_release(&b);
}

static void test_json(void **state)
{
	(void)state;
	struct buf b = BUF_INIT(0);
	struct err e;
	assert_int_equal(report_write_json(&fixed, &b, &e), 0);
	const char *j = buf_cstr(&b);
	static const char *const want[] = {
	    "{\"batch\":{\"name\":\"b1\",\"status\":\"Synced\"",
	    "\"source\":\"imaps://imap.old.example\"",
	    "\"created\":\"2026-11-30T16:04:05Z\"",
	    "\"generated\":\"2026-12-01T16:00:00Z\"",
	    "\"users\":4,\"failed_users\":1",
	    "\"by_status\":{\"Synced\":1,\"Completed\":1,\"Failed\":1,\"Stopped\":1}",
	    "\"items_synced\":1244,\"items_skipped\":2,\"items_failed\":1",
	    "\"bytes\":5243879,\"folders\":10",
	    "\"source_user\":\"carol, \\\"the boss\\\"\"",
	    "Authentication failed.\\\"\\u000asecond line\"",
	    "\"email\":\"山田@example.jp\"",
	    "\"started\":null,\"last_synced\":null,\"completed\":null,\"duration_s\":0.0,"
	    "\"error\":\"source",
	    "\"completed\":\"2026-12-01T16:00:00Z\",\"duration_s\":12.0,\"error\":null}",
	    "\"folder\":\"Sent, Items\",\"uid\":42,\"date\":null,"
	    "\"subject\":\"Re: 会議 <b>&amp;</b>, \\\"quoted\\\"\",\"size\":41943040",
	    "\"date\":\"30-Nov-2026 16:04:05 +0100\"",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (!strstr(j, want[i]))
			fail_msg("JSON lacks %s\n%s", want[i], j);
	}
	/* one object, nothing after it but a newline; no raw control bytes */
	assert_int_equal(j[0], '{');
	assert_string_equal(j + b.len - 3, "]}\n");
	for (size_t i = 0; i < b.len; i++)
		assert_true(j[i] == '\n' || (unsigned char)j[i] >= 0x20);
	buf_release(&b);
}

static void test_html(void **state)
{
	(void)state;
	struct buf b = BUF_INIT(0);
	struct err e;
	assert_int_equal(report_write_html(&fixed, &b, &e), 0);
	const char *h = buf_cstr(&b);
	assert_non_null(strstr(h, "<!DOCTYPE html>"));
	assert_non_null(strstr(h, "<title>imapmig batch b1: Synced</title>"));
	assert_null(strstr(h, "<script"));
	assert_null(strstr(h, "http://evil\""));
	assert_non_null(strstr(h, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
	assert_non_null(strstr(h, "dave&amp;co@example.org"));
	assert_non_null(strstr(h, "Re: 会議 &lt;b&gt;&amp;amp;&lt;/b&gt;, &quot;quoted&quot;"));
	assert_non_null(strstr(h, "山田@example.jp"));
	assert_non_null(strstr(h, "carol, &quot;the boss&quot;"));
	/* badges by status, failed user's error up front */
	assert_non_null(strstr(h, "<span class=\"badge ok\">Synced</span>"));
	assert_non_null(strstr(h, "<span class=\"badge ok\">Completed</span>"));
	assert_non_null(strstr(h, "<span class=\"badge bad\">Failed</span>"));
	assert_non_null(strstr(h, "<span class=\"badge idle\">Stopped</span>"));
	const char *fail_box = strstr(h, "<section class=\"failures\">");
	assert_non_null(fail_box);
	assert_non_null(strstr(fail_box, "carol@example.org"));
	assert_true(fail_box < strstr(h, "<h2>Users</h2>"));
	assert_non_null(strstr(h, "<h2>Skipped items (2)</h2>"));
	assert_non_null(strstr(h, "1,234"));  /* counts with separators */
	assert_non_null(strstr(h, "5.0 MB")); /* total bytes, readable */
	assert_non_null(strstr(h, "40 MB"));  /* a skipped item's size */
	assert_non_null(strstr(h, "2026-12-01 16:00 UTC"));
	/* self-contained: no external resources */
	assert_null(strstr(h, "src="));
	assert_null(strstr(h, "href="));
	assert_null(strstr(h, "@import"));
	assert_string_equal(h + b.len - 8, "</html>\n");
	buf_release(&b);
}

static void test_text(void **state)
{
	(void)state;
	struct buf b = BUF_INIT(0);
	struct err e;
	assert_int_equal(report_write_text(&fixed, &b, &e), 0);
	assert_string_equal(
	    buf_cstr(&b),
	    "Batch b1: Synced\n"
	    "4 users: 1 Synced, 1 Completed, 1 Failed, 1 Stopped\n"
	    "Items: 1,244 synced, 2 skipped, 1 failed; 5.0 MB copied\n"
	    "Elapsed: 23h 55m (sync time 1h 00m, all users)\n"
	    "Source: imaps://imap.old.example\n"
	    "Target: imaps://imap.new.example\n"
	    "Failed:\n"
	    "  carol@example.org: source imap.old.example (user carol): login failed: server "
	    "said \"[AUTHENTICATIONFAILED] Authentication failed.\" second line\n"
	    "Other errors:\n"
	    "  dave&co@example.org (Stopped): =HYPERLINK(\"http://evil\")\n"
	    "Skipped items: 2 (listed in the attached report)\n"
	    "Generated 2026-12-01T16:00:00Z\n");
	buf_release(&b);
}

static void test_text_twenty_users(void **state)
{
	(void)state;
	struct report_user u[20];
	char names[20][32];
	memset(u, 0, sizeof(u));
	for (int i = 0; i < 20; i++) {
		snprintf(names[i], sizeof(names[i]), "user%02d@example.org", i);
		u[i].email = names[i];
		u[i].source_user = names[i];
		u[i].status = "Synced";
		u[i].items_synced = 100;
		u[i].bytes = 1000;
	}
	u[3].status = "Failed";
	u[3].items_synced = 0;
	u[3].bytes = 0;
	u[3].error = "source imap.old.example (user user03): login failed";
	struct report r = {.batch = "b1", .status = "Synced", .users = u, .n_users = 20};
	struct buf b = BUF_INIT(0);
	struct err e;
	assert_int_equal(report_write_text(&r, &b, &e), 0);
	assert_string_equal(buf_cstr(&b),
	                    "Batch b1: Synced\n"
	                    "20 users: 19 Synced, 1 Failed\n"
	                    "Items: 1,900 synced, 0 skipped, 0 failed; 19 KB copied\n"
	                    "Failed:\n"
	                    "  user03@example.org: source imap.old.example (user user03): login "
	                    "failed\n");
	buf_release(&b);
}

/* A buffer cap that is too small: -1, ERR_INTERNAL, buffer as it was. */
static void test_cap(void **state)
{
	(void)state;
	int (*const writers[])(const struct report *, struct buf *, struct err *) = {
	    report_write_csv, report_write_json, report_write_html, report_write_text};
	for (size_t i = 0; i < 4; i++) {
		struct buf b;
		struct err e;
		buf_init(&b, 200);
		assert_int_equal(buf_puts(&b, "keep"), 0);
		err_clear(&e);
		assert_int_equal(writers[i](&fixed, &b, &e), -1);
		assert_int_equal(e.kind, ERR_INTERNAL);
		assert_string_equal(buf_cstr(&b), "keep");
		buf_release(&b);
	}
}

static const char *const one_to[] = {"admin@example.org"};

static void test_mail_config_errors(void **state)
{
	(void)state;
	struct err e;
	struct mail_opts o = {
	    .smtp_url = "smtp://reports:Secret-pw-1@mail.example.org:587",
	    .from = "imapmig@example.org",
	    .to = one_to,
	    .n_to = 1,
	    .timeout_ms = 2000,
	};
	char line[2048];

	err_clear(&e);
	assert_int_equal(report_mail(&fixed, &o, &e), -1);
	assert_int_equal(e.kind, ERR_CONFIG);
	assert_null(strstr(err_format(&e, line, sizeof(line)), "Secret-pw-1"));
	assert_non_null(strstr(e.what, "password"));

	o.smtp_url = "http://mail.example.org";
	assert_int_equal(report_mail(&fixed, &o, &e), -1);
	assert_int_equal(e.kind, ERR_CONFIG);
	assert_non_null(strstr(e.what, "not an SMTP URL"));

	o.smtp_url = "smtp://mail.example.org:99999";
	assert_int_equal(report_mail(&fixed, &o, &e), -1);
	assert_non_null(strstr(e.what, "bad SMTP host or port"));

	o.smtp_url = "smtp://reports%40example.org@mail.example.org:587";
	assert_int_equal(report_mail(&fixed, &o, &e), -1);
	assert_int_equal(e.kind, ERR_CONFIG);
	assert_non_null(strstr(e.what, "names user reports@example.org but no SMTP password"));

	o.smtp_url = "smtp://mail.example.org:587";
	o.password = "Secret-pw-1";
	assert_int_equal(report_mail(&fixed, &o, &e), -1);
	assert_non_null(strstr(e.what, "URL names no user"));
	o.password = NULL;

	o.from = "Bad Sender <x@y>";
	assert_int_equal(report_mail(&fixed, &o, &e), -1);
	assert_non_null(strstr(e.what, "is not a mail address"));
	o.from = "imapmig@example.org";

	static const char *const evil_to[] = {"admin@example.org\r\nBcc: x@evil"};
	o.to = evil_to;
	assert_int_equal(report_mail(&fixed, &o, &e), -1);
	assert_non_null(strstr(e.what, "is not a mail address"));
	o.to = one_to;
	o.n_to = 0;
	assert_int_equal(report_mail(&fixed, &o, &e), -1);
	assert_non_null(strstr(e.what, "no recipient"));
}

/* Nothing listens on port 1: a connection problem, naming the server. */
static void test_mail_connect_refused(void **state)
{
	(void)state;
	struct err e;
	char line[2048];
	struct mail_opts o = {
	    .smtp_url = "smtp://reports@127.0.0.1:1",
	    .password = "Secret-pw-1",
	    .from = "imapmig@example.org",
	    .to = one_to,
	    .n_to = 1,
	    .timeout_ms = 5000,
	};
	err_clear(&e);
	assert_int_equal(report_mail(&fixed, &o, &e), -1);
	assert_int_equal(e.kind, ERR_TRANSIENT);
	err_format(&e, line, sizeof(line));
	assert_non_null(strstr(line, "127.0.0.1:1"));
	assert_non_null(strstr(line, "mailing the report"));
	assert_null(strstr(line, "Secret-pw-1"));
}

/* A real mail, when the integration test sets it up (see the top). */
static void test_mail_env(void **state)
{
	(void)state;
	const char *url = getenv("IMAPMIG_SMTP_URL");
	if (!url || !url[0])
		skip();
	const char *to_env = getenv("IMAPMIG_SMTP_TO");
	char *to_copy = xstrdup(to_env && to_env[0] ? to_env : "admin@example.org");
	const char *to[16];
	size_t n_to = 0;
	for (char *save = NULL, *p = strtok_r(to_copy, ",", &save); p && n_to < 16;
	     p = strtok_r(NULL, ",", &save))
		to[n_to++] = p;
	const char *from = getenv("IMAPMIG_SMTP_FROM");
	const char *password = getenv("IMAPMIG_SMTP_PASSWORD");
	struct mail_opts o = {
	    .smtp_url = url,
	    .password = password && password[0] ? password : NULL,
	    .from = from && from[0] ? from : "imapmig@example.org",
	    .to = to,
	    .n_to = n_to,
	    .ca_file = getenv("IMAPMIG_SMTP_CA"),
	    .timeout_ms = 20000,
	    .allow_plaintext = getenv("IMAPMIG_SMTP_PLAINTEXT") != NULL,
	};
	struct report r = fixed;
	const char *batch = getenv("IMAPMIG_SMTP_BATCH");
	if (batch && batch[0])
		r.batch = batch;
	struct err e;
	char line[2048];
	err_clear(&e);
	int rc = report_mail(&r, &o, &e);
	free(to_copy);
	const char *expect = getenv("IMAPMIG_SMTP_EXPECT_FAIL");
	if (rc < 0)
		printf("mail error [%s]: %s\n", err_kind_name(e.kind),
		       err_format(&e, line, sizeof(line)));
	else
		printf("mail sent\n");
	fflush(stdout);
	if (expect && expect[0]) {
		assert_int_equal(rc, -1);
		assert_string_equal(err_kind_name(e.kind), expect);
		assert_true(e.host[0] != '\0');
		assert_non_null(strstr(line, e.host));
		if (o.password)
			assert_null(strstr(line, o.password));
	} else {
		assert_int_equal(rc, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_csv_exact),
	    cmocka_unit_test(test_csv_empty),
	    cmocka_unit_test(test_json),
	    cmocka_unit_test(test_html),
	    cmocka_unit_test(test_text),
	    cmocka_unit_test(test_text_twenty_users),
	    cmocka_unit_test(test_cap),
	    cmocka_unit_test(test_mail_config_errors),
	    cmocka_unit_test(test_mail_connect_refused),
	    cmocka_unit_test(test_mail_env),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
