/* FUSE passthrough's side of the protocol (fs/passthrough.c), with INIT requests and replies
 * as the kernel and libfuse write them: passthrough is turned on in the INIT reply only when
 * the mount wants it and the kernel offers it, and only in the reply to that INIT; an OPEN
 * reply carries no backing id unless a backing file was registered.  Opens themselves go
 * through a real mount in test_lazyfs.c. */
#include "fs/fuse_kabi.h"
#include "fs/lazyfs.h"
#include "fs/passthrough.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <sys/uio.h>

struct init_req {
	struct k_in_header h;
	struct k_init_in in;
};

struct init_reply {
	struct k_out_header h;
	struct k_init_out out;
};

/* The kernel's INIT: unique 9, offering passthrough or not. */
static void kernel_init(struct sg_passthrough *pt, bool offer, size_t len)
{
	struct init_req r = {
		.h = { .len = sizeof(r), .opcode = K_FUSE_INIT, .unique = 9 },
		.in = { .major = 7, .minor = 40, .flags = K_FUSE_INIT_EXT,
			.flags2 = offer ? K_FUSE_PASSTHROUGH_HI : 0 },
	};
	sg_passthrough_peek_init(pt, (const uint8_t *)&r, len);
}

/* libfuse's reply to the INIT with `unique`; returns it as patched. */
static struct k_init_out reply_init(struct sg_passthrough *pt, uint64_t unique, int32_t error)
{
	struct init_reply r = { .h = { .len = sizeof(r), .error = error, .unique = unique },
				.out = { .major = 7, .minor = 34, .max_stack_depth = 0 } };
	struct iovec iov[2] = { { &r.h, sizeof(r.h) }, { &r.out, sizeof(r.out) } };

	sg_passthrough_patch_reply(pt, iov, 2);
	return r.out;
}

static bool patched(const struct k_init_out *o)
{
	return (o->flags & K_FUSE_INIT_EXT) && (o->flags2 & K_FUSE_PASSTHROUGH_HI) &&
	       o->max_stack_depth == 1;
}

TEST(on_only_when_wanted_and_offered)
{
	struct sg_passthrough *pt;
	struct sg_lazyfs_stats st = { 0 };
	struct k_init_out o;

	/* Wanted and offered: the reply to that INIT asks for it, and it is on. */
	CHECK_EQ(sg_passthrough_new(NULL, true, NULL, NULL, &pt), 0);
	CHECK(!sg_passthrough_on(pt));
	kernel_init(pt, true, sizeof(struct init_req));
	o = reply_init(pt, 8, 0);             /* another request's reply: untouched */
	CHECK(!patched(&o) && !sg_passthrough_on(pt));
	o = reply_init(pt, 9, 0);
	CHECK(patched(&o));
	CHECK(sg_passthrough_on(pt));
	sg_passthrough_stats(pt, &st);
	CHECK(st.passthrough);
	CHECK_EQ(st.passthrough_error, 0);
	sg_passthrough_free(pt);

	/* Not offered, not wanted, or an INIT that failed: off. */
	for (int k = 0; k < 3; k++) {
		CHECK_EQ(sg_passthrough_new(NULL, k != 1, NULL, NULL, &pt), 0);
		kernel_init(pt, k != 0, sizeof(struct init_req));
		o = reply_init(pt, 9, k == 2 ? -EPROTO : 0);
		CHECK(!patched(&o));
		CHECK(!sg_passthrough_on(pt));
		sg_passthrough_stats(pt, &st);
		CHECK(!st.passthrough);
		sg_passthrough_free(pt);
	}
}

/* An INIT too short to hold the flags, or another opcode, offers nothing. */
TEST(short_or_other_requests_offer_nothing)
{
	struct sg_passthrough *pt;
	struct k_init_out o;

	CHECK_EQ(sg_passthrough_new(NULL, true, NULL, NULL, &pt), 0);
	kernel_init(pt, true, sizeof(struct k_in_header) + 8);
	o = reply_init(pt, 9, 0);
	CHECK(!patched(&o));
	struct init_req r = { .h = { .opcode = 14, .unique = 9 },
			      .in = { .flags = K_FUSE_INIT_EXT, .flags2 = K_FUSE_PASSTHROUGH_HI } };
	sg_passthrough_peek_init(pt, (const uint8_t *)&r, sizeof(r));
	o = reply_init(pt, 9, 0);
	CHECK(!patched(&o));
	CHECK(!sg_passthrough_on(pt));
	sg_passthrough_free(pt);
}

/* With passthrough on, an OPEN reply gets a backing id only while one is being answered. */
TEST(open_replies_are_left_alone)
{
	struct sg_passthrough *pt;
	struct k_out_header h = { .len = sizeof(h) + sizeof(struct k_open_out), .unique = 12 };
	struct k_open_out open = { .fh = 5, .open_flags = 1 };
	struct iovec iov[2] = { { &h, sizeof(h) }, { &open, sizeof(open) } };

	CHECK_EQ(sg_passthrough_new(NULL, true, NULL, NULL, &pt), 0);
	kernel_init(pt, true, sizeof(struct init_req));
	(void)reply_init(pt, 9, 0);
	CHECK(sg_passthrough_on(pt));
	sg_passthrough_patch_reply(pt, iov, 2);
	CHECK_EQ(open.open_flags, 1);
	CHECK_EQ(open.backing_id, 0);
	CHECK_EQ(sg_passthrough_waiting(pt), 0);
	sg_passthrough_free(pt);
}

TEST_MAIN()
