/* Intrusive doubly linked lists and container_of.
 *
 * A list is a circular chain through a sentinel head.  A node that is on no list has
 * next == NULL, so "is this op still queued somewhere?" is a pointer test, and unlinking
 * an unlinked node is a harmless no-op. */
#ifndef STARGZD_CORE_LIST_H
#define STARGZD_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

#define sg_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct sg_list {
	struct sg_list *next, *prev;
};

static inline void sg_list_init(struct sg_list *head)
{
	head->next = head->prev = head;
}

static inline bool sg_list_empty(const struct sg_list *head)
{
	return head->next == head;
}

static inline bool sg_list_linked(const struct sg_list *node)
{
	return node->next != NULL;
}

static inline void sg_list_insert_tail(struct sg_list *head, struct sg_list *node)
{
	node->prev = head->prev;
	node->next = head;
	head->prev->next = node;
	head->prev = node;
}

static inline void sg_list_unlink(struct sg_list *node)
{
	if (!node->next)
		return;
	node->prev->next = node->next;
	node->next->prev = node->prev;
	node->next = node->prev = NULL;
}

static inline struct sg_list *sg_list_pop(struct sg_list *head)
{
	struct sg_list *n;

	if (sg_list_empty(head))
		return NULL;
	n = head->next;
	sg_list_unlink(n);
	return n;
}

/* Moves every node of src to dst (empty, initialized), leaving src empty: a batch taken
 * whole, whose members may be put back on src while it is walked. */
static inline void sg_list_move_all(struct sg_list *dst, struct sg_list *src)
{
	if (sg_list_empty(src))
		return;
	dst->next = src->next;
	dst->prev = src->prev;
	dst->next->prev = dst;
	dst->prev->next = dst;
	sg_list_init(src);
}

/* Iterate where the body may unlink (or free) the current node. */
#define sg_list_for_each_safe(pos, tmp, head) \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
	     (pos) = (tmp), (tmp) = (pos)->next)

#endif
