#!/usr/bin/env python3
"""A pass that overlaps `batch complete` never sets users (or the batch)
back from Completed.

`batch sync` builds its queue of users when it starts and writes each
user's status when that user starts and ends.  `batch complete` run in
another process meanwhile completes the same users; the sync pass must
then leave them Completed: neither its final "Synced" for the user it was
on, nor its "IncrementalSyncing" for a user still in its queue, nor its
batch status computed from what it read may undo that.

Deterministic: the sync pass runs with --jobs 1 and the test-only hook
IMAPMIG_TEST_PAUSE_BEFORE_STATUS=S, which makes it sleep S seconds after
a user's copy and before that user's final status (announced by a JSON
warning naming the hook).  While it sleeps on the first user, `batch
complete` runs to the end; then the sync pass wakes up.  Mail on the
target must be exactly the source's (doveadm oracle)."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import batchlib as B  # noqa: E402

USERS = ['alice', 'bob']
PAUSE = 8       # seconds; `batch complete` of two small users takes ~1-2 s


def json_lines(path):
    out = []
    try:
        with open(path, 'rb') as f:
            for line in f.read().decode('utf-8', 'replace').splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except OSError:
        pass
    return out


def paused_on(path):
    """Users the sync pass announced it is pausing on."""
    return [e.get('user') for e in json_lines(path)
            if e.get('event') == 'warning' and
            'IMAPMIG_TEST_PAUSE_BEFORE_STATUS' in (e.get('text') or '')]


def batch_status(b):
    st = b.status() or {}
    return (st.get('batch') or {}).get('status') or st.get('status')


def test(env, ck):
    src, tgt = env.pair()
    for i, u in enumerate(USERS):
        B.small_mailbox(src, u, 12, seed=i)
    b = B.Batch(env, src, tgt, 'race')
    b.write_csv(b.rows_for(USERS, source_password=False))
    ck.eq(b.create(b.master_args() + ['--jobs', '1']).rc, 0, 'batch create')
    r = b.cmd('start')
    ck.eq(r.rc, 0, 'batch start')
    want = {B.email_of(u): 'Synced' for u in USERS}
    ck.eq(b.user_statuses(), want, 'after start: every user Synced')

    # mail for the sync pass to copy, and for complete after it
    src.save('alice', 'INBOX', H.make_message('before the overlapping passes'))

    outp = env.path('sync.out')
    errp = env.path('sync.err')
    e = dict(os.environ)
    e['IMAPMIG_TEST_PAUSE_BEFORE_STATUS'] = str(PAUSE)
    with open(outp, 'wb') as fo, open(errp, 'wb') as fe:
        p = subprocess.Popen(b.argv('sync', b.name, '--json'), stdout=fo,
                             stderr=fe, stdin=subprocess.DEVNULL, env=e)
    try:
        ok = B.wait_for(lambda: paused_on(outp) or p.poll() is not None,
                        60, step=0.1)
        paused = paused_on(outp)
        ck.ok(ok and paused == [B.email_of('alice')],
              'the sync pass pauses after copying alice, before her final '
              'status (%r)' % paused)
        t0 = time.time()
        r = b.cmd('complete', '--json')
        took = time.time() - t0
        ck.eq(r.rc, 0, 'batch complete (another process) while the sync '
              'pass sleeps')
        ck.ok(p.poll() is None and took < PAUSE,
              'complete ended (%.1f s) before the sync pass woke up: the '
              'race was really run' % took)
        done = {B.email_of(u): 'Completed' for u in USERS}
        ck.eq(b.user_statuses(), done, 'right after complete: every user '
              'Completed')
        ck.eq(batch_status(b), 'Completed', 'right after complete: batch '
              'Completed')
        try:
            rc = p.wait(timeout=3 * PAUSE + 60)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(errp, 'rb') as f:
        err = f.read().decode('utf-8', 'replace')
    ck.eq(rc, 0, 'the overlapping sync pass exits 0 (stderr: %r)' % err[-500:])
    ck.eq(b.user_statuses(), done, 'after the sync pass ended: every user '
          'still Completed')
    ck.eq(batch_status(b), 'Completed', 'after the sync pass ended: batch '
          'still Completed')
    ends = [ev for ev in json_lines(outp) if ev.get('event') == 'batch_done']
    ck.ok(ends and ends[-1].get('status') == 'Completed',
          'the sync pass reports the batch Completed (%r)' % ends)
    ck.eq(paused_on(outp), [B.email_of('alice')],
          'the sync pass did not run bob, Completed meanwhile')
    st = b.status() or {}
    stamps = {u.get('email'): u.get('completed') for u in B.users_of(st)}
    ck.ok(all(stamps.get(B.email_of(u)) for u in USERS),
          'completion times kept (%r)' % stamps)
    B.check_users_oracle(ck, src, tgt, USERS, 'after both passes')

    # a later runner sees the batch Completed and ends at once (killed
    # here, not left behind, when it does not: it would wait 1h)
    p, _, _ = b.popen('run', '--every', '1h')
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        rc = None
    ck.eq(rc, 0, 'batch run on the Completed batch ends at once')


def main():
    H.require_imapmig()
    ck = H.Check('test_batch_race')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
