#include "bpool.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>

#include "util.h"

/* A waiting block starts with this; the rest of it is garbage. */
struct bp_node {
	struct bp_node *next;   /* toward older blocks */
	struct bp_node *prev;   /* toward newer blocks */
	uint64_t since_ms;      /* when it was put back */
};

struct bp_class {
	struct bp_node *head;   /* newest */
	struct bp_node *tail;   /* oldest */
	size_t n;
};

static struct {
	struct bp_class cls[BPOOL_CLASSES];
	size_t max_entries, max_bytes;
	uint64_t max_age_ms;
	uint64_t (*now_ms)(void);
	struct bpool_stats st;
} P = {
	.max_entries = 1000,
	.max_bytes = (size_t)8 << 20,
	.max_age_ms = 300000,
};

void bpool_configure(size_t max_entries, size_t max_bytes, uint64_t max_age_ms)
{
	P.max_entries = max_entries;
	P.max_bytes = max_bytes;
	P.max_age_ms = max_age_ms;
}

void bpool_set_clock(uint64_t (*now_ms)(void))
{
	P.now_ms = now_ms;
}

uint64_t bpool_now_ms(void)
{
	return P.now_ms ? P.now_ms() : util_now_ms();
}

/* Class index of a capacity that is a class size; -1 otherwise. */
static int bp_index(size_t cap)
{
	if (cap < BPOOL_MIN || cap > BPOOL_MAX || (cap & (cap - 1)))
		return -1;
	int i = 0;
	for (size_t c = BPOOL_MIN; c < cap; c <<= 1)
		i++;
	return i;
}

size_t bpool_class_size(size_t n)
{
	if (n > BPOOL_MAX)
		return n;
	size_t c = BPOOL_MIN;
	while (c < n)
		c <<= 1;
	return c;
}

static void bp_unlink(struct bp_class *c, struct bp_node *nd)
{
	if (nd->prev)
		nd->prev->next = nd->next;
	else
		c->head = nd->next;
	if (nd->next)
		nd->next->prev = nd->prev;
	else
		c->tail = nd->prev;
	c->n--;
}

/* Frees a waiting block of class i. */
static void bp_release(int i, struct bp_node *nd)
{
	size_t cap = BPOOL_MIN << i;
	bp_unlink(&P.cls[i], nd);
	P.st.entries--;
	P.st.bytes -= cap;
	P.st.releases++;
	P.st.released_bytes += cap;
	free(nd);
}

void *bpool_get(size_t n)
{
	size_t cap = bpool_class_size(n);
	int i = bp_index(cap);
	if (i >= 0) {
		struct bp_class *c = &P.cls[i];
		P.st.in_use++;
		P.st.in_use_bytes += cap;
		if (c->head) {
			struct bp_node *nd = c->head;
			bp_unlink(c, nd);
			P.st.entries--;
			P.st.bytes -= cap;
			P.st.hits++;
			P.st.saved += cap;
			return nd;
		}
	}
	if (i >= 0)
		P.st.misses++;
	void *p = malloc(cap);
	if (!p) {
		if (i >= 0) {
			P.st.in_use--;
			P.st.in_use_bytes -= cap;
		}
		errno = ENOMEM;
	}
	return p;
}

void bpool_put(void *p, size_t cap)
{
	if (!p)
		return;
	int i = bp_index(cap);
	if (i < 0) {
		free(p);
		return;
	}
	P.st.in_use--;
	P.st.in_use_bytes -= cap;
	if (P.st.entries >= P.max_entries || P.st.bytes + cap > P.max_bytes) {
		P.st.releases++;
		P.st.released_bytes += cap;
		free(p);
		return;
	}
	struct bp_class *c = &P.cls[i];
	struct bp_node *nd = p;
	nd->since_ms = bpool_now_ms();
	nd->prev = NULL;
	nd->next = c->head;
	if (c->head)
		c->head->prev = nd;
	else
		c->tail = nd;
	c->head = nd;
	c->n++;
	P.st.entries++;
	P.st.bytes += cap;
}

size_t bpool_cleanup(void)
{
	uint64_t now = bpool_now_ms();
	size_t freed = 0;
	for (int i = 0; i < BPOOL_CLASSES; i++) {
		struct bp_class *c = &P.cls[i];
		/* oldest at the tail: stop at the first young enough */
		while (c->tail && now - c->tail->since_ms >= P.max_age_ms) {
			bp_release(i, c->tail);
			freed++;
		}
	}
	return freed;
}

size_t bpool_trim(size_t keep_bytes)
{
	size_t freed = 0;
	/* largest classes first: the fewest frees for the bytes */
	for (int i = BPOOL_CLASSES - 1; i >= 0 && P.st.bytes > keep_bytes; i--) {
		struct bp_class *c = &P.cls[i];
		while (c->tail && P.st.bytes > keep_bytes) {
			freed += BPOOL_MIN << i;
			bp_release(i, c->tail);
		}
	}
	return freed;
}

int bpool_give_back(int force)
{
	static uint64_t seen;
	if (!force && P.st.released_bytes == seen)
		return 0;
	seen = P.st.released_bytes;
	malloc_trim(0);
	P.st.trims++;
	return 1;
}

const struct bpool_stats *bpool_stats(void)
{
	return &P.st;
}
