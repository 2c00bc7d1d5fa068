#!/usr/bin/env python3
"""Server-side faults during `imapmig sync` (and one batch):

  - the source, then the target Dovecot restarted in the middle of a copy:
    imapmig retries with growing delays and the result is exact;
  - the same during `imapmig batch start` (if batch exists): the batch
    ends (or a `batch sync` pass ends) with every user exact;
  - a target user over quota: the run fails naming the target and the
    quota; what was copied stays, nothing is duplicated; with the quota
    raised a rerun completes exactly;
  - between two passes a source folder is deleted and another renamed:
    no crash, the vanished folder is reported, the renamed one is copied
    as a new folder, nothing duplicated in the folders already copied;
  - a source folder deleted and recreated with the same messages (a new
    UIDVALIDITY): nothing copied twice.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import faultproxy as FP  # noqa: E402

FOLDERS = ['INBOX', 'Sent', 'Archiv', 'Listen']


def text(r):
    return (r.stdout + r.stderr).decode('utf-8', 'replace')


def died(r):
    return r.rc < 0 or r.rc >= 128


def sync(en, src, su, tgt, tu, state, extra=(), **kw):
    return en.run_imapmig(src, su, tgt, tu, state=en.path('state', state),
                          extra=list(extra), **kw)


def exact(ck, src, su, tgt, tu, what, select=None):
    return H.check_oracle(ck, src, su, tgt, tu, what, select=select)


def subset_of_source(src, su, tgt, tu):
    """Every target message is a source message (mapped folder), none
    twice: -> list of problems."""
    from collections import Counter
    exp = H.mapped(H.fetch_all(src, su))
    act = H.fetch_all(tgt, tu)
    bad = []
    for f, v in act.items():
        extra = Counter(v) - Counter(exp.get(f, []))
        if extra:
            bad.append('%r: %d messages not on the source (or twice)' % (
                f, sum(extra.values())))
    return bad


# ------------------------------------------------------------ restarts

def restart_case(env, ck, src, tgt, which, tu, at=40):
    server = src if which == 'source' else tgt
    done = []

    def trigger():
        if not done and H.target_file_count(tgt, tu) > at:
            done.append(time.time())
            server.restart(down=0.3)
        return False
    # through throttling (fault-free) proxies: the copy takes a few
    # seconds, so the restart surely lands in its middle
    ps = FP.FaultProxy(src.imaps_port, throttle=1000000).start()
    pt = FP.FaultProxy(tgt.imaps_port, throttle=1000000).start()
    argv = env.sync_args(src, 'alice', tgt, tu, ['--retries', '4',
                                                 '--timeout', '3'],
                         state=env.path('state', tu + '.db'))
    argv[-2:] = [ps.url(src, 'alice'), pt.url(tgt, tu)]
    r = env.run_imapmig(src, 'alice', tgt, tu, argv=argv,
                        kill_when=trigger)
    ps.stop()
    pt.stop()
    first = r
    what = '%s restarted after %d messages' % (which, at)
    ck.ok(bool(done), what)
    ck.ok(not died(r), '%s: imapmig did not crash (rc %d)' % (what, r.rc))
    if not ck.eq(r.rc, 0, '%s: the run retried and exits 0' % what):
        print(r.describe())
    delays = [int(x) for x in re.findall(rb'retrying in (\d+) s', r.stderr)]
    # a late restart may find imapmig already done: no retry needed then
    ck.ok((len(delays) >= 1 or at > 100) and delays == sorted(delays) and
          all(b >= 2 * a for a, b in zip(delays, delays[1:])),
          '%s: retried with growing delays %s' % (what, delays))
    if r.rc != 0:       # the rule: a rerun must end it exactly
        r = sync(env, src, 'alice', tgt, tu, tu + '.db',
                 ['--retries', '4', '--timeout', '3'])
        ck.eq(r.rc, 0, '%s: rerun exits 0' % what)
    so, to = exact(ck, src, 'alice', tgt, tu, what)
    if H.diff_oracles(H.mapped(so), to):
        print(first.describe())
        print('\n'.join(x for x in first.stdout.decode().splitlines()
                        if '"progress"' not in x))


def batch_restart(env, ck, src, tgt):
    r = H.run([H.imapmig_binary(), 'batch', '--help'], check=False)
    if r.returncode != 0:
        print('  (no batch command: batch restart skipped)')
        return
    import batchlib as B
    users = ['bx1', 'bx2', 'bx3']
    for i, u in enumerate(users):
        for s in (src, tgt):
            s.add_user(u, 'Bx%d-pw-%s' % (i, 'c0ffee'[i:i + 3]))
        B.small_mailbox(src, u, 150, seed=i + 1)
    b = B.Batch(env, src, tgt, 'rb', state=env.path('state', 'batch.db'))
    b.write_csv(b.rows_for(users))
    r = b.create(['--jobs', '3'] + b.master_args(side=('target',)))
    if not ck.eq(r.rc, 0, 'batch create'):
        print(r.describe())
        return
    done = []

    def trigger():
        n = sum(H.target_file_count(tgt, u) for u in users)
        if not done and n > 60:
            done.append(n)
            tgt.restart(down=0.3)
        return False
    r = b.cmd('start', '--json', kill_when=trigger, timeout=240)
    ck.ok(bool(done), 'batch: target restarted mid-start (at %s messages)'
          % done)
    ck.ok(not died(r), 'batch start: no crash (rc %d)' % r.rc)
    for _ in range(3):   # users that failed go again in a sync pass
        if sum(H.count_messages(tgt, u) for u in users) >= 450:
            break
        r = b.cmd('sync', '--json', timeout=240)
        ck.ok(not died(r), 'batch sync: no crash (rc %d)' % r.rc)
    B.check_users_oracle(ck, src, tgt, users,
                         'batch with the target restarted')


# ---------------------------------------------------------------- quota

def quota_case(env, ck, src, tgt):
    tu = 'qu'
    tgt.add_user(tu, 'Qu-pw-77aa10')
    tgt.set_quota(tu, '1M')
    e = {'IMAPMIG_TARGET_PASSWORD': 'Qu-pw-77aa10'}
    r = sync(env, src, 'alice', tgt, tu, 'quota.db', env=e)
    t = text(r)
    ck.ok(not died(r), 'quota: no crash (rc %d)' % r.rc)
    if not ck.ok(r.rc != 0, 'over quota: exit non-zero (%d)' % r.rc):
        print(r.describe())
    ck.ok(re.search(r'OVERQUOTA|[Qq]uota', t) is not None and
          'target' in t.lower(),
          'over quota: the error names the target and the quota: %r' %
          (r.stderr[-400:].decode('utf-8', 'replace')))
    n = H.count_messages(tgt, tu)
    ck.ok(n > 0, 'over quota: %d messages copied before it' % n)
    bad = subset_of_source(src, 'alice', tgt, tu)
    ck.eq(bad, [], 'over quota: what is on the target is from the source, '
          'once')
    # a second run while still over quota: still nothing duplicated
    r = sync(env, src, 'alice', tgt, tu, 'quota.db', env=e)
    ck.ok(r.rc != 0 and not died(r), 'over quota rerun: fails again '
          'cleanly (rc %d)' % r.rc)
    ck.eq(subset_of_source(src, 'alice', tgt, tu), [],
          'over quota rerun: nothing duplicated')
    ck.ok(H.count_messages(tgt, tu) >= n, 'over quota rerun: nothing lost')
    tgt.set_quota(tu, '500M')
    r = sync(env, src, 'alice', tgt, tu, 'quota.db', env=e)
    if not ck.eq(r.rc, 0, 'quota raised: rerun exits 0'):
        print(r.describe())
    exact(ck, src, 'alice', tgt, tu, 'quota raised: rerun completes')


# ------------------------------------------- folders deleted / renamed

def folder_change_case(env, ck, src, tgt):
    su = tu = 'erin'
    for f in ('Projekt-Alt', 'Kunden', 'Bleibt'):
        src.create_folder(su, f, subscribe=True)
    c = src.client(su)
    for i in range(30):
        f = ('INBOX', 'Projekt-Alt', 'Kunden', 'Bleibt')[i % 4]
        H.append_raw(c, f, H.make_message('fc %d' % i, 'x %d\r\n' % i),
                     ('\\Seen',) if i % 3 else (), 1400000000 + i * 99)
    c.logout()
    r = sync(env, src, su, tgt, tu, 'fc.db')
    if not ck.eq(r.rc, 0, 'folders: first pass exits 0'):
        print(r.describe())
    before = H.fetch_all(tgt, tu)
    # between passes: one folder deleted, one renamed, new mail elsewhere
    src.doveadm('mailbox', 'delete', '-u', su, 'Projekt-Alt')
    src.doveadm('mailbox', 'rename', '-u', su, 'Kunden', 'Kunden-2024')
    src.append(su, 'Bleibt', H.make_message('fc new'), (), 1500000000)
    ck.ok('Projekt-Alt' not in H.list_folders(src, su) and
          'Kunden-2024' in H.list_folders(src, su), 'source changed')
    r = sync(env, src, su, tgt, tu, 'fc.db', ['--verbose'])
    t = text(r)
    ck.ok(not died(r), 'folders: second pass does not crash (rc %d)' % r.rc)
    if not ck.ok(r.rc in (0, 1), 'folders: second pass exits 0 or 1 (%d)' %
                 r.rc):
        print(r.describe())
    ck.ok('Projekt-Alt' in t, 'folders: the vanished folder is reported')
    after = H.fetch_all(tgt, tu)
    exp_new = H.mapped(H.fetch_all(src, su))
    # what the source has now, exactly; the vanished/renamed folders'
    # earlier copies stay as they were (a migration never deletes mail)
    d = H.diff_oracles(exp_new, after)
    ck.eq(d, [], 'folders: every current source folder exact on the target '
          '(Kunden-2024 copied as a new folder)')
    for f in ('Projekt-Alt', 'Kunden'):
        ck.eq(sorted(after.get(f, [])), sorted(before.get(f, [])),
              'folders: %s on the target kept as it was, nothing twice' % f)
    r = sync(env, src, su, tgt, tu, 'fc.db')
    ck.ok(not died(r) and r.rc in (0, 1), 'folders: third pass (rc %d)' %
          r.rc)
    ck.eq(H.fetch_all(tgt, tu), after, 'folders: third pass changes '
          'nothing')


# ----------------------------------------------------- UIDVALIDITY

def uidvalidity_case(env, ck, src, tgt):
    su = tu = 'dave'
    src.create_folder(su, 'Reisen', subscribe=True)
    c = src.client(su)
    for i in range(25):
        H.append_raw(c, 'Reisen' if i % 5 else 'INBOX',
                     H.make_message('uv %d' % i, 'trip %d\r\n' % i),
                     ('\\Seen', '$Label1') if i % 2 else ('\\Flagged',),
                     1300000000 + i * 3600)
    c.logout()
    r = sync(env, src, su, tgt, tu, 'uv.db')
    if not ck.eq(r.rc, 0, 'uidvalidity: first pass exits 0'):
        print(r.describe())
    old = H.folder_status(src, su)['Reisen']['uidvalidity']
    msgs = H.fetch_messages(src, su, 'Reisen')
    src.doveadm('mailbox', 'delete', '-u', su, 'Reisen')
    time.sleep(1.1)     # a different UIDVALIDITY for sure
    src.create_folder(su, 'Reisen', subscribe=True)
    c = src.client(su)
    for m in reversed(msgs):        # other order: other UIDs too
        flags = [f for f in m['flags'].split() if f != '\\Recent']
        H.append_raw(c, 'Reisen', m['text'].replace(b'\n', b'\r\n'), flags,
                     int(m['date.received.unixtime']))
    H.append_raw(c, 'Reisen', H.make_message('uv new'), ('\\Seen',),
                 1600000000)
    c.logout()
    new = H.folder_status(src, su)['Reisen']['uidvalidity']
    ck.ok(new != old, 'source Reisen UIDVALIDITY changed %d -> %d' % (old,
                                                                     new))
    r = sync(env, src, su, tgt, tu, 'uv.db', ['--verbose'])
    ck.ok(not died(r), 'uidvalidity: second pass does not crash')
    if not ck.eq(r.rc, 0, 'uidvalidity: second pass exits 0'):
        print(r.describe())
    s = r.summary or {}
    ck.ok(s.get('messages_copied') == 1,
          'uidvalidity: only the new message copied (summary %s)' % {
              k: v for k, v in s.items() if k.startswith('messages')})
    exact(ck, src, su, tgt, tu, 'uidvalidity change: nothing copied twice')


def test(env, ck):
    src = env.server('source')
    tgt = env.server('target', quota=True)
    for f in FOLDERS:
        if f not in ('INBOX', 'Sent'):
            src.create_folder('alice', f, subscribe=True)
    H.populate_corpus(src, 'alice', FOLDERS, 400, seed=21)
    restart_case(env, ck, src, tgt, 'source', 'bob', 40)
    restart_case(env, ck, src, tgt, 'target', 'carol', 40)
    tgt.add_user('rs3', 'Rs3-pw-51a')
    restart_case(env, ck, src, tgt, 'target', 'rs3', 200)
    quota_case(env, ck, src, tgt)
    folder_change_case(env, ck, src, tgt)
    uidvalidity_case(env, ck, src, tgt)
    batch_restart(env, ck, src, tgt)


def main():
    H.require_imapmig()
    ck = H.Check('test_fault_server')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
