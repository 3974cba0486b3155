/* list — intrusive circular doubly-linked lists (embed a struct list_node). */
#ifndef PHX_LIST_H
#define PHX_LIST_H

#include <stddef.h>

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct list_node {
	struct list_node *next, *prev;
};

static inline void list_init(struct list_node *h) { h->next = h->prev = h; }
static inline int list_empty(const struct list_node *h) { return h->next == h; }
static inline int list_linked(const struct list_node *n) { return n->next && n->next != n; }

static inline void list_add_tail(struct list_node *h, struct list_node *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void list_del(struct list_node *n)
{
	if (!n->next)
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

#define list_for_each_safe(pos, tmp, head) \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
	     (pos) = (tmp), (tmp) = (pos)->next)

#endif
