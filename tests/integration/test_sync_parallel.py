#!/usr/bin/env python3
"""--connections-per-user N: folders copied over N connection pairs at once
(each with its own state handle) end exactly as a single connection would:
identical by the doveadm oracle, a rerun copies nothing, and a SIGKILL in
the middle followed by a rerun leaves every message exactly once.  Also
MULTIAPPEND off (--no-multiappend) gives the same result."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

FOLDERS = ['INBOX', 'Sent', 'Archiv', 'Archiv.2019', 'Listen', '日本語']


def test(env, ck):
    src, tgt = env.pair()
    for f in FOLDERS:
        if f not in ('INBOX', 'Sent'):
            src.create_folder('alice', f, subscribe=True)
    H.populate_corpus(src, 'alice', FOLDERS, 360, seed=7)

    r = env.run_imapmig(src, 'alice', tgt, 'bob', ['--connections-per-user', '4'],
                        state=env.path('state', 'bob.db'))
    if not ck.eq(r.rc, 0, '4 connections: exit 0'):
        print(r.describe())
    s = r.summary or {}
    ck.eq(s.get('messages_copied'), 360, '4 connections: 360 copied')
    H.check_oracle(ck, src, 'alice', tgt, 'bob', '4 connections: identical')
    r = env.run_imapmig(src, 'alice', tgt, 'bob', ['--connections-per-user', '4'],
                        state=env.path('state', 'bob.db'))
    ck.eq((r.summary or {}).get('messages_copied'), 0, '4 connections: rerun copies 0')

    # killed while several connections copy, then rerun (also parallel)
    state = env.path('state', 'carol.db')
    r = env.run_imapmig(src, 'alice', tgt, 'carol', ['--connections-per-user', '3'],
                        state=state,
                        kill_when=lambda: H.target_file_count(tgt, 'carol') > 120)
    ck.ok(r.killed, 'killed mid-copy (%d on the target)' %
          H.target_file_count(tgt, 'carol'))
    r = env.run_imapmig(src, 'alice', tgt, 'carol', ['--connections-per-user', '3'],
                        state=state)
    ck.eq(r.rc, 0, 'rerun after the kill: exit 0')
    H.check_oracle(ck, src, 'alice', tgt, 'carol', 'kill + rerun, 3 connections: exactly once')

    r = env.run_imapmig(src, 'alice', tgt, 'dave', ['--no-multiappend'],
                        state=env.path('state', 'dave.db'))
    ck.eq(r.rc, 0, 'one APPEND per message: exit 0')
    H.check_oracle(ck, src, 'alice', tgt, 'dave', 'without MULTIAPPEND: identical')


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_parallel')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
