#!/usr/bin/env python3
"""Account-level failures give exit 3 and words a person can act on;
STARTTLS works end to end; plaintext is refused unless allowed; passwords
never leak into the state directory or the output."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def text(r):
    return r.stderr.decode('utf-8', 'replace')


def test(env, ck):
    src, tgt = env.pair()
    plain = env.server('plain')
    src.append('alice', 'INBOX', H.make_message('hello'), ('\\Seen',),
               1500000000)
    runs = []

    # wrong source password
    r = env.run_imapmig(src, 'alice', tgt, 'alice', src_password='wrong-1')
    runs.append(r)
    ck.eq(r.rc, 3, 'wrong source password: exit 3')
    e = text(r)
    ck.ok('source' in e.lower() and 'Authentication failed' in e,
          'wrong source password: stderr names source and the server words:'
          ' %r' % e[-300:])
    ck.eq(H.count_messages(tgt, 'alice'), 0, 'nothing copied')

    # wrong target password
    r = env.run_imapmig(src, 'alice', tgt, 'alice', tgt_password='wrong-2')
    runs.append(r)
    ck.eq(r.rc, 3, 'wrong target password: exit 3')
    e = text(r)
    ck.ok('target' in e.lower() and 'Authentication failed' in e,
          'wrong target password: stderr names target: %r' % e[-300:])

    # certificate for imap.source.test, asked for localhost
    argv = [H.imapmig_binary(), 'sync', '--ca-file', env.ca.cert,
            '--resolve', tgt.resolve_arg(),
            '--state', env.path('state', 'cert.db'), '--json',
            'imaps://alice@localhost:%d' % src.imaps_port,
            tgt.url('alice')]
    r = env.run_imapmig(src, 'alice', tgt, 'alice', argv=argv)
    runs.append(r)
    ck.eq(r.rc, 3, 'certificate name mismatch: exit 3')
    e = text(r)
    ck.ok('localhost' in e and 'imap.source.test' in e,
          'mismatch names the host asked for and the cert names: %r' %
          e[-400:])

    # without --ca-file the harness CA is not trusted
    argv = H.Env.sync_args(env, src, 'alice', tgt, 'alice', ca=False,
                           state=env.path('state', 'noca.db'))
    r = env.run_imapmig(src, 'alice', tgt, 'alice', argv=argv)
    runs.append(r)
    ck.eq(r.rc, 3, 'untrusted CA: exit 3')

    # connection refused
    port = H.free_ports(1)[0]
    argv = H.Env.sync_args(env, 'imaps://alice@%s:%d' % (H.SOURCE_HOST,
                                                         port),
                           'alice', tgt, 'alice',
                           extra=['--resolve', src.resolve_arg()],
                           state=env.path('state', 'refused.db'))
    r = env.run_imapmig('x', 'alice', tgt, 'alice', argv=argv,
                        env={'IMAPMIG_SOURCE_PASSWORD': 'x'})
    runs.append(r)
    ck.eq(r.rc, 3, 'connection refused: exit 3')
    lines = [x for x in text(r).splitlines() if x.strip()]
    ck.ok(len(lines) == 1 and str(port) in lines[0],
          'connection refused: one line naming the port: %r' % lines)

    # imap:// to a server without STARTTLS is refused ...
    r = env.run_imapmig(plain, 'alice', tgt, 'alice')
    runs.append(r)
    e = text(r)
    ck.ok(r.rc in (2, 3), 'no STARTTLS offered: refused (rc=%s)' % r.rc)
    ck.ok('STARTTLS' in e and '--allow-plaintext' in e,
          'no STARTTLS: message names STARTTLS and --allow-plaintext: %r'
          % e[-300:])
    ck.eq(H.count_messages(tgt, 'alice'), 0, 'nothing copied')
    # ... unless explicitly allowed
    plain.append('alice', 'INBOX', H.make_message('over plaintext'), (),
                 1500000001)
    r = env.run_imapmig(plain, 'alice', tgt, 'carol', ['--allow-plaintext'],
                        state=env.path('state', 'plain.db'))
    runs.append(r)
    if not ck.eq(r.rc, 0, '--allow-plaintext: copies'):
        print(r.describe())
    H.check_oracle(ck, plain, 'alice', tgt, 'carol', '--allow-plaintext')

    # STARTTLS on both sides, end to end; passwords from files; a user
    # name that needs percent-encoding and a password with a space and '"'
    pwdir = env.path('pw')
    os.makedirs(pwdir)
    sp, tp = os.path.join(pwdir, 'src'), os.path.join(pwdir, 'tgt')
    u = 'frank@example.test'
    with open(sp, 'w') as f:
        f.write(src.users[u] + '\n')
    with open(tp, 'w') as f:
        f.write(tgt.users[u] + '\n')
    src.create_folder(u, '日本語', subscribe=True)
    src.append(u, '日本語', H.make_message('starttls'), ('\\Seen',),
               1500000002)
    src.append(u, 'INBOX', H.make_message('starttls 2'), (), 1500000003)
    argv = H.Env.sync_args(env, src, u, tgt, u, starttls=True,
                           extra=['--source-password-file', sp,
                                  '--target-password-file', tp],
                           state=env.path('state', 'starttls.db'))
    ck.ok(argv[-2].startswith('imap://frank%40example.test@'),
          'URL with percent-encoded user: %s' % argv[-2])
    r = env.run_imapmig('x', u, 'y', u, argv=argv)
    runs.append(r)
    if not ck.eq(r.rc, 0, 'STARTTLS both sides, password files: exit 0'):
        print(r.describe())
    H.check_oracle(ck, src, u, tgt, u, 'STARTTLS copy')

    # a normal run with --verbose, for the leak check below
    r = env.run_imapmig(src, 'alice', tgt, 'alice', ['--verbose'])
    runs.append(r)
    if not ck.eq(r.rc, 0, 'normal --verbose run exits 0'):
        print(r.describe())

    # no password anywhere: state dir files, stdout, stderr
    secrets = [p.encode() for s in (src, tgt) for p in s.users.values()] + \
        [b'wrong-1', b'wrong-2']
    leaks = []
    for root, dirs, files in os.walk(env.path('state')):
        for fn in files:
            with open(os.path.join(root, fn), 'rb') as f:
                data = f.read()
            leaks += ['%s: %s' % (fn, s.decode()) for s in secrets
                      if s in data]
    for i, r in enumerate(runs):
        for s in secrets:
            if s in r.stdout or s in r.stderr:
                leaks.append('run %d output: %s' % (i, s.decode()))
    ck.eq(leaks, [], 'no password in state files or output')
    for root, dirs, files in os.walk(env.path('state')):
        for fn in files:
            mode = os.stat(os.path.join(root, fn)).st_mode & 0o777
            ck.ok(mode & 0o077 == 0, 'state file %s is private (%o)' % (
                fn, mode))


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_errors')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
