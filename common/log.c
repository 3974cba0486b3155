#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_level = LOG_LVL_INFO;
static int log_journal;
static const char *log_ident = "phxd";

void log_init(const char *ident)
{
	const char *js = getenv("JOURNAL_STREAM");
	struct stat st;

	log_ident = ident;
	log_journal = 0;
	if (js && fstat(STDERR_FILENO, &st) == 0) {
		unsigned long long dev, ino;
		if (sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
		    dev == (unsigned long long)st.st_dev &&
		    ino == (unsigned long long)st.st_ino)
			log_journal = 1;
	}
}

void log_set_level(enum log_level lvl) { log_level = lvl; }
enum log_level log_get_level(void) { return log_level; }

int log_level_parse(const char *s)
{
	static const struct { const char *name; int lvl; } t[] = {
		{ "error", LOG_LVL_ERR }, { "err", LOG_LVL_ERR },
		{ "warning", LOG_LVL_WARN }, { "warn", LOG_LVL_WARN },
		{ "notice", LOG_LVL_NOTICE }, { "info", LOG_LVL_INFO },
		{ "debug", LOG_LVL_DEBUG },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcasecmp(s, t[i].name) == 0)
			return t[i].lvl;
	return -1;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[2048];
	size_t n = 0;
	va_list ap;

	if (lvl > log_level)
		return;
	if ((int)lvl < 0)
		lvl = LOG_LVL_ERR;
	if (log_journal) {
		n = (size_t)snprintf(line, sizeof(line), "<%d>", (int)lvl);
	} else {
		static const char *names[] = { "emerg", "alert", "crit", "error", "warning",
					       "notice", "info", "debug" };
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ld %s[%d] %s: ",
				      ts.tv_nsec / 1000000, log_ident, (int)getpid(),
				      names[lvl]);
	}
	if (n > sizeof(line) / 2)
		n = sizeof(line) / 2;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += (size_t)m;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	/* One line per message: newlines inside become spaces. */
	for (size_t i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}

/* Where the authority (the part that may hold "user:password@") starts:
 * after "SCHEME://", or at 0 when url has no scheme. */
static size_t log_url_auth_start(const char *url)
{
	size_t i = 0;
	if (!((url[0] >= 'a' && url[0] <= 'z') || (url[0] >= 'A' && url[0] <= 'Z')))
		return 0;
	while (url[i] && (isalnum((unsigned char)url[i]) || strchr("+-.", url[i])))
		i++;
	return strncmp(url + i, "://", 3) == 0 ? i + 3 : 0;
}

/* The '@' that ends the user info, or NULL.  Passwords are often pasted
 * unencoded, with '/', '?', '#' or '=' in them, so this is not RFC 3986's
 * authority: it is the last '@' before the first '=' that follows a '?' (a
 * query value, where "email=a@b" is fine).  A path holding '@' is masked
 * too; that only hides text. */
static const char *log_url_userinfo_end(const char *a)
{
	const char *q = strchr(a, '?');
	const char *stop = q ? strchr(q, '=') : NULL;
	const char *at = NULL;
	for (const char *p = a; *p && p != stop; p++)
		if (*p == '@')
			at = p;
	return at;
}

/* Appends s (len bytes) when it fits with the final NUL; 0, or -1 when not. */
static int log_put(char *out, size_t n, size_t *o, const char *s, size_t len)
{
	if (*o + len >= n)
		return -1;
	memcpy(out + *o, s, len);
	*o += len;
	return 0;
}

void log_redact_url(const char *url, char *out, size_t n)
{
	size_t o = 0;
	int in_query = 0, in_value = 0;
	const char *p = url;

	if (n == 0)
		return;
	/* "SCHEME://" as it is, then "***@" for any user info; what does not
	 * fit is left off, never a byte of what is masked */
	size_t a = log_url_auth_start(url);
	const char *at = log_url_userinfo_end(url + a);
	if (at) {
		if (log_put(out, n, &o, url, a) < 0 || log_put(out, n, &o, "***@", 4) < 0)
			p = "";
		else
			p = at + 1;
	}
	/* every query value becomes "***", a fragment "#***" */
	for (; *p; p++) {
		char c = *p;
		if (c == '#') {
			log_put(out, n, &o, "#***", 4);
			break;
		}
		if (in_query && c == '=' && !in_value) {
			in_value = 1;
			if (log_put(out, n, &o, "=***", 4) < 0)
				break;
			continue;
		}
		if (c == '?' && !in_query)
			in_query = 1;
		else if (in_query && c == '&')
			in_value = 0;
		else if (in_value)
			continue;
		if (log_put(out, n, &o, &c, 1) < 0)
			break;
	}
	out[o] = '\0';
}
