/* cmd_sync.c - imapmig sync SOURCE TARGET */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/endpoint.h"
#include "engine/sync.h"
#include "report/progress.h"
#include "store/state.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/secret.h"
#include "util/url.h"

static const char sync_usage[] =
	"usage: imapmig sync [options] SOURCE TARGET\n"
	"\n"
	"Copy the mailbox SOURCE to TARGET: folders, messages (byte for byte), flags,\n"
	"dates and subscriptions.  Run it again to copy only what is new or changed.\n"
	"SOURCE and TARGET are imaps://USER@HOST[:PORT] (TLS) or imap://USER@HOST[:PORT]\n"
	"(STARTTLS, required unless --allow-plaintext).\n"
	"\n"
	"Passwords (never on the command line):\n"
	"  --source-password-file F   else $IMAPMIG_SOURCE_PASSWORD, else a prompt\n"
	"  --target-password-file F   else $IMAPMIG_TARGET_PASSWORD, else a prompt\n"
	"  --source-admin USER        log in as this admin acting for the source user\n"
	"  --target-admin USER        (the password is then the admin's)\n"
	"  --admin-style STYLE        authzid (SASL PLAIN authorization identity, default)\n"
	"                             or master (Dovecot master user: LOGIN user*admin)\n"
	"Connection:\n"
	"  --ca-file F                trust this CA (PEM) as well as the system's\n"
	"  --resolve HOST:ADDR        connect to ADDR for HOST, still verifying HOST's\n"
	"                             certificate (rehearse on a clone); repeatable\n"
	"  --allow-plaintext          accept imap:// servers that offer no STARTTLS\n"
	"  --insecure                 do not verify certificates (dangerous)\n"
	"  --timeout SECONDS          network timeout (default 60)\n"
	"  --retries N                reconnect and resume this often after a dropped\n"
	"                             connection (default 3)\n"
	"  --no-multiappend           one APPEND per message even where the target\n"
	"                             offers MULTIAPPEND (many messages per transaction)\n"
	"  --compress                 COMPRESS=DEFLATE where a server offers it (slow\n"
	"                             links; costs CPU on both ends)\n"
	"  --connections-per-user N   copy N folders at once over N connection pairs\n"
	"                             (default 1)\n"
	"  --append-connections N     a target without LITERAL+ makes every message\n"
	"                             wait a round trip; N target connections overlap\n"
	"                             those waits (default 1 keeps the source's order\n"
	"                             of UIDs; dates are kept either way)\n"
	"What to copy:\n"
	"  --include GLOB             only folders matching (repeatable; '/' between levels)\n"
	"  --exclude GLOB             never folders matching (repeatable)\n"
	"  --folder-map SRC=DST       put folder SRC (and below) at DST (repeatable)\n"
	"  --max-message-size SIZE    skip (and list) larger messages, e.g. 35M\n"
	"Running:\n"
	"  --state PATH               state database (default\n"
	"                             $XDG_STATE_HOME/imapmig/state.db)\n"
	"  --dry-run                  show what would be done; change nothing\n"
	"  --verbose                  say what happens in every folder\n"
	"  --debug                    also trace the IMAP protocol (passwords hidden)\n"
	"  --json                     one JSON event per line on stdout\n"
	"  --help\n"
	"\n"
	"Exit status: 0 all copied; 1 some messages or folders failed; 2 bad usage;\n"
	"3 could not connect or log in; 4 stopped by Ctrl-C (run again to resume).\n";

enum {
	OPT_SRC_PWFILE = 256, OPT_TGT_PWFILE, OPT_SRC_ADMIN, OPT_TGT_ADMIN, OPT_ADMIN_STYLE,
	OPT_CA_FILE, OPT_RESOLVE, OPT_ALLOW_PLAIN, OPT_INSECURE, OPT_TIMEOUT, OPT_RETRIES,
	OPT_INCLUDE, OPT_EXCLUDE, OPT_FOLDER_MAP, OPT_MAX_SIZE, OPT_STATE, OPT_DRY_RUN,
	OPT_VERBOSE, OPT_DEBUG, OPT_JSON, OPT_HELP, OPT_NO_MULTIAPPEND, OPT_CONNECTIONS,
	OPT_APPEND_CONNECTIONS,
	OPT_COMPRESS,
};

static const struct option sync_options[] = {
	{ "source-password-file", required_argument, NULL, OPT_SRC_PWFILE },
	{ "target-password-file", required_argument, NULL, OPT_TGT_PWFILE },
	{ "source-admin", required_argument, NULL, OPT_SRC_ADMIN },
	{ "target-admin", required_argument, NULL, OPT_TGT_ADMIN },
	{ "admin-style", required_argument, NULL, OPT_ADMIN_STYLE },
	{ "ca-file", required_argument, NULL, OPT_CA_FILE },
	{ "resolve", required_argument, NULL, OPT_RESOLVE },
	{ "allow-plaintext", no_argument, NULL, OPT_ALLOW_PLAIN },
	{ "insecure", no_argument, NULL, OPT_INSECURE },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "retries", required_argument, NULL, OPT_RETRIES },
	{ "include", required_argument, NULL, OPT_INCLUDE },
	{ "exclude", required_argument, NULL, OPT_EXCLUDE },
	{ "folder-map", required_argument, NULL, OPT_FOLDER_MAP },
	{ "max-message-size", required_argument, NULL, OPT_MAX_SIZE },
	{ "state", required_argument, NULL, OPT_STATE },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "verbose", no_argument, NULL, OPT_VERBOSE },
	{ "debug", no_argument, NULL, OPT_DEBUG },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "no-multiappend", no_argument, NULL, OPT_NO_MULTIAPPEND },
	{ "connections-per-user", required_argument, NULL, OPT_CONNECTIONS },
	{ "append-connections", required_argument, NULL, OPT_APPEND_CONNECTIONS },
	{ "compress", no_argument, NULL, OPT_COMPRESS },
	{ NULL, 0, NULL, 0 },
};

struct output {
	bool json, verbose;
	struct buf line;
	struct progress *progress; /* live line on a terminal, else NULL */
};

/* A line for the person: above the live progress line when there is one. */
static void say(struct output *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct output *out, const char *fmt, ...)
{
	char text[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (out->progress)
		progress_note(out->progress, "%s", text);
	else
		fprintf(stderr, "%s\n", text);
}

static const char *event_name(enum sync_event_type t)
{
	switch (t) {
	case SYNC_EV_CONNECTED: return "connected";
	case SYNC_EV_FOLDER_PLAN: return "folder_plan";
	case SYNC_EV_FOLDER_CREATED: return "folder_created";
	case SYNC_EV_FOLDER_START: return "folder_start";
	case SYNC_EV_FOLDER_DONE: return "folder_done";
	case SYNC_EV_MESSAGE_SKIPPED: return "message_skipped";
	case SYNC_EV_MESSAGE_FAILED: return "message_failed";
	case SYNC_EV_WARNING: return "warning";
	case SYNC_EV_PROGRESS: return "progress";
	case SYNC_EV_TOTALS: return "totals";
	}
	return "event";
}

static void json_event(struct output *out, const struct sync_event *ev)
{
	struct buf *b = &out->line;
	buf_reset(b);
	buf_appendf(b, "{\"event\":\"%s\"", event_name(ev->type));
	if (ev->side != SIDE_NONE)
		buf_appendf(b, ",\"side\":\"%s\"", side_name(ev->side));
#define JSTR(key, val)                             \
	if (val) {                                  \
		buf_puts(b, ",\"" key "\":");         \
		json_string(b, val);                \
	}
	JSTR("folder", ev->folder);
	JSTR("target_folder", ev->target_folder);
	JSTR("text", ev->text);
	JSTR("date", ev->date);
	JSTR("subject", ev->subject);
#undef JSTR
	if (ev->uid)
		buf_appendf(b, ",\"uid\":%u", ev->uid);
	if (ev->type == SYNC_EV_MESSAGE_SKIPPED || ev->type == SYNC_EV_MESSAGE_FAILED)
		buf_appendf(b, ",\"size\":%llu", (unsigned long long)ev->size);
	if (ev->type == SYNC_EV_FOLDER_START || ev->type == SYNC_EV_FOLDER_DONE ||
	    ev->type == SYNC_EV_PROGRESS || ev->type == SYNC_EV_TOTALS)
		buf_appendf(b, ",\"count\":%llu", (unsigned long long)ev->count);
	if (ev->type == SYNC_EV_PROGRESS || ev->type == SYNC_EV_TOTALS)
		buf_appendf(b, ",\"bytes\":%llu", (unsigned long long)ev->bytes);
	buf_puts(b, "}\n");
	fwrite(b->data, 1, b->len, stdout);
	fflush(stdout);
}

static void human_event(struct output *out, const struct sync_event *ev)
{
	switch (ev->type) {
	case SYNC_EV_CONNECTED:
		if (out->verbose)
			say(out, "%s: logged in to %s", side_name(ev->side), ev->text);
		break;
	case SYNC_EV_FOLDER_PLAN:
		/* special-use mapping is routine; a renamed level or a conflict
		 * is worth a line even without --verbose */
		if (out->verbose || (ev->text && (strncmp(ev->text, "copy", 4) != 0 ||
						  strstr(ev->text, "replaced"))))
			say(out, "folder \"%s\" -> %s%s%s (%s)", ev->folder,
				ev->target_folder ? "\"" : "",
				ev->target_folder ? ev->target_folder : "-",
				ev->target_folder ? "\"" : "", ev->text);
		break;
	case SYNC_EV_FOLDER_CREATED:
		say(out, "created folder \"%s\" on the target", ev->target_folder);
		break;
	case SYNC_EV_FOLDER_START:
		if (out->verbose)
			say(out, "folder \"%s\": %llu messages on the source", ev->folder,
				(unsigned long long)ev->count);
		break;
	case SYNC_EV_FOLDER_DONE:
		if (out->verbose)
			say(out, "folder \"%s\": %llu copied", ev->folder,
				(unsigned long long)ev->count);
		break;
	case SYNC_EV_MESSAGE_SKIPPED:
	case SYNC_EV_MESSAGE_FAILED:
		say(out, "%s: folder \"%s\" UID %u (%s, \"%s\", %llu bytes): %s",
			ev->type == SYNC_EV_MESSAGE_SKIPPED ? "skipped" : "FAILED", ev->folder,
			ev->uid, ev->date ? ev->date : "no date", ev->subject ? ev->subject : "",
			(unsigned long long)ev->size, ev->text);
		break;
	case SYNC_EV_WARNING:
		say(out, "warning: %s%s%s%s", ev->folder ? "folder \"" : "",
			ev->folder ? ev->folder : "", ev->folder ? "\": " : "", ev->text);
		break;
	case SYNC_EV_PROGRESS:
		if (out->progress)
			progress_done(out->progress, 0, ev->count, ev->bytes);
		break;
	case SYNC_EV_TOTALS:
		if (out->progress)
			progress_totals(out->progress, 0, ev->count, ev->bytes);
		break;
	}
}

static void on_event(void *ctx, const struct sync_event *ev)
{
	struct output *out = ctx;
	if (out->json)
		json_event(out, ev);
	else
		human_event(out, ev);
}

static void summary(struct output *out, const struct sync_stats *s, double secs,
		    const struct err *fatal, bool dry_run)
{
	if (out->json) {
		struct buf *b = &out->line;
		buf_reset(b);
		buf_appendf(b,
			    "{\"event\":\"summary\",\"dry_run\":%s,\"folders_total\":%llu,"
			    "\"folders_created\":%llu,\"folders_failed\":%llu,"
			    "\"messages_copied\":%llu,\"messages_existing\":%llu,"
			    "\"messages_skipped\":%llu,\"messages_failed\":%llu,"
			    "\"messages_planned\":%llu,\"flags_updated\":%llu,"
			    "\"bytes_copied\":%llu,\"seconds\":%.3f,\"errors\":[",
			    dry_run ? "true" : "false", (unsigned long long)s->folders_total,
			    (unsigned long long)s->folders_created,
			    (unsigned long long)s->folders_failed, (unsigned long long)s->msgs_copied,
			    (unsigned long long)s->msgs_existing, (unsigned long long)s->msgs_skipped,
			    (unsigned long long)s->msgs_failed, (unsigned long long)s->msgs_planned,
			    (unsigned long long)s->flags_updated, (unsigned long long)s->bytes_copied,
			    secs);
		if (fatal) {
			char text[4096];
			json_string(b, err_format(fatal, text, sizeof(text)));
		}
		buf_puts(b, "]}\n");
		fwrite(b->data, 1, b->len, stdout);
		fflush(stdout);
		return;
	}
	if (dry_run)
		printf("dry run: %llu messages would be copied in %llu folders; nothing was "
		       "changed.\n",
		       (unsigned long long)s->msgs_planned, (unsigned long long)s->folders_total);
	else
		printf("%llu messages copied (%.1f MB) in %llu folders (%llu created) in %.1f s\n",
		       (unsigned long long)s->msgs_copied, (double)s->bytes_copied / 1e6,
		       (unsigned long long)s->folders_total,
		       (unsigned long long)s->folders_created, secs);
	printf("already on the target: %llu, skipped by policy: %llu, failed: %llu, flags "
	       "updated: %llu%s\n",
	       (unsigned long long)s->msgs_existing, (unsigned long long)s->msgs_skipped,
	       (unsigned long long)s->msgs_failed, (unsigned long long)s->flags_updated,
	       s->folders_failed ? ", some folders failed (see above)" : "");
}

int cmd_sync(int argc, char **argv)
{
	const char *pwfile[2] = { NULL, NULL }, *admin[2] = { NULL, NULL };
	const char *state_path = NULL, *ca_file = NULL;
	struct strlist includes = { 0 }, excludes = { 0 }, maps = { 0 }, resolves = { 0 };
	bool allow_plain = false, insecure = false, dry_run = false, debug = false;
	bool no_multiappend = false, compress = false;
	long connections = 1, append_connections = 1;
	enum imap_admin_mode admin_mode = IMAP_ADMIN_AUTHZID;
	long timeout_s = 60, retries = 3;
	uint64_t max_size = 0;
	struct output out = { .line = BUF_INIT(0) };
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "hv", sync_options, NULL)) != -1) {
		unsigned long long n;
		switch (c) {
		case OPT_SRC_PWFILE: pwfile[0] = optarg; break;
		case OPT_TGT_PWFILE: pwfile[1] = optarg; break;
		case OPT_SRC_ADMIN: admin[0] = optarg; break;
		case OPT_TGT_ADMIN: admin[1] = optarg; break;
		case OPT_ADMIN_STYLE:
			if (!strcmp(optarg, "authzid"))
				admin_mode = IMAP_ADMIN_AUTHZID;
			else if (!strcmp(optarg, "master"))
				admin_mode = IMAP_ADMIN_MASTER_SEP;
			else {
				fprintf(stderr, "imapmig: --admin-style must be authzid or master\n");
				return EXIT_USAGE;
			}
			break;
		case OPT_CA_FILE: ca_file = optarg; break;
		case OPT_RESOLVE:
			if (strlist_add(&resolves, "--resolve", optarg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_ALLOW_PLAIN: allow_plain = true; break;
		case OPT_INSECURE: insecure = true; break;
		case OPT_TIMEOUT:
			if (cli_number("--timeout", optarg, 1, 86400, &n) < 0)
				return EXIT_USAGE;
			timeout_s = (long)n;
			break;
		case OPT_RETRIES:
			if (cli_number("--retries", optarg, 0, 100, &n) < 0)
				return EXIT_USAGE;
			retries = (long)n;
			break;
		case OPT_INCLUDE:
			if (strlist_add(&includes, "--include", optarg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_EXCLUDE:
			if (strlist_add(&excludes, "--exclude", optarg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_FOLDER_MAP:
			if (strlist_add(&maps, "--folder-map", optarg) < 0)
				return EXIT_USAGE;
			break;
		case OPT_MAX_SIZE:
			if (size_parse(optarg, &max_size) < 0 || max_size == 0) {
				fprintf(stderr, "imapmig: --max-message-size '%s': expected a size "
						"like 35M, 512K or 1G\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case OPT_STATE: state_path = optarg; break;
		case OPT_DRY_RUN: dry_run = true; break;
		case 'v':
		case OPT_VERBOSE: out.verbose = true; break;
		case OPT_DEBUG: debug = out.verbose = true; break;
		case OPT_JSON: out.json = true; break;
		case OPT_NO_MULTIAPPEND: no_multiappend = true; break;
		case OPT_COMPRESS: compress = true; break;
		case OPT_CONNECTIONS:
			if (cli_number("--connections-per-user", optarg, 1, 32, &n) < 0)
				return EXIT_USAGE;
			connections = (long)n;
			break;
		case OPT_APPEND_CONNECTIONS:
			if (cli_number("--append-connections", optarg, 1, 16, &n) < 0)
				return EXIT_USAGE;
			append_connections = (long)n;
			break;
		case 'h':
		case OPT_HELP: fputs(sync_usage, stdout); return EXIT_OK;
		default: fputs(sync_usage, stderr); return EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "imapmig sync: expected SOURCE and TARGET URLs\n\n%s", sync_usage);
		return EXIT_USAGE;
	}

	struct err err;
	err_clear(&err);
	struct endpoint src = { 0 }, tgt = { 0 };
	struct state *st = NULL;
	char *default_state = NULL;
	int status = EXIT_USAGE;

	if (endpoint_setup(&src, argv[optind], SIDE_SOURCE, pwfile[0], admin[0], &resolves,
			   &err) < 0 ||
	    endpoint_setup(&tgt, argv[optind + 1], SIDE_TARGET, pwfile[1], admin[1], &resolves,
			   &err) < 0) {
		cli_error(&err);
		goto out;
	}
	struct folder_rules check = { .renames = maps.items, .n_renames = maps.n };
	if (folder_rules_check(&check, &err) < 0) {
		cli_error(&err);
		goto out;
	}
	if (insecure)
		fprintf(stderr, "imapmig: WARNING: --insecure: server certificates are NOT "
				"verified; anyone on the network path can read the passwords and "
				"mail\n");
	if (!state_path)
		state_path = default_state = state_default_path();
	if (!state_path) {
		fprintf(stderr, "imapmig: no home directory to keep the state database in; "
				"pass --state PATH\n");
		goto out;
	}
	st = state_open(state_path, &err);
	if (!st) {
		cli_error(&err);
		status = cli_exit_for(&err);
		goto out;
	}

	struct sync_opts o = {
		.source = {
			.side = SIDE_SOURCE, .host = src.url.host, .port = src.url.port,
			.implicit_tls = src.url.tls, .allow_plaintext = allow_plain,
			.insecure = insecure, .ca_file = ca_file, .connect_addr = src.addr,
			.timeout_ms = (int)timeout_s * 1000, .user = src.url.user,
			.password = src.password, .admin = admin[0], .admin_mode = admin_mode,
			.trace = debug ? cli_trace : NULL, .trace_ctx = (void *)"source",
		},
		.target = {
			.side = SIDE_TARGET, .host = tgt.url.host, .port = tgt.url.port,
			.implicit_tls = tgt.url.tls, .allow_plaintext = allow_plain,
			.insecure = insecure, .ca_file = ca_file, .connect_addr = tgt.addr,
			.timeout_ms = (int)timeout_s * 1000, .user = tgt.url.user,
			.password = tgt.password, .admin = admin[1], .admin_mode = admin_mode,
			.trace = debug ? cli_trace : NULL, .trace_ctx = (void *)"target",
		},
		.source_key = src.key,
		.target_key = tgt.key,
		.rules = {
			.include = includes.items, .n_include = includes.n,
			.exclude = excludes.items, .n_exclude = excludes.n,
			.renames = maps.items, .n_renames = maps.n,
		},
		.max_message_size = max_size,
		.no_multiappend = no_multiappend,
		.connections = (unsigned)connections,
		.append_connections = (unsigned)append_connections,
		.compress = compress,
		.dry_run = dry_run,
		.state = st,
		.event = on_event,
		.event_ctx = &out,
		.should_stop = cli_stop_requested,
	};
	/* test hook: see sync_opts.crash_after */
	const char *crash = getenv("IMAPMIG_TEST_CRASH_AFTER");
	if (crash)
		o.crash_after = strtoul(crash, NULL, 10);

	if (!out.json && isatty(STDERR_FILENO)) {
		out.progress = progress_new(PROGRESS_TTY, stderr, NULL, 1, 10);
		progress_status(out.progress, 0, src.url.user, dry_run ? "Planning" : "Syncing");
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct sync_stats total = { 0 }, pass;
	int r = -1;
	for (long attempt = 0;; attempt++) {
		err_clear(&err);
		r = sync_run(&o, &pass, &err);
		total.folders_total = pass.folders_total;
		total.folders_created += pass.folders_created;
		total.folders_failed = pass.folders_failed;
		total.msgs_copied += pass.msgs_copied;
		total.msgs_existing += pass.msgs_existing;
		total.msgs_skipped += pass.msgs_skipped;
		total.msgs_failed += pass.msgs_failed;
		total.msgs_planned += pass.msgs_planned;
		total.flags_updated += pass.flags_updated;
		total.bytes_copied += pass.bytes_copied;
		/* Only a connection that broke after logging in is worth
		 * retrying: the state lets the next pass resume exactly. */
		if (r == 0 || err.kind != ERR_TRANSIENT || !pass.connected || attempt >= retries)
			break;
		unsigned delay = 1u << (attempt < 5 ? attempt + 1 : 6);
		char text[4096];
		fprintf(stderr, "imapmig: %s; retrying in %u s (%ld of %ld)\n",
			err_format(&err, text, sizeof(text)), delay, attempt + 1, retries);
		sleep(delay);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (out.progress) {
		progress_status(out.progress, 0, src.url.user, r == 0 ? "Synced" : "Failed");
		progress_finish(out.progress);
		progress_free(&out.progress);
	}
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (r < 0) {
		cli_error(&err);
		status = cli_exit_for(&err);
	} else {
		status = (total.msgs_failed || total.folders_failed) ? EXIT_PARTIAL : EXIT_OK;
	}
	/* a run that never got past logging in has nothing to sum up (the
	 * error said it all), except for scripts reading --json */
	if (out.json || r == 0 || pass.connected)
		summary(&out, &total, secs, r < 0 ? &err : NULL, dry_run);
out:
	state_close(&st);
	free(default_state);
	endpoint_release(&src);
	endpoint_release(&tgt);
	buf_release(&out.line);
	return status;
}
