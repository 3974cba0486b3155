/* fanout — routed messages per second through phxd.
 *
 * Starts phxsim and phxd (as the integration tests do), joins N local
 * clients to one topic (or spreads them over T topics), has phxsim flood
 * each topic with M broadcasts of about S bytes, and measures how fast the
 * events reach every client, with phxd's and phxsim's CPU time.
 *
 *   bench/fanout [--subs N] [--topics T] [--count M] [--size S] [--json]
 *
 * Needs PHXD_BIN and PHXSIM_BIN (or ./phxd and ./tests/phxsim/phxsim).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tests/it_util.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) a process has used. */
static double cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	/* fields after the command: state is 3, utime 14, stime 15 */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
			 &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Sends a control command to phxsim without waiting for its answer. */
static int ctl_send(const struct it_env *e, const char *cmd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(e->ctl) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "fanout: control path too long: %s\n", e->ctl);
		exit(1);
	}
	memcpy(sa.sun_path, e->ctl, strlen(e->ctl) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd)) {
		fprintf(stderr, "fanout: phxsim control: %s\n", strerror(errno));
		exit(1);
	}
	return fd;
}

int main(int argc, char **argv)
{
	int subs = 1, topics = 1, count = 100000, size = 200, json = 0, o;
	static const struct option opts[] = {
		{ "subs", required_argument, NULL, 'n' },
		{ "topics", required_argument, NULL, 't' },
		{ "count", required_argument, NULL, 'm' },
		{ "size", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	while ((o = getopt_long(argc, argv, "n:t:m:s:j", opts, NULL)) != -1) {
		switch (o) {
		case 'n': subs = atoi(optarg); break;
		case 't': topics = atoi(optarg); break;
		case 'm': count = atoi(optarg); break;
		case 's': size = atoi(optarg); break;
		case 'j': json = 1; break;
		default:
			fprintf(stderr, "usage: fanout [--subs N] [--topics T] [--count M] [--size S] [--json]\n");
			return 2;
		}
	}
	if (subs < 1 || topics < 1 || topics > subs || count < 1 || size < 16) {
		fprintf(stderr, "fanout: need subs >= topics >= 1, count >= 1, size >= 16\n");
		return 2;
	}

	struct it_env env;
	/* queues large enough that the bench measures throughput, not drops */
	it_env_start(&env, NULL, "client_queue_max = 256M\nmax_clients = 100000\n",
		     "pool_size = 4\n");
	struct it_client **c = calloc((size_t)subs, sizeof(*c));
	long *got = calloc((size_t)subs, sizeof(*got));
	for (int i = 0; i < subs; i++) {
		c[i] = it_connect(&env);
		it_send(c[i], "JOIN bench:%d", i % topics);
		const char *l = it_line(c[i], IT_TIMEOUT_MS);
		if (!l || strncmp(l, "OK JOIN", 7) != 0) {
			fprintf(stderr, "fanout: join failed: %s\n", l ? l : "(nothing)");
			return 1;
		}
	}

	double cpu_d0 = cpu_s(env.phxd), cpu_s0 = cpu_s(env.sim);
	double t0 = now_s();
	int *ctl = calloc((size_t)topics, sizeof(*ctl));
	for (int t = 0; t < topics; t++) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "FLOOD bench:%d ev %d %d\n", t, count, size);
		ctl[t] = ctl_send(&env, cmd);
	}
	struct pollfd *pf = calloc((size_t)subs, sizeof(*pf));
	static char buf[1 << 16];
	int done = 0;
	double deadline = t0 + 600;
	while (done < subs && now_s() < deadline) {
		int np = 0;
		for (int i = 0; i < subs; i++)
			if (got[i] < count)
				pf[np++] = (struct pollfd){ c[i]->fd, POLLIN, 0 };
		if (poll(pf, (nfds_t)np, 1000) <= 0)
			continue;
		for (int k = 0; k < np; k++) {
			if (!(pf[k].revents & (POLLIN | POLLHUP)))
				continue;
			int i = 0;
			while (c[i]->fd != pf[k].fd)
				i++;
			ssize_t r = read(c[i]->fd, buf, sizeof(buf));
			if (r <= 0) {
				fprintf(stderr, "fanout: client %d closed after %ld events\n", i, got[i]);
				return 1;
			}
			for (ssize_t b = 0; b < r; b++)
				got[i] += buf[b] == '\n';
			if (got[i] >= count)
				done++;
		}
	}
	double t1 = now_s();
	double cpu_d = cpu_s(env.phxd) - cpu_d0, cpu_sim = cpu_s(env.sim) - cpu_s0;
	double secs = t1 - t0;
	double delivered = (double)subs * count;
	if (done < subs) {
		fprintf(stderr, "fanout: timed out\n");
		return 1;
	}
	if (json)
		printf("{\"subs\":%d,\"topics\":%d,\"count\":%d,\"size\":%d,\"seconds\":%.3f,"
		       "\"delivered_per_s\":%.0f,\"per_sub_per_s\":%.0f,\"phxd_cpu_s\":%.3f,"
		       "\"phxd_cpu_us_per_msg\":%.3f,\"phxsim_cpu_share\":%.2f}\n",
		       subs, topics, count, size, secs, delivered / secs, count / secs, cpu_d,
		       cpu_d * 1e6 / delivered, cpu_sim / secs);
	else
		printf("| %d | %d | %d | %d | %.2f | %.0f | %.0f | %.2f | %.0f%% |\n", subs, topics,
		       count, size, secs, delivered / secs, count / secs, cpu_d * 1e6 / delivered,
		       100 * cpu_sim / secs);
	for (int t = 0; t < topics; t++)
		close(ctl[t]);
	for (int i = 0; i < subs; i++)
		it_close(c[i]);
	it_env_stop(&env);
	free(c);
	free(got);
	free(pf);
	free(ctl);
	return 0;
}
