"""Helpers for the `imapmig batch` integration tests (test_batch_*.py).

  env = H.Env(); src, tgt = pair_with_users(env, 20)   # 20 users per server
  b = Batch(env, src, tgt, 'b1')
  b.write_csv(rows)            # rows: list of (email, user, password, target_user)
  r = b.create(['--source-admin', 'admin', ...])
  r = b.cmd('start', '--json')           # -> harness.Result
  b.status()                    # parsed `batch status --json`

Extra users are appended to the servers' passwd-file before the servers
start (the format Server._write_config uses); their passwords are distinct
recognisable strings like the harness's own, so the secrets test can grep
for them.
"""
import csv
import io
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

EXTRA_USERS = ['user%02d' % i for i in range(1, 41)]


def extra_password(u):
    return 'Pw-%s-9f%02x!k' % (u, sum(map(ord, u)) & 0xff)


def add_users(server, users):
    """Add users {name: password} to a server's passwd-file (same format
    as harness.Server writes).  Dovecot re-reads the file when it
    changes, so this also works on a running server."""
    uid, gid = server.env.mail_ids
    home = os.path.join(server.dir, 'home')
    path = os.path.join(server.dir, 'users')
    with open(path, 'a') as f:
        for u, pw in users.items():
            f.write('%s:%s:%d:%d::%s::\n' % (u, pw, uid, gid,
                                              os.path.join(home, u)))
            server.users[u] = pw


def pair_with_users(env, n):
    """A started source/target pair holding at least n users (the
    harness's 6 first, then user01...).  -> (src, tgt, [users])."""
    users = list(H.USERS)
    extra = {u: extra_password(u) for u in EXTRA_USERS[:max(0, n - len(users))]}
    src = env.server('source', start=False)
    tgt = env.server('target', start=False)
    for s in (src, tgt):
        add_users(s, extra)
        s.start()
    return src, tgt, (users + list(extra))[:n]


def email_of(user):
    return user if '@' in user else user + '@example.test'


def write_file(path, text, mode=0o600):
    with open(path, 'w', encoding='utf-8', newline='') as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def master_password_file(env):
    p = env.path('master.pw')
    if not os.path.exists(p):
        write_file(p, H.MASTER_PASSWORD + '\n')
    return p


def small_mailbox(src, user, n, seed, folders=('INBOX', 'Sent', 'Work')):
    """n small distinct messages over a few folders with varied flags.
    -> number appended."""
    if 'Work' in folders and 'Work' not in H.list_folders(src, user):
        src.create_folder(user, 'Work', subscribe=True)
    flag_sets = [(), ('\\Seen',), ('\\Seen', '\\Answered'), ('\\Flagged',),
                 ('\\Seen', '$Label1')]
    c = src.client(user)
    try:
        for i in range(n):
            raw = H.make_message('%s msg %d seed %d' % (user, i, seed),
                                 'body %d of %s\r\n' % (i, user) * (1 + i % 7))
            H.append_raw(c, folders[i % len(folders)], raw,
                         flag_sets[i % len(flag_sets)],
                         1500000000 + seed * 100000 + i * 60)
    finally:
        c.logout()
    return n


class Batch:
    def __init__(self, env, src, tgt, name, state=None):
        self.env = env
        self.src = src
        self.tgt = tgt
        self.name = name
        os.makedirs(env.path('state'), exist_ok=True)
        self.state = state or env.path('state', 'state.db')
        self.csv = env.path('%s.csv' % name)
        self.results = []       # every Result, for the secrets test

    def write_csv(self, rows, header=('EmailAddress', 'UserName', 'Password',
                                       'TargetUserName')):
        out = io.StringIO()
        w = csv.writer(out, lineterminator='\r\n')
        w.writerow(header)
        for r in rows:
            w.writerow(r)
        write_file(self.csv, out.getvalue())
        return self.csv

    def rows_for(self, users, source_password=True, target_user=True):
        """CSV rows for harness users: source password from the server
        (or empty), TargetUserName the plain login."""
        return [(email_of(u), u,
                 self.src.users[u] if source_password else '',
                 u) for u in users]

    def base_args(self):
        return ['--state', self.state]

    def create_args(self, extra=()):
        return ['create', self.name,
                '--source', 'imaps://%s:%d' % (self.src.host,
                                              self.src.imaps_port),
                '--target', 'imaps://%s:%d' % (self.tgt.host,
                                              self.tgt.imaps_port),
                '--csv', self.csv, '--ca-file', self.env.ca.cert,
                '--resolve', self.src.resolve_arg(),
                '--resolve', self.tgt.resolve_arg()] + list(extra)

    def master_args(self, side=('source', 'target'), style='master'):
        pw = master_password_file(self.env)
        a = ['--admin-style', style]
        for s in side:
            a += ['--%s-admin' % s, H.MASTER_USER,
                  '--%s-password-file' % s, pw]
        return a

    def argv(self, *args):
        return [H.imapmig_binary(), 'batch'] + list(args) + self.base_args()

    def run(self, *args, timeout=300, env=None, kill_when=None,
            kill_after=None):
        """imapmig batch ARGS --state S -> harness.Result."""
        e = {}
        if env:
            e.update(env)
        r = self.env.run_imapmig('', '', '', '', argv=self.argv(*args),
                                 timeout=timeout, env=e,
                                 kill_when=kill_when, kill_after=kill_after)
        self.results.append(r)
        return r

    def create(self, extra=(), **kw):
        return self.run(*self.create_args(extra), **kw)

    def cmd(self, verb, *args, **kw):
        return self.run(verb, self.name, *args, **kw)

    def popen(self, verb, *args):
        """Start `imapmig batch VERB NAME ARGS` in the background; stdout/
        stderr to files.  -> (Popen, out_path, err_path)."""
        self.env._runs = getattr(self.env, '_runs', 0) + 1
        n = self.env._runs
        outp = self.env.path('run%d.out' % n)
        errp = self.env.path('run%d.err' % n)
        fo, fe = open(outp, 'wb'), open(errp, 'wb')
        p = subprocess.Popen(self.argv(verb, self.name, *args), stdout=fo,
                             stderr=fe, stdin=subprocess.DEVNULL)
        fo.close()
        fe.close()
        return p, outp, errp

    def status(self):
        """Parsed `batch status NAME --json` (None if it failed)."""
        r = self.run('status', self.name, '--json')
        if r.rc != 0:
            print(r.describe())
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            print('status --json is not JSON: %r' % r.stdout[:500])
            return None

    def user_statuses(self):
        """{email: status} from status --json."""
        st = self.status() or {}
        return {u.get('email') or u.get('user') or u.get('EmailAddress'):
                u.get('status') for u in users_of(st)}

    def list_json(self):
        r = self.run('list', '--json')
        try:
            return r.rc, json.loads(r.stdout)
        except ValueError:
            return r.rc, None


def users_of(st):
    """The per-user list in a status/report JSON object."""
    if not isinstance(st, dict):
        return []
    u = st.get('users')
    return u if isinstance(u, list) else []


def events(r, kind):
    return [e for e in r.events if isinstance(e, dict) and
            e.get('event') == kind]


def pmap(fn, items, workers=8):
    """[fn(x) for x in items], run in threads (doveadm and IMAP calls
    wait on other processes, so this is what makes oracles fast)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


def user_diff(src, tgt, u):
    """-> (differences, number of source messages) for one user."""
    exp = H.mapped(H.fetch_all(src, u))
    act = H.fetch_all(tgt, u)
    d = H.diff_oracles(exp, act)
    d += ['%r: %d unexpected' % (f, len(v)) for f, v in act.items()
          if f not in exp and v]
    return d, sum(len(v) for v in exp.values())


def check_users_oracle(ck, src, tgt, users, what):
    """Every user's target mailbox == source mailbox (doveadm oracle)."""
    res = pmap(lambda u: user_diff(src, tgt, u), users)
    bad = ['%s: %s' % (u, '; '.join(d)[:300])
           for u, (d, _) in zip(users, res) if d]
    n = sum(k for _, k in res)
    ck.ok(not bad, '%s: %d users, %d messages identical on target%s' % (
        what, len(users), n, '' if not bad else ': ' + ' | '.join(bad)[:2000]))
    return not bad


def wait_for(pred, timeout, step=0.02):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(step)
    return pred()
