/* malloc_count.so — counts a process's heap allocations, for the benchmark
 * (heap allocations per relayed message).
 *
 *   LD_PRELOAD=bench/malloc_count.so PHX_MALLOC_COUNT=/tmp/counts phxd ...
 *
 * Interposes malloc, calloc, realloc, free and the aligned allocators,
 * forwarding each to glibc's own (__libc_*), and keeps the counts in the
 * file PHX_MALLOC_COUNT (struct bu_mcount, mapped shared), so the benchmark
 * reads them while the process runs: the difference over a window of N
 * messages, divided by N, is the allocations per message.  Counting is not
 * atomic: phxd is single-threaded.  Built with glibc only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench/bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t n);

static struct bu_mcount early = { .magic = BU_MCOUNT_MAGIC };
static struct bu_mcount *mc = &early;

__attribute__((constructor)) static void mc_init(void)
{
	const char *path = getenv("PHX_MALLOC_COUNT");

	if (!path || !*path)
		return;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (ftruncate(fd, sizeof(struct bu_mcount)) == 0) {
		void *p = mmap(NULL, sizeof(struct bu_mcount), PROT_READ | PROT_WRITE,
			       MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			*(struct bu_mcount *)p = early;
			mc = p;
		}
	}
	close(fd);
}

static void *counted(void *p, size_t n)
{
	if (p) {
		mc->bytes += n;
		mc->live += (int64_t)malloc_usable_size(p);
	}
	return p;
}

void *malloc(size_t n)
{
	mc->mallocs++;
	return counted(__libc_malloc(n), n);
}

void *calloc(size_t n, size_t size)
{
	mc->callocs++;
	return counted(__libc_calloc(n, size), n * size);
}

void *realloc(void *p, size_t n)
{
	if (!p)
		return malloc(n);
	mc->reallocs++;
	size_t old = malloc_usable_size(p);
	void *q = __libc_realloc(p, n);
	if (q) {
		mc->live -= (int64_t)old;
		mc->live += (int64_t)malloc_usable_size(q);
		mc->bytes += n;
	} else if (n == 0) {
		mc->live -= (int64_t)old;   /* realloc(p, 0) freed p */
	}
	return q;
}

void *reallocarray(void *p, size_t n, size_t size)
{
	if (size && n > (size_t)-1 / size) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, n * size);
}

void free(void *p)
{
	if (!p)
		return;
	mc->frees++;
	mc->live -= (int64_t)malloc_usable_size(p);
	__libc_free(p);
}

void *memalign(size_t align, size_t n)
{
	mc->memaligns++;
	return counted(__libc_memalign(align, n), n);
}

void *aligned_alloc(size_t align, size_t n)
{
	return memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	if (align < sizeof(void *) || (align & (align - 1)))
		return EINVAL;
	void *p = memalign(align, n);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}

void *valloc(size_t n)
{
	return memalign((size_t)sysconf(_SC_PAGESIZE), n);
}
