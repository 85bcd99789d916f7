/* The requests a FUSE mount owes an answer, and a watchdog over them.
 *
 * Every request the kernel waits for is counted from the moment it was read from /dev/fuse
 * until its reply was written (forgets, interrupts and notify replies get none).  Every
 * reply libfuse writes passes through the session's writev hook, so the table is exact
 * whatever path answered.  A request unanswered for stuck_after_ns is reported once through
 * on_stuck: it is either waiting on a fetch that outlives its budget or a lost reply (a
 * bug).  A timer on the loop, in the mount's group (cancelling the group stops it), looks
 * every half budget while requests are unanswered: a stuck request is reported between 1
 * and 1.5 budgets old.
 *
 * Single-threaded, on the loop.  Nothing here logs. */
#ifndef STARGZD_FS_FUSE_WATCHDOG_H
#define STARGZD_FS_FUSE_WATCHDOG_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/core/loop.h"

struct sg_fuse_watchdog;

struct sg_fuse_watchdog_config {
	uint64_t stuck_after_ns;
	/* A hook, called from the loop for each request found stuck. */
	void (*on_stuck)(void *userdata, unsigned opcode, uint64_t unique, uint64_t age_ms);
	void *userdata;
};

struct sg_fuse_watchdog_stats {
	uint64_t requests, replies, unanswered;
	uint64_t stuck;               /* reported through on_stuck */
};

/* The timer's op joins `group`. */
int sg_fuse_watchdog_new(struct sg_loop *loop, struct sg_group *group,
			 const struct sg_fuse_watchdog_config *config,
			 struct sg_fuse_watchdog **ret);
/* Forgets the requests still unanswered.  Aborts while its timer is in flight. */
void sg_fuse_watchdog_free(struct sg_fuse_watchdog *w);
/* A request (n bytes, starting with the kernel's request header) was read. */
void sg_fuse_watchdog_request(struct sg_fuse_watchdog *w, const uint8_t *buf, size_t n);
/* The reply to request `unique` was written. */
void sg_fuse_watchdog_reply(struct sg_fuse_watchdog *w, uint64_t unique);
/* The mount stops serving: the timer is not started again. */
void sg_fuse_watchdog_stop(struct sg_fuse_watchdog *w);
void sg_fuse_watchdog_stats(const struct sg_fuse_watchdog *w, struct sg_fuse_watchdog_stats *ret);

#endif
