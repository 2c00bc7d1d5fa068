/* fake_server.c - see fake_server.h.
 *
 * One thread, one connection, non-blocking sockets with poll() in short
 * slices so that every wait is bounded and fake_server_free() can stop a
 * thread left running by a failed test assertion.
 */
#include "fake_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/mem.h"

/* Longest wait for anything the script expects from the client.  The
 * client's own timeouts in the tests are shorter, so a hung test fails
 * on the client side first. */
#define IO_TIMEOUT_MS 3000
#define SLICE_MS 20

enum step_kind {
	STEP_EXPECT,
	STEP_EXPECT_PREFIX,
	STEP_EXPECT_BYTES,
	STEP_SILENCE,
	STEP_SEND,
	STEP_SEND_BYTES,
	STEP_STALL,
	STEP_CLOSE,
};

static const char *const step_names[] = {
    "expect", "expect_prefix", "expect_bytes", "expect_silence",
    "send",   "send_bytes",    "stall",        "close",
};

struct step {
	enum step_kind kind;
	uint8_t *data; /* NUL-terminated copy */
	size_t len;
	int ms;
};

struct fake_server {
	struct step *steps;
	size_t n_steps, alloc;
	int listen_fd, fd;
	pthread_t thread;
	bool started, joined;
	atomic_bool stop;
	struct buf in;       /* received, not yet consumed by an expect */
	struct buf received; /* everything received */
	char tag[64];        /* of the latest wildcard expect */
	bool peer_closed;
	size_t cur; /* step being played, for error messages */
	char error[2048];
	int rc;
};

/* ---------- building the script ---------- */

static void add_step(struct fake_server *fs, enum step_kind kind, const void *data, size_t len,
                     int ms)
{
	if (fs->started)
		abort(); /* the script is fixed once the thread runs */
	if (fs->n_steps == fs->alloc) {
		fs->alloc = fs->alloc ? fs->alloc * 2 : 16;
		fs->steps = xrealloc(fs->steps, fs->alloc * sizeof(*fs->steps));
	}
	struct step *s = &fs->steps[fs->n_steps++];
	s->kind = kind;
	s->data = xmalloc(len + 1);
	if (len)
		memcpy(s->data, data, len);
	s->data[len] = '\0';
	s->len = len;
	s->ms = ms;
}

struct fake_server *fake_server_new(void)
{
	struct fake_server *fs = xcalloc(1, sizeof(*fs));
	fs->listen_fd = -1;
	fs->fd = -1;
	buf_init(&fs->in, 0);
	buf_init(&fs->received, 0);
	atomic_init(&fs->stop, false);
	return fs;
}

void fake_server_expect(struct fake_server *fs, const char *pattern)
{
	add_step(fs, STEP_EXPECT, pattern, strlen(pattern), 0);
}

void fake_server_expect_prefix(struct fake_server *fs, const char *prefix)
{
	add_step(fs, STEP_EXPECT_PREFIX, prefix, strlen(prefix), 0);
}

void fake_server_expect_bytes(struct fake_server *fs, const void *data, size_t len)
{
	add_step(fs, STEP_EXPECT_BYTES, data, len, 0);
}

void fake_server_expect_silence(struct fake_server *fs, int ms)
{
	add_step(fs, STEP_SILENCE, NULL, 0, ms);
}

void fake_server_send(struct fake_server *fs, const char *text)
{
	add_step(fs, STEP_SEND, text, strlen(text), 0);
}

void fake_server_send_bytes(struct fake_server *fs, const void *data, size_t len)
{
	add_step(fs, STEP_SEND_BYTES, data, len, 0);
}

void fake_server_stall(struct fake_server *fs, int ms)
{
	add_step(fs, STEP_STALL, NULL, 0, ms);
}

void fake_server_close(struct fake_server *fs)
{
	add_step(fs, STEP_CLOSE, NULL, 0, 0);
}

/* ---------- errors ---------- */

/* Printable rendering of bytes for error messages, cut at 200 bytes. */
static void escape(char *out, size_t outlen, const uint8_t *p, size_t len)
{
	size_t o = 0;
	for (size_t i = 0; i < len && i < 200 && o + 5 < outlen; i++) {
		if (p[i] == '\r')
			o += (size_t)snprintf(out + o, outlen - o, "\\r");
		else if (p[i] == '\n')
			o += (size_t)snprintf(out + o, outlen - o, "\\n");
		else if (p[i] < 0x20 || p[i] >= 0x7f)
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", p[i]);
		else
			out[o++] = (char)p[i];
	}
	if (len > 200 && o + 4 < outlen)
		o += (size_t)snprintf(out + o, outlen - o, "...");
	out[o < outlen ? o : outlen - 1] = '\0';
}

static int step_fail(struct fake_server *fs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int step_fail(struct fake_server *fs, const char *fmt, ...)
{
	char msg[1500];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (fs->cur < fs->n_steps)
		snprintf(fs->error, sizeof(fs->error), "fake server step %zu (%s): %s", fs->cur + 1,
		         step_names[fs->steps[fs->cur].kind], msg);
	else
		snprintf(fs->error, sizeof(fs->error), "fake server after the script: %s", msg);
	fs->rc = -1;
	return -1;
}

/* ---------- socket I/O ---------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait up to ms for bytes and record them.  1 got some, 0 nothing in
 * time, -1 the client closed (or the test is being torn down). */
static int fill(struct fake_server *fs, int ms)
{
	if (fs->peer_closed)
		return -1;
	int64_t deadline = now_ms() + ms;
	for (;;) {
		if (atomic_load(&fs->stop))
			return -1;
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return 0;
		struct pollfd pfd = {.fd = fs->fd, .events = POLLIN};
		int r = poll(&pfd, 1, left < SLICE_MS ? (int)left : SLICE_MS);
		if (r < 0 && errno != EINTR)
			return -1;
		if (r <= 0)
			continue;
		uint8_t tmp[16384];
		ssize_t n = recv(fs->fd, tmp, sizeof(tmp), 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			fs->peer_closed = true;
			return -1;
		}
		buf_append(&fs->in, tmp, (size_t)n);
		buf_append(&fs->received, tmp, (size_t)n);
		return 1;
	}
}

static int write_bytes(struct fake_server *fs, const uint8_t *p, size_t len)
{
	int64_t deadline = now_ms() + IO_TIMEOUT_MS;
	while (len) {
		if (atomic_load(&fs->stop))
			return -1;
		ssize_t n = send(fs->fd, p, len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			deadline = now_ms() + IO_TIMEOUT_MS;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return step_fail(fs, "cannot send: %s", strerror(errno));
		if (now_ms() > deadline)
			return step_fail(fs, "client stopped reading our data");
		struct pollfd pfd = {.fd = fs->fd, .events = POLLOUT};
		poll(&pfd, 1, SLICE_MS);
	}
	return 0;
}

/* The next line without its CR LF; *line_r points into fs->in and the
 * caller consumes *used_r bytes after looking. */
static int next_line(struct fake_server *fs, const uint8_t **line_r, size_t *len_r, size_t *used_r)
{
	for (;;) {
		uint8_t *lf = fs->in.len ? memchr(fs->in.data, '\n', fs->in.len) : NULL;
		if (lf) {
			size_t len = (size_t)(lf - fs->in.data);
			*used_r = len + 1;
			if (len && fs->in.data[len - 1] == '\r')
				len--;
			*line_r = fs->in.data;
			*len_r = len;
			return 0;
		}
		int r = fill(fs, IO_TIMEOUT_MS);
		if (r > 0)
			continue;
		char got[900];
		escape(got, sizeof(got), fs->in.data, fs->in.len);
		return step_fail(fs, "%s waiting for a line (partial: \"%s\")",
		                 r == 0 ? "timed out" : "client closed the connection", got);
	}
}

/* ---------- playing the script ---------- */

static int play_expect(struct fake_server *fs, const struct step *s)
{
	const uint8_t *line;
	size_t len, used;
	if (next_line(fs, &line, &len, &used) < 0)
		return -1;
	const uint8_t *rest = line;
	size_t rest_len = len;
	const uint8_t *want = s->data;
	size_t want_len = s->len;
	bool ok = true;
	char tag[sizeof(fs->tag)] = "";
	if (want_len >= 2 && want[0] == '*' && want[1] == ' ') {
		const uint8_t *sp = memchr(line, ' ', len);
		size_t tlen = sp ? (size_t)(sp - line) : 0;
		if (!sp || tlen == 0 || tlen >= sizeof(tag)) {
			ok = false;
		} else {
			memcpy(tag, line, tlen);
			tag[tlen] = '\0';
			rest = sp + 1;
			rest_len = len - tlen - 1;
		}
		want += 2;
		want_len -= 2;
	}
	if (ok) {
		if (s->kind == STEP_EXPECT_PREFIX)
			ok = rest_len >= want_len && memcmp(rest, want, want_len) == 0;
		else
			ok = rest_len == want_len && memcmp(rest, want, want_len) == 0;
	}
	if (!ok) {
		char got[900], exp[900];
		escape(got, sizeof(got), line, len);
		escape(exp, sizeof(exp), s->data, s->len);
		return step_fail(fs, "expected \"%s\", got \"%s\"", exp, got);
	}
	if (tag[0])
		snprintf(fs->tag, sizeof(fs->tag), "%s", tag);
	buf_consume(&fs->in, used);
	return 0;
}

static int play_expect_bytes(struct fake_server *fs, const struct step *s)
{
	while (fs->in.len < s->len) {
		int r = fill(fs, IO_TIMEOUT_MS);
		if (r <= 0)
			return step_fail(fs, "%s after %zu of %zu bytes",
			                 r == 0 ? "timed out" : "client closed the connection",
			                 fs->in.len, s->len);
	}
	if (memcmp(fs->in.data, s->data, s->len) != 0) {
		char got[900], exp[900];
		escape(got, sizeof(got), fs->in.data, s->len);
		escape(exp, sizeof(exp), s->data, s->len);
		return step_fail(fs, "expected bytes \"%s\", got \"%s\"", exp, got);
	}
	buf_consume(&fs->in, s->len);
	return 0;
}

static int play_send(struct fake_server *fs, const struct step *s)
{
	if (s->kind == STEP_SEND_BYTES)
		return write_bytes(fs, s->data, s->len);
	struct buf out = BUF_INIT(0);
	for (size_t i = 0; i < s->len; i++) {
		if (s->data[i] == '$' && i + 1 < s->len && s->data[i + 1] == 'T') {
			buf_puts(&out, fs->tag);
			i++;
		} else {
			buf_putc(&out, (char)s->data[i]);
		}
	}
	int r = write_bytes(fs, out.data, out.len);
	buf_release(&out);
	return r;
}

static int play_step(struct fake_server *fs, const struct step *s)
{
	switch (s->kind) {
	case STEP_EXPECT:
	case STEP_EXPECT_PREFIX:
		return play_expect(fs, s);
	case STEP_EXPECT_BYTES:
		return play_expect_bytes(fs, s);
	case STEP_SILENCE: {
		if (fs->in.len)
			return step_fail(fs, "data already waiting");
		int r = fill(fs, s->ms);
		if (r == 0)
			return 0;
		char got[900];
		escape(got, sizeof(got), fs->in.data, fs->in.len);
		return step_fail(fs, "expected %d ms of silence, %s \"%s\"", s->ms,
		                 r > 0 ? "got" : "client closed after", got);
	}
	case STEP_SEND:
	case STEP_SEND_BYTES:
		return play_send(fs, s);
	case STEP_STALL: {
		int64_t end = now_ms() + s->ms;
		while (now_ms() < end && fill(fs, (int)(end - now_ms())) >= 0)
			;
		return 0;
	}
	case STEP_CLOSE:
		shutdown(fs->fd, SHUT_WR);
		return 0;
	}
	return step_fail(fs, "unknown step");
}

/* After the script: the client must close without sending anything. */
static void wait_for_close(struct fake_server *fs)
{
	fs->cur = fs->n_steps;
	int64_t deadline = now_ms() + IO_TIMEOUT_MS;
	while (!fs->peer_closed && now_ms() < deadline) {
		if (fill(fs, (int)(deadline - now_ms())) < 0)
			break;
	}
	if (fs->in.len) {
		char got[900];
		escape(got, sizeof(got), fs->in.data, fs->in.len);
		step_fail(fs, "unexpected data after the script: \"%s\"", got);
	} else if (!fs->peer_closed && !atomic_load(&fs->stop)) {
		step_fail(fs, "the client did not close the connection");
	}
}

static void *serve(void *arg)
{
	struct fake_server *fs = arg;
	int64_t deadline = now_ms() + IO_TIMEOUT_MS;
	while (fs->fd < 0) {
		if (atomic_load(&fs->stop) || now_ms() > deadline) {
			fs->cur = 0;
			step_fail(fs, "no client connected");
			return NULL;
		}
		struct pollfd pfd = {.fd = fs->listen_fd, .events = POLLIN};
		if (poll(&pfd, 1, SLICE_MS) > 0)
			fs->fd = accept(fs->listen_fd, NULL, NULL);
	}
	fcntl(fs->fd, F_SETFL, fcntl(fs->fd, F_GETFL) | O_NONBLOCK);
	for (fs->cur = 0; fs->cur < fs->n_steps; fs->cur++)
		if (play_step(fs, &fs->steps[fs->cur]) < 0)
			break;
	if (fs->rc == 0)
		wait_for_close(fs);
	close(fs->fd);
	fs->fd = -1;
	return NULL;
}

uint16_t fake_server_start(struct fake_server *fs)
{
	fs->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fs->listen_fd < 0)
		abort();
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t salen = sizeof(sa);
	if (bind(fs->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fs->listen_fd, 4) < 0 ||
	    getsockname(fs->listen_fd, (struct sockaddr *)&sa, &salen) < 0)
		abort();
	fs->started = true;
	if (pthread_create(&fs->thread, NULL, serve, fs) != 0)
		abort();
	return ntohs(sa.sin_port);
}

int fake_server_finish(struct fake_server *fs)
{
	if (fs->started && !fs->joined) {
		pthread_join(fs->thread, NULL);
		fs->joined = true;
	}
	return fs->rc;
}

const char *fake_server_error(const struct fake_server *fs)
{
	return fs->error;
}

const uint8_t *fake_server_received(const struct fake_server *fs, size_t *len_r)
{
	if (len_r)
		*len_r = fs->received.len;
	return (const uint8_t *)buf_cstr(&fs->received);
}

void fake_server_free(struct fake_server **fsp)
{
	struct fake_server *fs = *fsp;
	if (!fs)
		return;
	if (fs->started && !fs->joined) {
		atomic_store(&fs->stop, true);
		pthread_join(fs->thread, NULL);
		fs->joined = true;
	}
	if (fs->fd >= 0)
		close(fs->fd);
	if (fs->listen_fd >= 0)
		close(fs->listen_fd);
	for (size_t i = 0; i < fs->n_steps; i++)
		free(fs->steps[i].data);
	free(fs->steps);
	buf_release(&fs->in);
	buf_release(&fs->received);
	free(fs);
	*fsp = NULL;
}
