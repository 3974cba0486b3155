#include "intern.h"

#include <errno.h>
#include <string.h>

#include "bpool.h"
#include "hmap.h"
#include "list.h"
#include "util.h"

struct istr {
	struct list_node unused;    /* I.unused while refs == 0, oldest first */
	uint64_t since_ms;          /* when refs fell to 0 */
	size_t cap;                 /* pool block size */
	uint32_t refs;
	uint32_t len;
	char s[];
};

static struct {
	struct hmap map;            /* string → struct istr */
	struct list_node unused;
	int ready;
	size_t max_unused;
	uint64_t max_age_ms;
	struct intern_stats st;
} I = {
	.max_unused = 1000,
	.max_age_ms = 300000,
};

static void in_ready(void)
{
	if (!I.ready) {
		hmap_init(&I.map);
		list_init(&I.unused);
		I.ready = 1;
	}
}

void intern_configure(size_t max_unused, uint64_t max_age_ms)
{
	I.max_unused = max_unused;
	I.max_age_ms = max_age_ms;
}

static struct istr *in_of(const char *s)
{
	return container_of(s, struct istr, s);
}

static void in_free(struct istr *is)
{
	hmap_del(&I.map, is->s, is->len);
	list_del(&is->unused);
	I.st.entries--;
	I.st.unused--;
	I.st.bytes -= is->cap;
	I.st.releases++;
	bpool_put(is, is->cap);
}

const char *intern_get(const char *s, size_t len)
{
	in_ready();
	if (len > INTERN_MAX) {
		errno = EMSGSIZE;
		return NULL;
	}
	struct istr *is = hmap_get(&I.map, s, len);
	if (is) {
		I.st.hits++;
		if (is->refs++ == 0) {
			list_del(&is->unused);
			I.st.unused--;
		}
		return is->s;
	}
	I.st.misses++;
	size_t cap = bpool_class_size(sizeof(*is) + len + 1);
	is = bpool_get(cap);
	if (!is)
		return NULL;
	is->cap = cap;
	is->refs = 1;
	is->len = (uint32_t)len;
	memcpy(is->s, s, len);
	is->s[len] = '\0';
	list_init(&is->unused);
	if (hmap_put(&I.map, is->s, len, is) < 0) {
		bpool_put(is, cap);
		errno = ENOMEM;
		return NULL;
	}
	I.st.entries++;
	I.st.bytes += cap;
	return is->s;
}

const char *intern_dup(const char *s)
{
	struct istr *is = in_of(s);
	if (is->refs++ == 0) {
		list_del(&is->unused);
		I.st.unused--;
	}
	return s;
}

void intern_put(const char *s)
{
	if (!s)
		return;
	struct istr *is = in_of(s);
	if (--is->refs > 0)
		return;
	is->since_ms = bpool_now_ms();
	list_add_tail(&I.unused, &is->unused);
	I.st.unused++;
	while (I.st.unused > I.max_unused)
		in_free(container_of(I.unused.next, struct istr, unused));
}

size_t intern_len(const char *s)
{
	return in_of(s)->len;
}

size_t intern_cleanup(void)
{
	in_ready();
	uint64_t now = bpool_now_ms();
	size_t n = 0;
	while (!list_empty(&I.unused)) {
		struct istr *is = container_of(I.unused.next, struct istr, unused);
		if (now - is->since_ms < I.max_age_ms)
			break;
		in_free(is);
		n++;
	}
	return n;
}

void intern_flush(void)
{
	in_ready();
	while (!list_empty(&I.unused))
		in_free(container_of(I.unused.next, struct istr, unused));
	if (I.st.entries == 0)
		hmap_free(&I.map);
}

const struct intern_stats *intern_stats(void)
{
	return &I.st;
}
