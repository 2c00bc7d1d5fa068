#!/usr/bin/env python3
"""A tiny SMTP server for tests: every message it accepts becomes a file.

    python3 tests/integration/smtp_sink.py --port P --dir D
        [--tls-cert C --tls-key K] [--smtps] [--auth user:password]
        [--reject-rcpt ADDR]... [--host 127.0.0.1] [--hostname NAME]

Listens on HOST:P (default 127.0.0.1) until killed (SIGTERM/SIGINT stop it
cleanly).  Prints "smtp_sink ready on HOST:P" on stdout once it accepts
connections.

  --tls-cert/--tls-key  offer STARTTLS and require it before MAIL/AUTH
  --smtps               implicit TLS on connect instead of STARTTLS
  --auth user:password  require AUTH (PLAIN or LOGIN, only over TLS when
                        TLS is configured); other credentials get 535
  --reject-rcpt ADDR    answer RCPT TO:<ADDR> with 550 (repeatable)

Each message is written to D/NNNN.eml (mode 0600, written to a temporary
name and renamed, so a reader never sees half a file) as received, with
trace headers put in front:
  X-Sink-Mail-From: <sender>      X-Sink-Rcpt-To: <rcpt>  (one per rcpt)
  X-Sink-TLS: yes|no              X-Sink-Auth: <login>|none

Uses aiosmtpd (Debian's python3-aiosmtpd).  As a module:

  from smtp_sink import Sink, spawn, read_messages
  with Sink(dir, port, tls_cert=c, tls_key=k, auth=('u', 'pw')):  # in-process
      ...
  p = spawn(dir, port, ...)      # a separate process (any interpreter that
  ...; p.terminate(); p.wait()   # has aiosmtpd), ready when it returns
  for path, msg in read_messages(dir): ...    # email.message.EmailMessage
"""

import argparse
import email
import email.policy
import logging
import os
import signal
import ssl
import subprocess
import sys
import threading
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))

# Debian's python3-aiosmtpd lives here; a different python3 first in PATH
# (pyenv & co.) does not see it.
DEBIAN_DIST = '/usr/lib/python3/dist-packages'


def _import_aiosmtpd():
    # aiosmtpd logs a traceback for every failed TLS handshake (which the
    # tests cause on purpose) and warns about its own deprecations
    logging.getLogger('mail.log').setLevel(logging.CRITICAL)
    warnings.filterwarnings('ignore', message='.*login_data.*')
    # implicit TLS (--smtps) looks like "AUTH without TLS" to it
    warnings.filterwarnings('ignore', message='Requiring AUTH while not')
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        if DEBIAN_DIST not in sys.path and os.path.isdir(DEBIAN_DIST):
            sys.path.append(DEBIAN_DIST)
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
    return Controller, AuthResult, LoginPassword


def python_with_aiosmtpd():
    """An interpreter that can import aiosmtpd: this one, else Debian's."""
    for py in (sys.executable, '/usr/bin/python3'):
        if py and os.access(py, os.X_OK) and subprocess.run(
                [py, '-c', 'import aiosmtpd'], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode == 0:
            return py
    return sys.executable


class _Handler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        if address.lower() in self.sink.reject_rcpt:
            return '550 5.1.1 <%s>: Recipient address rejected: no such user' \
                % address
        envelope.rcpt_tos.append(address)
        return '250 OK'

    async def handle_DATA(self, server, session, envelope):
        tls = bool(session.ssl) or self.sink.smtps
        login = 'none'
        if getattr(session, 'authenticated', False):
            ad = getattr(session, 'auth_data', None)
            login = getattr(ad, 'login', b'?')
            if isinstance(login, bytes):
                login = login.decode('utf-8', 'replace')
        trace = ['X-Sink-Mail-From: <%s>' % envelope.mail_from]
        trace += ['X-Sink-Rcpt-To: <%s>' % r for r in envelope.rcpt_tos]
        trace += ['X-Sink-TLS: %s' % ('yes' if tls else 'no'),
                  'X-Sink-Auth: %s' % login]
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode('utf-8', 'surrogateescape')
        self.sink.store(('\r\n'.join(trace) + '\r\n').encode() + content)
        return '250 2.0.0 Message accepted for delivery'


class Sink:
    """The server, run in this process (a thread of aiosmtpd's)."""

    def __init__(self, dir, port, host='127.0.0.1', tls_cert=None,
                 tls_key=None, smtps=False, auth=None, reject_rcpt=(),
                 hostname='smtp.sink.test'):
        if bool(tls_cert) != bool(tls_key):
            raise ValueError('--tls-cert and --tls-key go together')
        if smtps and not tls_cert:
            raise ValueError('--smtps needs --tls-cert and --tls-key')
        self.dir = dir
        self.port = port
        self.host = host
        self.smtps = smtps
        self.auth = auth
        self.reject_rcpt = {a.lower() for a in reject_rcpt}
        self._lock = threading.Lock()
        self._n = 0
        os.makedirs(dir, exist_ok=True)
        Controller, self._AuthResult, self._LoginPassword = _import_aiosmtpd()
        ctx = None
        if tls_cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls_cert, tls_key)
        kw = dict(data_size_limit=64 << 20,
                  enable_SMTPUTF8=True)
        if ctx and not smtps:
            kw.update(tls_context=ctx, require_starttls=True)
        if auth:
            # implicit TLS is TLS too, but aiosmtpd only counts STARTTLS
            kw.update(authenticator=self._authenticate, auth_required=True,
                      auth_require_tls=bool(ctx) and not smtps)
        else:
            kw.update(auth_require_tls=False)
        self.controller = Controller(
            _Handler(self), hostname=host, port=port,
            ssl_context=ctx if smtps else None, server_hostname=hostname,
            **kw)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = False
        if isinstance(auth_data, self._LoginPassword):
            login = auth_data.login.decode('utf-8', 'replace')
            pw = auth_data.password.decode('utf-8', 'replace')
            ok = (login, pw) == tuple(self.auth)
        return self._AuthResult(success=ok, handled=False, auth_data=auth_data)

    def store(self, data):
        with self._lock:
            while True:
                self._n += 1
                path = os.path.join(self.dir, '%04d.eml' % self._n)
                if not os.path.exists(path):
                    break
        tmp = path + '.tmp'
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.rename(tmp, path)
        return path

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


def spawn(dir, port, host='127.0.0.1', tls_cert=None, tls_key=None,
          smtps=False, auth=None, reject_rcpt=(), timeout=20):
    """Start the sink as its own process; returns the Popen once it is
    ready.  The caller terminates it (SIGTERM)."""
    cmd = [python_with_aiosmtpd(), os.path.join(HERE, 'smtp_sink.py'),
           '--port', str(port), '--dir', dir, '--host', host]
    if tls_cert:
        cmd += ['--tls-cert', tls_cert, '--tls-key', tls_key]
    if smtps:
        cmd += ['--smtps']
    if auth:
        cmd += ['--auth', '%s:%s' % tuple(auth)]
    for a in reject_rcpt:
        cmd += ['--reject-rcpt', a]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    box = []
    t = threading.Thread(target=lambda: box.append(p.stdout.readline()),
                         daemon=True)
    t.start()
    t.join(timeout)
    line = box[0] if box else b''
    if not line.startswith(b'smtp_sink ready'):
        p.kill()
        p.wait()
        raise RuntimeError('smtp_sink did not start (%r)' % line)
    return p


def read_messages(dir):
    """[(path, EmailMessage)] for every .eml in dir, oldest first."""
    out = []
    for name in sorted(os.listdir(dir)):
        if name.endswith('.eml'):
            path = os.path.join(dir, name)
            with open(path, 'rb') as f:
                out.append((path, email.message_from_binary_file(
                    f, policy=email.policy.default)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description='SMTP sink for tests')
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--dir', required=True)
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--hostname', default='smtp.sink.test')
    ap.add_argument('--tls-cert')
    ap.add_argument('--tls-key')
    ap.add_argument('--smtps', action='store_true')
    ap.add_argument('--auth', help='user:password')
    ap.add_argument('--reject-rcpt', action='append', default=[])
    ap.add_argument('--verbose', action='store_true',
                    help='keep aiosmtpd\'s own log messages')
    a = ap.parse_args(argv)
    auth = None
    if a.auth:
        if ':' not in a.auth:
            ap.error('--auth wants user:password')
        auth = tuple(a.auth.split(':', 1))
    try:
        sink = Sink(a.dir, a.port, host=a.host, tls_cert=a.tls_cert,
                    tls_key=a.tls_key, smtps=a.smtps, auth=auth,
                    reject_rcpt=a.reject_rcpt, hostname=a.hostname)
    except ValueError as e:
        ap.error(str(e))
    if a.verbose:
        logging.basicConfig(level=logging.INFO)
        logging.getLogger('mail.log').setLevel(logging.INFO)
    sink.start()
    done = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda *_: done.set())
    print('smtp_sink ready on %s:%d' % (a.host, a.port), flush=True)
    while not done.wait(1):
        pass
    sink.stop()
    return 0


if __name__ == '__main__':
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        py = '/usr/bin/python3'
        if os.path.realpath(sys.executable) != os.path.realpath(py) and \
                os.access(py, os.X_OK):
            os.execv(py, [py] + sys.argv)
    sys.exit(main())
