/* log — leveled logging to stderr.
 *
 * When JOURNAL_STREAM names our stderr, lines carry a "<N>" syslog priority
 * prefix for journald; otherwise a timestamp.  Callers never log secrets:
 * log_redact_url() masks user info, query values and fragments before a URL
 * is printed.
 */
#ifndef PHX_LOG_H
#define PHX_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_ERR = 3, LOG_LVL_WARN = 4, LOG_LVL_NOTICE = 5,
		 LOG_LVL_INFO = 6, LOG_LVL_DEBUG = 7 };

void log_init(const char *ident);
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* "error", "warning", "notice", "info", "debug" → level; -1 if unknown. */
int log_level_parse(const char *s);

void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_err(...)    log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...)   log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...)   log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)  log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

/* Copies url into out (size n, cut short to fit) with user info replaced by
 * "***@", every query value by "***" and a fragment by "#***" (so
 * "wss://u:pw@h/s?t=x#f" keeps "wss:", "@h/s?t=" and "#").  Meant for
 * any text that might be a URL, valid or not: an unencoded '/', '?' or '#' in
 * a password still counts as user info (but see log.c). */
void log_redact_url(const char *url, char *out, size_t n);

#endif
