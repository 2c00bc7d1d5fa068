/* cmd_batch.c - imapmig batch create|start|sync|complete|stop|status|
 * report|remove|list|run */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch/batch.h"
#include "cli/cli.h"
#include "cli/endpoint.h"
#include "report/batch_report.h"
#include "report/progress.h"
#include "report/report.h"
#include "store/batch_store.h"
#include "store/state.h"
#include "util/buf.h"
#include "util/json.h"
#include "util/mem.h"
#include "util/secret.h"
#include "util/url.h"

static const char batch_usage[] =
	"usage: imapmig batch COMMAND NAME [options]\n"
	"\n"
	"Move many mailboxes from a CSV, in passes, until cut-over.\n"
	"\n"
	"  create NAME --source URL --target URL --csv FILE [options]\n"
	"  start NAME       initial copy of every user (foreground, until done)\n"
	"  sync NAME        incremental pass: new mail and flag changes\n"
	"  complete NAME    a last incremental pass, then Completed\n"
	"  run NAME --every 24h   incremental passes until completed or stopped\n"
	"  stop NAME        ask a running pass to stop (users become Stopped)\n"
	"  status NAME [--json]\n"
	"  report NAME [--format csv|json|html] [--output FILE]\n"
	"  remove NAME\n"
	"  list [--json]\n"
	"\n"
	"Every command takes --state PATH (default $XDG_STATE_HOME/imapmig/state.db)\n"
	"and --help.  'imapmig batch create --help' lists the batch's options.\n"
	"start, sync, complete and run take --debug: the IMAP protocol on stderr, each\n"
	"line labelled with the user and its connection (passwords hidden).\n";

static const char create_usage[] =
	"usage: imapmig batch create NAME --source URL --target URL --csv FILE [options]\n"
	"\n"
	"URLs name servers only (imaps://host[:port] or imap://host[:port]); users come\n"
	"from the CSV: EmailAddress,UserName,Password[,UserRoot][,TargetUserName,\n"
	"TargetPassword] (EmailAddress = target mailbox; UserName/Password = source\n"
	"login).  Passwords are never stored: each pass re-reads them from the CSV,\n"
	"whose path and SHA-256 the batch keeps.\n"
	"\n"
	"  --source-admin USER / --target-admin USER   log in as this admin for every\n"
	"                     user (then that side's CSV password may be empty)\n"
	"  --admin-style authzid|master                 SASL authzid (default) or user*admin\n"
	"  --source-password-file F / --target-password-file F   the admins' passwords\n"
	"                     (else $IMAPMIG_SOURCE_PASSWORD / $IMAPMIG_TARGET_PASSWORD\n"
	"                     when a pass runs); only the path is stored\n"
	"  --ca-file F  --resolve HOST:ADDR  --allow-plaintext  --insecure  --timeout S\n"
	"  --include GLOB  --exclude GLOB  --folder-map SRC=DST   (as for sync)\n"
	"  --max-message-size SIZE   skip and list larger messages (e.g. 35M)\n"
	"  --max-items N             fail a mailbox holding more messages\n"
	"  --preset hosted           --max-items 500000 --max-message-size 35M\n"
	"  --jobs N                  users at once (default 4)\n"
	"  --max-connections N       per server (each user holds one per side)\n"
	"  --connections-per-user N  copy N folders of a mailbox at once (default 1)\n"
	"  --append-connections N    target without LITERAL+: N connections overlap the\n"
	"                            round trip each APPEND waits (default 1)\n"
	"  --start-after TIME        hold the first pass: 2026-12-01T22:00 (local) or +2h\n"
	"  --notify ADDR             mail the report when the batch is Synced/Completed\n"
	"  --smtp URL                smtp://[user@]host:587 (STARTTLS) or smtps://host:465;\n"
	"                            password $IMAPMIG_SMTP_PASSWORD or --smtp-password-file\n"
	"  --smtp-from ADDR\n"
	"  --state PATH\n";

enum {
	O_SOURCE = 256, O_TARGET, O_CSV, O_CA, O_RESOLVE, O_PLAIN, O_INSECURE, O_TIMEOUT,
	O_SADMIN, O_TADMIN, O_STYLE, O_SPW, O_TPW, O_INCLUDE, O_EXCLUDE, O_MAP, O_MAXSIZE,
	O_MAXITEMS, O_PRESET, O_JOBS, O_MAXCONN, O_START_AFTER, O_NOTIFY, O_SMTP, O_SMTP_PW,
	O_SMTP_FROM, O_STATE, O_JSON, O_FORMAT, O_OUTPUT, O_EVERY, O_HELP, O_CONNS, O_APPEND_CONNS, O_DEBUG,
};

static const struct option batch_options[] = {
	{ "source", required_argument, NULL, O_SOURCE },
	{ "target", required_argument, NULL, O_TARGET },
	{ "csv", required_argument, NULL, O_CSV },
	{ "ca-file", required_argument, NULL, O_CA },
	{ "resolve", required_argument, NULL, O_RESOLVE },
	{ "allow-plaintext", no_argument, NULL, O_PLAIN },
	{ "insecure", no_argument, NULL, O_INSECURE },
	{ "timeout", required_argument, NULL, O_TIMEOUT },
	{ "source-admin", required_argument, NULL, O_SADMIN },
	{ "target-admin", required_argument, NULL, O_TADMIN },
	{ "admin-style", required_argument, NULL, O_STYLE },
	{ "source-password-file", required_argument, NULL, O_SPW },
	{ "target-password-file", required_argument, NULL, O_TPW },
	{ "include", required_argument, NULL, O_INCLUDE },
	{ "exclude", required_argument, NULL, O_EXCLUDE },
	{ "folder-map", required_argument, NULL, O_MAP },
	{ "max-message-size", required_argument, NULL, O_MAXSIZE },
	{ "max-items", required_argument, NULL, O_MAXITEMS },
	{ "preset", required_argument, NULL, O_PRESET },
	{ "jobs", required_argument, NULL, O_JOBS },
	{ "max-connections", required_argument, NULL, O_MAXCONN },
	{ "connections-per-user", required_argument, NULL, O_CONNS },
	{ "append-connections", required_argument, NULL, O_APPEND_CONNS },
	{ "start-after", required_argument, NULL, O_START_AFTER },
	{ "notify", required_argument, NULL, O_NOTIFY },
	{ "smtp", required_argument, NULL, O_SMTP },
	{ "smtp-password-file", required_argument, NULL, O_SMTP_PW },
	{ "smtp-from", required_argument, NULL, O_SMTP_FROM },
	{ "state", required_argument, NULL, O_STATE },
	{ "json", no_argument, NULL, O_JSON },
	{ "format", required_argument, NULL, O_FORMAT },
	{ "output", required_argument, NULL, O_OUTPUT },
	{ "every", required_argument, NULL, O_EVERY },
	{ "help", no_argument, NULL, O_HELP },
	{ "debug", no_argument, NULL, O_DEBUG },
	{ NULL, 0, NULL, 0 },
};

struct batch_args {
	const char *cmd, *name;
	const char *csv, *state, *format, *output;
	bool json;
	bool debug;
	long every_s;
	struct batch_config cfg;
};

static char *absolute(const char *path)
{
	if (path[0] == '/')
		return xstrdup(path);
	char cwd[4096];
	if (!getcwd(cwd, sizeof(cwd)))
		return xstrdup(path);
	return xasprintf("%s/%s", cwd, path);
}

/* "2026-12-01T22:00[:ss]" (local time) or "+90m" / "+2h" / "+1d". */
static int parse_time(const char *s, time_t *t_r)
{
	if (s[0] == '+') {
		char *end;
		long n = strtol(s + 1, &end, 10);
		long mult = !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60 : !strcmp(end, "h") ? 3600
			    : !strcmp(end, "d") ? 86400 : 0;
		if (n < 0 || !mult || end == s + 1)
			return -1;
		/* whole seconds, rounded up: "+4s" never starts sooner than
		 * 4 s from now */
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		*t_r = now.tv_sec + (now.tv_nsec > 0) + n * mult;
		return 0;
	}
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(s, "%Y-%m-%dT%H:%M", &tm);
	if (end && *end == ':')
		end = strptime(end, ":%S", &tm);
	if (!end || *end)
		return -1;
	tm.tm_isdst = -1;
	*t_r = mktime(&tm);
	return *t_r == (time_t)-1 ? -1 : 0;
}

/* "24h", "30m", "3600" (seconds), "1d" */
static long parse_interval(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);
	if (end == s || n <= 0)
		return -1;
	if (!*end || !strcmp(end, "s"))
		return n;
	if (!strcmp(end, "m"))
		return n * 60;
	if (!strcmp(end, "h"))
		return n * 3600;
	if (!strcmp(end, "d"))
		return n * 86400;
	return -1;
}

static int parse_args(int argc, char **argv, struct batch_args *a)
{
	unsigned long long n;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", batch_options, NULL)) != -1) {
		struct batch_config *k = &a->cfg;
		switch (c) {
		case O_SOURCE: free(k->source_url); k->source_url = xstrdup(optarg); break;
		case O_TARGET: free(k->target_url); k->target_url = xstrdup(optarg); break;
		case O_CSV: a->csv = optarg; break;
		case O_CA: free(k->ca_file); k->ca_file = absolute(optarg); break;
		case O_RESOLVE: strvec_push(&k->resolve, optarg); break;
		case O_PLAIN: k->allow_plaintext = true; break;
		case O_INSECURE: k->insecure = true; break;
		case O_TIMEOUT:
			if (cli_number("--timeout", optarg, 1, 86400, &n) < 0)
				return -1;
			k->timeout_s = (unsigned)n;
			break;
		case O_SADMIN: free(k->source_admin); k->source_admin = xstrdup(optarg); break;
		case O_TADMIN: free(k->target_admin); k->target_admin = xstrdup(optarg); break;
		case O_STYLE:
			if (!strcmp(optarg, "master"))
				k->admin_mode = IMAP_ADMIN_MASTER_SEP;
			else if (!strcmp(optarg, "authzid"))
				k->admin_mode = IMAP_ADMIN_AUTHZID;
			else {
				fprintf(stderr, "imapmig: --admin-style must be authzid or master\n");
				return -1;
			}
			break;
		case O_SPW: free(k->source_password_file); k->source_password_file = absolute(optarg); break;
		case O_TPW: free(k->target_password_file); k->target_password_file = absolute(optarg); break;
		case O_INCLUDE: strvec_push(&k->include, optarg); break;
		case O_EXCLUDE: strvec_push(&k->exclude, optarg); break;
		case O_MAP: strvec_push(&k->folder_map, optarg); break;
		case O_MAXSIZE:
			if (size_parse(optarg, &k->max_message_size) < 0 || !k->max_message_size) {
				fprintf(stderr, "imapmig: --max-message-size '%s': expected a size "
						"like 35M\n", optarg);
				return -1;
			}
			break;
		case O_MAXITEMS:
			if (cli_number("--max-items", optarg, 0, UINT64_MAX, &n) < 0)
				return -1;
			k->max_items = n;
			break;
		case O_PRESET:
			if (strcmp(optarg, "hosted") != 0) {
				fprintf(stderr, "imapmig: --preset knows 'hosted' only\n");
				return -1;
			}
			if (!k->max_items)
				k->max_items = 500000;
			if (!k->max_message_size)
				k->max_message_size = 35ull << 20;
			break;
		case O_JOBS:
			if (cli_number("--jobs", optarg, 1, 256, &n) < 0)
				return -1;
			k->jobs = (unsigned)n;
			break;
		case O_MAXCONN:
			if (cli_number("--max-connections", optarg, 1, 1024, &n) < 0)
				return -1;
			k->max_connections = (unsigned)n;
			break;
		case O_CONNS:
			if (cli_number("--connections-per-user", optarg, 1, 32, &n) < 0)
				return -1;
			k->connections_per_user = (unsigned)n;
			break;
		case O_APPEND_CONNS:
			if (cli_number("--append-connections", optarg, 1, 16, &n) < 0)
				return -1;
			k->append_connections = (unsigned)n;
			break;
		case O_START_AFTER:
			if (parse_time(optarg, &k->start_after) < 0) {
				fprintf(stderr, "imapmig: --start-after '%s': expected "
						"2026-12-01T22:00 (local time) or +2h\n", optarg);
				return -1;
			}
			break;
		case O_NOTIFY:
			if (!strchr(optarg, '@')) {
				fprintf(stderr, "imapmig: --notify '%s' is not a mail address\n", optarg);
				return -1;
			}
			strvec_push(&k->notify, optarg);
			break;
		case O_SMTP: free(k->smtp_url); k->smtp_url = xstrdup(optarg); break;
		case O_SMTP_PW: free(k->smtp_password_file); k->smtp_password_file = absolute(optarg); break;
		case O_SMTP_FROM: free(k->smtp_from); k->smtp_from = xstrdup(optarg); break;
		case O_STATE: a->state = optarg; break;
		case O_JSON: a->json = true; break;
		case O_DEBUG: a->debug = true; break;
		case O_FORMAT: a->format = optarg; break;
		case O_OUTPUT: a->output = optarg; break;
		case O_EVERY:
			a->every_s = parse_interval(optarg);
			if (a->every_s < 0) {
				fprintf(stderr, "imapmig: --every '%s': expected e.g. 24h, 30m, 1d\n",
					optarg);
				return -1;
			}
			break;
		case 'h':
		case O_HELP: return 1;
		default: return -1;
		}
	}
	return 0;
}

/* ---------- output of a running pass ---------- */

struct pass_out {
	struct progress *progress;
	bool json;
	const char *batch;
	struct buf line;
};

static void json_line(struct pass_out *po, struct buf *b)
{
	buf_puts(b, "}\n");
	flockfile(stdout);
	fwrite(b->data, 1, b->len, stdout);
	fflush(stdout);
	funlockfile(stdout);
}

static void on_batch_event(void *ctx, const struct batch_event *ev)
{
	struct pass_out *po = ctx;
	switch (ev->type) {
	case BATCH_EV_USER_STATUS:
		progress_status(po->progress, ev->idx, ev->user, ev->status);
		break;
	case BATCH_EV_USER_TOTALS:
		progress_totals(po->progress, ev->idx, ev->count, ev->bytes);
		break;
	case BATCH_EV_USER_PROGRESS:
		progress_done(po->progress, ev->idx, ev->count, ev->bytes);
		break;
	case BATCH_EV_ITEM:
		if (po->json) {
			struct buf b = BUF_INIT(0);
			buf_appendf(&b, "{\"event\":\"message_%s\",\"batch\":", ev->kind);
			json_string(&b, po->batch);
			buf_puts(&b, ",\"user\":");
			json_string(&b, ev->user);
			buf_puts(&b, ",\"folder\":");
			json_string(&b, ev->folder);
			buf_appendf(&b, ",\"uid\":%u,\"date\":", ev->uid);
			json_string(&b, ev->date);
			buf_puts(&b, ",\"subject\":");
			json_string(&b, ev->subject);
			buf_appendf(&b, ",\"size\":%llu,\"reason\":", (unsigned long long)ev->size);
			json_string(&b, ev->text);
			json_line(po, &b);
			buf_release(&b);
		} else {
			progress_note(po->progress, "%s: %s: folder \"%s\" UID %u (%s, \"%s\", %llu "
				      "bytes): %s", ev->user, ev->kind, ev->folder, ev->uid,
				      ev->date ? ev->date : "no date", ev->subject ? ev->subject : "",
				      (unsigned long long)ev->size, ev->text ? ev->text : "");
		}
		break;
	case BATCH_EV_WARNING:
	case BATCH_EV_WAITING:
		if (po->json) {
			struct buf b = BUF_INIT(0);
			buf_puts(&b, ev->type == BATCH_EV_WAITING ? "{\"event\":\"waiting\",\"batch\":"
								   : "{\"event\":\"warning\",\"batch\":");
			json_string(&b, po->batch);
			if (ev->user) {
				buf_puts(&b, ",\"user\":");
				json_string(&b, ev->user);
			}
			buf_puts(&b, ",\"text\":");
			json_string(&b, ev->text);
			json_line(po, &b);
			buf_release(&b);
		} else {
			progress_note(po->progress, "%s%s%s", ev->user ? ev->user : "",
				      ev->user ? ": " : "", ev->text);
		}
		break;
	case BATCH_EV_USER_DONE:
		if (po->json) {
			struct buf b = BUF_INIT(0);
			buf_puts(&b, "{\"event\":\"user_done\",\"batch\":");
			json_string(&b, po->batch);
			buf_puts(&b, ",\"user\":");
			json_string(&b, ev->user);
			buf_puts(&b, ",\"status\":");
			json_string(&b, ev->status);
			buf_appendf(&b, ",\"messages_copied\":%llu,\"messages_skipped\":%llu,"
					"\"messages_failed\":%llu,\"bytes\":%llu,\"error\":",
				    (unsigned long long)ev->copied, (unsigned long long)ev->skipped,
				    (unsigned long long)ev->failed, (unsigned long long)ev->bytes);
			json_string(&b, ev->text);
			json_line(po, &b);
			buf_release(&b);
		} else if (ev->text) {
			progress_note(po->progress, "%s: %s: %s", ev->user, ev->status, ev->text);
		}
		break;
	}
}

/* ---------- helpers ---------- */

static struct state *open_state(const char *path, char **default_r, struct err *err)
{
	*default_r = NULL;
	if (!path) {
		path = *default_r = state_default_path();
		if (!path) {
			err_set(err, ERR_CONFIG, "no home directory to keep the state database in");
			err_hint(err, "pass --state PATH");
			return NULL;
		}
	}
	return state_open(path, err);
}

static const char *state_path_or_default(const char *path, char **owned)
{
	if (path)
		return path;
	*owned = state_default_path();
	return *owned;
}

static int write_file_0600(const char *path, const struct buf *b, struct err *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(err, ERR_CONFIG, "cannot write %s: %s", path, strerror(errno));
	fchmod(fd, 0600);
	size_t off = 0;
	while (off < b->len) {
		ssize_t n = write(fd, b->data + off, b->len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return err_set(err, ERR_INTERNAL, "cannot write %s: %s", path, strerror(errno));
		}
		off += (size_t)n;
	}
	if (close(fd) < 0)
		return err_set(err, ERR_INTERNAL, "cannot write %s: %s", path, strerror(errno));
	return 0;
}

/* Mail the report when the batch reached Synced/Completed and that was
 * not mailed yet. */
static void maybe_notify(const char *state_path, const char *name, bool json)
{
	struct err err;
	err_clear(&err);
	struct state *st = state_open(state_path, &err);
	if (!st)
		return;
	struct batch_report br;
	struct batch_config cfg = { 0 };
	if (batch_report_load(st, name, &br, &err) != 1)
		goto out_state;
	if (batch_config_parse(br.batch.config, &cfg, &err) < 0 || !cfg.notify.n)
		goto out;
	const char *status = br.batch.status;
	if ((strcmp(status, "Synced") && strcmp(status, "Completed")) ||
	    !strcmp(br.batch.notified_status, status))
		goto out;
	if (!cfg.smtp_url) {
		fprintf(stderr, "imapmig: batch '%s' has --notify but no --smtp server; report not "
				"mailed\n", name);
		goto out;
	}
	char *pw = NULL;
	if (cfg.smtp_password_file || getenv("IMAPMIG_SMTP_PASSWORD"))
		pw = secret_get(cfg.smtp_password_file, "IMAPMIG_SMTP_PASSWORD", NULL, &err);
	char host[256] = "localhost";
	gethostname(host, sizeof(host) - 1);
	char *from = cfg.smtp_from ? xstrdup(cfg.smtp_from) : xasprintf("imapmig@%s", host);
	struct mail_opts mo = {
		.smtp_url = cfg.smtp_url,
		.password = pw,
		.from = from,
		.to = (const char *const *)cfg.notify.items,
		.n_to = cfg.notify.n,
		.ca_file = cfg.ca_file,
		.timeout_ms = (int)(cfg.timeout_s ? cfg.timeout_s : 60) * 1000,
		.allow_plaintext = cfg.allow_plaintext,
	};
	if (report_mail(&br.r, &mo, &err) < 0) {
		cli_error(&err);
	} else {
		batch_store_set_notified(st, br.batch.id, status, &err);
		if (json)
			printf("{\"event\":\"report_mailed\",\"batch\":\"%s\",\"to\":%zu}\n", name,
			       cfg.notify.n);
		else
			fprintf(stderr, "report mailed to %zu recipient(s)\n", cfg.notify.n);
	}
	free(from);
	secret_free(&pw);
out:
	batch_config_release(&cfg);
	batch_report_release(&br);
out_state:
	state_close(&st);
}

/* --debug: each line labelled with the user and its connection. */
static void trace(void *ctx, const char *user, enum side side, unsigned no, char dir,
		  const uint8_t *data, size_t len)
{
	(void)ctx;
	cli_trace_side(user, side, no, dir, data, len);
}

static int run_pass(struct batch_args *a, enum batch_pass pass)
{
	char *owned = NULL;
	const char *state_path = state_path_or_default(a->state, &owned);
	if (!state_path) {
		fprintf(stderr, "imapmig: no home directory for the state; pass --state PATH\n");
		return EXIT_USAGE;
	}
	/* users count for the progress slots */
	struct err err;
	err_clear(&err);
	size_t n_users = 0;
	{
		struct state *st = state_open(state_path, &err);
		struct batch_row b;
		if (st && batch_store_get(st, a->name, &b, &err) == 1) {
			struct batch_user_row *u = NULL;
			if (batch_store_users(st, b.id, &u, &n_users, &err) == 0)
				batch_user_rows_free(u, n_users);
			batch_row_release(&b);
		}
		state_close(&st);
	}
	if (!n_users) {
		if (!err.what[0])
			err_set(&err, ERR_CONFIG, "there is no batch named '%s'", a->name);
		cli_error(&err);
		free(owned);
		return cli_exit_for(&err);
	}
	enum progress_mode mode = a->json ? PROGRESS_JSON
				  : isatty(STDERR_FILENO) ? PROGRESS_TTY
							  : PROGRESS_LOG;
	struct pass_out po = { .json = a->json, .batch = a->name };
	po.progress = progress_new(mode, a->json ? stdout : stderr, a->name, n_users ? n_users : 1,
				   10);
	struct batch_run_opts o = {
		.state_path = state_path,
		.name = a->name,
		.pass = pass,
		.event = on_batch_event,
		.event_ctx = &po,
		.should_stop = cli_stop_requested,
		.trace = a->debug ? trace : NULL,
	};
	struct batch_result res;
	int r = batch_run(&o, &res, &err);
	progress_finish(po.progress);
	progress_free(&po.progress);
	int status;
	if (r < 0) {
		cli_error(&err);
		status = cli_exit_for(&err);
	} else {
		if (a->json)
			printf("{\"event\":\"batch_done\",\"batch\":\"%s\",\"status\":\"%s\","
			       "\"users\":%zu,\"ran\":%zu,\"failed\":%zu,\"stopped\":%zu}\n",
			       a->name, res.status, res.users, res.ran, res.failed, res.stopped);
		else
			printf("batch %s: %s (%zu users: %zu run now, %zu failed, %zu stopped)\n",
			       a->name, res.status, res.users, res.ran, res.failed, res.stopped);
		fflush(stdout);
		maybe_notify(state_path, a->name, a->json);
		status = res.stopped ? EXIT_STOPPED : res.failed ? EXIT_PARTIAL : EXIT_OK;
	}
	free(owned);
	return status;
}

/* ---------- commands ---------- */

static int cmd_create(struct batch_args *a)
{
	if (!a->cfg.source_url || !a->cfg.target_url || !a->csv) {
		fprintf(stderr, "imapmig batch create: --source, --target and --csv are required\n\n%s",
			create_usage);
		return EXIT_USAGE;
	}
	if (a->cfg.notify.n && !a->cfg.smtp_url) {
		fprintf(stderr, "imapmig batch create: --notify needs --smtp URL (the server that "
				"sends the report, e.g. smtp://mail.example.com:587)\n");
		return EXIT_USAGE;
	}
	if (a->cfg.smtp_url && strncmp(a->cfg.smtp_url, "smtp://", 7) &&
	    strncmp(a->cfg.smtp_url, "smtps://", 8)) {
		fprintf(stderr, "imapmig batch create: --smtp '%s': expected smtp://host[:port] or "
				"smtps://host[:port]\n", a->cfg.smtp_url);
		return EXIT_USAGE;
	}
	if (a->cfg.insecure)
		fprintf(stderr, "imapmig: WARNING: --insecure: server certificates will NOT be "
				"verified for this batch\n");
	char *owned = NULL;
	const char *state_path = state_path_or_default(a->state, &owned);
	struct err err;
	err_clear(&err);
	int status = EXIT_OK;
	if (!state_path) {
		fprintf(stderr, "imapmig: no home directory for the state; pass --state PATH\n");
		status = EXIT_USAGE;
	} else if (batch_create(state_path, a->name, a->csv, &a->cfg, &err) < 0) {
		cli_error(&err);
		status = cli_exit_for(&err);
	} else if (a->json) {
		printf("{\"event\":\"batch_created\",\"batch\":\"%s\"}\n", a->name);
	} else {
		printf("batch %s created; start it with: imapmig batch start %s%s%s\n", a->name,
		       a->name, a->state ? " --state " : "", a->state ? a->state : "");
	}
	free(owned);
	return status;
}

static void fmt_time(time_t t, char *out, size_t len)
{
	if (!t) {
		snprintf(out, len, "-");
		return;
	}
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int cmd_status(struct batch_args *a)
{
	char *owned = NULL;
	struct err err;
	err_clear(&err);
	struct state *st = open_state(a->state, &owned, &err);
	int status = EXIT_OK;
	struct batch_report br;
	int found = st ? batch_report_load(st, a->name, &br, &err) : -1;
	if (found <= 0) {
		if (found == 0)
			err_set(&err, ERR_CONFIG, "there is no batch named '%s'", a->name);
		cli_error(&err);
		status = cli_exit_for(&err);
		goto out;
	}
	if (a->json) {
		struct buf b = BUF_INIT(0);
		if (report_write_json(&br.r, &b, &err) == 0)
			fwrite(b.data, 1, b.len, stdout);
		buf_release(&b);
	} else {
		printf("batch %s: %s\n", br.r.batch, br.r.status);
		printf("  %-32s %-18s %8s %8s %8s %10s  %s\n", "user", "status", "synced",
		       "skipped", "failed", "MB", "last synced");
		for (size_t i = 0; i < br.r.n_users; i++) {
			const struct report_user *u = &br.r.users[i];
			char t[32];
			fmt_time(u->last_synced, t, sizeof(t));
			printf("  %-32s %-18s %8llu %8llu %8llu %10.1f  %s\n", u->email, u->status,
			       (unsigned long long)u->items_synced,
			       (unsigned long long)u->items_skipped,
			       (unsigned long long)u->items_failed, (double)u->bytes / 1e6, t);
			if (u->error)
				printf("      error: %s\n", u->error);
		}
	}
	batch_report_release(&br);
out:
	state_close(&st);
	free(owned);
	return status;
}

static int cmd_report(struct batch_args *a)
{
	const char *fmt = a->format ? a->format : "csv";
	if (strcmp(fmt, "csv") && strcmp(fmt, "json") && strcmp(fmt, "html")) {
		fprintf(stderr, "imapmig: --format is csv, json or html\n");
		return EXIT_USAGE;
	}
	char *owned = NULL;
	struct err err;
	err_clear(&err);
	struct state *st = open_state(a->state, &owned, &err);
	int status = EXIT_OK;
	struct batch_report br;
	struct buf b = BUF_INIT(0);
	int found = st ? batch_report_load(st, a->name, &br, &err) : -1;
	if (found <= 0) {
		if (found == 0)
			err_set(&err, ERR_CONFIG, "there is no batch named '%s'", a->name);
		cli_error(&err);
		status = cli_exit_for(&err);
		goto out;
	}
	int r = !strcmp(fmt, "csv")    ? report_write_csv(&br.r, &b, &err)
		: !strcmp(fmt, "json") ? report_write_json(&br.r, &b, &err)
				       : report_write_html(&br.r, &b, &err);
	if (r == 0 && a->output)
		r = write_file_0600(a->output, &b, &err);
	else if (r == 0)
		fwrite(b.data, 1, b.len, stdout);
	if (r < 0) {
		cli_error(&err);
		status = cli_exit_for(&err);
	}
	batch_report_release(&br);
out:
	buf_release(&b);
	state_close(&st);
	free(owned);
	return status;
}

static int cmd_list(struct batch_args *a)
{
	char *owned = NULL;
	struct err err;
	err_clear(&err);
	struct state *st = open_state(a->state, &owned, &err);
	struct batch_row *rows = NULL;
	size_t n = 0;
	int status = EXIT_OK;
	if (!st || batch_store_list(st, &rows, &n, &err) < 0) {
		cli_error(&err);
		status = cli_exit_for(&err);
		goto out;
	}
	if (a->json)
		printf("[");
	for (size_t i = 0; i < n; i++) {
		char t[32];
		fmt_time(rows[i].created, t, sizeof(t));
		/* "Syncing" left by a killed pass: the status the report shows */
		struct batch_report br;
		if (batch_status_is_running(rows[i].status) &&
		    batch_report_load(st, rows[i].name, &br, &err) == 1) {
			free(rows[i].status);
			rows[i].status = xstrdup(br.batch.status);
			batch_report_release(&br);
		}
		if (a->json) {
			struct buf b = BUF_INIT(0);
			buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
			json_string(&b, rows[i].name);
			buf_puts(&b, ",\"status\":");
			json_string(&b, rows[i].status);
			buf_appendf(&b, ",\"created\":\"%s\"}", t);
			fwrite(b.data, 1, b.len, stdout);
			buf_release(&b);
		} else {
			printf("%-24s %-18s created %s\n", rows[i].name, rows[i].status, t);
		}
		batch_row_release(&rows[i]);
	}
	if (a->json)
		printf("]\n");
	free(rows);
out:
	state_close(&st);
	free(owned);
	return status;
}

static int cmd_remove(struct batch_args *a)
{
	char *owned = NULL;
	struct err err;
	err_clear(&err);
	struct state *st = open_state(a->state, &owned, &err);
	struct batch_row b;
	int status = EXIT_OK;
	int found = st ? batch_store_get(st, a->name, &b, &err) : -1;
	if (found == 0)
		err_set(&err, ERR_CONFIG, "there is no batch named '%s'", a->name);
	if (found == 1) {
		if (batch_store_remove(st, b.id, &err) == 0)
			printf("batch %s removed (the mail already copied stays on the target)\n",
			       a->name);
		else
			found = -1;
		batch_row_release(&b);
	}
	if (found != 1) {
		cli_error(&err);
		status = cli_exit_for(&err);
	}
	state_close(&st);
	free(owned);
	return status;
}

static int cmd_stop(struct batch_args *a)
{
	char *owned = NULL;
	const char *path = state_path_or_default(a->state, &owned);
	struct err err;
	err_clear(&err);
	int status = EXIT_OK;
	if (!path || batch_request_stop(path, a->name, &err) < 0) {
		cli_error(&err);
		status = cli_exit_for(&err);
	} else {
		printf("asked batch %s to stop; running users stop after their current step\n",
		       a->name);
	}
	free(owned);
	return status;
}

static int cmd_run(struct batch_args *a)
{
	if (a->every_s <= 0) {
		fprintf(stderr, "imapmig batch run: --every INTERVAL is required (e.g. 24h)\n");
		return EXIT_USAGE;
	}
	for (;;) {
		char *owned = NULL;
		struct err err;
		err_clear(&err);
		struct state *st = open_state(a->state, &owned, &err);
		struct batch_row b;
		int found = st ? batch_store_get(st, a->name, &b, &err) : -1;
		state_close(&st);
		free(owned);
		if (found != 1) {
			if (found == 0)
				err_set(&err, ERR_CONFIG, "there is no batch named '%s'", a->name);
			cli_error(&err);
			return cli_exit_for(&err);
		}
		bool fresh = !strcmp(b.status, "Created") || !strcmp(b.status, "Queued");
		bool completed = !strcmp(b.status, "Completed");
		batch_row_release(&b);
		if (completed)
			return EXIT_OK;
		int r = run_pass(a, fresh ? BATCH_PASS_START : BATCH_PASS_SYNC);
		if (r == EXIT_STOPPED || r == EXIT_USAGE)
			return r;
		/* wait, seeing Ctrl-C and 'batch stop' */
		for (long s = 0; s < a->every_s; s++) {
			if (cli_stop_requested(NULL))
				return EXIT_STOPPED;
			sleep(1);
		}
	}
}

int cmd_batch(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(batch_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	struct batch_args a = { .cmd = argv[1] };
	int r = parse_args(argc - 1, argv + 1, &a);
	int status;
	if (r != 0) {
		fputs(!strcmp(a.cmd, "create") ? create_usage : batch_usage,
		      r > 0 ? stdout : stderr);
		status = r > 0 ? EXIT_OK : EXIT_USAGE;
		goto out;
	}
	int rest = argc - 1 - optind;
	bool needs_name = strcmp(a.cmd, "list") != 0;
	if ((needs_name && rest != 1) || (!needs_name && rest != 0)) {
		fprintf(stderr, "imapmig batch %s: %s\n\n%s", a.cmd,
			needs_name ? "expected one batch NAME" : "takes no NAME", batch_usage);
		status = EXIT_USAGE;
		goto out;
	}
	a.name = needs_name ? argv[1 + optind] : NULL;
	if (!strcmp(a.cmd, "create"))
		status = cmd_create(&a);
	else if (!strcmp(a.cmd, "start"))
		status = run_pass(&a, BATCH_PASS_START);
	else if (!strcmp(a.cmd, "sync"))
		status = run_pass(&a, BATCH_PASS_SYNC);
	else if (!strcmp(a.cmd, "complete"))
		status = run_pass(&a, BATCH_PASS_COMPLETE);
	else if (!strcmp(a.cmd, "stop"))
		status = cmd_stop(&a);
	else if (!strcmp(a.cmd, "status"))
		status = cmd_status(&a);
	else if (!strcmp(a.cmd, "report"))
		status = cmd_report(&a);
	else if (!strcmp(a.cmd, "remove"))
		status = cmd_remove(&a);
	else if (!strcmp(a.cmd, "list"))
		status = cmd_list(&a);
	else if (!strcmp(a.cmd, "run"))
		status = cmd_run(&a);
	else {
		fprintf(stderr, "imapmig batch: '%s' is not a batch command\n\n%s", a.cmd,
			batch_usage);
		status = EXIT_USAGE;
	}
out:
	batch_config_release(&a.cfg);
	return status;
}
