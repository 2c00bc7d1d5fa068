#!/usr/bin/env python3
"""Statuses after a SIGKILL are honest.

A pass killed with SIGKILL cannot write its users' last status: they stay
Syncing / IncrementalSyncing in the database.  `batch status` (text and
--json), `batch report` and `batch list` must then show them Interrupted
(no process runs the batch: nobody holds its lock), while during a live
pass they still show Syncing.  The next pass picks the Interrupted users
up and every message ends on the target exactly once (doveadm oracle).
Killed once in `batch start` and once in `batch sync`."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import batchlib as B  # noqa: E402

USERS = ['alice', 'bob', 'carol', 'dave']
N = 150     # per user
FOLDERS = ['INBOX', 'Sent', 'Archiv']
RUNNING = ('Syncing', 'IncrementalSyncing', 'Completing')


def total(tgt):
    return sum(H.target_file_count(tgt, u) for u in USERS)


def check_honest(ck, b, what):
    """No status says running; at least one user Interrupted."""
    st = b.status() or {}
    users = {u.get('email'): u.get('status') for u in B.users_of(st)}
    batch = (st.get('batch') or {}).get('status') or st.get('status')
    print('  %s: batch %s, users %s' % (what, batch, users), flush=True)
    ck.ok(users and not [s for s in users.values() if s in RUNNING],
          '%s: status --json shows no user running (%r)' % (what, users))
    ck.ok('Interrupted' in users.values(),
          '%s: the users being copied are Interrupted' % what)
    ck.ok(batch not in RUNNING, '%s: batch status %r is not running'
          % (what, batch))
    ck.eq(batch, 'Interrupted', '%s: batch status Interrupted' % what)

    r = b.cmd('status')
    ck.eq(r.rc, 0, '%s: status (text) exits 0' % what)
    text = r.stdout.decode('utf-8', 'replace')
    ck.ok('Interrupted' in text and not any(s in text for s in RUNNING),
          '%s: status (text) says Interrupted, never Syncing' % what)

    r = b.cmd('report', '--format', 'csv')
    text = r.stdout.decode('utf-8', 'replace')
    ck.ok(r.rc == 0 and 'Interrupted' in text and
          not any(s in text for s in RUNNING),
          '%s: report (csv) says Interrupted, never Syncing' % what)

    rc, lst = b.list_json()
    mine = [x.get('status') for x in (lst or []) if x.get('name') == b.name]
    ck.eq(mine, ['Interrupted'], '%s: list --json shows the batch '
          'Interrupted' % what)


def test(env, ck):
    src, tgt, _ = B.pair_with_users(env, 6)
    B.pmap(lambda iu: (src.create_folder(iu[1], 'Archiv', subscribe=True),
                       H.populate_corpus(src, iu[1], FOLDERS, N,
                                         seed=40 + iu[0])),
           list(enumerate(USERS)))
    all_n = N * len(USERS)

    b = B.Batch(env, src, tgt, 'intr')
    b.write_csv(b.rows_for(USERS, source_password=False))
    r = b.create(['--jobs', '2'] + b.master_args())
    if not ck.eq(r.rc, 0, 'create exits 0'):
        print(r.describe())

    # a live pass: its users show Syncing (the lock is held)
    p, outp, errp = b.popen('start', '--json')
    seen = B.wait_for(lambda: 'Syncing' in b.user_statuses().values(), 30,
                      step=0.05)
    ck.ok(seen, 'during a live pass a user shows Syncing')
    p.kill()
    p.wait()
    check_honest(ck, b, 'after SIGKILL of a running start')

    # killed mid-copy
    r = b.cmd('start', '--json', timeout=60,
              kill_when=lambda: total(tgt) > all_n // 3)
    ck.ok(r.killed, 'start killed mid-copy (%d of %d on the target)'
          % (total(tgt), all_n))
    if r.killed:
        check_honest(ck, b, 'after SIGKILL mid-copy in start')

    r = b.cmd('start', '--json', timeout=120)
    if not ck.eq(r.rc, 0, 'start after the kills exits 0'):
        print(r.describe())
    ck.eq(b.user_statuses(), {B.email_of(u): 'Synced' for u in USERS},
          'after start: every user Synced')
    B.check_users_oracle(ck, src, tgt, USERS,
                         'after killed starts: every message once')

    # new mail, then SIGKILL during `batch sync`
    B.pmap(lambda iu: H.populate_corpus(src, iu[1], ['INBOX', 'Archiv'],
                                        60, seed=80 + iu[0]),
           list(enumerate(USERS)))
    base = total(tgt)
    r = b.cmd('sync', '--json', timeout=60,
              kill_when=lambda: total(tgt) > base + 40)
    ck.ok(r.killed, 'sync killed mid-copy (+%d)' % (total(tgt) - base))
    if r.killed:
        check_honest(ck, b, 'after SIGKILL in sync')
        st = b.status() or {}
        js = json.dumps(st)
        ck.ok('IncrementalSyncing' not in js,
              'status --json never says IncrementalSyncing after the kill')

    r = b.cmd('sync', '--json', timeout=120)
    if not ck.eq(r.rc, 0, 'sync after the kill exits 0'):
        print(r.describe())
    done = B.events(r, 'user_done')
    ck.eq(sorted(e.get('status') for e in done), ['Synced'] * len(USERS),
          'the next sync runs every user to Synced')
    st = b.status() or {}
    ck.eq({u.get('email'): u.get('status') for u in B.users_of(st)},
          {B.email_of(u): 'Synced' for u in USERS},
          'after the killed sync: every user Synced')
    ck.eq((st.get('batch') or {}).get('status'), 'Synced',
          'batch status Synced')
    dup = [u for u in USERS if H.target_file_count(tgt, u) > N + 60]
    ck.ok(not dup, 'no user has more messages than the source (%s)' % dup)
    B.check_users_oracle(ck, src, tgt, USERS,
                         'after the killed sync: new mail exactly once')


def main():
    H.require_imapmig()
    ck = H.Check('test_batch_interrupted')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
