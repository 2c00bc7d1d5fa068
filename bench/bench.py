#!/usr/bin/env python3
"""imapmig benchmark: imapmig vs mbsync vs Dovecot dsync (imapc) vs a
no-IMAP ceiling, on the same seeded corpus, each from an empty target.

Run through bench/run.sh (it installs, builds, then calls this).  Uses the
integration harness (tests/integration/harness.py) for the private source
and target Dovecot servers; bench users and certificates are set up here.

Scenarios (each tool from an EMPTY target, a fresh target server):
  large     the one large user (all folders, the 50 MB message)
  all       all users, 4 at a time
  noop      incremental pass right after 'all', nothing changed
  new       incremental pass after delivering new messages to the source

Options for the network and the target (see bench/README.md):
  --link rtt=40ms,rate=20mbit   every tool's traffic to each server goes
                                through bench/linkproxy.py (delay + cap)
  --target-no-literal-plus      the target offers no LITERAL+
  --zlib                        both servers offer COMPRESS=DEFLATE
  --imapmig-variant=ARGS        one more imapmig run with these options
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import corpus  # noqa: E402

CLK = os.sysconf('SC_CLK_TCK')
# extra imapmig options for every imapmig run, e.g.
# BENCH_IMAPMIG_ARGS='--connections-per-user 3' (split on white space)
IMAPMIG_EXTRA = os.environ.get('BENCH_IMAPMIG_ARGS', '').split()
JOBS = 4


def log(*a):
    print('[bench %s]' % time.strftime('%H:%M:%S'), *a, file=sys.stderr,
          flush=True)


# ------------------------------------------------------------ servers

class BenchServer(harness.Server):
    """A harness server with the bench's users instead of the test ones.
    tool_port: where the migrating tools connect (the link proxy's port
    when a link is emulated, else imaps_port)."""

    bench_users = {}
    tool_port = None

    def _write_config(self):
        self.users = dict(self.bench_users)
        super()._write_config()
        with open(self.conf, 'a') as f:
            # generous limits: 4 parallel users, several connections each
            f.write('default_process_limit = 512\n'
                    'default_client_limit = 2000\n'
                    'default_vsz_limit = 1G\n')


class LinkProxy:
    """bench/linkproxy.py in front of one server: tools connect to .port.
    The proxy exits when we stop it, or by itself when our end of its
    stdin closes (this process gone, however it went)."""

    def __init__(self, link, server, logpath):
        args = []
        if link.get('rtt') is not None:
            args += ['--rtt', link['rtt']]
        if link.get('rate') is not None:
            args += ['--rate', link['rate']]
        self.log = open(logpath, 'ab')
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, 'linkproxy.py')] + args +
            ['--listen', harness.SERVER_ADDR,
             's=%s:%d' % (harness.SERVER_ADDR, server.imaps_port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline()
        try:
            self.port = json.loads(line)['s']
        except ValueError:
            self.stop()
            raise RuntimeError('linkproxy did not start (%s)' % logpath)

    def stop(self):
        self.proc.stdin.close()     # EOF: the proxy's way out
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


def parse_link(spec):
    """'rtt=40ms,rate=20mbit' (either part optional) -> dict."""
    link = {}
    for part in [x for x in spec.split(',') if x]:
        k, sep, v = part.partition('=')
        if not sep or k not in ('rtt', 'rate') or not v:
            raise SystemExit('--link: bad part %r (rtt=40ms,rate=20mbit)'
                             % part)
        link[k] = v
    if not link:
        raise SystemExit('--link: give rtt=..., rate=... or both')
    return link


def link_text(link):
    if not link:
        return None
    return ', '.join('%s %s' % (k, link[k]) for k in ('rtt', 'rate')
                     if k in link)


class BenchEnv(harness.Env):
    """link: None or {'rtt': '40ms', 'rate': '20mbit'}; zlib: both servers
    offer COMPRESS=DEFLATE; target_literal_plus=False: targets without
    LITERAL+."""

    link = None
    zlib = False
    target_literal_plus = True

    def server(self, kind, start=True):
        self._n += 1
        s = BenchServer(self, '%s%d' % (kind, self._n), kind, zlib=self.zlib,
                        literal_plus=(self.target_literal_plus
                                      if kind == 'target' else True))
        self.servers.append(s)
        s.tool_port = s.imaps_port
        if start:
            s.start()
            if self.link:
                if not hasattr(self, 'proxies'):
                    self.proxies = {}
                lp = LinkProxy(self.link, s, self.path('linkproxy.log'))
                self.proxies[s.name] = lp
                s.tool_port = lp.port
        return s

    def unlink(self, server):
        """Stop the link proxy in front of a server (before stopping it)."""
        lp = getattr(self, 'proxies', {}).pop(server.name, None)
        if lp:
            lp.stop()

    def close(self):
        for name in list(getattr(self, 'proxies', {})):
            self.proxies.pop(name).stop()
        super().close()

    def issue_certs(self):
        """Server certs that also name 127.0.0.2 (DNS and IP SAN): mbsync
        and Dovecot's imapc verify the name they connect to and neither
        has a --resolve, so they connect to the address itself."""
        for host in (harness.SOURCE_HOST, harness.TARGET_HOST):
            base = os.path.join(self.ca.dir, 'bench-' + host)
            with open(base + '.ext', 'w') as f:
                f.write('subjectAltName=DNS:%s,DNS:%s,IP:%s\n'
                        'basicConstraints=CA:FALSE\n'
                        'keyUsage=critical,digitalSignature\n'
                        'extendedKeyUsage=serverAuth\n' % (
                            host, harness.SERVER_ADDR, harness.SERVER_ADDR))
            harness.run(['openssl', 'req', '-new', '-newkey', 'ec',
                         '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                         '-keyout', base + '.key', '-out', base + '.csr',
                         '-subj', '/CN=' + host])
            harness.run(['openssl', 'x509', '-req', '-in', base + '.csr',
                         '-CA', self.ca.cert, '-CAkey', self.ca.key,
                         '-CAcreateserial', '-out', base + '.pem', '-days',
                         '30', '-extfile', base + '.ext'])
            self.certs[host] = (base + '.pem', base + '.key')


def instance_cpu(server):
    """CPU seconds (user+sys) used so far by all processes of one Dovecot
    instance: every process in the master's session, live ones' own time
    plus what they reaped (exited imap processes land in the master's
    cutime/cstime)."""
    sid = server.proc.pid
    total = 0
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(')') + 2:].split()
        # fields[0] is state (field 3); session is field 6 -> index 3
        if int(fields[3]) != sid:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cu cs
    return total / CLK


def tool_url(server, user):
    """The URL a migrating tool gets: through the link proxy if any."""
    from urllib.parse import quote
    return 'imaps://%s@%s:%d' % (quote(user, safe=''), server.host,
                                 server.tool_port)


def user_home(server, user):
    return os.path.join(server.dir, 'home', user)


# ------------------------------------------------------------ running

class Run:
    """One measured run of a tool: one or more processes."""

    def __init__(self, scenario, tool, label, variant=''):
        self.scenario = scenario
        self.tool = tool
        self.variant = variant      # extra imapmig options of this run
        self.label = label
        self.wall = 0.0
        self.cpu = 0.0
        self.maxrss_kib = 0
        self.rcs = []
        self.src_cpu = 0.0
        self.tgt_cpu = 0.0
        self.messages = 0
        self.bytes = 0
        self.verified = None
        self.notes = []

    def as_dict(self):
        d = dict(self.__dict__)
        return d


def run_procs(cmds, logdir, tag, src, tgt, parallel=JOBS, envs=None):
    """Run cmds (lists) with at most `parallel` at a time, each under
    /usr/bin/time.  -> (wall, cpu, maxrss_kib, rcs, src_cpu, tgt_cpu)."""
    os.makedirs(logdir, exist_ok=True)
    envs = envs or [None] * len(cmds)

    def one(i):
        base = os.path.join(logdir, '%s-%d' % (tag, i))
        e = dict(os.environ)
        if envs[i]:
            e.update(envs[i])
        with open(base + '.out', 'wb') as fo, open(base + '.err', 'wb') as fe:
            p = subprocess.run(['/usr/bin/time', '-f', '%e %U %S %M', '-o',
                                base + '.time'] + cmds[i], stdout=fo,
                               stderr=fe, env=e, stdin=subprocess.DEVNULL)
        try:
            with open(base + '.time') as f:
                last = f.read().split('\n')
            vals = [x for x in last if re.match(r'^[\d.]+ [\d.]+ [\d.]+ \d+$',
                                                x)][-1].split()
            return p.returncode, float(vals[1]) + float(vals[2]), int(vals[3])
        except (OSError, IndexError, ValueError):
            return p.returncode, 0.0, 0

    s0, t0c = instance_cpu(src), instance_cpu(tgt)
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(parallel) as ex:
        res = list(ex.map(one, range(len(cmds))))
    wall = time.time() - t0
    s1, t1c = instance_cpu(src), instance_cpu(tgt)
    return (wall, sum(r[1] for r in res), max(r[2] for r in res),
            [r[0] for r in res], s1 - s0, t1c - t0c)


class Tools:
    def __init__(self, env, src, imapmig, users, workdir):
        self.env = env
        self.src = src
        self.imapmig = imapmig
        self.users = users
        self.work = workdir
        self.has_batch = subprocess.run(
            [imapmig, 'batch', '--help'], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0

    # -- imapmig

    def imapmig_cmds(self, tgt, users, key, extra=()):
        cmds, envs = [], []
        for u in users:
            st = os.path.join(self.work, 'imapmig-state', key, u + '.db')
            os.makedirs(os.path.dirname(st), exist_ok=True)
            cmds.append([self.imapmig, 'sync', '--ca-file', self.env.ca.cert,
                         '--resolve', self.src.resolve_arg(),
                         '--resolve', tgt.resolve_arg(), '--state', st,
                         '--json'] + IMAPMIG_EXTRA + list(extra) +
                        [tool_url(self.src, u), tool_url(tgt, u)])
            envs.append({'IMAPMIG_SOURCE_PASSWORD': self.src.users[u],
                         'IMAPMIG_TARGET_PASSWORD': tgt.users[u]})
        return cmds, envs

    def imapmig_batch(self, tgt, users, key, phase, extra=()):
        """imapmig batch (when it exists): one process, --jobs 4."""
        name = 'bench-' + key
        st = os.path.join(self.work, 'imapmig-state', key, 'batch.db')
        os.makedirs(os.path.dirname(st), exist_ok=True)
        csvp = os.path.join(self.work, 'users-%s.csv' % key)
        with open(csvp, 'w') as f:
            f.write('EmailAddress,UserName,Password,TargetUserName,'
                    'TargetPassword\n')
            for u in users:
                # EmailAddress must look like one; the target login
                # is the TargetUserName column
                f.write('%s@bench.test,%s,%s,%s,%s\n' % (
                    u, u, self.src.users[u], u, tgt.users[u]))
        common = ['--state', st]
        if phase == 'initial':
            src_url = 'imaps://%s:%d' % (self.src.host, self.src.tool_port)
            tgt_url = 'imaps://%s:%d' % (tgt.host, tgt.tool_port)
            create = [self.imapmig, 'batch', 'create', name, '--source',
                      src_url, '--target', tgt_url, '--csv', csvp,
                      '--ca-file', self.env.ca.cert, '--resolve',
                      self.src.resolve_arg(), '--resolve', tgt.resolve_arg(),
                      '--jobs', str(JOBS)] + IMAPMIG_EXTRA + list(extra) + \
                common
            p = subprocess.run(create, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
            if p.returncode != 0:
                raise RuntimeError('batch create: %s' % p.stderr.decode(
                    'utf-8', 'replace')[-500:])
            return [[self.imapmig, 'batch', 'start', name] + common]
        return [[self.imapmig, 'batch', 'sync', name] + common]

    # -- mbsync

    def mbsync_conf(self, tgt, users, key):
        d = os.path.join(self.work, 'mbsync', key)
        os.makedirs(d, exist_ok=True)
        lines = []
        for u in users:
            for side, s in (('src', self.src), ('tgt', tgt)):
                lines += ['IMAPAccount %s-%s' % (side, u),
                          'Host %s' % harness.SERVER_ADDR,
                          'Port %d' % s.tool_port,
                          'User %s' % u,
                          'Pass "%s"' % s.users[u],
                          'SSLType IMAPS',
                          'CertificateFile %s' % self.env.ca.cert,
                          '',
                          'IMAPStore %s-%s' % (side, u),
                          'Account %s-%s' % (side, u),
                          '']
            sd = os.path.join(d, 'state', u)
            os.makedirs(sd, exist_ok=True)
            lines += ['Channel %s' % u,
                      'Far :src-%s:' % u,
                      'Near :tgt-%s:' % u,
                      # the source's folders by name: 'Patterns *' would
                      # also match the target's own special-use folders
                      # (Sent Items, ...) and fail on the source side
                      'Patterns %s' % ' '.join(
                          '"%s"' % f.replace('.', '/')
                          for f in sorted(harness.list_folders(self.src,
                                                               u))),
                      'Create Near',
                      'Remove None',
                      'Expunge None',
                      'Sync Pull',
                      'CopyArrivalDate yes',
                      'SyncState %s/' % sd,
                      '']
        conf = os.path.join(d, 'mbsyncrc')
        with open(conf, 'w') as f:
            f.write('\n'.join(lines))
        os.chmod(conf, 0o600)
        return conf

    def mbsync_cmds(self, tgt, users, key):
        conf = self.mbsync_conf(tgt, users, key)
        return [['mbsync', '-c', conf, '-q', u] for u in users]

    # -- dsync through imapc

    def dsync_conf(self, tgt):
        """Target's config plus imapc settings for reading the source."""
        conf = os.path.join(tgt.dir, 'dsync-imapc.conf')
        with open(conf, 'w') as f:
            f.write('!include %s\n'
                    'imapc_host = %s\n'
                    'imapc_port = %d\n'
                    'imapc_ssl = imaps\n'
                    'imapc_ssl_verify = yes\n'
                    'ssl_client_ca_file = %s\n'
                    'imapc_features = rfc822.size fetch-headers\n'
                    'mail_prefetch_count = 20\n'
                    'mail_fsync = never\n' % (
                        tgt.conf, harness.SERVER_ADDR, self.src.tool_port,
                        self.env.ca.cert))
        return conf

    def dsync_cmds(self, tgt, users):
        conf = self.dsync_conf(tgt)
        return [['doveadm', '-c', conf, '-o', 'imapc_user=%s' % u,
                 '-o', 'imapc_password=%s' % self.src.users[u],
                 'backup', '-R', '-u', u, 'imapc:'] for u in users]

    # -- ceiling: no IMAP at all

    def ceiling_cmds(self, tgt, users):
        return [['doveadm', '-c', tgt.conf, 'import', '-u', u, '-s',
                 'maildir:%s/Maildir:INDEX=MEMORY' % user_home(self.src, u),
                 '', 'all'] for u in users]


# ----------------------------------------------------------- verifying

def status(server, user):
    try:
        return {k: v['messages'] for k, v in
                harness.folder_status(server, user).items()}
    except RuntimeError as e:
        log('status failed for', user, e)
        return {}


def verify(tool, src_status, tgt, users):
    """Per-folder message counts on the target equal the source's.
    -> (ok, problems)."""
    problems = []
    for u in users:
        t = status(tgt, u)
        for f, n in src_status[u].items():
            if tool == 'imapmig':
                tn = harness.expected_target_name(f)
            else:
                tn = f.replace('.', '/')
            if n == 0 and tn not in t:
                continue
            if t.get(tn) != n:
                problems.append('%s %s: source %d, target %s (%s)' % (
                    u, f, n, t.get(tn), tn))
    return not problems, problems


def hash_check(src, tgt, user):
    """Full oracle comparison (sha256 of stored bytes, flags, INTERNALDATE)
    for one user; -> list of differences."""
    exp = harness.mapped(harness.fetch_all(src, user))
    got = harness.fetch_all(tgt, user)
    return harness.diff_oracles(exp, got)


# ------------------------------------------------------------ machine

def machine():
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(':', 1)[1].strip()
        except OSError:
            pass
        return '?'

    def cmd(*a):
        try:
            return subprocess.run(a, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT).stdout.decode(
                                      'utf-8', 'replace').strip()
        except OSError:
            return '?'
    mem = first('/proc/meminfo', 'MemTotal')
    ver = cmd('mbsync', '-v')
    return {
        'host': socket.gethostname(),
        'nproc': os.cpu_count(),
        'cpu': first('/proc/cpuinfo', 'model name'),
        'ram_gib': round(int(mem.split()[0]) / 1048576, 1)
        if mem != '?' else '?',
        'kernel': platform.release(),
        'dovecot': cmd('dovecot', '--version'),
        'mbsync': ver.splitlines()[0] if ver else '?',
        # IMAPMIG_REV: the commit an IMAPMIG=path binary was built from
        # (the repo's HEAD may have moved on since)
        'imapmig_rev': os.environ.get('IMAPMIG_REV') or cmd(
            'git', '-C', REPO, 'rev-parse', '--short', 'HEAD'),
        'python': platform.python_version(),
    }


# -------------------------------------------------------------- report

def fmt(x, nd=1):
    if x is None:
        return '-'
    if isinstance(x, float):
        return '%.*f' % (nd, x)
    return str(x)


def table(runs):
    head = ['scenario', 'tool', 'wall s', 'CPU s', 'peak RSS MB', 'msg/s',
            'MB/s', 'wall vs imapmig', 'source CPU s', 'target CPU s',
            'verified']
    rows = ['| ' + ' | '.join(head) + ' |',
            '|' + '|'.join('---' for _ in head) + '|']
    base = {}
    def is_base(r):
        return r.tool == 'imapmig' and not r.variant
    for r in runs:
        if is_base(r):
            base[r.scenario] = r.wall
    for r in runs:
        b = base.get(r.scenario)
        ratio = '%.2f×' % (r.wall / b) if b and r.wall and \
            not is_base(r) else ('1.00×' if is_base(r) else '-')
        mps = r.messages / r.wall if r.wall and r.messages else None
        mbs = r.bytes / 1e6 / r.wall if r.wall and r.bytes else None
        ok = {True: 'yes', False: 'NO', None: '-'}[r.verified]
        if any(rc != 0 for rc in r.rcs):
            ok += ' (rc %s)' % ','.join(str(x) for x in sorted(set(r.rcs)))
        rows.append('| ' + ' | '.join([
            r.scenario, r.label, fmt(r.wall, 2), fmt(r.cpu, 2),
            fmt(r.maxrss_kib / 1024.0 if r.maxrss_kib else None),
            fmt(mps, 0) if mps else '-', fmt(mbs, 1) if mbs else '-',
            ratio, fmt(r.src_cpu, 1), fmt(r.tgt_cpu, 1), ok]) + ' |')
    return '\n'.join(rows)


# ---------------------------------------------------------------- main

def load_source(src, cache_dir, users):
    """Link (or copy) the cached Maildirs into the source's homes, then let
    Dovecot index them and pull everything into the page cache."""
    t0 = time.time()
    for u in users:
        dst = user_home(src, u)
        if os.path.exists(dst):
            shutil.rmtree(dst)
        p = subprocess.run(['cp', '-al', os.path.join(cache_dir, u), dst],
                           stderr=subprocess.PIPE)
        if p.returncode != 0:
            shutil.rmtree(dst, ignore_errors=True)
            harness.run(['cp', '-a', os.path.join(cache_dir, u), dst])
    t_link = time.time() - t0
    # index every folder (Dovecot scans the Maildirs, assigns UIDs) and
    # cache what every tool asks for; read all files once (page cache)
    for u in users:
        src.doveadm('force-resync', '-u', u, '*')
        src.doveadm('mailbox', 'status', '-u', u, 'messages vsize', '*')
        subprocess.run(['doveadm', '-c', src.conf, 'fetch', '-u', u,
                        'uid flags date.received size.virtual '
                        'hdr.message-id', 'all'], stdout=subprocess.DEVNULL,
                       check=True)
    subprocess.run('find %s -type f -name "*bench*" -print0 | xargs -0 cat '
                   '>/dev/null' % ' '.join(user_home(src, u) for u in users),
                   shell=True, check=True)
    return t_link, time.time() - t0


def corpus_key(a):
    return 'corpus-v%d-u%d-m%d-s%d-seed%d-big%d' % (
        corpus.VERSION, a.users, a.messages, a.size_mb, a.seed, a.big_mb)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('mode', nargs='?', default='full',
                    choices=('full', 'quick'))
    ap.add_argument('--users', type=int)
    ap.add_argument('--messages', type=int)
    ap.add_argument('--size-mb', type=int, help='corpus size (MB)')
    ap.add_argument('--big-mb', type=int, help='the one big message (MB)')
    ap.add_argument('--new', type=int, help='new messages for the '
                    'incremental pass')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--tools', default='imapmig,mbsync,dsync,ceiling')
    ap.add_argument('--scenarios', default='large,all,noop,new')
    ap.add_argument('--perf', action='store_true',
                    help='also profile one large-user imapmig sync '
                    '(perf record -a) after the measured runs')
    ap.add_argument('--out', help='results dir (default bench/results for '
                    'full runs, the cache for quick ones)')
    ap.add_argument('--keep', action='store_true', help='keep the temp dir')
    ap.add_argument('--link', metavar='rtt=40ms,rate=20mbit',
                    help='emulate a slow / distant link between the '
                    'migrating tools and each server (bench/linkproxy.py): '
                    'round-trip delay and/or bandwidth per direction')
    ap.add_argument('--target-no-literal-plus', action='store_true',
                    help='target Dovecot without LITERAL+ (Exchange-like)')
    ap.add_argument('--zlib', action='store_true',
                    help='both Dovecots offer COMPRESS=DEFLATE (implied by '
                    '--compress in the imapmig options)')
    ap.add_argument('--imapmig-variant', action='append', default=[],
                    metavar='ARGS', help='one more imapmig run per scenario '
                    'with these extra options, e.g. --imapmig-variant='
                    '--compress (repeatable)')
    ap.add_argument('--tag', help='results file name: DATE-TAG.md instead '
                    'of DATE-HOST.md')
    a = ap.parse_args()
    link = parse_link(a.link) if a.link else None
    variants = [v.split() for v in a.imapmig_variant]
    if not a.zlib and any('--compress' in v for v in
                          variants + [IMAPMIG_EXTRA]):
        log('--compress asked for: both servers offer COMPRESS=DEFLATE '
            '(--zlib)')
        a.zlib = True
    quick = a.mode == 'quick'
    defaults = dict(users=2, messages=300, size_mb=8, big_mb=5, new=30) \
        if quick else dict(users=10, messages=30000, size_mb=1500,
                           big_mb=50, new=1000)
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    load_start = [round(x, 2) for x in os.getloadavg()]
    tools = [t for t in a.tools.split(',') if t]
    # (tool, extra imapmig options): each variant right after imapmig
    entries = []
    for t in tools:
        entries.append((t, []))
        if t == 'imapmig':
            entries += [('imapmig', v) for v in variants]
    scen = set(a.scenarios.split(','))
    imapmig = os.environ.get('IMAPMIG') or os.path.join(REPO, 'build-bench',
                                                        'imapmig')
    cache = os.environ.get('BENCH_CACHE') or os.path.join(HERE, '.cache')
    os.makedirs(cache, exist_ok=True)

    # ---- corpus (once)
    uid, gid = harness.mail_ids()
    cdir = os.path.join(cache, corpus_key(a))
    if not os.path.exists(os.path.join(cdir, 'manifest.json')):
        log('generating corpus into', cdir)
        corpus.generate(cdir, a.users, a.messages, a.size_mb * 1000000,
                        a.seed, a.big_mb * 1000000, uid=uid, gid=gid)
    with open(os.path.join(cdir, 'manifest.json')) as f:
        man = json.load(f)
    users = corpus.user_names(a.users)
    big = users[0]
    log('corpus: %d messages, %.1f MB, %d users (generated in %ss)' % (
        man['messages'], man['bytes'] / 1e6, len(users),
        man['generate_seconds']))

    BenchServer.bench_users = {u: corpus.user_password(u) for u in users}
    BenchEnv.link = link
    BenchEnv.zlib = a.zlib
    BenchEnv.target_literal_plus = not a.target_no_literal_plus
    env = BenchEnv(keep=a.keep)
    env.issue_certs()
    work = env.path('work')
    logs = env.path('logs')
    os.makedirs(work)
    src = env.server('source')
    t_link, t_load = load_source(src, cdir, users)
    log('source loaded: link %.1fs, link+index+cache %.1fs' % (t_link,
                                                              t_load))
    src_status = {u: status(src, u) for u in users}
    n_src = sum(sum(v.values()) for v in src_status.values())
    if n_src != man['messages']:
        raise SystemExit('source has %d messages, corpus %d' % (
            n_src, man['messages']))
    T = Tools(env, src, imapmig, users, work)
    runs = []
    labels = {
        'imapmig': 'imapmig sync',
        'mbsync': 'mbsync',
        'dsync': 'dsync (doveadm backup, imapc)',
        'ceiling': 'ceiling (doveadm import, no IMAP)',
    }

    def measure(scenario, tool, tgt, run_users, key, phase='initial',
                extra=()):
        label = labels[tool]
        if tool == 'imapmig':
            cmds = None
            if len(run_users) > 1 and T.has_batch:
                try:
                    cmds = T.imapmig_batch(tgt, run_users, key, phase,
                                           extra)
                    envs = None
                    label = 'imapmig batch (--jobs %d)' % JOBS
                except RuntimeError as e:
                    log('imapmig batch unusable, sync x%d instead: %s' % (
                        len(run_users), e))
                    T.has_batch = False
            if cmds is None:
                cmds, envs = T.imapmig_cmds(tgt, run_users, key, extra)
                if len(run_users) > 1:
                    label = 'imapmig sync x%d (-P%d)' % (len(run_users), JOBS)
            if extra:
                label += ' ' + ' '.join(extra)
        elif tool == 'mbsync':
            cmds, envs = T.mbsync_cmds(tgt, run_users, key), None
        elif tool == 'dsync':
            cmds, envs = T.dsync_cmds(tgt, run_users), None
        else:
            cmds, envs = T.ceiling_cmds(tgt, run_users), None
        if len(run_users) > 1 and tool != 'imapmig':
            label += ' (-P%d)' % JOBS
        r = Run(scenario, tool, label, ' '.join(extra))
        log('%s: %s ...' % (scenario, label))
        (r.wall, r.cpu, r.maxrss_kib, r.rcs, r.src_cpu,
         r.tgt_cpu) = run_procs(cmds, logs, '%s-%s' % (key, phase), src,
                                tgt, envs=envs)
        log('%s: %s: %.2fs wall, %.2fs CPU, rc %s' % (
            scenario, label, r.wall, r.cpu, sorted(set(r.rcs))))
        runs.append(r)
        return r

    def fill(r, run_users, scope_status):
        r.messages = sum(sum(scope_status[u].values()) for u in run_users)
        r.bytes = sum(man['users'][u]['bytes'] for u in run_users)

    def check(r, tgt, run_users, st):
        ok, probs = verify(r.tool, st, tgt, run_users)
        r.verified = ok
        r.notes += probs[:5]
        if probs:
            log('verify %s %s: %d problems, e.g. %s' % (
                r.scenario, r.tool, len(probs), probs[:3]))

    # ---- scenario: the large user, each tool from an empty target
    def key_of(tool, extra):
        return tool + ''.join('_' + re.sub(r'[^\w]+', '', x) for x in extra)

    if 'large' in scen:
        for tool, extra in entries:
            tgt = env.server('target')
            key = 'large-' + key_of(tool, extra)
            r = measure('large (%s)' % big, tool, tgt, [big], key,
                        extra=extra)
            fill(r, [big], src_status)
            check(r, tgt, [big], src_status)
            if 'noop' in scen and 'all' not in scen and tool != 'ceiling':
                # no 'all' scenario to follow: the no-change pass on the
                # large user's target
                r = measure('incremental, no change (%s)' % big, tool, tgt,
                            [big], key, phase='noop', extra=extra)
                check(r, tgt, [big], src_status)
            env.unlink(tgt)
            tgt.stop(fast=True)
            shutil.rmtree(tgt.dir, ignore_errors=True)

    # ---- scenario: all users; then the incremental passes
    targets = {}
    if 'all' in scen:
        for tool, extra in entries:
            ek = key_of(tool, extra)
            tgt = env.server('target')
            targets[ek] = (tool, extra, tgt)
            r = measure('all %d users' % len(users), tool, tgt, users,
                        'all-' + ek, extra=extra)
            fill(r, users, src_status)
            check(r, tgt, users, src_status)
            if tool == 'imapmig' and not extra:
                small = users[-1]
                d = hash_check(src, tgt, small)
                r.notes.append('hash check %s: %s' % (
                    small, 'equal' if not d else d[:3]))
                if d:
                    r.verified = False
                log('imapmig hash check on %s: %s' % (
                    small, 'equal' if not d else d[:3]))
            if 'noop' in scen and tool != 'ceiling':
                r = measure('incremental, no change', tool, tgt, users,
                            'all-' + ek, phase='noop', extra=extra)
                check(r, tgt, users, src_status)
            if tool == 'ceiling' or 'new' not in scen:
                env.unlink(tgt)
                tgt.stop(fast=True)
                shutil.rmtree(tgt.dir, ignore_errors=True)
                targets.pop(ek, None)

    if 'new' in scen and targets:
        # deliver new messages (MDA style, Maildir new/) spread over users
        per = [a.new // len(users) + (1 if i < a.new % len(users) else 0)
               for i in range(len(users))]
        nbytes = 0
        for i, u in enumerate(users):
            nbytes += corpus.new_messages(os.path.join(src.dir, 'home'), u,
                                          per[i], a.seed + 1000 + i,
                                          1000000 + i * 100000)
            src.doveadm('mailbox', 'status', '-u', u, 'messages', '*')
        src_status2 = {u: status(src, u) for u in users}
        log('delivered %d new messages (%.1f MB)' % (a.new, nbytes / 1e6))
        for ek, (tool, extra, tgt) in list(targets.items()):
            r = measure('incremental, %d new' % a.new, tool, tgt, users,
                        'all-' + ek, phase='new', extra=extra)
            r.messages = a.new
            r.bytes = nbytes
            check(r, tgt, users, src_status2)
            env.unlink(tgt)
            tgt.stop(fast=True)
            shutil.rmtree(tgt.dir, ignore_errors=True)

    # ---- optional profile of imapmig on the large user
    perf_txt = None
    if a.perf and shutil.which('perf'):
        tgt = env.server('target')
        cmds, envs = T.imapmig_cmds(tgt, [big], 'perf')
        pdata = env.path('perf.data')
        e = dict(os.environ)
        e.update(envs[0])
        log('perf: profiling a large-user imapmig sync (system-wide)')
        perr = open(env.path('perf.log'), 'wb')
        p = subprocess.Popen(['perf', 'record', '-a', '-F', '999',
                              '-o', pdata], stdout=perr, stderr=perr)
        time.sleep(1)
        subprocess.run(cmds[0], env=e, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        p.send_signal(signal.SIGINT)
        p.wait()
        perr.close()
        parts = []
        for title, args in (
                ('by process', ['--sort', 'comm']),
                ('imapmig symbols', ['--comm', 'imapmig', '--sort',
                                     'dso,symbol']),
                ('Dovecot imap symbols', ['--comm', 'imap', '--sort',
                                          'dso,symbol']),
                ('doveadm symbols', ['--comm', 'doveadm', '--sort',
                                     'dso,symbol'])):
            q = subprocess.run(['perf', 'report', '-i', pdata, '--stdio',
                                '--percentage', 'relative',
                                '--percent-limit', '1'] + args,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
            if q.returncode != 0:
                log('perf report:', q.stderr.decode('utf-8', 'replace')[-300:])
            lines = [x.rstrip() for x in q.stdout.decode('utf-8', 'replace')
                     .splitlines() if x.strip() and not x.startswith('#')]
            parts.append('### perf: %s\n\n```\n%s\n```\n' % (
                title, '\n'.join(lines[:25])))
        perf_txt = ('### perf record -a during one more large-user imapmig '
                    'sync (whole machine: other load shows too)\n\n' +
                    '\n'.join(parts))
        env.unlink(tgt)
        tgt.stop(fast=True)

    # ---- report
    m = machine()
    m['loadavg_start'] = load_start
    m['loadavg_end'] = [round(x, 2) for x in os.getloadavg()]
    m['corpus'] = {k: man[k] for k in ('messages', 'bytes', 'seed',
                                       'real_messages')}
    m['corpus']['users'] = len(users)
    m['corpus']['largest_user'] = {'name': big,
                                   'messages': man['users'][big]['messages'],
                                   'bytes': man['users'][big]['bytes'],
                                   'largest_message':
                                   man['users'][big]['largest']}
    m['load_seconds'] = round(t_load, 1)
    m['link_seconds'] = round(t_link, 1)
    m['options'] = {'link': link, 'zlib': a.zlib,
                    'target_literal_plus': not a.target_no_literal_plus,
                    'imapmig_args': IMAPMIG_EXTRA,
                    'imapmig_variants': variants}
    when = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
    md = ['# imapmig benchmark, %s%s' % (when, ' (quick)' if quick else ''),
          '',
          '- machine: %s, %d CPUs (%s), %.1f GiB RAM, Linux %s' % (
              m['host'], m['nproc'], m['cpu'], m['ram_gib'], m['kernel']),
          '- Dovecot %s both sides (source Maildir++, target sdbox), TLS '
          '(imaps) on loopback; %s; imapmig %s (%s)' % (
              m['dovecot'], m['mbsync'], m['imapmig_rev'], imapmig),
          '- corpus: %d users, %d messages, %.1f MB (seed %d, %d real '
          'messages from shared/corpus); large user %s: %d messages, '
          '%.1f MB, largest message %.1f MB' % (
              len(users), man['messages'], man['bytes'] / 1e6, a.seed,
              man['real_messages'], big, man['users'][big]['messages'],
              man['users'][big]['bytes'] / 1e6,
              man['users'][big]['largest'] / 1e6),
          '- network: %s' % (
              ('emulated link %s (bench/linkproxy.py; one link per server, '
               'each direction capped separately; dsync crosses only the '
               'source link, the ceiling none)' % link_text(link))
              if link else 'loopback, no emulated link'),
          '- target: %s; COMPRESS=DEFLATE offered: %s; imapmig options: '
          '%s' % ('no LITERAL+ (synchronising literals)'
                  if a.target_no_literal_plus else 'LITERAL+',
                  'yes (zlib, imap_zlib on both)' if a.zlib else 'no',
                  ' '.join(IMAPMIG_EXTRA) or '(none)'),
          '- load average before / after: %s / %s (other work on the '
          'machine shows in wall times)' % (
              ' '.join(map(str, m['loadavg_start'])),
              ' '.join(map(str, m['loadavg_end']))),
          '- source load (hard links from the cache + Dovecot index + '
          'page cache): %.1f s' % t_load,
          '- CPU s = user+sys of the migrating process(es); peak RSS = the '
          'largest single process; source/target CPU s = all processes of '
          'that Dovecot instance during the run',
          '', table(runs), '']
    notes = [(r.scenario, r.label, n) for r in runs for n in r.notes]
    if notes:
        md.append('Notes:\n')
        md += ['- %s / %s: %s' % n for n in notes]
        md.append('')
    if perf_txt:
        md.append(perf_txt)
    text = '\n'.join(md)
    print(text)
    out = a.out or (os.path.join(cache, 'results-quick') if quick else
                    os.path.join(HERE, 'results'))
    os.makedirs(out, exist_ok=True)
    stem = '%s-%s' % (datetime.datetime.now().strftime('%Y-%m-%d'),
                      a.tag or m['host'])
    with open(os.path.join(out, stem + '.md'), 'w') as f:
        f.write(text + '\n')
    with open(os.path.join(out, stem + '.json'), 'w') as f:
        json.dump({'machine': m, 'quick': quick,
                   'runs': [r.as_dict() for r in runs]}, f, indent=1)
    log('results:', os.path.join(out, stem + '.md'))
    env.close()
    bad = [r for r in runs if r.verified is False or
           any(rc != 0 for rc in r.rcs)]
    if bad:
        log('%d runs failed or did not verify' % len(bad))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
