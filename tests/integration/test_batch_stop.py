#!/usr/bin/env python3
"""`batch stop` from another process, and `--start-after`.

stop:  `batch start` runs in the background (4 users, --jobs 2); once the
       target holds some messages `batch stop` is run: the start exits 4
       (stopped) within seconds, no user is left Syncing, the running ones
       are Stopped, the batch is Stopped; `batch start` again finishes with
       every message exactly once (doveadm oracle).
later: `--start-after +4s`: `batch start` holds the users Queued (status
       --json says so while it waits), then copies them; it cannot have
       started copying before the time."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import batchlib as B  # noqa: E402

USERS = ['alice', 'bob', 'carol', 'dave']
N = 150


def total(tgt, users):
    return sum(H.target_file_count(tgt, u) for u in users)


def read_events(path):
    res = []
    for line in open(path, 'rb').read().splitlines():
        try:
            res.append(json.loads(line))
        except ValueError:
            pass
    return res


def test_stop(env, ck, src, tgt):
    B.pmap(lambda iu: H.populate_corpus(src, iu[1], ['INBOX', 'Sent'], N,
                                        seed=20 + iu[0]),
           list(enumerate(USERS)))
    b = B.Batch(env, src, tgt, 'stopme')
    b.users = USERS
    b.write_csv(b.rows_for(USERS, source_password=False))
    r = b.create(['--jobs', '2'] + b.master_args())
    if not ck.eq(r.rc, 0, 'stop: create exits 0'):
        print(r.describe())
    p, outp, errp = b.popen('start', '--json')
    ok = B.wait_for(lambda: total(tgt, USERS) > 40 or p.poll() is not None,
                    60, 0.005)
    n_at_stop = total(tgt, USERS)
    ck.ok(ok and p.poll() is None, 'stop: start running with %d messages '
          'copied' % n_at_stop)
    t0 = time.time()
    r = b.cmd('stop')
    if not ck.eq(r.rc, 0, 'stop: batch stop exits 0'):
        print(r.describe())
    try:
        rc = p.wait(20)
    except Exception:
        p.kill()
        rc = p.wait()
    dt = time.time() - t0
    ck.eq(rc, 4, 'stop: the running start exits 4 (stopped)')
    ck.ok(dt < 10, 'stop: it stopped within %.1fs' % dt)
    n_after = total(tgt, USERS)
    ck.ok(n_after < N * len(USERS),
          'stop: not everything copied (%d of %d)' % (n_after,
                                                      N * len(USERS)))
    ev = read_events(outp)
    done = [e for e in ev if e.get('event') == 'batch_done']
    ck.ok(done and done[-1].get('status') == 'Stopped',
          'stop: batch_done Stopped (%r)' % done[-1:])
    st = b.status() or {}
    sts = {u.get('email'): u.get('status') for u in B.users_of(st)}
    ck.eq((st.get('batch') or {}).get('status'), 'Stopped',
          'stop: batch status Stopped')
    ck.ok(not [s for s in sts.values() if s in ('Syncing', 'Queued')] and
          'Stopped' in sts.values(),
          'stop: no user Syncing/Queued, some Stopped (%s)' % sts)
    running = {e.get('user') for e in ev if e.get('event') == 'user_status'
               and e.get('status') == 'Syncing'}
    finished = {e.get('user') for e in ev if e.get('event') == 'user_done'
                and e.get('status') == 'Synced'}
    ck.eq({u: sts.get(u) for u in running - finished},
          {u: 'Stopped' for u in running - finished},
          'stop: the users that were running are Stopped')
    r = b.cmd('start', '--json', timeout=80)
    if not ck.eq(r.rc, 0, 'stop: start again exits 0'):
        print(r.describe())
    st = b.status() or {}
    ck.eq({u.get('email'): u.get('status') for u in B.users_of(st)},
          {B.email_of(u): 'Synced' for u in USERS},
          'stop: after start again every user Synced')
    B.check_users_oracle(ck, src, tgt, USERS,
                         'stop: after stop + start every message once')


def test_later(env, ck, src, tgt):
    users = ['erin', 'frank@example.test']
    for u in users:
        B.small_mailbox(src, u, 8, sum(map(ord, u)) % 40)
    b = B.Batch(env, src, tgt, 'later')
    b.users = users
    b.write_csv(b.rows_for(users, source_password=False))
    t_create = time.time()
    r = b.create(['--start-after', '+4s'] + b.master_args())
    if not ck.eq(r.rc, 0, 'later: create exits 0'):
        print(r.describe())
    p, outp, errp = b.popen('start', '--json')
    time.sleep(1.0)
    st = b.status() or {}
    sts = {u.get('email'): u.get('status') for u in B.users_of(st)}
    ck.eq(sts, {B.email_of(u): 'Queued' for u in users},
          'later: users Queued while waiting')
    ck.eq(sum(H.target_file_count(tgt, u) for u in users), 0,
          'later: nothing copied before the time')
    try:
        rc = p.wait(40)
    except Exception:
        p.kill()
        rc = p.wait()
    dt = time.time() - t_create
    ck.eq(rc, 0, 'later: start exits 0')
    ck.ok(dt >= 3.9, 'later: start ended %.1fs after create (>= 4)' % dt)
    ev = read_events(outp)
    ck.ok(any(e.get('event') == 'waiting' for e in ev),
          'later: a waiting event')
    st = b.status() or {}
    ck.eq({u.get('email'): u.get('status') for u in B.users_of(st)},
          {B.email_of(u): 'Synced' for u in users}, 'later: users Synced')
    B.check_users_oracle(ck, src, tgt, users, 'later')


def test(env, ck):
    src, tgt, _ = B.pair_with_users(env, 6)
    test_stop(env, ck, src, tgt)
    test_later(env, ck, src, tgt)


def main():
    H.require_imapmig()
    ck = H.Check('test_batch_stop')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
