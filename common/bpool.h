/* bpool — the binary pool: free memory blocks kept for reuse, in size
 * classes, so the steady state of phxd does not go through malloc/free.
 *
 * Classes are powers of two from BPOOL_MIN (256 B) to BPOOL_MAX (128 KiB),
 * the capacities struct buf grows through; larger requests go to malloc
 * directly.  A freed block goes back to its class's free list (most recently
 * freed first: warm in the cache) unless the pool already holds max_entries
 * blocks or max_bytes bytes, in which case it is freed.  bpool_cleanup()
 * frees the blocks that waited longer than max_age.  The block's first bytes
 * hold the free-list link while it waits, so waiting costs no extra memory.
 *
 * One pool per process (phxd is single-threaded); every struct buf takes its
 * memory from it.  Before bpool_configure() the pool uses its defaults.
 */
#ifndef PHX_BPOOL_H
#define PHX_BPOOL_H

#include <stddef.h>
#include <stdint.h>

#define BPOOL_MIN ((size_t)256)
#define BPOOL_MAX ((size_t)128 << 10)
#define BPOOL_CLASSES 10

struct bpool_stats {
	uint64_t hits;          /* requests served from the pool */
	uint64_t misses;        /* requests that went to malloc */
	uint64_t saved;         /* bytes served from the pool (not malloc'd) */
	uint64_t releases;      /* blocks given back to malloc: age, limits, trims */
	uint64_t released_bytes;
	uint64_t trims;         /* times memory went back to the system */
	size_t entries;         /* blocks waiting in the pool now */
	size_t bytes;           /* their bytes */
	size_t in_use;          /* pooled-class blocks handed out and not back */
	size_t in_use_bytes;
};

/* Limits: at most max_entries blocks and max_bytes bytes waiting (0 entries:
 * no pooling); blocks older than max_age_ms go at the next bpool_cleanup(). */
void bpool_configure(size_t max_entries, size_t max_bytes, uint64_t max_age_ms);
/* The clock ages are measured with (ms, monotonic); NULL: util_now_ms.
 * intern.h ages its strings by the same clock. */
void bpool_set_clock(uint64_t (*now_ms)(void));
uint64_t bpool_now_ms(void);

/* The capacity a request of n bytes gets: its class, or n past BPOOL_MAX. */
size_t bpool_class_size(size_t n);
/* A block of bpool_class_size(n) bytes, or NULL (ENOMEM). */
void *bpool_get(size_t n);
/* Gives back a block of capacity cap (as bpool_get returned it for some n
 * with bpool_class_size(n) == cap).  NULL is ignored. */
void bpool_put(void *p, size_t cap);

/* Frees blocks that waited past max_age; returns how many. */
size_t bpool_cleanup(void);
/* Frees every waiting block down to keep_bytes (oldest first); returns the
 * bytes freed. */
size_t bpool_trim(size_t keep_bytes);

/* When blocks were freed to malloc since the last call, or force (the caller
 * freed memory itself): malloc_trim(), so glibc returns the free pages to
 * the system.  1 when it trimmed. */
int bpool_give_back(int force);

const struct bpool_stats *bpool_stats(void);

#endif
