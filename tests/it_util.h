/* it_util — helpers for integration tests: real processes, real sockets.
 *
 * it_env_start() runs phxsim on a free loopback port and phxd with a config
 * written for it, each in a private temp directory; it_env_stop() ends them.
 * Spawned processes die with the test process (PR_SET_PDEATHSIG), so a
 * failed assertion leaves nothing behind.
 */
#ifndef PHX_IT_UTIL_H
#define PHX_IT_UTIL_H

#include <stddef.h>
#include <sys/types.h>

#define IT_TIMEOUT_MS 8000

struct it_env {
	char dir[256];
	char sock[300];         /* phxd client socket */
	char ctl[300];          /* phxsim control socket */
	char conf[300];
	int port;
	pid_t sim, phxd;
	int sim_out;            /* phxsim stdout */
	char log[300];          /* phxd's stderr, when it_phxd_start_log() started it */
};

struct it_client {
	int fd;
	char buf[1 << 20];
	size_t len;
};

/* Appends to argv[argc..] the end of a systemd-socket-activate command line
 * that runs phxd as it_phxd_start() does: -E for the sanitizer variables
 * (san: the caller's buffers), PHX_TEST_WRAPPER, phxd -c CONF.  Returns the
 * new argc; argv[argc] is NULL.  argv needs room for about 28 more. */
int it_activate_tail(struct it_env *e, char **argv, int argc, char san[2][512], char *wrap,
		     size_t wraplen);

/* Monotonic milliseconds; an environment variable or a default when it is
 * unset or empty. */
long it_now_ms(void);
const char *it_env_or(const char *name, const char *def);

/* Starts phxsim (extra args may be NULL) and phxd with the global and
 * endpoint config lines given (may be NULL). */
void it_env_start(struct it_env *e, const char *sim_args, const char *global_conf,
		  const char *endpoint_conf);
void it_sim_start(struct it_env *e, const char *sim_args);
void it_phxd_start(struct it_env *e, const char *global_conf, const char *endpoint_conf);
/* As it_phxd_start(), with phxd's stderr in the file e->log (phxd.stderr
 * in e->dir, made empty here; it_env_stop() removes it) instead of the
 * test's stderr, for tests that read what phxd logs. */
void it_phxd_start_log(struct it_env *e, const char *global_conf, const char *endpoint_conf);
/* The lines of e->log holding needle (0 when there is no log). */
int it_log_count(struct it_env *e, const char *needle);
/* Polls e->log until it has at least n lines holding needle: 1 when it
 * did within timeout_ms. */
int it_wait_log(struct it_env *e, const char *needle, int n, int timeout_ms);
void it_env_stop(struct it_env *e);
/* it_env_start() without processes: the temp directory and the paths. */
void it_env_prepare(struct it_env *e);
/* Writes e->conf as it_phxd_start() does (socket e->sock, endpoint "main"
 * at phxsim's port). */
void it_write_conf(struct it_env *e, const char *global_conf, const char *endpoint_conf);
/* Splits PHX_TEST_WRAPPER into at most max words of argv, kept in buf;
 * returns their number. */
int it_wrapper_argv(char *buf, size_t n, char **argv, int max);
/* Runs argv (argv[0] looked up in PATH), dying with the test process.  env:
 * "NAME=VALUE" is set and "NAME" unset in the child; err_fd >= 0 becomes
 * its stderr. */
pid_t it_spawn(char *const argv[], char *const env[], int err_fd);
/* One line (newline dropped) from a plain descriptor: 0, or -1 on timeout
 * or EOF. */
int it_fd_line(int fd, char *out, size_t cap, int timeout_ms);
/* Waits for pid to exit, sending nothing: its exit status (128 + signal
 * when killed), or -1 after timeout_ms. */
int it_wait_exit(pid_t pid, int timeout_ms);
/* 1 once path exists; 0 after timeout_ms or when pid (if > 0) exited. */
int it_wait_path(const char *path, pid_t pid, int timeout_ms);
/* 1 once a connection to path succeeds (the file exists before listen()
 * is called, so its presence is not enough); 0 as it_wait_path(). */
int it_wait_listening(const char *path, pid_t pid, int timeout_ms);
/* The full path of an executable found in PATH (static buffer), or NULL. */
const char *it_which(const char *prog);
/* Sends SIGTERM and waits; returns the exit status or -1. */
int it_stop_pid(pid_t pid, int timeout_ms);

/* phxsim control: sends a command, returns the reply line (static buffer). */
const char *it_ctl(struct it_env *e, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Polls "CHANNELS topic" until it answers "OK n"; 1 when it did in time. */
int it_wait_channels(struct it_env *e, const char *topic, int n, int timeout_ms);

/* Resident memory of pid in KiB (VmRSS of /proc/PID/status), -1 when it
 * cannot be read.  Under PHX_TEST_WRAPPER it is the tool's process. */
long it_rss_kib(pid_t pid);
/* 1 when PHX_TEST_WRAPPER runs phxd under valgrind. */
int it_under_valgrind(void);
/* 1 when the tests (and so phxd) are built with AddressSanitizer. */
int it_asan_build(void);
/* In an ASan build, sets ASAN_OPTIONS quarantine_size_mb=mb for the
 * processes started from now on (for RSS measurements: the default 256 MiB
 * quarantine of freed blocks grows the RSS for a long time); else nothing. */
void it_asan_quarantine_mb(int mb);
/* phxd's control socket (control.sock beside e->sock): sends one command and
 * returns the first line of the answer (static buffer), or NULL. */
const char *it_phxd_ctl(struct it_env *e, const char *cmd);

struct it_client *it_connect(struct it_env *e);
void it_close(struct it_client *c);
void it_send(struct it_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void it_send_raw(struct it_client *c, const void *p, size_t n);
/* Next line (without the newline) or NULL on timeout or EOF; static buffer
 * overwritten by the next call. */
const char *it_line(struct it_client *c, int timeout_ms);
/* Skips lines until one starts with prefix; returns it or NULL. */
const char *it_wait_prefix(struct it_client *c, const char *prefix, int timeout_ms);
/* 1 when the peer closed (EOF) within timeout, reading and dropping data. */
int it_wait_eof(struct it_client *c, int timeout_ms);

/* Fails the test unless the next line equals want. */
#define IT_EXPECT(c, want) do { \
		const char *_l = it_line((c), IT_TIMEOUT_MS); \
		ck_assert_msg(_l != NULL, "expected '%s', got nothing", (want)); \
		ck_assert_str_eq(_l, (want)); \
	} while (0)

#define IT_EXPECT_PREFIX(c, pfx) do { \
		const char *_l = it_line((c), IT_TIMEOUT_MS); \
		ck_assert_msg(_l != NULL, "expected '%s...', got nothing", (pfx)); \
		ck_assert_msg(strncmp(_l, (pfx), strlen(pfx)) == 0, \
			      "expected '%s...', got '%s'", (pfx), _l); \
	} while (0)

#endif
