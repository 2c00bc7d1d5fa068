#!/usr/bin/env python3
"""A target without LITERAL+: every APPEND literal waits for the server's
"+" (no MULTIAPPEND shortcut without it), so the source's bodies are
spooled (memory, or an unlinked temporary file for big ones) and "lanes"
append them.  The copy is exact by the doveadm oracle, big message
included; the trace shows synchronising literals ({n} then "+"); with
--append-connections 3 three target connections append one folder's
messages, still exactly once, and no spool file is left behind."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def test(env, ck):
    src = env.server('source')
    tgt = env.server('target', literal_plus=False)
    c = tgt.client('alice')
    caps = c.capabilities
    c.logout()
    tgt.add_user('bob', 'pw-bob')
    ck.ok('LITERAL+' not in caps, 'target does not offer LITERAL+ (%s)' % ' '.join(caps)[:80])
    src.create_folder('alice', 'Projekte', subscribe=True)
    H.populate_corpus(src, 'alice', ['INBOX', 'Sent', 'Projekte'], 80, seed=11)
    big = H.make_message('big', body=('x' * 76 + '\r\n') * 40000)
    src.append('alice', 'INBOX', big, flags=('\\Seen',))

    r = env.run_imapmig(src, 'alice', tgt, 'alice', ['--debug'])
    if not ck.eq(r.rc, 0, 'exit 0'):
        print(r.describe())
    hint = [e for e in r.events if e.get('event') == 'warning' and
            '--append-connections' in e.get('text', '')]
    ck.ok(len(hint) == 1, 'one warning names --append-connections (%s)' % hint)
    err = r.stderr.decode('utf-8', 'replace')
    sync_lits = re.findall(r'target > A\d+ APPEND .*\{\d+\}$', err, re.M)
    plus_lits = re.findall(r'target > A\d+ APPEND .*\{\d+\+\}$', err, re.M)
    ck.ok(len(sync_lits) >= 80 and not plus_lits,
          'synchronising literals only (%d with {n}, %d with {n+})' % (
              len(sync_lits), len(plus_lits)))
    ck.ok(re.search(r'^target < \+', err, re.M) is not None, 'the server\'s "+" was awaited')
    H.check_oracle(ck, src, 'alice', tgt, 'alice', 'without LITERAL+: identical')
    r = env.run_imapmig(src, 'alice', tgt, 'alice', [])
    ck.eq((r.summary or {}).get('messages_copied'), 0, 'rerun copies 0')

    # three lanes into another target user; TMPDIR private to see that
    # the big message's spool file never shows (unlinked at once)
    tmp = env.path('spooltmp')
    os.makedirs(tmp)
    r = env.run_imapmig(src, 'alice', tgt, 'bob',
                        ['--debug', '--append-connections', '3'],
                        state=env.path('state', 'lanes.db'),
                        env={'TMPDIR': tmp})
    if not ck.eq(r.rc, 0, 'three lanes: exit 0'):
        print(r.describe())
    err = r.stderr.decode('utf-8', 'replace')
    lanes = set(re.findall(r'^(target(?:#\d+)?) > A\d+ APPEND .*\{\d+\}$', err, re.M))
    ck.ok(len(lanes) == 3, 'three target connections appended (%s)' % sorted(lanes))
    ck.eq((r.summary or {}).get('messages_copied'), 81, 'three lanes: 81 copied')
    H.check_oracle(ck, src, 'alice', tgt, 'bob', 'three lanes: identical',
                   )
    ck.eq(os.listdir(tmp), [], 'no spool file left in TMPDIR')
    r = env.run_imapmig(src, 'alice', tgt, 'bob', ['--append-connections', '3'],
                        state=env.path('state', 'lanes.db'))
    ck.eq((r.summary or {}).get('messages_copied'), 0, 'three lanes: rerun copies 0')


def main():
    H.require_imapmig()
    ck = H.Check('test_sync_noliteralplus')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
