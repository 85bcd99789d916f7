/* The fd store's holder side (daemon/fdstore.h): started ahead of a mount by
 * sg_fdstore_warm, so that the mount's put finds it running.  The holder is this binary run
 * as "fdholder" (the store starts /proc/self/exe fdholder --root ROOT, as the daemon does). */
#include "daemon/fdstore.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon/fdholder.h"
#include "tests/helpers/tmpdir.h"
#include "tests/unit/test.h"

static char sock_path[256];

static struct sg_fdstore *open_store(const char *root, size_t want_held)
{
	struct sg_fdstore *st = NULL;
	struct sg_held_fd *held = NULL;
	size_t n = 0;
	struct sg_error err = { 0 };

	CHECK_EQ(setenv("STARGZD_FDSTORE", "holder", 1), 0);
	CHECK_EQ(sg_fdstore_open(root, &st, &held, &n, &err), 0);
	CHECK_EQ(n, want_held);
	for (size_t i = 0; i < n; i++)
		close(held[i].fd);
	free(held);
	CHECK_EQ(sg_fdstore_kind(st), SG_FDSTORE_HOLDER);
	return st;
}

static bool holder_answers(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	CHECK(s >= 0);
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	bool ok = connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(s);
	return ok;
}

static bool wait_holder(int ms)
{
	for (int waited = 0; waited < ms; waited += 10) {
		if (holder_answers())
			return true;
		struct timespec ts = { .tv_nsec = 10 * 1000000 };
		nanosleep(&ts, NULL);
	}
	return false;
}

/* Holds the read end of a pipe under `name` (the holder keeps it until the write end closes
 * or a daemon takes it back), then takes it back through a second store, as the next daemon
 * does: the holder, left with nothing, exits. */
static void put_and_take_back(struct sg_fdstore *st, const char *root)
{
	struct sg_error err = { 0 };
	int p[2];

	CHECK_EQ(pipe(p), 0);
	CHECK_EQ(sg_fdstore_put(st, "k1", p[0], &err), 0);
	sg_fdstore_free(open_store(root, 1));
	close(p[0]);
	close(p[1]);
}

/* A mount on its way warms the store: the holder comes up by itself, with no put, and the
 * put that follows finds it (and keeps the descriptor for the next daemon). */
TEST(a_warmed_holder_comes_up_before_the_first_put)
{
	const char *root = test_tmpdir("fdstore");
	snprintf(sock_path, sizeof(sock_path), "%s/" SG_FDHOLDER_SOCK, root);
	struct sg_fdstore *st = open_store(root, 0);

	CHECK(!holder_answers());
	sg_fdstore_warm(st);
	CHECK(wait_holder(3000));
	sg_fdstore_warm(st);   /* running: nothing more */
	CHECK(holder_answers());
	put_and_take_back(st, root);
	sg_fdstore_free(st);
}

/* A put right after the warm-up, before the holder it started answers: the put waits for that
 * holder rather than failing (or starting another). */
TEST(a_put_right_after_the_warm_up_waits_for_the_holder_it_started)
{
	const char *root = test_tmpdir("fdstore");
	snprintf(sock_path, sizeof(sock_path), "%s/" SG_FDHOLDER_SOCK, root);
	struct sg_fdstore *st = open_store(root, 0);

	sg_fdstore_warm(st);
	put_and_take_back(st, root);
	sg_fdstore_free(st);
}

/* Without a holder (STARGZD_FDSTORE=none), warming starts nothing. */
TEST(warming_a_store_that_keeps_nothing_starts_no_holder)
{
	const char *root = test_tmpdir("fdstore");
	struct sg_fdstore *st = NULL;
	struct sg_held_fd *held = NULL;
	size_t n = 0;
	struct sg_error err = { 0 };

	snprintf(sock_path, sizeof(sock_path), "%s/" SG_FDHOLDER_SOCK, root);
	CHECK_EQ(setenv("STARGZD_FDSTORE", "none", 1), 0);
	CHECK_EQ(sg_fdstore_open(root, &st, &held, &n, &err), 0);
	sg_fdstore_warm(st);
	CHECK(!wait_holder(300));
	struct stat sb;
	CHECK(stat(sock_path, &sb) < 0 && errno == ENOENT);
	sg_fdstore_free(st);
}

int main(int argc, char **argv)
{
	/* The holder the store starts: this binary, run as "fdholder --root ROOT". */
	if (argc > 1 && strcmp(argv[1], "fdholder") == 0)
		return sg_fdholder_main(argc - 1, argv + 1);
	return test_main(argc, argv);
}
