/* batch_report.h - load a batch's report model from the state database. */
#ifndef IMAPMIG_REPORT_BATCH_REPORT_H
#define IMAPMIG_REPORT_BATCH_REPORT_H

#include "report/report.h"
#include "store/batch_store.h"
#include "store/state.h"

/* A report plus the storage its pointers point into. */
struct batch_report {
	struct report r;
	struct batch_row batch;
	struct batch_user_row *users;
	size_t n_users;
	struct batch_item_row *items;
	size_t n_items;
	struct report_user *ru;
	struct report_item *ri;
	char *source, *target;
};

/* 1 loaded, 0 no such batch, -1 error.  Release with
 * batch_report_release(). */
int batch_report_load(struct state *st, const char *name, struct batch_report *br_r,
		      struct err *err);
void batch_report_release(struct batch_report *br);

#endif
