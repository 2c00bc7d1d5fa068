#include "util/url.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/mem.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode [s, s+len); NULL when malformed or it decodes to a NUL. */
static char *pct_decode(const char *s, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%') {
			if (len - i < 3) {
				free(out);
				return NULL;
			}
			int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
			if (h < 0 || l < 0 || (h == 0 && l == 0)) {
				free(out);
				return NULL;
			}
			out[o++] = (char)(h * 16 + l);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	return out;
}

int imap_url_parse(const char *text, struct imap_url *url_r, struct err *err)
{
	memset(url_r, 0, sizeof(*url_r));
	const char *p;
	if (strncasecmp(text, "imaps://", 8) == 0) {
		url_r->tls = true;
		url_r->port = 993;
		p = text + 8;
	} else if (strncasecmp(text, "imap://", 7) == 0) {
		url_r->port = 143;
		p = text + 7;
	} else {
		err_set(err, ERR_CONFIG, "'%s' is not an IMAP URL", text);
		err_hint(err, "write imaps://user@host (TLS, port 993) or imap://user@host "
			      "(STARTTLS, port 143)");
		return -1;
	}
	const char *end = p + strcspn(p, "/?#");
	if (*end == '/' && end[1] != '\0') {
		err_set(err, ERR_CONFIG, "'%s': a path after the host is not supported", text);
		err_hint(err, "choose folders with --include/--exclude");
		return -1;
	}
	/* the last '@' before the host separates the user */
	const char *at = NULL;
	for (const char *q = p; q < end; q++)
		if (*q == '@')
			at = q;
	const char *hostpart = p;
	if (at) {
		for (const char *q = p; q < at; q++) {
			if (*q == ':') {
				err_set(err, ERR_CONFIG,
					"'%s' contains a password; passwords never go on the "
					"command line",
					"(URL with password)");
				err_hint(err, "use --source-password-file/--target-password-file or "
					      "$IMAPMIG_SOURCE_PASSWORD/$IMAPMIG_TARGET_PASSWORD");
				return -1;
			}
		}
		url_r->user = pct_decode(p, (size_t)(at - p));
		if (!url_r->user || !url_r->user[0]) {
			imap_url_release(url_r);
			return err_set(err, ERR_CONFIG, "'%s': the user name is empty or badly "
							"percent-encoded", text);
		}
		hostpart = at + 1;
	}
	const char *hend = end, *portp = NULL;
	if (*hostpart == '[') {
		const char *rb = memchr(hostpart, ']', (size_t)(end - hostpart));
		if (!rb) {
			imap_url_release(url_r);
			return err_set(err, ERR_CONFIG, "'%s': unterminated [IPv6] address", text);
		}
		url_r->host = xstrndup(hostpart + 1, (size_t)(rb - hostpart - 1));
		if (rb + 1 < end) {
			if (rb[1] != ':') {
				imap_url_release(url_r);
				return err_set(err, ERR_CONFIG, "'%s': junk after ]", text);
			}
			portp = rb + 2;
		}
	} else {
		const char *colon = memchr(hostpart, ':', (size_t)(end - hostpart));
		if (colon) {
			hend = colon;
			portp = colon + 1;
		}
		url_r->host = xstrndup(hostpart, (size_t)(hend - hostpart));
	}
	if (!url_r->host[0]) {
		imap_url_release(url_r);
		return err_set(err, ERR_CONFIG, "'%s': the host name is missing", text);
	}
	for (const char *q = url_r->host; *q; q++) {
		if (!isalnum((unsigned char)*q) && !strchr(".-_:", *q)) {
			err_set(err, ERR_CONFIG, "'%s': '%s' is not a valid host name", text,
				url_r->host);
			imap_url_release(url_r);
			return -1;
		}
	}
	if (portp) {
		char *pe;
		errno = 0;
		unsigned long port = strtoul(portp, &pe, 10);
		if (pe != end || pe == portp || port == 0 || port > 65535 || errno) {
			imap_url_release(url_r);
			return err_set(err, ERR_CONFIG, "'%s': the port must be a number from 1 "
							"to 65535", text);
		}
		url_r->port = (uint16_t)port;
	}
	return 0;
}

void imap_url_release(struct imap_url *url)
{
	free(url->host);
	free(url->user);
	url->host = url->user = NULL;
}

char *imap_url_key(const struct imap_url *url)
{
	return xasprintf("%s://%s@%s:%u", url->tls ? "imaps" : "imap",
			 url->user ? url->user : "", url->host, (unsigned)url->port);
}

int size_parse(const char *text, uint64_t *size_r)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)text[0]))
		return -1;
	unsigned long long n = strtoull(text, &end, 10);
	if (errno)
		return -1;
	uint64_t mult = 1;
	switch (toupper((unsigned char)*end)) {
	case '\0': break;
	case 'K': mult = 1024; end++; break;
	case 'M': mult = 1024 * 1024; end++; break;
	case 'G': mult = 1024ull * 1024 * 1024; end++; break;
	default: return -1;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || n > UINT64_MAX / mult)
		return -1;
	*size_r = n * mult;
	return 0;
}

int resolve_lookup(const char *const *rules, size_t n, const char *host, char **addr_r,
		   struct err *err)
{
	*addr_r = NULL;
	size_t hl = strlen(host);
	for (size_t i = 0; i < n; i++) {
		const char *r = rules[i];
		const char *colon = strchr(r, ':');
		if (!colon || colon == r || !colon[1]) {
			free(*addr_r);
			*addr_r = NULL;
			return err_set(err, ERR_CONFIG, "--resolve '%s': expected HOST:ADDR", r);
		}
		if ((size_t)(colon - r) != hl || strncasecmp(r, host, hl) != 0)
			continue;
		const char *addr = colon + 1;
		size_t len = strlen(addr);
		free(*addr_r);
		if (addr[0] == '[' && len > 2 && addr[len - 1] == ']')
			*addr_r = xstrndup(addr + 1, len - 2);
		else
			*addr_r = xstrdup(addr);
	}
	return 0;
}
