/* A small unit-test runner.  Each test file defines tests with TEST(name) { ... } and ends
 * with TEST_MAIN().  Every test runs in its own forked child with a time limit, so a crash
 * or a hang fails that test and the rest still run.  The program prints one line per test
 * and ends with "N passed, N failed" (plus ", N skipped"); its exit code is 1 if any failed.
 *
 * Inside a test: CHECK(cond), CHECK_EQ(a, b) for integers, CHECK_STR(a, b), CHECK_MEM(a, b, n),
 * CHECK_ABORTS(stmt) (stmt, run in a forked child, must end in SIGABRT: the free checks of
 * owners of ops), SKIP("why").  A failing check prints where and why, and ends the test.
 * Run one test: ./test_x NAME.  Set TEST_TIMEOUT (seconds, default 60) to change the limit. */
#ifndef STARGZD_TEST_H
#define STARGZD_TEST_H

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct test_case {
	const char *name;
	void (*fn)(void);
};

#define TEST_MAX 256
static struct test_case test_cases[TEST_MAX];
static int test_count;

#define TEST_SKIP_EXIT 77

#define TEST(name) \
	static void test_##name(void); \
	__attribute__((constructor)) static void register_##name(void) \
	{ \
		if (test_count < TEST_MAX) \
			test_cases[test_count++] = (struct test_case){ #name, test_##name }; \
	} \
	static void test_##name(void)

/* Runs `stmt` in a forked child (its stderr, the expected abort message, discarded) and
 * checks that it died of SIGABRT.  Ending normally, or of anything else, fails. */
#define CHECK_ABORTS(stmt) \
	do { \
		int st_; \
		pid_t pid_ = fork(); \
		if (pid_ < 0) \
			TEST_FAIL("fork failed"); \
		if (pid_ == 0) { \
			FILE *null_ = freopen("/dev/null", "w", stderr); \
			(void)null_; \
			stmt; \
			_exit(0); \
		} \
		if (waitpid(pid_, &st_, 0) != pid_) \
			TEST_FAIL("waitpid failed"); \
		if (!WIFSIGNALED(st_) || WTERMSIG(st_) != SIGABRT) \
			TEST_FAIL("%s did not abort (%s %d)", #stmt, \
				  WIFSIGNALED(st_) ? "signal" : "exit status", \
				  WIFSIGNALED(st_) ? WTERMSIG(st_) : WEXITSTATUS(st_)); \
	} while (0)

#define TEST_FAIL(...) \
	do { \
		fprintf(stderr, "    %s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__); \
		fprintf(stderr, "\n"); \
		exit(1); \
	} while (0)

#define CHECK(cond) \
	do { if (!(cond)) TEST_FAIL("CHECK(%s) failed", #cond); } while (0)

#define CHECK_EQ(a, b) \
	do { \
		intmax_t a_ = (intmax_t)(a), b_ = (intmax_t)(b); \
		if (a_ != b_) \
			TEST_FAIL("%s == %s failed: %jd != %jd", #a, #b, a_, b_); \
	} while (0)

#define CHECK_STR(a, b) \
	do { \
		const char *a_ = (a), *b_ = (b); \
		if (!a_ || !b_ || strcmp(a_, b_) != 0) \
			TEST_FAIL("%s == %s failed: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)", \
				  b_ ? b_ : "(null)"); \
	} while (0)

#define CHECK_MEM(a, b, n) \
	do { if (memcmp((a), (b), (n)) != 0) TEST_FAIL("memcmp(%s, %s, %s) != 0", #a, #b, #n); } while (0)

#define SKIP(...) \
	do { \
		fprintf(stderr, "    skipped: "); \
		fprintf(stderr, __VA_ARGS__); \
		fprintf(stderr, "\n"); \
		exit(TEST_SKIP_EXIT); \
	} while (0)

static inline double test_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int test_run_one(const struct test_case *tc, unsigned timeout_s)
{
	double t0 = test_now_ms();
	int status;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		alarm(timeout_s);
		tc->fn();
		fflush(stdout);
		exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		;
	double ms = test_now_ms() - t0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		printf("ok   %s (%.1f ms)\n", tc->name, ms);
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_SKIP_EXIT) {
		printf("skip %s\n", tc->name);
		return TEST_SKIP_EXIT;
	}
	if (WIFSIGNALED(status))
		printf("FAIL %s (signal %d%s)\n", tc->name, WTERMSIG(status),
		       WTERMSIG(status) == SIGALRM ? ": timed out" : "");
	else
		printf("FAIL %s (exit %d)\n", tc->name, WEXITSTATUS(status));
	return 1;
}

static int test_main(int argc, char **argv)
{
	unsigned timeout_s = 60;
	int passed = 0, failed = 0, skipped = 0;
	const char *env = getenv("TEST_TIMEOUT");

	if (env && atoi(env) > 0)
		timeout_s = (unsigned)atoi(env);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < test_count; i++) {
		if (argc > 1) {
			int match = 0;
			for (int j = 1; j < argc; j++)
				match |= strcmp(argv[j], test_cases[i].name) == 0;
			if (!match)
				continue;
		}
		int r = test_run_one(&test_cases[i], timeout_s);
		if (r == 0)
			passed++;
		else if (r == TEST_SKIP_EXIT)
			skipped++;
		else
			failed++;
	}
	if (skipped)
		printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	else
		printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

#define TEST_MAIN() \
	int main(int argc, char **argv) { return test_main(argc, argv); }

#endif
