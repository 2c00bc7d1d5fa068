#!/usr/bin/env python3
"""A fault-injecting TCP proxy for the integration tests (stdlib only).

It sits between imapmig and one private Dovecot port and works on bytes,
so TLS passes through untouched (the certificate still names the server):

  px = FaultProxy(src.imaps_port).start()     # listens on 127.0.0.2:px.port
  px.set_plan([Fault('drop', 's2c', after=40000)])  # 1st connection only
  url = px.url(src, 'alice')                  # imaps://alice@HOST:px.port
  ... imapmig sync --resolve imap.source.test:127.0.0.2 url ...
  px.conns                                    # what happened, per connection
  px.stop()

A plan is a list of faults, one per connection in the order connections
arrive; connections after the plan's end pass through cleanly, so a retry
or rerun can finish.  Fault kinds:

  clean                 pass everything through
  drop  DIR after=N     forward N bytes in direction DIR ('c2s' client to
                        server, 's2c' server to client), then close both
                        sides (rst=True: with a TCP RST instead of a FIN)
  stall DIR after=N seconds=S
                        forward N bytes in DIR, then forward nothing either
                        way for S seconds (longer than the client's timeout)
                        and close; a side that closes meanwhile ends it
  truncate DIR after=N  cut a large transfer in the middle: once DIR has
                        carried a burst of N bytes of consecutive large TLS
                        records (a big FETCH literal s2c, or APPEND c2s),
                        forward up to there and close.  The proxy cannot
                        read inside TLS, so "a long run of full-size
                        records" stands for "inside a large literal"; on a
                        plaintext stream it cuts N bytes into a literal
                        announced as {n} with n >= 64 KiB instead.

FaultProxy(port, throttle=B) also limits each direction of each connection
to about B bytes/second.

random_fault(rnd, ...) draws faults from a seeded random.Random (random.Random), so a failing
case can be replayed by its seed.
"""

import random
import re
import socket
import struct
import threading
import time

LISTEN_ADDR = '127.0.0.2'
KINDS = ('drop', 'stall', 'truncate', 'clean')
DIRS = ('c2s', 's2c')

# a TLS application-data record at least this long counts as "full": a
# large literal goes out as a run of them
FULL_RECORD = 4096
BIG_LITERAL = 65536


class Fault:
    def __init__(self, kind='clean', direction='s2c', after=0, seconds=0.0,
                 rst=False):
        if kind not in KINDS or direction not in DIRS:
            raise ValueError((kind, direction))
        self.kind = kind
        self.direction = direction
        self.after = int(after)
        self.seconds = float(seconds)
        self.rst = rst

    def __repr__(self):
        if self.kind == 'clean':
            return 'clean'
        s = '%s %s after=%d' % (self.kind, self.direction, self.after)
        if self.kind == 'stall':
            s += ' for %.1fs' % self.seconds
        if self.rst:
            s += ' rst'
        return s


class _Scanner:
    """Per direction: where, in a chunk, a truncate fault fires.  Follows
    TLS record framing (5-byte headers) when the stream is TLS, literal
    announcements otherwise."""

    def __init__(self):
        self.mode = None        # 'tls' or 'plain', decided by the 1st byte
        self.hdr = b''
        self.body_left = 0
        self.full = False       # the current record is a full app record
        self.burst = 0          # bytes of consecutive full records
        self.lit_left = 0       # plaintext: bytes left of a big literal
        self.lit_done = 0
        self.tail = b''

    def cut_at(self, data, n):
        """Offset in data at which the burst (or literal) reaches n bytes,
        or None.  Must be called with every chunk in order."""
        if self.mode is None and data:
            self.mode = 'tls' if data[0] in (0x16, 0x17, 0x15) else 'plain'
        if self.mode == 'tls':
            return self._tls(data, n)
        return self._plain(data, n)

    def _tls(self, data, n):
        i = 0
        while i < len(data):
            if self.body_left == 0:
                need = 5 - len(self.hdr)
                self.hdr += data[i:i + need]
                i += min(need, len(data) - i)
                if len(self.hdr) == 5:
                    typ = self.hdr[0]
                    (ln,) = struct.unpack('>H', self.hdr[3:5])
                    self.hdr = b''
                    self.body_left = ln
                    self.full = typ == 0x17 and ln >= FULL_RECORD
                    if not self.full:
                        self.burst = 0
                continue
            take = min(self.body_left, len(data) - i)
            if self.full and self.burst + take >= n:
                # fire strictly inside the record: never on a boundary
                off = max(1, n - self.burst)
                off = min(off, self.body_left - 1) if self.body_left > 1 \
                    else 0
                return i + off
            if self.full:
                self.burst += take
            self.body_left -= take
            i += take
        return None

    def _plain(self, data, n):
        i = 0
        while i < len(data):
            if self.lit_left:
                take = min(self.lit_left, len(data) - i)
                if self.lit_done + take >= n:
                    return i + max(1, n - self.lit_done)
                self.lit_done += take
                self.lit_left -= take
                i += take
                continue
            buf = self.tail + data[i:]
            m = re.search(rb'\{(\d{1,12})\+?\}\r\n', buf)
            if not m:
                self.tail = buf[-24:]
                return None
            consumed = m.end() - len(self.tail)
            self.tail = b''
            i += consumed
            size = int(m.group(1))
            if size >= BIG_LITERAL:
                self.lit_left, self.lit_done = size, 0
                n = min(n, size // 2)
            else:
                i += 0          # small literal: skip over it as text
        return None


class Conn:
    """One proxied connection and what happened to it."""

    def __init__(self, index, fault, csock):
        self.index = index
        self.fault = fault
        self.csock = csock
        self.ssock = None
        self.bytes = {'c2s': 0, 's2c': 0}
        self.fired = False      # the fault happened
        self.fired_at = None    # bytes in its direction when it did
        self.outcome = 'open'   # open, eof, dropped, stalled, truncated,
        #                         upstream-refused
        self.lock = threading.Lock()
        self.stalled = False
        self.done = False
        self.scanner = {d: _Scanner() for d in DIRS}
        self.t0 = time.time()
        self.t1 = None

    def __repr__(self):
        return '#%d %r: %s (c2s %d, s2c %d bytes, %.1fs)' % (
            self.index, self.fault, self.outcome, self.bytes['c2s'],
            self.bytes['s2c'], (self.t1 or time.time()) - self.t0)

    def kill(self, outcome=None, rst=False):
        with self.lock:
            if self.done:
                return
            self.done = True
            if outcome and self.outcome == 'open':
                self.outcome = outcome
            elif self.outcome == 'open':
                self.outcome = 'eof'
            self.t1 = time.time()
        for s in (self.csock, self.ssock):
            if s is None:
                continue
            try:
                if rst:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack('ii', 1, 0))
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def _decide(self, d, data):
        """-> (bytes to forward, action None/'drop'/'stall'/'truncate')."""
        f = self.fault
        if self.fired or f.kind == 'clean' or f.direction != d:
            return data, None
        if f.kind == 'truncate':
            off = self.scanner[d].cut_at(data, f.after)
            if off is None:
                return data, None
            return data[:off], 'truncate'
        left = f.after - self.bytes[d]
        if left > len(data):
            return data, None
        left = max(left, 0)
        return data[:left], f.kind


class FaultProxy:
    """Listens on 127.0.0.2:<free port>, forwards to upstream_port on
    127.0.0.2 (a Dovecot listener).  Thread per direction per connection."""

    def __init__(self, upstream_port, upstream_addr=LISTEN_ADDR,
                 listen_addr=LISTEN_ADDR, plan=None, log=None,
                 throttle=None):
        self.upstream = (upstream_addr, upstream_port)
        # bytes/second per connection and direction (None: full speed),
        # to stretch a run so an outside event surely lands in the middle
        self.throttle = throttle
        self.listen_addr = listen_addr
        self.plan = list(plan or [])
        self.conns = []
        self.log = log
        self._lock = threading.Lock()
        self._lsock = None
        self._stopping = False
        self._thread = None
        self.port = None

    # -- control

    def start(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.listen_addr, 0))
        s.listen(64)
        s.settimeout(0.2)
        self._lsock = s
        self.port = s.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stopping = True
        if self._thread:
            self._thread.join(2)
        if self._lsock:
            self._lsock.close()
        for c in list(self.conns):
            c.kill()

    def set_plan(self, plan):
        """New faults for the next connections (counted from now on);
        forgets the connections seen so far."""
        with self._lock:
            for c in self.conns:
                c.kill()
            self.plan = list(plan)
            self.conns = []

    def url(self, server, user):
        """imaps:// URL for server's user through this proxy (the host name
        is the server's TLS name; pass --resolve server.resolve_arg())."""
        from urllib.parse import quote
        return 'imaps://%s@%s:%d' % (quote(user, safe=''), server.host,
                                     self.port)

    def fired(self):
        return [c for c in self.conns if c.fired]

    def wait_idle(self, timeout=10):
        """Wait until every connection is closed (stall timers included)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all(c.done for c in self.conns):
                return True
            time.sleep(0.05)
        return False

    # -- work

    def _accept_loop(self):
        while not self._stopping:
            try:
                cs, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self._lock:
                i = len(self.conns)
                fault = self.plan[i] if i < len(self.plan) else Fault()
                c = Conn(i, fault, cs)
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        try:
            ss = socket.socket()
            ss.bind(('127.0.0.1', 0))
            ss.settimeout(5)
            ss.connect(self.upstream)
            ss.settimeout(None)
        except OSError:
            c.kill('upstream-refused')
            return
        c.ssock = ss
        c.csock.settimeout(None)
        t = threading.Thread(target=self._pump, args=(c, ss, c.csock, 's2c'),
                             daemon=True)
        t.start()
        self._pump(c, c.csock, ss, 'c2s')
        t.join()

    def _pump(self, c, src, dst, d):
        while True:
            try:
                data = src.recv(16384 if self.throttle else 65536)
            except OSError:
                break
            if not data:
                break
            with c.lock:
                if c.done:
                    break
                if c.stalled:
                    continue        # swallowed: the link is "dead"
                fwd, action = c._decide(d, data)
                if action:
                    c.fired = True
                    c.fired_at = c.bytes[d] + len(fwd)
            if fwd:
                try:
                    dst.sendall(fwd)
                except OSError:
                    break
                with c.lock:
                    c.bytes[d] += len(fwd)
                if self.throttle:
                    time.sleep(len(fwd) / float(self.throttle))
            if action in ('drop', 'truncate'):
                c.kill('dropped' if action == 'drop' else 'truncated',
                       rst=c.fault.rst)
                return
            if action == 'stall':
                with c.lock:
                    c.stalled = True
                    c.outcome = 'stalled'
                tm = threading.Timer(c.fault.seconds, c.kill)
                tm.daemon = True
                tm.start()
        c.kill()


# ------------------------------------------------------------------ plans

def random_fault(rnd, kind, direction, totals, stall_seconds=6.0):
    """One fault of kind in direction; totals = {'c2s': n, 's2c': n}, the
    bytes a clean run moves that way on this side (N is drawn inside)."""
    total = max(totals.get(direction, 0), 400)
    if kind == 'clean':
        return Fault()
    if kind == 'truncate':
        # N bytes into a large transfer: 20 KiB .. 900 KiB
        return Fault('truncate', direction,
                     after=rnd.randint(20 * 1024, 900 * 1024))
    # mostly in the copy, sometimes very early (TLS handshake, login)
    if rnd.random() < 0.15:
        after = rnd.randint(1, min(3000, total - 1))
    else:
        after = rnd.randint(min(3000, total // 2), int(total * 0.97))
    if kind == 'drop':
        return Fault('drop', direction, after=after, rst=rnd.random() < 0.3)
    return Fault('stall', direction, after=after, seconds=stall_seconds)


if __name__ == '__main__':
    # tiny self-check against an echo server
    import sys
    srv = socket.socket()
    srv.bind((LISTEN_ADDR, 0))
    srv.listen(5)

    def echo():
        while True:
            try:
                s, _ = srv.accept()
            except OSError:
                return
            def one(s=s):
                while True:
                    d = s.recv(4096)
                    if not d:
                        break
                    s.sendall(d)
                s.close()
            threading.Thread(target=one, daemon=True).start()
    threading.Thread(target=echo, daemon=True).start()
    px = FaultProxy(srv.getsockname()[1]).start()
    px.set_plan([Fault('drop', 'c2s', after=5), Fault()])
    ok = True
    # the dropped one may or may not see its 5 bytes echoed before the cut
    for want in ((b'', b'hello'), (b'hello world',)):
        s = socket.create_connection((LISTEN_ADDR, px.port))
        s.sendall(b'hello world')
        got = b''
        s.settimeout(2)
        try:
            while True:
                d = s.recv(100)
                if not d:
                    break
                got += d
                if len(got) >= 11:
                    break
        except OSError:
            pass
        s.close()
        ok &= got in want
        print(got, want, px.conns)
    px.stop()
    sys.exit(0 if ok else 1)
