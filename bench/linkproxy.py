#!/usr/bin/env python3
"""Emulated slow / long-distance link: a TCP proxy that adds a round-trip
delay and caps the bandwidth, for the benchmark.

    linkproxy.py [--rtt 40ms] [--rate 20mbit] [--listen 127.0.0.2]
                 NAME=HOST:PORT ...

For every NAME it listens on a free port of the --listen address and
forwards to HOST:PORT; once all listen, it prints one JSON line
{"NAME": port, ...} on stdout.  It exits when its stdin reaches EOF (the
benchmark that started it has gone, whatever the way) or on SIGINT/SIGTERM.

Why a proxy and not the kernel's netem: the bench VM's kernel has no
sch_netem (nor prio); a proxy needs nothing from the machine and touches
no other traffic.

The model, per NAME (one link between the migrating tool and one server),
independently per direction and shared by all connections through it:
a chunk read at time t leaves the link's transmit queue at
    tx = max(t, previous tx) + len / rate
and is delivered at tx + rtt/2.  Each connection direction holds at most
`window` bytes (2 x rate x rtt, at least 128 KiB) in the proxy (read but not yet delivered); beyond that the
proxy stops reading and the sender's own TCP buffers fill, as on a real
path whose window is a few bandwidth-delay products.  What it does not
model: packet loss, TCP slow start and its window growth (the proxy's
window is open from the first byte), reordering.  So it is a clean,
somewhat optimistic long link.
"""

import argparse
import asyncio
import json
import re
import signal
import socket
import sys

CHUNK_RATE = 16384      # read size when rate-limited: ~6.5 ms at 20 Mbit/s
CHUNK_FAST = 262144     # read size without a rate cap


def parse_time(s):
    m = re.fullmatch(r'([\d.]+)\s*(us|ms|s)?', s.strip())
    if not m:
        raise argparse.ArgumentTypeError('bad time %r (e.g. 40ms)' % s)
    return float(m.group(1)) * {'us': 1e-6, 'ms': 1e-3, 's': 1.0,
                                None: 1e-3}[m.group(2)]


def parse_rate(s):
    """-> bytes per second (tc's units: kbit, mbit, gbit, bit, or bps etc
    for bytes per second)."""
    m = re.fullmatch(r'([\d.]+)\s*([kmg]?)(bit|bps)?', s.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError('bad rate %r (e.g. 20mbit)' % s)
    v = float(m.group(1)) * {'': 1, 'k': 1e3, 'm': 1e6, 'g': 1e9}[m.group(2)]
    return v if m.group(3) == 'bps' else v / 8


class Direction:
    """One direction of one link: the shared transmit queue's clock."""

    def __init__(self, rate, delay):
        self.rate = rate            # bytes/s, 0 = no cap
        self.delay = delay          # one-way seconds
        self.next_free = 0.0

    def deliver_at(self, now, n):
        tx = now
        if self.rate:
            tx = max(now, self.next_free) + n / self.rate
            self.next_free = tx
        return tx + self.delay


async def pump(reader, writer, d, window):
    """Copy reader -> writer through direction d (half-closing writer at
    the reader's EOF); raises on a connection error."""
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()
    held = 0
    room = asyncio.Event()
    room.set()
    chunk = CHUNK_RATE if d.rate else CHUNK_FAST

    async def send():
        nonlocal held
        while True:
            when, data = await q.get()
            dt = when - loop.time()
            if dt > 0:
                await asyncio.sleep(dt)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
            held -= len(data)
            if held < window:
                room.set()

    sender = asyncio.ensure_future(send())
    try:
        while True:
            await room.wait()
            data = await reader.read(chunk)
            now = loop.time()
            q.put_nowait((d.deliver_at(now, len(data)) if data else
                          max(now, d.next_free) + d.delay, data))
            if not data:
                break
            held += len(data)
            if held >= window:
                room.clear()
        await sender
    finally:
        sender.cancel()


async def handle(link, host, port, creader, cwriter):
    up, down, window = link
    try:
        sreader, swriter = await asyncio.open_connection(host, port)
    except OSError:
        cwriter.close()
        return
    # the first bytes (the greeting, the TLS handshake) already pay the
    # delay: the connection itself took a round trip on a real path
    pumps = []
    try:
        await asyncio.sleep(2 * up.delay)
        pumps = [asyncio.ensure_future(pump(creader, swriter, up, window)),
                 asyncio.ensure_future(pump(sreader, cwriter, down, window))]
        # both ends half-closed normally, or one failed: then the other
        # side is closed too (a reset is passed on as a close)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        pass
    finally:
        for t in pumps:
            t.cancel()
        for w in (swriter, cwriter):
            w.close()
        for t in pumps:
            if t.done() and not t.cancelled():
                t.exception()   # retrieved: a reset is not an error here


async def main_async(a):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    # the window: twice the bandwidth-delay product, at least 128 KiB
    # (4 MiB without a rate cap)
    bdp = a.rate * a.rtt if a.rate else 1 << 21
    window = max(131072, int(2 * bdp))
    ports, servers = {}, []
    for spec in a.links:
        m = re.fullmatch(r'([\w.-]+)=([\w.:-]+):(\d+)', spec)
        if not m:
            raise SystemExit('bad link %r (NAME=HOST:PORT)' % spec)
        name, host, port = m.group(1), m.group(2), int(m.group(3))
        link = (Direction(a.rate, a.rtt / 2), Direction(a.rate, a.rtt / 2),
                window)
        srv = await asyncio.start_server(
            lambda r, w, link=link, host=host, port=port:
            handle(link, host, port, r, w), a.listen, 0,
            family=socket.AF_INET, reuse_address=True)
        servers.append(srv)
        ports[name] = srv.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)

    # stdin EOF: whoever started us is gone (or asks us to stop)
    await loop.connect_read_pipe(lambda: StdinWatch(stop), sys.stdin)
    await stop.wait()
    for srv in servers:
        srv.close()
    return 0


class StdinWatch(asyncio.Protocol):
    """Sets stop when stdin closes; whatever is written to it is ignored."""

    def __init__(self, stop):
        self.stop = stop

    def connection_lost(self, exc):
        self.stop.set()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--rtt', type=parse_time, default=0.0)
    ap.add_argument('--rate', type=parse_rate, default=0.0)
    ap.add_argument('--listen', default='127.0.0.2')
    ap.add_argument('links', nargs='+', metavar='NAME=HOST:PORT')
    a = ap.parse_args()
    try:
        asyncio.run(main_async(a))
    except KeyboardInterrupt:
        pass


if __name__ == '__main__':
    main()
