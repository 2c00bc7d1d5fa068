#!/usr/bin/env python3
"""SIGKILL during `batch start`, then `batch start` again: every message
exactly once on the target (doveadm oracle), every user Synced.

Kill points: a fixed time after start (connect/login) and when the
target's total message count (sdbox files of the batch's users, polled
every few ms) first exceeds k, i.e. with some users partly copied and
others not started (--jobs 2 over 4 users).  Then an incremental
`batch sync` must copy nothing."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import batchlib as B  # noqa: E402

USERS = ['alice', 'bob', 'carol', 'dave']
N = 120     # per user
FOLDERS = ['INBOX', 'Sent', 'Archiv', 'Archiv.2019', '日本語']


def total(tgt):
    return sum(H.target_file_count(tgt, u) for u in USERS)


def test(env, ck):
    src, tgt, _ = B.pair_with_users(env, 6)

    def fill(iu):
        i, u = iu
        for f in FOLDERS[2:]:
            src.create_folder(u, f, subscribe=True)
        H.populate_corpus(src, u, FOLDERS, N, seed=10 + i)
    B.pmap(fill, list(enumerate(USERS)))
    all_n = N * len(USERS)

    b = B.Batch(env, src, tgt, 'crash')
    b.users = USERS
    b.write_csv(b.rows_for(USERS, source_password=False))
    r = b.create(['--jobs', '2'] + b.master_args())
    if not ck.eq(r.rc, 0, 'create exits 0'):
        print(r.describe())

    kills = [('t', 0.15), ('n', 0), ('n', 90), ('n', 200), ('n', 330),
             ('n', all_n - 5)]
    killed = mid = 0
    for kind, v in kills:
        if kind == 't':
            r = b.cmd('start', '--json', kill_after=v, timeout=60)
        else:
            r = b.cmd('start', '--json', timeout=60,
                      kill_when=lambda k=v: total(tgt) > k)
        n = total(tgt)
        st = b.status() or {}
        sts = sorted(set(u.get('status') for u in B.users_of(st)))
        if r.killed:
            killed += 1
            mid += 0 < n < all_n
            print('  killed at %s=%s: %d of %d on the target; statuses %s'
                  % (kind, v, n, all_n, sts), flush=True)
        else:
            print('  start ended (rc=%s) before kill point %s=%s, %d on '
                  'target; statuses %s' % (r.rc, kind, v, n, sts),
                  flush=True)
            if r.rc != 0:
                print(r.describe())
        dup = [u for u in USERS if H.target_file_count(tgt, u) > N]
        ck.ok(not dup, 'after kill at %s=%s: no user has more messages '
              'than the source (%s)' % (kind, v, dup))
    ck.ok(killed >= 4, '%d start runs killed (>= 4 required)' % killed)
    ck.ok(mid >= 3, '%d killed in the middle of copying (>= 3 required)'
          % mid)

    r = b.cmd('start', '--json', timeout=80)
    if not ck.eq(r.rc, 0, 'final start exits 0'):
        print(r.describe())
    st = b.status() or {}
    ck.eq({u.get('email'): u.get('status') for u in B.users_of(st)},
          {B.email_of(u): 'Synced' for u in USERS},
          'after the kills: every user Synced')
    ck.eq((st.get('batch') or {}).get('status'), 'Synced',
          'batch status Synced')
    B.check_users_oracle(ck, src, tgt, USERS,
                         'after %d kills every message exactly once' % killed)
    ck.eq({u.get('email'): u.get('items_synced') for u in B.users_of(st)},
          {B.email_of(u): N for u in USERS},
          'status items_synced == %d per user' % N)

    r = b.cmd('sync', '--json', timeout=60)
    ck.eq(r.rc, 0, 'sync after recovery exits 0')
    ck.eq(sum(e.get('messages_copied', 0) or 0
              for e in B.events(r, 'user_done')), 0,
          'sync after recovery copies nothing')
    B.check_users_oracle(ck, src, tgt, USERS, 'after sync')

    # new mail and flag changes, then SIGKILL during `batch sync`
    B.pmap(lambda iu: H.populate_corpus(src, iu[1], ['INBOX', 'Archiv'],
                                        40, seed=30 + iu[0]),
           list(enumerate(USERS)))
    for u in USERS:
        src.flags(u, 'add', ['\\Flagged'], 'INBOX', '1:20')
    base = total(tgt)
    killed = 0
    for k in (5, 60, 120):
        r = b.cmd('sync', '--json', timeout=60,
                  kill_when=lambda k=k: total(tgt) > base + k)
        killed += bool(r.killed)
        print('  sync killed=%s at +%d: %d new on the target' % (
            r.killed, k, total(tgt) - base), flush=True)
    ck.ok(killed >= 2, '%d sync runs killed mid-copy' % killed)
    r = b.cmd('sync', '--json', timeout=60)
    if not ck.eq(r.rc, 0, 'sync after killed syncs exits 0'):
        print(r.describe())
    st = b.status() or {}
    ck.eq({u.get('email'): u.get('status') for u in B.users_of(st)},
          {B.email_of(u): 'Synced' for u in USERS},
          'after killed syncs: every user Synced')
    B.check_users_oracle(ck, src, tgt, USERS,
                         'after killed syncs: new mail once, flags equal')


def main():
    H.require_imapmig()
    ck = H.Check('test_batch_crash')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
