#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

uint64_t util_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t util_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void util_random(void *p, size_t n)
{
	unsigned char *u = p;
	while (n > 0) {
		ssize_t r = getrandom(u, n, GRND_NONBLOCK);
		if (r <= 0)
			break;
		u += r;
		n -= (size_t)r;
	}
	/* Entropy pool not ready (early boot): xorshift seeded from the clock.
	 * Only used for jitter and WebSocket masks, never for secrets. */
	static uint64_t s;
	if (n && !s) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid();
		if (!s)
			s = 88172645463325252ULL;
	}
	while (n--) {
		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		*u++ = (unsigned char)s;
	}
}

uint32_t util_rand32(void)
{
	uint32_t v;
	util_random(&v, sizeof(v));
	return v;
}

int util_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	int fd_fl = fcntl(fd, F_GETFD);
	if (fd_fl < 0 || fcntl(fd, F_SETFD, fd_fl | FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

char *util_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}
