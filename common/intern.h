/* intern — one shared copy of each repeated string (topics, event names),
 * reference counted.
 *
 * intern_get() returns the one NUL-terminated copy of a string, creating it
 * on first use, and takes a reference; intern_put() gives the reference
 * back.  A string nobody references stays cached (the next intern_get() of
 * it is a hit, no allocation) until it has been unused for max_age or more
 * than max_unused strings are unused, the oldest going first.  Storage
 * comes from the binary pool (bpool.h).  Single-threaded, like phxd.
 */
#ifndef PHX_INTERN_H
#define PHX_INTERN_H

#include <stddef.h>
#include <stdint.h>

struct intern_stats {
	uint64_t hits, misses, releases;
	size_t entries;         /* strings held, used or not */
	size_t unused;          /* of which nobody holds a reference */
	size_t bytes;           /* pool bytes they take */
};

void intern_configure(size_t max_unused, uint64_t max_age_ms);

/* The interned copy of s[0..len) with one more reference, or NULL (ENOMEM).
 * Strings longer than INTERN_MAX are refused (EMSGSIZE). */
#define INTERN_MAX 4096
const char *intern_get(const char *s, size_t len);
/* One more reference to an interned string (no lookup). */
const char *intern_dup(const char *s);
/* Drops a reference taken by intern_get(); NULL is ignored. */
void intern_put(const char *s);
/* The length of an interned string. */
size_t intern_len(const char *s);

/* Frees unused strings older than max_age; returns how many. */
size_t intern_cleanup(void);
/* Frees every unused string (shutdown, tests). */
void intern_flush(void);

const struct intern_stats *intern_stats(void);

#endif
