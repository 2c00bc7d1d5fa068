/* state_internal.h - for modules of the store layer only (batch_store.c):
 * the SQLite handle behind a struct state and its error reporting. */
#ifndef IMAPMIG_STORE_STATE_INTERNAL_H
#define IMAPMIG_STORE_STATE_INTERNAL_H

#include <sqlite3.h>

#include "store/state.h"

sqlite3 *state_sqlite(struct state *st);
/* Fill err from SQLite's last error ("state database PATH: action: ..."). */
int state_fail(struct state *st, const char *action, struct err *err);

#endif
