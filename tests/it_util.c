#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "it_util.h"
#include "daemon/router.h"

#ifdef IT_NO_CHECK
/* Built for the benchmarks: a failed requirement ends the program. */
#include <stdio.h>
#include <stdlib.h>
#define IT_REQUIRE(cond, ...) do { \
		if (!(cond)) { \
			fprintf(stderr, "it_util: " __VA_ARGS__); \
			fputc('\n', stderr); \
			exit(3); \
		} \
	} while (0)
#else
#include <check.h>
#define IT_REQUIRE(cond, ...) ck_assert_msg(cond, __VA_ARGS__)
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long it_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

const char *it_env_or(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v && *v ? v : def;
}

/* env: "NAME=VALUE" is set, "NAME" unset, in the child only.  err_fd >= 0
 * becomes the child's stderr. */
static pid_t spawn_env(char *const argv[], char *const env[], int *out_fd, int err_fd)
{
	int pfd[2] = { -1, -1 };
	if (out_fd)
		IT_REQUIRE(pipe(pfd) == 0, "pipe: %s", strerror(errno));
	pid_t parent = getpid();
	pid_t pid = fork();
	IT_REQUIRE(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (out_fd) {
			dup2(pfd[1], STDOUT_FILENO);
			close(pfd[0]);
			close(pfd[1]);
		}
		if (err_fd >= 0)
			dup2(err_fd, STDERR_FILENO);
		for (int i = 0; env && env[i]; i++) {
			if (strchr(env[i], '='))
				putenv(env[i]);
			else
				unsetenv(env[i]);
		}
		execvp(argv[0], argv); /* a wrapper is found through PATH */
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (out_fd) {
		close(pfd[1]);
		*out_fd = pfd[0];
	}
	return pid;
}

static pid_t spawn(char *const argv[], int *out_fd)
{
	return spawn_env(argv, NULL, out_fd, -1);
}

pid_t it_spawn(char *const argv[], char *const env[], int err_fd)
{
	return spawn_env(argv, env, NULL, err_fd);
}

int it_stop_pid(pid_t pid, int timeout_ms)
{
	int st;
	if (pid <= 0)
		return -1;
	kill(pid, SIGTERM);
	long end = it_now_ms() + timeout_ms;
	while (it_now_ms() < end) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* Reads one line from a plain fd with a timeout (for phxsim's stdout). */
static int fd_line(int fd, char *out, size_t cap, int timeout_ms)
{
	size_t n = 0;
	long end = it_now_ms() + timeout_ms;
	while (n + 1 < cap) {
		struct pollfd p = { fd, POLLIN, 0 };
		int left = (int)(end - it_now_ms());
		if (left <= 0 || poll(&p, 1, left) <= 0)
			return -1;
		char ch;
		if (read(fd, &ch, 1) != 1)
			return -1;
		if (ch == '\n')
			break;
		out[n++] = ch;
	}
	out[n] = '\0';
	return 0;
}

void it_sim_start(struct it_env *e, const char *sim_args)
{
	char cmd[2048];
	char *argv[32];
	int argc = 0;
	snprintf(cmd, sizeof(cmd), "%s --listen 127.0.0.1:%d --control %s --quiet %s",
		 it_env_or("PHXSIM_BIN", "./tests/phxsim/phxsim"), e->port, e->ctl,
		 sim_args ? sim_args : "");
	for (char *tok = strtok(cmd, " "); tok && argc < 31; tok = strtok(NULL, " "))
		argv[argc++] = tok;
	argv[argc] = NULL;
	e->sim = spawn(argv, &e->sim_out);
	char line[256];
	IT_REQUIRE(fd_line(e->sim_out, line, sizeof(line), IT_TIMEOUT_MS) == 0,
		      "phxsim did not start");
	char host[64];
	int port;
	IT_REQUIRE(sscanf(line, "listening %63s %d", host, &port) == 2,
		      "phxsim said '%s'", line);
	e->port = port;
}

int it_fd_line(int fd, char *out, size_t cap, int timeout_ms)
{
	return fd_line(fd, out, cap, timeout_ms);
}

void it_write_conf(struct it_env *e, const char *global_conf, const char *endpoint_conf)
{
	FILE *f = fopen(e->conf, "w");
	IT_REQUIRE(f != NULL, "cannot write %s", e->conf);
	fprintf(f, "socket = %s\nlog_level = %s\n%s\n\n[endpoint main]\n"
		"url = ws://127.0.0.1:%d/socket\nreconnect_backoff = 50,100,200\n"
		"rejoin_backoff = 100,200\n%s\n",
		e->sock, it_env_or("PHX_TEST_LOG", "warning"), global_conf ? global_conf : "",
		e->port, endpoint_conf ? endpoint_conf : "");
	fclose(f);
}

int it_wrapper_argv(char *buf, size_t n, char **argv, int max)
{
	int argc = 0;
	snprintf(buf, n, "%s", it_env_or("PHX_TEST_WRAPPER", ""));
	for (char *tok = strtok(buf, " "); tok && argc < max; tok = strtok(NULL, " "))
		argv[argc++] = tok;
	return argc;
}

/* it_phxd_start() with phxd's stderr on err_fd (-1: the test's). */
static void phxd_start_err(struct it_env *e, const char *global_conf, const char *endpoint_conf,
			   int err_fd)
{
	it_write_conf(e, global_conf, endpoint_conf);
	/* PHX_TEST_WRAPPER, e.g. "valgrind --error-exitcode=99 -q", runs phxd
	 * under a tool */
	char wrap[512];
	char *argv[24];
	int argc = it_wrapper_argv(wrap, sizeof(wrap), argv, 18);
	argv[argc++] = (char *)it_env_or("PHXD_BIN", "./phxd");
	argv[argc++] = "-c";
	argv[argc++] = e->conf;
	argv[argc] = NULL;
	unlink(e->sock);
	e->phxd = spawn_env(argv, NULL, NULL, err_fd);
	long end = it_now_ms() + IT_TIMEOUT_MS;
	struct stat st;
	while (stat(e->sock, &st) != 0) {
		IT_REQUIRE(it_now_ms() < end, "phxd did not create %s", e->sock);
		int s;
		IT_REQUIRE(waitpid(e->phxd, &s, WNOHANG) == 0, "phxd exited at start");
		usleep(10000);
	}
}

void it_phxd_start(struct it_env *e, const char *global_conf, const char *endpoint_conf)
{
	phxd_start_err(e, global_conf, endpoint_conf, -1);
}

void it_phxd_start_log(struct it_env *e, const char *global_conf, const char *endpoint_conf)
{
	snprintf(e->log, sizeof(e->log), "%s/phxd.stderr", e->dir);
	int fd = open(e->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	IT_REQUIRE(fd >= 0, "cannot make %s: %s", e->log, strerror(errno));
	phxd_start_err(e, global_conf, endpoint_conf, fd);
	close(fd);
}

int it_log_count(struct it_env *e, const char *needle)
{
	char line[4096];
	int n = 0;
	FILE *f = e->log[0] ? fopen(e->log, "r") : NULL;
	if (!f)
		return 0;
	/* a longer line is read in pieces: a needle across two of them would
	 * be missed (the tests look for short needles in short lines) */
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

int it_wait_log(struct it_env *e, const char *needle, int n, int timeout_ms)
{
	long end = it_now_ms() + timeout_ms;
	while (it_log_count(e, needle) < n) {
		if (it_now_ms() >= end)
			return 0;
		usleep(10000);
	}
	return 1;
}

void it_env_prepare(struct it_env *e)
{
	memset(e, 0, sizeof(*e));
	e->sim_out = -1;
	const char *base = it_env_or("PHX_TEST_TMP", "/tmp");
	mkdir(base, 0700);
	snprintf(e->dir, sizeof(e->dir), "%s/it.XXXXXX", base);
	IT_REQUIRE(mkdtemp(e->dir) != NULL, "mkdtemp %s: %s", e->dir, strerror(errno));
	snprintf(e->sock, sizeof(e->sock), "%s/phxd.sock", e->dir);
	snprintf(e->ctl, sizeof(e->ctl), "%s/sim.sock", e->dir);
	snprintf(e->conf, sizeof(e->conf), "%s/phxd.conf", e->dir);
}

void it_env_start(struct it_env *e, const char *sim_args, const char *global_conf,
		  const char *endpoint_conf)
{
	it_env_prepare(e);
	it_sim_start(e, sim_args);
	it_phxd_start(e, global_conf, endpoint_conf);
}

void it_env_stop(struct it_env *e)
{
	if (e->phxd > 0) {
		int st = it_stop_pid(e->phxd, 5000);
		e->phxd = 0;
		IT_REQUIRE(st == 0, "phxd exit status %d after SIGTERM", st);
	}
	if (e->sim > 0) {
		it_stop_pid(e->sim, 5000);
		e->sim = 0;
	}
	if (e->sim_out >= 0)
		close(e->sim_out);
	/* the route cache outlives phxd by design: tests remove theirs */
	char shm[256];
	router_routes_default_name(e->sock, shm, sizeof(shm));
	shm_unlink(shm);
	if (e->log[0])
		unlink(e->log);
	unlink(e->conf);
	unlink(e->sock);
	unlink(e->ctl);
	rmdir(e->dir);
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	IT_REQUIRE(fd >= 0, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

const char *it_ctl(struct it_env *e, const char *fmt, ...)
{
	static char reply[65536];
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(cmd, sizeof(cmd) - 1, fmt, ap);
	va_end(ap);
	cmd[n++] = '\n';
	int fd = unix_connect(e->ctl);
	IT_REQUIRE(fd >= 0, "cannot reach phxsim control at %s", e->ctl);
	IT_REQUIRE(write(fd, cmd, (size_t)n) == n, "write to phxsim control failed");
	IT_REQUIRE(fd_line(fd, reply, sizeof(reply), IT_TIMEOUT_MS) == 0,
		      "no answer from phxsim to %s", cmd);
	close(fd);
	return reply;
}

int it_wait_channels(struct it_env *e, const char *topic, int n, int timeout_ms)
{
	char want[32];
	snprintf(want, sizeof(want), "OK %d", n);
	long end = it_now_ms() + timeout_ms;
	do {
		if (strcmp(it_ctl(e, "CHANNELS %s", topic), want) == 0)
			return 1;
		usleep(20000);
	} while (it_now_ms() < end);
	return 0;
}

struct it_client *it_connect(struct it_env *e)
{
	struct it_client *c = calloc(1, sizeof(*c));
	IT_REQUIRE(c != NULL, "out of memory");
	c->fd = unix_connect(e->sock);
	IT_REQUIRE(c->fd >= 0, "cannot connect to phxd at %s: %s", e->sock, strerror(errno));
	return c;
}

void it_close(struct it_client *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c);
}

void it_send_raw(struct it_client *c, const void *p, size_t n)
{
	const char *q = p;
	while (n > 0) {
		ssize_t w = send(c->fd, q, n, MSG_NOSIGNAL);
		IT_REQUIRE(w > 0, "send to phxd failed: %s", strerror(errno));
		q += w;
		n -= (size_t)w;
	}
}

void it_send(struct it_client *c, const char *fmt, ...)
{
	char line[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	IT_REQUIRE(n > 0 && (size_t)n < sizeof(line) - 1, "line too long for it_send");
	line[n++] = '\n';
	it_send_raw(c, line, (size_t)n);
}

const char *it_line(struct it_client *c, int timeout_ms)
{
	static char out[1 << 20];
	long end = it_now_ms() + timeout_ms;
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			size_t n = (size_t)(nl - c->buf);
			memcpy(out, c->buf, n);
			out[n] = '\0';
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			return out;
		}
		if (c->len == sizeof(c->buf))
			return NULL;
		struct pollfd p = { c->fd, POLLIN, 0 };
		int left = (int)(end - it_now_ms());
		if (left <= 0 || poll(&p, 1, left) <= 0)
			return NULL;
		ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r <= 0)
			return NULL;
		c->len += (size_t)r;
	}
}

const char *it_wait_prefix(struct it_client *c, const char *prefix, int timeout_ms)
{
	long end = it_now_ms() + timeout_ms;
	for (;;) {
		int left = (int)(end - it_now_ms());
		if (left <= 0)
			return NULL;
		const char *l = it_line(c, left);
		if (!l)
			return NULL;
		if (strncmp(l, prefix, strlen(prefix)) == 0)
			return l;
	}
}

int it_wait_eof(struct it_client *c, int timeout_ms)
{
	long end = it_now_ms() + timeout_ms;
	char tmp[65536];
	for (;;) {
		struct pollfd p = { c->fd, POLLIN, 0 };
		int left = (int)(end - it_now_ms());
		if (left <= 0 || poll(&p, 1, left) <= 0)
			return 0;
		ssize_t r = read(c->fd, tmp, sizeof(tmp));
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return 1;
		if (r < 0)
			return 0;
	}
}

int it_wait_path(const char *path, pid_t pid, int timeout_ms)
{
	struct stat st;
	long end = it_now_ms() + timeout_ms;
	while (stat(path, &st) != 0) {
		int ws;
		if (it_now_ms() >= end || (pid > 0 && waitpid(pid, &ws, WNOHANG) != 0))
			return 0;
		usleep(10000);
	}
	return 1;
}

const char *it_which(const char *prog)
{
	static char path[4096];
	const char *p = getenv("PATH");
	if (!p)
		p = "/usr/bin:/bin";
	while (*p) {
		size_t n = strcspn(p, ":");
		snprintf(path, sizeof(path), "%.*s/%s", (int)n, p, prog);
		if (n > 0 && access(path, X_OK) == 0)
			return path;
		p += n + (p[n] == ':');
	}
	return NULL;
}

int it_wait_exit(pid_t pid, int timeout_ms)
{
	int st;
	long end = it_now_ms() + timeout_ms;
	while (it_now_ms() < end) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (r < 0)
			return -1;
		usleep(10000);
	}
	return -1;
}

int it_wait_listening(const char *path, pid_t pid, int timeout_ms)
{
	long end = it_now_ms() + timeout_ms;
	for (;;) {
		int fd = unix_connect(path);
		if (fd >= 0) {
			close(fd);
			return 1;
		}
		int ws;
		if (it_now_ms() >= end || (pid > 0 && waitpid(pid, &ws, WNOHANG) != 0))
			return 0;
		usleep(10000);
	}
}

long it_rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

int it_under_valgrind(void)
{
	return strstr(it_env_or("PHX_TEST_WRAPPER", ""), "valgrind") != NULL;
}

#if defined(__SANITIZE_ADDRESS__)
#define IT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IT_ASAN 1
#endif
#endif

int it_asan_build(void)
{
#ifdef IT_ASAN
	return 1;
#else
	return 0;
#endif
}

void it_asan_quarantine_mb(int mb)
{
	static char opts[1024];
	if (!it_asan_build())
		return;
	const char *old = it_env_or("ASAN_OPTIONS", "");
	snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=%d", old, *old ? ":" : "", mb);
	setenv("ASAN_OPTIONS", opts, 1);
}

const char *it_phxd_ctl(struct it_env *e, const char *cmd)
{
	static char reply[65536];
	char path[300];
	snprintf(path, sizeof(path), "%.*s/control.sock", (int)(strrchr(e->sock, '/') - e->sock),
		 e->sock);
	int fd = unix_connect(path);
	if (fd < 0)
		return NULL;
	size_t n = strlen(cmd);
	int ok = write(fd, cmd, n) == (ssize_t)n && write(fd, "\n", 1) == 1 &&
		 fd_line(fd, reply, sizeof(reply), IT_TIMEOUT_MS) == 0;
	close(fd);
	return ok ? reply : NULL;
}

int it_activate_tail(struct it_env *e, char **argv, int argc, char san[2][512], char *wrap,
		     size_t wraplen)
{
	/* systemd-socket-activate passes on only the environment it is told to */
	static const char *const san_vars[] = { "ASAN_OPTIONS", "UBSAN_OPTIONS" };
	for (int i = 0; i < 2; i++) {
		if (getenv(san_vars[i])) {
			snprintf(san[i], 512, "%s=%s", san_vars[i], getenv(san_vars[i]));
			argv[argc++] = "-E";
			argv[argc++] = san[i];
		}
	}
	argc += it_wrapper_argv(wrap, wraplen, argv + argc, 16);
	argv[argc++] = (char *)it_env_or("PHXD_BIN", "./phxd");
	argv[argc++] = "-c";
	argv[argc++] = e->conf;
	argv[argc] = NULL;
	return argc;
}
