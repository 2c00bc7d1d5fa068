#!/usr/bin/env python3
"""A private Cyrus IMAP server for the integration tests: a second real
server implementation next to harness.py's Dovecot.

The cyrus-imapd package conflicts with dovecot-imapd, so it is not
installed: scripts/cyrus-setup.sh unpacks it into a private folder
($IMAPMIG_CYRUS_DIR, else tests/integration/.cyrus).  Its master process
runs from there with its own imapd.conf / cyrus.conf under the Env's temp
dir (every service command gets `-C imapd.conf`: master does not pass its
own -C on), dropping privileges to the harness's mail account
(cyrus_user), listening on 127.0.0.2 with a certificate from the Env's CA.
Users live in a private sasldb (saslpasswd2 -f), auxprop, PLAIN and LOGIN
only, no plaintext login without TLS.  A user's mailbox is made by the
admin over IMAP (CREATE user.NAME), as a Cyrus site would.

  import harness as H, cyrus as C
  env = H.Env()
  cyr = C.server(env)                        # started; '.' + INBOX. prefix
  cyr = C.server(env, altnamespace=True)     # Cyrus 3 default: '/', no prefix
  cyr.add_user('zoe', 'pw')                  # sasldb entry + user.zoe
  cyr.create_folder('alice', 'INBOX.Work', special_use='\\Sent')
  cyr.append('alice', 'INBOX', raw, flags, internaldate)
  C.fetch_all(cyr, 'alice')      # the oracle: imaplib over TLS, EXAMINE
  C.list_folders(cyr, 'alice')
  env.run_imapmig(src, 'alice', cyr, 'alice')  # duck-types harness.Server

Defaults worth knowing: munge8bit stays on (Cyrus's default: 8-bit bytes
in headers are replaced by 'X' on APPEND), so exact-copy tests keep header
bytes 7-bit.  Protocol telemetry is on for every user added: Cyrus writes
each session to config/log/USER/ (see telemetry()), the place to look when
imapmig and Cyrus disagree; Cyrus's own log goes to syslog.

Setting Cyrus up must work on Debian 12 (CI installs it): when it cannot,
server() raises with the reason, and the test fails.
"""

import datetime
import hashlib
import os
import pwd
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

CYRUS_HOST = 'imap.cyrus.test'
ADMIN_USER = 'cyradm'
ADMIN_PASSWORD = 'Cyradm-pw-b00c5e'

# Special-use folders made for every user, attribute -> name below the
# personal namespace (with its prefix and separator added per server).
# Not Dovecot's names, so mapping by attribute is what makes them match.
CYRUS_SPECIAL = {'\\Sent': 'Sent Messages', '\\Trash': 'Deleted Messages',
                 '\\Drafts': 'Drafts', '\\Junk': 'Spam'}

# harness.USERS minus the one Cyrus cannot hold without virtdomains
USERS = {u: p for u, p in H.USERS.items() if '@' not in u}


def cyrus_root():
    d = os.environ.get('IMAPMIG_CYRUS_DIR') or os.path.join(H.HERE, '.cyrus')
    return os.path.join(d, 'root')


def bin_path(name):
    return os.path.join(cyrus_root(), 'usr', 'lib', 'cyrus', 'bin', name)


def lib_path():
    return os.path.join(cyrus_root(), 'usr', 'lib', 'x86_64-linux-gnu')


def require_cyrus():
    """Raise with what to do when the unpacked Cyrus is missing."""
    missing = [p for p in (bin_path('master'), bin_path('imapd'))
               if not os.access(p, os.X_OK)]
    if missing:
        raise RuntimeError('Cyrus IMAP not unpacked (%s): run '
                           'scripts/cyrus-setup.sh as root' % missing[0])
    for tool in ('saslpasswd2',):
        if H.run(['sh', '-c', 'command -v ' + tool], check=False).returncode:
            raise RuntimeError('%s missing: run scripts/cyrus-setup.sh as '
                               'root (installs sasl2-bin)' % tool)


IMAPD_CONF = '''# private Cyrus instance made by tests/integration/cyrus.py
configdirectory: {dir}/config
proc_path: {dir}/run/proc
mboxname_lockpath: {dir}/run/lock
defaultpartition: default
partition-default: {dir}/spool
servername: {host}
admins: {admin}
cyrus_user: {user}
cyrus_group: {group}
altnamespace: {altns}
unixhierarchysep: {unixsep}
virtdomains: off
hashimapspool: true
umask: 077
allowplaintext: no
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {dir}/sasldb2
sasl_mech_list: PLAIN LOGIN
sasl_auto_transition: no
tls_server_cert: {dir}/tls/cert.pem
tls_server_key: {dir}/tls/key.pem
tls_sessions_db_path: {dir}/config/tls_sessions.db
lmtpsocket: {dir}/run/socket/lmtp
idlesocket: {dir}/run/socket/idle
notifysocket: {dir}/run/socket/notify
syslog_prefix: imapmig-cyrus-{name}
delete_mode: immediate
expunge_mode: immediate
autocreate_quota: -1
'''

CYRUS_CONF = '''# private Cyrus master config made by tests/integration/cyrus.py
START {{
  recover cmd="{bin}/ctl_cyrusdb -C {conf} -r"
}}
SERVICES {{
  imaps cmd="{bin}/imapd -C {conf} -s" listen="{addr}:{imaps_port}" prefork=0 maxchild=200
  imap cmd="{bin}/imapd -C {conf}" listen="{addr}:{imap_port}" prefork=0 maxchild=200
}}
EVENTS {{
}}
DAEMON {{
}}
'''


class CyrusServer:
    """One private Cyrus instance; the parts of harness.Server that
    Env.run_imapmig, harness.special_use and the tests use.

    Attributes: name, kind ('cyrus'), dir, conf, host, imaps_port,
    imap_port (STARTTLS), sep, prefix (personal namespace: 'INBOX.' or
    ''), special (attribute -> full folder name), users."""

    def __init__(self, env, name, altnamespace=False, users=None):
        require_cyrus()
        self.env = env
        self.name = name
        self.kind = 'cyrus'
        self.dir = os.path.join(env.dir, name)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, 'imapd.conf')
        self.master_conf = os.path.join(self.dir, 'cyrus.conf')
        self.host = CYRUS_HOST
        self.altnamespace = altnamespace
        # classic Cyrus: '.' and every folder below INBOX; Cyrus 3's
        # default: '/' and folders beside INBOX
        self.sep = '/' if altnamespace else '.'
        self.prefix = '' if altnamespace else 'INBOX' + self.sep
        self.special = {a: self.prefix + n for a, n in CYRUS_SPECIAL.items()}
        self.users = {}
        self.proc = None
        self.imap_port, self.imaps_port = H.free_ports(2)
        self._initial_users = dict(USERS if users is None else users)
        self._write_config()

    def _write_config(self):
        uid, gid = self.env.mail_ids
        self.uid, self.gid = uid, gid
        uname = pwd.getpwuid(uid).pw_name
        import grp
        gname = grp.getgrgid(gid).gr_name
        for d in ('config', 'spool', 'run', 'run/socket', 'run/proc',
                  'run/lock', 'tls', 'config/log'):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        if self.host not in self.env.certs:
            self.env.certs[self.host] = self.env.ca.issue(self.host)
        cert, key = self.env.certs[self.host]
        for src, dst in ((cert, 'cert.pem'), (key, 'key.pem')):
            with open(src, 'rb') as f:
                data = f.read()
            p = os.path.join(self.dir, 'tls', dst)
            with open(p, 'wb') as f:
                f.write(data)
            os.chmod(p, 0o600)
        with open(self.conf, 'w') as f:
            f.write(IMAPD_CONF.format(
                dir=self.dir, host=self.host, admin=ADMIN_USER, user=uname,
                group=gname, name=self.name,
                altns='yes' if self.altnamespace else 'no',
                unixsep='yes' if self.altnamespace else 'no'))
        with open(self.master_conf, 'w') as f:
            f.write(CYRUS_CONF.format(
                bin=os.path.dirname(bin_path('imapd')), conf=self.conf,
                addr=H.SERVER_ADDR, imaps_port=self.imaps_port,
                imap_port=self.imap_port))
        self._saslpasswd(ADMIN_USER, ADMIN_PASSWORD)
        # Cyrus runs as the mail account: it owns everything here
        for root, dirs, files in os.walk(self.dir):
            for n in dirs + files:
                os.lchown(os.path.join(root, n), uid, gid)
        os.chown(self.dir, uid, gid)

    def _saslpasswd(self, user, password):
        # realm: Cyrus passes no user realm, so SASL uses servername
        H.run(['saslpasswd2', '-f', os.path.join(self.dir, 'sasldb2'),
               '-p', '-c', '-u', self.host, user], input=password.encode())
        p = os.path.join(self.dir, 'sasldb2')
        os.chown(p, self.uid, self.gid)
        os.chmod(p, 0o600)

    def _env(self):
        e = dict(os.environ)
        e['LD_LIBRARY_PATH'] = lib_path() + (
            ':' + e['LD_LIBRARY_PATH'] if e.get('LD_LIBRARY_PATH') else '')
        return e

    # -- life cycle

    def start(self, timeout=20):
        first = self.proc is None and not self.users
        with open(os.path.join(self.dir, 'master.stderr'), 'ab') as err:
            self.proc = subprocess.Popen(
                [bin_path('master'), '-C', self.conf, '-M', self.master_conf,
                 '-p', os.path.join(self.dir, 'run', 'master.pid'), '-D'],
                stdout=subprocess.DEVNULL, stderr=err, env=self._env(),
                start_new_session=True)
        if not self.env.persist:
            self.env.watch(self.proc.pid)
        ports = [self.imaps_port, self.imap_port]
        deadline = time.time() + timeout
        while ports:
            if self.proc.poll() is not None:
                raise RuntimeError('cyrus master %s exited (%s): %s' % (
                    self.name, self.proc.returncode, self.log_tail()))
            try:
                socket.create_connection((H.SERVER_ADDR, ports[0]), 1).close()
                ports.pop(0)
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError('cyrus %s not listening: %s' % (
                        self.name, self.log_tail()))
                time.sleep(0.05)
        # the server answers a login, not only the TCP handshake
        while True:
            try:
                self.admin().logout()
                break
            except Exception as e:   # noqa: BLE001 (any failure: retry)
                if time.time() > deadline:
                    raise RuntimeError('cyrus %s: admin login fails: %s; %s'
                                       % (self.name, e, self.log_tail()))
                time.sleep(0.1)
        if first:
            for u, pw in self._initial_users.items():
                self.add_user(u, pw)
        return self

    def stop(self, fast=False):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        H.stop_session(p, fast)

    def restart(self, down=0.0, timeout=20):
        self.stop()
        if down:
            time.sleep(down)
        return self.start(timeout=timeout)

    def log_tail(self, n=30):
        try:
            with open(os.path.join(self.dir, 'master.stderr'), 'rb') as f:
                lines = f.read().decode('utf-8', 'replace').splitlines()
            return '\n'.join(lines[-n:]) or '(master.stderr empty; ' \
                'Cyrus logs to syslog)'
        except OSError:
            return '(no log)'

    # -- users

    def add_user(self, user, password, special=True):
        """sasldb entry, then user.NAME made by the admin; with special:
        the CYRUS_SPECIAL folders, made by the user (CREATE ... (USE))."""
        if '.' in user or '@' in user or '/' in user:
            raise ValueError('user name %r: no . @ / here' % user)
        self._saslpasswd(user, password)
        self.users[user] = password
        # protocol telemetry of this user's sessions (config/log/USER)
        tdir = os.path.join(self.dir, 'config', 'log', user)
        os.makedirs(tdir, exist_ok=True)
        os.chown(tdir, self.uid, self.gid)
        c = self.admin()
        try:
            # the admin sees the internal names: user.NAME whatever the
            # user's own view (altnamespace) is
            typ, dat = c.create(H.imap_quote('user%s%s' % (self.sep, user)))
            if typ != 'OK':
                raise RuntimeError('CREATE user.%s: %s' % (user, dat))
        finally:
            c.logout()
        if special:
            c = self.client(user)
            try:
                for attr, n in self.special.items():
                    typ, dat = c._simple_command(
                        'CREATE', H.imap_quote(H.mutf7_encode(n)),
                        '(USE (%s))' % attr)
                    if typ != 'OK':
                        raise RuntimeError('CREATE %s (USE %s): %s' % (
                            n, attr, dat))
                    c.subscribe(H.imap_quote(H.mutf7_encode(n)))
            finally:
                c.logout()

    def telemetry(self, user):
        """Cyrus's own record of user's IMAP sessions (bytes; b'' if none)."""
        d = os.path.join(self.dir, 'config', 'log', user)
        out = []
        try:
            for f in sorted(os.listdir(d)):
                with open(os.path.join(d, f), 'rb') as fh:
                    out.append(b'==== %s\n' % f.encode() + fh.read())
        except OSError:
            pass
        return b''.join(out)

    # -- URLs (as harness.Server)

    def url(self, user, starttls=False):
        from urllib.parse import quote
        u = quote(user, safe='')
        if starttls:
            return 'imap://%s@%s:%d' % (u, self.host, self.imap_port)
        return 'imaps://%s@%s:%d' % (u, self.host, self.imaps_port)

    def resolve_arg(self):
        return '%s:%s' % (self.host, H.SERVER_ADDR)

    # -- IMAP (imaplib, TLS verified against the Env's CA)

    def client(self, user, tls='imaps', password=None, master=False):
        if master:
            raise ValueError('no master-user login on Cyrus (use admin())')
        port = self.imaps_port if tls == 'imaps' else self.imap_port
        c = H.Client(self.host, port, tls, self.env.ca.context())
        c.login(user, password if password is not None else self.users[user])
        return c

    def admin(self):
        c = H.Client(self.host, self.imaps_port, 'imaps',
                     self.env.ca.context())
        c.login(ADMIN_USER, ADMIN_PASSWORD)
        return c

    def create_folder(self, user, name, subscribe=False, special_use=None):
        """name: full UTF-8 name as the user sees it ('INBOX.Work' here
        with the classic namespace)."""
        c = self.client(user)
        try:
            args = [H.imap_quote(H.mutf7_encode(name))]
            if special_use:
                args.append('(USE (%s))' % special_use)
            typ, dat = c._simple_command('CREATE', *args)
            if typ != 'OK':
                raise RuntimeError('CREATE %s: %s' % (name, dat))
            if subscribe:
                c.subscribe(H.imap_quote(H.mutf7_encode(name)))
        finally:
            c.logout()

    def append(self, user, folder, raw, flags=(), internaldate=None,
               client=None):
        c = client or self.client(user)
        try:
            H.append_raw(c, folder, raw, flags, internaldate)
        finally:
            if client is None:
                c.logout()

    def store_flags(self, user, folder, uids, op, flags):
        """UID STORE uids op (flags); op: '+FLAGS', '-FLAGS', 'FLAGS'."""
        c = self.client(user)
        try:
            c.select(H.imap_quote(H.mutf7_encode(folder)))
            typ, dat = c.uid('STORE', uids, op + '.SILENT',
                             '(%s)' % ' '.join(flags))
            if typ != 'OK':
                raise RuntimeError('STORE: %s' % dat)
        finally:
            c.logout()


def server(env, altnamespace=False, start=True, users=None):
    """A CyrusServer in env, stopped with it (Env.close)."""
    env._n += 1
    s = CyrusServer(env, 'cyrus%d' % env._n, altnamespace=altnamespace,
                    users=users)
    env.servers.append(s)
    if start:
        s.start()
    return s


# ------------------------------------------------------------------ oracle
#
# imaplib over TLS as the user: Python's IMAP client, not imapmig's code.
# EXAMINE (read-only) and BODY.PEEK, so looking changes nothing.

_LIST_RE = re.compile(r'^\(([^)]*)\) (?:"((?:[^"\\]|\\.)*)"|NIL) (.*)$')


def _astring(s):
    if s.startswith('"'):
        return re.sub(r'\\(.)', r'\1', s[1:-1])
    return s


def _list(c, *args):
    typ, dat = c._simple_command('LIST', *args)
    if typ != 'OK':
        raise RuntimeError('LIST: %s' % dat)
    typ, dat = c._untagged_response(typ, dat, 'LIST')
    res = []
    pending = None
    for item in dat:
        if item is None:
            continue
        if isinstance(item, tuple):     # name sent as a literal
            pending = (item[0].decode(), item[1].decode())
            continue
        line = item.decode()
        if pending:
            head, name = pending
            pending = None
            m = re.match(r'^\(([^)]*)\) (?:"([^"]*)"|NIL) \{\d+\}$', head)
            res.append((m.group(1).split(), name))
            continue
        m = _LIST_RE.match(line)
        if m:
            res.append((m.group(1).split(), _astring(m.group(3))))
    return res


def list_folders(server, user, subscribed=False, with_attrs=False):
    """Folder names (UTF-8) the user sees, \\Noselect ones left out;
    with_attrs: {name: [attributes]}."""
    c = server.client(user)
    try:
        if subscribed:
            rows = _list(c, '(SUBSCRIBED)', '""', '"*"')
        else:
            rows = _list(c, '""', '"*"')
    finally:
        c.logout()
    res = {}
    for attrs, name in rows:
        low = [a.lower() for a in attrs]
        if '\\noselect' in low or '\\nonexistent' in low:
            continue
        res[H.mutf7_decode(name)] = attrs
    return res if with_attrs else sorted(res)


def _idate(s):
    return int(datetime.datetime.strptime(
        s.strip(), '%d-%b-%Y %H:%M:%S %z').timestamp())


def fetch_messages(server, user, folder=None):
    """Rows like harness.fetch_messages: dicts with mailbox, uid, flags
    (space-separated), date.received.unixtime, size.physical (RFC822.SIZE),
    text (BODY[] bytes)."""
    folders = [folder] if folder else list_folders(server, user)
    c = server.client(user)
    out = []
    try:
        for f in folders:
            typ, dat = c.select(H.imap_quote(H.mutf7_encode(f)),
                                readonly=True)
            if typ != 'OK':
                raise RuntimeError('EXAMINE %s: %s' % (f, dat))
            if int(dat[0]) == 0:
                continue
            typ, dat = c.uid('FETCH', '1:*',
                             '(UID FLAGS INTERNALDATE RFC822.SIZE)')
            if typ != 'OK':
                raise RuntimeError('FETCH %s: %s' % (f, dat))
            meta = []
            for item in dat:
                line = item.decode() if isinstance(item, bytes) else None
                if not line:
                    continue
                uid = re.search(r'UID (\d+)', line).group(1)
                flags = re.search(r'FLAGS \(([^)]*)\)', line).group(1)
                idate = re.search(r'INTERNALDATE "([^"]*)"', line).group(1)
                size = re.search(r'RFC822\.SIZE (\d+)', line).group(1)
                meta.append((uid, flags, _idate(idate), int(size)))
            for uid, flags, idate, size in meta:
                typ, dat = c.uid('FETCH', uid, '(BODY.PEEK[])')
                if typ != 'OK':
                    raise RuntimeError('FETCH %s %s: %s' % (f, uid, dat))
                text = next(x[1] for x in dat if isinstance(x, tuple))
                out.append({'mailbox': f, 'uid': uid, 'flags': flags,
                            'date.received.unixtime': str(idate),
                            'size.physical': str(size), 'text': text})
    finally:
        c.logout()
    return out


def fetch_all(server, user):
    """{folder_utf8: sorted [(sha256(text), frozenset(flags minus
    \\Recent), INTERNALDATE unix time)]}, like harness.fetch_all; every
    selectable folder listed, empty ones with []."""
    res = {f: [] for f in list_folders(server, user)}
    for m in fetch_messages(server, user):
        res.setdefault(m['mailbox'], []).append(H.msg_key(m))
    for k in res:
        res[k].sort(key=lambda t: (t[0], sorted(t[1]), t[2]))
    return res


def sha256(b):
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------- selftest

def selftest():
    ck = H.Check('cyrus selftest')
    with H.Env() as env:
        t0 = time.time()
        cyr = server(env)
        ck.ok(True, 'classic Cyrus started in %.1fs' % (time.time() - t0))
        c = cyr.client('alice')
        ns = c._simple_command('NAMESPACE')
        ns = c.untagged_responses.get('NAMESPACE', [b''])[0]
        c.logout()
        ck.ok(ns.startswith(b'(("INBOX." "."))'), 'namespace %r' % ns)
        ck.eq(H.special_use(cyr, 'alice'), cyr.special, 'special-use')
        cyr.create_folder('alice', 'INBOX.日本語.報告', subscribe=True)
        raw = H.make_message('cyrus selftest', 'x\r\n')
        cyr.append('alice', 'INBOX.日本語.報告', raw,
                   ('\\Seen', '$Label1'), 1000000000)
        o = fetch_all(cyr, 'alice')
        ck.eq(o['INBOX.日本語.報告'],
              [(sha256(raw), frozenset(['\\Seen', '$Label1']), 1000000000)],
              'oracle sees the appended message')
        ck.ok('INBOX.日本語.報告' in list_folders(cyr, 'alice', True),
              'subscribed')
        try:
            cyr.client('alice', password='nope')
            ck.ok(False, 'wrong password refused')
        except Exception as e:   # noqa: BLE001
            ck.ok(True, 'wrong password refused: %s' % e)
        alt = server(env, altnamespace=True)
        ck.eq(H.special_use(alt, 'alice'), alt.special,
              'altnamespace special-use')
        alt.create_folder('alice', 'a/b')
        ck.ok('a/b' in list_folders(alt, 'alice'), "altnamespace '/'")
        pids = [s.proc.pid for s in env.servers]
    time.sleep(0.2)
    alive = [p for p in pids if os.path.exists('/proc/%d' % p)]
    ck.eq(alive, [], 'servers stopped on close')
    return ck.finish()


if __name__ == '__main__':
    if len(sys.argv) >= 2 and sys.argv[1] == 'selftest':
        H.main_wrapper(selftest)
    print('usage: cyrus.py selftest', file=sys.stderr)
    sys.exit(2)
