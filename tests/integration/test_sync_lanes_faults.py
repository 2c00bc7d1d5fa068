#!/usr/bin/env python3
"""Append lanes (--append-connections, target without LITERAL+) when one
lane's connection breaks: the copy stops cleanly, the retry reconnects,
and the target ends with every source message exactly once (doveadm
oracle).  The fault proxy in front of the target breaks the second target
connection (the first extra lane) in the middle of its APPENDs, and
stalls the third in a later case."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import faultproxy as FP  # noqa: E402


def case(env, ck, src, tgt, tu, plan, what):
    pt = FP.FaultProxy(tgt.imaps_port).start()
    pt.set_plan(plan)
    argv = env.sync_args(src, 'alice', tgt, tu,
                         ['--append-connections', '3', '--retries', '3',
                          '--timeout', '3'],
                         state=env.path('state', tu + '.db'))
    argv[-1] = pt.url(tgt, tu)
    r = env.run_imapmig(src, 'alice', tgt, tu, argv=argv)
    pt.stop()
    ck.ok(0 <= r.rc < 128, '%s: no crash (rc %d)' % (what, r.rc))
    ck.ok(len(pt.fired()) >= 1, '%s: the fault fired' % what)
    ck.ok(len(pt.conns) > 3, '%s: the lanes reconnected (%d target '
          'connections)' % (what, len(pt.conns)))
    if not ck.eq(r.rc, 0, '%s: the retry finished the copy' % what):
        print(r.describe())
    if r.rc != 0:  # the rule: a rerun must end it exactly
        r = env.run_imapmig(src, 'alice', tgt, tu,
                            ['--append-connections', '3'],
                            state=env.path('state', tu + '.db'))
        ck.eq(r.rc, 0, '%s: rerun exits 0' % what)
    H.check_oracle(ck, src, 'alice', tgt, tu, '%s: exactly once' % what)


# Lanes take messages off a shared queue, so how much one lane carries
# depends on timing: the faults fire after 30 KB of a connection's
# traffic (its TLS handshake and login are ~2 KB; each lane appends
# some 150 KB of the 160 small messages), early enough to be sure.


def test(env, ck):
    src = env.server('source')
    tgt = env.server('target', literal_plus=False)
    for u in ('l1', 'l2'):
        tgt.add_user(u, 'Lane-pw-' + u)
    H.populate_corpus(src, 'alice', ['INBOX', 'Sent'], 160, seed=5)
    big = H.make_message('big', body=('y' * 76 + '\r\n') * 14000)
    src.append('alice', 'INBOX', big)
    case(env, ck, src, tgt, 'l1',
         [FP.Fault('clean'), FP.Fault('drop', 'c2s', after=30000)],
         'second target connection dropped mid-APPEND')
    case(env, ck, src, tgt, 'l2',
         [FP.Fault('clean'), FP.Fault('clean'),
          FP.Fault('stall', 'c2s', after=30000, seconds=8)],
         'third target connection stalled')


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_lanes_faults')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
