#!/usr/bin/env python3
"""The bad CSV suite and other refused `batch create`s: exit 2, a clear
error naming file, line and column, and nothing created.

Files and expected error substrings come from data/csv/README.md (the
shared suite) and data/batch/README.md (this test's own).  Every bad file
must: exit 2; print each expected substring on stderr; repeat no password;
leave no batch (batch list --json is [] and the state database has no row
in a batch table).  Good files are accepted and `batch start` syncs their
users (passwords with commas, quotes and spaces, BOM, CRLF/LF, reordered
columns, no final newline, blank trailing lines).
Also refused: a --source/--target URL naming a user, a batch name that
exists (the existing batch stays as it was), a CSV that does not exist."""
import json
import os
import re
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import batchlib as B  # noqa: E402

DATA = os.path.join(H.HERE, 'data')
QUOTER = {'quoter': 'Q,w "x" y'}


def readme_cases(d):
    """[(file, [expected substrings], [forbidden substrings], admin)] from
    the README table in data/<d>/."""
    path = os.path.join(DATA, d, 'README.md')
    res = []
    try:
        lines = open(path, encoding='utf-8').read().splitlines()
    except OSError:
        return res
    for line in lines:
        if not line.startswith('| bad_'):
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        name = cells[0]
        admin = len(cells) > 2 and cells[1] == 'admin'
        text = cells[-1]
        forbid = []
        if 'must not contain' in text:
            text, rest = text.split('must not contain', 1)
            forbid = re.findall(r'`([^`]*)`', rest)
        res.append((os.path.join(DATA, d, name),
                    re.findall(r'`([^`]*)`', text), forbid, admin))
    return res


def batch_rows(state):
    """Rows in the state database's batch tables (0 if no database)."""
    if not os.path.exists(state):
        return 0
    con = sqlite3.connect('file:%s?mode=ro' % state, uri=True)
    try:
        names = [r[0] for r in con.execute(
            "select name from sqlite_master where type='table'")]
        n = 0
        for t in names:
            if 'batch' in t.lower():
                n += con.execute('select count(*) from "%s"' % t).fetchone()[0]
        return n
    finally:
        con.close()


def nothing_created(ck, b, what):
    rc, lst = b.list_json()
    ck.ok(rc == 0 and lst == [] and batch_rows(b.state) == 0,
          '%s: nothing created (list=%r, rows=%d)' % (
              what, lst, batch_rows(b.state)))


def passwords():
    pw = list(H.USERS.values()) + [H.MASTER_PASSWORD] + list(QUOTER.values())
    return [p.encode() for p in pw]


def test_bad_files(env, ck, src, tgt):
    cases = readme_cases('csv') + readme_cases('batch')
    documented = {os.path.basename(c[0]) for c in cases}
    for d in ('csv', 'batch'):
        dd = os.path.join(DATA, d)
        for f in sorted(os.listdir(dd)) if os.path.isdir(dd) else []:
            if f.startswith('bad_') and f not in documented:
                ck.ok(False, '%s/%s has an expected error in the README'
                      % (d, f))
    ck.ok(len(cases) >= 15, '%d bad CSV files documented' % len(cases))
    b = B.Batch(env, src, tgt, 'bad', state=env.path('state', 'bad.db'))
    pw_file = B.master_password_file(env)
    for i, (path, want, forbid, admin) in enumerate(cases):
        name = os.path.basename(path)
        b.csv = path
        b.name = 'bad%d' % i
        extra = ['--target-admin', 'admin', '--target-password-file',
                 pw_file] if admin else []
        r = b.create(extra)
        err = r.stderr.decode('utf-8', 'replace')
        if not ck.eq(r.rc, 2, '%s: create exits 2' % name):
            print(r.describe())
        missing = [w for w in want if w not in err]
        ck.ok(want and not missing, '%s: stderr has %s%s' % (
            name, want, '' if not missing else ' -- got %r' % err.strip()))
        ck.ok(re.search(re.escape(name) + r':\d+', err) or
              'no users' in err, '%s: error names file:line' % name)
        leaked = [p for p in passwords() if p in r.stderr + r.stdout]
        leaked += [f.encode() for f in forbid if f.encode() in r.stderr]
        ck.ok(not leaked, '%s: no password in the output %s' % (
            name, leaked))
        ck.ok(b'created' not in r.stdout, '%s: nothing said created' % name)
    nothing_created(ck, b, 'after %d bad files' % len(cases))


def test_good_files(env, ck, src, tgt):
    for u in ('alice', 'bob', 'carol', 'frank@example.test', 'quoter'):
        B.small_mailbox(src, u, 4, sum(map(ord, u)) % 50)
    pw_file = B.master_password_file(env)
    goods = [('csv', 'good_quoted.csv', [],
              ['alice', 'bob', 'frank@example.test']),
             ('batch', 'good_lf_blank_tail.csv',
              ['--target-admin', 'admin', '--target-password-file', pw_file],
              ['alice', 'carol']),
             ('batch', 'good_reordered_no_final_newline.csv', [],
              ['quoter', 'frank@example.test'])]
    for i, (d, f, extra, users) in enumerate(goods):
        path = os.path.join(DATA, d, f)
        if not os.path.exists(path):
            ck.ok(False, '%s/%s exists' % (d, f))
            continue
        b = B.Batch(env, src, tgt, 'good%d' % i,
                    state=env.path('state', 'good%d.db' % i))
        b.csv = path
        r = b.create(extra)
        if not ck.eq(r.rc, 0, '%s: create exits 0' % f):
            print(r.describe())
            continue
        r = b.cmd('start', '--json', timeout=60)
        if not ck.eq(r.rc, 0, '%s: start exits 0' % f):
            print(r.describe())
        st = b.status() or {}
        ck.eq({u.get('email'): u.get('status') for u in B.users_of(st)},
              {B.email_of(u): 'Synced' for u in users},
              '%s: every user Synced' % f)
        B.check_users_oracle(ck, src, tgt, users, f)


def test_refusals(env, ck, src, tgt):
    b = B.Batch(env, src, tgt, 'dup', state=env.path('state', 'dup.db'))
    b.write_csv(b.rows_for(['alice', 'bob']))
    pw = B.master_password_file(env)
    tadm = ['--target-admin', 'admin', '--target-password-file', pw]
    # a user in --source or --target
    for side, host, port in (('source', src.host, src.imaps_port),
                             ('target', tgt.host, tgt.imaps_port)):
        a = b.create_args(tadm)
        i = a.index('--' + side)
        a[i + 1] = 'imaps://alice@%s:%d' % (host, port)
        r = b.run(*a)
        err = r.stderr.decode('utf-8', 'replace')
        ck.ok(r.rc == 2 and 'alice@' in err and 'user' in err,
              '--%s URL with a user refused (rc=%d): %s' % (
                  side, r.rc, err.strip()[:200]))
    nothing_created(ck, b, 'URL with a user')
    r = b.run(*[x if x != b.csv else env.path('nope.csv')
                for x in b.create_args(tadm)])
    ck.ok(r.rc == 2 and b'nope.csv' in r.stderr,
          'a CSV that does not exist: exit 2 naming it (rc=%d)' % r.rc)
    nothing_created(ck, b, 'missing CSV')
    # a name that exists
    r = b.create(tadm)
    ck.eq(r.rc, 0, 'create dup exits 0')
    before = b.status()
    other = env.path('other.csv')
    B.write_file(other, 'EmailAddress,UserName,Password\n'
                 'carol@example.test,carol,%s\n' % src.users['carol'])
    a = b.create_args(tadm)
    a[a.index('--csv') + 1] = other
    r = b.run(*a)
    err = r.stderr.decode('utf-8', 'replace')
    ck.ok(r.rc == 2 and 'dup' in err and 'exists' in err,
          'create with an existing name refused (rc=%d): %s' % (
              r.rc, err.strip()[:200]))
    after = b.status()
    ck.ok(before is not None and
          [u.get('email') for u in B.users_of(before)] ==
          [u.get('email') for u in B.users_of(after)] ==
          ['alice@example.test', 'bob@example.test'],
          'the existing batch keeps its users')
    rc, lst = b.list_json()
    ck.eq([x.get('name') for x in lst or []], ['dup'],
          'list --json: still one batch')


def test_bad_options(env, ck, src, tgt):
    """Usage errors in create's options: exit 2, nothing created."""
    b = B.Batch(env, src, tgt, 'opt', state=env.path('state', 'opt.db'))
    b.write_csv(b.rows_for(['alice']))
    pw = B.master_password_file(env)
    tadm = ['--target-admin', 'admin', '--target-password-file', pw]
    for bad in (['--jobs', '0'], ['--admin-style', 'bogus'],
                ['--start-after', 'garbage'], ['--start-after', '+2x'],
                ['--max-message-size', '12Q'], ['--max-items', '-3'],
                ['--preset', 'nope'], ['--folder-map', 'noequals'],
                ['--folder-map', '=Target'], ['--timeout', 'soon'],
                ['--source', 'ftp://%s:21' % src.host]):
        a = b.create_args(tadm)
        if bad[0] == '--source':
            a[a.index('--source') + 1] = bad[1]
        else:
            a += bad
        r = b.run(*a)
        ck.ok(r.rc == 2 and (bad[1].encode() in r.stderr or
                             bad[0].encode() in r.stderr),
              'create %s: exit 2 naming the option (rc=%d)%s' % (
                  ' '.join(bad), r.rc,
                  '' if r.rc == 2 else ': ' +
                  (r.stdout + r.stderr).decode()[-200:].strip()))
        if r.rc == 0:
            b.cmd('remove')
    nothing_created(ck, b, 'bad options')


def test_csv_changed(env, ck, src, tgt):
    """Passwords are re-read from the CSV at each pass: a changed user
    list is refused; other changes (quoting) are fine; a CSV gone is a
    clear error."""
    users = ['dave', 'erin']
    for u in users + ['carol']:
        if not H.count_messages(src, u):
            B.small_mailbox(src, u, 3, sum(map(ord, u)) % 40)
    b = B.Batch(env, src, tgt, 'chg', state=env.path('state', 'chg.db'))
    rows = b.rows_for(users)
    b.write_csv(rows)
    pw = B.master_password_file(env)
    r = b.create(['--target-admin', 'admin', '--target-password-file', pw])
    ck.eq(r.rc, 0, 'chg: create exits 0')
    # one more user in the file: refused, nothing copied
    b.write_csv(rows + b.rows_for(['carol']))
    before = sum(H.target_file_count(tgt, u) for u in users + ['carol'])
    r = b.cmd('start', '--json', timeout=60)
    err = r.stderr.decode('utf-8', 'replace')
    ck.ok(r.rc in (2, 3) and 'chg.csv' in err and
          ('changed' in err or 'no longer' in err),
          'chg: a CSV with another user list is refused (rc=%d): %s' % (
              r.rc, err.strip()[:300]))
    ck.eq(sum(H.target_file_count(tgt, u) for u in users + ['carol']),
          before, 'chg: nothing copied')
    # a user less: refused too
    b.write_csv(rows[:1])
    r = b.cmd('start', '--json', timeout=60)
    ck.ok(r.rc in (2, 3), 'chg: a CSV with a user less is refused '
          '(rc=%d)' % r.rc)
    # gone
    os.unlink(b.csv)
    r = b.cmd('start', '--json', timeout=60)
    ck.ok(r.rc in (2, 3) and b'chg.csv' in r.stderr,
          'chg: a CSV gone is refused naming it (rc=%d): %s' % (
              r.rc, r.stderr.decode()[-300:].strip()))
    # same users, other bytes (every field quoted, LF): runs
    B.write_file(b.csv, 'EmailAddress,UserName,Password,TargetUserName\n' +
                 ''.join('"%s","%s","%s","%s"\n' % (
                     e, u, p.replace('"', '""'), t) for e, u, p, t in rows))
    r = b.cmd('start', '--json', timeout=60)
    if not ck.eq(r.rc, 0, 'chg: same users, other quoting: start exits 0'):
        print(r.describe())
    B.check_users_oracle(ck, src, tgt, users, 'chg')


def test(env, ck):
    src = env.server('source', start=False)
    tgt = env.server('target', start=False)
    for s in (src, tgt):
        B.add_users(s, QUOTER)
        s.start()
    test_bad_files(env, ck, src, tgt)
    test_refusals(env, ck, src, tgt)
    test_bad_options(env, ck, src, tgt)
    test_good_files(env, ck, src, tgt)
    test_csv_changed(env, ck, src, tgt)


def main():
    H.require_imapmig()
    ck = H.Check('test_batch_csv')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
