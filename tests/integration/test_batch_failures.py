#!/usr/bin/env python3
"""Batches where some users or messages fail, the others finish.

auth:  no admin on the source (CSV passwords); bob's is wrong -> bob
       Failed with the server's words, alice and carol Synced, exit 1.
size:  --max-message-size 100K; dave has a 300 KB message -> skipped and
       listed (folder, UID, date, subject, size) in the report and in a
       message_skipped event; everything else copied; exit 0.
items: --max-items 10; frank holds 15 messages -> Failed naming 15 before
       copying anything; user01/user02 fine; exit 1.
All three batches live in one state database."""
import csv
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import batchlib as B  # noqa: E402


def by_user(st):
    return {u.get('email'): u for u in B.users_of(st)}


def report_json(ck, b, what):
    r = b.cmd('report', '--format', 'json')
    try:
        return json.loads(r.stdout)
    except ValueError:
        ck.ok(False, '%s: report JSON parses (rc=%d)' % (what, r.rc))
        print(r.describe())
        return {}


def report_csv_tables(b):
    """-> (user rows, item rows) of the CSV report (two tables split by a
    blank line)."""
    r = b.cmd('report', '--format', 'csv')
    text = r.stdout.decode('utf-8-sig').replace('\r\n', '\n')
    parts = text.split('\n\n')
    users = list(csv.DictReader(io.StringIO(parts[0])))
    items = list(csv.DictReader(io.StringIO(parts[1]))) \
        if len(parts) > 1 and parts[1].strip() else []
    return users, items


def test_auth(env, ck, src, tgt):
    users = ['alice', 'bob', 'carol']
    for i, u in enumerate(users):
        B.small_mailbox(src, u, 6 + i, 40 + i)
    b = B.Batch(env, src, tgt, 'auth')
    wrong = 'Wrong-pw-for-bob-77aa'
    rows = b.rows_for(users)
    rows[1] = (rows[1][0], 'bob', wrong, 'bob')
    b.write_csv(rows)
    r = b.create(b.master_args(side=('target',)))
    if not ck.eq(r.rc, 0, 'auth: create exits 0'):
        print(r.describe())
    r = b.cmd('start', '--json', timeout=80)
    if not ck.eq(r.rc, 1, 'auth: start exits 1 (some users Failed)'):
        print(r.describe())
    ck.ok(r.seconds < 40, 'auth: an authentication failure is not retried '
          'for long (%.1fs)' % r.seconds)
    done = B.events(r, 'batch_done')
    ck.ok(done and done[0].get('failed') == 1,
          'auth: batch_done failed == 1 (%r)' % (done[:1],))
    ud = {e.get('user'): e for e in B.events(r, 'user_done')}
    bob = ud.get('bob@example.test', {})
    ck.eq(bob.get('status'), 'Failed', 'auth: user_done bob Failed')
    err = bob.get('error') or ''
    ck.ok('Authentication failed' in err,
          "auth: bob's user_done error has the server's words: %r" % err)
    st = by_user(b.status())
    ck.eq({k: v.get('status') for k, v in st.items()},
          {'alice@example.test': 'Synced', 'bob@example.test': 'Failed',
           'carol@example.test': 'Synced'}, 'auth: status --json')
    serr = (st.get('bob@example.test') or {}).get('error') or ''
    ck.ok('Authentication failed' in serr and 'bob' in serr and
          ('source' in serr or H.SOURCE_HOST in serr),
          'auth: status error names side/host, user and the server\'s '
          'words: %r' % serr)
    ck.ok(wrong not in serr and wrong.encode() not in r.stdout + r.stderr,
          'auth: the wrong password is not echoed')
    B.check_users_oracle(ck, src, tgt, ['alice', 'carol'],
                         'auth: the others')
    ck.eq(H.count_messages(tgt, 'bob'), 0, 'auth: nothing copied for bob')
    users_rows, _ = report_csv_tables(b)
    rb = [x for x in users_rows if x.get('EmailAddress') == 'bob@example.test']
    ck.ok(rb and rb[0].get('Status') == 'Failed' and
          'Authentication failed' in (rb[0].get('Error') or ''),
          'auth: report CSV row for bob: Failed with the error (%r)' % rb)
    # a second start retries the failed user only and still fails
    r = b.cmd('start', '--json', timeout=80)
    ck.eq(r.rc, 1, 'auth: start again still exits 1')
    ck.eq(sorted(e.get('user') for e in B.events(r, 'user_done')),
          ['bob@example.test'], 'auth: start again runs only bob')


def test_size(env, ck, src, tgt):
    B.small_mailbox(src, 'dave', 7, 50)
    B.small_mailbox(src, 'erin', 5, 51)
    big = H.make_message('Huge attachment for dave',
                         ('x' * 76 + '\r\n') * 4000)   # ~312 KB
    src.append('dave', 'Work', big, flags=('\\Seen',),
               internaldate=1550000000)
    B.small_mailbox(src, 'dave', 3, 52, folders=('Work',))
    msgs = H.fetch_messages(src, 'dave', 'Work')
    bm = [m for m in msgs if b'Huge attachment' in m['text']][0]
    uid, vsize = int(bm['uid']), int(bm['size.virtual'])
    b = B.Batch(env, src, tgt, 'size')
    b.write_csv(b.rows_for(['dave', 'erin']))
    r = b.create(['--max-message-size', '100K'] +
                 b.master_args(side=('target',)))
    if not ck.eq(r.rc, 0, 'size: create exits 0'):
        print(r.describe())
    r = b.cmd('start', '--json', timeout=60)
    if not ck.eq(r.rc, 0, 'size: start exits 0 (a skipped message is no '
                 'failure)'):
        print(r.describe())
    sk = B.events(r, 'message_skipped')
    ck.ok(len(sk) == 1, 'size: one message_skipped event (%d)' % len(sk))
    e = sk[0] if sk else {}
    ck.eq((e.get('user'), e.get('folder'), e.get('uid'), e.get('size')),
          ('dave@example.test', 'Work', uid, vsize),
          'size: message_skipped user, folder, UID, size')
    ck.ok('Huge attachment' in (e.get('subject') or ''),
          'size: message_skipped subject')
    ck.ok(bool(e.get('date')) and bool(e.get('reason')),
          'size: message_skipped date and reason (%r, %r)' % (
              e.get('date'), e.get('reason')))
    st = by_user(b.status())
    ck.eq({k: v.get('status') for k, v in st.items()},
          {'dave@example.test': 'Synced', 'erin@example.test': 'Synced'},
          'size: both users Synced')
    ck.eq((st.get('dave@example.test') or {}).get('items_skipped'), 1,
          'size: status items_skipped 1 for dave')
    j = report_json(ck, b, 'size')
    items = j.get('skipped') or []
    ck.ok(len(items) == 1 and items[0].get('uid') == uid and
          items[0].get('folder') == 'Work' and
          items[0].get('size') == vsize and
          'Huge attachment' in (items[0].get('subject') or '') and
          items[0].get('date'),
          'size: report JSON lists the skipped message (%r)' % items)
    _, csv_items = report_csv_tables(b)
    ck.ok(len(csv_items) == 1 and csv_items[0].get('Folder') == 'Work' and
          csv_items[0].get('UID') == str(uid) and
          csv_items[0].get('Size') == str(vsize) and
          'Huge attachment' in csv_items[0].get('Subject', ''),
          'size: report CSV lists the skipped message (%r)' % csv_items)
    r = b.cmd('report', '--format', 'html')
    ck.ok(b'Huge attachment for dave' in r.stdout,
          'size: report HTML lists the skipped message')
    # oracle: everything but the big message
    B.check_users_oracle(ck, src, tgt, ['erin'], 'size: erin')
    so = H.mapped(H.fetch_all(src, 'dave'))
    import hashlib
    hbig = hashlib.sha256(bm['text']).hexdigest()
    so = {k: [m for m in v if m[0] != hbig] for k, v in so.items()}
    d = H.diff_oracles(so, H.fetch_all(tgt, 'dave'))
    ck.eq(d, [], 'size: dave has every message but the big one')
    # an incremental pass does not list it twice
    r = b.cmd('sync', '--json', timeout=60)
    ck.eq(r.rc, 0, 'size: sync exits 0')
    j = report_json(ck, b, 'size after sync')
    ck.eq(len(j.get('skipped') or []), 1,
          'size: still one skipped item in the report after sync')


def test_items(env, ck, src, tgt):
    B.small_mailbox(src, 'frank@example.test', 15, 60)
    B.small_mailbox(src, 'user01', 5, 61)
    B.small_mailbox(src, 'user02', 8, 62)
    b = B.Batch(env, src, tgt, 'items')
    b.write_csv(b.rows_for(['frank@example.test', 'user01', 'user02']))
    r = b.create(['--max-items', '10'] + b.master_args(side=('target',)))
    if not ck.eq(r.rc, 0, 'items: create exits 0'):
        print(r.describe())
    r = b.cmd('start', '--json', timeout=60)
    if not ck.eq(r.rc, 1, 'items: start exits 1'):
        print(r.describe())
    st = by_user(b.status())
    ck.eq({k: v.get('status') for k, v in st.items()},
          {'frank@example.test': 'Failed', 'user01@example.test': 'Synced',
           'user02@example.test': 'Synced'}, 'items: statuses')
    err = (st.get('frank@example.test') or {}).get('error') or ''
    ck.ok('15' in err and '10' in err,
          'items: error names the count and the limit: %r' % err)
    ck.eq(H.count_messages(tgt, 'frank@example.test'), 0,
          'items: nothing copied for frank (fails before copying)')
    B.check_users_oracle(ck, src, tgt, ['user01', 'user02'],
                         'items: the others')


def test(env, ck):
    src, tgt, _ = B.pair_with_users(env, 8)
    test_auth(env, ck, src, tgt)
    test_size(env, ck, src, tgt)
    test_items(env, ck, src, tgt)
    b = B.Batch(env, src, tgt, 'x')
    rc, lst = b.list_json()
    ck.eq(sorted((x.get('name'), x.get('status')) for x in lst or []),
          [('auth', 'Synced'), ('items', 'Synced'), ('size', 'Synced')],
          'list --json: three batches, Synced (failed users do not hold '
          'a batch back)')


def main():
    H.require_imapmig()
    ck = H.Check('test_batch_failures')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
