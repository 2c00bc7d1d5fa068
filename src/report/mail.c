/* mail.c - send the batch report by SMTP with libcurl.
 *
 * The message is built with curl's MIME API: a multipart/mixed mail with
 * the text summary (quoted-printable) as the body and report.csv and
 * report.html attached (base64).  Our own headers (From, To, Subject,
 * Date, Message-ID) go in through CURLOPT_HTTPHEADER, which curl uses as
 * the mail's top-level headers for SMTP.
 *
 * Trust: TLS is always verified.  A ca_file is given to curl as
 * CURLOPT_CAINFO, which replaces the built-in CA bundle; Debian's libcurl
 * also has a CA path (/etc/ssl/certs), which stays in use, so public CAs
 * are still trusted there.  Elsewhere a ca_file means "only this CA".
 *
 * libcurl >= 7.84 initialises itself thread-safely in curl_easy_init(),
 * so this may be called from any thread; nothing here is global.
 */
#include "report/report.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include <curl/curl.h>

#include "util/mem.h"

/* ------------------------------------------------------------- URL */

struct smtp_url {
	bool tls;       /* smtps:// */
	char *user;     /* percent-decoded, or NULL */
	char *where;    /* "host:port" for errors */
	char *curl_url; /* the URL without user for CURLOPT_URL */
};

static void smtp_url_release(struct smtp_url *u)
{
	free(u->user);
	free(u->where);
	free(u->curl_url);
	memset(u, 0, sizeof(*u));
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* smtp[s]://[user@]host[:port][/path]: the user goes to CURLOPT_USERNAME
 * (decoded), a password in the URL is refused like everywhere else. */
static int smtp_url_parse(const char *text, struct smtp_url *u, struct err *err)
{
	memset(u, 0, sizeof(*u));
	const char *rest;
	if (!text || !text[0])
		return err_set(err, ERR_CONFIG, "no SMTP URL given");
	if (strncasecmp(text, "smtp://", 7) == 0) {
		rest = text + 7;
	} else if (strncasecmp(text, "smtps://", 8) == 0) {
		u->tls = true;
		rest = text + 8;
	} else {
		err_set(err, ERR_CONFIG, "\"%s\" is not an SMTP URL", text);
		err_hint(err, "use smtp://host:587 (STARTTLS) or smtps://host:465");
		return -1;
	}
	size_t alen = strcspn(rest, "/?#");
	const char *path = rest + alen;
	const char *at = NULL;
	for (const char *p = rest; p < path; p++)
		if (*p == '@')
			at = p;
	const char *host = rest;
	if (at) {
		if (memchr(rest, ':', (size_t)(at - rest))) {
			/* do not echo the URL: it holds a password */
			return err_set(err, ERR_CONFIG,
			               "the SMTP URL holds a password; give it in "
			               "$IMAPMIG_SMTP_PASSWORD or a password file instead");
		}
		if (at == rest)
			return err_set(err, ERR_CONFIG, "\"%s\": empty user name", text);
		char *user = xmalloc((size_t)(at - rest) + 1);
		size_t n = 0;
		for (const char *p = rest; p < at; p++) {
			if (*p == '%') {
				int hi = p + 2 < at ? hexval(p[1]) : -1;
				int lo = hi >= 0 ? hexval(p[2]) : -1;
				if (lo < 0 || (hi == 0 && lo == 0)) {
					free(user);
					return err_set(err, ERR_CONFIG,
					               "\"%s\": bad %%-escape in the user name",
					               text);
				}
				user[n++] = (char)(hi * 16 + lo);
				p += 2;
			} else {
				user[n++] = *p;
			}
		}
		user[n] = '\0';
		u->user = user;
		host = at + 1;
	}
	/* host and port, for the error messages */
	const char *hend = path, *port = NULL;
	if (*host == '[') {
		const char *close = memchr(host, ']', (size_t)(path - host));
		if (!close)
			goto bad_host;
		hend = close + 1;
		if (hend < path && *hend == ':')
			port = hend + 1;
		else if (hend != path)
			goto bad_host;
	} else {
		const char *colon = memchr(host, ':', (size_t)(path - host));
		if (colon) {
			hend = colon;
			port = colon + 1;
		}
	}
	if (hend == host)
		goto bad_host;
	for (const char *p = host; p < hend; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			goto bad_host;
	unsigned long pnum = u->tls ? 465 : 25; /* curl's defaults */
	if (port) {
		if (port == path)
			goto bad_host;
		pnum = 0;
		for (const char *p = port; p < path; p++) {
			if (!isdigit((unsigned char)*p) || pnum > 65535)
				goto bad_host;
			pnum = pnum * 10 + (unsigned long)(*p - '0');
		}
		if (pnum == 0 || pnum > 65535)
			goto bad_host;
	}
	for (const char *p = path; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			goto bad_host;
	u->where = xasprintf("%.*s:%lu", (int)(hend - host), host, pnum);
	u->curl_url = xasprintf("%s://%s", u->tls ? "smtps" : "smtp", host);
	return 0;

bad_host:
	err_set(err, ERR_CONFIG, "\"%s\": bad SMTP host or port", text);
	smtp_url_release(u);
	return -1;
}

/* ------------------------------------------------------ header text */

/* A mail address we are willing to put in a header and an envelope:
 * something@something, no spaces, controls or header punctuation. */
static bool address_ok(const char *a)
{
	if (!a || !a[0] || !strchr(a, '@'))
		return false;
	for (const unsigned char *p = (const unsigned char *)a; *p; p++)
		if (*p <= ' ' || *p == 0x7f || strchr("<>()[],;:\\\"", *p))
			return false;
	return true;
}

static void base64(struct buf *out, const uint8_t *d, size_t n)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)d[i + 1] << 8;
		if (i + 2 < n)
			v |= d[i + 2];
		char q[4] = {tab[v >> 18 & 63], tab[v >> 12 & 63],
		             i + 1 < n ? tab[v >> 6 & 63] : '=', i + 2 < n ? tab[v & 63] : '='};
		buf_append(out, q, 4);
	}
}

/* "Subject: ..." with the text made safe for a header: controls become
 * spaces (no header injection through a batch name), and non-ASCII text
 * is sent as RFC 2047 encoded words, cut at UTF-8 character boundaries so
 * each word stays under 76 characters.  Caller frees. */
static char *subject_header(const char *batch, const char *status)
{
	char *raw = xasprintf("imapmig batch %s: %s", batch ? batch : "",
	                      status && status[0] ? status : "Unknown");
	bool ascii = true;
	for (unsigned char *p = (unsigned char *)raw; *p; p++) {
		if (*p < ' ' || *p == 0x7f)
			*p = ' ';
		else if (*p >= 0x80)
			ascii = false;
	}
	struct buf h = BUF_INIT(0);
	buf_puts(&h, "Subject: ");
	if (ascii) {
		buf_puts(&h, raw);
	} else {
		const uint8_t *p = (const uint8_t *)raw;
		size_t len = strlen(raw);
		bool first = true;
		while (len) {
			size_t n = len < 39 ? len : 39;
			while (n < len && n > 1 && (p[n] & 0xc0) == 0x80)
				n--; /* never split a character */
			buf_puts(&h, first ? "=?UTF-8?B?" : "\r\n =?UTF-8?B?");
			base64(&h, p, n);
			buf_puts(&h, "?=");
			p += n;
			len -= n;
			first = false;
		}
	}
	free(raw);
	return buf_detach(&h, NULL);
}

/* "To: a@x, b@y", folded before lines grow long.  Caller frees. */
static char *to_header(const char *const *to, size_t n_to)
{
	struct buf h = BUF_INIT(0);
	size_t line = 4;
	buf_puts(&h, "To: ");
	for (size_t i = 0; i < n_to; i++) {
		size_t len = strlen(to[i]);
		if (i) {
			if (line + len + 2 > 76) {
				buf_puts(&h, ",\r\n ");
				line = 1;
			} else {
				buf_puts(&h, ", ");
				line += 2;
			}
		}
		buf_puts(&h, to[i]);
		line += len;
	}
	return buf_detach(&h, NULL);
}

/* RFC 5322 date, always in UTC and in English whatever the locale. */
static void date_header(time_t now, char *out, size_t outlen)
{
	static const char *const wday[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;
	gmtime_r(&now, &tm);
	snprintf(out, outlen, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000", wday[tm.tm_wday],
	         tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "Message-ID: <imapmig.TIME.RANDOM@from-domain>".  Caller frees. */
static char *message_id_header(time_t now, const char *from)
{
	uint64_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
		rnd = ((uint64_t)getpid() << 32) ^ (uint64_t)clock();
	const char *domain = strrchr(from, '@');
	domain = domain && domain[1] ? domain + 1 : "imapmig.invalid";
	return xasprintf("Message-ID: <imapmig.%lld.%016llx@%s>", (long long)now,
	                 (unsigned long long)rnd, domain);
}

/* The summary with CRLF line ends: the quoted-printable encoder keeps
 * CRLF as a line break but would encode a bare LF as "=0A". */
static char *crlf_text(const struct buf *text, size_t *len_r)
{
	struct buf b = BUF_INIT(0);
	for (size_t i = 0; i < text->len; i++) {
		if (text->data[i] == '\n' && (i == 0 || text->data[i - 1] != '\r'))
			buf_putc(&b, '\r');
		buf_putc(&b, (char)text->data[i]);
	}
	return buf_detach(&b, len_r);
}

/* -------------------------------------------------- the conversation */

/* What the SMTP conversation showed, for the error: the last command we
 * sent (its verb only: AUTH lines carry credentials) and the last reply
 * that refused something. */
struct trace {
	char verb[16];
	char rcpt[256];  /* the last RCPT address */
	char reply[512]; /* the last 4xx/5xx reply line */
	int code;        /* its code, 0 if none */
	bool more;       /* that reply has more lines to come */
};

static int on_debug(CURL *h, curl_infotype type, char *data, size_t size, void *arg)
{
	struct trace *t = arg;
	if (type == CURLINFO_HEADER_OUT) {
		static const char *const verbs[] = {"EHLO", "HELO", "STARTTLS", "AUTH",
		                                    "MAIL", "RCPT", "DATA",     "QUIT"};
		for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
			size_t n = strlen(verbs[i]);
			if (size >= n && strncasecmp(data, verbs[i], n) == 0 &&
			    (size == n || data[n] == ' ' || data[n] == '\r')) {
				snprintf(t->verb, sizeof(t->verb), "%s", verbs[i]);
				break;
			}
		}
		if (strcmp(t->verb, "RCPT") == 0 && size > 9) {
			const char *lt = memchr(data, '<', size);
			const char *gt = lt ? memchr(lt, '>', size - (size_t)(lt - data)) : NULL;
			if (lt && gt)
				snprintf(t->rcpt, sizeof(t->rcpt), "%.*s", (int)(gt - lt - 1),
				         lt + 1);
		}
	} else if (type == CURLINFO_HEADER_IN && size >= 4 && (data[0] == '4' || data[0] == '5') &&
	           isdigit((unsigned char)data[1]) && isdigit((unsigned char)data[2])) {
		size_t n = size;
		while (n && (data[n - 1] == '\r' || data[n - 1] == '\n'))
			n--;
		int code = (data[0] - '0') * 100 + (data[1] - '0') * 10 + (data[2] - '0');
		size_t have = strlen(t->reply);
		if (t->more && code == t->code && have + 2 < sizeof(t->reply)) {
			/* the next line of a multi-line reply: keep its text */
			snprintf(t->reply + have, sizeof(t->reply) - have, " %.*s",
			         n > 4 ? (int)(n - 4) : 0, data + 4);
		} else {
			snprintf(t->reply, sizeof(t->reply), "%.*s", (int)n, data);
		}
		t->code = code;
		t->more = data[3] == '-';
	}
	return 0;
}

/* Remove every copy of the password from s (a server might echo it). */
static void scrub(char *s, const char *password)
{
	size_t n = password ? strlen(password) : 0;
	if (n < 3)
		return; /* too short to tell from ordinary words */
	char *p;
	while ((p = strstr(s, password)) != NULL) {
		memset(p, '*', 3);
		memmove(p + 3, p + n, strlen(p + n) + 1);
	}
}

/* Turn a failed transfer into an error a person can act on. */
static int mail_error(CURLcode rc, const char *errbuf, const struct trace *t,
                      const struct smtp_url *u, const struct mail_opts *o, struct err *err)
{
	enum err_kind kind;
	const char *hint = NULL;
	const char *text = errbuf[0] ? errbuf : curl_easy_strerror(rc);

	switch (rc) {
	case CURLE_LOGIN_DENIED:
		kind = ERR_CONFIG;
		hint = "check the SMTP user in the URL and the SMTP password";
		break;
	case CURLE_AUTH_ERROR:
		kind = ERR_CONFIG;
		hint = "the server offers no login method we can use";
		break;
	case CURLE_USE_SSL_FAILED:
		kind = ERR_CONFIG;
		hint = "the server does not offer STARTTLS; use smtps:// if it has a TLS port";
		break;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		kind = ERR_CONFIG;
		hint = "the server's certificate is not trusted for this name; give its CA "
		       "with --ca-file";
		break;
	case CURLE_SSL_CONNECT_ERROR:
		kind = ERR_TRANSIENT;
		hint = "if this persists: smtps:// wants TLS from the start (port 465), "
		       "smtp:// STARTTLS (port 587)";
		break;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		kind = ERR_CONFIG;
		break;
	case CURLE_OUT_OF_MEMORY:
	case CURLE_FAILED_INIT:
	case CURLE_BAD_FUNCTION_ARGUMENT:
	case CURLE_UNKNOWN_OPTION:
	case CURLE_NOT_BUILT_IN:
		kind = ERR_INTERNAL;
		break;
	default:
		/* A refusal in the conversation (MAIL, RCPT, DATA): a 5xx is
		 * final (fix the address or the size), a 4xx is "try later",
		 * and anything without a reply is the network. */
		if (t->code >= 500) {
			kind = ERR_CONFIG;
			if (strcmp(t->verb, "RCPT") == 0)
				hint = "the server refused this recipient; check --notify";
			else if (strcmp(t->verb, "MAIL") == 0)
				hint = "the server refused the sender; check --smtp-from";
			else if (strcmp(t->verb, "AUTH") == 0)
				hint = "check the SMTP user in the URL and the SMTP password";
		} else {
			kind = ERR_TRANSIENT;
		}
		break;
	}

	if (strcmp(t->verb, "RCPT") == 0 && t->code >= 400 && t->rcpt[0])
		err_set(err, kind, "mailing the report: recipient %s refused: %s", t->rcpt, text);
	else
		err_set(err, kind, "mailing the report: %s", text);
	if (t->code >= 400)
		err_server(err, t->reply, strlen(t->reply));
	if (hint)
		err_hint(err, "%s", hint);
	err_where(err, SIDE_NONE, u->where, u->user, NULL);
	scrub(err->what, o->password);
	scrub(err->server, o->password);
	return -1;
}

static int check_opts(const struct mail_opts *o, const struct smtp_url *u, struct err *err)
{
	if (!address_ok(o->from))
		return err_set(err, ERR_CONFIG, "\"%s\" is not a mail address (the report's From)",
		               o->from ? o->from : "");
	if (o->n_to == 0)
		return err_set(err, ERR_CONFIG, "no recipient for the report");
	for (size_t i = 0; i < o->n_to; i++)
		if (!address_ok(o->to[i]))
			return err_set(err, ERR_CONFIG, "\"%s\" is not a mail address",
			               o->to[i] ? o->to[i] : "");
	if (u->user && !o->password) {
		err_set(err, ERR_CONFIG,
		        "the SMTP URL names user %s but no SMTP password was given", u->user);
		err_hint(err, "set $IMAPMIG_SMTP_PASSWORD or --smtp-password-file");
		return -1;
	}
	if (!u->user && o->password) {
		err_set(err, ERR_CONFIG, "an SMTP password was given but the URL names no user");
		err_hint(err, "put the user in the URL: smtp://user@host:587");
		return -1;
	}
	return 0;
}

static curl_mimepart *add_part(curl_mime *mime, const char *data, size_t len, const char *type,
                               const char *filename, const char *encoder)
{
	curl_mimepart *part = curl_mime_addpart(mime);
	if (!part)
		return NULL;
	if (curl_mime_data(part, data, len) || curl_mime_type(part, type) ||
	    curl_mime_encoder(part, encoder) || (filename && curl_mime_filename(part, filename)))
		return NULL;
	return part;
}

int report_mail(const struct report *r, const struct mail_opts *o, struct err *err)
{
	struct smtp_url u;
	struct buf text = BUF_INIT(0), csv = BUF_INIT(0), html = BUF_INIT(0);
	struct curl_slist *rcpt = NULL, *headers = NULL;
	curl_mime *mime = NULL;
	CURL *h = NULL;
	char *subject = NULL, *to = NULL, *msgid = NULL, *crlf = NULL;
	int ret = -1;

	if (smtp_url_parse(o->smtp_url, &u, err) < 0)
		return -1;
	if (check_opts(o, &u, err) < 0)
		goto out;
	if (report_write_text(r, &text, err) < 0 || report_write_csv(r, &csv, err) < 0 ||
	    report_write_html(r, &html, err) < 0)
		goto out;

	size_t crlf_len;
	crlf = crlf_text(&text, &crlf_len);

	time_t now = time(NULL);
	char date[64];
	date_header(now, date, sizeof(date));
	subject = subject_header(r->batch, r->status);
	to = to_header(o->to, o->n_to);
	msgid = message_id_header(now, o->from);
	char *from = xasprintf("From: %s", o->from);
	struct curl_slist *tmp;
	const char *hdrs[] = {date, from, to, subject, msgid, "Auto-Submitted: auto-generated"};
	for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
		tmp = curl_slist_append(headers, hdrs[i]);
		if (!tmp) {
			free(from);
			err_set(err, ERR_INTERNAL, "mailing the report: out of memory");
			goto out;
		}
		headers = tmp;
	}
	free(from);
	for (size_t i = 0; i < o->n_to; i++) {
		tmp = curl_slist_append(rcpt, o->to[i]);
		if (!tmp) {
			err_set(err, ERR_INTERNAL, "mailing the report: out of memory");
			goto out;
		}
		rcpt = tmp;
	}

	h = curl_easy_init();
	if (!h) {
		err_set(err, ERR_INTERNAL, "mailing the report: libcurl failed to start");
		goto out;
	}
	mime = curl_mime_init(h);
	if (!mime ||
	    !add_part(mime, crlf, crlf_len, "text/plain; charset=utf-8", NULL,
	              "quoted-printable") ||
	    !add_part(mime, buf_cstr(&csv), csv.len, "text/csv; charset=utf-8", "report.csv",
	              "base64") ||
	    !add_part(mime, buf_cstr(&html), html.len, "text/html; charset=utf-8", "report.html",
	              "base64")) {
		err_set(err, ERR_INTERNAL, "mailing the report: building the message failed");
		goto out;
	}

	char errbuf[CURL_ERROR_SIZE] = "";
	struct trace t;
	memset(&t, 0, sizeof(t));
	long timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 60000;
	long timeout_s = (timeout_ms + 999) / 1000;
	CURLcode rc = CURLE_OK;
	/* every option below is known to 7.88; a failure here is a bug */
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(h, opt, val);                                        \
	} while (0)
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_URL, u.curl_url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
#endif
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_USE_SSL, o->allow_plaintext ? (long)CURLUSESSL_TRY : (long)CURLUSESSL_ALL);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (o->ca_file)
		SET(CURLOPT_CAINFO, o->ca_file);
	if (u.user) {
		SET(CURLOPT_USERNAME, u.user);
		SET(CURLOPT_PASSWORD, o->password);
	}
	SET(CURLOPT_MAIL_FROM, o->from);
	SET(CURLOPT_MAIL_RCPT, rcpt);
	SET(CURLOPT_HTTPHEADER, headers);
	SET(CURLOPT_MIMEPOST, mime);
	SET(CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	SET(CURLOPT_SERVER_RESPONSE_TIMEOUT, timeout_s);
	/* a transfer that stalls for the whole timeout is dead */
	SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SET(CURLOPT_LOW_SPEED_TIME, timeout_s);
	/* the debug callback sees the server's replies for our errors; it
	 * replaces curl's own printing, so nothing reaches stderr */
	SET(CURLOPT_DEBUGFUNCTION, on_debug);
	SET(CURLOPT_DEBUGDATA, &t);
	SET(CURLOPT_VERBOSE, 1L);
#undef SET
	if (rc != CURLE_OK) {
		err_set(err, ERR_INTERNAL, "mailing the report: setting up libcurl: %s",
		        curl_easy_strerror(rc));
		goto out;
	}

	rc = curl_easy_perform(h);
	if (rc != CURLE_OK) {
		mail_error(rc, errbuf, &t, &u, o, err);
		goto out;
	}
	ret = 0;

out:
	curl_easy_cleanup(h); /* before the mime and lists it points at */
	curl_mime_free(mime);
	curl_slist_free_all(headers);
	curl_slist_free_all(rcpt);
	free(subject);
	free(to);
	free(msgid);
	free(crlf);
	buf_release(&text);
	buf_release(&csv);
	buf_release(&html);
	smtp_url_release(&u);
	return ret;
}
