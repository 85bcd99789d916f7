#include "daemon/status.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yajl/yajl_gen.h>

#include "daemon/config.h"
#include "daemon/control.h"
#include "daemon/core/loop.h"
#include "daemon/remote.h"
#include "net/pool.h"
#include "net/registry.h"

/* ---- the daemon's side ---- */

static const char *prefetch_state(const struct sg_remote_mount_info *m)
{
	if (!m->mounted)
		return "mounting";
	if (!m->prefetch)
		return "off";
	return m->layer.prefetch_done ? "done" : "running";
}

static const char *background_state(const struct sg_remote_mount_info *m)
{
	if (!m->mounted)
		return "mounting";
	if (!m->background_fetch)
		return "off";
	if (m->layer.background_done)
		return "done";
	if (m->layer.background_skipped)
		return "skipped (the rest of the layer does not fit the cache bound)";
	return m->layer.background_running ? "running" : "waiting";
}

static double mib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0);
}

/* A learned startup profile's replay (fs/layer.h sg_layer_replay). */
static const char *replay_state(const struct sg_layer_stats *l)
{
	if (!l->replay_chunks && !l->replay_done)
		return "none";
	return l->replay_done ? "done" : "running";
}

static void text_mount(void *userdata, const struct sg_remote_mount_info *m)
{
	FILE *out = userdata;
	const struct sg_layer_stats *l = &m->layer;

	fprintf(out, "  %s\n    image       %s\n    mountpoint  %s\n", m->digest, m->ref,
		m->mountpoint);
	if (!m->mounted) {
		fprintf(out, "    state       mounting (fetching its TOC)\n");
		return;
	}
	fprintf(out, "    fetched     %.1f MiB of a %.1f MiB blob in %llu requests (%llu on demand, "
		"%.1f MiB)\n", mib(l->fetched_bytes), mib(m->blob_size),
		(unsigned long long)l->fetch_requests, (unsigned long long)l->ondemand_fetches,
		mib(l->ondemand_fetched_bytes));
	fprintf(out, "    chunks      %llu of %llu local, %.1f MiB in the cache\n",
		(unsigned long long)l->chunks_present, (unsigned long long)l->chunks_total,
		mib(l->cache_bytes));
	fprintf(out, "    prefetch    %s", prefetch_state(m));
	if (l->prefetch_ns)
		fprintf(out, " (%.2f s, %.1f MiB)", (double)l->prefetch_ns / 1e9, mib(l->prefetched_bytes));
	fprintf(out, "\n    background  %s\n", background_state(m));
	if (l->replay_chunks || l->profile_chunks)
		fprintf(out, "    profile     replay %s (%llu chunks, %.1f MiB to fetch; %.1f MiB "
			"fetched, %.1f MiB of it read), %llu chunks recorded\n", replay_state(l),
			(unsigned long long)l->replay_chunks, mib(l->replay_bytes),
			mib(l->kind_fetched_bytes[SG_FETCH_PROFILE]),
			mib(l->kind_used_bytes[SG_FETCH_PROFILE]),
			(unsigned long long)l->profile_chunks);
	fprintf(out, "    reads       %llu through the daemon (%.1f MiB)\n",
		(unsigned long long)l->reads, mib(l->read_bytes));
	if (m->fs.passthrough)
		fprintf(out, "    passthrough %llu opens by the kernel, %llu through the daemon\n",
			(unsigned long long)m->fs.passthrough_opens,
			(unsigned long long)m->fs.cached_opens);
	else
		fprintf(out, "    passthrough off\n");
	if (l->verify_failures)
		fprintf(out, "    verification failures %llu\n", (unsigned long long)l->verify_failures);
}

static void text_host(void *userdata, const char *authority, bool tls,
		      const struct sg_host_stats *st)
{
	FILE *out = userdata;
	char link[80] = "";

	if (st->link_rtt_ns || st->link_bytes_per_s)
		snprintf(link, sizeof(link), "; link: RTT %.1f ms, %.2f MB/s",
			 (double)st->link_rtt_ns / 1e6, (double)st->link_bytes_per_s / 1e6);
	fprintf(out, "  %s (%s): %u requests, %u retries, %u failures%s%s%s\n", authority,
		tls ? "https" : "http", st->requests, st->retries, st->failures,
		st->last_error[0] ? "; last: " : "", st->last_error, link);
}

static void count_mount(void *userdata, const struct sg_remote_mount_info *m)
{
	(*(unsigned *)userdata)++;
}

static void gen_str(yajl_gen g, const char *s)
{
	yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

static void gen_kv_str(yajl_gen g, const char *k, const char *v)
{
	gen_str(g, k);
	gen_str(g, v);
}

static void gen_kv_num(yajl_gen g, const char *k, uint64_t v)
{
	gen_str(g, k);
	yajl_gen_integer(g, (long long)v);
}

static void json_mount(void *userdata, const struct sg_remote_mount_info *m)
{
	yajl_gen g = userdata;
	const struct sg_layer_stats *l = &m->layer;

	yajl_gen_map_open(g);
	gen_kv_str(g, "digest", m->digest);
	gen_kv_str(g, "image", m->ref);
	gen_kv_str(g, "mountpoint", m->mountpoint);
	gen_str(g, "mounted");
	yajl_gen_bool(g, m->mounted);
	gen_kv_num(g, "blob_bytes", m->blob_size);
	gen_kv_num(g, "fetched_bytes", l->fetched_bytes);
	gen_kv_num(g, "fetch_requests", l->fetch_requests);
	gen_kv_num(g, "on_demand_fetches", l->ondemand_fetches);
	gen_kv_num(g, "on_demand_fetched_bytes", l->ondemand_fetched_bytes);
	gen_kv_num(g, "prefetched_bytes", l->prefetched_bytes);
	gen_kv_num(g, "chunks_local", l->chunks_present);
	gen_kv_num(g, "chunks_total", l->chunks_total);
	gen_kv_num(g, "cache_bytes", l->cache_bytes);
	gen_kv_str(g, "prefetch", prefetch_state(m));
	gen_kv_num(g, "prefetch_ms", l->prefetch_ns / 1000000);
	gen_kv_str(g, "background_fetch", background_state(m));
	gen_kv_str(g, "profile_replay", replay_state(l));
	gen_kv_num(g, "profile_replay_chunks", l->replay_chunks);
	gen_kv_num(g, "profile_replay_bytes", l->replay_bytes);
	gen_kv_num(g, "profile_fetched_bytes", l->kind_fetched_bytes[SG_FETCH_PROFILE]);
	gen_kv_num(g, "profile_used_bytes", l->kind_used_bytes[SG_FETCH_PROFILE]);
	gen_kv_num(g, "profile_recorded_chunks", l->profile_chunks);
	gen_kv_num(g, "reads", l->reads);
	gen_kv_num(g, "read_bytes", l->read_bytes);
	gen_str(g, "passthrough");
	yajl_gen_bool(g, m->fs.passthrough);
	gen_kv_num(g, "passthrough_opens", m->fs.passthrough_opens);
	gen_kv_num(g, "daemon_opens", m->fs.cached_opens);
	gen_kv_num(g, "verification_failures", l->verify_failures);
	yajl_gen_map_close(g);
}

static void json_host(void *userdata, const char *authority, bool tls,
		      const struct sg_host_stats *st)
{
	yajl_gen g = userdata;

	yajl_gen_map_open(g);
	gen_kv_str(g, "host", authority);
	gen_kv_str(g, "scheme", tls ? "https" : "http");
	gen_kv_num(g, "requests", st->requests);
	gen_kv_num(g, "retries", st->retries);
	gen_kv_num(g, "failures", st->failures);
	gen_kv_num(g, "link_rtt_us", st->link_rtt_ns / 1000);
	gen_kv_num(g, "link_bytes_per_s", st->link_bytes_per_s);
	gen_kv_str(g, "last_error", st->last_error);
	yajl_gen_map_close(g);
}

static int write_json(FILE *out, const struct sg_status_source *src,
		      const struct sg_cache_bound_stats *cs, uint64_t up_s)
{
	yajl_gen g = yajl_gen_alloc(NULL);
	const unsigned char *buf;
	size_t len;
	int r = -ENOMEM;

	if (!g)
		return r;
	yajl_gen_config(g, yajl_gen_beautify, 1);
	yajl_gen_map_open(g);
	gen_kv_str(g, "version", STARGZD_VERSION);
	gen_kv_num(g, "pid", (uint64_t)getpid());
	gen_kv_num(g, "uptime_seconds", up_s);
	gen_kv_str(g, "root", src->root);
	gen_str(g, "lazy");
	yajl_gen_bool(g, src->remote != NULL);
	gen_str(g, "cache");
	yajl_gen_map_open(g);
	gen_kv_num(g, "bytes", cs->bytes);
	gen_kv_num(g, "max_bytes", cs->max_bytes);
	gen_kv_num(g, "evicted_chunks", cs->evicted_chunks);
	gen_kv_num(g, "evicted_bytes", cs->evicted_bytes);
	gen_kv_num(g, "removed_directories", cs->removed_dirs);
	yajl_gen_map_close(g);
	gen_str(g, "layers");
	yajl_gen_array_open(g);
	sg_remote_each_mount(src->remote, json_mount, g);
	yajl_gen_array_close(g);
	gen_str(g, "registry_hosts");
	yajl_gen_array_open(g);
	sg_registry_each_host(src->registry, json_host, g);
	yajl_gen_array_close(g);
	yajl_gen_map_close(g);
	if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok) {
		fwrite(buf, 1, len, out);
		r = 0;
	}
	yajl_gen_free(g);
	return r;
}

int sg_status_write(FILE *out, bool json, const struct sg_status_source *src)
{
	struct sg_cache_bound_stats cs;
	uint64_t up_s = (sg_now_ns() - src->started_ns) / 1000000000u;
	unsigned n = 0;

	sg_remote_cache_stats(src->remote, &cs);
	if (json)
		return write_json(out, src, &cs, up_s);
	fprintf(out, "stargzd %s, pid %ld, up %llu s, root %s%s\n", STARGZD_VERSION, (long)getpid(),
		(unsigned long long)up_s, src->root, src->remote ? "" : " (lazy pulling off)");
	fprintf(out, "cache: %.1f MiB of %.1f MiB; %llu chunks (%.1f MiB) evicted, %llu directories "
		"removed\n", mib(cs.bytes), mib(cs.max_bytes), (unsigned long long)cs.evicted_chunks,
		mib(cs.evicted_bytes), (unsigned long long)cs.removed_dirs);
	sg_remote_each_mount(src->remote, count_mount, &n);
	fprintf(out, "layers: %u\n", n);
	sg_remote_each_mount(src->remote, text_mount, out);
	fprintf(out, "registry hosts:\n");
	sg_registry_each_host(src->registry, text_host, out);
	return 0;
}

/* ---- the command ---- */

static const char status_usage[] =
	"Usage: stargzd status [--root DIR] [--json]\n"
	"\n"
	"Shows what the running daemon on ROOT (default " SG_DEFAULT_ROOT ") is doing: its\n"
	"mounted layers (image, bytes fetched, prefetch and background fetch, passthrough), the\n"
	"cache, and the registry hosts with their errors.  Asks ROOT/" SG_CONTROL_SOCKET_NAME
	" (root only).\n";

int sg_status_command(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *root = SG_DEFAULT_ROOT;
	bool json = false;
	int c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":r:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'r': root = optarg; break;
		case 'j': json = true; break;
		case 'h':
			fputs(status_usage, stdout);
			return 0;
		default:
			fprintf(stderr, "stargzd status: bad option %s (see --help)\n", argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "stargzd status: unexpected argument \"%s\" (see --help)\n", argv[optind]);
		return 2;
	}
	char *body, err[512];
	size_t len;
	if (sg_control_get(root, json ? "/status?json" : "/status", &body, &len, err,
			   sizeof(err)) < 0) {
		fprintf(stderr, "stargzd status: %s\n", err);
		return 1;
	}
	fwrite(body, 1, len, stdout);
	free(body);
	return 0;
}
