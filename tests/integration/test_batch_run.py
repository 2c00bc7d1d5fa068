#!/usr/bin/env python3
"""`imapmig batch run NAME --every 2s`: the first pass copies everything,
later passes pick up mail delivered meanwhile, and the runner ends by
itself (exit 0) once `batch complete` has run in another process; with
Ctrl-C (SIGINT) it stops at once with exit 4."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import batchlib as B  # noqa: E402

USERS = ['alice', 'bob']


def test(env, ck):
    src, tgt = env.pair()
    for i, u in enumerate(USERS):
        B.small_mailbox(src, u, 10, seed=i)
    b = B.Batch(env, src, tgt, 'every')
    b.write_csv(b.rows_for(USERS, source_password=False))
    ck.eq(b.create(b.master_args()).rc, 0, 'batch create')

    p, outp, errp = b.popen('run', '--every', '2s', '--json')
    ok = B.wait_for(lambda: b.user_statuses() == {B.email_of(u): 'Synced' for u in USERS},
                    60, step=0.5)
    ck.ok(ok, 'first pass: every user Synced (%r)' % b.user_statuses())
    B.check_users_oracle(ck, src, tgt, USERS, 'after the first pass')

    # new mail while the runner waits: the next pass copies it
    src.save('alice', 'INBOX', H.make_message('arrived during cut-over'))
    want = H.count_messages(src, 'alice')
    ok = B.wait_for(lambda: H.count_messages(tgt, 'alice') == want, 30, step=0.5)
    ck.ok(ok, 'an incremental pass copied the new message')

    r = b.cmd('complete')
    ck.eq(r.rc, 0, 'batch complete (another process)')
    try:
        rc = p.wait(timeout=30)
    except Exception:
        p.kill()
        rc = None
    ck.eq(rc, 0, 'the runner ends by itself once the batch is Completed')
    B.check_users_oracle(ck, src, tgt, USERS, 'after complete')

    # a runner stopped with Ctrl-C
    b2 = B.Batch(env, src, tgt, 'sig', state=env.path('state', 'sig.db'))
    b2.write_csv(b2.rows_for(['carol'], source_password=False))
    B.small_mailbox(src, 'carol', 5, seed=9)
    ck.eq(b2.create(b2.master_args()).rc, 0, 'second batch create')
    p, outp, errp = b2.popen('run', '--every', '1h')
    ok = B.wait_for(lambda: b2.user_statuses().get(B.email_of('carol')) == 'Synced', 60,
                    step=0.5)
    ck.ok(ok, 'second runner: first pass done')
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=10)
    except Exception:
        p.kill()
        rc = None
    ck.eq(rc, 4, 'Ctrl-C while waiting: exit 4 (stopped)')


def main():
    H.require_imapmig()
    ck = H.Check('test_batch_run')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
