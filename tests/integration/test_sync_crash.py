#!/usr/bin/env python3
"""Never a duplicate, never a loss: imapmig SIGKILLed at many moments and
rerun ends with every source message exactly once on the target.

Kill points: at fixed times after start (connect/login/listing phases) and
when the target's message count first exceeds k (mid-copy), watched by
counting sdbox files every few ms.  Each kill sequence uses its own target
user and state database; after its kills a final run must complete.
A variant pre-fills the target with copies of some messages (same bytes,
put there by someone else): they must not be duplicated."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

FOLDERS = ['INBOX', 'Archiv', 'Archiv.2019', 'Listen', '日本語', 'Sent']
N = 500


def sequence(env, ck, src, tgt, user, kills):
    """Run with the given kill triggers in turn, then to completion.
    kills: list of ('t', seconds) or ('n', k).  -> (#killed mid-copy,
    #killed at all)."""
    state = env.path('state', user + '.db')
    mid = killed = 0
    for kind, v in kills:
        if kind == 't':
            r = env.run_imapmig(src, 'alice', tgt, user, state=state,
                                kill_after=v)
        else:
            r = env.run_imapmig(
                src, 'alice', tgt, user, state=state,
                kill_when=lambda k=v: H.target_file_count(tgt, user) > k)
        n = H.target_file_count(tgt, user)
        if r.killed:
            killed += 1
            if 0 < n < N:
                mid += 1
            print('  %s: killed at %s=%s with %d messages on the target' % (
                user, kind, v, n), flush=True)
        else:
            print('  %s: run ended (rc=%s) before kill point %s=%s, %d on '
                  'target' % (user, r.rc, kind, v, n), flush=True)
            if r.rc != 0:
                print(r.describe())
    r = env.run_imapmig(src, 'alice', tgt, user, state=state)
    if not ck.eq(r.rc, 0, '%s: final run exits 0' % user):
        print(r.describe())
    H.check_oracle(ck, src, 'alice', tgt, user,
                   '%s: after %d kills every message exactly once' % (
                       user, killed))
    return mid, killed


def test(env, ck):
    src, tgt = env.pair()
    for f in FOLDERS[1:]:
        if f != 'Sent':
            src.create_folder('alice', f, subscribe=True)
    H.populate_corpus(src, 'alice', FOLDERS, N, seed=3)
    ck.eq(H.count_messages(src, 'alice'), N, 'source has %d messages' % N)

    mid = killed = 0
    plans = {
        'bob': [('t', 0.05), ('t', 0.3), ('n', 1), ('n', 60), ('n', 200),
                ('n', 350), ('n', 480)],
        'carol': [('n', 0), ('n', 30), ('n', 120), ('n', 260), ('n', 420)],
        'dave': [('t', 0.15), ('t', 0.6), ('n', 10), ('n', 300),
                 ('n', 499)],
    }
    for user, kills in plans.items():
        m, k = sequence(env, ck, src, tgt, user, kills)
        mid += m
        killed += k
    ck.ok(killed >= 5, '%d runs killed (>= 5 required)' % killed)
    ck.ok(mid >= 5, '%d kills in the middle of copying (>= 5 required)' % mid)

    # variant: the target already holds copies of 40 messages, same bytes,
    # flags and INTERNALDATE, put there by someone else (not imapmig)
    so = H.fetch_messages(src, 'alice')
    c = tgt.client('erin')
    pre = 0
    for m in so[::12][:40]:
        tname = H.expected_target_name(m['mailbox'])
        if tname not in H.list_folders(tgt, 'erin'):
            c.create(H.imap_quote(H.mutf7_encode(tname)))
        flags = [f for f in m['flags'].split() if f != '\\Recent']
        H.append_raw(c, tname, m['text'].replace(b'\n', b'\r\n'), flags,
                     int(m['date.received.unixtime']))
        pre += 1
    c.logout()
    ck.eq(H.count_messages(tgt, 'erin'), pre, 'erin pre-filled with %d' % pre)
    state = env.path('state', 'erin.db')
    r = env.run_imapmig(src, 'alice', tgt, 'erin', state=state,
                        kill_when=lambda: H.target_file_count(tgt, 'erin') >
                        pre + 100)
    r = env.run_imapmig(src, 'alice', tgt, 'erin', state=state)
    if not ck.eq(r.rc, 0, 'pre-filled target: run exits 0'):
        print(r.describe())
    H.check_oracle(ck, src, 'alice', tgt, 'erin',
                   'pre-filled target (+1 kill): no duplicates')

    # and without a kill, the counts say what happened
    c = tgt.client('frank@example.test')
    for m in so[::25][:20]:
        tname = H.expected_target_name(m['mailbox'])
        if tname not in H.list_folders(tgt, 'frank@example.test'):
            c.create(H.imap_quote(H.mutf7_encode(tname)))
        flags = [f for f in m['flags'].split() if f != '\\Recent']
        H.append_raw(c, tname, m['text'].replace(b'\n', b'\r\n'), flags,
                     int(m['date.received.unixtime']))
    c.logout()
    r = env.run_imapmig(src, 'alice', tgt, 'frank@example.test',
                        state=env.path('state', 'frank.db'))
    if not ck.eq(r.rc, 0, 'pre-filled (20) target exits 0'):
        print(r.describe())
    s = r.summary or {}
    ck.eq(s.get('messages_existing'), 20, 'messages_existing == 20')
    ck.eq(s.get('messages_copied'), N - 20, 'messages_copied == N - 20')
    H.check_oracle(ck, src, 'alice', tgt, 'frank@example.test',
                   'pre-filled target: no duplicates')


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_crash')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
