/* hmap — open-addressing hash map from byte strings to pointers.
 *
 * Linear probing with backward-shift deletion (no tombstones), power-of-two
 * capacity, load factor <= 0.75.  Keys are borrowed: the caller keeps each key
 * alive and unchanged while it is in the map (usually it lives in the value).
 */
#ifndef PHX_HMAP_H
#define PHX_HMAP_H

#include <stddef.h>
#include <stdint.h>

struct hmap_ent {
	uint64_t hash;      /* 0 marks an empty slot */
	const char *key;
	size_t klen;
	void *val;
};

struct hmap {
	struct hmap_ent *e;
	size_t cap;         /* 0 or a power of two */
	size_t n;
};

uint64_t hmap_hash(const void *key, size_t klen);

void hmap_init(struct hmap *m);
void hmap_free(struct hmap *m);     /* frees the table, not the values */
/* Inserts or replaces; 0 or -ENOMEM. */
int hmap_put(struct hmap *m, const char *key, size_t klen, void *val);
void *hmap_get(const struct hmap *m, const char *key, size_t klen);
/* Removes and returns the value, or NULL when absent. */
void *hmap_del(struct hmap *m, const char *key, size_t klen);

/* Iteration: for (size_t i = 0; (v = hmap_next(m, &i)); ) — do not insert
 * or delete while iterating. */
void *hmap_next(const struct hmap *m, size_t *i);

#endif
