#!/usr/bin/env python3
"""Integration test harness for imapmig: private Dovecot servers on loopback.

Python 3 standard library only.  Everything a test needs:

  env = Env()                      # temp dir + throwaway CA; cleans up at exit
  src = env.server('source')       # Maildir++ '.' server, imaps + STARTTLS ports
  tgt = env.server('target')       # sdbox '/' server, "Sent Items" & co.
  plain = env.server('plain')      # imap:// without STARTTLS (ssl = no)

  src.create_folder('alice', '日本語.報告', subscribe=True)
  src.append('alice', 'INBOX', raw_bytes, flags=('\\Seen', '$Label1'),
             internaldate=1029999999)
  fetch_all(src, 'alice')          # the oracle: doveadm, never imapmig
  folder_list(src, 'alice')
  expected_target_name('Sent')     # -> 'Sent Items'
  r = env.run_imapmig(src, 'alice', tgt, 'alice', ['--verbose'])
  r.rc, r.stdout, r.stderr, r.summary, r.events, r.maxrss_kib (KiB, via
  /usr/bin/time; None for killed runs)

Every server is stopped at exit, on failure too (atexit + Env.close()).

Run as a script:
  harness.py selftest           prove the harness works (no imapmig needed)
  harness.py demo-up DIR        start a filled pair that outlives the script
  harness.py demo-down DIR      stop it
"""

import atexit
import base64
import hashlib
import imaplib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

SOURCE_HOST = 'imap.source.test'
TARGET_HOST = 'imap.target.test'
PLAIN_HOST = 'imap.plain.test'

MAIL_ACCOUNT = 'imapmigtest'

# Servers listen on 127.0.0.2 (and 127.0.0.1).  Tests connect to 127.0.0.2
# so the client's address (127.0.0.1) differs from the server's: Dovecot
# treats a same-address connection as "secured" and would then allow
# plaintext login without STARTTLS, which is not what a real server does.
SERVER_ADDR = '127.0.0.2'

# Users present on every server.  Passwords are distinct, recognisable
# strings so a test can grep for them in files imapmig writes.  No ':' (the
# passwd-file separator).  'frank@example.test' needs percent-encoding in a
# URL.  'erin' keeps her mail in LAYOUT=index so her folder names may hold
# '/' although the separator is '.'; Maildir++ refuses '/' in names.
USERS = {
    'alice': 'Alice-pw-7f3e9c!x',
    'bob': 'Bob-pw-51d2aa#y',
    'carol': 'Carol-pw-0be417$z',
    'dave': 'Dave-pw-9c0d11%w',
    'erin': 'Erin-pw-d41d8c&v',
    'frank@example.test': 'Frank-pw-e5b2f3 q"',
}
INDEX_LAYOUT_USERS = ('erin',)
MASTER_USER = 'admin'
MASTER_PASSWORD = 'Master-pw-cafe42'

# Special-use folders on each kind of server, attribute -> name.
SOURCE_SPECIAL = {'\\Sent': 'Sent', '\\Drafts': 'Drafts', '\\Trash': 'Trash',
                  '\\Junk': 'Junk'}
TARGET_SPECIAL = {'\\Sent': 'Sent Items', '\\Trash': 'Deleted Items',
                  '\\Junk': 'Junk Email', '\\Drafts': 'Drafts',
                  '\\Archive': 'Archive'}


def log(*args):
    print('[harness]', *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- helpers

def shared_dir():
    """shared/ (corpus): $IMAPMIG_SHARED, else <repo>/../shared."""
    d = os.environ.get('IMAPMIG_SHARED')
    if d:
        return d
    return os.path.join(os.path.dirname(REPO), 'shared')


def imapmig_binary():
    return os.environ.get('IMAPMIG') or os.path.join(REPO, 'build', 'imapmig')


def run(cmd, input=None, check=True, env=None):
    p = subprocess.run(cmd, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env)
    if check and p.returncode != 0:
        raise RuntimeError('%s failed (%d): %s' % (
            ' '.join(cmd), p.returncode,
            p.stderr.decode('utf-8', 'replace').strip()))
    return p


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (held open until all chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def mail_ids():
    """uid/gid Dovecot uses for mail: a dedicated system user, made if
    missing (Dovecot refuses to access mail as root)."""
    p = run(['getent', 'passwd', MAIL_ACCOUNT], check=False)
    if p.returncode != 0 and os.geteuid() == 0:
        run(['useradd', '--system', '--no-create-home', '--home-dir',
             '/nonexistent', '--shell', '/usr/sbin/nologin', MAIL_ACCOUNT],
            check=False)
        p = run(['getent', 'passwd', MAIL_ACCOUNT], check=False)
    if p.returncode != 0:
        p = run(['getent', 'passwd', 'mail'])
    f = p.stdout.decode().strip().split(':')
    return int(f[2]), int(f[3])


def mutf7_encode(name):
    """RFC 3501 modified UTF-7; written here independently of imapmig's."""
    out = []
    pending = []

    def flush():
        if pending:
            b = ''.join(pending).encode('utf-16-be')
            out.append('&' + base64.b64encode(b).decode().rstrip('=')
                       .replace('/', ',') + '-')
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append('&-' if ch == '&' else ch)
        else:
            pending.append(ch)
    flush()
    return ''.join(out)


def mutf7_decode(s):
    def dec(m):
        t = m.group(1)
        if t == '':
            return '&'
        t = t.replace(',', '/')
        t += '=' * (-len(t) % 4)
        return base64.b64decode(t).decode('utf-16-be')
    return re.sub(r'&([^-]*)-', dec, s)


def imap_quote(s):
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'


def expected_target_name(src_name, src_sep='.', tgt_sep='/',
                         special=None, folder_map=None):
    """What a source folder (UTF-8 name as doveadm lists it) should be called
    on the target: special-use by attribute (Sent -> Sent Items, ...),
    INBOX stays INBOX, hierarchy '.' -> '/', and a '/' inside a source name
    component (not a separator there) becomes '_'."""
    if folder_map and src_name in folder_map:
        return folder_map[src_name]
    special = SOURCE_TO_TARGET if special is None else special
    if src_name.upper() == 'INBOX':
        return 'INBOX'
    if src_name in special:
        return special[src_name]
    parts = src_name.split(src_sep)
    return tgt_sep.join(p.replace(tgt_sep, '_') for p in parts)


SOURCE_TO_TARGET = {SOURCE_SPECIAL[a]: TARGET_SPECIAL[a]
                    for a in SOURCE_SPECIAL}


# -------------------------------------------------------------------- CA

class CA:
    """Throwaway CA made with the openssl CLI; EC keys (fast)."""

    def __init__(self, d):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.cert = os.path.join(d, 'ca.pem')
        self.key = os.path.join(d, 'ca.key')
        run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
             'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', self.key,
             '-out', self.cert, '-days', '30', '-subj',
             '/CN=imapmig test CA',
             '-addext', 'basicConstraints=critical,CA:TRUE',
             '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])

    def issue(self, dns_name):
        """-> (cert_path, key_path) for a server cert with SAN DNS:dns_name."""
        base = os.path.join(self.dir, dns_name)
        ext = base + '.ext'
        with open(ext, 'w') as f:
            f.write('subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n'
                    'keyUsage=critical,digitalSignature\n'
                    'extendedKeyUsage=serverAuth\n' % dns_name)
        run(['openssl', 'req', '-new', '-newkey', 'ec', '-pkeyopt',
             'ec_paramgen_curve:prime256v1', '-nodes', '-keyout',
             base + '.key', '-out', base + '.csr', '-subj', '/CN=' + dns_name])
        run(['openssl', 'x509', '-req', '-in', base + '.csr', '-CA',
             self.cert, '-CAkey', self.key, '-CAcreateserial', '-out',
             base + '.pem', '-days', '30', '-extfile', ext])
        return base + '.pem', base + '.key'

    def context(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        return ctx


# --------------------------------------------------------- IMAP client

class Client(imaplib.IMAP4):
    """imaplib over loopback that verifies TLS for a DNS name (like
    curl --resolve): connects to 127.0.0.1:port, checks the cert for host."""

    def __init__(self, host, port, tls, ctx, timeout=30):
        self._port_ = port
        self._tls_ = tls
        self._ctx_ = ctx
        super().__init__(host, port, timeout=timeout)
        if tls == 'starttls':
            self.starttls(ssl_context=ctx)

    def _create_socket(self, timeout):
        sock = socket.create_connection((SERVER_ADDR, self._port_), timeout)
        if self._tls_ == 'imaps':
            sock = self._ctx_.wrap_socket(sock, server_hostname=self.host)
        return sock


# ---------------------------------------------------------------- server

SERVER_CONF = r'''# private Dovecot instance made by tests/integration/harness.py
instance_name = imapmig-{name}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = {ssl}
{ssl_files}
disable_plaintext_auth = {dpa}
auth_mechanisms = plain login
auth_master_user_separator = *
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {uid}
last_valid_uid = 0
first_valid_gid = 0
mail_location = {mail_location}
mail_fsync = never
mail_max_userip_connections = 200
imap_max_line_length = 1M
passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN {dir}/master-users
  result_success = continue
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {dir}/users
}}
namespace inbox {{
  inbox = yes
  separator = {sep}
  prefix =
{mailboxes}}}
service imap-login {{
  inet_listener imap {{
    address = {addrs}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {addrs}
    port = {imaps_port}
    ssl = yes
  }}
}}
service imap {{
  process_limit = 256
}}
'''


# appended to a server's config by Server(..., quota=True); limits are per
# user (userdb_quota_rule in the passwd-file, see Server.set_quota)
QUOTA_CONF = r'''
mail_plugins = $mail_plugins quota
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
plugin {
  quota = count:User quota
  quota_vsizes = yes
}
'''


# appended by Server(..., literal_plus=False): Dovecot's own capability list
# without LITERAL+ (the client must then wait for "+" before each literal,
# as with Exchange Online)
NO_LITERAL_PLUS_CONF = r'''
imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE NOTIFY SPECIAL-USE
'''


# appended by Server(..., zlib=True): COMPRESS=DEFLATE offered (imap_zlib)
ZLIB_CONF = r'''
mail_plugins = $mail_plugins zlib
protocol imap {
  mail_plugins = $mail_plugins imap_zlib
}
'''


WATCHDOG = r'''
import os, signal, sys, time
parent, listing = int(sys.argv[1]), sys.argv[2]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    time.sleep(0.5)
try:
    pgids = [int(x) for x in open(listing).read().split()]
except OSError:
    pgids = []
for g in pgids:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
if len(sys.argv) > 3:
    import shutil
    time.sleep(0.2)
    shutil.rmtree(sys.argv[3], ignore_errors=True)
'''


def stop_session(p, fast=False):
    """Stop a server started in its own session (start_new_session) and
    everything it forked: SIGTERM and up to 10 s (fast: not), then SIGKILL
    to the whole session."""
    if p.poll() is None and not fast:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


class Server:
    """One private Dovecot instance.  kind: 'source', 'target' or 'plain'.

    Attributes: name, kind, dir, conf, host (TLS name), imaps_port,
    imap_port (STARTTLS on source/target, plaintext on plain), sep,
    special (attribute -> folder name), users {user: password}."""

    def __init__(self, env, name, kind, quota=False, zlib=False, literal_plus=True):
        if kind not in ('source', 'target', 'plain'):
            raise ValueError(kind)
        self.env = env
        self.name = name
        self.kind = kind
        self.dir = os.path.join(env.dir, name)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.conf = os.path.join(self.dir, 'dovecot.conf')
        self.host = {'source': SOURCE_HOST, 'target': TARGET_HOST,
                     'plain': PLAIN_HOST}[kind]
        self.users = dict(USERS)
        self.sep = '/' if kind == 'target' else '.'
        self.special = dict(TARGET_SPECIAL if kind == 'target'
                            else SOURCE_SPECIAL)
        self.proc = None
        self.imap_port, self.imaps_port = free_ports(2)
        if kind == 'plain':
            self.imaps_port = 0
        self.quota = quota
        self.user_quota = {}        # user -> quota_rule storage ('1M')
        self._write_config()
        if quota:
            with open(self.conf, 'a') as f:
                f.write(QUOTA_CONF)
        if zlib:
            with open(self.conf, 'a') as f:
                f.write(ZLIB_CONF)
        if not literal_plus:
            with open(self.conf, 'a') as f:
                f.write(NO_LITERAL_PLUS_CONF)

    # -- configuration

    def _write_config(self):
        uid, gid = self.env.mail_ids
        home = os.path.join(self.dir, 'home')
        os.makedirs(home)
        os.chown(home, uid, gid)
        if self.kind == 'target':
            loc = 'sdbox:~/sdbox'
        else:
            loc = 'maildir:~/Maildir'
        lines = []
        for u, pw in self.users.items():
            extra = ''
            if self.kind != 'target' and u in INDEX_LAYOUT_USERS:
                extra = 'userdb_mail=maildir:~/Maildir:LAYOUT=index'
            lines.append('%s:%s:%d:%d::%s::%s' % (
                u, pw, uid, gid, os.path.join(home, u), extra))
        with open(os.path.join(self.dir, 'users'), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        with open(os.path.join(self.dir, 'master-users'), 'w') as f:
            f.write('%s:%s\n' % (MASTER_USER, MASTER_PASSWORD))
        # auth runs as the internal user "dovecot": readable by it only
        try:
            import grp
            dgid = grp.getgrnam('dovecot').gr_gid
        except KeyError:
            dgid = 0
        for f in ('users', 'master-users'):
            os.chown(os.path.join(self.dir, f), 0, dgid)
            os.chmod(os.path.join(self.dir, f), 0o640)
        mb = []
        for attr, fname in self.special.items():
            mb.append('  mailbox "%s" {\n    special_use = %s\n'
                      '    auto = subscribe\n  }\n' % (fname, attr))
        if self.kind == 'plain':
            ssl_mode, ssl_files, dpa = 'no', '', 'no'
        else:
            cert, key = self.env.ca.issue(self.host) \
                if self.host not in self.env.certs else \
                self.env.certs[self.host]
            self.env.certs[self.host] = (cert, key)
            ssl_mode = 'required' if self.kind == 'source' else 'yes'
            ssl_files = 'ssl_cert = <%s\nssl_key = <%s' % (cert, key)
            dpa = 'yes'
        conf = SERVER_CONF.format(
            name=self.name + '-' + str(os.getpid()), dir=self.dir,
            ssl=ssl_mode, ssl_files=ssl_files, dpa=dpa, uid=uid,
            mail_location=loc, sep=self.sep, mailboxes=''.join(mb),
            imap_port=self.imap_port, imaps_port=self.imaps_port,
            addrs='%s 127.0.0.1' % SERVER_ADDR)
        with open(self.conf, 'w') as f:
            f.write(conf)

    # -- life cycle

    def start(self, timeout=15):
        with open(os.path.join(self.dir, 'master.stderr'), 'wb') as err:
            self.proc = subprocess.Popen(
                ['dovecot', '-F', '-c', self.conf],
                stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True)
        if not self.env.persist:
            self.env.watch(self.proc.pid)
        ports = [p for p in (self.imap_port, self.imaps_port) if p]
        deadline = time.time() + timeout
        while ports:
            if self.proc.poll() is not None:
                raise RuntimeError('dovecot %s exited: %s' % (
                    self.name, self.log_tail()))
            try:
                socket.create_connection((SERVER_ADDR, ports[0]), 1).close()
                ports.pop(0)
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError('dovecot %s not listening: %s' % (
                        self.name, self.log_tail()))
                time.sleep(0.05)
        # auth must be up for doveadm's userdb lookups too
        while not os.path.exists(os.path.join(self.dir, 'run',
                                              'auth-userdb')):
            if time.time() > deadline:
                raise RuntimeError('dovecot %s: no auth-userdb' % self.name)
            time.sleep(0.05)
        return self

    def stop(self, fast=False):
        """Stop the instance and all its processes (its own session).
        fast: SIGKILL at once (its data is thrown away anyway)."""
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        stop_session(p, fast)

    def restart(self, down=0.0, timeout=15):
        """Stop (SIGTERM, clients cut off), stay down for `down` seconds,
        start again on the same ports with the same mail."""
        self.stop()
        if down:
            time.sleep(down)
        return self.start(timeout=timeout)

    # -- users (additions: fault tests make users on the fly)

    def write_users(self):
        """Rewrite the passwd-file from self.users (+ per-user quota
        rules); Dovecot rereads it on the next lookup (new size/mtime)."""
        uid, gid = self.env.mail_ids
        home = os.path.join(self.dir, 'home')
        lines = []
        for u, pw in self.users.items():
            extra = []
            if self.kind != 'target' and u in INDEX_LAYOUT_USERS:
                extra.append('userdb_mail=maildir:~/Maildir:LAYOUT=index')
            if u in self.user_quota:
                extra.append('userdb_quota_rule=*:storage=%s' %
                             self.user_quota[u])
            lines.append('%s:%s:%d:%d::%s::%s' % (
                u, pw, uid, gid, os.path.join(home, u), ' '.join(extra)))
        path = os.path.join(self.dir, 'users')
        with open(path, 'w') as f:
            f.write('\n'.join(lines) + '\n')

    def add_user(self, user, password):
        """A new user on this (running) server."""
        if ':' in user + password:
            raise ValueError('no ":" in passwd-file fields')
        self.users[user] = password
        self.write_users()
        self.wait_userdb(user)

    def set_quota(self, user, storage):
        """Per-user storage quota ('1M', '100M'; None: unlimited); needs
        a server made with quota=True (Dovecot's quota plugin, count
        backend).  New sessions see it."""
        if not self.quota:
            raise ValueError('server %s has no quota plugin' % self.name)
        if storage is None:
            self.user_quota.pop(user, None)
        else:
            self.user_quota[user] = storage
        self.write_users()
        self.wait_userdb(user, 'quota_rule', None if storage is None else
                         '*:storage=%s' % storage)

    def wait_userdb(self, user, field=None, value=None, timeout=5):
        """Wait until a running server's userdb shows user (and field =
        value, None: field absent): passwd-file is stat()ed at most once a
        second, so a change can take that long to be seen."""
        if self.proc is None:
            return
        deadline = time.time() + timeout
        while True:
            p = self.doveadm_run(['user', user], fmt='tab')
            if p.returncode == 0:
                rows = dict(line.split('\t', 1) for line in
                            p.stdout.decode().splitlines()[1:]
                            if '\t' in line)
                if field is None or rows.get(field) == value:
                    return
            if time.time() > deadline:
                raise RuntimeError('userdb of %s: %s not %r' % (
                    self.name, user if field is None else field, value))
            time.sleep(0.1)

    def log_tail(self, n=30):
        try:
            with open(os.path.join(self.dir, 'dovecot.log'), 'rb') as f:
                lines = f.read().decode('utf-8', 'replace').splitlines()
            return '\n'.join(lines[-n:])
        except OSError:
            return '(no log)'

    # -- URLs

    def url(self, user, starttls=False):
        """URL imapmig gets: imaps://user@HOST:port or imap:// (STARTTLS).
        HOST is the TLS name; pair with resolve_arg()."""
        from urllib.parse import quote
        u = quote(user, safe='')
        if self.kind == 'plain' or starttls:
            return 'imap://%s@%s:%d' % (u, self.host, self.imap_port)
        return 'imaps://%s@%s:%d' % (u, self.host, self.imaps_port)

    def resolve_arg(self):
        return '%s:%s' % (self.host, SERVER_ADDR)

    # -- doveadm

    def doveadm_run(self, args, input=None, fmt=None):
        """Run doveadm on this instance; the CompletedProcess, unchecked.
        Every doveadm call of the harness goes through here: right after
        a (re)start the auth process may not listen yet even though IMAP
        does, so those lookups are retried for a few seconds."""
        cmd = ['doveadm', '-c', self.conf]
        if fmt:
            cmd += ['-f', fmt]
        for _ in range(50):
            p = run(cmd + list(args), input=input, check=False)
            if not (p.returncode != 0 and b'auth-' in p.stderr and
                    (b'Connection refused' in p.stderr or
                     b'No such file or directory' in p.stderr)):
                break
            time.sleep(0.1)
        return p

    def doveadm(self, *args, input=None, check=True, fmt=None):
        p = self.doveadm_run(args, input=input, fmt=fmt)
        if check and p.returncode != 0:
            cmd = ['doveadm', '-c', self.conf] + (['-f', fmt] if fmt else [])
            raise RuntimeError('%s failed (%d): %s' % (
                ' '.join(cmd + list(args)), p.returncode,
                p.stderr.decode('utf-8', 'replace').strip()))
        return p.stdout

    def create_folder(self, user, name, subscribe=False):
        self.doveadm('mailbox', 'create', '-u', user, *(
            ['-s'] if subscribe else []), name)

    def subscribe(self, user, name):
        self.doveadm('mailbox', 'subscribe', '-u', user, name)

    def save(self, user, folder, raw):
        """doveadm save: raw bytes as they are (e.g. bare LF), no flags."""
        self.doveadm('save', '-u', user, '-m', folder, input=raw)

    def flags(self, user, op, flags, folder, uids='1:*'):
        """op: add / remove / replace (doveadm flags)."""
        self.doveadm('flags', op, '-u', user, ' '.join(flags),
                     'mailbox', folder, 'uid', uids)

    # -- IMAP (imaplib)

    def client(self, user, tls=None, master=False, password=None):
        """Logged-in imaplib client.  tls: 'imaps' (default), 'starttls'
        or 'plain'.  master=True logs in as user*admin."""
        if tls is None:
            tls = 'plain' if self.kind == 'plain' else 'imaps'
        port = self.imaps_port if tls == 'imaps' else self.imap_port
        c = Client(self.host, port, tls, self.env.ca.context())
        if master:
            c.login('%s*%s' % (user, MASTER_USER), MASTER_PASSWORD)
        else:
            c.login(user, password if password is not None
                    else self.users[user])
        return c

    def append(self, user, folder, raw, flags=(), internaldate=None,
               client=None):
        """APPEND exact bytes (imaplib's append() would rewrite line
        endings) with flags and INTERNALDATE (unix time)."""
        c = client or self.client(user)
        try:
            append_raw(c, folder, raw, flags, internaldate)
        finally:
            if client is None:
                c.logout()


def append_raw(c, folder, raw, flags=(), internaldate=None):
    args = [imap_quote(mutf7_encode(folder))]
    args.append('(%s)' % ' '.join(flags))
    if internaldate is not None:
        args.append(imaplib.Time2Internaldate(internaldate))
    c.literal = raw
    typ, dat = c._simple_command('APPEND', *args)
    if typ != 'OK':
        raise RuntimeError('APPEND to %s: %s %s' % (folder, typ, dat))


# ------------------------------------------------------------------ oracle

def _parse_pager(out, fields):
    """Parse `doveadm -f pager fetch` output whose fields end with
    'size.physical text': text is read by its size, so any byte in a
    message (form feeds included) is safe."""
    msgs = []
    pos = 0
    n = len(out)
    while pos < n:
        rec = {}
        for f in fields:
            if f == 'text':
                key = b'text:\n'
                if not out.startswith(key, pos):
                    raise ValueError('oracle: expected text at %d' % pos)
                pos += len(key)
                size = int(rec['size.physical'])
                rec['text'] = out[pos:pos + size]
                pos += size
                # pager adds "\n" after a value not ending in one
                if not rec['text'].endswith(b'\n') and \
                        out.startswith(b'\n', pos):
                    pos += 1
            else:
                key = f.encode() + b':'
                if not out.startswith(key, pos):
                    raise ValueError('oracle: expected %s at %d: %r' % (
                        f, pos, out[pos:pos + 60]))
                end = out.index(b'\n', pos)
                rec[f] = out[pos + len(key):end].strip().decode()
                pos = end + 1
        msgs.append(rec)
        if out.startswith(b'\f\n', pos):
            pos += 2
        elif pos < n:
            raise ValueError('oracle: junk at %d: %r' % (pos, out[pos:pos + 60]))
    return msgs


def fetch_messages(server, user, folder=None):
    """Raw oracle rows: dicts with mailbox, uid, flags, date.received.unixtime,
    size.physical, text (bytes as stored).  One doveadm per user."""
    fields = ['mailbox', 'uid', 'flags', 'date.received.unixtime',
              'size.virtual', 'size.physical', 'text']
    query = ['mailbox', folder] if folder else ['all']
    out = server.doveadm('fetch', '-u', user, ' '.join(fields), *query,
                         fmt='pager')
    msgs = _parse_pager(out, fields)
    for m in msgs:
        size = int(m['size.physical'])
        if len(m['text']) != size:
            raise ValueError('oracle: short text in %s uid %s' % (
                m['mailbox'], m['uid']))
    return msgs


def msg_key(m):
    flags = frozenset(f for f in m['flags'].split() if f != '\\Recent')
    return (hashlib.sha256(m['text']).hexdigest(), flags,
            int(m['date.received.unixtime']))


def fetch_all(server, user):
    """{folder_utf8: sorted list of (sha256(text), frozenset(flags minus
    \\Recent), date.received unix time)}; every folder listed, empty ones
    with []."""
    res = {f: [] for f in list_folders(server, user)}
    for m in fetch_messages(server, user):
        res.setdefault(m['mailbox'], []).append(msg_key(m))
    for k in res:
        res[k].sort(key=lambda t: (t[0], sorted(t[1]), t[2]))
    return res


def list_folders(server, user, subscribed=False):
    out = server.doveadm('mailbox', 'list', '-u', user,
                         *(['-s'] if subscribed else []))
    return sorted(x for x in out.decode('utf-8').splitlines() if x)


def folder_status(server, user):
    """{folder: {'messages': n, 'uidvalidity': n, 'uidnext': n}} for every
    listed folder (auto-created special-use ones included)."""
    names = list_folders(server, user)
    out = server.doveadm('mailbox', 'status', '-u', user,
                         'messages uidvalidity uidnext', *names, fmt='tab')
    lines = out.decode('utf-8').splitlines()
    res = {}
    if not lines:
        return res
    head = lines[0].split('\t')
    for line in lines[1:]:
        v = dict(zip(head, line.split('\t')))
        res[v['mailbox']] = {k: int(v[k]) for k in
                             ('messages', 'uidvalidity', 'uidnext')}
    return res


def count_messages(server, user):
    return sum(v['messages'] for v in folder_status(server, user).values())


def special_use(server, user):
    """{attribute: folder} as the server announces it over IMAP
    (LIST RETURN (SPECIAL-USE)), independent of the config we wrote."""
    c = server.client(user)
    try:
        typ, dat = c._simple_command('LIST', '""', '"*"', 'RETURN',
                                     '(SPECIAL-USE)')
        typ, dat = c._untagged_response(typ, dat, 'LIST')
    finally:
        c.logout()
    res = {}
    for line in dat:
        if not line:
            continue
        line = line.decode() if isinstance(line, bytes) else line
        m = re.match(r'^\(([^)]*)\) (?:"[^"]*"|NIL) (.*)$', line)
        if not m:
            continue
        name = m.group(2)
        if name.startswith('"'):
            name = name[1:-1].replace('\\"', '"').replace('\\\\', '\\')
        for a in m.group(1).split():
            if a in ('\\Sent', '\\Trash', '\\Junk', '\\Drafts', '\\Archive',
                     '\\All', '\\Flagged'):
                res[a] = mutf7_decode(name)
    return res


def folder_list(server, user):
    """{'all': [...], 'subscribed': [...], 'special': {attr: name},
    'status': {...}}"""
    return {'all': list_folders(server, user),
            'subscribed': list_folders(server, user, subscribed=True),
            'special': special_use(server, user),
            'status': folder_status(server, user)}


def mapped(source_oracle, **kw):
    """Source oracle with folder names as they should be on the target."""
    res = {}
    for k, v in source_oracle.items():
        t = expected_target_name(k, **kw)
        res.setdefault(t, []).extend(v)
    for k in res:
        res[k].sort(key=lambda t: (t[0], sorted(t[1]), t[2]))
    return res


def diff_oracles(expected, actual, only=None):
    """Human-readable differences, [] when equal.  only: folder names to
    compare (default: all in expected)."""
    from collections import Counter
    out = []
    names = only if only is not None else expected.keys()
    for f in names:
        if f not in actual:
            out.append('missing folder %r on target' % f)
            continue
        e, a = Counter(expected.get(f, [])), Counter(actual[f])
        if e != a:
            miss = e - a
            extra = a - e
            out.append('%r: %d missing, %d extra (of %d expected, %d there)'
                       '; e.g. missing %s extra %s' % (
                           f, sum(miss.values()), sum(extra.values()),
                           len(expected.get(f, [])), len(actual[f]),
                           list(miss)[:2], list(extra)[:2]))
    return out


# ------------------------------------------------------------------ corpus

_FROM_RE = re.compile(rb'^From \S+\s+(.*)$')


def corpus_files(group=None):
    base = os.path.join(shared_dir(), 'corpus', 'spamassassin')
    groups = [group] if group else sorted(os.listdir(base))
    res = []
    for g in groups:
        d = os.path.join(base, g)
        res += [os.path.join(d, f) for f in sorted(os.listdir(d))
                if not f.startswith('cmds')]
    return res


def load_corpus_message(path):
    """-> (raw bytes without the mbox From line, unix time of that line or
    None).  Line endings are made CRLF (what IMAP carries), see below."""
    with open(path, 'rb') as f:
        data = f.read()
    when = None
    if data.startswith(b'From '):
        nl = data.find(b'\n')
        first, data = data[:nl], data[nl + 1:]
        m = _FROM_RE.match(first.rstrip(b'\r'))
        if m:
            when = _parse_ctime(m.group(1).decode('ascii', 'replace'))
    # CRLF line endings.  Runs of CRs before a LF ("\r\r\n", in a few spam
    # files) are folded: Dovecot stores a line end as LF, dropping one CR,
    # so such a message would come back from FETCH with one CR less than
    # appended and no IMAP copy could reproduce the source's stored bytes.
    data = re.sub(rb'\r*\n', b'\r\n', data)
    return data, when


def _parse_ctime(s):
    import calendar
    for fmt in ('%a %b %d %H:%M:%S %Y', '%a %b  %d %H:%M:%S %Y'):
        try:
            return calendar.timegm(time.strptime(' '.join(s.split()), fmt))
        except ValueError:
            pass
    return None


def corpus_sample(n, seed=1):
    """n corpus messages spread over the groups, deterministic."""
    import random
    files = corpus_files()
    rnd = random.Random(seed)
    rnd.shuffle(files)
    res = []
    for p in files:
        raw, when = load_corpus_message(p)
        if len(raw) > 2 * 1024 * 1024:
            continue
        res.append((os.path.basename(os.path.dirname(p)), raw, when))
        if len(res) == n:
            break
    return res


def populate_corpus(server, user, folders, n, seed=1, flag_sets=None):
    """Append n corpus messages round-robin into folders with varied flags.
    -> number appended."""
    flag_sets = flag_sets or [(), ('\\Seen',), ('\\Seen', '\\Answered'),
                              ('\\Flagged',), ('\\Seen', '$Label1'),
                              ('NonJunk',)]
    c = server.client(user)
    try:
        for i, (grp, raw, when) in enumerate(corpus_sample(n, seed)):
            append_raw(c, folders[i % len(folders)], raw,
                       flag_sets[i % len(flag_sets)], when)
    finally:
        c.logout()
    return n


def make_message(subject, body='hello\r\n', msgid=True, date=None,
                 extra_headers=()):
    """Small RFC 5322 message, CRLF."""
    h = ['From: Test Sender <sender@example.org>',
         'To: Alice <alice@example.test>',
         'Subject: %s' % subject,
         'Date: %s' % (date or 'Mon, 01 Jan 2018 10:00:00 +0000')]
    if msgid:
        h.append('Message-ID: <%s@example.org>' % hashlib.sha1(
            (subject + body).encode('utf-8')).hexdigest()[:16])
    h += list(extra_headers)
    h.append('MIME-Version: 1.0')
    h.append('Content-Type: text/plain; charset=utf-8')
    return ('\r\n'.join(h) + '\r\n\r\n' + body).encode('utf-8')


# ------------------------------------------------------------ imapmig run

class Result:
    def __init__(self, rc, stdout, stderr, maxrss_kib, cmd, seconds):
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.maxrss_kib = maxrss_kib
        self.cmd = cmd
        self.seconds = seconds
        self.events = []
        for line in stdout.splitlines():
            line = line.strip()
            if line.startswith(b'{'):
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    pass
        self.summary = None
        for e in self.events:
            if isinstance(e, dict) and e.get('event') == 'summary':
                self.summary = e

    def describe(self):
        return 'imapmig rc=%s (%.1fs)\ncmd: %s\nstdout (tail): %s\n' \
            'stderr (tail): %s' % (
                self.rc, self.seconds, ' '.join(self.cmd),
                self.stdout[-1500:].decode('utf-8', 'replace'),
                self.stderr[-3000:].decode('utf-8', 'replace'))


# ------------------------------------------------------------------- env

_ENVS = []


def _cleanup_all():
    for e in list(_ENVS):
        e.close()


atexit.register(_cleanup_all)


def _on_signal(sig, frame):
    _cleanup_all()
    sys.exit(128 + sig)


class Env:
    """A temp dir, a CA and the servers started in it.

    keep=True (or $IMAPMIG_KEEP_TMP set) leaves the directory for
    inspection; servers are stopped regardless."""

    def __init__(self, keep=None, dir=None, persist=False):
        self.keep = keep if keep is not None else \
            bool(os.environ.get('IMAPMIG_KEEP_TMP'))
        if dir:
            os.makedirs(dir, exist_ok=True)
            self.dir = os.path.abspath(dir)
        else:
            self.dir = tempfile.mkdtemp(prefix='imapmig-it-')
        os.chmod(self.dir, 0o755)
        self.mail_ids = mail_ids()
        self.ca = CA(os.path.join(self.dir, 'ca'))
        self.certs = {}
        self.servers = []
        self._n = 0
        self.closed = False
        self.persist = persist      # servers outlive this process (demo)
        self._watchdog = None
        _ENVS.append(self)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, _on_signal)

    def watch(self, pgid):
        """Kill process group pgid if this test process dies without
        cleaning up (SIGKILL from a CTest timeout): a watchdog process
        polls for our death."""
        listing = self.path('pgids')
        with open(listing, 'a') as f:
            f.write('%d\n' % pgid)
        if self._watchdog is None:
            self._watchdog = subprocess.Popen(
                [sys.executable, '-c', WATCHDOG, str(os.getpid()), listing]
                + ([] if self.keep else [self.dir]),
                start_new_session=True, stdin=subprocess.DEVNULL)

    def server(self, kind, start=True, quota=False, zlib=False, literal_plus=True):
        self._n += 1
        s = Server(self, '%s%d' % (kind, self._n), kind, quota=quota, zlib=zlib,
                   literal_plus=literal_plus)
        self.servers.append(s)
        if start:
            s.start()
        return s

    def pair(self):
        return self.server('source'), self.server('target')

    def close(self):
        if self.closed:
            return
        self.closed = True
        for s in self.servers:
            s.stop(fast=not self.keep)
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
        if self in _ENVS:
            _ENVS.remove(self)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            log('kept', self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def path(self, *p):
        return os.path.join(self.dir, *p)

    # -- running imapmig

    def sync_args(self, src, src_user, tgt, tgt_user, extra=(),
                  state=None, starttls=False, resolve=True, ca=True,
                  json_out=True):
        a = [imapmig_binary(), 'sync']
        if ca:
            a += ['--ca-file', self.ca.cert]
        if resolve:
            for s in (src, tgt):
                if not isinstance(s, str):
                    a += ['--resolve', s.resolve_arg()]
        a += ['--state', state or self.path('state', 'state.db')]
        if json_out:
            a.append('--json')
        a += list(extra)
        src_url = src if isinstance(src, str) else src.url(
            src_user, starttls=starttls)
        tgt_url = tgt if isinstance(tgt, str) else tgt.url(
            tgt_user, starttls=starttls)
        return a + [src_url, tgt_url]

    def run_imapmig(self, src, src_user, tgt, tgt_user, extra=(),
                    src_password=None, tgt_password=None, state=None,
                    starttls=False, resolve=True, timeout=600, env=None,
                    kill_after=None, kill_when=None, argv=None):
        """Run `imapmig sync` and wait.  Passwords go through the
        environment (default: the users' real ones).  kill_after=seconds or
        kill_when=callable() -> bool (polled every 5 ms) SIGKILLs it.
        -> Result (rc is -9 when killed)."""
        os.makedirs(self.path('state'), exist_ok=True)
        cmd = argv or self.sync_args(src, src_user, tgt, tgt_user, extra,
                                     state=state, starttls=starttls,
                                     resolve=resolve)
        e = dict(os.environ)
        if not isinstance(src, str):
            e['IMAPMIG_SOURCE_PASSWORD'] = src_password if \
                src_password is not None else src.users[src_user]
        if not isinstance(tgt, str):
            e['IMAPMIG_TARGET_PASSWORD'] = tgt_password if \
                tgt_password is not None else tgt.users[tgt_user]
        e.setdefault('ASAN_OPTIONS', 'detect_leaks=1')
        if env:
            e.update(env)
        self._runs = getattr(self, '_runs', 0) + 1
        outp = self.path('run%d.out' % self._runs)
        errp = self.path('run%d.err' % self._runs)
        # Peak RSS: through /usr/bin/time, not wait4() on our own child:
        # a child forked from Python starts with Python's pages resident,
        # so its ru_maxrss is at least the test's own RSS.  Not for runs
        # that get killed (the signal must reach imapmig itself).
        rssp = self.path('run%d.rss' % self._runs)
        timer = []
        if kill_after is None and kill_when is None and \
                os.access('/usr/bin/time', os.X_OK):
            timer = ['/usr/bin/time', '-f', '%M', '-o', rssp]
        t0 = time.time()
        with open(outp, 'wb') as fo, open(errp, 'wb') as fe:
            p = subprocess.Popen(timer + cmd, stdout=fo, stderr=fe, env=e,
                                 stdin=subprocess.DEVNULL)
            killed = False
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                el = time.time() - t0
                if not killed and ((kill_after is not None and
                                    el >= kill_after) or
                                   (kill_when is not None and kill_when())):
                    os.kill(p.pid, signal.SIGKILL)
                    killed = True
                if el > timeout and not killed:
                    os.kill(p.pid, signal.SIGKILL)
                    killed = True
                time.sleep(0.005 if kill_when is not None else 0.02)
            p.returncode = os.waitstatus_to_exitcode(status)
        with open(outp, 'rb') as f:
            out = f.read()
        with open(errp, 'rb') as f:
            err = f.read()
        maxrss = None
        if timer:
            try:
                with open(rssp) as f:
                    maxrss = int(f.read().split()[-1])
            except (OSError, ValueError, IndexError):
                maxrss = None
        r = Result(p.returncode, out, err, maxrss, cmd, time.time() - t0)
        r.killed = killed
        return r


# ------------------------------------------------------------- test utils

class Check:
    """Collects failures so a test reports all of them, then exits 1."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.passed = 0

    def ok(self, cond, what):
        if cond:
            self.passed += 1
            print('  ok   %s' % what, flush=True)
        else:
            self.failures.append(what)
            print('  FAIL %s' % what, flush=True)
        return cond

    def eq(self, a, b, what):
        return self.ok(a == b, '%s (%r == %r)' % (what, a, b) if a != b
                       else what)

    def finish(self):
        n = len(self.failures)
        print('%s: %d passed, %d failed' % (self.name, self.passed, n),
              flush=True)
        return 1 if n else 0


def check_oracle(ck, src, su, tgt, tu, what, folder_map=None,
                 select=None):
    """Assert the target holds exactly the source's messages (hash, flags,
    INTERNALDATE multisets per mapped folder) and nothing else.
    select(src_folder) -> bool limits which source folders count.
    -> (source oracle, target oracle)."""
    so = fetch_all(src, su)
    if select:
        so = {k: v for k, v in so.items() if select(k)}
    exp = mapped(so, folder_map=folder_map)
    to = fetch_all(tgt, tu)
    d = diff_oracles(exp, to)
    extra = ['%r: %d unexpected messages' % (f, len(v))
             for f, v in to.items() if f not in exp and v]
    ck.ok(not d and not extra, '%s: target oracle == source oracle (%d '
          'folders, %d messages)%s' % (
              what, len(exp), sum(len(v) for v in exp.values()),
              '' if not (d or extra) else ': ' + '; '.join(d + extra)[:2000]))
    return so, to


def target_file_count(tgt, user):
    """Messages stored so far in an sdbox target, by counting its u.N
    files: cheap enough to poll every few ms (for kill points)."""
    base = os.path.join(tgt.dir, 'home', user, 'sdbox')
    n = 0
    for root, dirs, files in os.walk(base):
        n += sum(1 for f in files if f.startswith('u.'))
    return n


def is_asan(binary):
    try:
        with open(binary, 'rb') as f:
            return b'__asan_init' in f.read()
    except OSError:
        return False


def require_imapmig():
    """Exit with a clear message when the binary is missing.  CTest treats
    a missing binary as failure: imapmig must exist for these tests."""
    b = imapmig_binary()
    if not os.access(b, os.X_OK):
        print('imapmig binary not found at %s (set $IMAPMIG)' % b,
              file=sys.stderr)
        sys.exit(1)
    return b


def main_wrapper(fn):
    """Run fn() -> exit status; servers are stopped whatever happens."""
    try:
        rc = fn()
    except SystemExit:
        _cleanup_all()
        raise
    except BaseException:
        import traceback
        traceback.print_exc()
        rc = 1
    _cleanup_all()
    sys.exit(rc)


# ---------------------------------------------------------------- selftest

def selftest():
    ck = Check('harness selftest')
    t0 = time.time()
    with Env() as env:
        src, tgt = env.pair()
        plain = env.server('plain')
        ck.ok(time.time() - t0 < 10, 'pair + plain started in %.1fs' %
              (time.time() - t0))
        # TLS with the CA, by DNS name, on both servers
        for s in (src, tgt):
            c = s.client('alice')
            ck.ok(c.sock.getpeercert()['subjectAltName'] ==
                  (('DNS', s.host),), '%s imaps cert verified for %s' % (
                      s.kind, s.host))
            c.logout()
        # wrong host name is refused by Python's ssl
        try:
            Client('localhost', src.imaps_port, 'imaps', env.ca.context())
            ck.ok(False, 'cert for imap.source.test refused for localhost')
        except ssl.SSLCertVerificationError as e:
            ck.ok('localhost' in str(e), 'hostname mismatch detected: %s' % e)
        # STARTTLS port on source and target
        for s in (src, tgt):
            c = Client(s.host, s.imap_port, 'plain', env.ca.context())
            caps = c.capabilities
            ck.ok('STARTTLS' in caps and 'LOGINDISABLED' in caps,
                  '%s plain port offers STARTTLS, LOGINDISABLED' % s.kind)
            c.starttls(ssl_context=env.ca.context())
            c.login('bob', s.users['bob'])
            c.logout()
            ck.ok(True, '%s STARTTLS login' % s.kind)
        # plain instance: no STARTTLS
        c = Client(plain.host, plain.imap_port, 'plain', env.ca.context())
        ck.ok('STARTTLS' not in c.capabilities,
              'plain instance offers no STARTTLS')
        c.login('alice', plain.users['alice'])
        c.logout()
        # master user, both forms
        for s in (src, tgt):
            c = s.client('carol', master=True)
            typ, _ = c.select('INBOX')
            ck.eq(typ, 'OK', '%s master login carol*admin' % s.kind)
            c.logout()
            c = Client(s.host, s.imaps_port, 'imaps', env.ca.context())
            tok = b'carol\0admin\0' + MASTER_PASSWORD.encode()
            typ, _ = c.authenticate('PLAIN', lambda _: tok)
            ck.eq(typ, 'OK', '%s SASL PLAIN authzid carol, authcid admin' %
                  s.kind)
            c.logout()
        # wrong password
        try:
            src.client('alice', password='nope')
            ck.ok(False, 'wrong password refused')
        except imaplib.IMAP4.error as e:
            ck.ok('AUTHENTICATIONFAILED' in str(e) or
                  'Authentication failed' in str(e),
                  'wrong password refused: %s' % e)
        # special-use folders
        ck.eq(special_use(src, 'alice'), SOURCE_SPECIAL,
              'source special-use')
        ck.eq(special_use(tgt, 'alice'), TARGET_SPECIAL,
              'target special-use')
        # folders with UTF-8, 4-deep, '/' in a name (index layout user)
        names = ['Entwürfe', '日本語', '日本語.報告', 'a.b.c.d', 'Empty',
                 'amp & co']
        for n in names:
            src.create_folder('alice', n, subscribe=(n != 'Empty'))
        src.create_folder('erin', 'a/b')
        fl = list_folders(src, 'alice')
        ck.ok(all(n in fl for n in names + ['a', 'a.b', 'a.b.c']),
              'folders listed: %s' % fl)
        ck.ok('Empty' not in list_folders(src, 'alice', True) and
              '日本語.報告' in list_folders(src, 'alice', True),
              'subscriptions listed')
        ck.ok('a/b' in list_folders(src, 'erin'), "'a/b' on '.' source")
        tgt.create_folder('alice', 'x/y/z')
        ck.ok('x/y/z' in list_folders(tgt, 'alice'), 'target nesting /')
        # mUTF-7 encoder against the server: create over IMAP, list w/ doveadm
        c = src.client('alice')
        typ, _ = c.create(imap_quote(mutf7_encode('Ünïcödé 日本')))
        ck.eq(typ, 'OK', 'IMAP CREATE with our mUTF-7')
        c.logout()
        ck.ok('Ünïcödé 日本' in list_folders(src, 'alice'),
              'mUTF-7 encoder agrees with Dovecot')
        ck.eq(mutf7_encode('日本語'), '&ZeVnLIqe-', 'mUTF-7 known value')
        ck.eq(mutf7_decode('&ZeVnLIqe-.&WDFUSg-'), '日本語.報告',
              'mUTF-7 decode')
        # raw append round trip: exact bytes (CRLF stored as LF by Dovecot)
        raw = make_message('Grüße', 'binary \xe9 line\r\n.\r\nend\r\n')
        raw = raw.replace(b'\xc3\xa9', b'\xe9\xff\x0c')  # 8-bit, FF byte
        when = 1000000000
        src.append('alice', '日本語.報告', raw, ('\\Seen', '\\Flagged',
                                              '$Label1', 'custom_kw'), when)
        src.append('alice', '日本語.報告', raw, (), when + 60)
        src.save('alice', 'INBOX', b'Subject: bare\n\nbare LF\n')
        msgs = fetch_messages(src, 'alice')
        by = {(m['mailbox'], m['uid']): m for m in msgs}
        m1 = by[('日本語.報告', '1')]
        stored = raw.replace(b'\r\n', b'\n')
        ck.ok(m1['text'] == stored, 'oracle text == appended bytes '
              '(CRLF stored as LF)')
        ck.eq(msg_key(m1)[1], frozenset(['\\Seen', '\\Flagged', '$Label1',
                                         'custom_kw']), 'oracle flags')
        ck.eq(int(m1['date.received.unixtime']), when, 'oracle INTERNALDATE')
        ck.ok(by[('INBOX', '1')]['text'] == b'Subject: bare\n\nbare LF\n',
              'doveadm save bare LF stored as is')
        # the same message via IMAP comes back CRLF: what imapmig will see
        c = src.client('alice')
        c.select('INBOX', readonly=True)
        typ, dat = c.uid('FETCH', '1', '(BODY.PEEK[])')
        c.logout()
        ck.ok(dat[0][1] == b'Subject: bare\r\n\r\nbare LF\r\n',
              'IMAP FETCH of the bare-LF message gives CRLF')
        o = fetch_all(src, 'alice')
        ck.eq(len(o['日本語.報告']), 2, 'fetch_all two messages')
        ck.eq(o['Empty'], [], 'fetch_all lists empty folder')
        # flags via doveadm
        src.flags('alice', 'add', ['\\Answered', 'NonJunk'], '日本語.報告', '2')
        o2 = fetch_all(src, 'alice')
        ck.ok(any(f == frozenset(['\\Answered', 'NonJunk'])
                  for _, f, _ in o2['日本語.報告']), 'doveadm flags add')
        # status, counts
        st = folder_status(src, 'alice')
        ck.eq(st['日本語.報告']['messages'], 2, 'mailbox status messages')
        ck.eq(count_messages(src, 'alice'), 3, 'count_messages')
        # oracle comparison helper and name mapping
        ck.eq(expected_target_name('Sent'), 'Sent Items', 'map Sent')
        ck.eq(expected_target_name('Trash'), 'Deleted Items', 'map Trash')
        ck.eq(expected_target_name('Junk'), 'Junk Email', 'map Junk')
        ck.eq(expected_target_name('a.b.c.d'), 'a/b/c/d', 'map . -> /')
        ck.eq(expected_target_name('a/b'), 'a_b', "map '/' in name -> _")
        ck.eq(expected_target_name('inbox'), 'INBOX', 'map INBOX')
        # copy by hand with imaplib: oracles then match
        cs, ct = src.client('alice'), tgt.client('alice')
        for f in o:
            tn = expected_target_name(f)
            if tn not in list_folders(tgt, 'alice'):
                ct.create(imap_quote(mutf7_encode(tn)))
            typ, _ = cs.select(imap_quote(mutf7_encode(f)), readonly=True)
            if typ != 'OK':         # \Noselect parent of a Maildir++ name
                continue
            typ, dat = cs.uid('FETCH', '1:*', '(FLAGS INTERNALDATE '
                              'BODY.PEEK[])')
            for item in dat:
                if not isinstance(item, tuple):
                    continue
                meta = item[0].decode()
                fl = re.search(r'FLAGS \(([^)]*)\)', meta).group(1).split()
                fl = [x for x in fl if x != '\\Recent']
                idate = re.search(r'INTERNALDATE "([^"]*)"', meta).group(1)
                append_raw(ct, tn, item[1], fl,
                           imaplib.Internaldate2tuple(
                               ('INTERNALDATE "%s"' % idate).encode()))
        cs.logout()
        ct.logout()
        diff = diff_oracles(mapped(fetch_all(src, 'alice')),
                            fetch_all(tgt, 'alice'))
        ck.eq(diff, [], 'hand copy: oracles equal')
        tgt.append('alice', 'INBOX', b'Subject: extra\r\n\r\nx\r\n')
        diff = diff_oracles(mapped(fetch_all(src, 'alice')),
                            fetch_all(tgt, 'alice'))
        ck.ok(len(diff) == 1 and 'extra' in diff[0],
              'oracle notices an extra message: %s' % diff)
        # corpus
        sample = corpus_sample(5)
        ck.ok(len(sample) == 5 and all(w for _, _, w in sample),
              'corpus loads with From-line dates')
        pids = [s.proc.pid for s in env.servers]
    # everything stopped
    time.sleep(0.2)
    alive = [p for p in pids if os.path.exists('/proc/%d' % p) and
             'Z' not in open('/proc/%d/stat' % p).read().split()[2]]
    ck.eq(alive, [], 'servers stopped on close')
    ck.ok(time.time() - t0 < 60, 'selftest took %.1fs' % (time.time() - t0))
    return ck.finish()


# -------------------------------------------------------------------- demo

DEMO_FOLDERS = ['Sent', 'Drafts', 'Trash', 'Junk', '日本語', '日本語.報告',
                'Projekte', 'Projekte.2024', 'Entwürfe']


def demo_up(d):
    env = Env(keep=True, dir=d, persist=True)
    src, tgt = env.pair()
    # the servers must outlive this script: forget them without stopping
    _ENVS.remove(env)
    for f in DEMO_FOLDERS:
        if f not in SOURCE_SPECIAL.values():
            src.create_folder('alice', f, subscribe=True)
    n = populate_corpus(src, 'alice', ['INBOX', 'Sent', 'Junk', '日本語',
                                       '日本語.報告', 'Projekte.2024',
                                       'Entwürfe'], 300)
    info = {'dir': env.dir, 'ca': env.ca.cert,
            'source': {'url': src.url('alice'), 'resolve': src.resolve_arg(),
                       'conf': src.conf, 'pid': src.proc.pid,
                       'password': src.users['alice']},
            'target': {'url': tgt.url('alice'), 'resolve': tgt.resolve_arg(),
                       'conf': tgt.conf, 'pid': tgt.proc.pid,
                       'password': tgt.users['alice']},
            'messages': n}
    with open(os.path.join(env.dir, 'demo.json'), 'w') as f:
        json.dump(info, f, indent=1, ensure_ascii=False)
    for side in ('source', 'target'):
        pw = os.path.join(env.dir, side + '.password')
        with open(pw, 'w') as f:
            f.write(info[side]['password'])
        os.chmod(pw, 0o600)
    print('CA=%s' % env.ca.cert)
    print('SOURCE_URL=%s' % info['source']['url'])
    print('SOURCE_RESOLVE=%s' % info['source']['resolve'])
    print('SOURCE_CONF=%s' % src.conf)
    print('SOURCE_PASSWORD_FILE=%s' % os.path.join(env.dir,
                                                    'source.password'))
    print('TARGET_URL=%s' % info['target']['url'])
    print('TARGET_RESOLVE=%s' % info['target']['resolve'])
    print('TARGET_CONF=%s' % tgt.conf)
    print('TARGET_PASSWORD_FILE=%s' % os.path.join(env.dir,
                                                    'target.password'))
    print('MESSAGES=%d' % n)
    return 0


def demo_down(d):
    try:
        with open(os.path.join(d, 'demo.json')) as f:
            info = json.load(f)
    except OSError:
        print('no demo in %s' % d, file=sys.stderr)
        return 1
    for side in ('source', 'target'):
        pid = info[side]['pid']
        try:
            os.killpg(pid, signal.SIGTERM)   # own session (start_new_session)
        except ProcessLookupError:
            continue
        for _ in range(100):
            if not os.path.exists('/proc/%d' % pid):
                break
            time.sleep(0.05)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    print('demo servers stopped')
    return 0


if __name__ == '__main__':
    if len(sys.argv) >= 2 and sys.argv[1] == 'selftest':
        main_wrapper(selftest)
    elif len(sys.argv) == 3 and sys.argv[1] == 'demo-up':
        sys.exit(demo_up(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == 'demo-down':
        sys.exit(demo_down(sys.argv[2]))
    else:
        print('usage: harness.py selftest | demo-up DIR | demo-down DIR',
              file=sys.stderr)
        sys.exit(2)
