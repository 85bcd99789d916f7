/* Replays saved inputs through one fuzz target without libFuzzer (systemd's fuzz-main.c idea).
 * The Makefile links it with each tests/fuzz/NAME/fuzz.c into $(BUILD)/fuzz-replay/NAME, in
 * the ordinary build and in the ASan+UBSan one, and tests/run.sh replays tests/fuzz/NAME/corpus/
 * and tests/fuzz/NAME/regressions/ with it:
 *
 *   build/fuzz-replay/toc tests/fuzz/toc/corpus tests/fuzz/toc/regressions [FILE...]
 *
 * An argument is a file or a directory (its regular files, in name order).  Each file runs
 * once through LLVMFuzzerTestOneInput, from an exact-size heap copy (ASan sees an over-read),
 * under a time limit (REPLAY_TIMEOUT seconds, default 10 like the libFuzzer runs' -timeout),
 * in a forked child that runs the inputs in order, as libFuzzer does when it loads a corpus.
 * An input that crashes, traps, trips a sanitizer or times out fails, and the rest still run
 * in a new child; a leak (LeakSanitizer runs at the child's exit) is traced to its inputs.
 * Prints a FAIL line per failed input and ends with "N passed, N failed"; exits 1 if any
 * failed. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned replay_timeout = 10;
static int passed, failed;

/* An exact-size copy, so that reading one byte past the input is a heap overflow. */
static int read_file(const char *path, uint8_t **ret_buf, size_t *ret_size)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	uint8_t *buf;

	if (!f)
		return -errno;
	if (fstat(fileno(f), &st) < 0) {
		int r = -errno;
		fclose(f);
		return r;
	}
	if (!(buf = malloc(st.st_size ? (size_t)st.st_size : 1))) {
		fclose(f);
		return -ENOMEM;
	}
	size_t n = fread(buf, 1, (size_t)st.st_size, f);
	fclose(f);
	if (n != (size_t)st.st_size) {
		free(buf);
		return -EIO;
	}
	*ret_buf = buf;
	*ret_size = n;
	return 0;
}

/* Runs files[from..to) in one forked child, each under its own alarm; *cur says which one the
 * child is on, and is `to` once every input has returned.  Returns the wait status. */
static int run_child(char **files, size_t from, size_t to, volatile size_t *cur)
{
	int status;
	pid_t pid;

	*cur = from;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		for (size_t i = from; i < to; i++) {
			uint8_t *data = NULL;
			size_t size = 0;
			*cur = i;
			int r = read_file(files[i], &data, &size);
			if (r < 0) {
				fprintf(stderr, "%s: %s\n", files[i], strerror(-r));
				exit(2);
			}
			alarm(replay_timeout);
			(void)LLVMFuzzerTestOneInput(data, size);
			alarm(0);
			free(data);
		}
		*cur = to;
		exit(0);   /* not _exit: LeakSanitizer checks at exit */
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

static bool status_ok(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void report(const char *what, int status)
{
	if (WIFSIGNALED(status))
		printf("FAIL %s (signal %d%s)\n", what, WTERMSIG(status),
		       WTERMSIG(status) == SIGALRM ? ": timed out" : "");
	else
		printf("FAIL %s (exit %d)\n", what, WEXITSTATUS(status));
}

/* files[from..to) in one child (forking per input would pay LeakSanitizer's exit scan per
 * input).  An input that kills the child fails; the inputs before it run again without it, to
 * get their exit check, and the ones after it in a new child.  When the child fails only at
 * exit (a leak), each input is rerun alone to name the one that leaks. */
static void replay(char **files, size_t from, size_t to, volatile size_t *cur)
{
	while (from < to) {
		int status = run_child(files, from, to, cur);
		size_t stop = *cur;

		if (status_ok(status)) {
			passed += (int)(to - from);
			return;
		}
		if (stop < to) {
			report(files[stop], status);
			failed++;
			replay(files, from, stop, cur);
			from = stop + 1;
			continue;
		}
		int before = failed;
		for (size_t i = from; i < to; i++) {
			status = run_child(files, i, i + 1, cur);
			if (status_ok(status)) {
				passed++;
			} else {
				report(files[i], status);
				failed++;
			}
		}
		if (failed == before) {
			printf("FAIL %s..%s (fail at exit together, never alone)\n", files[from],
			       files[to - 1]);
			failed++;
		}
		return;
	}
}

static int skip_name(const struct dirent *de)
{
	return de->d_name[0] != '.';
}

static void add_file(char ***files, size_t *n, const char *path)
{
	char **f = realloc(*files, (*n + 1) * sizeof(**files));
	if (!f || !(f[*n] = strdup(path))) {
		perror("replay");
		exit(2);
	}
	*files = f;
	(*n)++;
}

/* A file, or the regular files of a directory in name order. */
static void add_path(char ***files, size_t *n, const char *path)
{
	struct dirent **names;
	struct stat st;
	int count;

	if (stat(path, &st) < 0 || (S_ISDIR(st.st_mode) &&
				    (count = scandir(path, &names, skip_name, alphasort)) < 0)) {
		printf("FAIL %s (%s)\n", path, strerror(errno));
		failed++;
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		add_file(files, n, path);
		return;
	}
	for (int i = 0; i < count; i++) {
		char file[4096];
		if (snprintf(file, sizeof(file), "%s/%s", path, names[i]->d_name) <
			    (int)sizeof(file) &&
		    stat(file, &st) == 0 && S_ISREG(st.st_mode))
			add_file(files, n, file);
		free(names[i]);
	}
	free(names);
}

int main(int argc, char **argv)
{
	const char *env = getenv("REPLAY_TIMEOUT");
	char **files = NULL;
	size_t n = 0;

	if (env && atoi(env) > 0)
		replay_timeout = (unsigned)atoi(env);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++)
		add_path(&files, &n, argv[i]);
	volatile size_t *cur = mmap(NULL, sizeof(*cur), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (cur == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	replay(files, 0, n, cur);
	for (size_t i = 0; i < n; i++)
		free(files[i]);
	free(files);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
