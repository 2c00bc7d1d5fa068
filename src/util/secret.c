#include "util/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/mem.h"

static char *read_line_fd(int fd, size_t max)
{
	struct buf b = BUF_INIT(max);
	char c;
	for (;;) {
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || c == '\n')
			break;
		if (buf_putc(&b, c) < 0)
			break;
	}
	while (b.len && b.data[b.len - 1] == '\r')
		b.data[--b.len] = '\0';
	return buf_detach(&b, NULL);
}

char *secret_get(const char *file, const char *env, const char *prompt, struct err *err)
{
	if (file) {
		int fd = open(file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			err_set(err, ERR_CONFIG, "cannot read the password file %s: %s", file,
				strerror(errno));
			return NULL;
		}
		char *pw = read_line_fd(fd, 4096);
		close(fd);
		return pw;
	}
	const char *v = env ? getenv(env) : NULL;
	if (v)
		return xstrdup(v);
	int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
	if (tty < 0 || !prompt) {
		if (tty >= 0)
			close(tty);
		if (env) {
			err_set(err, ERR_CONFIG,
				"no password: no password file given, $%s is not set, and there is "
				"no terminal to ask on",
				env);
			err_hint(err, "give a file (%s) or set $%s",
				 strstr(env, "TARGET") ? "--target-password-file" : "--source-password-file",
				 env);
		} else {
			err_set(err, ERR_CONFIG, "no password: no password file given");
		}
		return NULL;
	}
	struct termios old, noecho;
	bool restore = tcgetattr(tty, &old) == 0;
	if (restore) {
		noecho = old;
		noecho.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(tty, TCSAFLUSH, &noecho);
	}
	if (write(tty, prompt, strlen(prompt)) < 0) {
		/* nothing to do: the read below still works */
	}
	char *pw = read_line_fd(tty, 4096);
	if (write(tty, "\n", 1) < 0) {
	}
	if (restore)
		tcsetattr(tty, TCSAFLUSH, &old);
	close(tty);
	return pw;
}
