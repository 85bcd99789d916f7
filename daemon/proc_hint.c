#include "daemon/proc_hint.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "daemon/core/list.h"
#include "daemon/core/offload.h"
#include "daemon/core/small_file.h"
#include "fs/c_includes.h"

/* ---- Command lines ---- */

/* [<triplet>-]gcc[-<version>], g++, cc, c++, clang, clang++, cc1, cc1plus. */
static bool c_compiler(const char *exe)
{
	static const char *const names[] = { "gcc", "g++", "cc", "c++", "clang", "clang++",
					     "cc1", "cc1plus" };
	char name[64];
	size_t len = strlen(exe);

	if (len == 0 || len >= sizeof(name))
		return false;
	memcpy(name, exe, len + 1);
	char *dash = strrchr(name, '-');
	if (dash && dash[1] && strspn(dash + 1, "0123456789.") == strlen(dash + 1))
		*dash = '\0';   /* the version */
	dash = strrchr(name, '-');
	const char *base = dash ? dash + 1 : name;   /* after the triplet */
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(base, names[i]) == 0)
			return true;
	return false;
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n > m && strcmp(s + n - m, suffix) == 0;
}

static bool c_source(const char *arg)
{
	static const char *const suffixes[] = { ".c", ".cc", ".cpp", ".cxx", ".c++", ".C" };

	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		if (has_suffix(arg, suffixes[i]))
			return true;
	return false;
}

/* A compiler's options whose value is the next argument (not a source to read). */
static bool cc_option_with_value(const char *arg)
{
	static const char *const opts[] = {
		"-o", "-x", "-MF", "-MT", "-MQ", "-dumpbase", "-dumpdir", "-dumpbase-ext",
		"-auxbase", "-auxbase-strip", "-imultiarch", "-iprefix", "-isystem", "-idirafter",
		"-iquote", "-include", "-imacros", "-I", "-L", "-D", "-U", "-aux-info", "-Xlinker",
		"-Xassembler", "-Xpreprocessor",
	};

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (strcmp(arg, opts[i]) == 0)
			return true;
	return false;
}

void sg_proc_cmd_parse(const char *cmdline, size_t len, const char *exe, struct sg_proc_cmd *cmd)
{
	const char *argv[256];
	size_t argc = 0;

	*cmd = (struct sg_proc_cmd){ .kind = SG_PROC_NONE };
	if (len == 0 || cmdline[len - 1] != '\0')
		return;   /* cut off, or not an argv */
	for (size_t at = 0; at < len && argc < sizeof(argv) / sizeof(argv[0]);
	     at += strlen(cmdline + at) + 1)
		argv[argc++] = cmdline + at;
	if (!c_compiler(exe))
		return;
	cmd->kind = SG_PROC_CC;
	for (size_t i = 1; i < argc && cmd->n_files < SG_PROC_FILES_MAX; i++) {
		if (cc_option_with_value(argv[i]))
			i++;
		else if (argv[i][0] != '-' && c_source(argv[i]))
			cmd->files[cmd->n_files++] = argv[i];
	}
}

/* ---- What they name ---- */

/* Each header an include names, in the directories a compiler looks in for <name>. */
struct hint_out {
	void (*cb)(void *ctx, const char *path);
	void *ctx;
};

static void c_header(void *ctx, const struct sg_c_include *inc)
{
	static const char *const dirs[] = { "usr/local/include", "usr/include/x86_64-linux-gnu",
					    "usr/include/aarch64-linux-gnu", "usr/include" };
	struct hint_out *o = ctx;
	char path[1024];

	if (inc->next)
		return;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (snprintf(path, sizeof(path), "%s/%s", dirs[i], inc->name) < (int)sizeof(path))
			o->cb(o->ctx, path);
}

void sg_proc_hint_paths(const struct sg_proc_cmd *cmd, const uint8_t *src, size_t len,
			void (*cb)(void *ctx, const char *path), void *ctx)
{
	struct hint_out o = { .cb = cb, .ctx = ctx };

	if (cmd->kind == SG_PROC_CC && src)
		(void)sg_c_includes(src, len, c_header, &o);
}

/* ---- Readers ---- */

#define SEEN_KEPT 64
#define RECHECK_NS (20ull * 1000000u)
#define REFS_MAX 4

struct sg_proc_hints {
	struct sg_loop *loop;
	sg_proc_hint_cb cb;
	void *userdata;
	/* The command lines seen lately, by pid: an exec changes a pid's. */
	struct { uint32_t pid; uint64_t hash; } seen[SEEN_KEPT];
	unsigned seen_next;
	/* The last pid looked at, and when: a process reading file after file (tar of a
	 * layer) is looked at again only after RECHECK_NS, not at every file. */
	uint32_t last_pid;
	uint64_t last_ns;
	struct sg_list jobs;   /* struct read_job: a thread reads its files */
	bool freed;
};

/* A compiler's sources' read, on a thread of its own (daemon/core/offload.h). */
struct read_job {
	struct sg_offload w;
	struct sg_proc_hints *h;
	struct sg_list link;
	uint32_t pid;
	struct sg_proc_cmd cmd;                    /* pointing into cmdline */
	char cmdline[SG_PROC_CMDLINE_MAX];
	char refs[REFS_MAX][512];
	size_t n_refs;
	uint8_t *text[SG_PROC_FILES_MAX];
	size_t text_len[SG_PROC_FILES_MAX];
};

int sg_proc_hints_new(struct sg_loop *loop, sg_proc_hint_cb cb, void *userdata,
		      struct sg_proc_hints **ret)
{
	struct sg_proc_hints *h = calloc(1, sizeof(*h));

	if (!h)
		return -ENOMEM;
	h->loop = loop;
	h->cb = cb;
	h->userdata = userdata;
	sg_list_init(&h->jobs);
	*ret = h;
	return 0;
}

void sg_proc_hints_free(struct sg_proc_hints *h)
{
	if (!h)
		return;
	h->freed = true;
	if (sg_list_empty(&h->jobs))
		free(h);
}

static uint64_t fnv1a(uint64_t hash, const void *data, size_t len)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++)
		hash = (hash ^ p[i]) * 0x100000001b3ull;
	return hash;
}

/* /proc/PID/cmdline into buf (len through *ret_len) and the name of /proc/PID/exe into exe. */
static int read_process(uint32_t pid, char *buf, size_t size, size_t *ret_len, char *exe,
			size_t exe_size)
{
	char path[64], target[1024];

	snprintf(path, sizeof(path), "/proc/%u/exe", pid);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return -errno;
	target[n] = '\0';
	char *deleted = strstr(target, " (deleted)");
	if (deleted)
		*deleted = '\0';
	const char *base = strrchr(target, '/');
	base = base ? base + 1 : target;
	if (strlen(base) >= exe_size)
		return -ENAMETOOLONG;
	memcpy(exe, base, strlen(base) + 1);
	snprintf(path, sizeof(path), "/proc/%u/cmdline", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t len = sg_read_up_to(fd, buf, size);
	close(fd);
	if (len == size)
		return -E2BIG;   /* cut off: not worth a guess */
	*ret_len = len;
	return 0;
}

/* The file `name` as process pid sees it: from its root (an absolute name) or its working
 * directory, neither left (RESOLVE_IN_ROOT: ".." and absolute symlinks stay inside), no
 * magic links; opened only if it is a regular file (O_PATH first: opening a device can
 * have effects).  At most SG_PROC_FILE_MAX bytes.  On the job's thread. */
static uint8_t *read_as_process(uint32_t pid, const char *name, size_t *ret_len)
{
	char path[64];
	struct open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	struct stat st;
	uint8_t *buf = NULL;
	int dir = -1, pathfd = -1, fd = -1;

	snprintf(path, sizeof(path), "/proc/%u/%s", pid, name[0] == '/' ? "root" : "cwd");
	dir = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		goto out;
	pathfd = (int)syscall(SYS_openat2, dir, name, &how, sizeof(how));
	if (pathfd < 0 || fstat(pathfd, &st) < 0 || !S_ISREG(st.st_mode))
		goto out;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", pathfd);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		goto out;
	size_t want = (size_t)st.st_size < SG_PROC_FILE_MAX ? (size_t)st.st_size : SG_PROC_FILE_MAX;
	buf = malloc(want ? want : 1);
	if (!buf)
		goto out;
	*ret_len = sg_read_up_to(fd, buf, want);
out:
	if (fd >= 0)
		close(fd);
	if (pathfd >= 0)
		close(pathfd);
	if (dir >= 0)
		close(dir);
	return buf;
}

static void read_files(struct sg_offload *w)
{
	struct read_job *j = sg_container_of(w, struct read_job, w);

	for (unsigned i = 0; i < j->cmd.n_files; i++)
		j->text[i] = read_as_process(j->pid, j->cmd.files[i], &j->text_len[i]);
}

/* The paths of one command line, asked for together. */
struct ask {
	char *paths[SG_PROC_PATHS_MAX];
	size_t n;
};

static void ask_path(void *ctx, const char *path)
{
	struct ask *a = ctx;

	if (a->n < SG_PROC_PATHS_MAX && (a->paths[a->n] = strdup(path)))
		a->n++;
}

static void ask_all(struct sg_proc_hints *h, struct ask *a, const char *const *refs,
		    size_t n_refs)
{
	if (a->n > 0)
		h->cb(h->userdata, refs, n_refs, (const char *const *)a->paths, a->n);
	for (size_t i = 0; i < a->n; i++)
		free(a->paths[i]);
	free(a);
}

static void files_read(struct sg_op *op)
{
	struct read_job *j = sg_container_of(op, struct read_job, w.op);
	struct sg_proc_hints *h = j->h;
	const char *refs[REFS_MAX];

	for (size_t i = 0; i < j->n_refs; i++)
		refs[i] = j->refs[i];
	struct ask *a = h->freed || op->res != 0 ? NULL : calloc(1, sizeof(*a));
	sg_list_unlink(&j->link);
	for (unsigned i = 0; i < j->cmd.n_files; i++) {
		if (j->text[i] && a)
			sg_proc_hint_paths(&j->cmd, j->text[i], j->text_len[i], ask_path, a);
		free(j->text[i]);
	}
	if (a)
		ask_all(h, a, refs, j->n_refs);
	free(j);
	if (h->freed && sg_list_empty(&h->jobs))
		free(h);
}

/* Has pid's command line (hash) been seen?  Remembers it either way. */
static bool seen_lately(struct sg_proc_hints *h, uint32_t pid, uint64_t hash)
{
	for (unsigned i = 0; i < SEEN_KEPT; i++)
		if (h->seen[i].pid == pid && h->seen[i].hash == hash)
			return true;
	h->seen[h->seen_next].pid = pid;
	h->seen[h->seen_next].hash = hash;
	h->seen_next = (h->seen_next + 1) % SEEN_KEPT;
	return false;
}

bool sg_proc_hints_due(const struct sg_proc_hints *h, uint32_t pid)
{
	return !h->freed && pid != 0 &&
	       (pid != h->last_pid || sg_now_ns() - h->last_ns >= RECHECK_NS);
}

void sg_proc_hints_reader(struct sg_proc_hints *h, uint32_t pid, const char *const *refs,
			  size_t n_refs)
{
	static char cmdline[SG_PROC_CMDLINE_MAX];   /* the loop's only: parsed before it returns */
	char exe[256];
	size_t len = 0;
	struct sg_proc_cmd cmd;

	if (n_refs == 0 || !sg_proc_hints_due(h, pid))
		return;
	h->last_pid = pid;
	h->last_ns = sg_now_ns();
	if (read_process(pid, cmdline, sizeof(cmdline), &len, exe, sizeof(exe)) < 0)
		return;
	if (seen_lately(h, pid, fnv1a(fnv1a(0xcbf29ce484222325ull, exe, strlen(exe)), cmdline, len)))
		return;
	sg_proc_cmd_parse(cmdline, len, exe, &cmd);
	if (cmd.kind == SG_PROC_NONE)
		return;
	if (n_refs > REFS_MAX)
		n_refs = REFS_MAX;
	if (cmd.n_files == 0)
		return;
	struct read_job *j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->h = h;
	j->pid = pid;
	memcpy(j->cmdline, cmdline, len);
	sg_proc_cmd_parse(j->cmdline, len, exe, &j->cmd);   /* pointing into the job's copy */
	for (size_t i = 0; i < n_refs; i++)
		if (snprintf(j->refs[j->n_refs], sizeof(j->refs[0]), "%s", refs[i]) <
		    (int)sizeof(j->refs[0]))
			j->n_refs++;
	sg_list_insert_tail(&h->jobs, &j->link);
	if (sg_offload_start(h->loop, &j->w, read_files, files_read) < 0) {
		sg_list_unlink(&j->link);
		for (unsigned i = 0; i < j->cmd.n_files; i++)
			free(j->text[i]);
		free(j);
	}
}
