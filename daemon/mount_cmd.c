/* `stargzd mount`: mounts one eStargz layer in the foreground with the daemon's own code
 * (registry client or a local blob, TOC verification, chunk cache, FUSE on the loop) and
 * unmounts it cleanly on SIGINT/SIGTERM.  For debugging layers and for benchmarks. */
#include "daemon/mount_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/core/digest.h"
#include "daemon/core/log.h"
#include "daemon/core/loop.h"
#include "daemon/remote.h"
#include "fs/cache_bound.h"
#include "fs/fetch_trace.h"
#include "daemon/core/range_source.h"
#include "net/blob.h"
#include "net/registry.h"

static const char mount_usage[] =
	"Usage: stargzd mount [OPTIONS] REF LAYER-DIGEST MOUNTPOINT\n"
	"       stargzd mount [OPTIONS] --blob FILE MOUNTPOINT\n"
	"\n"
	"Mounts one eStargz layer lazily in the foreground; Ctrl-C unmounts it.\n"
	"\n"
	"  --blob FILE          serve a local blob instead of a registry's\n"
	"  --toc-digest DIGEST  the layer's TOC digest (containerd.io/snapshot/stargz/toc.digest)\n"
	"  --skip-verify        mount without a TOC digest and chunk checks (unsafe)\n"
	"  --cache DIR          chunk cache directory, kept (default: a private directory\n"
	"                       under $TMPDIR or /var/tmp, removed at exit); one process\n"
	"                       at a time: a directory the daemon or another mount uses is\n"
	"                       refused\n"
	"  --cache-max BYTES    bound of the cache directory, e.g. 512M, 10G (default: 20G,\n"
	"                       at most half of its filesystem); least recently used chunks\n"
	"                       are evicted\n"
	"  --plain-http         allow plain HTTP to localhost / 127.0.0.1\n"
	"  --insecure HOST      allow plain HTTP to HOST[:PORT]\n"
	"  --no-prefetch, --no-background, --no-passthrough\n"
	"  --no-speculate       fetch no neighbours of a missed file\n"
	"  --spec-budget BYTES  speculation's budget per miss at most (default 16M)\n"
	"  --fetch-trace-dir DIR\n"
	"                       write the fetch trace to DIR/trace-PID.jsonl\n"
	"  --log-level LEVEL\n";

struct mount_state {
	struct sg_loop *loop;
	const char *blob;
	struct sg_fetch_trace *trace;   /* --fetch-trace-dir */
	int result;
	bool done, stopping, force;
};

/* The blob opener for --blob: the local file, delivered from the loop like a registry's. */
static int file_open(void *ctx, const char *ref, const char *digest,
		     struct sg_range_source **ret_src, struct sg_error *err, struct sg_op *op,
		     sg_op_cb cb)
{
	struct mount_state *m = ctx;

	(void)ref;
	(void)digest;
	int r = sg_range_source_file_open(m->loop, m->blob, ret_src);
	if (r < 0)
		sg_error_set(err, r, "%s", strerror(-r));
	return sg_post(m->loop, op, r, cb);
}

static void on_mounted(void *ud, int res, const char *err)
{
	struct mount_state *m = ud;

	if (res < 0) {
		sg_error("cannot mount the layer: %s", err ? err : strerror(-res));
		m->result = res;
		sg_loop_stop(m->loop);
		return;
	}
	sg_info("mounted; Ctrl-C to unmount");
}

static void on_shutdown(void *ud)
{
	struct mount_state *m = ud;
	m->done = true;
}

/* Unmounted from outside (umount, fusermount -u): nothing left to serve. */
static void on_lost(void *ud, int64_t key)
{
	struct mount_state *m = ud;

	(void)key;
	sg_info("the mount was removed from outside; exiting");
	sg_loop_stop(m->loop);
}

static void on_signal(struct sg_loop *loop, int signo, void *ud)
{
	struct mount_state *m = ud;

	if (m->stopping) {
		sg_warn("received %s again: exiting without waiting", strsignal(signo));
		m->force = true;
		return;
	}
	m->stopping = true;
	sg_info("received %s, unmounting", strsignal(signo));
	sg_loop_stop(loop);
}

/* Without --cache the chunks go to a private directory, removed at exit: nothing is left
 * in the working directory, and nothing is shared with another process.  $TMPDIR if set,
 * else /var/tmp (on disk, unlike a tmpfs /tmp: a layer's chunks can be large). */
static int make_private_cache(char *out, size_t cap)
{
	const char *base = getenv("TMPDIR");

	if (!base || !*base)
		base = "/var/tmp";
	if (snprintf(out, cap, "%s/stargzd-mount-XXXXXX", base) >= (int)cap)
		return -ENAMETOOLONG;
	if (!mkdtemp(out))
		return -errno;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
		sg_warn("cannot remove %s: %s", path, strerror(errno));
	return 0;
}

/* Removes the private cache directory and everything in it (no symlink is followed, no
 * other filesystem entered). */
static void remove_private_cache(const char *dir)
{
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 && errno != ENOENT)
		sg_warn("cannot remove %s: %s", dir, strerror(errno));
}

/* sha256 of a local file, for its cache directory name. */
static int file_digest(const char *path, char out[SG_DIGEST_STRLEN + 1])
{
	struct stat st;
	struct sg_digest d;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		int e = -errno;
		if (fd >= 0)
			close(fd);
		return e;
	}
	void *p = st.st_size ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (p == MAP_FAILED)
		return -errno;
	sg_sha256(p, (size_t)st.st_size, &d);
	if (p)
		munmap(p, (size_t)st.st_size);
	sg_digest_format(&d, out);
	return 0;
}

/* The command line, parsed. */
struct mount_args {
	const char *blob, *toc_digest, *cache, *insecure[8];
	size_t n_insecure;
	bool skip_verify, plain_http, prefetch, background, passthrough, speculate;
	uint64_t cache_max, spec_budget;
	const char *trace_dir;
	const char *ref, *mountpoint;
	char digest[SG_DIGEST_STRLEN + 1];
};

/* 0 to go on, or the exit status: 0 after --help, 2 for bad usage, 1 for a blob that
 * cannot be read. */
static int parse_args(int argc, char **argv, struct mount_args *a, bool *ret_exit)
{
	static const struct option opts[] = {
		{ "blob", required_argument, NULL, 'b' },
		{ "toc-digest", required_argument, NULL, 't' },
		{ "skip-verify", no_argument, NULL, 's' },
		{ "cache", required_argument, NULL, 'c' },
		{ "cache-max", required_argument, NULL, 'm' },
		{ "plain-http", no_argument, NULL, 'p' },
		{ "insecure", required_argument, NULL, 'i' },
		{ "no-prefetch", no_argument, NULL, 'P' },
		{ "no-background", no_argument, NULL, 'B' },
		{ "no-passthrough", no_argument, NULL, 'T' },
		{ "no-speculate", no_argument, NULL, 'S' },
		{ "spec-budget", required_argument, NULL, 'g' },
		{ "fetch-trace-dir", required_argument, NULL, 'd' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c, r;

	*ret_exit = true;
	a->prefetch = a->background = a->passthrough = a->speculate = true;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'b': a->blob = optarg; break;
		case 't': a->toc_digest = optarg; break;
		case 's': a->skip_verify = true; break;
		case 'c': a->cache = optarg; break;
		case 'm':
			if (sg_parse_size(optarg, &a->cache_max) < 0) {
				fprintf(stderr, "stargzd mount: bad --cache-max \"%s\" (e.g. 512M, 10G)\n", optarg);
				return 2;
			}
			break;
		case 'p': a->plain_http = true; break;
		case 'i':
			if (a->n_insecure < 8)
				a->insecure[a->n_insecure++] = optarg;
			break;
		case 'P': a->prefetch = false; break;
		case 'B': a->background = false; break;
		case 'T': a->passthrough = false; break;
		case 'S': a->speculate = false; break;
		case 'g':
			if (sg_parse_size(optarg, &a->spec_budget) < 0 || a->spec_budget < (256u << 10)) {
				fprintf(stderr, "stargzd mount: bad --spec-budget \"%s\" (256K or more)\n", optarg);
				return 2;
			}
			break;
		case 'd': a->trace_dir = optarg; break;
		case 'l':
			r = sg_log_level_from_string(optarg);
			if (r < 0) {
				fprintf(stderr, "stargzd mount: unknown log level \"%s\"\n", optarg);
				return 2;
			}
			sg_log_set_level((enum sg_log_level)r);
			break;
		case 'h':
			fputs(mount_usage, stdout);
			return 0;
		default:
			fputs(mount_usage, stderr);
			return 2;
		}
	}
	if (argc - optind != (a->blob ? 1 : 3)) {
		fputs(mount_usage, stderr);
		return 2;
	}
	a->ref = a->blob ? "local" : argv[optind];
	a->mountpoint = argv[argc - 1];
	if (a->blob) {
		r = file_digest(a->blob, a->digest);
		if (r < 0) {
			fprintf(stderr, "stargzd mount: cannot read %s: %s\n", a->blob, strerror(-r));
			return 1;
		}
	} else {
		snprintf(a->digest, sizeof(a->digest), "%s", argv[optind + 1]);
	}
	if (!a->toc_digest && !a->skip_verify) {
		fprintf(stderr, "stargzd mount: give --toc-digest (or --skip-verify to mount unverified)\n");
		return 2;
	}
	*ret_exit = false;
	return 0;
}

/* The cache directory, made if needed, as an absolute path in cache_abs.  Without --cache a
 * private one, named in private_cache (removed at exit). */
static int prepare_cache(struct mount_args *a, char *private_cache, size_t private_cap,
			 char *cache_abs)
{
	int r;

	if (!a->cache) {
		r = make_private_cache(private_cache, private_cap);
		if (r < 0) {
			fprintf(stderr, "stargzd mount: cannot create a cache directory under %s: %s\n",
				getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp",
				strerror(-r));
			return r;
		}
		a->cache = private_cache;
		sg_info("cache %s (removed at exit; --cache DIR keeps one)", a->cache);
	}
	if (mkdir(a->cache, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		fprintf(stderr, "stargzd mount: cannot create %s: %s\n", a->cache, strerror(-r));
		return r;
	}
	if (!realpath(a->cache, cache_abs)) {
		r = -errno;
		fprintf(stderr, "stargzd mount: %s: %s\n", a->cache, strerror(-r));
		return r;
	}
	return 0;
}

/* The registry client (none for --blob) and the remote-layer manager, then the mount
 * started.  What was made is returned even on failure, for the caller to free. */
static int start_mount(struct mount_state *m, const struct mount_args *a, const char *cache_abs,
		       struct sg_registry **ret_reg, struct sg_remote **ret_remote)
{
	struct sg_blob_opener opener = { .open = file_open, .ctx = m };
	struct sg_error err = { 0 };
	int r;

	if (!a->blob) {
		struct sg_registry_config rc = {
			.plain_http_localhost = a->plain_http,
			.insecure_hosts = a->insecure,
			.ninsecure_hosts = a->n_insecure,
		};
		r = sg_registry_new(m->loop, &rc, ret_reg, &err);
		if (r < 0) {
			fprintf(stderr, "stargzd mount: %s\n", err.msg);
			return r;
		}
		opener = (struct sg_blob_opener){ .open = sg_registry_open_blob,
						  .open_for_toc = sg_registry_open_blob_tail,
						  .unsized = sg_registry_blob_unsized,
						  .ctx = *ret_reg };
	}
	struct sg_remote_config cfg = {
		.cache_root = cache_abs,
		.prefetch = a->prefetch,
		.background_fetch = a->background,
		.no_passthrough = !a->passthrough,
		.allow_skip_verify = a->skip_verify,
		.cache_max_bytes = a->cache_max,
		.speculate = a->speculate,
		.spec_budget_max = (size_t)a->spec_budget,
		.fetch_trace = m->trace,
	};
	r = sg_remote_new(m->loop, &cfg, &opener, ret_remote);
	if (r == -EBUSY) {
		fprintf(stderr, "stargzd mount: cache directory %s is in use by another stargzd "
			"(pid %ld)\n", cache_abs, sg_cache_bound_lock_owner(cache_abs));
		return r;
	}
	if (r < 0) {
		fprintf(stderr, "stargzd mount: %s: %s\n", cache_abs, strerror(-r));
		return r;
	}
	sg_remote_set_lost_handler(*ret_remote, on_lost, m);
	struct sg_remote_layer layer = {
		.ref = a->ref, .digest = a->digest, .toc_digest = a->toc_digest,
		.skip_verify = a->skip_verify,
	};
	r = sg_remote_mount(*ret_remote, 1, a->mountpoint, &layer, on_mounted, m);
	if (r < 0)
		fprintf(stderr, "stargzd mount: %s\n", strerror(-r));
	return r;
}

int sg_mount_command(int argc, char **argv)
{
	struct mount_args a = { 0 };
	struct mount_state m = { .result = 0 };
	struct sg_registry *reg = NULL;
	struct sg_remote *remote = NULL;
	char cache_abs[PATH_MAX], private_cache[PATH_MAX] = "";
	bool exit_now;
	int r;

	r = parse_args(argc, argv, &a, &exit_now);
	if (exit_now)
		return r;
	m.blob = a.blob;
	signal(SIGPIPE, SIG_IGN);
	r = sg_loop_new(NULL, &m.loop);
	if (r < 0) {
		fprintf(stderr, "stargzd mount: cannot create the event loop: %s\n", strerror(-r));
		return 1;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	(void)sg_loop_watch_signals(m.loop, &set, on_signal, &m);

	/* From here on SIGINT/SIGTERM wait for the loop, so the private directory made next is
	 * always removed at the end below, whatever fails in between. */
	r = prepare_cache(&a, private_cache, sizeof(private_cache), cache_abs);
	if (r < 0)
		goto out;
	if (a.trace_dir) {
		r = sg_fetch_trace_open(a.trace_dir, &m.trace);
		if (r < 0) {
			fprintf(stderr, "stargzd mount: cannot write the fetch trace in %s: %s\n",
				a.trace_dir, strerror(-r));
			goto out;
		}
	}
	r = start_mount(&m, &a, cache_abs, &reg, &remote);
	if (r < 0)
		goto out;
	r = sg_loop_run(m.loop);
	m.stopping = true;
	sg_remote_shutdown(remote, false, on_shutdown, &m);
	/* Reads waiting for the registry are cancelled (answered EINTR) at once; what is left
	 * is bounded: 5 s, or a second signal. */
	for (int i = 0; i < 100 && !m.done && !m.force; i++)
		(void)sg_loop_run_once(m.loop, 50);
	r = m.result;
	if (!m.done) {
		/* Exiting closes the FUSE session: the kernel answers whatever is still waiting. */
		sg_warn("unmount did not finish in time; exiting anyway");
		sg_fetch_trace_close(m.trace);
		if (private_cache[0])
			remove_private_cache(private_cache);
		return 1;
	}
out:
	/* Cancel the registry's work, deliver every completion, then free owners before what
	 * they use (the layer's blob source points into the registry). */
	sg_registry_shutdown(reg);
	(void)sg_loop_drain(m.loop, 2000);
	if (sg_loop_pending(m.loop) == 0) {
		sg_remote_free(remote);
		/* A layer that never released its blob source (a stuck unmount) keeps the
		 * registry in use: leave it to the exit rather than crash in its free check. */
		if (sg_registry_busy(reg))
			sg_warn("the registry client is still in use at exit; not freed");
		else
			sg_registry_free(reg);
		sg_loop_free(m.loop);
	}
	/* The layer wrote its summary at its close: what is buffered goes out. */
	sg_fetch_trace_close(m.trace);
	if (private_cache[0])
		remove_private_cache(private_cache);
	return r < 0 ? 1 : 0;
}
