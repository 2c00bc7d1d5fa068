/* cmd_verify.c - imapmig verify SOURCE TARGET */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "batch/batch.h"
#include "cli/cli.h"
#include "cli/endpoint.h"
#include "store/state.h"
#include "engine/verify.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/secret.h"
#include "util/url.h"

static const char verify_usage[] =
    "usage: imapmig verify [options] SOURCE TARGET\n"
    "       imapmig verify [--deep] [--json] [--state PATH] --batch NAME\n"
    "\n"
    "Compare the mailbox SOURCE with TARGET directly (no state database): every\n"
    "folder through the same name mapping and filters as 'imapmig sync', every\n"
    "message matched by its header fingerprint and size (or, with --deep, by the\n"
    "SHA-256 of the whole message), then flags and INTERNALDATE.  Lists missing,\n"
    "extra and mismatched messages and ends with a summary line.  With --batch,\n"
    "every user of the batch, connected and filtered as the batch does.\n"
    "\n"
    "Passwords (never on the command line):\n"
    "  --source-password-file F   else $IMAPMIG_SOURCE_PASSWORD, else a prompt\n"
    "  --target-password-file F   else $IMAPMIG_TARGET_PASSWORD, else a prompt\n"
    "  --source-admin USER        log in as this admin acting for the source user\n"
    "  --target-admin USER        (the password is then the admin's)\n"
    "  --admin-style STYLE        authzid (default) or master (LOGIN user*admin)\n"
    "Connection:\n"
    "  --ca-file F                trust this CA (PEM) as well as the system's\n"
    "  --resolve HOST:ADDR        connect to ADDR for HOST (repeatable)\n"
    "  --allow-plaintext          accept imap:// servers that offer no STARTTLS\n"
    "  --insecure                 do not verify certificates (dangerous)\n"
    "  --timeout SECONDS          network timeout (default 60)\n"
    "What to compare (use the options the copy used):\n"
    "  --include GLOB / --exclude GLOB   folder filters (repeatable); excluded\n"
    "                             folders are reported as skipped\n"
    "  --folder-map SRC=DST       folder SRC (and below) is at DST (repeatable)\n"
    "  --max-message-size SIZE    larger source messages not on the target are\n"
    "                             reported as skipped, not missing\n"
    "  --deep                     also download and hash every message (slow)\n"
    "Output:\n"
    "  --max-details N            list at most N differences per folder (default\n"
    "                             50; all are counted)\n"
    "  --verbose                  say how every folder compared\n"
    "  --debug                    also trace the IMAP protocol (passwords hidden)\n"
    "  --json                     one JSON event per line on stdout\n"
    "  --help\n"
    "\n"
    "Exit status: 0 identical; 1 differences found (or a folder could not be\n"
    "compared); 2 bad usage; 3 could not connect or log in.\n";

enum {
	OPT_SRC_PWFILE = 256,
	OPT_TGT_PWFILE,
	OPT_SRC_ADMIN,
	OPT_TGT_ADMIN,
	OPT_ADMIN_STYLE,
	OPT_CA_FILE,
	OPT_RESOLVE,
	OPT_ALLOW_PLAIN,
	OPT_INSECURE,
	OPT_TIMEOUT,
	OPT_INCLUDE,
	OPT_EXCLUDE,
	OPT_FOLDER_MAP,
	OPT_MAX_SIZE,
	OPT_DEEP,
	OPT_MAX_DETAILS,
	OPT_STATE,
	OPT_BATCH,
	OPT_VERBOSE,
	OPT_DEBUG,
	OPT_JSON,
	OPT_HELP,
};

static const struct option verify_options[] = {
    {"source-password-file", required_argument, NULL, OPT_SRC_PWFILE},
    {"target-password-file", required_argument, NULL, OPT_TGT_PWFILE},
    {"source-admin", required_argument, NULL, OPT_SRC_ADMIN},
    {"target-admin", required_argument, NULL, OPT_TGT_ADMIN},
    {"admin-style", required_argument, NULL, OPT_ADMIN_STYLE},
    {"ca-file", required_argument, NULL, OPT_CA_FILE},
    {"resolve", required_argument, NULL, OPT_RESOLVE},
    {"allow-plaintext", no_argument, NULL, OPT_ALLOW_PLAIN},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"include", required_argument, NULL, OPT_INCLUDE},
    {"exclude", required_argument, NULL, OPT_EXCLUDE},
    {"folder-map", required_argument, NULL, OPT_FOLDER_MAP},
    {"max-message-size", required_argument, NULL, OPT_MAX_SIZE},
    {"deep", no_argument, NULL, OPT_DEEP},
    {"max-details", required_argument, NULL, OPT_MAX_DETAILS},
    {"state", required_argument, NULL, OPT_STATE},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"debug", no_argument, NULL, OPT_DEBUG},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

#define MAX_DETAILS_LIMIT 100000

/* ---------- output ---------- */

struct output {
	bool json, verbose;
	struct buf line;
};

static const char *event_name(enum verify_event_type t)
{
	switch (t) {
	case VERIFY_EV_CONNECTED:
		return "connected";
	case VERIFY_EV_FOLDER:
		return "folder";
	case VERIFY_EV_MISSING:
		return "missing";
	case VERIFY_EV_EXTRA:
		return "extra";
	case VERIFY_EV_MISMATCH:
		return "mismatch";
	case VERIFY_EV_FOLDER_MISSING:
		return "folder_missing";
	case VERIFY_EV_SKIPPED:
		return "skipped";
	case VERIFY_EV_NOTE:
		return "note";
	case VERIFY_EV_WARNING:
		return "warning";
	}
	return "event";
}

static void jstr(struct buf *b, const char *key, const char *val)
{
	if (!val)
		return;
	buf_appendf(b, ",\"%s\":", key);
	json_string(b, val);
}

static void jnum(struct buf *b, const char *key, uint64_t n)
{
	buf_appendf(b, ",\"%s\":%llu", key, (unsigned long long)n);
}

static void json_event(struct output *out, const struct verify_event *ev)
{
	struct buf *b = &out->line;
	buf_reset(b);
	buf_appendf(b, "{\"event\":\"%s\"", event_name(ev->type));
	if (ev->side != SIDE_NONE)
		jstr(b, "side", side_name(ev->side));
	jstr(b, "folder", ev->folder);
	jstr(b, "target_folder", ev->target_folder);
	if (ev->uid)
		jnum(b, "uid", ev->uid);
	if (ev->target_uid)
		jnum(b, "target_uid", ev->target_uid);
	switch (ev->type) {
	case VERIFY_EV_MISSING:
	case VERIFY_EV_EXTRA:
		jstr(b, "date", ev->date);
		jstr(b, "subject", ev->subject);
		jnum(b, "size", ev->size);
		jstr(b, "flags", ev->flags);
		break;
	case VERIFY_EV_MISMATCH:
		jstr(b, "subject", ev->subject);
		jnum(b, "size", ev->size);
		buf_appendf(b, ",\"differs\":[%s%s%s]",
		            strstr(ev->text, "flags") ? "\"flags\"" : "",
		            strstr(ev->text, "flags") && strstr(ev->text, "date") ? "," : "",
		            strstr(ev->text, "date") ? "\"date\"" : "");
		jstr(b, "source_flags", ev->flags);
		jstr(b, "target_flags", ev->target_flags);
		jstr(b, "source_date", ev->date);
		jstr(b, "target_date", ev->target_date);
		break;
	case VERIFY_EV_SKIPPED:
		if (ev->uid) {
			jstr(b, "date", ev->date);
			jstr(b, "subject", ev->subject);
			jnum(b, "size", ev->size);
		} else {
			jnum(b, "messages", ev->count);
		}
		jstr(b, "reason", ev->text);
		break;
	case VERIFY_EV_FOLDER_MISSING:
		jnum(b, "messages", ev->count);
		jstr(b, "reason", ev->text);
		break;
	case VERIFY_EV_FOLDER:
		jnum(b, "source_messages", ev->count);
		jnum(b, "target_messages", ev->target_count);
		jnum(b, "missing", ev->missing);
		jnum(b, "extra", ev->extra);
		jnum(b, "mismatched", ev->mismatched);
		break;
	case VERIFY_EV_CONNECTED:
	case VERIFY_EV_NOTE:
	case VERIFY_EV_WARNING:
		jstr(b, "text", ev->text);
		break;
	}
	buf_puts(b, "}\n");
	fwrite(b->data, 1, b->len, stdout);
	fflush(stdout);
}

/* "(17-Jul-1996 02:44:25 -0700, "Subject", 1234 bytes)" */
static void describe(struct buf *b, const char *date, const char *subject, uint64_t size,
                     bool known)
{
	if (!known) {
		buf_puts(b, "(gone meanwhile)");
		return;
	}
	buf_appendf(b, "(%s, \"%s\", %llu bytes)", date ? date : "no date", subject ? subject : "",
	            (unsigned long long)size);
}

static void human_event(struct output *out, const struct verify_event *ev)
{
	struct buf *b = &out->line;
	FILE *f = stdout;
	bool known = ev->subject != NULL;
	buf_reset(b);
	switch (ev->type) {
	case VERIFY_EV_CONNECTED:
		if (!out->verbose)
			return;
		f = stderr;
		buf_appendf(b, "%s: logged in to %s", side_name(ev->side), ev->text);
		break;
	case VERIFY_EV_FOLDER:
		if (!out->verbose)
			return;
		f = stderr;
		buf_appendf(b,
		            "folder \"%s\" -> \"%s\": %llu source, %llu target messages: "
		            "%llu missing, %llu extra, %llu mismatched",
		            ev->folder, ev->target_folder, (unsigned long long)ev->count,
		            (unsigned long long)ev->target_count, (unsigned long long)ev->missing,
		            (unsigned long long)ev->extra, (unsigned long long)ev->mismatched);
		break;
	case VERIFY_EV_MISSING:
		buf_appendf(b, "missing: folder \"%s\" UID %u ", ev->folder, ev->uid);
		describe(b, ev->date, ev->subject, ev->size, known);
		buf_appendf(b, " is not in \"%s\" on the target", ev->target_folder);
		break;
	case VERIFY_EV_EXTRA:
		buf_appendf(b, "extra: folder \"%s\" target UID %u ", ev->target_folder,
		            ev->target_uid);
		describe(b, ev->date, ev->subject, ev->size, known);
		buf_appendf(b, " is not in \"%s\" on the source", ev->folder);
		break;
	case VERIFY_EV_MISMATCH:
		buf_appendf(b,
		            "mismatch: folder \"%s\" UID %u = target UID %u (\"%s\"):", ev->folder,
		            ev->uid, ev->target_uid, ev->subject ? ev->subject : "");
		if (strstr(ev->text, "flags"))
			buf_appendf(b, " flags (%s) on the source, (%s) on the target;",
			            ev->flags ? ev->flags : "?",
			            ev->target_flags ? ev->target_flags : "?");
		if (strstr(ev->text, "date"))
			buf_appendf(b, " date %s on the source, %s on the target;",
			            ev->date ? ev->date : "?",
			            ev->target_date ? ev->target_date : "?");
		if (b->len && b->data[b->len - 1] == ';')
			b->data[--b->len] = '\0';
		break;
	case VERIFY_EV_FOLDER_MISSING:
		buf_appendf(b, "folder missing: \"%s\" -> \"%s\" (%llu messages): %s", ev->folder,
		            ev->target_folder ? ev->target_folder : "-",
		            (unsigned long long)ev->count, ev->text);
		break;
	case VERIFY_EV_SKIPPED:
		if (ev->uid) {
			buf_appendf(b, "skipped: folder \"%s\" UID %u ", ev->folder, ev->uid);
			describe(b, ev->date, ev->subject, ev->size, known);
			buf_appendf(b, ": %s", ev->text);
		} else {
			buf_appendf(b, "skipped: folder \"%s\" (%llu messages): %s", ev->folder,
			            (unsigned long long)ev->count, ev->text);
		}
		break;
	case VERIFY_EV_NOTE:
		f = stderr;
		buf_appendf(b, "note: folder \"%s\": %s", ev->folder, ev->text);
		break;
	case VERIFY_EV_WARNING:
		f = stderr;
		buf_appendf(b, "warning: folder \"%s\" not compared: %s", ev->folder, ev->text);
		break;
	}
	buf_putc(b, '\n');
	fwrite(b->data, 1, b->len, f);
	fflush(f);
}

static void on_event(void *ctx, const struct verify_event *ev)
{
	struct output *out = ctx;
	if (out->json)
		json_event(out, ev);
	else
		human_event(out, ev);
}

static void summary(struct output *out, const struct verify_stats *s, double secs,
                    const struct err *fatal)
{
	if (out->json) {
		struct buf *b = &out->line;
		buf_reset(b);
		buf_puts(b, "{\"event\":\"verify_summary\"");
		jnum(b, "folders", s->folders);
		jnum(b, "messages", s->messages);
		jnum(b, "target_messages", s->target_messages);
		jnum(b, "missing", s->missing);
		jnum(b, "extra", s->extra);
		jnum(b, "mismatched", s->mismatched);
		jnum(b, "skipped", s->skipped);
		jnum(b, "folders_missing", s->folders_missing);
		jnum(b, "folders_skipped", s->folders_skipped);
		jnum(b, "folders_failed", s->folders_failed);
		buf_appendf(b, ",\"seconds\":%.3f,\"complete\":%s", secs, fatal ? "false" : "true");
		if (fatal) {
			char text[4096];
			jstr(b, "error", err_format(fatal, text, sizeof(text)));
		}
		buf_puts(b, "}\n");
		fwrite(b->data, 1, b->len, stdout);
		fflush(stdout);
		return;
	}
	printf("verify: %llu folders, %llu messages: %llu missing, %llu extra, %llu mismatched",
	       (unsigned long long)s->folders, (unsigned long long)s->messages,
	       (unsigned long long)s->missing, (unsigned long long)s->extra,
	       (unsigned long long)s->mismatched);
	if (s->folders_missing)
		printf(", %llu folder%s missing on the target",
		       (unsigned long long)s->folders_missing, s->folders_missing == 1 ? "" : "s");
	if (s->folders_failed)
		printf(", %llu folder%s NOT compared", (unsigned long long)s->folders_failed,
		       s->folders_failed == 1 ? "" : "s");
	printf(" (%llu skipped by policy)%s\n", (unsigned long long)s->skipped,
	       fatal ? " -- INCOMPLETE, stopped early" : "");
}

/* ---------- the command ---------- */

struct verify_args {
	const char *pwfile[2], *admin[2], *ca_file;
	struct strlist includes, excludes, maps, resolves;
	bool allow_plain, insecure, debug, deep;
	enum imap_admin_mode admin_mode;
	long timeout_s;
	uint64_t max_size;
	unsigned long max_details;
	const char *batch, *state;
};

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct verify_args *a, struct output *out)
{
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "hv", verify_options, NULL)) != -1) {
		unsigned long long n;
		switch (c) {
		case OPT_SRC_PWFILE:
			a->pwfile[0] = optarg;
			break;
		case OPT_TGT_PWFILE:
			a->pwfile[1] = optarg;
			break;
		case OPT_SRC_ADMIN:
			a->admin[0] = optarg;
			break;
		case OPT_TGT_ADMIN:
			a->admin[1] = optarg;
			break;
		case OPT_ADMIN_STYLE:
			if (!strcmp(optarg, "authzid"))
				a->admin_mode = IMAP_ADMIN_AUTHZID;
			else if (!strcmp(optarg, "master"))
				a->admin_mode = IMAP_ADMIN_MASTER_SEP;
			else {
				fprintf(stderr,
				        "imapmig: --admin-style must be authzid or master\n");
				return EXIT_USAGE;
			}
			break;
		case OPT_CA_FILE:
			a->ca_file = optarg;
			break;
		case OPT_RESOLVE:
			if (strlist_add(&a->resolves, "--resolve", optarg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_ALLOW_PLAIN:
			a->allow_plain = true;
			break;
		case OPT_INSECURE:
			a->insecure = true;
			break;
		case OPT_TIMEOUT:
			if (cli_number("--timeout", optarg, 1, 86400, &n) < 0)
				return EXIT_USAGE;
			a->timeout_s = (long)n;
			break;
		case OPT_INCLUDE:
			if (strlist_add(&a->includes, "--include", optarg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_EXCLUDE:
			if (strlist_add(&a->excludes, "--exclude", optarg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_FOLDER_MAP:
			if (strlist_add(&a->maps, "--folder-map", optarg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_MAX_SIZE:
			if (size_parse(optarg, &a->max_size) < 0 || a->max_size == 0) {
				fprintf(stderr,
				        "imapmig: --max-message-size '%s': expected a size "
				        "like 35M, 512K or 1G\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case OPT_DEEP:
			a->deep = true;
			break;
		case OPT_MAX_DETAILS:
			if (cli_number("--max-details", optarg, 1, MAX_DETAILS_LIMIT, &n) < 0)
				return EXIT_USAGE;
			a->max_details = (unsigned long)n;
			break;
		case OPT_STATE:
			a->state = optarg; /* only --batch reads it */
			break;
		case OPT_BATCH:
			a->batch = optarg;
			break;
		case 'v':
		case OPT_VERBOSE:
			out->verbose = true;
			break;
		case OPT_DEBUG:
			a->debug = out->verbose = true;
			break;
		case OPT_JSON:
			out->json = true;
			break;
		case 'h':
		case OPT_HELP:
			fputs(verify_usage, stdout);
			return EXIT_OK;
		default:
			fputs(verify_usage, stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind != (a->batch ? 0 : 2)) {
		fprintf(stderr, "imapmig verify: expected SOURCE and TARGET URLs, or --batch NAME "
		                "alone\n\n%s",
		        verify_usage);
		return EXIT_USAGE;
	}
	return -1;
}

static void client_opts(struct imap_client_opts *co, enum side side, const struct endpoint *ep,
                        const struct verify_args *a, int i)
{
	*co = (struct imap_client_opts){
	    .side = side,
	    .host = ep->url.host,
	    .port = ep->url.port,
	    .implicit_tls = ep->url.tls,
	    .allow_plaintext = a->allow_plain,
	    .insecure = a->insecure,
	    .ca_file = a->ca_file,
	    .connect_addr = ep->addr,
	    .timeout_ms = (int)a->timeout_s * 1000,
	    .user = ep->url.user,
	    .password = ep->password,
	    .admin = a->admin[i],
	    .admin_mode = a->admin_mode,
	    .trace = a->debug ? cli_trace : NULL,
	    .trace_ctx = (void *)(side == SIDE_SOURCE ? "source" : "target"),
	};
}

/* --batch: every user of the batch, connected as the batch connects them. */
struct batch_verify {
	const struct verify_args *a;
	struct output *out;
	struct verify_stats total;
	size_t users, differing, failed;
};

static int verify_batch_user(void *ctx, const struct batch_user_view *u, struct err *err)
{
	struct batch_verify *bv = ctx;
	(void)err;
	struct output *out = bv->out;
	if (out->json) {
		struct buf *b = &out->line;
		buf_reset(b);
		buf_puts(b, "{\"event\":\"user\"");
		jstr(b, "user", u->email);
		jstr(b, "status", u->status);
		buf_puts(b, "}\n");
		fwrite(b->data, 1, b->len, stdout);
	} else {
		printf("== %s (%s)\n", u->email, u->status);
	}
	fflush(stdout);
	struct verify_opts o = {
	    .source = u->source,
	    .target = u->target,
	    .rules = u->rules,
	    .max_message_size = u->max_message_size,
	    .deep = bv->a->deep,
	    .max_details = (unsigned)bv->a->max_details,
	    .event = on_event,
	    .event_ctx = out,
	};
	if (bv->a->debug) {
		o.source.trace = o.target.trace = cli_trace;
		o.source.trace_ctx = (void *)"source";
		o.target.trace_ctx = (void *)"target";
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct verify_stats st;
	struct err e;
	err_clear(&e);
	int r = verify_run(&o, &st, &e);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	bv->users++;
	if (r < 0) {
		/* one user that cannot be compared does not stop the others */
		cli_error(&e);
		bv->failed++;
		summary(out, &st, secs, &e);
		return 0;
	}
	summary(out, &st, secs, NULL);
	if (st.missing || st.extra || st.mismatched || st.folders_missing || st.folders_failed)
		bv->differing++;
	bv->total.folders += st.folders;
	bv->total.messages += st.messages;
	bv->total.missing += st.missing;
	bv->total.extra += st.extra;
	bv->total.mismatched += st.mismatched;
	bv->total.skipped += st.skipped;
	return 0;
}

static int verify_batch(const struct verify_args *a, struct output *out)
{
	char *owned = NULL;
	const char *path = a->state;
	if (!path)
		path = owned = state_default_path();
	if (!path) {
		fprintf(stderr, "imapmig: no home directory for the state; pass --state PATH\n");
		return EXIT_USAGE;
	}
	struct batch_verify bv = {.a = a, .out = out};
	struct err err;
	err_clear(&err);
	int r = batch_each_user(path, a->batch, verify_batch_user, &bv, &err);
	free(owned);
	if (r < 0) {
		cli_error(&err);
		return cli_exit_for(&err);
	}
	if (out->json)
		printf("{\"event\":\"verify_batch_summary\",\"users\":%zu,\"differing\":%zu,"
		       "\"failed\":%zu,\"messages\":%llu,\"missing\":%llu,\"extra\":%llu,"
		       "\"mismatched\":%llu}\n",
		       bv.users, bv.differing, bv.failed, (unsigned long long)bv.total.messages,
		       (unsigned long long)bv.total.missing, (unsigned long long)bv.total.extra,
		       (unsigned long long)bv.total.mismatched);
	else
		printf("verify batch %s: %zu users, %llu messages: %zu users differ, %zu could not "
		       "be compared (%llu missing, %llu extra, %llu mismatched)\n",
		       a->batch, bv.users, (unsigned long long)bv.total.messages, bv.differing,
		       bv.failed, (unsigned long long)bv.total.missing,
		       (unsigned long long)bv.total.extra, (unsigned long long)bv.total.mismatched);
	if (bv.failed)
		return EXIT_ACCOUNT;
	return bv.differing ? EXIT_PARTIAL : EXIT_OK;
}

int cmd_verify(int argc, char **argv)
{
	struct verify_args a = {.timeout_s = 60, .admin_mode = IMAP_ADMIN_AUTHZID};
	struct output out = {.line = BUF_INIT(0)};
	struct endpoint src = {0}, tgt = {0};
	struct err err;
	int status = parse_args(argc, argv, &a, &out);
	if (status >= 0)
		goto out;
	if (a.batch) {
		status = verify_batch(&a, &out);
		goto out;
	}
	status = EXIT_USAGE;
	err_clear(&err);
	if (endpoint_setup(&src, argv[optind], SIDE_SOURCE, a.pwfile[0], a.admin[0], &a.resolves,
	                   &err) < 0 ||
	    endpoint_setup(&tgt, argv[optind + 1], SIDE_TARGET, a.pwfile[1], a.admin[1],
	                   &a.resolves, &err) < 0) {
		cli_error(&err);
		goto out;
	}
	if (a.insecure)
		fprintf(stderr, "imapmig: WARNING: --insecure: server certificates are NOT "
		                "verified; anyone on the network path can read the passwords and "
		                "mail\n");

	struct verify_opts o = {
	    .rules =
	        {
	            .include = a.includes.items,
	            .n_include = a.includes.n,
	            .exclude = a.excludes.items,
	            .n_exclude = a.excludes.n,
	            .renames = a.maps.items,
	            .n_renames = a.maps.n,
	        },
	    .max_message_size = a.max_size,
	    .deep = a.deep,
	    .max_details = (unsigned)a.max_details,
	    .event = on_event,
	    .event_ctx = &out,
	};
	client_opts(&o.source, SIDE_SOURCE, &src, &a, 0);
	client_opts(&o.target, SIDE_TARGET, &tgt, &a, 1);

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct verify_stats st;
	int r = verify_run(&o, &st, &err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (r < 0) {
		cli_error(&err);
		/* a comparison cut short after logging in still found nothing
		 * reliable: report it as not connected/incomplete */
		status = cli_exit_for(&err);
		if (st.connected)
			summary(&out, &st, secs, &err);
	} else {
		summary(&out, &st, secs, NULL);
		status = (st.missing || st.extra || st.mismatched || st.folders_missing ||
		          st.folders_failed)
		             ? EXIT_PARTIAL
		             : EXIT_OK;
	}
out:
	endpoint_release(&src);
	endpoint_release(&tgt);
	buf_release(&out.line);
	return status;
}
