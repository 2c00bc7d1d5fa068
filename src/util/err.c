#include "util/err.h"

#include <stdio.h>
#include <string.h>

static void copy(char *dst, size_t dstlen, const char *src)
{
	snprintf(dst, dstlen, "%s", src);
}

void err_clear(struct err *e)
{
	memset(e, 0, sizeof(*e));
}

int err_vset(struct err *e, enum err_kind kind, const char *fmt, va_list ap)
{
	if (!e)
		return -1;
	e->kind = kind;
	vsnprintf(e->what, sizeof(e->what), fmt, ap);
	e->server[0] = '\0';
	e->hint[0] = '\0';
	return -1;
}

int err_set(struct err *e, enum err_kind kind, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_vset(e, kind, fmt, ap);
	va_end(ap);
	return -1;
}

void err_server(struct err *e, const char *text, size_t len)
{
	if (!e)
		return;
	size_t n = len < sizeof(e->server) - 1 ? len : sizeof(e->server) - 1;
	/* keep only printable text: the server's words end up on a terminal */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];
		e->server[i] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
	}
	e->server[n] = '\0';
}

void err_hint(struct err *e, const char *fmt, ...)
{
	if (!e)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->hint, sizeof(e->hint), fmt, ap);
	va_end(ap);
}

void err_where(struct err *e, enum side side, const char *host,
	       const char *user, const char *folder)
{
	if (!e)
		return;
	if (e->side == SIDE_NONE)
		e->side = side;
	if (host && !e->host[0])
		copy(e->host, sizeof(e->host), host);
	if (user && !e->user[0])
		copy(e->user, sizeof(e->user), user);
	if (folder && !e->folder[0])
		copy(e->folder, sizeof(e->folder), folder);
}

void err_prefix(struct err *e, const char *fmt, ...)
{
	if (!e)
		return;
	char pre[512], old[sizeof(e->what)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	copy(old, sizeof(old), e->what);
	/* pre + ": " + old, cut to fit */
	size_t n = strlen(pre), cap = sizeof(e->what) - 1;
	if (n > cap)
		n = cap;
	memcpy(e->what, pre, n);
	if (n + 2 <= cap) {
		memcpy(e->what + n, ": ", 2);
		n += 2;
	}
	size_t o = strlen(old);
	if (o > cap - n)
		o = cap - n;
	memcpy(e->what + n, old, o);
	e->what[n + o] = '\0';
}

const char *err_kind_name(enum err_kind kind)
{
	switch (kind) {
	case ERR_NONE: return "none";
	case ERR_MESSAGE: return "message";
	case ERR_FOLDER: return "folder";
	case ERR_ACCOUNT: return "account";
	case ERR_TRANSIENT: return "transient";
	case ERR_CONFIG: return "config";
	case ERR_INTERNAL: return "internal";
	case ERR_STOPPED: return "stopped";
	}
	return "unknown";
}

const char *side_name(enum side side)
{
	switch (side) {
	case SIDE_SOURCE: return "source";
	case SIDE_TARGET: return "target";
	case SIDE_NONE: break;
	}
	return "";
}

char *err_format(const struct err *e, char *out, size_t outlen)
{
	size_t n = 0;
#define ADD(...)                                                          \
	do {                                                              \
		if (n < outlen) {                                         \
			int k_ = snprintf(out + n, outlen - n, __VA_ARGS__); \
			if (k_ > 0)                                       \
				n += (size_t)k_;                          \
		}                                                         \
	} while (0)
	out[0] = '\0';
	if (e->side != SIDE_NONE || e->host[0]) {
		ADD("%s%s%s", side_name(e->side), e->side != SIDE_NONE && e->host[0] ? " " : "", e->host);
		if (e->user[0] || e->folder[0]) {
			ADD(" (");
			if (e->user[0])
				ADD("user %s", e->user);
			if (e->folder[0])
				ADD("%sfolder \"%s\"", e->user[0] ? ", " : "", e->folder);
			ADD(")");
		}
		ADD(": ");
	}
	ADD("%s", e->what[0] ? e->what : "unknown error");
	if (e->server[0])
		ADD(": server said \"%s\"", e->server);
	if (e->hint[0])
		ADD(" -- %s", e->hint);
#undef ADD
	return out;
}
