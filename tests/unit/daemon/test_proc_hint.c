/* What a reading process's command line names (daemon/proc_hint.h): command lines are
 * interpreted (a compiler's sources; anything else, python included, nothing), the includes
 * become candidate paths, and for real processes (dash copied under the name
 * x86_64-linux-gnu-gcc-12, so that /proc/PID/exe says so, kept alive by its -c command) the
 * owner is asked for them once per command line, once a worker has read the sources as the
 * process sees them (relative to its cwd, absolute from its root), a value of -o not read. */
#include "daemon/proc_hint.h"
#include "tests/helpers/tmpdir.h"
#include "tests/unit/test.h"

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void parse(const char *const *argv, const char *exe, struct sg_proc_cmd *cmd,
		  char *buf, size_t size)
{
	size_t len = 0;

	for (size_t i = 0; argv[i]; i++) {
		size_t n = strlen(argv[i]) + 1;
		CHECK(len + n <= size);
		memcpy(buf + len, argv[i], n);
		len += n;
	}
	sg_proc_cmd_parse(buf, len, exe, cmd);
}

TEST(command_lines_are_interpreted)
{
	static char buf[1024];
	struct sg_proc_cmd cmd;

	parse((const char *[]){ "gcc", "-O2", "-o", "out.c", "-dumpbase", "d.c", "a.c", "-I", "x.c",
				"/src/b.cc", "lib.o", NULL },
	      "x86_64-linux-gnu-gcc-12", &cmd, buf, sizeof(buf));
	CHECK_EQ(cmd.kind, SG_PROC_CC);
	CHECK_EQ(cmd.n_files, 2u);
	CHECK_STR(cmd.files[0], "a.c");
	CHECK_STR(cmd.files[1], "/src/b.cc");
	parse((const char *[]){ "cc1", "-quiet", "h.c", NULL }, "cc1", &cmd, buf, sizeof(buf));
	CHECK_EQ(cmd.kind, SG_PROC_CC);
	/* Anything else, python too, and an argv cut off: nothing. */
	parse((const char *[]){ "sh", "-c", "gcc a.c", NULL }, "dash", &cmd, buf, sizeof(buf));
	CHECK_EQ(cmd.kind, SG_PROC_NONE);
	parse((const char *[]){ "python3", "a.c", NULL }, "python3.11", &cmd, buf, sizeof(buf));
	CHECK_EQ(cmd.kind, SG_PROC_NONE);
	memcpy(buf, "gcc\0-c\0a.c", 10);   /* no NUL at the end */
	sg_proc_cmd_parse(buf, 10, "gcc", &cmd);
	CHECK_EQ(cmd.kind, SG_PROC_NONE);
}

struct paths {
	unsigned n;
	char list[256][256];
};

static void on_path(void *ctx, const char *path)
{
	struct paths *p = ctx;

	CHECK(p->n < 256);
	CHECK(path[0] != '/' && !strstr(path, ".."));
	snprintf(p->list[p->n++], sizeof(p->list[0]), "%s", path);
}

static bool has(const struct paths *p, const char *path)
{
	for (unsigned i = 0; i < p->n; i++)
		if (strcmp(p->list[i], path) == 0)
			return true;
	return false;
}

static struct paths got;

TEST(names_become_the_paths_a_layer_may_have)
{
	struct sg_proc_cmd cc = { .kind = SG_PROC_CC };
	const char *src = "#include <stdio.h>\n#include_next <limits.h>\n";
	sg_proc_hint_paths(&cc, (const uint8_t *)src, strlen(src), on_path, &got);
	CHECK(has(&got, "usr/include/stdio.h"));
	CHECK(has(&got, "usr/include/x86_64-linux-gnu/stdio.h"));
	CHECK(!has(&got, "usr/include/limits.h"));
}

/* ---- real processes ---- */

static const char *dir;
static struct paths asked;
static unsigned calls;
static char refs_seen[64];

static void on_ask(void *userdata, const char *const *refs, size_t n_refs,
		   const char *const *paths, size_t n_paths)
{
	(void)userdata;
	calls++;
	CHECK_EQ(n_refs, 1);
	snprintf(refs_seen, sizeof(refs_seen), "%s", refs[0]);
	for (size_t i = 0; i < n_paths; i++)
		on_path(&asked, paths[i]);
}

/* dash under `name` in the temp dir, run with argv in cwd `cwd`: its pid. */
static pid_t spawn(const char *name, const char *const *argv, const char *cwd)
{
	char path[256], cmd[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(cmd, sizeof(cmd), "cp /bin/dash '%s'", path);
	if (access(path, X_OK) != 0)
		CHECK_EQ(system(cmd), 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (chdir(cwd) != 0 || null < 0 || dup2(null, 2) < 0)
			_exit(127);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	/* Until the exec is done: its exe is the copy. */
	char exe[64], target[256];
	snprintf(exe, sizeof(exe), "/proc/%d/exe", pid);
	for (int i = 0; i < 200; i++) {
		ssize_t n = readlink(exe, target, sizeof(target) - 1);
		if (n > 0 && (target[n] = 0, strcmp(target, path) == 0))
			return pid;
		usleep(5000);
	}
	TEST_FAIL("%s never ran", name);
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void run_until(struct sg_loop *loop, unsigned want_calls)
{
	double end = test_now_ms() + 5000;
	while (calls < want_calls && test_now_ms() < end)
		CHECK(sg_loop_run_once(loop, 10) >= 0);
}

static void run_for(struct sg_loop *loop, int ms)
{
	double end = test_now_ms() + ms;
	while (test_now_ms() < end)
		CHECK(sg_loop_run_once(loop, 10) >= 0);
}

TEST(a_processes_command_line_is_asked_for_once)
{
	struct sg_loop *loop;
	struct sg_proc_hints *h;
	const char *refs[] = { "registry.test/app:1" };

	dir = test_tmpdir("proc-hint");
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_proc_hints_new(loop, on_ask, NULL, &h), 0);

	/* Another program: nothing. */
	pid_t sh = spawn("sh", (const char *[]){ "sh", "-c", "sleep 5", "a.c", NULL }, dir);
	sg_proc_hints_reader(h, (uint32_t)sh, refs, 1);
	run_for(loop, 200);
	CHECK_EQ(calls, 0u);
	reap(sh);

	/* A compiler: its sources read as it sees them, the value of -o not. */
	char abs_src[256];
	snprintf(abs_src, sizeof(abs_src), "%s/b.c", dir);
	(void)test_tmpfile("a.c", "#include <stdio.h>\n", 19);
	(void)test_tmpfile("b.c", "#include <sys/types.h>\n", 23);
	(void)test_tmpfile("out.c", "#include <never.h>\n", 19);
	memset(&asked, 0, sizeof(asked));
	pid_t cc = spawn("x86_64-linux-gnu-gcc-12",
			 (const char *[]){ "gcc", "-c", "sleep 5", "-o", "out.c", "a.c", abs_src,
					   NULL },
			 dir);
	CHECK(sg_proc_hints_due(h, (uint32_t)cc));
	sg_proc_hints_reader(h, (uint32_t)cc, refs, 1);
	/* Looked at just now: the next reads of that pid within 20 ms are not (the caller
	 * skips gathering its refs); another pid's are. */
	CHECK(!sg_proc_hints_due(h, (uint32_t)cc));
	CHECK(sg_proc_hints_due(h, (uint32_t)cc + 1));
	CHECK(!sg_proc_hints_due(h, 0));
	run_until(loop, 1);
	CHECK_EQ(calls, 1u);
	CHECK_STR(refs_seen, refs[0]);
	CHECK(has(&asked, "usr/include/stdio.h"));
	CHECK(has(&asked, "usr/include/x86_64-linux-gnu/stdio.h"));
	CHECK(has(&asked, "usr/include/sys/types.h"));
	CHECK(!has(&asked, "usr/include/never.h"));
	/* The same command line again, past the 20 ms: looked at, but not asked again. */
	run_for(loop, 30);
	CHECK(sg_proc_hints_due(h, (uint32_t)cc));
	sg_proc_hints_reader(h, (uint32_t)cc, refs, 1);
	run_for(loop, 200);
	CHECK_EQ(calls, 1u);
	reap(cc);

	/* Freed with a read on its thread: it ends without asking. */
	pid_t cc2 = spawn("x86_64-linux-gnu-gcc-12",
			  (const char *[]){ "gcc", "-c", "sleep 5", "a.c", "-DX", NULL }, dir);
	sg_proc_hints_reader(h, (uint32_t)cc2, refs, 1);
	sg_proc_hints_free(h);
	run_for(loop, 500);
	CHECK_EQ(calls, 1u);
	reap(cc2);
	sg_loop_free(loop);
}

TEST_MAIN()
