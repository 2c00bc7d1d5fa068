#!/usr/bin/env python3
"""A 20-user batch with master-user auth, start to report to remove.

create (admin on both sides, user*admin) -> start -> every user Synced and
every mailbox identical (doveadm oracle) -> new mail (doveadm save and
APPEND) and flag changes on the source -> sync -> identical again ->
one more message -> complete -> all Completed, identical -> report in
csv/json/html (0600, parseable, one row per user with the right counts)
-> list -> remove.  Then a small batch with SASL PLAIN authzid."""
import csv
import io
import json
import os
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import batchlib as B  # noqa: E402

N_USERS = 20
N_AUTHZ = 4


def statuses_ok(ck, b, want, what):
    st = b.status()
    us = {u.get('email'): u.get('status') for u in B.users_of(st)}
    bad = {k: v for k, v in us.items() if v != want}
    ck.ok(st is not None and len(us) == len(b.users) and not bad,
          '%s: all %d users %s in status --json%s' % (
              what, len(b.users), want, '' if not bad else ': %s' % bad))
    return st


def status_events(r):
    """{user: [status, ...]} from user_status events, in order."""
    res = {}
    for e in B.events(r, 'user_status'):
        res.setdefault(e.get('user'), []).append(e.get('status'))
    return res


def check_pass(ck, b, r, what, want_rc=0):
    print('  (%s took %.1fs)' % (what, r.seconds), flush=True)
    if not ck.eq(r.rc, want_rc, '%s: exit %d' % (what, want_rc)):
        print(r.describe())
    done = B.events(r, 'batch_done')
    ck.ok(len(done) == 1 and done[0].get('batch') == b.name,
          '%s: one batch_done event' % what)
    ud = B.events(r, 'user_done')
    ck.eq(sorted(e.get('user') for e in ud),
          sorted(B.email_of(u) for u in b.users),
          '%s: one user_done per user' % what)
    return done[0] if done else {}


def counts(src, users):
    return dict(zip(map(B.email_of, users),
                    B.pmap(lambda u: H.count_messages(src, u), users)))


T0 = time.time()


def test(env, ck):
    src, tgt, users = B.pair_with_users(env, N_USERS + N_AUTHZ)
    main_users, authz_users = users[:N_USERS], users[N_USERS:]
    # alice: corpus mail over special-use and UTF-8 folders; others small
    for f in ('日本語', 'Projekte', 'Projekte.2024'):
        src.create_folder('alice', f, subscribe=True)
    H.populate_corpus(src, 'alice', ['INBOX', 'Sent', 'Junk', '日本語',
                                     'Projekte.2024'], 60, seed=5)
    B.pmap(lambda iu: B.small_mailbox(src, iu[1], 3 + (iu[0] * 7) % 25,
                                      iu[0] + 1), list(enumerate(users[1:])))

    print('  (setup took %.1fs)' % (time.time() - T0), flush=True)
    b = B.Batch(env, src, tgt, 'b1')
    b.users = main_users
    b.write_csv(b.rows_for(main_users, source_password=False))
    r = b.create(['--jobs', '5'] + b.master_args(style='master'))
    if not ck.eq(r.rc, 0, 'create exits 0'):
        print(r.describe())
    statuses_ok(ck, b, 'Created', 'after create')
    st = b.status() or {}
    ck.eq((st.get('batch') or {}).get('status'), 'Created',
          'batch status Created')

    # -- start
    r = b.cmd('start', '--json', timeout=120)
    done = check_pass(ck, b, r, 'start')
    ck.eq(done.get('status'), 'Synced', 'start: batch_done Synced')
    ck.eq(done.get('failed'), 0, 'start: batch_done failed 0')
    ck.eq(done.get('users'), N_USERS, 'start: batch_done users')
    ev = status_events(r)
    ck.ok(all(v and v[0] in ('Queued', 'Syncing') and v[-1] == 'Synced' and
              'Syncing' in v for v in ev.values()) and len(ev) == N_USERS,
          'start: every user went Syncing -> Synced (%s)' % (
              list(ev.items())[:2]))
    ud = {e['user']: e for e in B.events(r, 'user_done')}
    cnt = counts(src, main_users)
    ck.eq({k: ud.get(k, {}).get('messages_copied') for k in cnt}, cnt,
          'start: user_done messages_copied == source counts')
    st = statuses_ok(ck, b, 'Synced', 'after start')
    ck.eq(((st or {}).get('batch') or {}).get('status'), 'Synced',
          'batch status Synced')
    B.check_users_oracle(ck, src, tgt, main_users, 'after start')

    # -- new mail and flag changes between passes
    new = {}
    for i, u in enumerate(main_users):
        if i % 3 == 0:
            src.save(u, 'INBOX', H.make_message('late %s' % u,
                                                'delivered later\r\n'))
            new[u] = 1
        elif i % 3 == 1:
            src.append(u, 'Work', H.make_message('appended %s' % u),
                       flags=('\\Seen', '$Label2'), internaldate=1600000000)
            new[u] = 1
    for u in main_users[::2]:
        src.flags(u, 'add', ['\\Flagged', '$Later'], 'INBOX')
    for u in main_users[1::4]:
        src.flags(u, 'remove', ['\\Seen'], 'Sent')
    r = b.cmd('sync', '--json', timeout=120)
    done = check_pass(ck, b, r, 'sync')
    ck.eq(done.get('status'), 'Synced', 'sync: batch_done Synced')
    ev = status_events(r)
    ck.ok(all('IncrementalSyncing' in v and v[-1] == 'Synced'
              for v in ev.values()) and len(ev) == N_USERS,
          'sync: every user IncrementalSyncing -> Synced')
    ud = {e['user']: e for e in B.events(r, 'user_done')}
    ck.eq({B.email_of(u): ud.get(B.email_of(u), {}).get('messages_copied')
           for u in main_users},
          {B.email_of(u): new.get(u, 0) for u in main_users},
          'sync: messages_copied == new messages per user')
    statuses_ok(ck, b, 'Synced', 'after sync')
    B.check_users_oracle(ck, src, tgt, main_users,
                         'after sync (new mail, flags)')

    # -- complete (a last pass picks up one more message)
    src.save(main_users[5], 'INBOX', H.make_message('just before cut-over'))
    src.flags(main_users[6], 'replace', ['\\Seen', '\\Answered'], 'INBOX')
    r = b.cmd('complete', '--json', timeout=120)
    done = check_pass(ck, b, r, 'complete')
    ck.eq(done.get('status'), 'Completed', 'complete: batch_done Completed')
    ev = status_events(r)
    ck.ok(all(v[-1] == 'Completed' and 'Completing' in v
              for v in ev.values()) and len(ev) == N_USERS,
          'complete: every user Completing -> Completed')
    st = statuses_ok(ck, b, 'Completed', 'after complete')
    ck.eq(((st or {}).get('batch') or {}).get('status'), 'Completed',
          'batch status Completed')
    B.check_users_oracle(ck, src, tgt, main_users, 'after complete')
    u0 = next((u for u in B.users_of(st)), {})
    ck.ok(bool(u0.get('completed')), 'status: completed time set (%r)' %
          u0.get('completed'))

    # -- reports
    cnt = counts(src, main_users)
    paths = {}
    for fmt in ('csv', 'json', 'html'):
        p = env.path('report.' + fmt)
        paths[fmt] = p
        r = b.cmd('report', '--format', fmt, '--output', p)
        if not ck.eq(r.rc, 0, 'report --format %s exits 0' % fmt):
            print(r.describe())
        ok = os.path.exists(p)
        ck.ok(ok and stat.S_IMODE(os.stat(p).st_mode) == 0o600,
              'report.%s is 0600 (%s)' % (fmt, oct(os.stat(p).st_mode)
                                          if ok else 'missing'))
    try:
        text = open(paths['csv'], encoding='utf-8-sig').read()
        first = text.replace('\r\n', '\n').split('\n\n')[0]
        rows = list(csv.DictReader(io.StringIO(first)))
        ck.eq(len(rows), N_USERS, 'report CSV: one row per user')
        by = {r.get('EmailAddress'): r for r in rows}
        ck.eq(sorted(by), sorted(cnt), 'report CSV: EmailAddress column')
        ck.eq({k: by.get(k, {}).get('Status') for k in cnt},
              {k: 'Completed' for k in cnt}, 'report CSV: Status Completed')
        ck.eq({k: int(by.get(k, {}).get('ItemsSynced') or -1) for k in cnt},
              cnt, 'report CSV: ItemsSynced == source message count')
        ck.eq({k: by.get(k, {}).get('ItemsSkipped') for k in cnt},
              {k: '0' for k in cnt}, 'report CSV: ItemsSkipped 0')
        ck.ok(all(by.get(k, {}).get('Completed') for k in cnt),
              'report CSV: Completed time for every user')
    except (OSError, csv.Error, ValueError) as e:
        ck.ok(False, 'report CSV parses: %s' % e)
    try:
        j = json.load(open(paths['json'], encoding='utf-8'))
        ju = {u['email']: u for u in j.get('users', [])}
        ck.eq({k: ju.get(k, {}).get('items_synced') for k in cnt}, cnt,
              'report JSON: items_synced per user')
        ck.eq(j.get('batch', {}).get('items_synced'), sum(cnt.values()),
              'report JSON: batch total items_synced')
        ck.eq(j.get('batch', {}).get('status'), 'Completed',
              'report JSON: batch Completed')
    except (OSError, ValueError, KeyError, TypeError) as e:
        ck.ok(False, 'report JSON parses: %s' % e)
    html = open(paths['html'], encoding='utf-8', errors='replace').read()
    low = html.lower()
    ck.ok(low.lstrip().startswith('<!doctype html') and
          low.rstrip().endswith('</html>') and '<body' in low and
          '</table>' in low, 'report HTML is a complete page')
    ck.ok(all(k in html for k in cnt), 'report HTML names every user')
    ck.ok('<script' not in low and 'http://' not in low and
          'https://' not in low, 'report HTML is self-contained')
    # default: csv on stdout
    r = b.cmd('report')
    ck.ok(r.rc == 0 and r.stdout.startswith(b'EmailAddress,') or
          r.stdout.startswith(b'\xef\xbb\xbfEmailAddress,'),
          'report without options: CSV on stdout')

    # -- list and remove
    rc, lst = b.list_json()
    ck.ok(rc == 0 and isinstance(lst, list) and
          [(x.get('name'), x.get('status')) for x in lst] ==
          [('b1', 'Completed')], 'list --json shows b1 Completed (%r)' % lst)
    r = b.cmd('remove')
    if not ck.eq(r.rc, 0, 'remove exits 0'):
        print(r.describe())
    rc, lst = b.list_json()
    ck.eq((rc, lst), (0, []), 'list --json empty after remove')
    r = b.run('status', 'b1', '--json')
    ck.ok(r.rc != 0 and b'b1' in r.stderr,
          'status of a removed batch fails naming it (rc=%d)' % r.rc)

    # -- SASL PLAIN authzid (admin acting for the user) on both sides
    b2 = B.Batch(env, src, tgt, 'authz')
    b2.users = authz_users
    b2.write_csv(b2.rows_for(authz_users, source_password=False))
    r = b2.create(b2.master_args(style='authzid'))
    if not ck.eq(r.rc, 0, 'authzid: create exits 0'):
        print(r.describe())
    r = b2.cmd('start', '--json', timeout=60)
    done = check_pass(ck, b2, r, 'authzid start')
    ck.eq(done.get('status'), 'Synced', 'authzid: batch Synced')
    statuses_ok(ck, b2, 'Synced', 'authzid')
    B.check_users_oracle(ck, src, tgt, authz_users, 'authzid')


def main():
    H.require_imapmig()
    ck = H.Check('test_batch_basic')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
