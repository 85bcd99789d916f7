#include "fs/layer_trust.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/layer_int.h"

#define VERIFY_PARALLEL 2     /* chunks read back at once by a trust check */

struct verify_req {
	struct sg_layer_user *user;
	struct sg_list link;       /* on l->verify_reqs until answered */
	uint32_t node;
	struct sg_op *op;          /* the caller's, posted with the result */
	sg_op_cb cb;
};

/* The result goes to the caller's op and the request ends here. */
static void verify_deliver(struct sg_layer *l, struct verify_req *v, int result)
{
	struct sg_layer_user *u = v->user;

	l->verify_pending--;
	u->verifies--;
	/* Cannot fail: the op was idle at sg_layer_verify_file, and the caller leaves it to us. */
	(void)sg_post(l->loop, v->op, result, v->cb);
	free(v);
	sg_layer_maybe_close_done(l);
	sg_layer_user_maybe_done(u);   /* last: it may free the user */
}

static bool file_complete(const struct sg_layer *l, const struct sg_toc_node *n, bool *trusted)
{
	*trusted = true;
	for (uint32_t i = 0; i < n->nchunks; i++) {
		uint32_t c = n->first_chunk + i;
		if (!sg_diskcache_present(l->disk, c) || l->jobs[c])
			return false;   /* missing, or still being written */
		if (!sg_diskcache_trusted(l->disk, c))
			*trusted = false;
	}
	return true;
}

void sg_layer_trust_continue(struct sg_layer *l)
{
	while (!sg_list_empty(&l->verify_reqs) && l->verify_inflight < VERIFY_PARALLEL) {
		struct verify_req *v = sg_container_of(l->verify_reqs.next, struct verify_req, link);
		const struct sg_toc_node *n = sg_toc_node(l->toc, v->node);
		uint32_t end = n->first_chunk + n->nchunks;
		bool trusted;
		if (l->closing) {
			sg_list_unlink(&v->link);
			verify_deliver(l, v, -ECANCELED);
			continue;
		}
		if (l->verify_chunk < n->first_chunk)
			l->verify_chunk = n->first_chunk;
		if (l->verify_chunk >= end) {
			if (l->verify_inflight > 0)
				return;   /* the file's last checks are still reading */
			sg_list_unlink(&v->link);
			l->verify_chunk = 0;
			verify_deliver(l, v, file_complete(l, n, &trusted) && trusted ? 0 : -ENOENT);
			continue;
		}
		uint32_t c = l->verify_chunk++;
		if (!sg_diskcache_present(l->disk, c) || sg_diskcache_trusted(l->disk, c) ||
		    l->jobs[c])
			continue;   /* nothing to check, or a load in flight checks it anyway */
		struct chunk_job *j = sg_layer_job_new(l, c, false);
		if (!j)
			return;
		j->verify_only = true;
		l->verify_inflight++;
		if (sg_layer_job_load(l, j) < 0) {
			l->verify_inflight--;
			sg_layer_job_free(j);
		}
	}
}

void sg_layer_trust_cancel_user(struct sg_layer_user *u)
{
	struct sg_layer *l = u->layer;
	struct sg_list *n, *tmp;

	sg_list_for_each_safe(n, tmp, &l->verify_reqs) {
		struct verify_req *v = sg_container_of(n, struct verify_req, link);
		if (v->user != u)
			continue;
		if (n == l->verify_reqs.next)
			l->verify_chunk = 0;   /* the head: the next request starts afresh */
		sg_list_unlink(&v->link);
		verify_deliver(l, v, -ECANCELED);
	}
	sg_layer_trust_continue(l);
}

int sg_layer_open_verified(struct sg_layer *l, uint32_t node)
{
	bool trusted;

	if (l->closing)
		return -ECANCELED;
	if (node >= sg_toc_count(l->toc))
		return -ENOENT;
	const struct sg_toc_node *n = sg_toc_resolve(l->toc, sg_toc_node(l->toc, node));
	if (n->type != SG_TOC_REG || n->size == 0 || n->nchunks == 0)
		return -ENOENT;
	node = (uint32_t)(n - sg_toc_node(l->toc, 0));
	if (!file_complete(l, n, &trusted))
		return -ENOENT;
	if (!trusted)
		return -EAGAIN;
	int fd = sg_diskcache_open_file(l->disk, node);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != n->size) {
		/* A cache file that is not exactly the file would serve wrong bytes at its end. */
		close(fd);
		return -ENOENT;
	}
	/* The kernel reads it from now on without asking us: an open is as close to "read" as
	 * we get to see. */
	for (uint32_t c = 0; c < n->nchunks; c++)
		sg_layer_note_used(l, n->first_chunk + c);
	return fd;
}

int sg_layer_pin_file(struct sg_layer *l, uint32_t node, bool pin)
{
	if (node >= sg_toc_count(l->toc))
		return -ENOENT;
	if (pin) {
		if (l->pins[node] == UINT16_MAX)
			return -EOVERFLOW;   /* the caller serves the file itself instead */
		l->pins[node]++;
	} else if (l->pins[node] > 0) {
		l->pins[node]--;
	}
	return 0;
}

int sg_layer_verify_file(struct sg_layer_user *u, uint32_t node, struct sg_op *op,
			 sg_op_cb cb)
{
	struct sg_layer *l = u->layer;
	int r = sg_layer_op_check(op, cb);

	if (r < 0)
		return r;
	if (l->closing || u->closing)
		return -ECANCELED;
	if (node >= sg_toc_count(l->toc))
		return -ENOENT;
	const struct sg_toc_node *n = sg_toc_resolve(l->toc, sg_toc_node(l->toc, node));
	if (n->type != SG_TOC_REG)
		return -ENOENT;
	struct verify_req *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->user = u;
	u->verifies++;
	v->node = (uint32_t)(n - sg_toc_node(l->toc, 0));
	v->op = op;
	v->cb = cb;
	l->verify_pending++;
	sg_list_insert_tail(&l->verify_reqs, &v->link);
	sg_layer_trust_continue(l);
	return 0;
}
