#!/usr/bin/env python3
"""A 40 MB message: copied exactly, with bounded memory; and
--max-message-size skips it (listed, not a failure).

Memory rule from the spec: a big message is never held in memory more than
once.  We measure imapmig's peak RSS (/usr/bin/time %M) and
require it below 40 MiB (one copy) + 40 MiB slack = 80 MiB.  Under
AddressSanitizer the runtime adds shadow memory and its own arenas, so the
slack is raised by another 60 MiB there and ASan's quarantine (which keeps
freed blocks resident; not imapmig's memory) is limited for that run."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MIB = 1024 * 1024
BIG = 40 * MIB


def big_message():
    import base64
    import random
    rnd = random.Random(42)
    # incompressible payload: base64 of pseudo-random bytes, 76-char lines
    payload = rnd.randbytes(1024 * 1024)
    chunk = base64.encodebytes(payload).replace(b'\n', b'\r\n')
    head = H.make_message('big attachment', body='').replace(
        b'Content-Type: text/plain; charset=utf-8',
        b'Content-Type: multipart/mixed; boundary="b1"')
    parts = [head, b'--b1\r\nContent-Type: text/plain\r\n\r\nsee file\r\n',
             b'--b1\r\nContent-Type: application/octet-stream\r\n'
             b'Content-Transfer-Encoding: base64\r\n'
             b'Content-Disposition: attachment; filename="big.bin"\r\n\r\n']
    size = sum(len(p) for p in parts)
    i = 0
    while size < BIG:
        # vary each chunk so no two MiB are alike
        c = chunk[:-20] + (b'%019d' % i)[:18] + b'\r\n'
        parts.append(c)
        size += len(c)
        i += 1
    parts.append(b'--b1--\r\n')
    return b''.join(parts)


def test(env, ck):
    src, tgt = env.pair()
    src.create_folder('alice', 'Anhänge', subscribe=True)
    raw = big_message()
    ck.ok(len(raw) >= BIG, 'big message is %d bytes' % len(raw))
    src.append('alice', 'Anhänge', raw, ('\\Seen',), 1500000000)
    for i in range(5):
        src.append('alice', 'Anhänge' if i % 2 else 'INBOX',
                   H.make_message('small %d' % i), (), 1500000000 + i)

    binary = H.require_imapmig()
    asan = H.is_asan(binary)
    limit = 80 * MIB + (60 * MIB if asan else 0)
    r = env.run_imapmig(src, 'alice', tgt, 'alice', env={
        'ASAN_OPTIONS': 'quarantine_size_mb=16:detect_leaks=1'})
    if not ck.eq(r.rc, 0, 'sync with a 40 MB message exits 0'):
        print(r.describe())
    H.check_oracle(ck, src, 'alice', tgt, 'alice', 'big message copied')
    ck.eq((r.summary or {}).get('messages_copied'), 6, 'messages_copied')
    ck.ok(r.maxrss_kib is not None, 'peak RSS measured (/usr/bin/time)')
    rss = (r.maxrss_kib or 1 << 30) * 1024
    ck.ok(rss < limit, 'peak RSS %.1f MiB < %.0f MiB%s' % (
        rss / MIB, limit / MIB, ' (ASan build)' if asan else ''))

    # --max-message-size 10M on a fresh target user: big one skipped
    r = env.run_imapmig(src, 'alice', tgt, 'bob',
                        ['--max-message-size', '10M'],
                        state=env.path('state', 'limit.db'))
    if not ck.eq(r.rc, 0, '--max-message-size run exits 0'):
        print(r.describe())
    s = r.summary or {}
    ck.eq(s.get('messages_skipped'), 1, 'big message skipped')
    ck.eq(s.get('messages_copied'), 5, 'small messages copied')
    ck.eq(s.get('messages_failed'), 0, 'a size skip is not a failure')
    listed = [e for e in r.events if e is not s and
              'skip' in str(e.get('event', '')).lower()]
    ck.ok(listed or b'skip' in r.stderr.lower(),
          'the skip is listed (JSON event or stderr)')
    so = H.fetch_all(src, 'alice')
    exp = {k: [m for m in v if m[0] != H.hashlib.sha256(
        raw.replace(b'\r\n', b'\n')).hexdigest()] for k, v in so.items()}
    d = H.diff_oracles(H.mapped(exp), H.fetch_all(tgt, 'bob'))
    ck.eq(d, [], 'target bob has all but the big message')


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_big')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
