/* batch.c - see batch.h.
 *
 * Threads: the caller's thread loads the batch, reads the passwords and
 * starts `jobs` workers; each worker opens its own state handle and takes
 * the next user from a shared queue until it is empty or a stop is asked
 * for.  Only the queue index and the stop flag are shared (under a
 * mutex); everything a worker touches otherwise is its own.
 */
#include "batch/batch.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch/csv.h"
#include "engine/sync.h"
#include "store/batch_store.h"
#include "store/state.h"
#include "util/buf.h"
#include "util/mem.h"
#include "util/secret.h"
#include "util/url.h"

#define MAX_ATTEMPTS 5
#define BACKOFF_CAP_S 60

/* ---------- config ---------- */

static void put(struct buf *b, const char *key, const char *value)
{
	if (!value)
		return;
	buf_appendf(b, "%s=", key);
	for (const char *p = value; *p; p++) {
		if (*p == '\n')
			buf_puts(b, "\\n");
		else if (*p == '\\')
			buf_puts(b, "\\\\");
		else
			buf_putc(b, *p);
	}
	buf_putc(b, '\n');
}

static void put_list(struct buf *b, const char *key, const struct strvec *v)
{
	for (size_t i = 0; i < v->n; i++)
		put(b, key, v->items[i]);
}

char *batch_config_serialize(const struct batch_config *c)
{
	struct buf b = BUF_INIT(0);
	char num[32];
	put(&b, "source", c->source_url);
	put(&b, "target", c->target_url);
	put(&b, "ca-file", c->ca_file);
	put_list(&b, "resolve", &c->resolve);
	put(&b, "allow-plaintext", c->allow_plaintext ? "1" : NULL);
	put(&b, "insecure", c->insecure ? "1" : NULL);
	snprintf(num, sizeof(num), "%u", c->timeout_s);
	put(&b, "timeout", num);
	put(&b, "source-admin", c->source_admin);
	put(&b, "target-admin", c->target_admin);
	put(&b, "admin-style", c->admin_mode == IMAP_ADMIN_MASTER_SEP ? "master" : "authzid");
	put(&b, "source-password-file", c->source_password_file);
	put(&b, "target-password-file", c->target_password_file);
	put_list(&b, "include", &c->include);
	put_list(&b, "exclude", &c->exclude);
	put_list(&b, "folder-map", &c->folder_map);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)c->max_message_size);
	put(&b, "max-message-size", num);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)c->max_items);
	put(&b, "max-items", num);
	snprintf(num, sizeof(num), "%u", c->jobs);
	put(&b, "jobs", num);
	snprintf(num, sizeof(num), "%u", c->max_connections);
	put(&b, "max-connections", num);
	snprintf(num, sizeof(num), "%u", c->connections_per_user);
	put(&b, "connections-per-user", num);
	snprintf(num, sizeof(num), "%u", c->append_connections);
	put(&b, "append-connections", num);
	put_list(&b, "notify", &c->notify);
	put(&b, "smtp", c->smtp_url);
	put(&b, "smtp-password-file", c->smtp_password_file);
	put(&b, "smtp-from", c->smtp_from);
	return buf_detach(&b, NULL);
}

static char *unescape(const char *s, size_t len)
{
	struct buf b = BUF_INIT(0);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\' && i + 1 < len) {
			i++;
			buf_putc(&b, s[i] == 'n' ? '\n' : s[i]);
		} else {
			buf_putc(&b, s[i]);
		}
	}
	return buf_detach(&b, NULL);
}

static void set_str(char **dst, char *v)
{
	free(*dst);
	*dst = v;
}

int batch_config_parse(const char *text, struct batch_config *c, struct err *err)
{
	memset(c, 0, sizeof(*c));
	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (!eq) {
			batch_config_release(c);
			return err_set(err, ERR_INTERNAL, "stored batch settings are damaged");
		}
		size_t klen = (size_t)(eq - p);
		char *key = xstrndup(p, klen);
		char *v = unescape(eq + 1, len - klen - 1);
		unsigned long long n = strtoull(v, NULL, 10);
		if (!strcmp(key, "source")) set_str(&c->source_url, v), v = NULL;
		else if (!strcmp(key, "target")) set_str(&c->target_url, v), v = NULL;
		else if (!strcmp(key, "ca-file")) set_str(&c->ca_file, v), v = NULL;
		else if (!strcmp(key, "resolve")) strvec_push(&c->resolve, v);
		else if (!strcmp(key, "allow-plaintext")) c->allow_plaintext = true;
		else if (!strcmp(key, "insecure")) c->insecure = true;
		else if (!strcmp(key, "timeout")) c->timeout_s = (unsigned)n;
		else if (!strcmp(key, "source-admin")) set_str(&c->source_admin, v), v = NULL;
		else if (!strcmp(key, "target-admin")) set_str(&c->target_admin, v), v = NULL;
		else if (!strcmp(key, "admin-style"))
			c->admin_mode = !strcmp(v, "master") ? IMAP_ADMIN_MASTER_SEP : IMAP_ADMIN_AUTHZID;
		else if (!strcmp(key, "source-password-file")) set_str(&c->source_password_file, v), v = NULL;
		else if (!strcmp(key, "target-password-file")) set_str(&c->target_password_file, v), v = NULL;
		else if (!strcmp(key, "include")) strvec_push(&c->include, v);
		else if (!strcmp(key, "exclude")) strvec_push(&c->exclude, v);
		else if (!strcmp(key, "folder-map")) strvec_push(&c->folder_map, v);
		else if (!strcmp(key, "max-message-size")) c->max_message_size = n;
		else if (!strcmp(key, "max-items")) c->max_items = n;
		else if (!strcmp(key, "jobs")) c->jobs = (unsigned)n;
		else if (!strcmp(key, "max-connections")) c->max_connections = (unsigned)n;
		else if (!strcmp(key, "connections-per-user")) c->connections_per_user = (unsigned)n;
		else if (!strcmp(key, "append-connections")) c->append_connections = (unsigned)n;
		else if (!strcmp(key, "notify")) strvec_push(&c->notify, v);
		else if (!strcmp(key, "smtp")) set_str(&c->smtp_url, v), v = NULL;
		else if (!strcmp(key, "smtp-password-file")) set_str(&c->smtp_password_file, v), v = NULL;
		else if (!strcmp(key, "smtp-from")) set_str(&c->smtp_from, v), v = NULL;
		/* unknown keys: written by a newer imapmig; ignored */
		free(key);
		free(v);
		p += len + (nl ? 1 : 0);
	}
	return 0;
}

void batch_config_release(struct batch_config *c)
{
	free(c->source_url);
	free(c->target_url);
	free(c->ca_file);
	strvec_clear(&c->resolve);
	free(c->source_admin);
	free(c->target_admin);
	free(c->source_password_file);
	free(c->target_password_file);
	strvec_clear(&c->include);
	strvec_clear(&c->exclude);
	strvec_clear(&c->folder_map);
	strvec_clear(&c->notify);
	free(c->smtp_url);
	free(c->smtp_password_file);
	free(c->smtp_from);
	memset(c, 0, sizeof(*c));
}

/* ---------- create ---------- */

static int file_sha256(const char *path, char out[65], struct err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, ERR_CONFIG, "cannot read %s: %s", path, strerror(errno));
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	uint8_t chunk[65536];
	ssize_t n;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		EVP_DigestUpdate(md, chunk, (size_t)n);
	close(fd);
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int dl = 0;
	EVP_DigestFinal_ex(md, d, &dl);
	EVP_MD_CTX_free(md);
	mem_wipe(chunk, sizeof(chunk));
	if (n < 0)
		return err_set(err, ERR_CONFIG, "cannot read %s: %s", path, strerror(errno));
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
	return 0;
}

/* A batch endpoint is a server without a user: users come from the CSV. */
static int check_endpoint(const char *what, const char *url, struct err *err)
{
	struct imap_url u;
	if (imap_url_parse(url, &u, err) < 0) {
		err_prefix(err, "--%s", what);
		return -1;
	}
	bool has_user = u.user != NULL;
	imap_url_release(&u);
	if (has_user) {
		err_set(err, ERR_CONFIG, "--%s %s names a user; a batch takes its users from the CSV",
			what, url);
		err_hint(err, "write the server only, e.g. imaps://mail.example.org");
		return -1;
	}
	return 0;
}

static struct csv_rules csv_rules_for(const struct batch_config *c)
{
	struct csv_rules r = { .source_password_optional = c->source_admin != NULL,
			       .target_password_optional = c->target_admin != NULL };
	return r;
}

/* Every user needs a way to log in to the target. */
static int check_target_logins(const char *csv_path, const struct csv_users *u,
			       const struct batch_config *c, struct err *err)
{
	if (c->target_admin)
		return 0;
	for (size_t i = 0; i < u->count; i++) {
		if (!u->items[i].target_password || !u->items[i].target_password[0]) {
			err_set(err, ERR_CONFIG,
				"%s:%u: no TargetPassword for %s, and no --target-admin",
				csv_path, u->items[i].line, u->items[i].email);
			err_hint(err, "give the target an admin (--target-admin, the admin password "
				      "in --target-password-file) or add TargetUserName,TargetPassword "
				      "columns");
			return -1;
		}
	}
	return 0;
}

int batch_create(const char *state_path, const char *name, const char *csv_path,
		 const struct batch_config *c, struct err *err)
{
	if (!name[0] || strlen(name) > 200 || strchr(name, '/'))
		return err_set(err, ERR_CONFIG, "'%s' is not a usable batch name", name);
	if (check_endpoint("source", c->source_url, err) < 0 ||
	    check_endpoint("target", c->target_url, err) < 0)
		return -1;
	struct folder_rules fr = {
		.renames = (const char *const *)c->folder_map.items, .n_renames = c->folder_map.n,
	};
	if (folder_rules_check(&fr, err) < 0)
		return -1;
	char abs[PATH_MAX];
	if (!realpath(csv_path, abs))
		return err_set(err, ERR_CONFIG, "cannot read the CSV %s: %s", csv_path,
			       strerror(errno));
	struct csv_rules rules = csv_rules_for(c);
	struct csv_users users = { 0 };
	if (csv_read_users(csv_path, &rules, &users, err) < 0)
		return -1;
	int r = -1;
	struct state *st = NULL;
	struct batch_user_row *rows = NULL;
	char *config = NULL;
	char sha[65];
	if (check_target_logins(csv_path, &users, c, err) < 0 || file_sha256(abs, sha, err) < 0)
		goto out;
	rows = xcalloc(users.count + 1, sizeof(*rows));
	for (size_t i = 0; i < users.count; i++) {
		rows[i].email = users.items[i].email;
		rows[i].source_user = users.items[i].user;
		rows[i].target_user = users.items[i].target_user ? users.items[i].target_user
								  : users.items[i].email;
	}
	st = state_open(state_path, err);
	if (!st)
		goto out;
	config = batch_config_serialize(c);
	struct batch_row b = {
		.name = (char *)name,
		.status = (char *)"Created",
		.config = config,
		.csv_path = abs,
		.csv_sha256 = sha,
		.created = time(NULL),
		.start_after = c->start_after,
	};
	r = batch_store_create(st, &b, rows, users.count, err);
out:
	free(config);
	free(rows);
	state_close(&st);
	csv_users_release(&users);
	return r;
}

/* ---------- statuses ---------- */

static bool is(const char *s, const char *t)
{
	return strcmp(s, t) == 0;
}

bool batch_status_is_running(const char *status)
{
	return is(status, "Syncing") || is(status, "IncrementalSyncing") ||
	       is(status, "Completing");
}

const char *batch_status_from_users(const char *const *st, size_t n, enum batch_pass pass)
{
	size_t failed = 0, stopped = 0, completed = 0, synced = 0, running = 0, fresh = 0;
	size_t interrupted = 0;
	for (size_t i = 0; i < n; i++) {
		if (is(st[i], "Failed"))
			failed++;
		else if (is(st[i], "Stopped"))
			stopped++;
		else if (is(st[i], "Interrupted"))
			interrupted++;
		else if (is(st[i], "Completed"))
			completed++;
		else if (is(st[i], "Synced"))
			synced++;
		else if (is(st[i], "Created") || is(st[i], "Queued"))
			fresh++;
		else
			running++;
	}
	(void)pass;
	if (running)
		return "Syncing";
	if (interrupted)
		return "Interrupted";
	if (stopped)
		return "Stopped";
	if (n && failed == n)
		return "Failed";
	if (fresh == n)
		return "Created";
	if (fresh)
		return "Syncing";
	if (completed && completed + failed == n)
		return "Completed";
	return "Synced";
}

/* ---------- the pass lock ---------- */

/* The batch's byte in <state>.lock.  Mailbox pairs use offsets below
 * 2^46 (lockfile_take masks their hash), batches the offsets above. */
static off_t batch_lock_offset(int64_t batch_id)
{
	return (off_t)((1ull << 46) + (uint64_t)batch_id);
}

static int lock_open(const char *state_path)
{
	char *path = xasprintf("%s.lock", state_path);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(path);
	return fd;
}

/* F_RDLCK or F_WRLCK on the batch's byte; on the same descriptor a
 * second call converts the lock in one step.  0, or -1 with errno. */
static int lock_set(int fd, int64_t batch_id, short type, bool wait)
{
	struct flock fl = {
		.l_type = type,
		.l_whence = SEEK_SET,
		.l_start = batch_lock_offset(batch_id),
		.l_len = 1,
	};
	int r;
	do
		r = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
	while (r < 0 && errno == EINTR);
	return r;
}

bool batch_hold(const char *state_path, int64_t batch_id, int *fd_r)
{
	*fd_r = lock_open(state_path);
	if (*fd_r < 0)
		return false;
	if (lock_set(*fd_r, batch_id, F_WRLCK, false) < 0) {
		batch_hold_release(fd_r);
		return false;
	}
	return true;
}

void batch_hold_release(int *fd)
{
	if (*fd < 0)
		return;
	close(*fd); /* drops the lock */
	*fd = -1;
}

/* ---------- running ---------- */

struct worker_shared {
	const struct batch_run_opts *o;
	struct batch_row batch;
	struct batch_config cfg;
	struct batch_user_row *users;
	size_t n_users;
	struct csv_users csv;
	char *source_admin_pw, *target_admin_pw;
	char *source_host, *target_host;
	uint16_t source_port, target_port;
	bool source_tls, target_tls;
	char *source_addr, *target_addr; /* --resolve */
	size_t *queue;
	size_t n_queue, next;
	bool stop;
	unsigned workers_done;
	pthread_mutex_t lock;
	pthread_cond_t worker_done; /* signalled under lock as workers end */
	struct batch_result *res;
	/* test hook, from $IMAPMIG_TEST_PAUSE_BEFORE_STATUS: see run_user() */
	unsigned pause_before_status_s;
};

struct worker {
	struct worker_shared *sh;
	struct state *st;
	size_t idx; /* user being run */
	const char *email;
	uint64_t copied, skipped, failed, bytes;
};

static void event(struct worker_shared *sh, const struct batch_event *ev)
{
	if (sh->o->event)
		sh->o->event(sh->o->event_ctx, ev);
}

/* Called from any thread, engine threads included: looks only at the
 * shared flag (set by the coordinator, which polls the database) and the
 * caller's callback (Ctrl-C), never at a state handle. */
static bool stop_now(struct worker *w)
{
	struct worker_shared *sh = w->sh;
	pthread_mutex_lock(&sh->lock);
	bool stop = sh->stop;
	pthread_mutex_unlock(&sh->lock);
	if (stop)
		return true;
	if (!sh->o->should_stop || !sh->o->should_stop(sh->o->stop_ctx))
		return false;
	pthread_mutex_lock(&sh->lock);
	sh->stop = true;
	pthread_mutex_unlock(&sh->lock);
	return true;
}

/* The coordinator's view: also `imapmig batch stop` from another process. */
static bool stop_polled(struct worker_shared *sh, struct state *st)
{
	bool asked = false;
	struct err ignore;
	if (batch_store_stop_requested(st, sh->batch.id, &asked, &ignore) == 0 && asked) {
		pthread_mutex_lock(&sh->lock);
		sh->stop = true;
		pthread_mutex_unlock(&sh->lock);
	}
	struct worker w0 = { .sh = sh };
	return stop_now(&w0);
}

static bool engine_should_stop(void *ctx)
{
	return stop_now(ctx);
}

/* Record u's new status (and its other fields), unless a pass in another
 * process has moved the user on to Completing/Completed since this pass
 * read it (see batch_store_user_update_pass): then u is refreshed from
 * the database, the caller is told (false) and must leave the user be.
 * A failed write is only warned about (true): the pass goes on. */
static bool set_status(struct worker *w, struct batch_user_row *u, const char *status,
		       const char *error)
{
	struct worker_shared *sh = w->sh;
	free(u->status);
	u->status = xstrdup(status);
	free(u->error);
	u->error = xstrdup(error ? error : "");
	struct err e;
	bool written = true;
	struct batch_user_row now;
	if (batch_store_user_update_pass(w->st, sh->batch.id, u, sh->o->pass == BATCH_PASS_COMPLETE,
					 &written, &e) < 0 ||
	    (!written && batch_store_user_get(w->st, sh->batch.id, u->idx, &now, &e) < 0)) {
		char text[2048];
		struct batch_event ev = { .type = BATCH_EV_WARNING, .idx = u->idx, .user = u->email,
					  .text = err_format(&e, text, sizeof(text)) };
		event(sh, &ev);
		written = true;
	} else if (!written) {
		/* the row exists (it did not match the condition): idx and
		 * names are the same, everything else is the other pass's */
		char *msg = xasprintf("%s by another imapmig meanwhile; this pass leaves the user "
				      "so (its own result: %s%s%s)",
				      now.status, status, error ? ": " : "", error ? error : "");
		batch_user_row_release(u);
		*u = now;
		struct batch_event ev = { .type = BATCH_EV_WARNING, .idx = u->idx, .user = u->email,
					  .text = msg };
		event(sh, &ev);
		free(msg);
		status = u->status;
		error = u->error[0] ? u->error : NULL;
	}
	struct batch_event ev = { .type = BATCH_EV_USER_STATUS, .idx = u->idx, .user = u->email,
				  .status = status, .text = error };
	event(sh, &ev);
	return written;
}

static void on_sync_event(void *ctx, const struct sync_event *sev)
{
	struct worker *w = ctx;
	struct batch_event ev = { .idx = w->idx, .user = w->email };
	switch (sev->type) {
	case SYNC_EV_TOTALS:
		ev.type = BATCH_EV_USER_TOTALS;
		ev.count = sev->count;
		ev.bytes = sev->bytes;
		break;
	case SYNC_EV_PROGRESS:
		ev.type = BATCH_EV_USER_PROGRESS;
		ev.count = sev->count;
		ev.bytes = sev->bytes;
		break;
	case SYNC_EV_MESSAGE_SKIPPED:
	case SYNC_EV_MESSAGE_FAILED: {
		ev.type = BATCH_EV_ITEM;
		ev.kind = sev->type == SYNC_EV_MESSAGE_SKIPPED ? "skipped" : "failed";
		ev.folder = sev->folder;
		ev.uid = sev->uid;
		ev.date = sev->date;
		ev.subject = sev->subject;
		ev.size = sev->size;
		ev.text = sev->text;
		/* Written through the worker's handle, inside the engine's
		 * transaction for this window: kept exactly when the window is. */
		struct batch_item_row it = {
			.idx = w->idx,
			.folder = (char *)sev->folder,
			.uid = sev->uid,
			.kind = (char *)ev.kind,
			.date = (char *)(sev->date ? sev->date : ""),
			.subject = (char *)(sev->subject ? sev->subject : ""),
			.size = sev->size,
			.reason = (char *)(sev->text ? sev->text : ""),
		};
		struct err e;
		batch_store_item_add(sev->state ? sev->state : w->st, w->sh->batch.id, &it, &e);
		break;
	}
	case SYNC_EV_WARNING:
		ev.type = BATCH_EV_WARNING;
		ev.folder = sev->folder;
		ev.text = sev->text;
		break;
	default:
		return;
	}
	event(w->sh, &ev);
}

static void fill_side(struct imap_client_opts *o, enum side side, const char *host,
		      uint16_t port, bool tls, const char *addr, const struct batch_config *c,
		      const char *user, const char *password, const char *admin)
{
	memset(o, 0, sizeof(*o));
	o->side = side;
	o->host = host;
	o->port = port;
	o->implicit_tls = tls;
	o->connect_addr = addr;
	o->allow_plaintext = c->allow_plaintext;
	o->insecure = c->insecure;
	o->ca_file = c->ca_file;
	o->timeout_ms = (int)(c->timeout_s ? c->timeout_s : 60) * 1000;
	o->user = user;
	o->password = password;
	o->admin = admin;
	o->admin_mode = c->admin_mode;
}

static char *endpoint_key(bool tls, const char *user, const char *host, uint16_t port)
{
	return xasprintf("%s://%s@%s:%u", tls ? "imaps" : "imap", user, host, (unsigned)port);
}

/* The connection settings of one user; the keys name the pair in the
 * state (caller frees them).  Strings point into sh. */
static void fill_user_opts(struct worker_shared *sh, const struct batch_user_row *u,
			   struct imap_client_opts *src, struct imap_client_opts *tgt,
			   struct folder_rules *rules, char **skey_r, char **tkey_r)
{
	const struct batch_config *c = &sh->cfg;
	const struct csv_user *cu = &sh->csv.items[u->idx];
	fill_side(src, SIDE_SOURCE, sh->source_host, sh->source_port, sh->source_tls,
		  sh->source_addr, c, u->source_user,
		  c->source_admin ? sh->source_admin_pw : cu->password, c->source_admin);
	fill_side(tgt, SIDE_TARGET, sh->target_host, sh->target_port, sh->target_tls,
		  sh->target_addr, c, u->target_user,
		  c->target_admin ? sh->target_admin_pw : cu->target_password, c->target_admin);
	*rules = (struct folder_rules){
		.include = (const char *const *)c->include.items, .n_include = c->include.n,
		.exclude = (const char *const *)c->exclude.items, .n_exclude = c->exclude.n,
		.renames = (const char *const *)c->folder_map.items, .n_renames = c->folder_map.n,
	};
	*skey_r = endpoint_key(sh->source_tls, u->source_user, sh->source_host, sh->source_port);
	*tkey_r = endpoint_key(sh->target_tls, u->target_user, sh->target_host, sh->target_port);
}

/* The trace of the worker's current user (w->email is set for as long
 * as its connections live). */
static void trace_source(void *ctx, unsigned no, char dir, const uint8_t *data, size_t len)
{
	struct worker *w = ctx;
	w->sh->o->trace(w->sh->o->trace_ctx, w->email, SIDE_SOURCE, no, dir, data, len);
}

static void trace_target(void *ctx, unsigned no, char dir, const uint8_t *data, size_t len)
{
	struct worker *w = ctx;
	w->sh->o->trace(w->sh->o->trace_ctx, w->email, SIDE_TARGET, no, dir, data, len);
}

static void run_user(struct worker *w, struct batch_user_row *u)
{
	struct worker_shared *sh = w->sh;
	const struct batch_config *c = &sh->cfg;
	enum batch_pass pass = sh->o->pass;
	bool first = is(u->status, "Created") || is(u->status, "Queued") || u->last_synced == 0;
	const char *running = pass == BATCH_PASS_COMPLETE ? "Completing"
			      : first			  ? "Syncing"
							  : "IncrementalSyncing";
	if (!u->started)
		u->started = time(NULL);
	/* Completed (or being completed) by another process since this
	 * pass made its queue: nothing left to do here */
	if (!set_status(w, u, running, NULL))
		return;
	w->idx = u->idx;
	w->email = u->email;

	struct sync_opts so = {
		.state = w->st,
		.event = on_sync_event,
		.event_ctx = w,
		.should_stop = engine_should_stop,
		.stop_ctx = w,
		.max_message_size = c->max_message_size,
		.max_items = c->max_items,
		.connections = c->connections_per_user,
		.append_connections = c->append_connections,
	};
	char *skey, *tkey;
	fill_user_opts(sh, u, &so.source, &so.target, &so.rules, &skey, &tkey);
	so.source_key = skey;
	so.target_key = tkey;
	if (sh->o->trace) {
		so.source.trace = trace_source;
		so.source.trace_ctx = w;
		so.target.trace = trace_target;
		so.target.trace_ctx = w;
	}

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct err e;
	struct sync_stats stats;
	int r = -1;
	unsigned delay = 2;
	for (int attempt = 1;; attempt++) {
		err_clear(&e);
		r = sync_run(&so, &stats, &e);
		w->copied += stats.msgs_copied;
		w->skipped += stats.msgs_skipped;
		w->failed += stats.msgs_failed;
		w->bytes += stats.bytes_copied;
		if (r == 0 || e.kind != ERR_TRANSIENT || attempt >= MAX_ATTEMPTS)
			break;
		char text[2048];
		char *msg = xasprintf("%s; retrying in %u s (attempt %d of %d)",
				      err_format(&e, text, sizeof(text)), delay, attempt + 1,
				      MAX_ATTEMPTS);
		struct batch_event ev = { .type = BATCH_EV_WARNING, .idx = u->idx, .user = u->email,
					  .text = msg };
		event(sh, &ev);
		free(msg);
		/* sleep in steps so a stop request is seen */
		for (unsigned s = 0; s < delay && !stop_now(w); s++)
			sleep(1);
		if (stop_now(w)) {
			err_set(&e, ERR_STOPPED, "stopped on request");
			break;
		}
		delay = delay * 2 > BACKOFF_CAP_S ? BACKOFF_CAP_S : delay * 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	/* Test hook only (like IMAPMIG_TEST_CRASH_AFTER): sleep between the
	 * copy and the user's final status, so a test can run another pass
	 * in that window.  Announced as a warning so the test knows when. */
	if (sh->pause_before_status_s) {
		char *msg = xasprintf("IMAPMIG_TEST_PAUSE_BEFORE_STATUS: pausing %u s",
				      sh->pause_before_status_s);
		struct batch_event ev = { .type = BATCH_EV_WARNING, .idx = u->idx, .user = u->email,
					  .text = msg };
		event(sh, &ev);
		free(msg);
		sleep(sh->pause_before_status_s);
	}
	u->duration += (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

	/* counters from the state: what is on the target, whatever pass put it there */
	int64_t pair_id = 0;
	struct err ignore;
	if (state_pair_get(w->st, skey, tkey, &pair_id, &ignore) == 0) {
		u->pair_id = pair_id;
		batch_store_items_prune(w->st, sh->batch.id, u->idx, pair_id, &ignore);
		uint64_t done_n = 0, bytes = 0, folders = 0;
		if (batch_store_pair_totals(w->st, pair_id, &done_n, &bytes, &folders, &ignore) == 0) {
			u->items_copied = done_n;
			u->bytes = bytes;
			u->folders = folders;
		}
	}
	char text[2048] = "";
	const char *status;
	if (r == 0) {
		u->last_synced = time(NULL);
		if (pass == BATCH_PASS_COMPLETE) {
			status = "Completed";
			u->completed = u->last_synced;
		} else {
			status = "Synced";
		}
	} else if (e.kind == ERR_STOPPED) {
		status = "Stopped";
	} else {
		status = "Failed";
		err_format(&e, text, sizeof(text));
	}
	/* refused when another process completed the user meanwhile: then u
	 * is what that one wrote, and the user is done as it says */
	if (!set_status(w, u, status, text[0] ? text : NULL)) {
		status = u->status;
		text[0] = '\0';
	}
	w->email = u->email;
	struct batch_event ev = { .type = BATCH_EV_USER_DONE, .idx = u->idx, .user = u->email,
				  .status = status, .text = text[0] ? text : NULL,
				  .copied = w->copied, .skipped = w->skipped, .failed = w->failed,
				  .bytes = w->bytes };
	event(sh, &ev);
	pthread_mutex_lock(&sh->lock);
	sh->res->ran++;
	pthread_mutex_unlock(&sh->lock);
	free(skey);
	free(tkey);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct worker_shared *sh = w->sh;
	struct err e;
	w->st = state_open(sh->o->state_path, &e);
	for (;;) {
		pthread_mutex_lock(&sh->lock);
		size_t i = sh->next < sh->n_queue && !sh->stop ? sh->queue[sh->next++] : SIZE_MAX;
		pthread_mutex_unlock(&sh->lock);
		if (i == SIZE_MAX)
			break;
		struct batch_user_row *u = &sh->users[i];
		if (!w->st) {
			char text[2048];
			struct batch_event ev = { .type = BATCH_EV_WARNING, .idx = i, .user = u->email,
						  .text = err_format(&e, text, sizeof(text)) };
			event(sh, &ev);
			break;
		}
		w->copied = w->skipped = w->failed = w->bytes = 0;
		if (stop_now(w))
			break;
		run_user(w, u);
	}
	state_close(&w->st);
	pthread_mutex_lock(&sh->lock);
	sh->workers_done++;
	pthread_cond_signal(&sh->worker_done);
	pthread_mutex_unlock(&sh->lock);
	return NULL;
}

/* Does this pass run this user? */
static bool wanted(const struct batch_user_row *u, enum batch_pass pass)
{
	switch (pass) {
	case BATCH_PASS_START:
		return !is(u->status, "Synced") && !is(u->status, "Completed") &&
		       !is(u->status, "IncrementalSyncing") && !is(u->status, "Completing");
	case BATCH_PASS_SYNC:
	case BATCH_PASS_COMPLETE:
		return !is(u->status, "Completed");
	}
	return false;
}

static int read_admin_password(const char *file, const char *env, const char *who,
			       const char *admin, char **pw_r, struct err *err)
{
	char prompt[300];
	snprintf(prompt, sizeof(prompt), "Password for %s admin %s: ", who, admin);
	*pw_r = secret_get(file, env, prompt, err);
	return *pw_r ? 0 : -1;
}

static int parse_server(const char *url, char **host_r, uint16_t *port_r, bool *tls_r,
			struct err *err)
{
	struct imap_url u;
	if (imap_url_parse(url, &u, err) < 0)
		return -1;
	*host_r = xstrdup(u.host);
	*port_r = u.port;
	*tls_r = u.tls;
	imap_url_release(&u);
	return 0;
}

/* Passwords come from the CSV the batch was made from; the user list in
 * it must still be the one stored. */
static int load_csv(struct worker_shared *sh, struct err *err)
{
	char sha[65];
	struct csv_rules rules = csv_rules_for(&sh->cfg);
	if (csv_read_users(sh->batch.csv_path, &rules, &sh->csv, err) < 0) {
		err_prefix(err, "re-reading the batch's CSV for its passwords");
		return -1;
	}
	if (file_sha256(sh->batch.csv_path, sha, err) < 0)
		return -1;
	bool same = sh->csv.count == sh->n_users;
	for (size_t i = 0; same && i < sh->n_users; i++) {
		const struct csv_user *cu = &sh->csv.items[i];
		const char *tu = cu->target_user ? cu->target_user : cu->email;
		same = is(cu->email, sh->users[i].email) && is(cu->user, sh->users[i].source_user) &&
		       is(tu, sh->users[i].target_user);
	}
	if (!same) {
		err_set(err, ERR_CONFIG,
			"the CSV %s no longer lists the users batch '%s' was created with",
			sh->batch.csv_path, sh->batch.name);
		err_hint(err, "restore the file (only passwords may change), or create a new batch");
		return -1;
	}
	return check_target_logins(sh->batch.csv_path, &sh->csv, &sh->cfg, err);
}

static void shared_release(struct worker_shared *sh)
{
	batch_row_release(&sh->batch);
	batch_config_release(&sh->cfg);
	batch_user_rows_free(sh->users, sh->n_users);
	csv_users_release(&sh->csv);
	secret_free(&sh->source_admin_pw);
	secret_free(&sh->target_admin_pw);
	free(sh->source_host);
	free(sh->target_host);
	free(sh->source_addr);
	free(sh->target_addr);
	free(sh->queue);
}

/* The batch's status follows from its users' as they are now, other
 * processes' passes included.  Read and written in one transaction (it
 * takes the write lock first): a status computed from users read before
 * another pass's last write would undo that pass's batch status, e.g.
 * set a Completed batch back to Synced.  Whichever pass writes last has
 * seen every user status written before. */
static int finish_status(struct state *st, struct worker_shared *sh, struct batch_result *res,
			 struct err *err)
{
	batch_user_rows_free(sh->users, sh->n_users);
	sh->users = NULL;
	sh->n_users = 0;
	if (state_begin(st, err) < 0)
		return -1;
	if (batch_store_users(st, sh->batch.id, &sh->users, &sh->n_users, err) < 0)
		goto fail;
	const char **sts = xcalloc(sh->n_users + 1, sizeof(*sts));
	res->failed = res->stopped = 0;
	for (size_t i = 0; i < sh->n_users; i++) {
		sts[i] = sh->users[i].status;
		if (is(sts[i], "Failed"))
			res->failed++;
		if (is(sts[i], "Stopped"))
			res->stopped++;
	}
	const char *status = batch_status_from_users(sts, sh->n_users, sh->o->pass);
	free(sts);
	snprintf(res->status, sizeof(res->status), "%s", status);
	if (batch_store_set_status(st, sh->batch.id, status, err) < 0 ||
	    state_commit(st, err) < 0)
		goto fail;
	return 0;
fail:
	state_rollback(st);
	return -1;
}

/* Everything a pass needs: the batch, its settings and users, the
 * passwords (CSV and admins), the servers. */
static int shared_load(struct worker_shared *sh, struct state *st, const char *state_path,
		       const char *name, struct err *err)
{
	int found = batch_store_get(st, name, &sh->batch, err);
	if (found <= 0) {
		if (found == 0) {
			err_set(err, ERR_CONFIG, "there is no batch named '%s'", name);
			err_hint(err, "'imapmig batch list' shows the batches in %s", state_path);
		}
		return -1;
	}
	if (batch_config_parse(sh->batch.config, &sh->cfg, err) < 0 ||
	    batch_store_users(st, sh->batch.id, &sh->users, &sh->n_users, err) < 0 ||
	    load_csv(sh, err) < 0)
		return -1;
	if (parse_server(sh->cfg.source_url, &sh->source_host, &sh->source_port, &sh->source_tls,
			 err) < 0 ||
	    parse_server(sh->cfg.target_url, &sh->target_host, &sh->target_port, &sh->target_tls,
			 err) < 0)
		return -1;
	if (resolve_lookup((const char *const *)sh->cfg.resolve.items, sh->cfg.resolve.n,
			   sh->source_host, &sh->source_addr, err) < 0 ||
	    resolve_lookup((const char *const *)sh->cfg.resolve.items, sh->cfg.resolve.n,
			   sh->target_host, &sh->target_addr, err) < 0)
		return -1;
	if (sh->cfg.source_admin &&
	    read_admin_password(sh->cfg.source_password_file, "IMAPMIG_SOURCE_PASSWORD", "source",
				sh->cfg.source_admin, &sh->source_admin_pw, err) < 0)
		return -1;
	if (sh->cfg.target_admin &&
	    read_admin_password(sh->cfg.target_password_file, "IMAPMIG_TARGET_PASSWORD", "target",
				sh->cfg.target_admin, &sh->target_admin_pw, err) < 0)
		return -1;
	return 0;
}

int batch_each_user(const char *state_path, const char *name, batch_user_fn *fn, void *ctx,
		    struct err *err)
{
	struct worker_shared sh = { 0 };
	pthread_mutex_init(&sh.lock, NULL);
	struct state *st = state_open(state_path, err);
	int r = -1;
	if (st && shared_load(&sh, st, state_path, name, err) == 0) {
		r = 0;
		for (size_t i = 0; i < sh.n_users && r == 0; i++) {
			struct batch_user_view v = { .index = i, .email = sh.users[i].email,
						     .status = sh.users[i].status };
			char *skey, *tkey;
			fill_user_opts(&sh, &sh.users[i], &v.source, &v.target, &v.rules, &skey, &tkey);
			v.max_message_size = sh.cfg.max_message_size;
			r = fn(ctx, &v, err);
			free(skey);
			free(tkey);
		}
	}
	shared_release(&sh);
	state_close(&st);
	pthread_mutex_destroy(&sh.lock);
	return r;
}

/* Hold the batch's lock, shared, for as long as the pass runs (passes of
 * one batch may run side by side: the pair locks keep them off each
 * other's users).  A pass that gets it exclusively first knows that no
 * other process runs the batch: users still marked running were left so
 * by one that died, and become Interrupted (they are in this pass's
 * queue; until their turn they are shown for what they are). */
static int pass_lock_take(struct worker_shared *sh, struct state *st, int *fd_r,
			  struct err *err)
{
	*fd_r = lock_open(sh->o->state_path);
	if (*fd_r < 0)
		return err_set(err, ERR_INTERNAL, "cannot create the lock file %s.lock: %s",
			       sh->o->state_path, strerror(errno));
	if (lock_set(*fd_r, sh->batch.id, F_WRLCK, false) == 0) {
		for (size_t i = 0; i < sh->n_users; i++) {
			struct batch_user_row *u = &sh->users[i];
			if (!batch_status_is_running(u->status))
				continue;
			free(u->status);
			u->status = xstrdup("Interrupted");
			if (batch_store_user_update(st, sh->batch.id, u, err) < 0)
				goto fail;
		}
		/* a lock converted on its own descriptor: never refused */
		if (lock_set(*fd_r, sh->batch.id, F_RDLCK, false) == 0)
			return 0;
	} else if (errno == EAGAIN || errno == EACCES) {
		/* another pass (or a reader, for a moment) holds it */
		if (lock_set(*fd_r, sh->batch.id, F_RDLCK, true) == 0)
			return 0;
	}
	err_set(err, ERR_INTERNAL, "cannot lock %s.lock: %s", sh->o->state_path, strerror(errno));
fail:
	batch_hold_release(fd_r);
	return -1;
}

int batch_run(const struct batch_run_opts *o, struct batch_result *res, struct err *err)
{
	struct worker_shared sh = { .o = o, .res = res };
	struct state *st = NULL;
	int r = -1;
	int pass_fd = -1;
	memset(res, 0, sizeof(*res));
	pthread_mutex_init(&sh.lock, NULL);
	pthread_cond_init(&sh.worker_done, NULL);

	st = state_open(o->state_path, err);
	if (!st)
		goto out;
	if (shared_load(&sh, st, o->state_path, o->name, err) < 0)
		goto out;
	res->users = sh.n_users;
	const char *pause = getenv("IMAPMIG_TEST_PAUSE_BEFORE_STATUS");
	if (pause)
		sh.pause_before_status_s = (unsigned)strtoul(pause, NULL, 10);
	if (o->pass == BATCH_PASS_COMPLETE && is(sh.batch.status, "Created")) {
		err_set(err, ERR_CONFIG, "batch '%s' has not been started", o->name);
		err_hint(err, "run 'imapmig batch start %s' first", o->name);
		goto out;
	}
	if (pass_lock_take(&sh, st, &pass_fd, err) < 0)
		goto out;
	/* A new pass clears an old stop request. */
	if (batch_store_set_stop(st, sh.batch.id, false, err) < 0)
		goto out;

	sh.queue = xcalloc(sh.n_users + 1, sizeof(*sh.queue));
	for (size_t i = 0; i < sh.n_users; i++)
		if (wanted(&sh.users[i], o->pass))
			sh.queue[sh.n_queue++] = i;

	/* --start-after holds the first pass */
	if (o->pass == BATCH_PASS_START && sh.batch.start_after > time(NULL) && sh.n_queue) {
		struct worker w0 = { .sh = &sh, .st = st };
		for (size_t i = 0; i < sh.n_queue; i++)
			set_status(&w0, &sh.users[sh.queue[i]], "Queued", NULL);
		batch_store_set_status(st, sh.batch.id, "Queued", err);
		char when[64];
		struct tm tm;
		localtime_r(&sh.batch.start_after, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", &tm);
		char *msg = xasprintf("waiting until %s (--start-after)", when);
		struct batch_event ev = { .type = BATCH_EV_WAITING, .text = msg };
		event(&sh, &ev);
		free(msg);
		while (time(NULL) < sh.batch.start_after && !stop_polled(&sh, st))
			sleep(1);
		if (sh.stop) {
			for (size_t i = 0; i < sh.n_queue; i++)
				set_status(&w0, &sh.users[sh.queue[i]], "Stopped", NULL);
			r = finish_status(st, &sh, res, err);
			goto out;
		}
	}
	/* (a pass with nothing to run leaves the batch as it is: finish_status
	 * below writes what its users say) */
	if (sh.n_queue && batch_store_set_status(st, sh.batch.id, "Syncing", err) < 0)
		goto out;

	unsigned jobs = sh.cfg.jobs ? sh.cfg.jobs : 4;
	/* each user holds connections_per_user connections on each server,
	 * times append_connections on a target without LITERAL+ */
	unsigned per_user = sh.cfg.connections_per_user ? sh.cfg.connections_per_user : 1;
	per_user *= sh.cfg.append_connections ? sh.cfg.append_connections : 1;
	if (sh.cfg.max_connections && jobs * per_user > sh.cfg.max_connections)
		jobs = sh.cfg.max_connections / per_user ? sh.cfg.max_connections / per_user : 1;
	if (jobs > sh.n_queue)
		jobs = (unsigned)sh.n_queue;
	struct worker *workers = xcalloc(jobs + 1, sizeof(*workers));
	pthread_t *threads = xcalloc(jobs + 1, sizeof(*threads));
	unsigned started = 0;
	for (unsigned i = 0; i < jobs; i++) {
		workers[i].sh = &sh;
		if (pthread_create(&threads[i], NULL, worker_main, &workers[i]) == 0)
			started++;
		else
			break;
	}
	if (jobs && !started) {
		/* no threads to be had: run on this one */
		workers[0].sh = &sh;
		worker_main(&workers[0]);
	}
	/* Wait for the workers (woken as each ends), looking every half
	 * second for a stop asked by another process (the workers see it
	 * through the shared flag). */
	for (;;) {
		pthread_mutex_lock(&sh.lock);
		if (sh.workers_done != started) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += 500 * 1000 * 1000;
			if (until.tv_nsec >= 1000 * 1000 * 1000) {
				until.tv_sec++;
				until.tv_nsec -= 1000 * 1000 * 1000;
			}
			pthread_cond_timedwait(&sh.worker_done, &sh.lock, &until);
		}
		bool all_done = sh.workers_done == started;
		pthread_mutex_unlock(&sh.lock);
		if (all_done)
			break;
		stop_polled(&sh, st);
	}
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	free(workers);
	free(threads);

	/* users the stop left waiting in the queue */
	if (sh.stop) {
		struct worker w0 = { .sh = &sh, .st = st };
		for (size_t i = sh.next; i < sh.n_queue; i++)
			if (!is(sh.users[sh.queue[i]].status, "Synced"))
				set_status(&w0, &sh.users[sh.queue[i]], "Stopped", NULL);
	}
	r = finish_status(st, &sh, res, err);
out:
	/* after the last status is written: a reader seeing the lock free
	 * must find no status of this pass still running */
	batch_hold_release(&pass_fd);
	shared_release(&sh);
	state_close(&st);
	pthread_cond_destroy(&sh.worker_done);
	pthread_mutex_destroy(&sh.lock);
	return r;
}

int batch_request_stop(const char *state_path, const char *name, struct err *err)
{
	struct state *st = state_open(state_path, err);
	if (!st)
		return -1;
	struct batch_row b;
	int found = batch_store_get(st, name, &b, err);
	int r = -1;
	if (found == 0)
		err_set(err, ERR_CONFIG, "there is no batch named '%s'", name);
	if (found == 1) {
		r = batch_store_set_stop(st, b.id, true, err);
		batch_row_release(&b);
	}
	state_close(&st);
	return r;
}
