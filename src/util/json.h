/* json.h - write JSON text (output only; imapmig never parses JSON). */
#ifndef IMAPMIG_UTIL_JSON_H
#define IMAPMIG_UTIL_JSON_H

#include "util/buf.h"

/* Append s as a JSON string literal, quotes included.  Invalid UTF-8
 * bytes become U+FFFD so the output is always valid JSON. NULL -> null. */
void json_string(struct buf *out, const char *s);

#endif
