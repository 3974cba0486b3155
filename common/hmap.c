#include "hmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t hmap_hash(const void *key, size_t klen)
{
	/* FNV-1a 64 with a final avalanche (splitmix64 finaliser). */
	const unsigned char *p = key;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < klen; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h ? h : 1;
}

void hmap_init(struct hmap *m)
{
	memset(m, 0, sizeof(*m));
}

void hmap_free(struct hmap *m)
{
	free(m->e);
	hmap_init(m);
}

static int hmap_grow(struct hmap *m)
{
	size_t ncap = m->cap ? m->cap * 2 : 16;
	struct hmap_ent *ne = calloc(ncap, sizeof(*ne));
	if (!ne)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		struct hmap_ent *o = &m->e[i];
		if (!o->hash)
			continue;
		size_t j = o->hash & (ncap - 1);
		while (ne[j].hash)
			j = (j + 1) & (ncap - 1);
		ne[j] = *o;
	}
	free(m->e);
	m->e = ne;
	m->cap = ncap;
	return 0;
}

static struct hmap_ent *hmap_find(const struct hmap *m, uint64_t h,
				  const char *key, size_t klen)
{
	if (!m->cap)
		return NULL;
	size_t j = h & (m->cap - 1);
	while (m->e[j].hash) {
		struct hmap_ent *e = &m->e[j];
		if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
			return e;
		j = (j + 1) & (m->cap - 1);
	}
	return NULL;
}

int hmap_put(struct hmap *m, const char *key, size_t klen, void *val)
{
	uint64_t h = hmap_hash(key, klen);
	struct hmap_ent *e = hmap_find(m, h, key, klen);
	if (e) {
		e->key = key;
		e->val = val;
		return 0;
	}
	if ((m->n + 1) * 4 > m->cap * 3) {
		int r = hmap_grow(m);
		if (r < 0)
			return r;
	}
	size_t j = h & (m->cap - 1);
	while (m->e[j].hash)
		j = (j + 1) & (m->cap - 1);
	m->e[j] = (struct hmap_ent){ h, key, klen, val };
	m->n++;
	return 0;
}

void *hmap_get(const struct hmap *m, const char *key, size_t klen)
{
	struct hmap_ent *e = hmap_find(m, hmap_hash(key, klen), key, klen);
	return e ? e->val : NULL;
}

void *hmap_del(struct hmap *m, const char *key, size_t klen)
{
	struct hmap_ent *e = hmap_find(m, hmap_hash(key, klen), key, klen);
	if (!e)
		return NULL;
	void *val = e->val;
	size_t mask = m->cap - 1;
	size_t i = (size_t)(e - m->e);
	size_t j = i;
	/* backward-shift: move later entries of the cluster into the hole */
	for (;;) {
		j = (j + 1) & mask;
		if (!m->e[j].hash)
			break;
		size_t home = m->e[j].hash & mask;
		/* can entry j move to i?  yes if home is not in (i, j] cyclically */
		int in_range = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
		if (in_range)
			continue;
		m->e[i] = m->e[j];
		i = j;
	}
	m->e[i].hash = 0;
	m->e[i].key = NULL;
	m->e[i].val = NULL;
	m->n--;
	return val;
}

void *hmap_next(const struct hmap *m, size_t *i)
{
	while (*i < m->cap) {
		struct hmap_ent *e = &m->e[(*i)++];
		if (e->hash)
			return e->val;
	}
	return NULL;
}
