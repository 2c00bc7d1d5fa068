#!/usr/bin/env python3
"""--debug with several connections at once: every trace line names its
connection and is written whole.

`sync --connections-per-user 2 --debug` and `batch start --debug` (--jobs
2, --connections-per-user 2): every stderr line starts with its label
("source", "target#2", "alice@example.test source#3"), at least two
connections per side are told apart, and each labelled stream reads like
one IMAP connection: the tags it sends increase, and every tagged reply
answers a tag sent on that same stream (lines of two connections mixed
under one label, or cut into pieces, break this).  No password appears,
in any of the forms test_secrets looks for."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import batchlib as B  # noqa: E402
from test_secrets import needles  # noqa: E402

FOLDERS = ['INBOX', 'Sent', 'Work', 'Lists', 'Old']
LABEL = r'(?:source|target)(?:#\d+)?'


def check_trace(ck, err, who_re, what, secrets):
    """err: stderr bytes; who_re: regex before the label ('' for sync)."""
    line_re = re.compile(r'^(%s%s) ([<>]) (.*)$' % (who_re, LABEL))
    text = err.decode('utf-8', 'replace')
    lines = text.splitlines()
    bad = [l for l in lines if not line_re.match(l) and
           not l.startswith('imapmig: ')]
    ck.ok(lines and not bad, '%s: every one of %d stderr lines starts with a '
          'connection label%s' % (what, len(lines),
                                  '' if not bad else ': %r' % bad[:5]))
    inner = [l for l in lines if line_re.match(l) and
             re.search(r'\b%s [<>] A\d+ ' % LABEL, line_re.match(l).group(3))]
    ck.ok(not inner, '%s: no line holds a piece of another (%r)'
          % (what, inner[:3]))

    sent, order, stray = {}, {}, []
    for l in lines:
        m = line_re.match(l)
        if not m:
            continue
        label, d, rest = m.groups()
        if d == '<' and re.match(r'\* (OK|PREAUTH) .*\bready\.?$', rest):
            # a greeting: the label's connection was made again (a retry)
            order[label] = 0
            sent[label] = set()
            continue
        if d == '>' and rest == '<credentials hidden>':
            # the login's own line, masked: the next tag
            sent.setdefault(label, set()).add(order.get(label, 0) + 1)
            continue
        t = re.match(r'(A\d+) ', rest)
        if not t:
            continue
        tag = int(t.group(1)[1:])
        if d == '>':
            prev = order.get(label, 0)
            if tag <= prev:
                stray.append('%s sent A%d after A%d' % (label, tag, prev))
            order[label] = tag
            sent.setdefault(label, set()).add(tag)
        elif re.match(r'A\d+ (OK|NO|BAD)\b', rest) and \
                tag not in sent.get(label, ()):
            stray.append('%s got a reply to A%d it never sent' % (label, tag))
    ck.ok(sent and not stray, '%s: %d labelled streams, each one connection '
          '(tags rise, replies match)%s' % (what, len(sent),
                                            '' if not stray else ': %s'
                                            % stray[:5]))
    sides = {}
    for label in sent:
        side = label.split()[-1].split('#')[0]
        sides.setdefault(side, set()).add(label)
    ck.ok(all(len(sides.get(s, ())) >= 2 for s in ('source', 'target')),
          '%s: two connections per side told apart (%s)'
          % (what, sorted(sent)))
    ck.ok('<credentials hidden>' in text, '%s: the login is traced, masked'
          % what)
    leaks = sorted(set(d for n, d in secrets.items() if n in err))
    ck.ok(not leaks, '%s: no password in the trace (%s)' % (what, leaks))


def test(env, ck):
    src, tgt, _ = B.pair_with_users(env, 6)
    users = ['alice', 'bob', 'carol']

    def fill(iu):
        i, u = iu
        for f in FOLDERS[2:]:
            src.create_folder(u, f, subscribe=True)
        H.populate_corpus(src, u, FOLDERS, 60, seed=20 + i)
    B.pmap(fill, list(enumerate(users)))

    # sync: two connection pairs for one mailbox
    r = env.run_imapmig(src, 'alice', tgt, 'alice',
                        ['--connections-per-user', '2', '--debug'])
    if not ck.eq(r.rc, 0, 'sync --connections-per-user 2 --debug exits 0'):
        print(r.describe())
    secrets = needles([('alice', src.users['alice']),
                       ('alice', tgt.users['alice'])])
    check_trace(ck, r.stderr, '', 'sync', secrets)
    B.check_users_oracle(ck, src, tgt, ['alice'], 'sync with two connections')

    # batch: two users at once, two connection pairs each
    b = B.Batch(env, src, tgt, 'dbg')
    b.write_csv(b.rows_for(users[1:], source_password=False))
    r = b.create(['--jobs', '2', '--connections-per-user', '2'] +
                 b.master_args())
    ck.eq(r.rc, 0, 'batch create exits 0')
    r = b.cmd('start', '--json', '--debug', timeout=120)
    if not ck.eq(r.rc, 0, 'batch start --debug exits 0'):
        print(r.describe())
    secrets = needles([(u, src.users[u]) for u in users[1:]] +
                      [(u, tgt.users[u]) for u in users[1:]],
                      master=H.MASTER_PASSWORD)
    check_trace(ck, r.stderr, r'\S+@example\.test ', 'batch', secrets)
    for e in B.events(r, 'warning'):
        print('  warning event: %s' % e)
    who = set(re.findall(rb'^(\S+@example\.test) ', r.stderr, re.M))
    ck.eq(sorted(who), sorted(B.email_of(u).encode() for u in users[1:]),
          'batch: each line names its user')
    ck.ok(b'"event"' not in r.stderr and
          not re.search(rb'^\S+@example\.test (source|target)', r.stdout,
                        re.M),
          'batch: trace on stderr, events on stdout')
    B.check_users_oracle(ck, src, tgt, users[1:], 'batch with --debug')


def main():
    H.require_imapmig()
    ck = H.Check('test_debug_trace')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
