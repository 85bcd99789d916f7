#include "fs/fuse_watchdog.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fs/fuse_kabi.h"

#define REQ_BUCKETS 64

/* A request the kernel waits for an answer to: from the moment we read it until its reply
 * was written. */
struct req_track {
	struct req_track *next;
	uint64_t unique, start_ns;
	uint32_t opcode;
	bool reported;
};

struct sg_fuse_watchdog {
	struct sg_loop *loop;
	struct sg_group *group;
	struct sg_fuse_watchdog_config cfg;
	struct req_track *reqs[REQ_BUCKETS];
	struct sg_op timer;
	bool stopped;
	struct sg_fuse_watchdog_stats stats;
};

int sg_fuse_watchdog_new(struct sg_loop *loop, struct sg_group *group,
			 const struct sg_fuse_watchdog_config *config,
			 struct sg_fuse_watchdog **ret)
{
	struct sg_fuse_watchdog *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->loop = loop;
	w->group = group;
	w->cfg = *config;
	sg_op_init(&w->timer);
	*ret = w;
	return 0;
}

void sg_fuse_watchdog_free(struct sg_fuse_watchdog *w)
{
	if (!w)
		return;
	SG_FREE_CHECK(sg_op_busy(&w->timer), "FUSE watchdog");
	for (unsigned b = 0; b < REQ_BUCKETS; b++)
		while (w->reqs[b]) {
			struct req_track *t = w->reqs[b];
			w->reqs[b] = t->next;
			free(t);
		}
	free(w);
}

static void tick(struct sg_op *op);

static void arm(struct sg_fuse_watchdog *w)
{
	if (sg_op_busy(&w->timer) || w->stopped)
		return;
	sg_op_set_group(&w->timer, w->group);
	/* Half the budget: a stuck request is reported between 1 and 1.5 budgets old. */
	(void)sg_timer_start(w->loop, &w->timer, w->cfg.stuck_after_ns / 2, tick);
}

void sg_fuse_watchdog_request(struct sg_fuse_watchdog *w, const uint8_t *buf, size_t n)
{
	struct k_in_header h;

	if (n < sizeof(h))
		return;
	memcpy(&h, buf, sizeof(h));
	w->stats.requests++;
	if (h.opcode == K_FUSE_FORGET || h.opcode == K_FUSE_BATCH_FORGET ||
	    h.opcode == K_FUSE_INTERRUPT || h.opcode == K_FUSE_NOTIFY_REPLY)
		return;
	struct req_track *t = malloc(sizeof(*t));
	if (!t)
		return;   /* not tracked: only the diagnosis is lost */
	*t = (struct req_track){ .unique = h.unique, .start_ns = sg_now_ns(), .opcode = h.opcode };
	t->next = w->reqs[h.unique % REQ_BUCKETS];
	w->reqs[h.unique % REQ_BUCKETS] = t;
	w->stats.unanswered++;
	arm(w);
}

void sg_fuse_watchdog_reply(struct sg_fuse_watchdog *w, uint64_t unique)
{
	w->stats.replies++;
	for (struct req_track **p = &w->reqs[unique % REQ_BUCKETS]; *p; p = &(*p)->next)
		if ((*p)->unique == unique) {
			struct req_track *t = *p;
			*p = t->next;
			free(t);
			w->stats.unanswered--;
			return;
		}
}

static void tick(struct sg_op *op)
{
	struct sg_fuse_watchdog *w = sg_container_of(op, struct sg_fuse_watchdog, timer);
	uint64_t now = sg_now_ns();

	if (op->res < 0)
		return;
	for (unsigned b = 0; b < REQ_BUCKETS; b++)
		for (struct req_track *t = w->reqs[b]; t; t = t->next)
			if (!t->reported && now - t->start_ns >= w->cfg.stuck_after_ns) {
				t->reported = true;
				w->stats.stuck++;
				if (w->cfg.on_stuck)
					w->cfg.on_stuck(w->cfg.userdata, t->opcode, t->unique,
							(now - t->start_ns) / 1000000u);
			}
	if (w->stats.unanswered)
		arm(w);
}

void sg_fuse_watchdog_stop(struct sg_fuse_watchdog *w)
{
	w->stopped = true;
}

void sg_fuse_watchdog_stats(const struct sg_fuse_watchdog *w, struct sg_fuse_watchdog_stats *ret)
{
	*ret = w->stats;
}
