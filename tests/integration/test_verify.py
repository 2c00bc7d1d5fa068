#!/usr/bin/env python3
"""imapmig verify: an exact copy verifies clean; a message expunged from the
target by hand, a flag changed on the target and an extra target message
are each found (and nothing else); --deep finds a same-headers, same-size,
different-body message the default mode cannot see; an INTERNALDATE change
is a mismatch; --max-message-size and excluded folders are reported as
skipped by policy, not as missing."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

T0 = 1500000000
INBOX = [('inbox-%d' % i, ('\\Seen',) if i % 2 else ('$Label1',)) for i in range(6)]
WORK = [('work-%d' % i, ('\\Seen', '\\Answered')) for i in range(4)]
PRIVATE = [('private-%d' % i, ()) for i in range(2)]
BIG_SUBJECT = 'big attachment'


def body_for(subject):
    return 'Body of %s.\r\nSecond line.\r\n' % subject


def fill_source(src):
    src.create_folder('alice', 'Work', subscribe=True)
    src.create_folder('alice', 'Private', subscribe=True)
    c = src.client('alice')
    try:
        n = 0
        for folder, msgs in (('INBOX', INBOX), ('Work', WORK), ('Private', PRIVATE)):
            for subj, flags in msgs:
                H.append_raw(c, folder, H.make_message(subj, body_for(subj)), flags,
                             T0 + 3600 * n)
                n += 1
        big = 'x' * 76 + '\r\n'
        H.append_raw(c, 'INBOX', H.make_message(BIG_SUBJECT, big * 3000), ('\\Seen',),
                     T0 - 86400)
    finally:
        c.logout()


def verify(env, src, tgt, tgt_user, extra=(), src_user='alice'):
    argv = [H.imapmig_binary(), 'verify', '--ca-file', env.ca.cert,
            '--resolve', src.resolve_arg(), '--resolve', tgt.resolve_arg(),
            '--json'] + list(extra) + [src.url(src_user), tgt.url(tgt_user)]
    r = env.run_imapmig(src, src_user, tgt, tgt_user, argv=argv)
    r.vsum = next((e for e in r.events if e.get('event') == 'verify_summary'), None)
    return r


def of(r, kind):
    return [e for e in r.events if e.get('event') == kind]


def sync(env, ck, src, tgt, user, extra=(), src_user='alice'):
    r = env.run_imapmig(src, src_user, tgt, user, list(extra),
                        state=env.path('state', user + '.db'))
    if not ck.eq(r.rc, 0, 'sync to %s exits 0' % user):
        print(r.describe())


def counts(r):
    s = r.vsum or {}
    return (s.get('missing'), s.get('extra'), s.get('mismatched'))


def test(env, ck):
    src, tgt = env.pair()
    fill_source(src)
    total = len(INBOX) + len(WORK) + len(PRIVATE) + 1

    # ---- a clean copy verifies clean
    sync(env, ck, src, tgt, 'alice')
    r = verify(env, src, tgt, 'alice')
    if not ck.eq(r.rc, 0, 'verify after sync exits 0'):
        print(r.describe())
    ck.eq(counts(r), (0, 0, 0), 'clean copy: 0 missing, 0 extra, 0 mismatched')
    ck.ok(r.vsum and r.vsum['messages'] == total and r.vsum['skipped'] == 0,
          'clean copy: all %d source messages compared: %s' % (total, r.vsum))
    ck.ok(r.vsum and r.vsum['folders'] >= 3, 'at least INBOX, Work, Private compared')
    r = verify(env, src, tgt, 'alice', ['--deep'])
    if not ck.eq(r.rc, 0, 'verify --deep after sync exits 0'):
        print(r.describe())
    ck.eq(counts(r), (0, 0, 0), '--deep on a clean copy: no differences')

    # human output: the summary line
    argv = [H.imapmig_binary(), 'verify', '--ca-file', env.ca.cert,
            '--resolve', src.resolve_arg(), '--resolve', tgt.resolve_arg(),
            src.url('alice'), tgt.url('alice')]
    r = env.run_imapmig(src, 'alice', tgt, 'alice', argv=argv)
    ck.ok(b'verify: ' in r.stdout and b'messages: 0 missing, 0 extra, 0 mismatched (0 '
          b'skipped by policy)' in r.stdout, 'summary line: %r' % r.stdout[-200:])

    # ---- by hand on the target: expunge one, change a flag, add one
    tgt.doveadm('expunge', '-u', 'alice', 'mailbox', 'Work', 'header', 'Subject', 'work-2')
    tgt.doveadm('flags', 'add', '-u', 'alice', '\\Flagged', 'mailbox', 'INBOX',
                'header', 'Subject', 'inbox-3')
    tgt.append('alice', 'Work', H.make_message('stray', body_for('stray')), ('\\Seen',),
               T0)
    r = verify(env, src, tgt, 'alice')
    if not ck.eq(r.rc, 1, 'verify with differences exits 1'):
        print(r.describe())
    ck.eq(counts(r), (1, 1, 1), 'exactly 1 missing, 1 extra, 1 mismatched')
    m, x, mm = of(r, 'missing'), of(r, 'extra'), of(r, 'mismatch')
    ck.ok(len(m) == 1 and m[0].get('folder') == 'Work' and
          m[0].get('subject') == 'work-2' and m[0].get('uid') and m[0].get('size') and
          m[0].get('date'), 'missing: Work "work-2" with uid, date, size: %s' % m)
    ck.ok(len(x) == 1 and x[0].get('target_folder') == 'Work' and
          x[0].get('subject') == 'stray' and x[0].get('target_uid'),
          'extra: Work "stray": %s' % x)
    ck.ok(len(mm) == 1 and mm[0].get('folder') == 'INBOX' and
          mm[0].get('subject') == 'inbox-3' and mm[0].get('differs') == ['flags'] and
          '\\Flagged' in mm[0].get('target_flags', '') and
          '\\Flagged' not in mm[0].get('source_flags', '?'),
          'mismatch: INBOX "inbox-3", flags differ: %s' % mm)
    # the source was not touched by verify (BODY.PEEK, EXAMINE)
    before = H.fetch_all(src, 'alice')
    verify(env, src, tgt, 'alice', ['--deep'])
    ck.ok(H.fetch_all(src, 'alice') == before, 'verify changes nothing on the source')

    # ---- --deep: same headers, same size, one byte of the body differs
    sync(env, ck, src, tgt, 'bob')
    tgt.doveadm('expunge', '-u', 'bob', 'mailbox', 'INBOX', 'header', 'Subject', 'inbox-4')
    forged = H.make_message('inbox-4', body_for('inbox-4'))
    real = forged
    forged = forged.replace(b'Second line.', b'Second lime.')
    ck.ok(len(forged) == len(real) and forged != real, 'forged body: same size')
    # inbox-4 is the 5th message appended: date T0 + 4 h, flags of i=4
    tgt.append('bob', 'INBOX', forged, INBOX[4][1], T0 + 3600 * 4)
    r = verify(env, src, tgt, 'bob')
    if not ck.eq(r.rc, 0, 'default verify cannot tell the forged body (exit 0)'):
        print(r.describe())
    ck.eq(counts(r), (0, 0, 0), 'default verify: no differences')
    r = verify(env, src, tgt, 'bob', ['--deep'])
    if not ck.eq(r.rc, 1, 'verify --deep finds the forged body (exit 1)'):
        print(r.describe())
    ck.eq(counts(r), (1, 1, 0), '--deep: 1 missing (original), 1 extra (forged)')
    ck.ok([e.get('subject') for e in of(r, 'missing')] == ['inbox-4'] and
          [e.get('subject') for e in of(r, 'extra')] == ['inbox-4'],
          '--deep: both name "inbox-4"')

    # ---- INTERNALDATE changed: a mismatch on date
    sync(env, ck, src, tgt, 'erin')
    tgt.doveadm('expunge', '-u', 'erin', 'mailbox', 'Work', 'header', 'Subject', 'work-1')
    n = len(INBOX) + 1
    tgt.append('erin', 'Work', H.make_message('work-1', body_for('work-1')), WORK[1][1],
               T0 + 3600 * n + 7200)
    r = verify(env, src, tgt, 'erin')
    mm = of(r, 'mismatch')
    ck.ok(r.rc == 1 and counts(r) == (0, 0, 1) and len(mm) == 1 and
          mm[0].get('differs') == ['date'] and mm[0].get('subject') == 'work-1',
          'Work: INTERNALDATE moved by 2 h: 1 date mismatch: %s %s' % (counts(r), mm))

    # ---- --max-message-size: the big message is skipped, not missing
    sync(env, ck, src, tgt, 'carol', ['--max-message-size', '100K'])
    r = verify(env, src, tgt, 'carol', ['--max-message-size', '100K'])
    if not ck.eq(r.rc, 0, 'verify --max-message-size exits 0'):
        print(r.describe())
    sk = [e for e in of(r, 'skipped') if e.get('uid')]
    ck.ok(counts(r) == (0, 0, 0) and r.vsum['skipped'] == 1 and len(sk) == 1 and
          sk[0].get('subject') == BIG_SUBJECT and sk[0].get('size', 0) > 100 * 1024,
          'big message reported as skipped by policy: %s %s' % (r.vsum, sk))
    r = verify(env, src, tgt, 'carol')
    ck.ok(r.rc == 1 and counts(r) == (1, 0, 0) and
          [e.get('subject') for e in of(r, 'missing')] == [BIG_SUBJECT],
          'without the limit the big message is missing: %s' % (r.vsum,))

    # ---- an excluded folder is skipped; without the filter it is missing
    sync(env, ck, src, tgt, 'dave', ['--exclude', 'Private'])
    r = verify(env, src, tgt, 'dave', ['--exclude', 'Private'])
    if not ck.eq(r.rc, 0, 'verify --exclude Private exits 0'):
        print(r.describe())
    sk = [e for e in of(r, 'skipped') if not e.get('uid')]
    ck.ok(counts(r) == (0, 0, 0) and len(sk) == 1 and sk[0].get('folder') == 'Private'
          and sk[0].get('messages') == len(PRIVATE) and
          r.vsum['skipped'] == len(PRIVATE),
          'Private reported as skipped with its %d messages: %s' % (len(PRIVATE), sk))
    r = verify(env, src, tgt, 'dave')
    fm = of(r, 'folder_missing')
    ck.ok(r.rc == 1 and len(fm) == 1 and fm[0].get('folder') == 'Private' and
          r.vsum['missing'] == len(PRIVATE),
          'without --exclude: folder Private missing on the target: %s' % fm)

    # ---- real-world messages (corpus: bare LF, no Message-ID, 8-bit,
    # duplicates), a Japanese folder name, special-use mapping
    for f in ('Work', '日本語.報告'):
        src.create_folder('carol', f, subscribe=True)
    n = H.populate_corpus(src, 'carol', ['INBOX', 'Work', '日本語.報告', 'Sent', 'Junk'],
                          300, seed=11)
    sync(env, ck, src, tgt, 'frank@example.test', src_user='carol')
    for extra in ((), ('--deep',)):
        r = verify(env, src, tgt, 'frank@example.test', extra, src_user='carol')
        ck.ok(r.rc == 0 and counts(r) == (0, 0, 0) and r.vsum['messages'] == n,
              'corpus of %d messages verifies clean %s: %s' % (n, ' '.join(extra),
                                                                r.vsum))

    # ---- usage and login errors
    r = env.run_imapmig(src, 'alice', tgt, 'alice',
                        argv=[H.imapmig_binary(), 'verify', src.url('alice')])
    ck.eq(r.rc, 2, 'one URL only: exit 2')
    argv = [H.imapmig_binary(), 'verify', '--ca-file', env.ca.cert,
            '--resolve', src.resolve_arg(), '--resolve', tgt.resolve_arg(),
            src.url('alice'), tgt.url('alice')]
    r = env.run_imapmig(src, 'alice', tgt, 'alice', argv=argv, tgt_password='wrong')
    ck.ok(r.rc == 3 and b'target' in r.stderr,
          'wrong target password: exit 3 naming the target: %r' % r.stderr[-300:])


def main():
    H.require_imapmig()
    ck = H.Check('test_verify')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
