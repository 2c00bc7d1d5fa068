/* secret.h - where passwords come from.  Never the command line.
 *
 * Order: a file (first line, trailing CR/LF removed), else an environment
 * variable, else a prompt on the controlling terminal with echo off.
 * Returned strings are the caller's: release with secret_free() (which
 * wipes them).
 */
#ifndef IMAPMIG_UTIL_SECRET_H
#define IMAPMIG_UTIL_SECRET_H

#include "util/err.h"

/* file may be NULL; env names a variable (may be NULL); prompt is shown
 * when neither gives a password and a terminal is there.  Returns NULL
 * with err (ERR_CONFIG) when there is no way to get one. */
char *secret_get(const char *file, const char *env, const char *prompt, struct err *err);

#endif
