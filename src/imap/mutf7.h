/* mutf7.h - IMAP modified UTF-7 mailbox names (RFC 3501 section 5.1.3).
 *
 * "&" starts a base64 run of UTF-16 (with ',' for '/'), "-" ends it;
 * "&-" is a literal '&'.  Decoding is strict: a run that is not valid
 * modified base64, holds an unpaired surrogate, encodes a printable ASCII
 * character that should have been literal, leaves non-zero padding bits or
 * is not closed, or 8-bit input, is an error (RFC 3501 wants them
 * rejected, and a lax decoder would map two server names to one).
 * Encoding takes UTF-8 and fails on invalid UTF-8 (overlongs, surrogates).
 */
#ifndef IMAPMIG_IMAP_MUTF7_H
#define IMAPMIG_IMAP_MUTF7_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

/* Append the decoded UTF-8 to out.  0, or -1 (out unchanged). */
int mutf7_to_utf8(const char *in, size_t len, struct buf *out);
/* Append the encoded name to out.  0, or -1 (out unchanged). */
int utf8_to_mutf7(const char *in, size_t len, struct buf *out);
/* True when in is valid UTF-8. */
bool utf8_is_valid(const char *in, size_t len);

#endif
