#!/usr/bin/env python3
"""Fault matrix: imapmig sync through a fault-injecting proxy (faultproxy.py)
on the source or the target side, one seeded fault plan per case.

The mailbox: ~240 corpus messages over six folders plus three 1-3 MB
messages, so a truncation lands inside a large literal.  Each case gets a
fresh target user and state file, and a plan of 1-2 faulted connections
(drop after N bytes either way, with FIN or RST; stall after N bytes longer
than --timeout; truncate inside a large transfer); later connections pass
cleanly.  imapmig runs (--timeout 2, --retries 0 or 2) until it exits 0, at
most MAX_RUNS times; a run may fail, but none may crash, and once a run
finishes cleanly the target must equal the source exactly (doveadm oracle:
nothing missing, nothing twice, flags and INTERNALDATE equal) and
`imapmig verify` must exit 0.

IMAPMIG_FAULT_SEED=n shifts every case's seed; IMAPMIG_FAULT_CASES=a,b runs
only those case numbers (to replay one).
"""
import base64
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import faultproxy as FP  # noqa: E402

FOLDERS = ['INBOX', 'Sent', 'Archiv', 'Archiv.2019', 'Listen', '日本語']
N_SMALL = 240
BIG = [('INBOX', 1000 * 1024), ('Archiv', 1600 * 1024), ('Sent', 3200 * 1024)]
# ASan builds are 2-3x slower: longer timeouts there, same faults
ASAN = H.is_asan(H.imapmig_binary())
TIMEOUT = 4 if ASAN else 2
STALL = TIMEOUT + 2.0   # > TIMEOUT: the client must give up and reconnect
MAX_RUNS = 5
WORKERS = 3

# (side, kind, direction): every combination gets cases
COMBOS = [('source', 'drop', 's2c'), ('source', 'drop', 'c2s'),
          ('source', 'stall', 's2c'), ('source', 'stall', 'c2s'),
          ('source', 'truncate', 's2c'),
          ('target', 'drop', 's2c'), ('target', 'drop', 'c2s'),
          ('target', 'stall', 's2c'), ('target', 'stall', 'c2s'),
          ('target', 'truncate', 'c2s')]
N_FAULT_CASES = 50
N_CLEAN_CASES = 2


def big_message(i, size):
    rnd = random.Random(1000 + i)
    lines, n = [], 0
    while n < size:
        line = base64.b64encode(rnd.randbytes(57)).decode()
        lines.append(line)
        n += len(line) + 2
    return H.make_message('large attachment %d' % i,
                          '\r\n'.join(lines) + '\r\n')


def fill(src):
    for f in FOLDERS:
        if f not in ('INBOX', 'Sent'):
            src.create_folder('alice', f, subscribe=True)
    H.populate_corpus(src, 'alice', FOLDERS, N_SMALL, seed=11)
    for i, (f, size) in enumerate(BIG):
        src.append('alice', f, big_message(i, size), ('\\Seen',),
                   1500000000 + 3600 * i)


class Case:
    def __init__(self, n, seed, combo, totals):
        self.n = n
        self.seed = seed
        self.user = 'fm%02d' % n
        self.password = 'Fm%02d-pw-%08x' % (n, seed * 2654435761 % 2**32)
        rnd = random.Random(seed)
        self.retries = rnd.choice((0, 2))
        if combo is None:
            self.side, self.plan = 'source', []
        else:
            side, kind, d = combo
            self.side = side
            plan = [FP.random_fault(rnd, kind, d, totals[side], STALL)]
            if rnd.random() < 0.35:     # a second faulted connection
                k2, d2 = rnd.choice([(c[1], c[2]) for c in COMBOS
                                     if c[0] == side])
                plan.append(FP.random_fault(rnd, k2, d2, totals[side], STALL))
            self.plan = plan
        self.runs = []
        self.conns = []
        self.problems = []
        self.verify_rc = None
        self.seconds = 0.0
        self.log = []

    def describe(self):
        return 'case %02d seed %d %s %s retries=%d' % (
            self.n, self.seed, self.side, self.plan or '[clean]',
            self.retries)


def sync_argv(env, src, tgt, ps, pt, user, state, retries):
    return [H.imapmig_binary(), 'sync', '--ca-file', env.ca.cert,
            '--resolve', src.resolve_arg(), '--resolve', tgt.resolve_arg(),
            '--state', state, '--json', '--timeout', str(TIMEOUT),
            '--retries', str(retries), ps.url(src, 'alice'),
            pt.url(tgt, user)]


def verify_argv(env, src, tgt, user):
    return [H.imapmig_binary(), 'verify', '--ca-file', env.ca.cert,
            '--resolve', src.resolve_arg(), '--resolve', tgt.resolve_arg(),
            '--json', src.url('alice'), tgt.url(user)]


def run_tool(argv, extra_env, timeout=120):
    """Run imapmig -> H.Result; thread-safe (Env.run_imapmig numbers its
    output files with an unlocked counter)."""
    import subprocess
    e = dict(os.environ)
    e['IMAPMIG_SOURCE_PASSWORD'] = H.USERS['alice']
    e.setdefault('ASAN_OPTIONS', 'detect_leaks=1')
    e.update(extra_env)
    t0 = time.time()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=e, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as x:
        rc, out, err = -9, x.stdout or b'', (x.stderr or b'') + b'[hung]'
    r = H.Result(rc, out, err, None, argv, time.time() - t0)
    return r


def compare(expected, actual):
    d = H.diff_oracles(expected, actual)
    d += ['%r: %d unexpected messages' % (f, len(v))
          for f, v in actual.items() if f not in expected and v]
    return d


def run_case(env, src, tgt, case, expected, have_verify):
    t0 = time.time()
    ps = FP.FaultProxy(src.imaps_port).start()
    pt = FP.FaultProxy(tgt.imaps_port).start()
    try:
        (ps if case.side == 'source' else pt).set_plan(case.plan)
        state = env.path('state', case.user + '.db')
        argv = sync_argv(env, src, tgt, ps, pt, case.user, state,
                         case.retries)
        envv = {'IMAPMIG_TARGET_PASSWORD': case.password}
        for _ in range(MAX_RUNS):
            r = run_tool(argv, envv)
            case.runs.append(r)
            if r.rc < 0:
                case.problems.append('run %d died (rc %d): %s' % (
                    len(case.runs), r.rc, r.describe()[-1500:]))
            if r.rc == 0:
                break
            ps.wait_idle(STALL + 2)
            pt.wait_idle(STALL + 2)
        px = ps if case.side == 'source' else pt
        case.conns = list(px.conns)
        if case.runs[-1].rc != 0:
            case.problems.append('no clean run in %d: %s' % (
                MAX_RUNS, case.runs[-1].describe()[-1500:]))
        d = compare(expected, H.fetch_all(tgt, case.user))
        if d:
            case.problems.append('oracle: ' + '; '.join(d)[:1500])
        if have_verify:
            r = run_tool(verify_argv(env, src, tgt, case.user), envv)
            case.verify_rc = r.rc
            if r.rc != 0:
                case.problems.append('verify rc %d: %s' % (
                    r.rc, r.stdout[-800:].decode('utf-8', 'replace')))
    except Exception as e:     # a broken case must not hide the others
        import traceback
        case.problems.append('exception: %s' % traceback.format_exc())
    finally:
        ps.stop()
        pt.stop()
    case.seconds = time.time() - t0
    return case


def calibrate(env, src, tgt):
    """Bytes each way on each side for a clean run (draws N for drops)."""
    tgt.add_user('calib', 'Calib-pw-1')
    ps = FP.FaultProxy(src.imaps_port).start()
    pt = FP.FaultProxy(tgt.imaps_port).start()
    argv = sync_argv(env, src, tgt, ps, pt, 'calib',
                     env.path('state', 'calib.db'), 0)
    r = env.run_imapmig(src, 'alice', tgt, 'calib', argv=argv,
                        env={'IMAPMIG_TARGET_PASSWORD': 'Calib-pw-1'})
    ps.wait_idle()
    pt.wait_idle()
    tot = {}
    for side, px in (('source', ps), ('target', pt)):
        tot[side] = {d: sum(c.bytes[d] for c in px.conns) for d in FP.DIRS}
    ps.stop()
    pt.stop()
    return r, tot


def test(env, ck):
    src, tgt = env.pair()
    fill(src)
    so = H.fetch_all(src, 'alice')
    expected = H.mapped(so)
    n_src = sum(len(v) for v in so.values())
    ck.ok(n_src == N_SMALL + len(BIG), 'source has %d messages' % n_src)
    have_verify = H.run([H.imapmig_binary(), 'verify', '--help'],
                        check=False).returncode == 0

    r, totals = calibrate(env, src, tgt)
    if not ck.eq(r.rc, 0, 'calibration run through clean proxies exits 0'):
        print(r.describe())
        return
    ck.eq(compare(expected, H.fetch_all(tgt, 'calib')), [],
          'calibration run: target == source')
    print('  bytes per clean run: %s' % totals, flush=True)

    base = int(os.environ.get('IMAPMIG_FAULT_SEED', '0'))
    cases = []
    for i in range(N_FAULT_CASES + N_CLEAN_CASES):
        combo = COMBOS[i % len(COMBOS)] if i < N_FAULT_CASES else None
        cases.append(Case(i, 7919 * (i + 1) + base, combo, totals))
    only = os.environ.get('IMAPMIG_FAULT_CASES')
    if only:
        keep = {int(x) for x in only.split(',')}
        cases = [c for c in cases if c.n in keep]
    for c in cases:
        tgt.add_user(c.user, c.password)

    lock = threading.Lock()
    t0 = time.time()

    def one(c):
        run_case(env, src, tgt, c, expected, have_verify)
        with lock:
            print('  %s: %d run(s), %.1fs, fired %d/%d%s' % (
                c.describe(), len(c.runs), c.seconds,
                sum(1 for x in c.conns if x.fired), len(c.plan),
                '' if not c.problems else ' PROBLEMS'), flush=True)
        return c

    with ThreadPoolExecutor(WORKERS) as ex:
        done = list(ex.map(one, cases))
    took = time.time() - t0

    # per case: exact result (the rule), no crash
    for c in done:
        if os.environ.get('IMAPMIG_FAULT_DEBUG'):
            for i, r in enumerate(c.runs):
                print('    run %d rc %d: %s' % (i + 1, r.rc, r.stderr[-600:]
                                               .decode('utf-8', 'replace')))
            for x in c.conns:
                print('    conn %r' % x)
        if not ck.ok(not c.problems, '%s: exact after %d run(s)' % (
                c.describe(), len(c.runs))):
            for p in c.problems:
                print('    ' + p.replace('\n', '\n    '))
            for x in c.conns:
                print('    conn %r' % x)

    # the matrix covered what it claims
    stats = {}
    for c in done:
        for k, f in enumerate(c.plan):
            key = '%s %s %s' % (c.side, f.kind, f.direction)
            s = stats.setdefault(key, [0, 0])
            s[0] += 1
            s[1] += 1 if k < len(c.conns) and c.conns[k].fired else 0
    n_faults = sum(len(c.plan) for c in done)
    n_fired = sum(s[1] for s in stats.values())
    reruns = sum(1 for c in done if len(c.runs) > 1)
    retried = sum(1 for c in done for r in c.runs
                  if b'retrying in' in r.stderr)
    print('  faults planned %d, fired %d; cases needing a rerun %d; runs '
          'that retried in-process %d; %.0fs' % (
              n_faults, n_fired, reruns, retried, took))
    for k in sorted(stats):
        print('    %-24s planned %2d fired %2d' % (k, stats[k][0],
                                                    stats[k][1]))
    if not only:
        ck.ok(n_fired >= 50, '%d faults fired (>= 50 required)' % n_fired)
        ck.ok(all(s[1] > 0 for s in stats.values()),
              'every side/kind/direction fired at least once')
        limit = 600 if ASAN else 240
        ck.ok(took < limit, 'matrix took %.0fs (< %d)' % (took, limit))


def main():
    H.require_imapmig()
    ck = H.Check('test_fault_matrix')
    with H.Env() as env:
        test(env, ck)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
