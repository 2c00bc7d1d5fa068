/* state.c - the state database on SQLite.
 *
 * Each handle prepares its statements once, on first use, and resets and
 * rebinds them on every later call: the engine asks state_msg_get/put for
 * every message of every folder, so parsing SQL each time would show up.
 *
 * Permissions: the file is created 0600 by us before SQLite opens it (SQLite
 * would create it with 0644 & ~umask).  SQLite's unix VFS creates -wal and
 * -shm with the main file's mode, whatever the umask, so they follow; files
 * left behind with a wider mode are narrowed after open.  We never touch the
 * process umask: it is global state shared with every other thread.
 */
#include "store/state.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/state_internal.h"
#include "util/mem.h"

/* PRAGMA user_version of the schema this code writes. */
#define SCHEMA_VERSION 2
/* PRAGMA application_id: "IMIG", so `file state.db` and we ourselves can
 * tell our database from another program's. */
#define APPLICATION_ID 0x494d4947

/* Forward migrations: migrations[v] takes a database from user_version v to
 * v + 1.  Each runs inside the one transaction that also sets
 * user_version, so a crash leaves the old version or the new one. */
static const char *const migrations[SCHEMA_VERSION] = {
    /* 0 -> 1: the first schema */
    "PRAGMA application_id = 1229801799;" /* APPLICATION_ID */
    "CREATE TABLE pair ("
    " id INTEGER PRIMARY KEY,"
    " source_key TEXT NOT NULL,"
    " target_key TEXT NOT NULL,"
    " UNIQUE (source_key, target_key));"
    "CREATE TABLE folder ("
    " id INTEGER PRIMARY KEY,"
    " pair_id INTEGER NOT NULL REFERENCES pair (id) ON DELETE CASCADE,"
    " source_name TEXT NOT NULL,"
    " target_name TEXT NOT NULL,"
    " src_uidvalidity INTEGER NOT NULL DEFAULT 0,"
    " src_uidnext INTEGER NOT NULL DEFAULT 0,"
    " src_modseq INTEGER NOT NULL DEFAULT 0," /* uint64 stored bit for bit */
    " tgt_uidvalidity INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE (pair_id, source_name));"
    "CREATE TABLE msg ("
    " folder_id INTEGER NOT NULL REFERENCES folder (id) ON DELETE CASCADE,"
    " src_uid INTEGER NOT NULL,"
    " fp TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " tgt_uid INTEGER NOT NULL DEFAULT 0,"
    " status INTEGER NOT NULL,"
    " flags TEXT NOT NULL DEFAULT '',"
    " reason TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (folder_id, src_uid)) WITHOUT ROWID;"
    /* state_tfp_claim_done looks up done rows by target UID */
    "CREATE INDEX msg_tgt ON msg (folder_id, tgt_uid);"
    /* One row per target message: a target UID can stand for at most one
     * source message, so it is the key and a second add updates it. */
    "CREATE TABLE tfp ("
    " folder_id INTEGER NOT NULL REFERENCES folder (id) ON DELETE CASCADE,"
    " tgt_uid INTEGER NOT NULL,"
    " fp TEXT NOT NULL,"
    " claimed INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (folder_id, tgt_uid)) WITHOUT ROWID;"
    /* WITHOUT ROWID appends the key (tgt_uid) to the index, so "lowest
     * unclaimed UID with this fp" is one index seek, no sort. */
    "CREATE INDEX tfp_fp ON tfp (folder_id, fp, claimed);",
    /* 1 -> 2: batches (see batch_store.h).  No passwords: the batch keeps
     * the CSV's path and hash and re-reads it when it runs. */
    "CREATE TABLE batch ("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL UNIQUE,"
    " status TEXT NOT NULL,"
    " config TEXT NOT NULL,"
    " csv_path TEXT NOT NULL,"
    " csv_sha256 TEXT NOT NULL,"
    " created INTEGER NOT NULL,"
    " start_after INTEGER NOT NULL DEFAULT 0,"
    " stop_requested INTEGER NOT NULL DEFAULT 0,"
    " notified_status TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE batch_user ("
    " batch_id INTEGER NOT NULL REFERENCES batch (id) ON DELETE CASCADE,"
    " idx INTEGER NOT NULL,"
    " email TEXT NOT NULL,"
    " source_user TEXT NOT NULL,"
    " target_user TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " error TEXT NOT NULL DEFAULT '',"
    " pair_id INTEGER NOT NULL DEFAULT 0,"
    " items_copied INTEGER NOT NULL DEFAULT 0,"
    " items_existing INTEGER NOT NULL DEFAULT 0,"
    " bytes INTEGER NOT NULL DEFAULT 0,"
    " folders INTEGER NOT NULL DEFAULT 0,"
    " started INTEGER NOT NULL DEFAULT 0,"
    " last_synced INTEGER NOT NULL DEFAULT 0,"
    " completed INTEGER NOT NULL DEFAULT 0,"
    " duration REAL NOT NULL DEFAULT 0,"
    " PRIMARY KEY (batch_id, idx));"
    "CREATE TABLE batch_item ("
    " batch_id INTEGER NOT NULL REFERENCES batch (id) ON DELETE CASCADE,"
    " idx INTEGER NOT NULL,"
    " folder TEXT NOT NULL,"
    " uid INTEGER NOT NULL,"
    " kind TEXT NOT NULL,"
    " date TEXT NOT NULL DEFAULT '',"
    " subject TEXT NOT NULL DEFAULT '',"
    " size INTEGER NOT NULL DEFAULT 0,"
    " reason TEXT NOT NULL DEFAULT '',"
    " PRIMARY KEY (batch_id, idx, folder, uid));",
};

#define MSG_COLUMNS "src_uid, fp, size, tgt_uid, status, flags, reason"

enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_SAVEPOINT,
	S_RELEASE,
	S_ROLLBACK_TO,
	S_PAIR_GET,
	S_FOLDER_GET,
	S_FOLDER_UPDATE,
	S_MSG_FORGET,
	S_MSG_PUT,
	S_MSG_GET,
	S_MSG_DONE,
	S_MSG_FLAGS,
	S_MSG_EACH,
	S_MSG_COUNTS,
	S_TFP_CLEAR,
	S_TFP_ADD,
	S_TFP_CLAIM_DONE,
	S_TFP_CLAIM,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    /* IMMEDIATE takes the write lock up front, under the busy timeout;
     * a deferred transaction that reads first and writes later can fail
     * with SQLITE_BUSY at once when another worker wrote in between. */
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT state_multi",
    [S_RELEASE] = "RELEASE state_multi",
    [S_ROLLBACK_TO] = "ROLLBACK TO state_multi",
    /* the no-op update makes RETURNING give the id of an existing row */
    [S_PAIR_GET] = "INSERT INTO pair (source_key, target_key) VALUES (?1, ?2)"
                   " ON CONFLICT (source_key, target_key)"
                   " DO UPDATE SET source_key = excluded.source_key"
                   " RETURNING id",
    [S_FOLDER_GET] = "INSERT INTO folder (pair_id, source_name, target_name)"
                     " VALUES (?1, ?2, ?3)"
                     " ON CONFLICT (pair_id, source_name)"
                     " DO UPDATE SET target_name = excluded.target_name"
                     " RETURNING id, src_uidvalidity, src_uidnext, src_modseq,"
                     " tgt_uidvalidity",
    [S_FOLDER_UPDATE] = "UPDATE folder SET src_uidvalidity = ?2, src_uidnext = ?3,"
                        " src_modseq = ?4, tgt_uidvalidity = ?5 WHERE id = ?1",
    [S_MSG_FORGET] = "DELETE FROM msg WHERE folder_id = ?1",
    [S_MSG_PUT] = "INSERT OR REPLACE INTO msg (folder_id, " MSG_COLUMNS ")"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_MSG_GET] = "SELECT " MSG_COLUMNS " FROM msg WHERE folder_id = ?1 AND src_uid = ?2",
    [S_MSG_DONE] = "UPDATE msg SET status = 1, tgt_uid = ?3"
                   " WHERE folder_id = ?1 AND src_uid = ?2",
    [S_MSG_FLAGS] = "UPDATE msg SET flags = ?3 WHERE folder_id = ?1 AND src_uid = ?2",
    [S_MSG_EACH] = "SELECT " MSG_COLUMNS " FROM msg"
                   " WHERE folder_id = ?1 AND src_uid BETWEEN ?2 AND ?3"
                   " AND (?4 < 0 OR status = ?4) ORDER BY src_uid",
    [S_MSG_COUNTS] = "SELECT status, count(*), total(size) FROM msg"
                     " WHERE folder_id = ?1 GROUP BY status",
    [S_TFP_CLEAR] = "DELETE FROM tfp WHERE folder_id = ?1",
    [S_TFP_ADD] = "INSERT INTO tfp (folder_id, tgt_uid, fp) VALUES (?1, ?2, ?3)"
                  " ON CONFLICT (folder_id, tgt_uid) DO UPDATE SET fp = excluded.fp",
    [S_TFP_CLAIM_DONE] = "UPDATE tfp SET claimed = 1"
                         " WHERE folder_id = ?1 AND claimed = 0 AND tgt_uid IN"
                         " (SELECT tgt_uid FROM msg WHERE folder_id = ?1"
                         " AND status = 1 AND tgt_uid <> 0)",
    /* one statement, so the pick and the mark are atomic without a
     * transaction of the caller's */
    [S_TFP_CLAIM] = "UPDATE tfp SET claimed = 1 WHERE folder_id = ?1 AND tgt_uid ="
                    " (SELECT tgt_uid FROM tfp WHERE folder_id = ?1 AND fp = ?2"
                    " AND claimed = 0 ORDER BY tgt_uid LIMIT 1)"
                    " RETURNING tgt_uid",
};

struct state {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmt[S_COUNT]; /* NULL until first use */
	/* copies of the strings state_msg_get hands out, so its statement
	 * can be reset (ending the read) before it returns */
	char *flags;
	size_t flags_cap;
	char *reason;
	size_t reason_cap;
	bool in_each;
};

/* --- errors --- */

static int db_fail(struct state *st, const char *action, struct err *err)
{
	int rc = sqlite3_errcode(st->db);

	err_set(err, ERR_INTERNAL, "state database %s: %s: %s", st->path, action,
	        sqlite3_errmsg(st->db));
	switch (rc) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		err_hint(err, "another imapmig may be holding it; wait for it to finish,"
		              " or use another file with --state");
		break;
	case SQLITE_FULL:
		err_hint(err, "free some disk space and run again");
		break;
	case SQLITE_READONLY:
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
	case SQLITE_IOERR:
		err_hint(err, "check the file, its directory and their permissions");
		break;
	default:
		break;
	}
	return -1;
}

static int config_fail(const char *path, struct err *err, const char *fmt, const char *detail)
{
	err_set(err, ERR_CONFIG, fmt, path, detail);
	err_hint(err, "move the file away, or use another file with --state");
	return -1;
}

/* --- for other store modules (state_internal.h) --- */

sqlite3 *state_sqlite(struct state *st)
{
	return st->db;
}

int state_fail(struct state *st, const char *action, struct err *err)
{
	return db_fail(st, action, err);
}

/* --- statements --- */

static sqlite3_stmt *stmt_get(struct state *st, enum stmt_id id, struct err *err)
{
	if (!st->stmt[id] && sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
	                                        &st->stmt[id], NULL) != SQLITE_OK) {
		db_fail(st, "cannot prepare a statement", err);
		return NULL;
	}
	return st->stmt[id];
}

/* Run a statement with its parameters bound to the end, ignoring any rows,
 * and reset it. */
static int stmt_run(struct state *st, sqlite3_stmt *s, const char *action, struct err *err)
{
	int rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE) {
		db_fail(st, action, err);
		sqlite3_reset(s);
		return -1;
	}
	sqlite3_reset(s);
	return 0;
}

static int run_simple(struct state *st, enum stmt_id id, const char *action, struct err *err)
{
	sqlite3_stmt *s = stmt_get(st, id, err);

	return s ? stmt_run(st, s, action, err) : -1;
}

/* Text parameters are bound SQLITE_STATIC: every call rebinds all of them
 * before stepping, so a stale pointer left bound after reset is never read. */
static void bind_text(sqlite3_stmt *s, int i, const char *text)
{
	sqlite3_bind_text(s, i, text ? text : "", -1, SQLITE_STATIC);
}

static const char *col_text(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	return t ? (const char *)t : "";
}

/* Fill m from a row of MSG_COLUMNS; its strings point into the statement. */
static void read_msg(sqlite3_stmt *s, struct state_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->src_uid = (uint32_t)sqlite3_column_int64(s, 0);
	snprintf(m->fp, sizeof(m->fp), "%s", col_text(s, 1));
	m->size = (uint64_t)sqlite3_column_int64(s, 2);
	m->tgt_uid = (uint32_t)sqlite3_column_int64(s, 3);
	m->status = (enum state_msg_status)sqlite3_column_int(s, 4);
	m->flags = col_text(s, 5);
	m->reason = col_text(s, 6);
}

static const char *keep(char **bufp, size_t *capp, const char *text)
{
	size_t n = strlen(text) + 1;

	if (n > *capp) {
		*capp = n < 64 ? 64 : n;
		*bufp = xrealloc(*bufp, *capp);
	}
	memcpy(*bufp, text, n);
	return *bufp;
}

/* --- opening --- */

/* mkdir -p of path's directory part, each new directory 0700. */
static int make_parents(const char *path, struct err *err)
{
	char *dir = xstrdup(path);
	int ret = 0;

	for (char *p = dir + 1; *p; p++) {
		if (*p != '/' || p[-1] == '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			err_set(err, ERR_CONFIG,
			        "state database %s: cannot create directory %s: %s", path, dir,
			        strerror(errno));
			err_hint(err, "create it yourself, or use another file with --state");
			ret = -1;
			break;
		}
		*p = '/';
	}
	free(dir);
	return ret;
}

/* Create the file 0600 (umask or not) if missing, so it is never readable
 * by others even for an instant; narrow an existing file of ours that is. */
static int prepare_file(const char *path, struct err *err)
{
	struct stat sb;
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd >= 0) {
		fchmod(fd, 0600);
		close(fd);
		return 0;
	}
	if (errno != EEXIST)
		goto fail;
	/* By path, never open()+close(): closing any descriptor of the file
	 * drops every POSIX lock this process holds on it, the locks of our
	 * SQLite connections included (another process closing the last
	 * connection it sees would then checkpoint and delete the WAL under
	 * them). */
	if (stat(path, &sb) < 0)
		goto fail;
	if (!S_ISREG(sb.st_mode))
		return config_fail(path, err, "state database %s is %s, not a regular file",
		                   S_ISDIR(sb.st_mode) ? "a directory" : "a special file");
	if ((sb.st_mode & 077) && sb.st_uid == geteuid())
		chmod(path, sb.st_mode & 0700);
	return 0;
fail:
	err_set(err, ERR_CONFIG, "state database %s: cannot create: %s", path, strerror(errno));
	err_hint(err, "check the permissions of its directory, or use another file with --state");
	return -1;
}

/* SQLite gives new -wal/-shm files the main file's mode; ones left by an
 * older run with a wider mode keep it, so narrow them.  Best effort. */
static void narrow_side_files(const char *path)
{
	static const char *const suffix[] = {"-wal", "-shm"};

	for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
		char *name = xasprintf("%s%s", path, suffix[i]);
		struct stat sb;

		if (stat(name, &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 077) &&
		    sb.st_uid == geteuid())
			chmod(name, sb.st_mode & 0700);
		free(name);
	}
}

/* Run a one-value query (a PRAGMA) into *v_r; returns the SQLite code. */
static int query_int(struct state *st, const char *sql, int64_t *v_r)
{
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);

	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*v_r = sqlite3_column_int64(s, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		*v_r = 0;
		rc = SQLITE_OK;
	}
	sqlite3_finalize(s);
	return rc;
}

static int newer_schema(struct state *st, int64_t version, struct err *err)
{
	err_set(err, ERR_CONFIG,
	        "state database %s was written by a newer imapmig (schema %lld); this one"
	        " knows schema %d at most",
	        st->path, (long long)version, SCHEMA_VERSION);
	err_hint(err, "upgrade imapmig, or use another file with --state");
	return -1;
}

/* Make sure the file is ours (or empty) and not from the future, before
 * changing anything in it. */
static int check_file(struct state *st, int64_t *version_r, struct err *err)
{
	int64_t app_id = 0, tables = 0;
	int rc = query_int(st, "PRAGMA application_id", &app_id);

	if (rc == SQLITE_OK)
		rc = query_int(st, "PRAGMA user_version", version_r);
	if (rc == SQLITE_OK)
		rc = query_int(st, "SELECT count(*) FROM sqlite_master", &tables);
	if (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT)
		return config_fail(st->path, err, "state database %s is not a SQLite database (%s)",
		                   sqlite3_errmsg(st->db));
	if (rc != SQLITE_OK)
		return db_fail(st, "cannot read", err);
	if (app_id != APPLICATION_ID && (app_id != 0 || *version_r != 0 || tables != 0))
		return config_fail(st->path, err,
		                   "state database %s is a SQLite database of another program%s",
		                   app_id ? "" : " (it has no imapmig schema)");
	if (*version_r > SCHEMA_VERSION)
		return newer_schema(st, *version_r, err);
	return 0;
}

static int migrate(struct state *st, struct err *err)
{
	int64_t version = 0;
	char sql[64];

	if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(st, "cannot write", err);
	/* again, under the write lock: another worker may have just done it */
	if (query_int(st, "PRAGMA user_version", &version) != SQLITE_OK) {
		db_fail(st, "cannot read", err);
		goto fail;
	}
	if (version > SCHEMA_VERSION) {
		newer_schema(st, version, err);
		goto fail;
	}
	for (; version < SCHEMA_VERSION; version++) {
		if (sqlite3_exec(st->db, migrations[version], NULL, NULL, NULL) != SQLITE_OK) {
			snprintf(sql, sizeof(sql), "cannot upgrade to schema %lld",
			         (long long)version + 1);
			db_fail(st, sql, err);
			goto fail;
		}
	}
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", SCHEMA_VERSION);
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		db_fail(st, "cannot write", err);
		goto fail;
	}
	return 0;
fail:
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static int setup(struct state *st, struct err *err)
{
	int64_t version = 0;
	char mode[16] = "";
	sqlite3_stmt *s;

	sqlite3_busy_timeout(st->db, 10000);
	if (sqlite3_exec(st->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(st, "cannot configure", err);
	if (check_file(st, &version, err) < 0)
		return -1;

	/* WAL: readers don't block the writer, and a commit is one append */
	if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) != SQLITE_OK)
		return db_fail(st, "cannot configure", err);
	if (sqlite3_step(s) == SQLITE_ROW)
		snprintf(mode, sizeof(mode), "%s", col_text(s, 0));
	else
		db_fail(st, "cannot switch to WAL mode", err);
	sqlite3_finalize(s);
	if (!mode[0])
		return -1;
	if (strcmp(mode, "wal") != 0) {
		err_set(err, ERR_INTERNAL, "state database %s: cannot switch to WAL mode (got %s)",
		        st->path, mode);
		err_hint(err, "put it on a local file system with --state");
		return -1;
	}
	/* in WAL mode NORMAL loses at most the last commits on power loss,
	 * never consistency; the engine re-matches those by fingerprint */
	if (sqlite3_exec(st->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(st, "cannot configure", err);
	/* Statement journals and sorts in memory: they are small here, and
	 * as temp files each would cost a file creation and deletion. */
	if (sqlite3_exec(st->db, "PRAGMA temp_store = MEMORY", NULL, NULL, NULL) != SQLITE_OK)
		return db_fail(st, "cannot configure", err);
	if (version < SCHEMA_VERSION && migrate(st, err) < 0)
		return -1;
	narrow_side_files(st->path);
	return 0;
}

struct state *state_open(const char *path, struct err *err)
{
	struct state *st;
	int rc;

	if (!path || !*path) {
		err_set(err, ERR_CONFIG, "no state database path given");
		err_hint(err, "pass --state PATH, or set HOME");
		return NULL;
	}
	if (make_parents(path, err) < 0 || prepare_file(path, err) < 0)
		return NULL;

	st = xcalloc(1, sizeof(*st));
	st->path = xstrdup(path);
	/* no SQLITE_OPEN_CREATE: the file exists with our mode, and if it
	 * vanished since, SQLite must not recreate it with its own */
	rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		if (st->db)
			db_fail(st, "cannot open", err);
		else
			err_set(err, ERR_INTERNAL, "state database %s: cannot open: %s", path,
			        sqlite3_errstr(rc));
		state_close(&st);
		return NULL;
	}
	if (setup(st, err) < 0) {
		state_close(&st);
		return NULL;
	}
	return st;
}

void state_close(struct state **stp)
{
	struct state *st = *stp;

	if (!st)
		return;
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	/* every statement is finalized, so this cannot fail with BUSY; an
	 * open transaction is rolled back */
	sqlite3_close(st->db);
	free(st->flags);
	free(st->reason);
	free(st->path);
	free(st);
	*stp = NULL;
}

const char *state_path(const struct state *st)
{
	return st->path;
}

char *state_default_path(void)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");

	/* the XDG spec says to ignore a relative XDG_STATE_HOME */
	if (xdg && xdg[0] == '/')
		return xasprintf("%s/imapmig/state.db", xdg);
	if (home && home[0])
		return xasprintf("%s/.local/state/imapmig/state.db", home);

	struct passwd pw, *res = NULL;
	char pwbuf[4096];

	if (getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res && pw.pw_dir &&
	    pw.pw_dir[0])
		return xasprintf("%s/.local/state/imapmig/state.db", pw.pw_dir);
	return NULL;
}

/* --- transactions --- */

int state_begin(struct state *st, struct err *err)
{
	/* "cannot write": a person sees this when another process holds the
	 * write lock past the busy timeout */
	return run_simple(st, S_BEGIN, "cannot write", err);
}

/* On failure the transaction stays open (SQLite keeps it after a failed
 * COMMIT); the caller rolls back. */
int state_commit(struct state *st, struct err *err)
{
	return run_simple(st, S_COMMIT, "cannot write", err);
}

void state_rollback(struct state *st)
{
	/* outside a transaction ROLLBACK only fails; don't bother */
	if (!sqlite3_get_autocommit(st->db))
		run_simple(st, S_ROLLBACK, "cannot roll back", NULL);
}

/* --- pairs and folders --- */

int state_pair_get(struct state *st, const char *source_key, const char *target_key, int64_t *id_r,
                   struct err *err)
{
	sqlite3_stmt *s = stmt_get(st, S_PAIR_GET, err);
	int rc;

	if (!s)
		return -1;
	bind_text(s, 1, source_key);
	bind_text(s, 2, target_key);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		db_fail(st, "cannot write", err);
		sqlite3_reset(s);
		return -1;
	}
	*id_r = sqlite3_column_int64(s, 0);
	return stmt_run(st, s, "cannot write", err);
}

int state_folder_get(struct state *st, int64_t pair_id, const char *source_name,
                     const char *target_name, struct state_folder *f_r, struct err *err)
{
	sqlite3_stmt *s;
	int rc;

	if (strlen(source_name) >= sizeof(f_r->source_name) ||
	    strlen(target_name) >= sizeof(f_r->target_name)) {
		err_set(err, ERR_FOLDER,
		        "folder name too long for the state database"
		        " (at most %zu bytes)",
		        sizeof(f_r->source_name) - 1);
		err_where(err, SIDE_NONE, NULL, NULL, source_name);
		return -1;
	}
	s = stmt_get(st, S_FOLDER_GET, err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, pair_id);
	bind_text(s, 2, source_name);
	bind_text(s, 3, target_name);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		db_fail(st, "cannot write", err);
		sqlite3_reset(s);
		return -1;
	}
	memset(f_r, 0, sizeof(*f_r));
	f_r->id = sqlite3_column_int64(s, 0);
	f_r->pair_id = pair_id;
	snprintf(f_r->source_name, sizeof(f_r->source_name), "%s", source_name);
	snprintf(f_r->target_name, sizeof(f_r->target_name), "%s", target_name);
	f_r->src_uidvalidity = (uint32_t)sqlite3_column_int64(s, 1);
	f_r->src_uidnext = (uint32_t)sqlite3_column_int64(s, 2);
	f_r->src_modseq = (uint64_t)sqlite3_column_int64(s, 3);
	f_r->tgt_uidvalidity = (uint32_t)sqlite3_column_int64(s, 4);
	return stmt_run(st, s, "cannot write", err);
}

/* The row-count check of UPDATEs by key: a missing row is the caller's bug,
 * and silently doing nothing would lose state. */
static int check_changed(struct state *st, const char *what, int64_t id, uint32_t uid,
                         struct err *err)
{
	if (sqlite3_changes(st->db) > 0)
		return 0;
	if (uid)
		return err_set(err, ERR_INTERNAL,
		               "state database %s: no message with source UID %u in folder %lld",
		               st->path, uid, (long long)id);
	return err_set(err, ERR_INTERNAL, "state database %s: no %s with id %lld", st->path, what,
	               (long long)id);
}

int state_folder_update(struct state *st, const struct state_folder *f, struct err *err)
{
	sqlite3_stmt *s = stmt_get(st, S_FOLDER_UPDATE, err);

	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, f->id);
	sqlite3_bind_int64(s, 2, f->src_uidvalidity);
	sqlite3_bind_int64(s, 3, f->src_uidnext);
	sqlite3_bind_int64(s, 4, (int64_t)f->src_modseq);
	sqlite3_bind_int64(s, 5, f->tgt_uidvalidity);
	if (stmt_run(st, s, "cannot write", err) < 0)
		return -1;
	return check_changed(st, "folder", f->id, 0, err);
}

static int run_folder(struct state *st, enum stmt_id id, int64_t folder_id, struct err *err)
{
	sqlite3_stmt *s = stmt_get(st, id, err);

	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, folder_id);
	return stmt_run(st, s, "cannot write", err);
}

int state_folder_forget_messages(struct state *st, int64_t folder_id, struct err *err)
{
	/* a savepoint makes the two deletes one step whether or not the
	 * caller has a transaction open */
	if (run_simple(st, S_SAVEPOINT, "cannot write", err) < 0)
		return -1;
	if (run_folder(st, S_MSG_FORGET, folder_id, err) < 0 ||
	    run_folder(st, S_TFP_CLEAR, folder_id, err) < 0) {
		run_simple(st, S_ROLLBACK_TO, "cannot roll back", NULL);
		run_simple(st, S_RELEASE, "cannot roll back", NULL);
		return -1;
	}
	return run_simple(st, S_RELEASE, "cannot write", err);
}

/* --- messages --- */

int state_msg_put(struct state *st, int64_t folder_id, const struct state_msg *m, struct err *err)
{
	sqlite3_stmt *s;

	if (m->status != MSG_PENDING && m->status != MSG_DONE && m->status != MSG_SKIPPED &&
	    m->status != MSG_FAILED)
		return err_set(err, ERR_INTERNAL, "state database %s: bad message status %d",
		               st->path, (int)m->status);
	s = stmt_get(st, S_MSG_PUT, err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, folder_id);
	sqlite3_bind_int64(s, 2, m->src_uid);
	bind_text(s, 3, m->fp);
	sqlite3_bind_int64(s, 4, (int64_t)m->size);
	sqlite3_bind_int64(s, 5, m->tgt_uid);
	sqlite3_bind_int(s, 6, (int)m->status);
	bind_text(s, 7, m->flags);
	bind_text(s, 8, m->status == MSG_SKIPPED || m->status == MSG_FAILED ? m->reason : "");
	return stmt_run(st, s, "cannot write", err);
}

int state_msg_get(struct state *st, int64_t folder_id, uint32_t src_uid, struct state_msg *m_r,
                  struct err *err)
{
	sqlite3_stmt *s = stmt_get(st, S_MSG_GET, err);
	int rc;

	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, folder_id);
	sqlite3_bind_int64(s, 2, src_uid);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(s);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		db_fail(st, "cannot read", err);
		sqlite3_reset(s);
		return -1;
	}
	read_msg(s, m_r);
	m_r->flags = keep(&st->flags, &st->flags_cap, m_r->flags);
	m_r->reason = keep(&st->reason, &st->reason_cap, m_r->reason);
	sqlite3_reset(s);
	return 1;
}

int state_msg_done(struct state *st, int64_t folder_id, uint32_t src_uid, uint32_t tgt_uid,
                   struct err *err)
{
	sqlite3_stmt *s = stmt_get(st, S_MSG_DONE, err);

	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, folder_id);
	sqlite3_bind_int64(s, 2, src_uid);
	sqlite3_bind_int64(s, 3, tgt_uid);
	if (stmt_run(st, s, "cannot write", err) < 0)
		return -1;
	return check_changed(st, "message", folder_id, src_uid, err);
}

int state_msg_set_flags(struct state *st, int64_t folder_id, uint32_t src_uid, const char *flags,
                        struct err *err)
{
	sqlite3_stmt *s = stmt_get(st, S_MSG_FLAGS, err);

	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, folder_id);
	sqlite3_bind_int64(s, 2, src_uid);
	bind_text(s, 3, flags);
	if (stmt_run(st, s, "cannot write", err) < 0)
		return -1;
	return check_changed(st, "message", folder_id, src_uid, err);
}

/* The walk has a statement of its own, so the other cached statements stay
 * free; only a nested walk is refused outright. */
int state_msg_each(struct state *st, int64_t folder_id, uint32_t lo, uint32_t hi, int status,
                   state_msg_fn *fn, void *ctx, struct err *err)
{
	struct state_msg m;
	sqlite3_stmt *s;
	int rc, ret = 0;

	if (st->in_each)
		return err_set(err, ERR_INTERNAL,
		               "state database %s: state_msg_each called from its own callback",
		               st->path);
	s = stmt_get(st, S_MSG_EACH, err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, folder_id);
	sqlite3_bind_int64(s, 2, lo);
	sqlite3_bind_int64(s, 3, hi ? (int64_t)hi : INT64_MAX);
	sqlite3_bind_int(s, 4, status < 0 ? -1 : status);
	st->in_each = true;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		read_msg(s, &m);
		if (fn(ctx, &m, err) < 0) {
			ret = -1;
			break;
		}
	}
	st->in_each = false;
	if (ret == 0 && rc != SQLITE_DONE)
		ret = db_fail(st, "cannot read", err);
	sqlite3_reset(s);
	return ret;
}

int state_msg_counts(struct state *st, int64_t folder_id, struct state_counts *c_r, struct err *err)
{
	sqlite3_stmt *s = stmt_get(st, S_MSG_COUNTS, err);
	int rc;

	if (!s)
		return -1;
	memset(c_r, 0, sizeof(*c_r));
	sqlite3_bind_int64(s, 1, folder_id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		uint64_t n = (uint64_t)sqlite3_column_int64(s, 1);

		switch (sqlite3_column_int(s, 0)) {
		case MSG_DONE:
			c_r->done = n;
			/* total() is a double: exact up to 2^53 bytes */
			c_r->done_bytes = (uint64_t)sqlite3_column_double(s, 2);
			break;
		case MSG_PENDING:
			c_r->pending = n;
			break;
		case MSG_SKIPPED:
			c_r->skipped = n;
			break;
		case MSG_FAILED:
			c_r->failed = n;
			break;
		default:
			break;
		}
	}
	if (rc != SQLITE_DONE) {
		db_fail(st, "cannot read", err);
		sqlite3_reset(s);
		return -1;
	}
	sqlite3_reset(s);
	return 0;
}

/* --- target fingerprints --- */

int state_tfp_clear(struct state *st, int64_t folder_id, struct err *err)
{
	return run_folder(st, S_TFP_CLEAR, folder_id, err);
}

int state_tfp_add(struct state *st, int64_t folder_id, const char *fp, uint32_t tgt_uid,
                  struct err *err)
{
	sqlite3_stmt *s;

	/* claim reports a UID; 0 would read as "unknown" */
	if (tgt_uid == 0)
		return err_set(err, ERR_INTERNAL,
		               "state database %s: target UID 0 in the"
		               " fingerprint list",
		               st->path);
	s = stmt_get(st, S_TFP_ADD, err);
	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, folder_id);
	sqlite3_bind_int64(s, 2, tgt_uid);
	bind_text(s, 3, fp);
	return stmt_run(st, s, "cannot write", err);
}

int state_tfp_claim_done(struct state *st, int64_t folder_id, struct err *err)
{
	return run_folder(st, S_TFP_CLAIM_DONE, folder_id, err);
}

int state_tfp_claim(struct state *st, int64_t folder_id, const char *fp, uint32_t *tgt_uid_r,
                    struct err *err)
{
	sqlite3_stmt *s = stmt_get(st, S_TFP_CLAIM, err);
	int rc, found = 0;

	if (!s)
		return -1;
	sqlite3_bind_int64(s, 1, folder_id);
	bind_text(s, 2, fp);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*tgt_uid_r = (uint32_t)sqlite3_column_int64(s, 0);
		found = 1;
	} else if (rc != SQLITE_DONE) {
		db_fail(st, "cannot write", err);
		sqlite3_reset(s);
		return -1;
	}
	if (found && stmt_run(st, s, "cannot write", err) < 0)
		return -1;
	if (!found)
		sqlite3_reset(s);
	return found;
}

int state_msg_lowest(struct state *st, int64_t folder_id, enum state_msg_status status,
		     uint32_t *uid_r, struct err *err)
{
	sqlite3_stmt *s = NULL;
	*uid_r = 0;
	if (sqlite3_prepare_v2(st->db,
			       "SELECT min(src_uid) FROM msg WHERE folder_id = ?1 AND status = ?2",
			       -1, &s, NULL) != SQLITE_OK)
		return db_fail(st, "cannot prepare a statement", err);
	sqlite3_bind_int64(s, 1, folder_id);
	sqlite3_bind_int(s, 2, (int)status);
	int rc = sqlite3_step(s);
	int found = 0;
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
		*uid_r = (uint32_t)sqlite3_column_int64(s, 0);
		found = 1;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW)
		return db_fail(st, "cannot read", err);
	return found;
}

int state_folder_names(struct state *st, int64_t pair_id, state_name_fn *fn, void *ctx,
		       struct err *err)
{
	sqlite3_stmt *s = NULL;
	if (sqlite3_prepare_v2(st->db, "SELECT source_name FROM folder WHERE pair_id = ?1",
			       -1, &s, NULL) != SQLITE_OK)
		return db_fail(st, "cannot prepare a statement", err);
	sqlite3_bind_int64(s, 1, pair_id);
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		fn(ctx, col_text(s, 0));
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return db_fail(st, "cannot read", err);
	return 0;
}
