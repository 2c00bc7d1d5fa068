#!/usr/bin/env python3
"""Passwords never leak: after sync runs (good and wrong passwords, --json,
--verbose, --debug, admin login, a run killed mid-copy so the SQLite -wal
and -shm files stay) and a batch (create/start/status/report in every
format), every file imapmig produced and all of its stdout/stderr are
searched for every password used, raw, JSON-escaped and in the base64
forms an AUTHENTICATE PLAIN/LOGIN exchange carries: none may appear.
Files imapmig created are 0600 (the test runs with umask 022).  A
password inside a URL (imaps://user:pw@host) is refused with exit 2 and
not echoed back."""
import base64
import json
import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

WRONG = ['Wrong-pw-3a9f!x', 'Bad-tgt-pw-77#q']
URL_PW = 'Url-pw-in-argv-5e1'


def needles(users_pw, master=None):
    """{needle bytes: description} for every (user, password)."""
    out = {}
    for u, pw in users_pw:
        forms = {
            'raw': pw.encode(),
            'json': json.dumps(pw)[1:-1].encode(),
            'b64': base64.b64encode(pw.encode()),
            'b64 PLAIN': base64.b64encode(b'\0' + u.encode() + b'\0' +
                                          pw.encode()),
            'b64 PLAIN authzid=user': base64.b64encode(
                u.encode() + b'\0' + u.encode() + b'\0' + pw.encode()),
        }
        if master:
            forms['b64 PLAIN admin'] = base64.b64encode(
                u.encode() + b'\0' + H.MASTER_USER.encode() + b'\0' +
                master.encode())
            forms['b64 PLAIN master'] = base64.b64encode(
                b'\0' + ('%s*%s' % (u, H.MASTER_USER)).encode() + b'\0' +
                master.encode())
        for k, v in forms.items():
            out[v] = '%s password of %s' % (k, u)
    return out


def produced_files(root, inputs):
    res = []
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if p not in inputs:
                res.append(p)
    return sorted(res)


def test(env, ck):
    os.umask(0o022)
    src, tgt = env.pair()
    H.populate_corpus(src, 'alice', ['INBOX', 'Sent'], 120, seed=4)
    work = env.path('work')            # state, reports, $HOME, $XDG_*
    os.makedirs(work)
    home = os.path.join(work, 'home')
    os.makedirs(home)
    xenv = {'HOME': home, 'XDG_STATE_HOME': os.path.join(home, 'state'),
            'XDG_CONFIG_HOME': os.path.join(home, 'config'),
            'XDG_CACHE_HOME': os.path.join(home, 'cache'),
            'TMPDIR': os.path.join(work, 'tmp')}
    os.makedirs(xenv['TMPDIR'])
    inputs = set()

    def pwfile(name, text):
        p = os.path.join(work, name)
        with open(p, 'w') as f:
            f.write(text + '\n')
        os.chmod(p, 0o600)
        inputs.add(p)
        return p

    used = [('alice', src.users['alice']), ('alice', tgt.users['alice'])]
    used += [('alice', w) for w in WRONG]
    runs = []

    def sync(tu, extra, **kw):
        e = dict(xenv)
        e.update(kw.pop('env', {}))
        r = env.run_imapmig(src, 'alice', tgt, tu, extra=extra, env=e,
                            state=os.path.join(work, 'state', 'sync.db'),
                            **kw)
        runs.append(r)
        return r

    # good runs: env passwords, password files, each output mode
    r = sync('alice', ['--verbose'])
    ck.eq(r.rc, 0, 'sync --json --verbose exits 0')
    sp = pwfile('src.pw', src.users['alice'])
    tp = pwfile('tgt.pw', tgt.users['bob'])
    used.append(('bob', tgt.users['bob']))
    r = sync('bob', ['--debug', '--source-password-file', sp,
                     '--target-password-file', tp],
             src_password='', tgt_password='')
    if not ck.eq(r.rc, 0, 'sync --debug with password files exits 0'):
        print(r.describe())
    ck.ok(b'LOGIN' in r.stderr + r.stdout or b'AUTHENTICATE' in
          r.stderr + r.stdout, '--debug traces the protocol (login seen)')
    argv = [x for x in env.sync_args(src, 'alice', tgt, 'carol',
                                     ['--verbose', '--debug'],
                                     state=os.path.join(work, 'state',
                                                        'plain.db'))
            if x != '--json']
    used.append(('carol', tgt.users['carol']))
    r = env.run_imapmig(src, 'alice', tgt, 'carol', argv=argv, env=xenv)
    runs.append(r)
    ck.eq(r.rc, 0, 'sync --verbose --debug (text output) exits 0')

    # admin (master) login on the target, both styles, traced
    mp = pwfile('master.pw', H.MASTER_PASSWORD)
    for style, tu in (('authzid', 'dave'), ('master', 'erin')):
        r = sync(tu, ['--debug', '--target-admin', H.MASTER_USER,
                      '--admin-style', style, '--target-password-file', mp],
                 tgt_password='')
        if not ck.eq(r.rc, 0, 'sync --target-admin (%s) exits 0' % style):
            print(r.describe())

    # wrong passwords, every output mode
    for mode in (['--json'], ['--verbose'], ['--debug'],
                 ['--debug', '--verbose']):
        r = sync('alice', mode, src_password=WRONG[0])
        ck.eq(r.rc, 3, 'wrong source password %s: exit 3' % mode)
        r = sync('alice', mode, tgt_password=WRONG[1])
        ck.eq(r.rc, 3, 'wrong target password %s: exit 3' % mode)

    # a run killed mid-copy leaves the SQLite -wal/-shm files behind
    kstate = os.path.join(work, 'state', 'killed.db')
    r = env.run_imapmig(src, 'alice', tgt, 'frank@example.test',
                        extra=['--debug'], env=xenv, state=kstate,
                        kill_when=lambda: H.target_file_count(
                            tgt, 'frank@example.test') > 20)
    runs.append(r)
    used.append(('frank@example.test', tgt.users['frank@example.test']))
    left = [p for p in (kstate + '-wal', kstate + '-shm')
            if os.path.exists(p)]
    ck.ok(r.killed, 'a run killed mid-copy (leaves %s)' % [
        os.path.basename(p) for p in left])

    # batch, if there is one
    if H.run([H.imapmig_binary(), 'batch', '--help'],
             check=False).returncode == 0:
        import batchlib as B
        users = ['bob', 'carol', 'frank@example.test']
        for u in users:
            B.small_mailbox(src, u, 12, seed=3)
        b = B.Batch(env, src, tgt, 'sec',
                    state=os.path.join(work, 'state', 'batch.db'))
        b.csv = os.path.join(work, 'users.csv')
        b.write_csv(b.rows_for(users))
        inputs.add(b.csv)
        used += [(u, src.users[u]) for u in users]
        bx = dict(xenv)
        bx['IMAPMIG_TARGET_PASSWORD'] = H.MASTER_PASSWORD
        steps = [b.create_args(['--target-admin', H.MASTER_USER])]
        steps += [['start', 'sec', '--json'], ['status', 'sec', '--json'],
                  ['status', 'sec'], ['sync', 'sec']]
        for fmt in ('csv', 'json', 'html'):
            out = os.path.join(work, 'report.' + fmt)
            steps.append(['report', 'sec', '--format', fmt, '--output', out])
        steps.append(['report', 'sec'])
        for s in steps:
            r = b.run(*s, env=bx)
            runs.append(r)
            if not ck.eq(r.rc, 0, 'batch %s exits 0' % s[0]):
                print(r.describe())
        for fmt in ('csv', 'json', 'html'):
            ck.ok(os.path.exists(os.path.join(work, 'report.' + fmt)),
                  'batch report --format %s written' % fmt)
        # a wrong source password in the CSV: that user fails, no leak
        b2 = B.Batch(env, src, tgt, 'sec2',
                     state=os.path.join(work, 'state', 'batch.db'))
        b2.csv = os.path.join(work, 'users2.csv')
        b2.write_csv([(B.email_of('bob'), 'bob', WRONG[0], 'bob')])
        inputs.add(b2.csv)
        for s in (b2.create_args(['--target-admin', H.MASTER_USER]),
                  ['start', 'sec2', '--json'], ['report', 'sec2']):
            r = b2.run(*s, env=bx)
            runs.append(r)
        ck.ok(r.rc in (0, 1), 'batch with a wrong CSV password runs, '
              'reports (rc %d)' % r.rc)
        master = H.MASTER_PASSWORD
    else:
        print('  (no batch command: batch part skipped)')
        master = H.MASTER_PASSWORD
    used.append((H.MASTER_USER, H.MASTER_PASSWORD))

    # passwords in a URL are refused, and not echoed
    for side in ('source', 'target'):
        su = 'imaps://alice:%s@%s:%d' % (URL_PW, src.host, src.imaps_port)
        tu = 'imaps://alice:%s@%s:%d' % (URL_PW, tgt.host, tgt.imaps_port)
        argv = [H.imapmig_binary(), 'sync', '--ca-file', env.ca.cert,
                '--state', os.path.join(work, 'state', 'url.db'),
                su if side == 'source' else src.url('alice'),
                tu if side == 'target' else tgt.url('alice')]
        r = env.run_imapmig(src, 'alice', tgt, 'alice', argv=argv, env=xenv)
        runs.append(r)
        ck.eq(r.rc, 2, 'password in the %s URL: exit 2' % side)
        ck.ok(URL_PW.encode() not in r.stdout + r.stderr,
              'password in the %s URL is not echoed' % side)
    if H.run([H.imapmig_binary(), 'batch', '--help'],
             check=False).returncode == 0:
        r = env.run_imapmig('', '', '', '', env=xenv, argv=[
            H.imapmig_binary(), 'batch', 'create', 'u', '--source',
            'imaps://admin:%s@%s' % (URL_PW, src.host), '--target',
            'imaps://%s' % tgt.host, '--csv', os.path.join(work, 'users.csv'),
            '--state', os.path.join(work, 'state', 'url.db')])
        runs.append(r)
        ck.eq(r.rc, 2, 'batch create with a password in a URL: exit 2')
    r = env.run_imapmig('', '', '', '', env=xenv, argv=[
        H.imapmig_binary(), 'sync', '--password', URL_PW, src.url('alice'),
        tgt.url('alice')])
    runs.append(r)
    ck.eq(r.rc, 2, 'no --password option (exit 2)')
    used.append(('alice', URL_PW))

    # ---- the search
    nd = needles(used, master)
    files = produced_files(work, inputs)
    ck.ok(any(f.endswith('.db') for f in files), 'state databases found: '
          '%s' % [os.path.relpath(f, work) for f in files])
    hits = []
    for f in files:
        with open(f, 'rb') as fh:
            data = fh.read()
        for n, what in nd.items():
            if n in data:
                hits.append('%s in %s' % (what, os.path.relpath(f, work)))
    ck.eq(hits, [], 'no password in %d files imapmig wrote' % len(files))
    # the search itself works: it finds the passwords in the inputs
    found = 0
    for f in inputs:
        with open(f, 'rb') as fh:
            data = fh.read()
        found += any(n in data for n in nd)
    ck.eq(found, len(inputs), 'the search finds a password in each of the '
          '%d input files (CSV, password files)' % len(inputs))
    hits = []
    for i, r in enumerate(runs):
        for n, what in nd.items():
            for name, data in (('stdout', r.stdout), ('stderr', r.stderr)):
                if n in data:
                    hits.append('%s in %s of run %d (%s)' % (
                        what, name, i, ' '.join(r.cmd[1:3])))
    ck.eq(hits, [], 'no password in the output of %d runs' % len(runs))
    # the Dovecot side really saw those passwords (the search is not vacuous)
    ck.ok(any(b'Authentication failed' in r.stderr + r.stdout
              for r in runs), 'wrong-password runs did reach the server')

    # modes: every file imapmig created is 0600
    loose = ['%s %o' % (os.path.relpath(f, work),
                        stat.S_IMODE(os.stat(f).st_mode)) for f in files
             if stat.S_IMODE(os.stat(f).st_mode) & 0o077]
    ck.eq(loose, [], 'state and report files are 0600 (umask 022)')


def main():
    H.require_imapmig()
    ck = H.Check('test_secrets')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
