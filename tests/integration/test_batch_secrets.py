#!/usr/bin/env python3
"""No password in anything `imapmig batch` writes.

Two batches in one state database:
  users:  CSV passwords on both sides (Password and TargetPassword, with a
          comma, quotes and spaces in some), one user with a wrong source
          password; the report is mailed (--notify, --smtp with
          --smtp-password-file) to a local SMTP sink.
  admins: master user on both sides, source admin password from a
          --source-password-file, target admin password from
          $IMAPMIG_TARGET_PASSWORD at run time.
After create/start/sync/status/report/list/complete (with and without
--json), every file under the state directory (state.db, -wal, -shm and
anything else), every report file, every mail the sink received and all
captured stdout/stderr are searched for every password used, in plain
form, escaped for an IMAP quoted string, base64 and as SASL PLAIN tokens.
State and report files must be 0600."""
import base64
import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import batchlib as B  # noqa: E402

SPECIAL = {'quoter': 'Q,w "x" y', 'commas': ',,lead and, trail,'}
WRONG = 'Wrong-secret-erin-5e6f'
SMTP_USER = 'reporter'
SMTP_PASSWORD = 'Smtp-secret-8d7c6b!q'


def needles(secrets, logins):
    """{bytes: description} of every form a secret could leak in."""
    res = {}
    for pw in secrets:
        p = pw.encode()
        res[p] = pw
        res[pw.replace('\\', '\\\\').replace('"', '\\"').encode()] = \
            pw + ' (quoted)'
        res[base64.b64encode(p)] = pw + ' (base64)'
        for who in logins:
            for tok in ('\0%s\0%s' % (who, pw), '%s\0%s\0%s' % (who, who, pw),
                        '%s\0%s\0%s' % (who, H.MASTER_USER, pw),
                        '\0%s*%s\0%s' % (who, H.MASTER_USER, pw)):
                res[base64.b64encode(tok.encode())] = pw + ' (SASL token)'
    return {k: v for k, v in res.items() if len(k) >= 6}


def scan(ck, paths, ndl, what):
    hits = []
    for p in paths:
        try:
            data = open(p, 'rb').read()
        except OSError:
            continue
        for k, v in ndl.items():
            if k in data:
                hits.append('%s in %s' % (v, p))
    ck.ok(not hits, '%s: no password in %d files%s' % (
        what, len(paths), '' if not hits else ': ' + '; '.join(hits[:10])))


class Snapshots:
    """Called every few ms while a run goes on (as its kill_when, always
    False): copies the state directory every 50 ms, at most 40 times."""

    def __init__(self, src, dest):
        self.src, self.dest, self.n, self.last = src, dest, 0, 0
        os.makedirs(dest)

    def __call__(self):
        import shutil
        import time
        if self.n < 40 and time.time() - self.last > 0.05:
            self.last = time.time()
            d = os.path.join(self.dest, str(self.n))
            self.n += 1
            try:        # a -wal may vanish while being copied
                shutil.copytree(self.src, d, dirs_exist_ok=True)
            except (OSError, shutil.Error):
                pass
        return False


def files_under(d):
    res = []
    for root, _, files in os.walk(d):
        res += [os.path.join(root, f) for f in files]
    return res


def test(env, ck):
    src = env.server('source', start=False)
    tgt = env.server('target', start=False)
    for s in (src, tgt):
        B.add_users(s, SPECIAL)
        s.start()
    csv_users = ['alice', 'bob', 'frank@example.test', 'quoter', 'commas',
                 'erin']
    admin_users = ['carol', 'dave']
    B.pmap(lambda u: B.small_mailbox(src, u, 5, sum(map(ord, u)) % 40),
           csv_users + admin_users)

    state_dir = env.path('secret-state')
    state = os.path.join(state_dir, 'state.db')
    reports = env.path('reports')
    os.makedirs(reports)

    # an SMTP sink with STARTTLS and AUTH, for --notify
    import smtp_sink
    cert, key = env.ca.issue('localhost')
    mail_dir = env.path('mail')
    os.makedirs(mail_dir)
    port = H.free_ports(1)[0]
    sink = smtp_sink.spawn(mail_dir, port, tls_cert=cert, tls_key=key,
                           auth=(SMTP_USER, SMTP_PASSWORD))
    try:
        run_batches(env, ck, src, tgt, state, reports, port, csv_users,
                    admin_users)
    finally:
        sink.terminate()
        sink.wait()

    # -- the sweep
    secrets = [src.users[u] for u in csv_users if u != 'erin'] + \
        [tgt.users[u] for u in csv_users] + \
        [H.MASTER_PASSWORD, WRONG, SMTP_PASSWORD]
    logins = csv_users + admin_users + [SMTP_USER, H.MASTER_USER]
    ndl = needles(set(secrets), logins)
    sf = files_under(state_dir)
    scan(ck, files_under(env.path('snapshots')), ndl,
         'state directory snapshots taken during a run')
    ck.ok(any(f.endswith('state.db') for f in sf),
          'state files: %s' % sorted(os.path.basename(f) for f in sf))
    scan(ck, sf, ndl, 'state directory')
    rf = files_under(reports)
    ck.ok(len(rf) >= 4, '%d report files written' % len(rf))
    scan(ck, rf, ndl, 'reports')
    outs = [p for p in files_under(env.dir)
            if os.path.basename(p).startswith('run') and
            (p.endswith('.out') or p.endswith('.err'))]
    scan(ck, outs, ndl, 'captured stdout/stderr of %d runs' % (len(outs) // 2))
    mails = files_under(mail_dir)
    ck.ok(len(mails) >= 1, '%d report mails received' % len(mails))
    decoded = []
    for path, msg in smtp_sink.read_messages(mail_dir):
        for part in msg.walk():
            if not part.is_multipart():
                p = env.path('mailpart%d' % len(decoded))
                with open(p, 'wb') as f:
                    f.write(part.get_payload(decode=True) or b'')
                decoded.append(p)
    scan(ck, mails + decoded, ndl, 'mailed reports (raw and decoded parts)')
    # the mailed report itself: a summary, and attachments that parse
    import csv as csvmod
    import io
    for path, msg in smtp_sink.read_messages(mail_dir):
        ck.ok('imapmig batch' in (msg['Subject'] or ''),
              'mail subject names the batch: %r' % msg['Subject'])
        att = {p.get_filename(): p.get_payload(decode=True)
               for p in msg.walk() if p.get_filename()}
        ck.ok('report.csv' in att and 'report.html' in att,
              'report.csv and report.html attached (%s)' % sorted(att))
        if 'report.csv' in att:
            rows = list(csvmod.reader(io.StringIO(att['report.csv'].decode('utf-8'))))
            ck.ok(rows and rows[0][0] == 'EmailAddress' and
                  any(r and r[0].endswith('@example.test') for r in rows[1:]),
                  'mailed CSV parses: header and user rows (%d rows)' % len(rows))
        if 'report.html' in att:
            h = att['report.html'].decode('utf-8')
            ck.ok(h.lstrip().lower().startswith('<!doctype html') and '</html>' in h,
                  'mailed HTML is a complete page')
        break
    bad = ['%s %o' % (os.path.basename(f), stat.S_IMODE(os.stat(f).st_mode))
           for f in sf + rf if stat.S_IMODE(os.stat(f).st_mode) & 0o077]
    ck.ok(not bad, 'state and report files are 0600%s' % (
        '' if not bad else ': ' + ', '.join(bad)))


def run_batches(env, ck, src, tgt, state, reports, port, csv_users,
                admin_users):
    # batch 1: passwords in the CSV
    b = B.Batch(env, src, tgt, 'users', state=state)
    rows = [(B.email_of(u), u, WRONG if u == 'erin' else src.users[u], u,
             tgt.users[u]) for u in csv_users]
    b.write_csv(rows, header=('EmailAddress', 'UserName', 'Password',
                              'TargetUserName', 'TargetPassword'))
    smtp_pw = B.write_file(env.path('smtp.pw'), SMTP_PASSWORD + '\n')
    r = b.create(['--notify', 'admin@example.org', '--smtp',
                  'smtp://%s@localhost:%d' % (SMTP_USER, port),
                  '--smtp-password-file', smtp_pw])
    if not ck.eq(r.rc, 0, 'users: create exits 0'):
        print(r.describe())
    # while it runs, snapshot the state directory (-wal, -shm exist then)
    snap = Snapshots(os.path.dirname(state), env.path('snapshots'))
    r = b.cmd('start', '--json', timeout=60, kill_when=snap)
    ck.eq(r.rc, 1, 'users: start exits 1 (erin Failed)')
    ck.ok(any(f.endswith('-wal') for f in files_under(snap.dest)),
          'users: %d state snapshots taken while start ran, with a -wal' %
          snap.n)
    st = {u.get('email'): u.get('status') for u in B.users_of(b.status())}
    ck.eq(st, {B.email_of(u): 'Failed' if u == 'erin' else 'Synced'
               for u in csv_users}, 'users: statuses')
    B.check_users_oracle(ck, src, tgt, [u for u in csv_users if u != 'erin'],
                         'users')
    for u in csv_users[:3]:
        src.save(u, 'INBOX', H.make_message('new for %s' % u))
    r = b.cmd('sync')                    # plain log lines, not --json
    ck.eq(r.rc, 1, 'users: sync (no --json) exits 1')
    b.cmd('status')
    b.cmd('list')
    for fmt in ('csv', 'json', 'html'):
        b.cmd('report', '--format', fmt)
        r = b.cmd('report', '--format', fmt, '--output',
                  os.path.join(reports, 'users.' + fmt))
        ck.eq(r.rc, 0, 'users: report %s exits 0' % fmt)
    r = b.cmd('complete', '--json', timeout=60)
    ck.eq(r.rc, 1, 'users: complete exits 1')

    # batch 2: admins; target admin password only in the environment
    b2 = B.Batch(env, src, tgt, 'admins', state=state)
    b2.write_csv(b2.rows_for(admin_users, source_password=False))
    pw = B.master_password_file(env)
    r = b2.create(['--admin-style', 'master', '--source-admin', 'admin',
                   '--source-password-file', pw, '--target-admin', 'admin'])
    if not ck.eq(r.rc, 0, 'admins: create exits 0'):
        print(r.describe())
    tenv = {'IMAPMIG_TARGET_PASSWORD': H.MASTER_PASSWORD}
    r = b2.cmd('start', '--json', timeout=60, env=tenv)
    if not ck.eq(r.rc, 0, 'admins: start exits 0'):
        print(r.describe())
    B.check_users_oracle(ck, src, tgt, admin_users, 'admins')
    r = b2.cmd('sync', timeout=60, env=tenv)
    ck.eq(r.rc, 0, 'admins: sync exits 0')
    r = b2.cmd('status', '--json')
    r = b2.cmd('report', '--format', 'json', '--output',
               os.path.join(reports, 'admins.json'))
    ck.eq(r.rc, 0, 'admins: report exits 0')
    b2.run('list', '--json')


def main():
    H.require_imapmig()
    ck = H.Check('test_batch_secrets')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
