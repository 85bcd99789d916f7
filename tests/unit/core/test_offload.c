/* Work on a helper thread (daemon/core/offload.c): it runs off the loop's thread, its
 * completion runs once from the loop after it, two at once both complete, and a drain with
 * work in flight waits for the work and completes it with -ECANCELED. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "daemon/core/offload.h"
#include "tests/unit/test.h"

struct job {
	struct sg_offload w;
	pthread_t ran_on;
	atomic_int worked;
	int done_calls;
	int done_res;
	unsigned sleep_ms;
};

static void work(struct sg_offload *w)
{
	struct job *j = sg_container_of(w, struct job, w);

	usleep(j->sleep_ms * 1000);
	j->ran_on = pthread_self();
	atomic_store(&j->worked, 1);
}

static void done(struct sg_op *op)
{
	struct job *j = sg_container_of(op, struct job, w.op);

	CHECK(atomic_load(&j->worked));   /* the thread was joined first */
	j->done_calls++;
	j->done_res = op->res;
}

static void run_until_done(struct sg_loop *loop, struct job *j)
{
	double end = test_now_ms() + 5000;

	while (!j->done_calls) {
		CHECK(test_now_ms() < end);
		CHECK(sg_loop_run_once(loop, 10) >= 0);
	}
}

TEST(work_runs_off_the_loop_and_completes_once_on_it)
{
	struct sg_loop *loop;
	struct job a = { .sleep_ms = 30 }, b = { .sleep_ms = 1 };

	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_offload_start(loop, &a.w, work, done), 0);
	CHECK_EQ(sg_offload_start(loop, &b.w, work, done), 0);
	CHECK_EQ(a.done_calls + b.done_calls, 0);   /* never from inside the call */
	run_until_done(loop, &a);
	run_until_done(loop, &b);
	CHECK(!pthread_equal(a.ran_on, pthread_self()));
	CHECK_EQ(a.done_res, 0);
	CHECK_EQ(b.done_res, 0);
	for (double end = test_now_ms() + 30; test_now_ms() < end;)
		CHECK(sg_loop_run_once(loop, 5) >= 0);
	CHECK_EQ(a.done_calls, 1);
	CHECK_EQ(b.done_calls, 1);
	CHECK_EQ(sg_offload_start(loop, NULL, work, done), -EINVAL);
	CHECK_EQ(sg_loop_drain(loop, 2000), 0);
	sg_loop_free(loop);
}

TEST(a_drain_waits_for_the_work_and_completes_it_cancelled)
{
	struct sg_loop *loop;
	struct job a = { .sleep_ms = 100 }, late = { .sleep_ms = 1 };

	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_offload_start(loop, &a.w, work, done), 0);
	CHECK_EQ(sg_loop_drain(loop, 5000), 0);
	CHECK_EQ(a.done_calls, 1);
	CHECK_EQ(a.done_res, -ECANCELED);
	CHECK(atomic_load(&a.worked));
	/* Once the loop drains, the work still runs, before the call returns; no completion. */
	CHECK_EQ(sg_offload_start(loop, &late.w, work, done), -ECANCELED);
	CHECK(atomic_load(&late.worked));
	CHECK_EQ(late.done_calls, 0);
	sg_loop_free(loop);
}

TEST_MAIN()
