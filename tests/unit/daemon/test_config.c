/* The daemon's config file (daemon/config.c): sizes, and errors that name the key. */
#include "daemon/config.h"
#include "tests/unit/test.h"

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

	/* In the config file, quoted or not. */
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
	fputs("cache_max_bytes = lots\n", f);
	fclose(f);
	CHECK(sg_config_load(&cfg, path, &err) < 0);
	CHECK(strstr(err.msg, "cache_max_bytes"));
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
	CHECK_EQ(sg_config_load(&cfg, path, &err), -EINVAL);
	snprintf(want, sizeof(want), "%s:4: value of lazy must be true or false", path);
	CHECK_STR(err.msg, want);
	CHECK_EQ(err.code, 4);   /* the line */
	CHECK_STR(cfg.root, "/x # not a comment");
	unlink(path);
	CHECK_EQ(sg_config_load(&cfg, path, &err), -ENOENT);
	snprintf(want, sizeof(want), "cannot open config file %s: %s", path, strerror(ENOENT));
	CHECK_STR(err.msg, want);
	CHECK_EQ(err.code, 0);
	CHECK_EQ(sg_config_load(&cfg, path, NULL), -ENOENT);
}

TEST_MAIN()
