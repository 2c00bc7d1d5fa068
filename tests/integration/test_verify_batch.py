#!/usr/bin/env python3
"""`imapmig verify --batch NAME`: every user of a batch compared directly,
connected the way the batch connects (admin login, CSV passwords), with the
batch's size limit counted as policy, not as missing; a difference made by
hand on one user's target is found and only that user differs."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import batchlib as B  # noqa: E402

USERS = ['alice', 'bob', 'carol']


def verify(b, *extra):
    argv = [H.imapmig_binary(), 'verify', '--batch', b.name, '--state',
            b.state] + list(extra)
    return b.env.run_imapmig('', '', '', '', argv=argv)


def test(env, ck):
    src, tgt = env.pair()
    for i, u in enumerate(USERS):
        B.small_mailbox(src, u, 15, seed=i)
    big = H.make_message('too big for the batch', body='x' * 200000)
    src.append('bob', 'INBOX', big)
    b = B.Batch(env, src, tgt, 'vb')
    b.write_csv(b.rows_for(USERS, source_password=False))
    r = b.create(b.master_args() + ['--max-message-size', '100K'])
    ck.eq(r.rc, 0, 'batch create')
    r = b.cmd('start')
    if not ck.eq(r.rc, 0, 'batch start'):
        print(r.describe())

    r = verify(b, '--json')
    ck.eq(r.rc, 0, 'verify --batch after the copy: exit 0')
    ev = [json.loads(x) for x in r.stdout.decode().splitlines() if x.strip()]
    users = [e['user'] for e in ev if e['event'] == 'user']
    ck.eq(sorted(users), sorted(B.email_of(u) for u in USERS), 'every user compared')
    total = [e for e in ev if e['event'] == 'verify_batch_summary']
    ck.ok(total and total[0]['missing'] == 0 and total[0]['extra'] == 0 and
          total[0]['differing'] == 0, 'batch summary: nothing missing or extra')
    skipped = [e for e in ev if e['event'] == 'skipped']
    ck.ok(any('too big' in json.dumps(e) or e.get('size', 0) > 100000
              for e in skipped), 'the big message counts as skipped by policy')

    # a message deleted by hand on carol's target: only carol differs
    tgt.doveadm('expunge', '-u', 'carol', 'mailbox', 'INBOX', 'uid', '1')
    r = verify(b)
    ck.eq(r.rc, 1, 'after a deletion on the target: exit 1')
    out = r.stdout.decode()
    ck.ok('1 users differ' in out, 'summary says one user differs: %r' %
          out.strip().splitlines()[-1:])
    ck.ok('1 missing' in out, 'the missing message is counted')

    # a bad batch name is a usage error naming it
    argv = [H.imapmig_binary(), 'verify', '--batch', 'nope', '--state', b.state]
    r = env.run_imapmig('', '', '', '', argv=argv)
    ck.eq(r.rc, 2, 'unknown batch: exit 2')
    ck.ok(b"no batch named 'nope'" in r.stderr, 'unknown batch named in the error')


def main():
    H.require_imapmig()
    ck = H.Check('test_verify_batch')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
