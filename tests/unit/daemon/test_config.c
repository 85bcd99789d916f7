/* The daemon's config file (daemon/config.c): sizes, and errors that name the key. */
#include "daemon/config.h"
#include "tests/unit/test.h"

#include "net/hosts_toml.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

TEST(cache_max_bytes_parses_sizes)
{
	uint64_t v;

	CHECK_EQ(sg_parse_size("10G", &v), 0);
	CHECK_EQ(v, 10ull << 30);
	CHECK_EQ(sg_parse_size("512M", &v), 0);
	CHECK_EQ(v, 512ull << 20);
	CHECK_EQ(sg_parse_size("512MiB", &v), 0);
	CHECK_EQ(v, 512ull << 20);
	CHECK_EQ(sg_parse_size("1t", &v), 0);
	CHECK_EQ(v, 1ull << 40);
	CHECK_EQ(sg_parse_size("4096", &v), 0);
	CHECK_EQ(v, 4096);
	CHECK_EQ(sg_parse_size("64K", &v), 0);
	CHECK_EQ(v, 65536);
	CHECK(sg_parse_size("", &v) < 0);
	CHECK(sg_parse_size("G", &v) < 0);
	CHECK(sg_parse_size("10X", &v) < 0);
	CHECK(sg_parse_size("-1", &v) < 0);
	CHECK(sg_parse_size("0", &v) < 0);
	CHECK(sg_parse_size("99999999999999999999", &v) < 0);
	CHECK(sg_parse_size("20000000T", &v) < 0);

	/* In the config file: a string with a suffix, or an integer. */
	char path[300];
	struct sg_config cfg;
	struct sg_error err = { 0 };
	snprintf(path, sizeof(path), "/tmp/stargzd-cfg-%d.toml", (int)getpid());
	FILE *f = fopen(path, "w");
	fputs("cache_max_bytes = \"2G\"\n", f);
	fclose(f);
	sg_config_defaults(&cfg);
	CHECK_EQ(cfg.cache_max_bytes, 0);
	CHECK_EQ(sg_config_load(&cfg, path, &err), 0);
	CHECK_EQ(cfg.cache_max_bytes, 2ull << 30);
	f = fopen(path, "w");
	fputs("cache_max_bytes = 1073741824\n", f);
	fclose(f);
	CHECK_EQ(sg_config_load(&cfg, path, &err), 0);
	CHECK_EQ(cfg.cache_max_bytes, 1ull << 30);
	f = fopen(path, "w");
	fputs("cache_max_bytes = lots\n", f);
	fclose(f);
	CHECK(sg_config_load(&cfg, path, &err) < 0);
	CHECK(strstr(err.msg, "cache_max_bytes"));
	f = fopen(path, "w");
	fputs("cache_max_bytes = \"lots\"\n", f);
	fclose(f);
	CHECK_EQ(sg_config_load(&cfg, path, &err), -EINVAL);
	CHECK(strstr(err.msg, "cache_max_bytes must be a byte count"));
	unlink(path);
}

TEST(errors_name_the_file_and_line)
{
	char path[300], want[400];
	struct sg_config cfg;
	struct sg_error err = { 0 };
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/stargzd-cfg-%d.toml", (int)getpid());
	f = fopen(path, "w");
	fputs("# comment\nroot = \"/x # not a comment\"\n\nlazy = yes\n", f);
	fclose(f);
	sg_config_defaults(&cfg);
	CHECK_EQ(sg_config_load(&cfg, path, &err), -EBADMSG);   /* not TOML */
	snprintf(want, sizeof(want), "%s:4: lazy: unsupported value", path);
	CHECK_STR(err.msg, want);
	CHECK_EQ(err.code, 4);   /* the line */
	CHECK_STR(cfg.root, "/x # not a comment");
	f = fopen(path, "w");
	fputs("\nlazy = \"yes\"\n", f);
	fclose(f);
	CHECK_EQ(sg_config_load(&cfg, path, &err), -EINVAL);   /* TOML, but not a boolean */
	snprintf(want, sizeof(want), "%s:2: value of lazy must be true or false", path);
	CHECK_STR(err.msg, want);
	CHECK_EQ(err.code, 2);
	unlink(path);
	CHECK_EQ(sg_config_load(&cfg, path, &err), -ENOENT);
	snprintf(want, sizeof(want), "cannot open config file %s: %s", path, strerror(ENOENT));
	CHECK_STR(err.msg, want);
	CHECK_EQ(err.code, 0);
	CHECK_EQ(sg_config_load(&cfg, path, NULL), -ENOENT);
}

static int load_text(struct sg_config *cfg, const char *text, struct sg_error *err)
{
	char path[300];
	snprintf(path, sizeof(path), "/tmp/stargzd-cfg-%d.toml", (int)getpid());
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	sg_config_defaults(cfg);
	int r = sg_config_load(cfg, path, err);
	unlink(path);
	return r;
}

static bool warned(const struct sg_config *cfg, const char *what)
{
	for (size_t i = 0; i < cfg->n_warnings; i++)
		if (strstr(cfg->warnings[i], what))
			return true;
	return false;
}

/* stargz-snapshotter's config.toml (its docs and fs/config): loads with warnings for what
 * has no meaning here, and its mapped keys set ours. */
TEST(stargz_snapshotter_config_maps_and_warns)
{
	struct sg_config cfg;
	struct sg_error err = { 0 };
	const char *text =
		"metrics_address = \"127.0.0.1:8234\"\n"
		"noprefetch = true\n"
		"no_background_fetch = true\n"
		"prefetch_size = 1048576\n"
		"prefetch_timeout_sec = 10\n"
		"max_concurrency = 2\n"
		"allow_no_verification = true\n"
		"metadata_store = \"memory\"\n"
		"[blob]\n"
		"check_always = true\n"
		"max_retries = 1\n"
		"fetching_timeout_sec = 300\n"
		"[directory_cache]\n"
		"max_lru_cache_entry = 10\n"
		"direct = true\n"
		"[fuse]\n"
		"passthrough = false\n"
		"attr_timeout = 2\n"
		"entry_timeout = 0\n"
		"[cri_keychain]\n"
		"enable_keychain = true\n"
		"image_service_path = \"/run/containerd/containerd.sock\"\n"
		"[[resolver.host.\"exampleregistry.io\".mirrors]]\n"
		"host = \"mirrorhost.io\"\n"
		"insecure = true\n"
		"[[resolver.host.\"exampleregistry.io\".mirrors]]\n"
		"host = \"exampleregistry.io\"\n"
		"insecure = true\n"
		"[[resolver.host.\"registry2:5000\".mirrors]]\n"
		"  host = \"registry2:5000\"\n"
		"[[resolver.host.\"registry2:5000\".mirrors]]\n"
		"  host = \"mirror2:5000\"\n"
		"  [resolver.host.\"registry2:5000\".mirrors.header]\n"
		"    x-custom-2 = [\"value3\", \"value4\"]\n"
		"    x-other = \"a\\\"b\"\n";

	CHECK_EQ(load_text(&cfg, text, &err), 0);
	CHECK_STR(cfg.metrics_address, "127.0.0.1:8234");
	CHECK(!cfg.prefetch);
	CHECK(!cfg.background_fetch);
	CHECK_EQ(cfg.prefetch_size, 1048576);
	CHECK(cfg.allow_skip_verify);
	CHECK_EQ(cfg.fetch_attempts, 2);          /* one retry */
	CHECK_EQ(cfg.fetch_timeout_s, 300);
	CHECK(!cfg.passthrough);
	CHECK(cfg.attr_timeout == 2.0);
	CHECK(cfg.entry_timeout > 0 && cfg.entry_timeout < 0.01);
	CHECK(warned(&cfg, ":5: stargz-snapshotter's prefetch_timeout_sec has no effect here"));
	CHECK(warned(&cfg, "max_concurrency"));
	CHECK(warned(&cfg, "metadata_store"));
	CHECK(warned(&cfg, ":10: stargz-snapshotter's blob.check_always"));
	CHECK(warned(&cfg, "directory_cache.max_lru_cache_entry"));
	CHECK(warned(&cfg, "directory_cache.direct"));
	CHECK(!warned(&cfg, "cri_keychain"));   /* mapped: the CRI proxy */
	CHECK(cfg.cri_keychain);
	CHECK_STR(cfg.cri_image_service_path, "/run/containerd/containerd.sock");
	CHECK_STR(cfg.cri_listen_path, SG_DEFAULT_CRI_LISTEN);
	CHECK_EQ(cfg.n_warnings, 6);
	/* The registry itself with insecure = true: plain HTTP for it. */
	CHECK_EQ(cfg.n_insecure_hosts, 1);
	CHECK_STR(cfg.insecure_hosts[0], "exampleregistry.io");
	/* Real mirrors: hosts.toml text, which the hosts.toml reader takes. */
	CHECK_EQ(cfg.n_resolver, 2);
	CHECK_STR(cfg.resolver_domains[0], "exampleregistry.io");
	struct sg_hosts_config *h = NULL;
	CHECK_EQ(sg_hosts_toml_parse(cfg.resolver_hosts_toml[0], strlen(cfg.resolver_hosts_toml[0]),
				     "exampleregistry.io", NULL, &h, &err), 0);
	CHECK_EQ(h->nmirrors, 1);
	CHECK_STR(h->mirrors[0].scheme, "http");
	CHECK_STR(h->mirrors[0].host, "mirrorhost.io");
	CHECK_EQ(h->mirrors[0].caps, SG_HOST_CAP_PULL | SG_HOST_CAP_RESOLVE);
	sg_hosts_config_free(h);
	CHECK_STR(cfg.resolver_domains[1], "registry2:5000");
	CHECK_EQ(sg_hosts_toml_parse(cfg.resolver_hosts_toml[1], strlen(cfg.resolver_hosts_toml[1]),
				     "registry2:5000", NULL, &h, &err), 0);
	CHECK_EQ(h->nmirrors, 1);
	CHECK_STR(h->mirrors[0].scheme, "https");
	CHECK_STR(h->mirrors[0].host, "mirror2:5000");
	CHECK_EQ(h->mirrors[0].nheaders, 2);
	CHECK_STR(h->mirrors[0].headers[1].name, "x-other");
	CHECK_STR(h->mirrors[0].headers[1].values[0], "a\"b");
	CHECK_STR(h->mirrors[0].headers[0].name, "x-custom-2");
	CHECK_EQ(h->mirrors[0].headers[0].nvalues, 2);
	CHECK_STR(h->mirrors[0].headers[0].values[1], "value4");
	sg_hosts_config_free(h);
	sg_config_clear(&cfg);
}

/* A typo in one of our keys (or theirs) is an error naming it and its line; so are wrong
 * types, duplicates and unknown tables. */
TEST(profiles_mode)
{
	struct sg_config cfg;
	struct sg_error err = { 0 };

	CHECK_EQ(load_text(&cfg, "root = \"/x\"\n", &err), 0);
	CHECK_EQ(cfg.profiles, SG_PROFILES_LOCAL);
	CHECK_EQ(load_text(&cfg, "profiles = \"registry\"\n", &err), 0);
	CHECK_EQ(cfg.profiles, SG_PROFILES_REGISTRY);
	sg_config_clear(&cfg);
	CHECK_EQ(load_text(&cfg, "profiles = \"off\"\n", &err), 0);
	CHECK_EQ(cfg.profiles, SG_PROFILES_OFF);
	sg_config_clear(&cfg);
	CHECK_EQ(load_text(&cfg, "profiles = \"cloud\"\n", &err), -EINVAL);
	CHECK(strstr(err.msg, "profiles must be \"off\", \"local\" or \"registry\", not \"cloud\""));
	sg_config_clear(&cfg);
}

TEST(entry_programs_mode)
{
	struct sg_config cfg;
	struct sg_error err = { 0 };

	CHECK_EQ(load_text(&cfg, "root = \"/x\"\n", &err), 0);
	CHECK_EQ(cfg.entry_programs, SG_ENTRY_AUTO);
	sg_config_clear(&cfg);
	CHECK_EQ(load_text(&cfg, "entry_programs = \"on\"\n", &err), 0);
	CHECK_EQ(cfg.entry_programs, SG_ENTRY_ON);
	sg_config_clear(&cfg);
	CHECK_EQ(load_text(&cfg, "entry_programs = \"off\"\n", &err), 0);
	CHECK_EQ(cfg.entry_programs, SG_ENTRY_OFF);
	sg_config_clear(&cfg);
	CHECK_EQ(load_text(&cfg, "entry_programs = true\n", &err), -EINVAL);
	sg_config_clear(&cfg);
	CHECK_EQ(load_text(&cfg, "entry_programs = \"always\"\n", &err), -EINVAL);
	CHECK(strstr(err.msg, "entry_programs must be \"auto\", \"on\" or \"off\", not \"always\""));
	sg_config_clear(&cfg);
}

TEST(resolve_hook_address_is_off_unless_set)
{
	struct sg_config cfg;
	struct sg_error err = { 0 };

	CHECK_EQ(load_text(&cfg, "", &err), 0);
	CHECK_STR(cfg.resolve_hook_address, "");
	sg_config_clear(&cfg);
	CHECK_EQ(load_text(&cfg, "resolve_hook_address = \"127.0.0.1:5399\"\n", &err), 0);
	CHECK_STR(cfg.resolve_hook_address, "127.0.0.1:5399");
	sg_config_clear(&cfg);
}

TEST(cri_load_ahead_mode)
{
	struct sg_config cfg;
	struct sg_error err = { 0 };

	CHECK_EQ(load_text(&cfg, "root = \"/x\"\n", &err), 0);
	CHECK_EQ(cfg.cri_load_ahead, SG_ENTRY_AUTO);
	sg_config_clear(&cfg);
	CHECK_EQ(load_text(&cfg, "[cri_keychain]\nload_ahead = \"on\"\n", &err), 0);
	CHECK_EQ(cfg.cri_load_ahead, SG_ENTRY_ON);
	sg_config_clear(&cfg);
	CHECK_EQ(load_text(&cfg, "[cri_keychain]\nload_ahead = \"off\"\n", &err), 0);
	CHECK_EQ(cfg.cri_load_ahead, SG_ENTRY_OFF);
	sg_config_clear(&cfg);
	CHECK_EQ(load_text(&cfg, "[cri_keychain]\nload_ahead = \"soon\"\n", &err), -EINVAL);
	CHECK(strstr(err.msg, "load_ahead must be \"auto\", \"on\" or \"off\""));
	sg_config_clear(&cfg);
}

TEST(typos_are_errors)
{
	struct sg_config cfg;
	struct sg_error err = { 0 };

	CHECK_EQ(load_text(&cfg, "lazy = true\nprefecth = false\n", &err), -EINVAL);
	CHECK(strstr(err.msg, ":2: unknown key \"prefecth\""));
	CHECK_EQ(err.code, 2);
	CHECK_EQ(load_text(&cfg, "[fuse]\npasthrough = false\n", &err), -EINVAL);
	CHECK(strstr(err.msg, ":2: unknown key \"fuse.pasthrough\""));
	CHECK_EQ(load_text(&cfg, "[blob]\nmax_retries = \"3\"\n", &err), -EINVAL);
	CHECK(strstr(err.msg, "max_retries must be a number"));
	CHECK_EQ(load_text(&cfg, "[fuze]\n", &err), -EINVAL);
	CHECK(strstr(err.msg, ":1: unknown table [fuze]"));
	CHECK_EQ(load_text(&cfg, "lazy = true\nlazy = false\n", &err), -EINVAL);
	CHECK(strstr(err.msg, ":2: duplicate key \"lazy\""));
	CHECK_EQ(load_text(&cfg, "[blob]\n[blob]\n", &err), -EINVAL);
	CHECK(strstr(err.msg, "duplicate table [blob]"));
	CHECK_EQ(load_text(&cfg, "[[blob]]\n", &err), -EINVAL);
	CHECK_EQ(load_text(&cfg, "fetch_attempts = 99\n", &err), -EINVAL);
	CHECK(strstr(err.msg, "fetch_attempts must be a number from 1 to 20"));
	CHECK_EQ(load_text(&cfg, "[[resolver.host.\"r\".mirrors]]\ninsecure = true\n", &err), -EINVAL);
	CHECK(strstr(err.msg, "without host"));
	CHECK_EQ(load_text(&cfg, "[resolver.host.\"r\".mirrors.header]\nx = \"y\"\n", &err),
		 -EINVAL);
	CHECK(strstr(err.msg, "must follow"));
	/* Each mirror entry has its own header table; one entry may not have two. */
	const char *two = "[[resolver.host.\"r\".mirrors]]\nhost = \"a\"\n"
			  "[resolver.host.\"r\".mirrors.header]\nx = \"1\"\n"
			  "[[resolver.host.\"r\".mirrors]]\nhost = \"b\"\n"
			  "[resolver.host.\"r\".mirrors.header]\nx = \"2\"\n";
	CHECK_EQ(load_text(&cfg, two, &err), 0);
	CHECK_EQ(cfg.n_resolver, 1);
	CHECK(strstr(cfg.resolver_hosts_toml[0], "[host.\"https://b\".header]\n\"x\" = \"2\""));
	sg_config_clear(&cfg);
	CHECK_EQ(load_text(&cfg, "[[resolver.host.\"r\".mirrors]]\nhost = \"a\"\n"
			   "[resolver.host.\"r\".mirrors.header]\n[resolver.host.\"r\".mirrors.header]\n",
			   &err), -EINVAL);
	CHECK(strstr(err.msg, "must follow"));
	/* The old key = value forms that are TOML still load. */
	CHECK_EQ(load_text(&cfg, "root = \"/r\"\nfetch_window = 65536\ninsecure_hosts = [\"a:1\", "
			   "\"b\"]\ncache_max_bytes = \"10G\"\n", &err), 0);
	CHECK_STR(cfg.root, "/r");
	CHECK_EQ(cfg.fetch_window, 65536);
	CHECK_EQ(cfg.n_insecure_hosts, 2);
	CHECK_EQ(cfg.cache_max_bytes, 10ull << 30);
	CHECK_EQ(cfg.n_warnings, 0);
	sg_config_clear(&cfg);
}

TEST(speculation_and_trace_keys)
{
	struct sg_config cfg;
	struct sg_error err = { 0 };
	const char *text = "speculate = false\nspec_budget_bytes = \"4M\"\n"
			   "fetch_trace_dir = \"/var/tmp/trace\"\nprocess_hints = false\n";

	sg_config_defaults(&cfg);
	CHECK(cfg.speculate);   /* on by default */
	CHECK(cfg.process_hints);
	CHECK_EQ(cfg.spec_budget_bytes, 0);
	CHECK_STR(cfg.fetch_trace_dir, "");
	CHECK_EQ(sg_config_parse(&cfg, text, strlen(text), "t.toml", &err), 0);
	CHECK(!cfg.speculate);
	CHECK(!cfg.process_hints);
	CHECK_EQ(cfg.spec_budget_bytes, 4u << 20);
	CHECK_STR(cfg.fetch_trace_dir, "/var/tmp/trace");
	sg_config_clear(&cfg);
	/* A budget under 256 KiB is refused, naming the key. */
	text = "spec_budget_bytes = \"64K\"\n";
	sg_config_defaults(&cfg);
	CHECK(sg_config_parse(&cfg, text, strlen(text), "t.toml", &err) < 0);
	CHECK(strstr(err.msg, "spec_budget_bytes"));
	sg_config_clear(&cfg);
}

TEST_MAIN()
