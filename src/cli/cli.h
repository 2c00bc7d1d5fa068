/* cli.h - the command table and what the commands share. */
#ifndef IMAPMIG_CLI_CLI_H
#define IMAPMIG_CLI_CLI_H

#include "util/err.h"

/* Exit statuses, documented in imapmig(1). */
enum exit_status {
	EXIT_OK = 0,       /* everything selected was copied */
	EXIT_PARTIAL = 1,  /* done, but some messages or folders failed */
	EXIT_USAGE = 2,    /* bad command line or configuration: nothing done */
	EXIT_ACCOUNT = 3,  /* could not connect, log in or go on with a mailbox */
	EXIT_STOPPED = 4,  /* stopped on request; run again to resume */
};

#include <stdbool.h>

int cmd_sync(int argc, char **argv);
int cmd_batch(int argc, char **argv);
int cmd_verify(int argc, char **argv);

/* Ctrl-C / SIGTERM: the first asks for a stop at the next safe point
 * (cli_stop_requested() turns true), the second ends the process. */
void cli_install_signals(void);
bool cli_stop_requested(void *ctx);

/* Print "imapmig: <formatted error>" to stderr. */
void cli_error(const struct err *e);
/* The exit status for a fatal error of this kind. */
int cli_exit_for(const struct err *e);

#endif
