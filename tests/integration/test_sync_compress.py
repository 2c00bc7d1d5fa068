#!/usr/bin/env python3
"""--compress: COMPRESS=DEFLATE (RFC 4978) on both connections when the
servers offer it (Dovecot with imap_zlib): the copy is exact by the doveadm
oracle, including a multi-megabyte message and the incremental pass, and
the protocol trace shows the command was accepted.  Against a server that
does not offer it, --compress quietly copies uncompressed."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def test(env, ck):
    src = env.server('source', zlib=True)
    tgt = env.server('target', zlib=True)
    src.create_folder('alice', '日本語', subscribe=True)
    H.populate_corpus(src, 'alice', ['INBOX', 'Sent', '日本語'], 150, seed=5)
    big = H.make_message('big and compressible', body=('compress me ' * 6 + '\r\n') * 60000)
    src.append('alice', 'INBOX', big, flags=('\\Seen',))

    r = env.run_imapmig(src, 'alice', tgt, 'alice', ['--compress', '--debug'])
    if not ck.eq(r.rc, 0, '--compress: exit 0'):
        print(r.describe())
    err = r.stderr.decode('utf-8', 'replace')
    ck.ok('source > A' in err and 'COMPRESS DEFLATE' in err, 'source: COMPRESS DEFLATE sent')
    ck.ok('target > A' in err and err.count('COMPRESS DEFLATE') >= 2, 'target: COMPRESS sent too')
    for side in ('source', 'target'):
        ck.ok(any(l.startswith(side + ' < A') and ' OK ' in l and 'ompression' in l
                  for l in err.splitlines()), '%s accepted COMPRESS (OK)' % side)
    H.check_oracle(ck, src, 'alice', tgt, 'alice', '--compress: identical')

    src.append('alice', 'INBOX', H.make_message('new one'))
    src.flags('alice', 'add', ['\\Flagged'], 'INBOX', '1:5')
    r = env.run_imapmig(src, 'alice', tgt, 'alice', ['--compress'])
    ck.eq(r.rc, 0, '--compress incremental: exit 0')
    ck.eq((r.summary or {}).get('messages_copied'), 1, 'incremental: 1 copied')
    H.check_oracle(ck, src, 'alice', tgt, 'alice', '--compress incremental: identical')

    # servers without imap_zlib: nothing to turn on
    s2, t2 = env.pair()
    H.populate_corpus(s2, 'alice', ['INBOX'], 20, seed=6)
    r = env.run_imapmig(s2, 'alice', t2, 'alice', ['--compress', '--debug'])
    ck.eq(r.rc, 0, 'no COMPRESS offered: exit 0')
    ck.ok(b'COMPRESS DEFLATE' not in r.stderr, 'no COMPRESS sent where not offered')
    H.check_oracle(ck, s2, 'alice', t2, 'alice', 'without COMPRESS on offer: identical')


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_compress')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
