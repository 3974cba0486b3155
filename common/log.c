#include "log.h"

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

void log_redact_url(const char *url, char *out, size_t n)
{
	size_t o = 0;
	int in_query = 0, in_value = 0;

	if (n == 0)
		return;
	for (const char *p = url; *p && o + 4 < n; p++) {
		char c = *p;
		if (c == '?' && !in_query) {
			in_query = 1;
			out[o++] = c;
			continue;
		}
		if (in_query && c == '&') {
			in_value = 0;
			out[o++] = c;
			continue;
		}
		if (in_query && c == '=' && !in_value) {
			in_value = 1;
			out[o++] = '=';
			memcpy(out + o, "***", 3);
			o += 3;
			continue;
		}
		if (in_value)
			continue;
		out[o++] = c;
	}
	out[o] = '\0';
}
