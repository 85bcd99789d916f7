/* stargzd: the composition root.  Parses flags and the config file, takes the root lock,
 * takes back the FUSE sessions a previous daemon left held (daemon/fdstore.h), opens the
 * socket, optionally daemonizes, then hands everything to the event loop until SIGTERM (a
 * handover: mounts stay for the next daemon) or SIGINT (a full stop: everything is
 * unmounted).  `stargzd stop [--unmount]` sends them; `stargzd fdholder` is the holder. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/cri_proxy.h"
#include "daemon/ahead_cmd.h"
#include "daemon/control.h"
#include "daemon/pull_ahead.h"
#include "daemon/core/log.h"
#include "daemon/core/loop.h"
#include "daemon/fdholder.h"
#include "daemon/fdstore.h"
#include "daemon/grpc.h"
#include "daemon/httpd.h"
#include "daemon/image_entry.h"
#include "daemon/mount_cmd.h"
#include "daemon/profile_cmd.h"
#include "daemon/process.h"
#include "daemon/profile_pull.h"
#include "daemon/prom.h"
#include "daemon/remote.h"
#include "daemon/snapshot.h"
#include "daemon/snapshot_rpc.h"
#include "daemon/status.h"
#include "fs/cache_bound.h"
#include "fs/estargz.h"
#include "fs/fetch_trace.h"
#include "net/blob.h"
#include "net/pool.h"
#include "net/reference.h"
#include "net/registry.h"

#define EXIT_USAGE 2

static const char usage_text[] =
	"Usage: stargzd [OPTIONS]\n"
	"       stargzd mount --help   (mount one layer in the foreground)\n"
	"       stargzd status --help  (what the running daemon is doing)\n"
	"       stargzd pull-ahead --help (run a pull client with the image's layers loading ahead)\n"
	"       stargzd profile --help (learned startup profiles: ls, show, rm, push, pull)\n"
	"       stargzd stop [--unmount] [--root DIR] [--timeout SECONDS]\n"
	"\n"
	"Lazy-pulling containerd snapshotter for eStargz images.\n"
	"\n"
	"Options:\n"
	"  -f, --foreground       stay in the foreground, log to stderr (for debugging and\n"
	"                         for service managers)\n"
	"  -r, --root DIR         state and cache directory (default " SG_DEFAULT_ROOT ")\n"
	"  -a, --address SOCK     unix socket containerd connects to\n"
	"                         (default " SG_DEFAULT_ADDRESS ")\n"
	"  -l, --log-level LEVEL  error, warn, info, debug or trace (default info)\n"
	"  -c, --config FILE      config file (default " SG_DEFAULT_CONFIG " if it exists)\n"
	"  -h, --help             show this help\n"
	"  -V, --version          show the version\n"
	"\n"
	"Signals: SIGTERM hands the lazy mounts over (they stay mounted and the next stargzd\n"
	"takes them over; running containers never notice); SIGINT unmounts everything and\n"
	"stops.  `stargzd stop` sends SIGTERM, `stargzd stop --unmount` SIGINT, and both wait\n"
	"for the daemon to exit.  SIGUSR1 writes out the fetch trace (fetch_trace_dir).\n"
	"\n"
	"containerd config (/etc/containerd/config.toml):\n"
	"  [proxy_plugins.stargz]\n"
	"    type = \"snapshot\"\n"
	"    address = \"" SG_DEFAULT_ADDRESS "\"\n";

struct daemon {
	struct sg_config cfg;
	struct sg_loop *loop;
	struct sg_snapshots *snapshots;
	struct sg_registry *registry;
	struct sg_remote *remote;
	struct sg_fetch_trace *trace;  /* fetch_trace_dir */
	struct sg_snapshot_service *service;
	struct sg_grpc_server *server;
	struct sg_httpd *metrics;      /* metrics_address */
	struct sg_httpd *hook;         /* resolve_hook_address */
	struct sg_httpd *control;      /* ROOT/stargzd-control.sock: `stargzd status`, `pull-ahead` */
	struct sg_cri_proxy *cri;      /* [cri_keychain] */
	struct sg_pull_ahead_ctx ahead;   /* its pulls' layers, loaded before the Prepare */
	struct sg_ahead_pulls *ahead_pulls;   /* `stargzd pull-ahead`'s and the resolve hook's
					       * (NULL: lazy pulling off) */
	bool cri_done;
	struct sg_status_source status;
	int lock_fd;
	int listen_fd;
	int stop_signal;
	struct sg_fdstore *fdstore;
	struct sg_held_fd *held;      /* sessions to take over, until the service has them */
	size_t n_held;
	bool server_done;
	bool service_done;
	struct sg_op trim_timer;
	uint64_t trim_due_ns;
	struct sg_hist loop_lag_ms;    /* how late the trim timer fired: the loop's lag */
};

/* Chunk, batch and read buffers of up to a few MiB come and go all the time; glibc keeps
 * freed heap memory resident.  Giving it back after each free (a low mmap threshold) costs a
 * page fault per page of every new buffer on the loop thread (gcc bench: +2 s), so free
 * heap pages are returned in bulk now and then instead. */
#define TRIM_INTERVAL_NS (3ull * 1000000000u)

static void trim_tick(struct sg_op *op)
{
	struct daemon *d = sg_container_of(op, struct daemon, trim_timer);

	if (op->res == -ECANCELED)
		return;
	/* A timer fires late by as long as the loop was busy elsewhere: the lag that every
	 * FUSE request and RPC waiting at that moment saw too. */
	uint64_t now = sg_now_ns();
	sg_hist_observe(&d->loop_lag_ms, now > d->trim_due_ns ? (double)(now - d->trim_due_ns) / 1e6 : 0);
	(void)malloc_trim(0);
	/* The same 3 s tick lets go of the holds nobody ended: `stargzd pull-ahead`'s whose
	 * command was killed, and every resolve hook's at its time. */
	sg_ahead_pulls_expire(d->ahead_pulls, now);
	/* Refused only while the loop drains: no more trimming is wanted then. */
	d->trim_due_ns = sg_now_ns() + TRIM_INTERVAL_NS;
	(void)sg_timer_start(d->loop, &d->trim_timer, TRIM_INTERVAL_NS, trim_tick);
}

/* Registry hosts' counters, one family at a time (the format wants each family together). */
struct host_family {
	struct sg_prom *p;
	const char *name;
	unsigned what;   /* 0 requests, 1 retries, 2 failures */
};

static void host_sample(void *userdata, const char *authority, bool tls,
			const struct sg_host_stats *st)
{
	const struct host_family *f = userdata;
	const unsigned v[] = { st->requests, st->retries, st->failures };
	const char *labels[] = { "host", authority, "scheme", tls ? "https" : "http", NULL, NULL, NULL };

	if (f->what != 1) {
		sg_prom_sample(f->p, f->name, labels, v[f->what]);
		return;
	}
	for (unsigned c = 0; c < _SG_RETRY_CAUSE_MAX; c++) {
		labels[4] = "cause";
		labels[5] = sg_retry_cause_name(c);
		sg_prom_sample(f->p, f->name, labels, st->retries_by[c]);
	}
}

static void registry_metrics(const struct sg_registry *reg, struct sg_prom *p)
{
	static const struct { const char *name, *help; } fam[] = {
		{ "stargzd_registry_requests_total", "Requests sent to a registry host, retries included" },
		{ "stargzd_registry_retries_total", "Requests tried again, by cause: connection (connect, "
		  "TLS, reset, truncated answer), timeout (or 408), server_error (5xx), throttled (429)" },
		{ "stargzd_registry_failures_total", "Requests that failed after their retries" },
	};

	for (unsigned i = 0; i < 3; i++) {
		struct host_family f = { .p = p, .name = fam[i].name, .what = i };
		sg_prom_family(p, fam[i].name, "counter", fam[i].help);
		sg_registry_each_host(reg, host_sample, &f);
	}
}

/* GET /metrics: everything the daemon counts, written from the loop (daemon/httpd.h). */
static int write_metrics(FILE *out, const struct sg_httpd_req *req, void *userdata)
{
	struct daemon *d = userdata;
	struct sg_prom prom, *p = &prom;

	sg_prom_init(p);
	sg_remote_metrics(d->remote, p);
	sg_grpc_server_metrics(d->server, p);
	registry_metrics(d->registry, p);
	sg_prom_family(p, "stargzd_loop_lag_seconds", "histogram",
		       "How late a periodic timer of the event loop fired (every 3 s)");
	sg_prom_hist(p, "stargzd_loop_lag_seconds", NULL, &d->loop_lag_ms, SG_HIST_BOUNDS, 0.001);
	sg_prom_family(p, "stargzd_build_info", "gauge", "The running version");
	sg_prom_sample(p, "stargzd_build_info", (const char *[]){ "version", STARGZD_VERSION, NULL }, 1);
	int r = sg_prom_failed(p) ? -ENOMEM : 0;
	if (r == 0)
		fwrite(p->buf, 1, p->len, out);
	sg_prom_done(p);
	return r;
}

/* GET /status on the control socket: `stargzd status` (daemon/status.h). */
static int write_status(FILE *out, const struct sg_httpd_req *req, void *userdata)
{
	struct daemon *d = userdata;

	return sg_status_write(out, strcmp(req->query, "json") == 0, &d->status);
}

/* GET /pull-ahead?image=REF&hold=S and /pull-ahead-end?id=N&pulled=0|1 on the control
 * socket: `stargzd pull-ahead` (daemon/ahead_cmd.h). */
static int write_pull_ahead(FILE *out, const struct sg_httpd_req *req, void *userdata)
{
	struct daemon *d = userdata;

	if (!d->ahead_pulls) {
		sg_warn("`stargzd pull-ahead`: lazy pulling is off, nothing is loaded ahead");
		return -ENOTSUP;
	}
	return sg_ahead_pulls_start(d->ahead_pulls, req->query, out, sg_now_ns());
}

static int write_pull_ahead_end(FILE *out, const struct sg_httpd_req *req, void *userdata)
{
	struct daemon *d = userdata;

	return d->ahead_pulls ? sg_ahead_pulls_end(d->ahead_pulls, req->query, out) : -ENOTSUP;
}

/* HEAD /v2/NAME/manifests/REF?ns=HOST from containerd's resolver (daemon/ahead_cmd.h). */
static int answer_hook(FILE *out, const struct sg_httpd_req *req, void *userdata)
{
	struct daemon *d = userdata;

	return sg_ahead_pulls_hook(d->ahead_pulls, req, out, sg_now_ns());
}

static const struct sg_httpd_route hook_routes[] = {
	{ .path = "/", .content_type = "text/plain; charset=utf-8", .fn = answer_hook,
	  .prefix = true },
};
static const struct sg_httpd_route metrics_routes[] = {
	{ .path = "/metrics", .content_type = "text/plain; version=0.0.4; charset=utf-8",
	  .fn = write_metrics },
};
static const struct sg_httpd_route control_routes[] = {
	{ .path = "/status", .content_type = "text/plain; charset=utf-8", .fn = write_status },
	{ .path = "/pull-ahead", .content_type = "text/plain; charset=utf-8",
	  .fn = write_pull_ahead, .acts = true },
	{ .path = "/pull-ahead-end", .content_type = "text/plain; charset=utf-8",
	  .fn = write_pull_ahead_end, .acts = true },
};

/* The metrics endpoint if configured, and the control socket. */
static int start_endpoints(struct daemon *d)
{
	struct sg_error err = { 0 };
	char path[PATH_MAX + 32];
	int r;

	if (d->cfg.metrics_address[0]) {
		r = sg_httpd_new(d->loop, d->cfg.metrics_address, 0660, metrics_routes, 1, d,
				 &d->metrics, &err);
		if (r < 0) {
			sg_error("cannot serve metrics on %s: %s", d->cfg.metrics_address, err.msg);
			return r;
		}
		sg_info("metrics on %s", d->cfg.metrics_address);
	}
	snprintf(path, sizeof(path), "%s/%s", d->cfg.root, SG_CONTROL_SOCKET_NAME);
	d->status = (struct sg_status_source){ .root = d->cfg.root, .started_ns = sg_now_ns(),
					       .remote = d->remote, .registry = d->registry };
	if (d->remote && d->registry) {
		r = sg_ahead_pulls_new(&(struct sg_pull_ahead_ctx){ .registry = d->registry,
								   .remote = d->remote },
				       &d->ahead_pulls);
		if (r < 0)
			return r;
	}
	if (d->cfg.resolve_hook_address[0] && !d->ahead_pulls) {
		sg_warn("resolve_hook_address is set but lazy pulling is off: no resolve hook");
	} else if (d->cfg.resolve_hook_address[0]) {
		r = sg_httpd_new(d->loop, d->cfg.resolve_hook_address, 0600, hook_routes, 1, d,
				 &d->hook, &err);
		if (r < 0) {
			sg_error("cannot serve the resolve hook on %s: %s",
				 d->cfg.resolve_hook_address, err.msg);
			return r;
		}
		sg_info("resolve hook on http://%s (list it in containerd's hosts.toml before the "
			"registry it loads ahead for)", d->cfg.resolve_hook_address);
	}
	r = sg_httpd_new(d->loop, path, 0600, control_routes,
			 sizeof(control_routes) / sizeof(control_routes[0]), d, &d->control, &err);
	/* Not a reason to refuse containerd its snapshots (a root path too long for a socket
	 * name, say): only `stargzd status` is lost. */
	if (r < 0)
		sg_warn("no control socket, `stargzd status` will not answer: %s", err.msg);
	return 0;
}

static void on_stop_signal(struct sg_loop *loop, int signo, void *userdata)
{
	struct daemon *d = userdata;

	if (signo == SIGUSR1) {
		/* Not a stop: the fetch trace's buffered lines go out, for a reader of it now. */
		sg_fetch_trace_flush(d->trace);
		return;
	}
	d->stop_signal = signo;
	if (signo == SIGTERM && sg_fdstore_kind(d->fdstore) != SG_FDSTORE_NONE)
		sg_info("received %s, stopping; the lazy mounts stay, held by %s, for the next "
			"stargzd (SIGINT or `stargzd stop --unmount` unmounts them)", strsignal(signo),
			sg_fdstore_kind_name(sg_fdstore_kind(d->fdstore)));
	else
		sg_info("received %s, stopping and unmounting", strsignal(signo));
	sg_loop_stop(loop);
}

static void on_server_done(void *userdata)
{
	struct daemon *d = userdata;
	d->server_done = true;
}

static void on_cri_done(void *userdata)
{
	struct daemon *d = userdata;
	d->cri_done = true;
}

static void on_service_done(void *userdata)
{
	struct daemon *d = userdata;
	d->service_done = true;
}

/* Runs the loop until *flag is set or timeout_ms passed. */
static void run_until(struct daemon *d, const bool *flag, int timeout_ms)
{
	uint64_t end = sg_now_ns() + (uint64_t)timeout_ms * 1000000u;

	while (!*flag && sg_now_ns() < end)
		if (sg_loop_run_once(d->loop, 100) < 0)
			break;
}

/* The lazy-pull machinery: the registry client and the remote-layer manager. */

/* ---- profiles = "registry": an image's startup profiles, from its registry ---- */

struct profile_fetch {
	struct daemon *d;
	struct sg_op op;
	struct sg_profile_pull_result res;
	struct sg_error err;
	char ref[512];
};

static void profile_fetch_note(void *userdata, const char *msg)
{
	struct profile_fetch *f = userdata;

	sg_info("profile pull %s: %s", f->ref, msg);
}

static void profile_fetched(struct sg_op *op)
{
	struct profile_fetch *f = sg_container_of(op, struct profile_fetch, op);

	if (op->res == 0) {
		sg_info("profile pull %s: stored the profiles of %zu layers (artifact %s, found "
			"through the %s, %u round trip%s)", f->ref, f->res.stored, f->res.artifact,
			f->res.found_through, f->res.round_trips, f->res.round_trips == 1 ? "" : "s");
		sg_remote_profiles_stored(f->d->remote, f->ref);
	} else if (op->res == -ENOENT) {
		sg_info("profile pull %s: none: %s", f->ref, f->err.msg);
	} else if (op->res != -ECANCELED) {
		sg_warn("profile pull %s: %s; starting without", f->ref,
			f->err.msg[0] ? f->err.msg : strerror(-op->res));
	}
	free(f);
}

/* The first mount of a layer of ref (remote.h's want_profiles). */
static void want_profiles(void *ctx, const char *ref, const char *manifest_digest)
{
	struct daemon *d = ctx;
	struct profile_fetch *f = calloc(1, sizeof(*f));

	if (!f)
		return;
	f->d = d;
	snprintf(f->ref, sizeof(f->ref), "%s", ref);
	sg_op_init(&f->op);
	struct sg_profile_pull_request req = {
		.loop = d->loop,
		.registry = d->registry,
		.ref = ref,
		.manifest_digest = manifest_digest,
		.root = d->cfg.root,
		.on_note = profile_fetch_note,
		.userdata = f,
	};
	int r = sg_profile_pull(&req, &f->res, &f->err, &f->op, profile_fetched);
	if (r < 0) {
		sg_warn("profile pull %s: cannot start: %s", ref, strerror(-r));
		free(f);
	}
}

struct entry_fetch {
	struct daemon *d;
	struct sg_op op;
	struct sg_image_entry e;
	struct sg_error err;
	char ref[512];
};

static void entry_fetched(struct sg_op *op)
{
	struct entry_fetch *f = sg_container_of(op, struct entry_fetch, op);

	if (op->res == 0) {
		sg_debug("image %s: %zu candidate path(s) of its entry programs", f->ref, f->e.n);
		sg_remote_entry_programs(f->d->remote, f->ref, &f->e);
	} else if (op->res != -ECANCELED) {
		/* A hint only: the container starts the same, its program fetched when read. */
		sg_info("image %s: its config gives no entry program to fetch ahead: %s", f->ref,
			f->err.msg[0] ? f->err.msg : strerror(-op->res));
	}
	free(f);
}

/* A PullImage the CRI proxy forwarded (daemon/cri_proxy.h's pull hooks). */
static void *pull_started(void *ctx, const char *image)
{
	struct daemon *d = ctx;

	return sg_pull_ahead_start(&d->ahead, image);
}

/* The first mount of a layer of ref (remote.h's want_entry). */
static void want_entry(void *ctx, const char *ref)
{
	struct daemon *d = ctx;
	struct sg_ref parsed;

	if (d->cfg.entry_programs == SG_ENTRY_AUTO && sg_ref_parse(ref, &parsed, NULL) == 0 &&
	    strcmp(parsed.domain, "docker.io") == 0) {
		/* Docker Hub counts manifest GETs against the pull rate limit: not by default. */
		sg_debug("image %s: entry programs not fetched ahead (Docker Hub; entry_programs "
			 "= \"on\" would)", ref);
		return;
	}
	struct entry_fetch *f = calloc(1, sizeof(*f));
	if (!f)
		return;
	f->d = d;
	snprintf(f->ref, sizeof(f->ref), "%s", ref);
	sg_op_init(&f->op);
	int r = sg_image_entry_fetch(d->loop, d->registry, ref, NULL, &f->e, &f->err, &f->op,
				     entry_fetched);
	if (r < 0) {
		sg_warn("image %s: cannot fetch its config: %s", ref, strerror(-r));
		free(f);
	}
}

static int setup_remote(struct daemon *d)
{
	struct sg_config *c = &d->cfg;
	char cache_root[PATH_MAX + 16];
	struct sg_error err = { 0 };
	struct sg_registry_config rc = {
		.hosts_dir = c->hosts_dir,
		.docker_config = c->docker_config[0] ? c->docker_config : NULL,
		.insecure_hosts = (const char *const *)c->insecure_hosts,
		.ninsecure_hosts = c->n_insecure_hosts,
		.plain_http_localhost = c->plain_http_localhost,
		.resolver_domains = (const char *const *)c->resolver_domains,
		.resolver_hosts_toml = (const char *const *)c->resolver_hosts_toml,
		.nresolver = c->n_resolver,
		.first_byte_timeout_ns = c->fetch_timeout_s * 1000000000ull,
		.idle_timeout_ns = c->fetch_timeout_s * 1000000000ull,
		.attempts = c->fetch_attempts,
	};
	int r;

	r = sg_registry_new(d->loop, &rc, &d->registry, &err);
	if (r < 0) {
		sg_error("cannot set up the registry client: %s", err.msg);
		return r;
	}
	if (c->fetch_trace_dir[0]) {
		r = sg_fetch_trace_open(c->fetch_trace_dir, &d->trace);
		if (r < 0) {
			sg_error("cannot write the fetch trace in %s: %s", c->fetch_trace_dir,
				 strerror(-r));
			return r;
		}
		sg_info("fetch trace in %s", sg_fetch_trace_path(d->trace));
	}
	snprintf(cache_root, sizeof(cache_root), "%s/cache", c->root);
	struct sg_remote_config remote_cfg = {
		.cache_root = cache_root,
		.prefetch = c->prefetch,
		.background_fetch = c->background_fetch,
		.no_passthrough = !c->passthrough,
		.allow_skip_verify = c->allow_skip_verify,
		.fetch_window = c->fetch_window,
		.speculate = c->speculate,
		.process_hints = c->process_hints,
		.spec_budget_max = (size_t)c->spec_budget_bytes,
		.fetch_trace = d->trace,
		.cache_max_bytes = c->cache_max_bytes,
		.max_chunk_size = c->max_chunk_size,
		.prefetch_bytes = c->prefetch_size,
		.attr_timeout = c->attr_timeout,
		.entry_timeout = c->entry_timeout,
		/* A FUSE request older than the whole fetch budget (every attempt timing out)
		 * is stuck, not slow: it gets logged. */
		.stuck_after_ns = (uint64_t)(c->fetch_timeout_s ? c->fetch_timeout_s : 30) *
				  (c->fetch_attempts ? c->fetch_attempts : 4) * 1000000000ull +
				  5000000000ull,
	};
	remote_cfg.fdstore = d->fdstore;
	if (c->profiles != SG_PROFILES_OFF) {
		remote_cfg.profile_root = c->root;
		remote_cfg.profile_quiet_ns = (uint64_t)c->profile_quiet_ms * 1000000u;
	}
	if (c->profiles == SG_PROFILES_REGISTRY) {
		remote_cfg.want_profiles = want_profiles;
		remote_cfg.want_profiles_ctx = d;
	}
	if (c->entry_programs != SG_ENTRY_OFF) {
		remote_cfg.want_entry = want_entry;
		remote_cfg.want_entry_ctx = d;
	}
	/* The open brings what the TOC loader reads first, so that read is served from it. */
	_Static_assert(SG_REGISTRY_OPEN_TAIL == SG_ESGZ_TAIL_READ, "the tail the TOC loader reads");
	struct sg_blob_opener opener = { .open = sg_registry_open_blob,
					 .open_for_toc = sg_registry_open_blob_tail,
					 .unsized = sg_registry_blob_unsized,
					 .ctx = d->registry };
	r = sg_remote_new(d->loop, &remote_cfg, &opener, &d->remote);
	if (r == -EBUSY)
		sg_error("cache directory %s is in use by another stargzd (pid %ld)", cache_root,
			 sg_cache_bound_lock_owner(cache_root));
	else if (r < 0)
		sg_error("cannot create the layer cache under %s: %s", cache_root, strerror(-r));
	return r;
}

static int parse_args(int argc, char **argv, struct sg_config *cfg)
{
	static const struct option opts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "root", required_argument, NULL, 'r' },
		{ "address", required_argument, NULL, 'a' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *root = NULL, *address = NULL, *level = NULL, *config = NULL;
	bool foreground = false;
	struct sg_error err = { 0 };
	int c, r;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":fr:a:l:c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'f': foreground = true; break;
		case 'r': root = optarg; break;
		case 'a': address = optarg; break;
		case 'l': level = optarg; break;
		case 'c': config = optarg; break;
		case 'h':
			fputs(usage_text, stdout);
			exit(EXIT_SUCCESS);
		case 'V':
			printf("stargzd %s\n", STARGZD_VERSION);
			exit(EXIT_SUCCESS);
		case ':':
			fprintf(stderr, "stargzd: option %s needs a value (see --help)\n", argv[optind - 1]);
			return -EINVAL;
		default:
			if (optopt)
				fprintf(stderr, "stargzd: unknown option -%c (see --help)\n", optopt);
			else
				fprintf(stderr, "stargzd: unknown option %s (see --help)\n", argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "stargzd: unexpected argument \"%s\" (see --help)\n", argv[optind]);
		return -EINVAL;
	}

	sg_config_defaults(cfg);
	r = sg_config_load(cfg, config ? config : SG_DEFAULT_CONFIG, &err);
	if (r < 0 && !(r == -ENOENT && !config)) {
		fprintf(stderr, "stargzd: %s\n", err.msg);
		return r;
	}
	if (root)
		snprintf(cfg->root, sizeof(cfg->root), "%s", root);
	if (address)
		snprintf(cfg->address, sizeof(cfg->address), "%s", address);
	if (level) {
		r = sg_log_level_from_string(level);
		if (r < 0) {
			fprintf(stderr, "stargzd: unknown log level \"%s\" (error, warn, info, debug, trace)\n",
				level);
			return r;
		}
		cfg->log_level = (enum sg_log_level)r;
	}
	cfg->foreground = foreground;
	if (cfg->root[0] == '\0' || cfg->address[0] == '\0') {
		fprintf(stderr, "stargzd: root and address must not be empty\n");
		return -EINVAL;
	}
	if (cfg->root[0] != '/') {
		/* The daemon chdirs to / when it detaches; relative paths would move. */
		char abs[PATH_MAX];
		if (!getcwd(abs, sizeof(abs)) ||
		    snprintf(abs + strlen(abs), sizeof(abs) - strlen(abs), "/%s", cfg->root) >=
			    (int)(sizeof(abs) - strlen(abs))) {
			fprintf(stderr, "stargzd: root path too long\n");
			return -ENAMETOOLONG;
		}
		snprintf(cfg->root, sizeof(cfg->root), "%s", abs);
	}
	return 0;
}

/* Detaches from the terminal.  The parent stays until the child reports that it is
 * serving (or why it failed), so `stargzd` returns non-zero when startup fails. */
static int daemonize(const char *root, int *ret_notify_fd)
{
	int pipefd[2];
	char logpath[PATH_MAX];
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		char status = 1;
		close(pipefd[1]);
		if (read(pipefd[0], &status, 1) != 1)
			status = 1;
		_exit(status == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
	}
	close(pipefd[0]);
	if (setsid() < 0)
		return -errno;
	if (snprintf(logpath, sizeof(logpath), "%s/stargzd.log", root) >= (int)sizeof(logpath))
		return -ENAMETOOLONG;
	int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0)
		return -errno;
	dup2(nullfd, STDIN_FILENO);
	dup2(nullfd, STDOUT_FILENO);
	dup2(logfd, STDERR_FILENO);
	close(nullfd);
	close(logfd);
	if (chdir("/") < 0)
		return -errno;
	*ret_notify_fd = pipefd[1];
	return 0;
}

/* A held session of snapshot id (its mount is left alone by the start-up repair). */
static bool is_held(void *ctx, int64_t id)
{
	struct daemon *d = ctx;
	char name[64];

	sg_remote_held_name(id, name, sizeof(name));
	for (size_t i = 0; i < d->n_held; i++)
		if (strcmp(d->held[i].name, name) == 0)
			return true;
	return false;
}

/* `stargzd stop [--unmount] [--root DIR] [--timeout S]`: signals the daemon named in
 * ROOT/stargzd.lock and waits until it has let go of the lock. */
static int stop_command(int argc, char **argv)
{
	const char *root = SG_DEFAULT_ROOT;
	bool unmount = false;
	long timeout_s = 30;
	char path[PATH_MAX], buf[32];
	int fd;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--unmount") == 0)
			unmount = true;
		else if (strcmp(argv[i], "--root") == 0 && i + 1 < argc)
			root = argv[++i];
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
			timeout_s = strtol(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "Usage: stargzd stop [--unmount] [--root DIR] [--timeout SECONDS]\n"
				"  SIGTERM (mounts stay for the next stargzd), or with --unmount SIGINT\n"
				"  (everything is unmounted); waits for the daemon to exit.\n");
			return EXIT_USAGE;
		}
	}
	snprintf(path, sizeof(path), "%s/stargzd.lock", root);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "stargzd stop: no daemon on %s (%s)\n", root, strerror(errno));
		return EXIT_FAILURE;
	}
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	long pid = strtol(buf, NULL, 10);
	if (flock(fd, LOCK_SH | LOCK_NB) == 0 || pid <= 0) {
		fprintf(stderr, "stargzd stop: no daemon runs on %s\n", root);
		close(fd);
		return EXIT_SUCCESS;
	}
	if (kill((pid_t)pid, unmount ? SIGINT : SIGTERM) < 0) {
		fprintf(stderr, "stargzd stop: cannot signal pid %ld: %s\n", pid, strerror(errno));
		close(fd);
		return EXIT_FAILURE;
	}
	for (long waited = 0; waited < timeout_s * 10; waited++) {
		if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
			close(fd);
			return EXIT_SUCCESS;
		}
		usleep(100000);
	}
	fprintf(stderr, "stargzd stop: pid %ld still runs after %ld s\n", pid, timeout_s);
	close(fd);
	return EXIT_FAILURE;
}

static void notify_parent(int *fd, char status)
{
	if (*fd < 0)
		return;
	(void)!write(*fd, &status, 1);
	close(*fd);
	*fd = -1;
}

int main(int argc, char **argv)
{
	struct daemon d = { .lock_fd = -1, .listen_fd = -1 };
	struct sg_error err = { 0 };
	int notify_fd = -1, r, exit_code = EXIT_FAILURE;
	sigset_t stop_set;

	uint64_t start_ns = sg_now_ns();

	if (argc > 1 && strcmp(argv[1], "mount") == 0)
		return sg_mount_command(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "status") == 0)
		return sg_status_command(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "profile") == 0)
		return sg_profile_command(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "fdholder") == 0)
		return sg_fdholder_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "pull-ahead") == 0)
		return sg_pull_ahead_command(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "stop") == 0)
		return stop_command(argc - 1, argv + 1);
	if (parse_args(argc, argv, &d.cfg) < 0)
		return EXIT_USAGE;
	sg_log_set_level(d.cfg.log_level);
	signal(SIGPIPE, SIG_IGN);

	r = sg_root_lock(d.cfg.root, &d.lock_fd, &err);
	if (r < 0) {
		fprintf(stderr, "stargzd: %s\n", err.msg);
		return EXIT_FAILURE;
	}
	/* Before anything touches the snapshots' mounts: sessions a previous daemon left. */
	r = sg_fdstore_open(d.cfg.root, &d.fdstore, &d.held, &d.n_held, &err);
	if (r < 0) {
		fprintf(stderr, "stargzd: %s\n", err.msg);
		goto out;
	}
	if (!d.cfg.lazy) {
		/* No lazy mounts in this run: nothing could take the held ones over. */
		for (size_t i = 0; i < d.n_held; i++)
			close(d.held[i].fd);
		d.n_held = 0;
	}
	r = sg_snapshots_open_keeping(d.cfg.root, is_held, &d, &d.snapshots, &err);
	if (r < 0) {
		fprintf(stderr, "stargzd: %s\n", err.msg);
		goto out;
	}
	r = sg_listen_unix(d.cfg.address, &d.listen_fd, &err);
	if (r < 0) {
		fprintf(stderr, "stargzd: %s\n", err.msg);
		goto out;
	}
	if (!d.cfg.foreground) {
		r = daemonize(d.cfg.root, &notify_fd);
		if (r < 0) {
			sg_error("cannot daemonize: %s", strerror(-r));
			goto out;
		}
	}
	(void)sg_root_lock_write_pid(d.lock_fd, getpid());
	/* After daemonizing: the warnings reach the daemon's log, not only a terminal. */
	for (size_t i = 0; i < d.cfg.n_warnings; i++)
		sg_warn("%s", d.cfg.warnings[i]);

	r = sg_loop_new(NULL, &d.loop);
	if (r < 0) {
		sg_error("cannot create the io_uring event loop: %s", strerror(-r));
		goto out;
	}
	sigemptyset(&stop_set);
	sigaddset(&stop_set, SIGTERM);
	sigaddset(&stop_set, SIGINT);
	sigaddset(&stop_set, SIGUSR1);
	r = sg_loop_watch_signals(d.loop, &stop_set, on_stop_signal, &d);
	if (r < 0) {
		sg_error("cannot watch signals: %s", strerror(-r));
		goto out;
	}
	if (d.cfg.lazy && setup_remote(&d) < 0)
		goto out;
	r = sg_snapshot_service_new(d.loop, d.snapshots, d.remote, &d.service);
	if (r < 0) {
		sg_error("cannot start the snapshot service: %s", strerror(-r));
		goto out;
	}
	r = sg_grpc_server_new(d.loop, d.listen_fd, sg_snapshot_methods, sg_snapshot_methods_count,
			       NULL, d.service, &d.server);
	if (r < 0) {
		sg_error("cannot start the snapshot service: %s", strerror(-r));
		goto out;
	}

	if (start_endpoints(&d) < 0)
		goto out;
	if (d.cfg.cri_keychain) {
		r = sg_cri_proxy_new(d.loop, d.cfg.cri_listen_path, d.cfg.cri_image_service_path,
				     d.registry, &d.cri, &err);
		if (r < 0) {
			sg_error("cannot start the CRI image-service proxy: %s", err.msg);
			goto out;
		}
		sg_info("CRI image service on %s, forwarded to %s", d.cfg.cri_listen_path,
			d.cfg.cri_image_service_path);
		if (d.remote && d.cfg.cri_load_ahead != SG_ENTRY_OFF) {
			d.ahead = (struct sg_pull_ahead_ctx){
				.registry = d.registry,
				.remote = d.remote,
				.skip_docker_hub = d.cfg.cri_load_ahead == SG_ENTRY_AUTO,
			};
			sg_cri_proxy_set_pull_hooks(d.cri, &(struct sg_cri_pull_hooks){
				.started = pull_started, .ended = sg_pull_ahead_end, .ctx = &d });
		}
	}
	if (d.remote) {
		sg_info("%zu held FUSE session(s) to take over; mounts are kept by %s", d.n_held,
			sg_fdstore_kind_name(sg_fdstore_kind(d.fdstore)));
		sg_snapshot_service_take_over(d.service, d.fdstore, d.held, d.n_held, start_ns);
		d.held = NULL;
		d.n_held = 0;
	}
	sg_snapshot_service_restore(d.service);
	sg_info("stargzd %s serving on %s, root %s (pid %ld)%s", STARGZD_VERSION, d.cfg.address,
		d.cfg.root, (long)getpid(), d.remote ? ", lazy pulling on" : "");
	notify_parent(&notify_fd, 0);
	sg_fdstore_notify(d.fdstore, "READY=1\nSTATUS=serving");
	sg_op_init(&d.trim_timer);
	d.trim_due_ns = sg_now_ns() + TRIM_INTERVAL_NS;
	(void)sg_timer_start(d.loop, &d.trim_timer, TRIM_INTERVAL_NS, trim_tick);

	r = sg_loop_run(d.loop);
	if (r < 0) {
		sg_error("event loop failed: %s", strerror(-r));
		goto out;
	}
	if (sg_op_busy(&d.trim_timer))
		(void)sg_op_cancel(&d.trim_timer);
	sg_httpd_shutdown(d.metrics);
	sg_httpd_shutdown(d.hook);
	sg_httpd_shutdown(d.control);
	/* No more `stargzd pull-ahead` or resolve hook requests: what they hold is let go. */
	sg_ahead_pulls_free(d.ahead_pulls);
	d.ahead_pulls = NULL;
	if (d.cri) {
		sg_cri_proxy_shutdown(d.cri, on_cri_done, &d);
		run_until(&d, &d.cri_done, 5000);
	}
	/* Stop accepting, let in-flight calls finish, close connections; then cancel the rest. */
	sg_grpc_server_shutdown(d.server, on_server_done, &d);
	run_until(&d, &d.server_done, 5000);
	/* Then unmount every lazy layer, or hand the held ones over (SIGTERM). */
	sg_fdstore_notify(d.fdstore, "STOPPING=1");
	sg_snapshot_service_shutdown(d.service, d.stop_signal == SIGTERM, on_service_done, &d);
	run_until(&d, &d.service_done, 10000);
	/* Then cancel what the registry still does (token fetches, connections closing,
	 * credential helpers); the drain delivers those completions.  Its memory goes last,
	 * once nothing points at it. */
	sg_registry_shutdown(d.registry);
	r = sg_loop_drain(d.loop, 5000);
	if (r < 0)
		sg_warn("some operations did not finish within 5 s of stopping");
	exit_code = EXIT_SUCCESS;
	/* What the daemon cost its host, threads included (a lazy pull's decompression,
	 * hashing and TOC parsing share the node's cores with containerd and the workload). */
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		sg_info("stopped; CPU time %.2f s user, %.2f s system",
			(double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
			(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
	else
		sg_info("stopped");
out:
	notify_parent(&notify_fd, 1);
	if (d.listen_fd >= 0) {
		close(d.listen_fd);
		unlink(d.cfg.address);
	}
	/* An early exit (a bad endpoint address, the CRI proxy's socket) leaves the accepts and
	 * the signal watcher pending: cancelled and delivered here, so that what was set up is
	 * freed, not leaked. */
	if (exit_code != EXIT_SUCCESS && d.loop && sg_loop_pending(d.loop) > 0) {
		sg_httpd_shutdown(d.metrics);
		sg_httpd_shutdown(d.hook);
		sg_httpd_shutdown(d.control);
		(void)sg_loop_drain(d.loop, 2000);
	}
	/* Ops still in the kernel would point into freed memory: only free a drained loop.
	 * Owners before what they use: the layers' blob sources (in remote) point into the
	 * registry. */
	if (d.loop && sg_loop_pending(d.loop) == 0) {
		sg_httpd_free(d.metrics);
		sg_httpd_free(d.hook);
		sg_httpd_free(d.control);
		sg_ahead_pulls_free(d.ahead_pulls);   /* an early exit's: empty */
		sg_cri_proxy_free(d.cri);
		sg_grpc_server_free(d.server);
		sg_snapshot_service_free(d.service);
		sg_remote_free(d.remote);
		/* A layer that never released its blob source (a stuck unmount) keeps the
		 * registry in use: leave it to the exit rather than crash in its free check. */
		if (sg_registry_busy(d.registry))
			sg_warn("the registry client is still in use at exit; not freed");
		else
			sg_registry_free(d.registry);
		sg_loop_free(d.loop);
	}
	/* The layers wrote their summaries at their close: what is buffered goes out. */
	sg_fetch_trace_close(d.trace);
	sg_snapshots_close(d.snapshots);
	for (size_t i = 0; i < d.n_held; i++)
		close(d.held[i].fd);
	free(d.held);
	sg_fdstore_free(d.fdstore);
	sg_config_clear(&d.cfg);
	if (d.lock_fd >= 0)
		close(d.lock_fd);
	return exit_code;
}
