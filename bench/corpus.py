#!/usr/bin/env python3
"""Seeded, realistic benchmark corpus, generated once into a cache dir as
ready-made Maildir++ trees (one per user) that the source Dovecot uses as
they are: hard-linked (or copied) into its home directories.

Why Maildir files and not IMAP APPEND or doveadm save: loading 1.5 GB must
be fast and must not depend on any of the tools under test.  Each file is
what Dovecot itself would have written: LF line ends, flags in the name
(":2,FRS" plus keyword letters from dovecot-keywords), the file's mtime as
INTERNALDATE, S= (physical) and W= (virtual, CRLF) sizes in the name so
Dovecot never has to read a message to learn its size.

Layout:  CACHE/corpus-<key>/manifest.json
         CACHE/corpus-<key>/<user>/Maildir/{cur,new,tmp}, .Sent/cur, ...
"""

import base64
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests',
                                'integration'))
import harness  # noqa: E402

VERSION = 3         # bump when the generator's output changes

# Folder -> share of a user's messages.  Parents (Archive, Projects,
# Projects.x) exist as real, empty folders.  Sent/Drafts/Trash/Junk are
# the source server's special-use names.
FOLDERS = [
    ('INBOX', 0.28), ('Sent', 0.14), ('Drafts', 0.01), ('Trash', 0.03),
    ('Junk', 0.03), ('Archive', 0.0), ('Archive.2019', 0.06),
    ('Archive.2020', 0.07), ('Archive.2021', 0.07), ('Archive.2022', 0.08),
    ('Archive.2023', 0.08), ('Archive.2024', 0.09), ('Projects', 0.0),
    ('Projects.x', 0.02), ('Projects.x.y', 0.04),
]
KEYWORDS = ['$Label1', 'NonJunk', '$Forwarded']   # letters a, b, c

WORDS = ('the be to of and a in that have it for not on with he as you do '
         'at this but his by from they we say her she or an will my one all '
         'would there their what so up out if about who get which go me '
         'when make can like time no just him know take people into year '
         'your good some could them see other than then now look only come '
         'its over think also back after use two how our work first well '
         'way even new want because any these give day most us meeting '
         'project budget report invoice quarterly review draft attached '
         'please regards thanks schedule deadline server migration mailbox '
         'Grüße Übersicht 日本語 会議 報告 café naïve').split()
NAMES = ['Alice Martin', 'Bob Chen', 'Carol Dubois', 'Dave Kowalski',
         'Erin Yamada', 'Frank Müller', 'Grace Okafor', 'Heidi Larsen',
         'Ivan Petrov', 'Judy Alvarez', 'Mallory Smith', 'Oscar Silva',
         '山田 太郎', 'Zoë Lefèvre']
DOMAINS = ['example.org', 'example.com', 'corp.example.net', 'mail.test']
ATTACH = [('application/pdf', 'pdf'), ('image/jpeg', 'jpg'),
          ('application/zip', 'zip'),
          ('application/vnd.openxmlformats-officedocument.'
           'spreadsheetml.sheet', 'xlsx')]
MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep',
          'Oct', 'Nov', 'Dec']
DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun']


def user_names(n):
    return ['user%02d' % i for i in range(n)]


def user_password(u):
    return 'Bench-%s-pw' % u


def rfc2822_date(t, tz_min):
    lt = time.gmtime(t + tz_min * 60)
    sign = '+' if tz_min >= 0 else '-'
    return '%s, %02d %s %04d %02d:%02d:%02d %s%02d%02d' % (
        DAYS[lt.tm_wday], lt.tm_mday, MONTHS[lt.tm_mon - 1], lt.tm_year,
        lt.tm_hour, lt.tm_min, lt.tm_sec, sign, abs(tz_min) // 60,
        abs(tz_min) % 60)


class Gen:
    def __init__(self, seed):
        self.rnd = random.Random(seed)
        # a pool of paragraphs: text bodies are drawn from it (fast)
        r = self.rnd
        self.paras = []
        for _ in range(600):
            words = r.choices(WORDS, k=r.randint(20, 120))
            lines, cur = [], []
            for w in words:
                cur.append(w)
                if len(' '.join(cur)) > 66:
                    lines.append(' '.join(cur))
                    cur = []
            if cur:
                lines.append(' '.join(cur))
            self.paras.append('\n'.join(lines) + '\n')
        self.corpus = []

    def load_real(self, n):
        """Up to n real messages from ../shared/corpus (LF line ends)."""
        try:
            sample = harness.corpus_sample(n, seed=self.rnd.randint(1, 1 << 30))
        except OSError:
            return
        for _, raw, when in sample:
            self.corpus.append((raw.replace(b'\r\n', b'\n'), when))

    def text(self, size):
        out, n = [], 0
        while n < size:
            p = self.rnd.choice(self.paras)
            out.append(p + '\n')
            n += len(p.encode()) + 1
        return ''.join(out)

    def addr(self):
        n = self.rnd.choice(NAMES)
        local = re.sub(r'[^a-z]', '', n.lower().split()[0]) or 'user'
        return n, '%s@%s' % (local, self.rnd.choice(DOMAINS))

    def message(self, size, when, user, folder, seq):
        """-> bytes (LF line ends) of roughly size bytes."""
        r = self.rnd
        fn, fa = self.addr()
        me = '%s@bench.test' % user
        if folder == 'Sent':
            frm, to = '%s <%s>' % (user.capitalize(), me), '%s <%s>' % (fn, fa)
        else:
            frm, to = '"%s" <%s>' % (fn, fa), '%s <%s>' % (user.capitalize(), me)
        subj = ' '.join(r.choices(WORDS, k=r.randint(2, 8)))
        if r.random() < 0.2:
            subj = 'Re: ' + subj
        tz = r.choice([0, 60, 120, -300, 540, 330])
        h = ['Return-Path: <%s>' % fa,
             'Received: from mx%d.%s (mx.%s [192.0.2.%d]) by imap.source.test'
             ' with ESMTPS id %08X; %s' % (r.randint(1, 9), fa.split('@')[1],
                                           fa.split('@')[1], r.randint(1, 254),
                                           r.getrandbits(32),
                                           rfc2822_date(when, 0)),
             'From: %s' % frm, 'To: %s' % to,
             'Subject: %s' % (subj if subj.isascii() else
                              '=?UTF-8?B?%s?=' % base64.b64encode(
                                  subj.encode()).decode()),
             'Date: %s' % rfc2822_date(when - r.randint(1, 300), tz)]
        if r.random() >= 0.03:          # ~3% without Message-ID
            h.append('Message-ID: <%d.%d.%s@%s>' % (
                when, seq, hashlib.md5(('%s%d' % (user, seq)).encode())
                .hexdigest()[:12], fa.split('@')[1]))
        if r.random() < 0.3:
            h.append('Cc: "%s" <%s>' % self.addr())
        h.append('MIME-Version: 1.0')
        head_len = sum(len(x.encode()) + 1 for x in h) + 120
        if size < 8000:
            body = self.text(max(size - head_len, 40))
            h.append('Content-Type: text/plain; charset=utf-8')
            h.append('Content-Transfer-Encoding: 8bit')
            return ('\n'.join(h) + '\n\n' + body).encode()
        bnd = '----=_Part_%d_%d' % (seq, r.getrandbits(40))
        h.append('Content-Type: multipart/mixed; boundary="%s"' % bnd)
        txt = self.text(r.randint(500, 4000))
        parts = ['This is a multi-part message in MIME format.\n',
                 '--%s\nContent-Type: text/plain; charset=utf-8\n'
                 'Content-Transfer-Encoding: 8bit\n\n%s' % (bnd, txt)]
        used = head_len + len(txt.encode()) + 200
        n_att = 1 if size < 200000 else r.randint(1, 3)
        remain = max(size - used, 1000)
        for i in range(n_att):
            ctype, ext = r.choice(ATTACH)
            raw_len = int(remain / n_att * 57 / 78)
            data = base64.encodebytes(r.randbytes(raw_len)).decode()
            parts.append(
                '--%s\nContent-Type: %s; name="file%d.%s"\n'
                'Content-Transfer-Encoding: base64\n'
                'Content-Disposition: attachment; filename="file%d.%s"\n\n%s'
                % (bnd, ctype, i, ext, i, ext, data))
        parts.append('--%s--\n' % bnd)
        return ('\n'.join(h) + '\n\n' + '\n'.join(parts)).encode()


def flags_for(rnd, folder):
    f = set()
    if folder in ('Sent', 'Drafts') or rnd.random() < 0.85:
        f.add('S')
    if folder == 'Drafts':
        f.add('D')
    if rnd.random() < 0.05:
        f.add('F')
    if folder == 'INBOX' and rnd.random() < 0.25 or rnd.random() < 0.05:
        f.add('R')
    kw = ''
    if rnd.random() < 0.03:
        kw += 'a'
    if folder == 'INBOX' and rnd.random() < 0.08:
        kw += 'b'
    if rnd.random() < 0.02:
        kw += 'c'
    return ''.join(sorted(f)) + kw


def folder_dir(maildir, folder):
    return maildir if folder == 'INBOX' else os.path.join(maildir,
                                                          '.' + folder)


def make_folder(maildir, folder):
    d = folder_dir(maildir, folder)
    for sub in ('cur', 'new', 'tmp'):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    with open(os.path.join(d, 'dovecot-keywords'), 'w') as f:
        f.write(''.join('%d %s\n' % (i, k) for i, k in enumerate(KEYWORDS)))
    return d


def write_message(d, sub, name_base, raw, when, flags):
    vsize = len(raw) + raw.count(b'\n')
    name = '%s,S=%d,W=%d' % (name_base, len(raw), vsize)
    if sub == 'cur':
        name += ':2,' + flags
    p = os.path.join(d, sub, name)
    with open(p, 'wb') as f:
        f.write(raw)
    os.utime(p, (when, when))
    return len(raw)


def folder_year_range(folder):
    m = re.match(r'Archive\.(\d{4})$', folder)
    if m:
        y = int(m.group(1))
        return (time.mktime((y, 1, 1, 0, 0, 0, 0, 0, 0)),
                time.mktime((y + 1, 1, 1, 0, 0, 0, 0, 0, 0)) - 1)
    return (time.mktime((2025, 1, 1, 0, 0, 0, 0, 0, 0)),
            time.mktime((2025, 12, 31, 0, 0, 0, 0, 0, 0)))


def plan(users, messages, size_bytes, seed, median):
    """Per-message (user, folder, size) list; deterministic."""
    rnd = random.Random(seed * 7919 + 1)
    mean = size_bytes / max(messages, 1)
    sigma = math.sqrt(2 * math.log(mean / median)) if mean > median * 1.05 \
        else 0.6
    mu = math.log(median)
    names = user_names(users)
    big_share = max(0.3, 1.0 / users)
    per_user = [int(messages * big_share)]
    rest = messages - per_user[0]
    for i in range(1, users):
        per_user.append(rest // (users - 1) + (1 if i <= rest % (users - 1)
                                               else 0))
    if users == 1:
        per_user = [messages]
    fnames = [f for f, _ in FOLDERS]
    weights = [w for _, w in FOLDERS]
    out = []
    for u, n in zip(names, per_user):
        for _ in range(n):
            s = int(min(max(rnd.lognormvariate(mu, sigma), 1024),
                        10 * 1024 * 1024))
            out.append((u, rnd.choices(fnames, weights)[0], s))
    return out


def generate(dest, users, messages, size_bytes, seed, big_bytes,
             median=20000, real_share=0.1, uid=None, gid=None):
    """Build the corpus in dest (made via a temp dir, renamed at the end).
    -> manifest dict."""
    t0 = time.time()
    tmp = dest + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    g = Gen(seed)
    items = plan(users, messages, size_bytes, seed, median)
    n_real = int(len(items) * real_share)
    if n_real:
        g.load_real(n_real)
    man = {'version': VERSION, 'seed': seed, 'users': {}, 'messages': 0,
           'bytes': 0, 'keywords': KEYWORDS}
    names = user_names(users)
    for u in names:
        md = os.path.join(tmp, u, 'Maildir')
        for f, _ in FOLDERS:
            make_folder(md, f)
        with open(os.path.join(md, 'subscriptions'), 'w') as f:
            f.write(''.join(x + '\n' for x, _ in FOLDERS if x != 'INBOX'))
        man['users'][u] = {'folders': {f: 0 for f, _ in FOLDERS},
                           'messages': 0, 'bytes': 0, 'largest': 0}
    real_i = 0
    for seq, (u, folder, size) in enumerate(items):
        md = os.path.join(tmp, u, 'Maildir')
        lo, hi = folder_year_range(folder)
        when = int(g.rnd.uniform(lo, hi))
        if real_i < len(g.corpus) and size < 200000 and \
                g.rnd.random() < real_share * 1.5:
            raw, w = g.corpus[real_i]
            real_i += 1
            when = w or when
        else:
            raw = g.message(size, when, u, folder, seq)
        fl = flags_for(g.rnd, folder)
        n = write_message(folder_dir(md, folder), 'cur',
                          '%d.M%dP%d.bench' % (when, seq, 1000 + seq % 97),
                          raw, when, fl)
        uu = man['users'][u]
        uu['folders'][folder] += 1
        uu['messages'] += 1
        uu['bytes'] += n
        uu['largest'] = max(uu['largest'], n)
    if big_bytes:
        u = names[0]
        when = int(time.mktime((2025, 3, 14, 12, 0, 0, 0, 0, 0)))
        raw = g.message(big_bytes, when, u, 'INBOX', len(items))
        n = write_message(os.path.join(tmp, u, 'Maildir'), 'cur',
                          '%d.M%dP1.bench' % (when, len(items)), raw, when,
                          'S')
        uu = man['users'][u]
        uu['folders']['INBOX'] += 1
        uu['messages'] += 1
        uu['bytes'] += n
        uu['largest'] = max(uu['largest'], n)
    for uu in man['users'].values():
        man['messages'] += uu['messages']
        man['bytes'] += uu['bytes']
    man['real_messages'] = real_i
    man['generate_seconds'] = round(time.time() - t0, 1)
    if uid is not None:
        for root, dirs, files in os.walk(tmp):
            for x in dirs + files:
                os.lchown(os.path.join(root, x), uid, gid)
            os.chmod(root, 0o700)
    with open(os.path.join(tmp, 'manifest.json'), 'w') as f:
        json.dump(man, f, indent=1)
    os.rename(tmp, dest)
    return man


def new_messages(maildir_home, user, n, seed, start_seq):
    """Deliver n new messages the way an MDA does (Maildir new/): INBOX
    mostly, some into Sent's cur.  -> bytes written."""
    g = Gen(seed)
    total = 0
    md = os.path.join(maildir_home, user, 'Maildir')
    now = int(time.time())
    for i in range(n):
        size = int(min(max(g.rnd.lognormvariate(math.log(15000), 1.0), 1024),
                       2 * 1024 * 1024))
        folder = 'INBOX' if i % 5 else 'Sent'
        raw = g.message(size, now - i, user, folder, start_seq + i)
        base = '%d.M%dP9.benchnew' % (now - i, start_seq + i)
        if folder == 'INBOX':
            total += write_message(md, 'new', base, raw, now - i, '')
        else:
            total += write_message(os.path.join(md, '.Sent'), 'cur', base,
                                   raw, now - i, 'S')
    return total


if __name__ == '__main__':
    import argparse
    ap = argparse.ArgumentParser(description='generate a bench corpus')
    ap.add_argument('dest')
    ap.add_argument('--users', type=int, default=2)
    ap.add_argument('--messages', type=int, default=300)
    ap.add_argument('--size-mb', type=float, default=10)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--big-mb', type=float, default=5)
    a = ap.parse_args()
    m = generate(a.dest, a.users, a.messages, int(a.size_mb * 1e6), a.seed,
                 int(a.big_mb * 1e6))
    print(json.dumps({k: v for k, v in m.items() if k != 'users'}))
