#!/usr/bin/env python3
"""Incremental passes: after a first sync, new mail, flag changes and a new
folder on the source; the next pass copies only what is new and brings the
target's flags in line with the source's."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def test(env, ck):
    src, tgt = env.pair()
    for f in ('Projekte', '日本語'):
        src.create_folder('alice', f, subscribe=True)
    H.populate_corpus(src, 'alice', ['INBOX', 'Projekte', '日本語', 'Sent'],
                      80, seed=7)
    r = env.run_imapmig(src, 'alice', tgt, 'alice')
    if not ck.eq(r.rc, 0, 'first pass exits 0'):
        print(r.describe())
    ck.eq((r.summary or {}).get('messages_copied'), 80,
          'first pass copies 80')
    H.check_oracle(ck, src, 'alice', tgt, 'alice', 'first pass')

    # new mail: doveadm save (bare LF) and APPEND with flags
    src.save('alice', 'INBOX', b'From: new@example.org\nSubject: new 1\n\n'
             b'delivered after the first pass\n')
    src.append('alice', 'Projekte', H.make_message('new 2'),
               ('\\Flagged', '$Label2'), 1700000000)
    src.append('alice', 'Sent', H.make_message('new sent'), ('\\Seen',),
               1700000100)
    # a new folder with mail, and a new empty one
    src.create_folder('alice', 'Neu.Unterordner', subscribe=True)
    src.create_folder('alice', 'Leer', subscribe=True)
    src.append('alice', 'Neu.Unterordner', H.make_message('in new folder'),
               (), 1700000200)
    new = 4
    # flag changes on messages copied before
    src.flags('alice', 'add', ['\\Seen', '$Forwarded'], 'INBOX', '1:5')
    src.flags('alice', 'remove', ['\\Seen'], 'Projekte', '1:3')
    src.flags('alice', 'replace', ['\\Answered', 'custom_kw'], '日本語', '2')
    src.flags('alice', 'add', ['\\Deleted'], 'Sent', '1')

    r = env.run_imapmig(src, 'alice', tgt, 'alice')
    if not ck.eq(r.rc, 0, 'second pass exits 0'):
        print(r.describe())
    s = r.summary or {}
    ck.eq(s.get('messages_copied'), new, 'second pass copies only new mail')
    ck.ok(isinstance(s.get('flags_updated'), int) and
          s['flags_updated'] >= 1,
          'second pass reports flag updates (%r)' % s.get('flags_updated'))
    H.check_oracle(ck, src, 'alice', tgt, 'alice',
                   'second pass (new mail, flags, folders)')
    tl = H.list_folders(tgt, 'alice')
    ck.ok('Neu/Unterordner' in tl and 'Leer' in tl, 'new folders created')
    ck.ok('Neu/Unterordner' in H.list_folders(tgt, 'alice', True),
          'new folder subscribed')

    # third pass: nothing to do
    before = H.fetch_all(tgt, 'alice')
    r = env.run_imapmig(src, 'alice', tgt, 'alice')
    if not ck.eq(r.rc, 0, 'third pass exits 0'):
        print(r.describe())
    ck.eq((r.summary or {}).get('messages_copied'), 0, 'third pass copies 0')
    ck.eq((r.summary or {}).get('flags_updated'), 0,
          'third pass updates no flags')
    ck.ok(H.fetch_all(tgt, 'alice') == before, 'third pass: target unchanged')


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_incremental')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
