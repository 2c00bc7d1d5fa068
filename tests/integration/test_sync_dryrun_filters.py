#!/usr/bin/env python3
"""--dry-run changes nothing on the target; --exclude / --include globs
(matched against '/'-joined source names) and --folder-map select and
rename folders."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

FOLDERS = ['a.x', 'a.y', 'Old.Stuff', 'Keep', 'Work.Projects', '日本語']


def test(env, ck):
    src, tgt = env.pair()
    for f in FOLDERS:
        src.create_folder('alice', f, subscribe=True)
    H.populate_corpus(src, 'alice', ['INBOX', 'Junk'] + FOLDERS, 48, seed=5)

    # --dry-run: the target (oracle and folder list) must not change
    before = H.fetch_all(tgt, 'alice')
    before_sub = H.list_folders(tgt, 'alice', subscribed=True)
    r = env.run_imapmig(src, 'alice', tgt, 'alice', ['--dry-run'],
                        state=env.path('state', 'dry.db'))
    if not ck.eq(r.rc, 0, '--dry-run exits 0'):
        print(r.describe())
    ck.ok(H.fetch_all(tgt, 'alice') == before,
          '--dry-run: no folder or message created on the target')
    ck.eq(H.list_folders(tgt, 'alice', subscribed=True), before_sub,
          '--dry-run: subscriptions unchanged')
    # a real run after the dry run copies everything (dry run recorded
    # nothing as done)
    r = env.run_imapmig(src, 'alice', tgt, 'alice',
                        state=env.path('state', 'dry.db'))
    if not ck.eq(r.rc, 0, 'real run after --dry-run exits 0'):
        print(r.describe())
    H.check_oracle(ck, src, 'alice', tgt, 'alice', 'real run after dry run')

    # --exclude Junk --exclude 'a/*'
    r = env.run_imapmig(src, 'alice', tgt, 'bob',
                        ['--exclude', 'Junk', '--exclude', 'a/*'],
                        state=env.path('state', 'excl.db'))
    if not ck.eq(r.rc, 0, '--exclude run exits 0'):
        print(r.describe())
    H.check_oracle(ck, src, 'alice', tgt, 'bob', '--exclude Junk, a/*',
                   select=lambda f: f != 'Junk' and f != 'a' and
                   not f.startswith('a.'))
    tl = H.list_folders(tgt, 'bob')
    ck.ok('a/x' not in tl and 'a/y' not in tl, 'a/* not created: %s' % tl)
    ck.eq(H.fetch_all(tgt, 'bob')['Junk Email'], [], 'Junk not copied')

    # --include 'Work/*' --include INBOX
    r = env.run_imapmig(src, 'alice', tgt, 'carol',
                        ['--include', 'Work/*', '--include', 'INBOX'],
                        state=env.path('state', 'incl.db'))
    if not ck.eq(r.rc, 0, '--include run exits 0'):
        print(r.describe())
    H.check_oracle(ck, src, 'alice', tgt, 'carol', '--include Work/*, INBOX',
                   select=lambda f: f in ('INBOX', 'Work.Projects'))
    tl = H.list_folders(tgt, 'carol')
    ck.ok('Keep' not in tl and '日本語' not in tl and 'Old/Stuff' not in tl,
          'folders not included are not created: %s' % tl)

    # --folder-map Old/Stuff=Archive/Old
    r = env.run_imapmig(src, 'alice', tgt, 'dave',
                        ['--folder-map', 'Old/Stuff=Archive/Old'],
                        state=env.path('state', 'map.db'))
    if not ck.eq(r.rc, 0, '--folder-map run exits 0'):
        print(r.describe())
    H.check_oracle(ck, src, 'alice', tgt, 'dave', '--folder-map',
                   folder_map={'Old.Stuff': 'Archive/Old'},
                   select=lambda f: f != 'Old')
    tl = H.list_folders(tgt, 'dave')
    ck.ok('Archive/Old' in tl and 'Old/Stuff' not in tl,
          'Old/Stuff renamed to Archive/Old: %s' % tl)
    so = H.fetch_all(src, 'alice')
    ck.eq(len(H.fetch_all(tgt, 'dave')['Archive/Old']), len(so['Old.Stuff']),
          'Archive/Old holds Old/Stuff messages')


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_dryrun_filters')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
