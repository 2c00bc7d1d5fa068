#!/usr/bin/env python3
"""Exactly once after a crash at every durable step, deterministically.

imapmig's test hook IMAPMIG_TEST_CRASH_AFTER=N makes it _exit(99) right
after its Nth durable step (a state commit, an APPEND sent whole).  For
N = 1, 2, ... until a run finishes without reaching N, each run starts
from an empty target user and state, crashes at N, and is then rerun to
completion: the target must hold every source message exactly once, with
flags and dates (isync's run-tests.pl does the same for mbsync)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MAX_STEPS = 200


def test(env, ck, literal_plus=True, extra=()):
    src = env.server('source')
    tgt = env.server('target', literal_plus=literal_plus)
    src.create_folder('alice', 'Projekte', subscribe=True)
    src.create_folder('alice', '日本語', subscribe=True)
    twin = H.make_message('the same twice')
    for i in range(4):
        src.append('alice', 'INBOX', H.make_message('inbox %d' % i),
                   flags=('\\Seen',) if i % 2 else ())
    src.append('alice', 'INBOX', twin)
    src.append('alice', 'INBOX', twin)
    src.append('alice', 'Projekte', H.make_message('p1'), flags=('$Label1',))
    src.append('alice', '日本語', H.make_message('jp', msgid=False))
    src.append('alice', 'Sent', H.make_message('sent'), flags=('\\Seen',))
    expected = H.count_messages(src, 'alice')

    # all target users at once: Dovecot rereads its passwd-file only when
    # its size or mtime changes, which two quick same-size writes may not
    for n in range(1, MAX_STEPS + 1):
        tgt.users['cp%d' % n] = 'Crash-pw-%d' % n
    tgt.write_users()

    crashed = 0
    for n in range(1, MAX_STEPS + 1):
        user = 'cp%d' % n
        state = env.path('state', user + '.db')
        r = env.run_imapmig(src, 'alice', tgt, user, list(extra), state=state,
                            env={'IMAPMIG_TEST_CRASH_AFTER': str(n)})
        if r.rc == 0:
            # fewer than n durable steps: every crash point was tried
            ck.ok(H.count_messages(tgt, user) == expected,
                  'uncrashed run (n=%d) copied all %d' % (n, expected))
            break
        if not ck.eq(r.rc, 99, 'n=%d: crash hook fired' % n):
            print(r.describe())
            break
        crashed += 1
        r = env.run_imapmig(src, 'alice', tgt, user, list(extra), state=state)
        if not ck.eq(r.rc, 0, 'n=%d: rerun exits 0' % n):
            print(r.describe())
        H.check_oracle(ck, src, 'alice', tgt, user,
                       'n=%d: exactly once after the crash' % n)
    ck.ok(crashed >= 10, '%d crash points tried (>= 10)' % crashed)


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_crashpoints')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
