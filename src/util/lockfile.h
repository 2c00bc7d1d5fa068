/* lockfile.h - keep two imapmig processes off the same mailbox pair.
 *
 * An open-file-description lock (F_OFD_SETLK) on one byte of a small file
 * (created 0600): one file serves any number of pairs, each at its own
 * offset, and threads of one process holding different pairs do not
 * disturb each other.  The kernel drops the lock when its descriptor is
 * closed or the process ends, however it ends (SIGKILL included), so a
 * crash never leaves a stale lock behind.
 */
#ifndef IMAPMIG_UTIL_LOCKFILE_H
#define IMAPMIG_UTIL_LOCKFILE_H

#include <stdint.h>

#include "util/err.h"

/* Take the lock without waiting.  0 with *fd_r set; -1 with err:
 * ERR_TRANSIENT "... is in use by another imapmig" when someone holds it,
 * ERR_INTERNAL when the file cannot be made.  what names the thing
 * locked, for the message ("mailbox pair imaps://a@x -> imaps://a@y"). */
int lockfile_take(const char *path, uint64_t slot, const char *what, int *fd_r,
		  struct err *err);
/* Release and close; *fd becomes -1.  Safe with -1. */
void lockfile_release(int *fd);

#endif
