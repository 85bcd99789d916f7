/* The requests a FUSE mount owes a reply and the watchdog over them (fs/fuse_watchdog.c),
 * fed with request headers as the kernel writes them: forgets and interrupts are owed
 * nothing, a reply settles its request, a request unanswered past the budget is reported
 * once, and a stopped watchdog starts no timer. */
#include "daemon/core/loop.h"
#include "fs/fuse_kabi.h"
#include "fs/fuse_watchdog.h"
#include "tests/unit/test.h"

#include <errno.h>

#define BUDGET_NS (20ull * 1000000u)

static struct {
	int calls;
	unsigned opcode;
	uint64_t unique, age_ms;
} stuck;

static void on_stuck(void *userdata, unsigned opcode, uint64_t unique, uint64_t age_ms)
{
	CHECK_EQ(*(int *)userdata, 42);
	stuck.calls++;
	stuck.opcode = opcode;
	stuck.unique = unique;
	stuck.age_ms = age_ms;
}

static void request(struct sg_fuse_watchdog *w, uint32_t opcode, uint64_t unique)
{
	struct k_in_header h = { .len = sizeof(h), .opcode = opcode, .unique = unique };
	uint8_t buf[sizeof(h) + 16] = { 0 };

	memcpy(buf, &h, sizeof(h));
	sg_fuse_watchdog_request(w, buf, sizeof(buf));
}

static void run_for(struct sg_loop *loop, int ms)
{
	double end = test_now_ms() + ms;
	while (test_now_ms() < end)
		CHECK(sg_loop_run_once(loop, 5) >= 0);
}

static int tag = 42;

static void open_watchdog(struct sg_loop **loop, struct sg_group *group,
			  struct sg_fuse_watchdog **w)
{
	struct sg_fuse_watchdog_config cfg = { .stuck_after_ns = BUDGET_NS, .on_stuck = on_stuck,
					       .userdata = &tag };

	CHECK_EQ(sg_loop_new(NULL, loop), 0);
	sg_group_init(group);
	CHECK_EQ(sg_fuse_watchdog_new(*loop, group, &cfg, w), 0);
}

TEST(replies_settle_their_requests)
{
	struct sg_loop *loop;
	struct sg_group group;
	struct sg_fuse_watchdog *w;
	struct sg_fuse_watchdog_stats st;

	open_watchdog(&loop, &group, &w);
	request(w, 15, 100);                  /* READ */
	request(w, K_FUSE_FORGET, 101);       /* owed nothing */
	request(w, K_FUSE_BATCH_FORGET, 102);
	request(w, K_FUSE_INTERRUPT, 103);
	sg_fuse_watchdog_request(w, (const uint8_t *)"short", 5);   /* not a request */
	sg_fuse_watchdog_stats(w, &st);
	CHECK_EQ(st.requests, 4);
	CHECK_EQ(st.unanswered, 1);
	CHECK(!sg_group_idle(&group));        /* the timer runs while one is owed */
	sg_fuse_watchdog_reply(w, 100);
	sg_fuse_watchdog_reply(w, 100);       /* a second reply settles nothing more */
	sg_fuse_watchdog_stats(w, &st);
	CHECK_EQ(st.replies, 2);
	CHECK_EQ(st.unanswered, 0);
	/* The timer ends without a round: nothing is owed any more. */
	for (int i = 0; i < 100 && !sg_group_idle(&group); i++)
		CHECK(sg_loop_run_once(loop, 10) >= 0);
	CHECK(sg_group_idle(&group));
	CHECK_EQ(stuck.calls, 0);
	sg_fuse_watchdog_free(w);
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	sg_loop_free(loop);
}

TEST(a_request_unanswered_past_the_budget_is_reported_once)
{
	struct sg_loop *loop;
	struct sg_group group;
	struct sg_fuse_watchdog *w;
	struct sg_fuse_watchdog_stats st;

	open_watchdog(&loop, &group, &w);
	request(w, 14, 7);                    /* OPEN */
	run_for(loop, 5);
	CHECK_EQ(stuck.calls, 0);             /* not yet */
	CHECK_ABORTS(sg_fuse_watchdog_free(w));   /* its timer is in flight */
	run_for(loop, 100);
	CHECK_EQ(stuck.calls, 1);
	CHECK_EQ(stuck.opcode, 14);
	CHECK_EQ(stuck.unique, 7);
	CHECK(stuck.age_ms >= 20);
	sg_fuse_watchdog_stats(w, &st);
	CHECK_EQ(st.stuck, 1);
	CHECK_EQ(st.unanswered, 1);
	/* Stopped (the mount goes): the round in flight is the last. */
	sg_fuse_watchdog_stop(w);
	for (int i = 0; i < 100 && !sg_group_idle(&group); i++)
		CHECK(sg_loop_run_once(loop, 10) >= 0);
	CHECK(sg_group_idle(&group));
	request(w, 15, 8);
	CHECK(sg_group_idle(&group));
	CHECK_EQ(stuck.calls, 1);
	sg_fuse_watchdog_free(w);             /* with requests still unanswered */
	CHECK_EQ(sg_loop_drain(loop, 1000), 0);
	sg_loop_free(loop);
}

TEST_MAIN()
