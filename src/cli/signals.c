/* signals.c - Ctrl-C and SIGTERM ask the running pass to stop at the next
 * safe point (between UID windows); a second Ctrl-C kills at once.  The
 * state database is consistent at any instant anyway, so either is safe. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	if (stop_flag) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	stop_flag = 1;
	static const char msg[] = "\nimapmig: stopping after the current step "
				  "(Ctrl-C again to quit at once)\n";
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing to do in a signal handler */
	}
}

void cli_install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

bool cli_stop_requested(void *ctx)
{
	(void)ctx;
	return stop_flag != 0;
}
