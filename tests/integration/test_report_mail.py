#!/usr/bin/env python3
"""report_mail against a real SMTP server (smtp_sink.py, aiosmtpd).

The C side is test_mail_env in tests/unit/test_report.c (the unit test
binary next to $IMAPMIG): it mails a fixed report to $IMAPMIG_SMTP_URL,
or, with $IMAPMIG_SMTP_EXPECT_FAIL=KIND, asserts the failure's kind, that
the error names the host and never the password.  Here we start sinks
(STARTTLS + AUTH, implicit TLS, plain, refusing a recipient), run it, and
read what arrived with Python's email package: headers, the summary, and
both attachments (CSV through the csv module, HTML).
"""

import csv
import io
import os
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import smtp_sink  # noqa: E402

USER = 'reporter'
PASSWORD = 'Smtp-pw-4c1d9e!k'
TO = ['admin@example.org', 'ops@example.net']


def test_binary():
    d = os.path.dirname(os.path.abspath(H.imapmig_binary()))
    return os.path.join(d, 'test_report')


def run_c(binary, url, expect_fail=None, password=PASSWORD, ca=None,
          to=TO, plaintext=False, batch=None):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith('IMAPMIG_SMTP_'):
            del env[k]
    env['IMAPMIG_SMTP_URL'] = url
    env['IMAPMIG_SMTP_TO'] = ','.join(to)
    env['IMAPMIG_SMTP_FROM'] = 'imapmig@example.org'
    if password:
        env['IMAPMIG_SMTP_PASSWORD'] = password
    if ca:
        env['IMAPMIG_SMTP_CA'] = ca
    if plaintext:
        env['IMAPMIG_SMTP_PLAINTEXT'] = '1'
    if expect_fail:
        env['IMAPMIG_SMTP_EXPECT_FAIL'] = expect_fail
    if batch:
        env['IMAPMIG_SMTP_BATCH'] = batch
    p = subprocess.run([binary], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    out = p.stdout.decode('utf-8', 'replace')
    ran = '[       OK ] test_mail_env' in out
    line = ''
    for ln in out.splitlines():
        if ln.startswith('mail error') or ln.startswith('mail sent'):
            line = ln
    return p.returncode == 0 and ran, line, out


def check_message(ck, path, msg):
    ck.eq(stat.S_IMODE(os.stat(path).st_mode), 0o600, 'message file is 0600')
    ck.eq(str(msg['Subject']), 'imapmig batch b1: Synced', 'Subject')
    ck.eq(str(msg['From']), 'imapmig@example.org', 'From')
    ck.eq(sorted(a.strip() for a in str(msg['To']).split(',')), sorted(TO),
          'To lists both recipients')
    ck.eq(msg.get_all('X-Sink-Rcpt-To'), ['<%s>' % a for a in TO],
          'envelope has both recipients')
    ck.eq(str(msg['X-Sink-Mail-From']), '<imapmig@example.org>',
          'envelope sender')
    ck.ok(msg['Date'] is not None and msg['Date'].datetime is not None,
          'Date header parses')
    mid = str(msg['Message-ID'] or '')
    ck.ok(mid.startswith('<imapmig.') and mid.endswith('@example.org>'),
          'Message-ID %s' % mid)
    ck.eq(str(msg['Auto-Submitted']), 'auto-generated', 'Auto-Submitted')
    ck.eq(msg.get_content_type(), 'multipart/mixed', 'multipart/mixed')

    body = msg.get_body(preferencelist=('plain',))
    text = body.get_content() if body is not None else ''
    ck.ok(text.startswith('Batch b1: Synced\n'), 'summary first line')
    ck.ok('4 users: 1 Synced, 1 Completed, 1 Failed, 1 Stopped\n' in text,
          'summary counts users by status')
    ck.ok('Failed:\n  carol@example.org: source imap.old.example' in text
          and '[AUTHENTICATIONFAILED]' in text,
          'summary lists the failed user with the server\'s words')

    atts = {a.get_filename(): a for a in msg.iter_attachments()}
    ck.eq(sorted(atts), ['report.csv', 'report.html'], 'two attachments')
    if 'report.csv' in atts:
        a = atts['report.csv']
        ck.eq(a.get_content_type(), 'text/csv', 'CSV content type')
        ck.eq(a['Content-Transfer-Encoding'], 'base64', 'CSV is base64')
        raw = a.get_payload(decode=True).decode('utf-8')
        rows = list(csv.reader(io.StringIO(raw, newline='')))
        ck.eq(rows[0][:3], ['EmailAddress', 'SourceUser', 'Status'],
              'CSV header row')
        users = rows[1:rows.index([])] if [] in rows else []
        ck.eq([r[0] for r in users],
              ['alice@example.org', 'carol@example.org', '山田@example.jp',
               'dave&co@example.org'], 'CSV user rows (UTF-8 intact)')
        by = {r[0]: r for r in users}
        carol = by.get('carol@example.org', [''] * 13)
        ck.eq(carol[1], 'carol, "the boss"', 'CSV quoting round-trips')
        ck.ok(carol[2] == 'Failed' and carol[12].endswith('\nsecond line'),
              'CSV error field keeps its newline')
        ck.eq(by.get('alice@example.org', [''] * 13)[3], '1234',
              'CSV items synced')
        skipped = rows[rows.index([]) + 1:] if [] in rows else []
        ck.eq(skipped[:1], [['User', 'Folder', 'UID', 'Date', 'Subject',
                             'Size', 'Reason']], 'CSV skipped-items header')
        ck.eq(len(skipped) - 1, 2, 'CSV lists two skipped items')
    if 'report.html' in atts:
        a = atts['report.html']
        ck.eq(a.get_content_type(), 'text/html', 'HTML content type')
        h = a.get_payload(decode=True).decode('utf-8')
        ck.ok('<title>imapmig batch b1: Synced</title>' in h,
              'HTML names the batch')
        ck.ok('<script' not in h and '&lt;script&gt;' in h,
              'HTML escapes a hostile source user name')


def main():
    ck = H.Check('report_mail')
    binary = test_binary()
    if not os.access(binary, os.X_OK):
        print('unit test binary not found at %s' % binary, file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix='imapmig-mail-')
    procs = []
    try:
        ca = H.CA(os.path.join(tmp, 'ca'))
        cert, key = ca.issue('localhost')
        p_tls, p_smtps, p_plain, p_refuse = H.free_ports(4)
        d_tls, d_smtps, d_plain, d_refuse = (
            os.path.join(tmp, n) for n in ('tls', 'smtps', 'plain', 'refuse'))
        procs.append(smtp_sink.spawn(d_tls, p_tls, tls_cert=cert,
                                     tls_key=key, auth=(USER, PASSWORD)))
        procs.append(smtp_sink.spawn(d_smtps, p_smtps, tls_cert=cert,
                                     tls_key=key, smtps=True,
                                     auth=(USER, PASSWORD)))
        procs.append(smtp_sink.spawn(d_plain, p_plain))
        procs.append(smtp_sink.spawn(d_refuse, p_refuse, tls_cert=cert,
                                     tls_key=key, auth=(USER, PASSWORD),
                                     reject_rcpt=['ops@example.net']))
        url = 'smtp://%s@localhost:%d' % (USER, p_tls)

        # 1. STARTTLS + AUTH PLAIN/LOGIN, verified against our CA
        ok, line, out = run_c(binary, url, ca=ca.cert)
        ck.ok(ok, 'STARTTLS + AUTH: mail sent (%s)' % line)
        msgs = smtp_sink.read_messages(d_tls)
        ck.eq(len(msgs), 1, 'one message arrived')
        if msgs:
            path, msg = msgs[0]
            ck.eq(str(msg['X-Sink-TLS']), 'yes', 'sent over TLS')
            ck.eq(str(msg['X-Sink-Auth']), USER, 'authenticated as the URL user')
            with open(path, 'rb') as f:
                ck.ok(PASSWORD.encode() not in f.read(),
                      'the password is not in the message')
            check_message(ck, path, msg)

        # 2. wrong password: config error naming the server, its words
        ok, line, out = run_c(binary, url, ca=ca.cert,
                              password='Wrong-pw-77aa', expect_fail='config')
        ck.ok(ok, 'wrong password: report_mail fails with ERR_CONFIG')
        ck.ok('localhost:%d' % p_tls in line and '535' in line
              and 'Wrong-pw-77aa' not in line,
              'wrong password: error names host and server reply (%s)' % line)
        ck.eq(len(smtp_sink.read_messages(d_tls)), 1,
              'wrong password: nothing delivered')

        # 3. no CA: the certificate is not trusted
        ok, line, out = run_c(binary, url, expect_fail='config')
        ck.ok(ok and 'certificate' in line,
              'untrusted certificate refused (%s)' % line)

        # 4. a refused recipient
        ok, line, out = run_c(
            binary, 'smtp://%s@localhost:%d' % (USER, p_refuse), ca=ca.cert,
            expect_fail='config')
        ck.ok(ok and 'ops@example.net' in line and '550' in line,
              'refused recipient: config error naming it (%s)' % line)
        ck.eq(len(smtp_sink.read_messages(d_refuse)), 0,
              'refused recipient: nothing delivered')

        # 5. a server without STARTTLS: refused unless plaintext allowed
        plain = 'smtp://localhost:%d' % p_plain
        ok, line, out = run_c(binary, plain, password=None,
                              expect_fail='config')
        ck.ok(ok and 'STARTTLS' in line,
              'no STARTTLS: refused by default (%s)' % line)
        ck.eq(len(smtp_sink.read_messages(d_plain)), 0,
              'no STARTTLS: nothing delivered')
        ok, line, out = run_c(binary, plain, password=None, plaintext=True)
        ck.ok(ok, 'no STARTTLS, allow_plaintext: sent (%s)' % line)
        msgs = smtp_sink.read_messages(d_plain)
        ck.ok(len(msgs) == 1 and str(msgs[0][1]['X-Sink-TLS']) == 'no',
              'allow_plaintext: delivered in plain text')

        # 6. implicit TLS (smtps://)
        ok, line, out = run_c(
            binary, 'smtps://%s@localhost:%d' % (USER, p_smtps), ca=ca.cert)
        ck.ok(ok, 'smtps:// + AUTH: sent (%s)' % line)
        msgs = smtp_sink.read_messages(d_smtps)
        ck.ok(len(msgs) == 1 and str(msgs[0][1]['X-Sink-Auth']) == USER,
              'smtps:// delivered, authenticated')

        # 6b. a batch name with Japanese (RFC 2047, folded) and a line
        # break trying to smuggle in a header
        name = '営業部の移行バッチ・第二段階 <sales>\r\nBcc: evil@example.com'
        ok, line, out = run_c(
            binary, 'smtps://%s@localhost:%d' % (USER, p_smtps), ca=ca.cert,
            batch=name)
        ck.ok(ok, 'non-ASCII batch name: sent (%s)' % line)
        msgs = smtp_sink.read_messages(d_smtps)
        if ck.eq(len(msgs), 2, 'second smtps message arrived'):
            m = msgs[1][1]
            ck.eq(str(m['Subject']), 'imapmig batch 営業部の移行バッチ・第二段階 '
                  '<sales>  Bcc: evil@example.com: Synced',
                  'Subject decodes, line break neutralised')
            ck.ok(m['Bcc'] is None, 'no injected Bcc header')
            ck.eq(m.get_all('X-Sink-Rcpt-To'), ['<%s>' % a for a in TO],
                  'only the real recipients')
            with open(msgs[1][0], 'rb') as f:
                raw = f.read()
            head = raw.split(b'\r\n\r\n')[0].split(b'\r\n')
            i = next(i for i, ln in enumerate(head)
                     if ln.startswith(b'Subject:'))
            subj = [head[i]] + [ln for ln in head[i + 1:i + 8]
                                if ln.startswith(b' ')]
            ck.ok(len(subj) > 1 and all(len(ln) <= 76 for ln in subj),
                  'Subject folded into encoded words under 76 characters')

        # 7. nothing listening: a transient error
        port = H.free_ports(1)[0]
        ok, line, out = run_c(
            binary, 'smtp://%s@localhost:%d' % (USER, port), ca=ca.cert,
            expect_fail='transient')
        ck.ok(ok and 'localhost:%d' % port in line,
              'connection refused: transient, names the server (%s)' % line)
        if ck.failures:
            print(out[-3000:])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if not os.environ.get('IMAPMIG_KEEP_TMP'):
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print('kept', tmp)
    return ck.finish()


if __name__ == '__main__':
    H.main_wrapper(main)
