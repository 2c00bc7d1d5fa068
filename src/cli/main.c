/* main.c - imapmig's entry point: dispatch to one command. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define VERSION "0.1.0"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "sync", cmd_sync, "copy one mailbox (first a full copy, then what changed)" },
	{ "batch", cmd_batch, "move many mailboxes from a CSV, in passes until cut-over" },
	{ "verify", cmd_verify, "compare two mailboxes: missing, extra, mismatched messages" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: imapmig COMMAND [options] ...\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'imapmig COMMAND --help' describes a command; man imapmig has it all.\n");
}

void cli_error(const struct err *e)
{
	char text[4096];
	fprintf(stderr, "imapmig: %s\n", err_format(e, text, sizeof(text)));
}

int cli_exit_for(const struct err *e)
{
	if (e->kind == ERR_STOPPED)
		return EXIT_STOPPED;
	return e->kind == ERR_CONFIG ? EXIT_USAGE : EXIT_ACCOUNT;
}

int main(int argc, char **argv)
{
	/* A peer closing the socket must be an error we report, not a
	 * signal that kills us mid-write. */
	signal(SIGPIPE, SIG_IGN);
	cli_install_signals();
	/* before any worker thread exists (mailed batch reports use libcurl) */
	curl_global_init(CURL_GLOBAL_DEFAULT);

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("imapmig %s\n", VERSION);
		return EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "imapmig: '%s' is not a command\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
