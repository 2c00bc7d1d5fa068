#!/usr/bin/env python3
"""The state database's write lock is never held across the network.

Many users' passes share one state database (a batch, or several
imapmig processes on one --state).  A pass whose source goes silent in
the middle of a metadata FETCH must not block the others: here alice's
source stalls for 20 s in the middle of her first window's FETCH (a fault
proxy), and meanwhile bob's pass on the same state file must finish at
once (before the fix it waited for alice's transaction and failed after
SQLite's 10 s busy timeout).  Then alice's pass retries and finishes;
both copies are exact by the doveadm oracle."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import faultproxy as FP  # noqa: E402


def test(env, ck):
    src, tgt = env.pair()
    for i in range(300):
        src.append('alice', 'INBOX', H.make_message('alice %d' % i))
    for i in range(5):
        src.append('bob', 'INBOX', H.make_message('bob %d' % i))
    state = env.path('state', 'shared.db')
    # a first pass for bob alone creates the state file and his pair
    r = env.run_imapmig(src, 'bob', tgt, 'bob', state=state)
    ck.eq(r.rc, 0, 'bob: first pass')
    src.append('bob', 'INBOX', H.make_message('bob new'))

    px = FP.FaultProxy(src.imaps_port).start()
    px.set_plan([FP.Fault('stall', 's2c', after=40000, seconds=20)])
    argv = env.sync_args(src, 'alice', tgt, 'alice', ['--timeout', '30'],
                         state=state)
    argv[-2] = px.url(src, 'alice')
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        'a', env.run_imapmig(src, 'alice', tgt, 'alice', argv=argv)))
    t.start()
    deadline = time.time() + 20
    while not px.fired() and time.time() < deadline:
        time.sleep(0.05)
    ck.ok(bool(px.fired()), "alice's source stalls in the middle of her FETCH")
    t0 = time.time()
    r = env.run_imapmig(src, 'bob', tgt, 'bob', state=state)
    took = time.time() - t0
    if not ck.eq(r.rc, 0, "bob's pass runs while alice's source is stalled"):
        print(r.describe())
    ck.ok(took < 8, "bob's pass did not wait for alice's (%.1f s)" % took)
    ck.eq((r.summary or {}).get('messages_copied'), 1, 'bob: the new message copied')
    t.join(120)
    px.stop()
    a = result.get('a')
    if not ck.ok(a is not None and a.rc == 0, 'alice: the retry finished her copy'):
        print(a.describe() if a else 'alice did not end')
    for u in ('alice', 'bob'):
        H.check_oracle(ck, src, u, tgt, u, '%s: exactly once' % u)


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_state_lock')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
