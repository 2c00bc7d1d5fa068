/* fingerprint.h - recognise the same message on two servers without
 * downloading it.
 *
 * A fingerprint is the first 128 bits (32 hex digits) of SHA-256 over the
 * message size and the unfolded, whitespace-trimmed values of a fixed set
 * of header fields, in a fixed order.  The fields come from
 * BODY.PEEK[HEADER.FIELDS (FINGERPRINT_FIELDS)], so the server returns
 * them in message order with its own folding; parsing them makes the
 * fingerprint independent of both.  Two byte-identical messages share a
 * fingerprint (the engine counts them, it does not merge them).
 */
#ifndef IMAPMIG_ENGINE_FINGERPRINT_H
#define IMAPMIG_ENGINE_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

#include "store/state.h"
#include "util/buf.h"

#define FINGERPRINT_FIELDS "MESSAGE-ID DATE FROM TO CC SUBJECT"

/* out must hold STATE_FP_LEN + 1 bytes. */
void fingerprint_compute(const uint8_t *headers, size_t len, uint64_t size, char *out);

/* The unfolded, trimmed value of the first field called name
 * (case-insensitive) in a header block, appended to out (capped by out's
 * max).  Returns 1 found, 0 not. */
int header_field_value(const uint8_t *headers, size_t len, const char *name, struct buf *out);

#endif
