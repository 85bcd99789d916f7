/* Daemon configuration: built-in defaults, then the config file, then command-line flags. */
#ifndef STARGZD_CONFIG_H
#define STARGZD_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/log.h"

#define SG_DEFAULT_ROOT "/var/lib/stargzd"
#define SG_DEFAULT_ADDRESS "/run/stargzd/stargzd.sock"
#define SG_DEFAULT_CONFIG "/etc/stargzd/config.toml"
#define SG_DEFAULT_CRI_LISTEN "/run/stargzd/cri.sock"
#define SG_DEFAULT_CRI_IMAGE_SERVICE "/run/containerd/containerd.sock"

#define SG_CONFIG_LIST_MAX 32
#define SG_CONFIG_WARNINGS_MAX 64

enum sg_profiles_mode {
	SG_PROFILES_LOCAL = 0,
	SG_PROFILES_REGISTRY,
	SG_PROFILES_OFF,
};

/* `entry_programs`: fetch the image config to fetch its command's program ahead
 * (daemon/image_entry.h).  auto: except on Docker Hub, where the extra manifest GET counts
 * against the pull rate limit. */
enum sg_entry_mode {
	SG_ENTRY_AUTO = 0,
	SG_ENTRY_ON,
	SG_ENTRY_OFF,
};

struct sg_config {
	char root[PATH_MAX];
	char address[PATH_MAX];
	enum sg_log_level log_level;
	bool foreground;
	char metrics_address[PATH_MAX]; /* "host:port" or a unix socket path; "" = off */
	char resolve_hook_address[256]; /* "host:port" for containerd's hosts.toml; "" = off */

	/* Lazy pulling. */
	bool lazy;                    /* mount eStargz layers lazily (default true) */
	bool prefetch;                /* fetch prioritized files at mount (default true) */
	bool background_fetch;        /* then the rest of the layer (default true) */
	bool passthrough;             /* kernel reads verified cached files itself (default true) */
	bool allow_skip_verify;       /* honour skipverify / images without TOC digest (false) */
	unsigned fetch_timeout_s;     /* registry: first byte and idle body (0 = default 30 s) */
	unsigned fetch_attempts;      /* registry: tries per request (0 = default 4) */
	uint64_t max_chunk_size;      /* layers with a larger chunk are refused (0 = 64 MiB) */
	unsigned long fetch_window;   /* blob bytes taken along with an on-demand fetch (0 = default) */
	uint64_t cache_max_bytes;     /* disk cache bound; 0 = min(20 GiB, half the root's fs) */
	/* Learned startup profiles (fs/profile.h): `profiles = "off" | "local" | "registry"`.
	 * local (the default) records and replays ROOT/profiles; registry also looks for a
	 * profile artifact of the image (daemon/profile_cmd.h) the first time it mounts one of
	 * its layers. */
	enum sg_profiles_mode profiles;
	unsigned profile_quiet_ms;    /* recording ends this long after the last new chunk (0 = 5 s) */
	bool speculate;               /* fetch a miss's neighbours too (default true) */
	bool process_hints;           /* with speculate: readers' command lines (default true) */
	enum sg_entry_mode entry_programs;   /* with speculate (default auto) */
	uint64_t spec_budget_bytes;   /* speculation's budget per miss at most (0 = 16 MiB) */
	char fetch_trace_dir[PATH_MAX]; /* write the fetch trace there; "" = off */

	/* Registry access. */
	char hosts_dir[PATH_MAX];     /* containerd certs.d (default /etc/containerd/certs.d) */
	char docker_config[PATH_MAX]; /* "" = $DOCKER_CONFIG or ~/.docker/config.json */
	bool plain_http_localhost;    /* localhost/127.0.0.1 may use plain HTTP (default false) */
	char *insecure_hosts[SG_CONFIG_LIST_MAX]; /* "host[:port]" allowed over plain HTTP */
	size_t n_insecure_hosts;
	/* stargz-snapshotter's [[resolver.host."DOMAIN".mirrors]], as the hosts.toml text that
	 * says the same, used for a DOMAIN without a hosts.toml of its own in hosts_dir. */
	char *resolver_domains[SG_CONFIG_LIST_MAX];
	char *resolver_hosts_toml[SG_CONFIG_LIST_MAX];
	size_t n_resolver;

	/* [cri_keychain]: the CRI image-service proxy (daemon/cri_proxy.h). */
	bool cri_keychain;
	char cri_listen_path[108];
	char cri_image_service_path[108];
	/* load_ahead: a PullImage's lazy layers start loading before containerd's Prepare
	 * (daemon/pull_ahead.h); auto: except on Docker Hub (the manifest GET is rate-limited
	 * there), as entry_programs. */
	enum sg_entry_mode cri_load_ahead;

	/* stargz-snapshotter's keys mapped onto ours. */
	uint64_t prefetch_size;       /* prefetch without landmark or label (0 = none) */
	double attr_timeout, entry_timeout;   /* [fuse]; 0 = a day */

	/* "PATH:LINE: stargz-snapshotter's x has no effect here", for the daemon to log. */
	char *warnings[SG_CONFIG_WARNINGS_MAX];
	size_t n_warnings;
};

void sg_config_defaults(struct sg_config *cfg);
void sg_config_clear(struct sg_config *cfg);

/* A byte count with an optional binary suffix: 4096, 64K, 512M, 10G, 1T (also KiB/MB...,
 * any case).  Zero, negative and overflowing values are -EINVAL. */
int sg_parse_size(const char *s, uint64_t *ret);

/* Reads a config file: TOML (daemon/core/toml.h).  Our keys at the top level: root, address,
 * log_level, metrics_address, lazy, prefetch, background_fetch, passthrough, fetch_timeout,
 * fetch_attempts, allow_skip_verify, fetch_window, cache_max_bytes, max_chunk_size,
 * speculate, process_hints, entry_programs, spec_budget_bytes, fetch_trace_dir, hosts_dir, docker_config,
 * plain_http_localhost, insecure_hosts.  stargz-snapshotter's
 * (containerd-stargz-grpc) where they mean something here: noprefetch, no_background_fetch,
 * prefetch_size, allow_no_verification, metrics_address, [blob] fetching_timeout_sec and
 * max_retries, [fuse] passthrough, attr_timeout and entry_timeout,
 * [[resolver.host."X".mirrors]] host, insecure and header; its other keys and tables load
 * with a warning each in cfg->warnings.  A key known to neither, bad syntax or a bad value
 * fail with "PATH:LINE: ..." in err (err->code is the line).  Returns 0, -ENOENT if the
 * file does not exist, or another negative errno. */
int sg_config_load(struct sg_config *cfg, const char *path, struct sg_error *err);
/* The same on text already read; name stands for the file in messages. */
int sg_config_parse(struct sg_config *cfg, const char *text, size_t len, const char *name,
		    struct sg_error *err);

#endif
