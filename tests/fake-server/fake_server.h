/* fake_server.h - a small scripted IMAP server for client edge-case tests.
 *
 * Only for what a real server will not do on demand: BYE in the middle of
 * a command, a disconnect in the middle of a literal, a stall, throttling
 * replies, and for checking the exact bytes a client sends.  Real-server
 * behaviour belongs to the integration tests against Dovecot.
 *
 * A test builds a script of steps, starts the server (it listens on
 * 127.0.0.1 on an ephemeral port and plays the script in a thread for
 * exactly one connection), runs the client against it, closes the client,
 * then calls fake_server_finish() and asserts on the result and on every
 * byte the server received.
 *
 * Steps:
 *   expect(pattern)     read one line (up to LF; CRLF is not part of the
 *                       comparison) and require it to equal pattern.  A
 *                       pattern starting with "* " matches any tag: the
 *                       line's first word is taken as the tag and the rest
 *                       must equal pattern + 2.  The tag is remembered.
 *                       Any other pattern must match the whole line (use
 *                       that for literal data, or to pin a tag: "A5 ...").
 *   expect_prefix(p)    like expect, but the line need only start with p.
 *   expect_bytes(d, n)  read exactly n raw bytes equal to d.
 *   expect_silence(ms)  fail if any byte arrives within ms (proves the
 *                       client is waiting, e.g. for a "+").
 *   send(text)          write text with every "$T" replaced by the tag of
 *                       the latest wildcard expect.
 *   send_bytes(d, n)    write n raw bytes, no substitution.
 *   stall(ms)           wait ms, still reading (and recording) what
 *                       arrives; ends early when the client closes.
 *   close()             shut down our sending side: the client sees EOF.
 *
 * After the last step the server reads until the client closes (at most
 * a few seconds); any byte arriving then is an error ("unexpected data
 * after the script"), so a script states the client's whole side.  A
 * failed step closes the connection at once and records why.
 *
 * Ownership: step data is copied; all memory is the server's until
 * fake_server_free().  Functions abort() on setup failures (it is test
 * code); script failures are reported by fake_server_finish().
 */
#ifndef IMAPMIG_TESTS_FAKE_SERVER_H
#define IMAPMIG_TESTS_FAKE_SERVER_H

#include <stddef.h>
#include <stdint.h>

struct fake_server;

/* A server with an empty script.  Free with fake_server_free(). */
struct fake_server *fake_server_new(void);

void fake_server_expect(struct fake_server *fs, const char *pattern);
void fake_server_expect_prefix(struct fake_server *fs, const char *prefix);
void fake_server_expect_bytes(struct fake_server *fs, const void *data, size_t len);
void fake_server_expect_silence(struct fake_server *fs, int ms);
void fake_server_send(struct fake_server *fs, const char *text);
void fake_server_send_bytes(struct fake_server *fs, const void *data, size_t len);
void fake_server_stall(struct fake_server *fs, int ms);
void fake_server_close(struct fake_server *fs);

/* Bind 127.0.0.1:0, start playing the script in a thread; returns the
 * port.  Steps must not be added afterwards. */
uint16_t fake_server_start(struct fake_server *fs);

/* Wait for the script to end (close the client first); 0 when every step
 * was played and nothing unexpected arrived, else -1 and
 * fake_server_error() says which step failed and how. */
int fake_server_finish(struct fake_server *fs);
/* "" when all went well; valid until fake_server_free(). */
const char *fake_server_error(const struct fake_server *fs);

/* Every byte received from the client, in order (NUL-terminated for
 * convenience; may contain NULs).  Valid after fake_server_finish(),
 * until fake_server_free(). */
const uint8_t *fake_server_received(const struct fake_server *fs, size_t *len_r);

/* Stop the thread if still running (closing the sockets), free; *fsp =
 * NULL.  Safe on NULL. */
void fake_server_free(struct fake_server **fsp);

#endif
