#!/usr/bin/env python3
"""imapmig sync, first copy and rerun, checked with doveadm on both servers.

Source (Maildir++, '.'): non-ASCII folder names, 4-deep nesting, empty and
unsubscribed folders, special-use Sent/Drafts/Trash/Junk, every system flag
and custom keywords, INTERNALDATE unlike the Date header, bare LF, no
Message-ID, two identical messages, ~300 corpus messages.  A second user
(index layout) has a folder named 'a/b' that must become 'a_b' on the '/'
target, not 'a' > 'b'."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

FOLDERS = ['Entwürfe', '日本語', '日本語.報告', 'a.b.c.d', 'Projekte.2024',
           'Empty', 'amp & co', 'Ünïcödé 日本 ☃']
UNSUBSCRIBED = ['Unsubscribed', 'Projekte.Alt']


def populate(src):
    for f in FOLDERS:
        src.create_folder('alice', f, subscribe=True)
    for f in UNSUBSCRIBED:
        src.create_folder('alice', f)
    c = src.client('alice')
    all_flags = ('\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft')
    kws = ('$Forwarded', '$Label1', 'NonJunk', 'custom_kw')
    H.append_raw(c, 'INBOX', H.make_message('all system flags'), all_flags,
                 1262304000)
    H.append_raw(c, 'INBOX', H.make_message('keywords'),
                 ('\\Seen',) + kws, 1262390400)
    # INTERNALDATE years away from the Date header
    H.append_raw(c, 'INBOX', H.make_message(
        'dated', date='Tue, 02 Jan 2001 03:04:05 -0800'), (), 1500000000)
    H.append_raw(c, '日本語.報告', H.make_message(
        '報告書 UTF-8 subject', body='本文です。\r\n'), ('\\Seen',),
        1400000000)
    H.append_raw(c, 'a.b.c.d', H.make_message('deep', msgid=False),
                 ('\\Flagged',), 1300000000)
    twin = H.make_message('twin', body='same bytes\r\n')
    H.append_raw(c, 'Projekte.2024', twin, ('\\Seen',), 1600000000)
    H.append_raw(c, 'Projekte.2024', twin, ('\\Seen',), 1600000000)
    for f, subj in (('Sent', 'sent one'), ('Drafts', 'draft one'),
                    ('Trash', 'trash one'), ('Junk', 'junk one')):
        H.append_raw(c, f, H.make_message(subj), ('\\Seen',), 1350000000)
    c.logout()
    # bare LF (doveadm save keeps the bytes as given; no flags/date)
    src.save('alice', 'INBOX',
             b'From: lf@example.org\nSubject: bare LF\n\nline 1\nline 2\n')
    src.save('alice', 'Entwürfe',
             b'From: lf@example.org\nSubject: no msgid, LF\n\nbody\n')
    n = H.populate_corpus(src, 'alice', ['INBOX', 'Sent', 'Junk', '日本語',
                                         '日本語.報告', 'Projekte.2024',
                                         'Entwürfe', 'a.b.c.d', 'Trash'],
                          300)
    # erin: '/' inside a name on the '.' server
    src.create_folder('erin', 'a/b', subscribe=True)
    src.create_folder('erin', '日本語', subscribe=True)
    src.append('erin', 'a/b', H.make_message('slash folder'), ('\\Seen',),
               1200000000)
    src.append('erin', '日本語', H.make_message('jp'), (), 1200000001)
    return n


def test(env, ck):
    src, tgt = env.pair()
    populate(src)
    total = H.count_messages(src, 'alice')
    ck.ok(total >= 313, 'source has %d messages' % total)

    r = env.run_imapmig(src, 'alice', tgt, 'alice')
    if not ck.eq(r.rc, 0, 'first sync exits 0'):
        print(r.describe())
    so, to = H.check_oracle(ck, src, 'alice', tgt, 'alice', 'first sync')

    # folders: every source folder exists under its mapped name
    tl = H.list_folders(tgt, 'alice')
    for f in H.list_folders(src, 'alice'):
        ck.ok(H.expected_target_name(f) in tl,
              'folder %r -> %r on target' % (f, H.expected_target_name(f)))
    for bad in ('Sent', 'Trash', 'Junk'):
        ck.ok(bad not in tl, 'no %r folder created on target (special-use '
              'mapped by attribute)' % bad)
    ck.eq(len(to['Deleted Items']), len(so['Trash']), 'Trash -> Deleted Items')
    ck.eq(len(to['Junk Email']), len(so['Junk']), 'Junk -> Junk Email')
    ck.eq(len(to['Sent Items']), len(so['Sent']), 'Sent -> Sent Items')
    ck.eq(to.get('Empty'), [], 'empty folder copied')
    twin = H.make_message('twin', body='same bytes\r\n')
    tkey = (H.hashlib.sha256(twin.replace(b'\r\n', b'\n')).hexdigest(),
            frozenset(['\\Seen']), 1600000000)
    ck.eq(to.get('Projekte/2024', []).count(tkey), 2,
          'both identical messages arrived')
    ck.ok(any(f == frozenset(['\\Seen', '\\Answered', '\\Flagged',
                              '\\Deleted', '\\Draft'])
              for _, f, _ in to['INBOX']), 'all system flags kept')
    ck.ok(any(f == frozenset(['\\Seen', '$Forwarded', '$Label1', 'NonJunk',
                              'custom_kw'])
              for _, f, _ in to['INBOX']), 'keywords kept')
    ck.ok(any(d == 1500000000 for _, _, d in to['INBOX']),
          'INTERNALDATE kept (not the Date header)')

    # subscriptions
    ssub = H.list_folders(src, 'alice', subscribed=True)
    tsub = H.list_folders(tgt, 'alice', subscribed=True)
    for f in ssub:
        ck.ok(H.expected_target_name(f) in tsub,
              'subscription %r -> %r' % (f, H.expected_target_name(f)))
    for f in UNSUBSCRIBED:
        ck.ok(H.expected_target_name(f) not in tsub,
              'unsubscribed %r stays unsubscribed' % f)

    # summary
    s = r.summary or {}
    ck.ok(r.summary is not None, 'JSON summary line present')
    ck.eq(s.get('messages_copied'), total, 'summary messages_copied')
    ck.eq(s.get('messages_failed'), 0, 'summary messages_failed')
    ck.eq(s.get('messages_skipped'), 0, 'summary messages_skipped')
    ck.eq(s.get('errors'), [], 'summary errors empty')
    selectable = len([f for f in so])
    ck.ok(isinstance(s.get('folders_total'), int) and
          s['folders_total'] >= len(FOLDERS) + len(UNSUBSCRIBED) + 5 and
          s['folders_total'] <= selectable,
          'summary folders_total plausible (%r)' % s.get('folders_total'))
    sizes = H.fetch_messages(src, 'alice')
    phys = sum(int(m['size.physical']) for m in sizes)
    virt = sum(int(m['size.virtual']) for m in sizes)
    ck.ok(isinstance(s.get('bytes_copied'), int) and
          phys <= s['bytes_copied'] <= virt,
          'summary bytes_copied %r within stored %d .. IMAP size %d' % (
              s.get('bytes_copied'), phys, virt))
    ck.ok(r.events and r.events[-1] is r.summary,
          'summary is the last JSON line')

    # rerun: nothing copied, nothing duplicated
    r2 = env.run_imapmig(src, 'alice', tgt, 'alice')
    if not ck.eq(r2.rc, 0, 'rerun exits 0'):
        print(r2.describe())
    ck.eq((r2.summary or {}).get('messages_copied'), 0,
          'rerun copies nothing')
    ck.eq((r2.summary or {}).get('folders_created'), 0,
          'rerun creates no folder')
    ck.ok(H.fetch_all(tgt, 'alice') == to, 'rerun: target oracle unchanged')

    # rerun without the state database: matched by fingerprint
    r3 = env.run_imapmig(src, 'alice', tgt, 'alice',
                         state=env.path('state', 'fresh.db'))
    if not ck.eq(r3.rc, 0, 'rerun with a new state db exits 0'):
        print(r3.describe())
    ck.eq((r3.summary or {}).get('messages_copied'), 0,
          'new state db: nothing copied again')
    ck.eq((r3.summary or {}).get('messages_existing'), total,
          'new state db: all messages found on the target')
    ck.ok(H.fetch_all(tgt, 'alice') == to,
          'new state db: target oracle unchanged')

    # erin: 'a/b' is one folder named a_b, not a > b
    r4 = env.run_imapmig(src, 'erin', tgt, 'erin',
                         state=env.path('state', 'erin.db'))
    if not ck.eq(r4.rc, 0, "erin ('a/b' folder) sync exits 0"):
        print(r4.describe())
    H.check_oracle(ck, src, 'erin', tgt, 'erin', 'erin')
    tl = H.list_folders(tgt, 'erin')
    ck.ok('a_b' in tl and 'a/b' not in tl and 'a' not in tl,
          "'a/b' became 'a_b', not nested: %s" % tl)
    ck.ok('a_b' in H.list_folders(tgt, 'erin', subscribed=True),
          'a_b subscribed')


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_basic')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
