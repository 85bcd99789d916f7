/* Tests for net/hosts_toml: containerd certs.d/HOST/hosts.toml. */
#include <errno.h>

#include "net/hosts_toml.h"
#include "tests/unit/test.h"

static struct sg_hosts_config *parse_ok(const char *text, const char *ns)
{
	struct sg_hosts_config *cfg = NULL;
	struct sg_error e = { 0 };
	int r = sg_hosts_toml_parse(text, strlen(text), ns, "/etc/containerd/certs.d/x", &cfg, &e);
	if (r != 0)
		TEST_FAIL("parse failed %d: line %u: %s", r, (unsigned)e.code, e.msg);
	return cfg;
}

static void parse_bad(const char *text, unsigned line, const char *msg_substr)
{
	struct sg_hosts_config *cfg = (void *)1;
	struct sg_error e = { 0 };
	int r = sg_hosts_toml_parse(text, strlen(text), "docker.io", NULL, &cfg, &e);
	if (r >= 0)
		TEST_FAIL("accepted:\n%s", text);
	CHECK(cfg == NULL);
	if ((unsigned)e.code != line || !strstr(e.msg, msg_substr))
		TEST_FAIL("got line %u \"%s\", want line %u \"...%s...\" for:\n%s",
			  (unsigned)e.code, e.msg, line, msg_substr, text);
}

TEST(full_example)
{
	const char *t =
		"# Docker Hub through two mirrors\n"
		"server = \"https://registry-1.docker.io\"\n"
		"\n"
		"[host.\"https://mirror.example.com\"]\n"
		"  capabilities = [\"pull\", \"resolve\"]   # no push\n"
		"  ca = \"mirror-ca.pem\"\n"
		"  skip_verify = false\n"
		"  [host.\"https://mirror.example.com\".header]\n"
		"    x-custom-1 = \"a\"\n"
		"    X-Multi = [\"b\", 'c\\d']\n"
		"\n"
		"[host.\"http://127.0.0.1:5000/prefix/\"]\n"
		"  capabilities = [\n"
		"    \"pull\",\n"
		"    # a comment inside the array\n"
		"  ]\r\n"
		"  skip_verify = true\n"
		"  client = [[\"/c.pem\", \"k.pem\"], \"/both.pem\"]\n"
		"  ca = [\"/a.pem\", \"/b.pem\",]\n"
		"  dial_timeout = \"3s\"\n"
		"\n"
		"[host.'dragonfly:65001']\n"
		"  override_path = true\n";
	struct sg_hosts_config *cfg = parse_ok(t, "docker.io");

	CHECK_STR(cfg->upstream.scheme, "https");
	CHECK_STR(cfg->upstream.host, "registry-1.docker.io");
	CHECK_STR(cfg->upstream.path, "/v2");
	CHECK_EQ(cfg->upstream.caps, SG_HOST_CAP_ALL);
	CHECK_EQ(cfg->nmirrors, 3);

	struct sg_hosts_entry *m = &cfg->mirrors[0];
	CHECK_STR(m->scheme, "https");
	CHECK_STR(m->host, "mirror.example.com");
	CHECK_STR(m->path, "/v2");
	CHECK_EQ(m->caps, SG_HOST_CAP_PULL | SG_HOST_CAP_RESOLVE);
	CHECK_EQ(m->nca, 1);
	CHECK_STR(m->ca[0], "/etc/containerd/certs.d/x/mirror-ca.pem");
	CHECK(!m->skip_verify);
	CHECK_EQ(m->nheaders, 2);
	CHECK_STR(m->headers[0].name, "x-custom-1");
	CHECK_EQ(m->headers[0].nvalues, 1);
	CHECK_STR(m->headers[0].values[0], "a");
	CHECK_STR(m->headers[1].name, "X-Multi");
	CHECK_EQ(m->headers[1].nvalues, 2);
	CHECK_STR(m->headers[1].values[1], "c\\d");

	m = &cfg->mirrors[1];
	CHECK_STR(m->scheme, "http");
	CHECK_STR(m->host, "127.0.0.1:5000");
	CHECK_STR(m->path, "/prefix/v2");
	CHECK_EQ(m->caps, SG_HOST_CAP_PULL);
	CHECK(m->skip_verify);
	CHECK_EQ(m->nclients, 2);
	CHECK_STR(m->clients[0].cert, "/c.pem");
	CHECK_STR(m->clients[0].key, "/etc/containerd/certs.d/x/k.pem");
	CHECK_STR(m->clients[1].cert, "/both.pem");
	CHECK(m->clients[1].key == NULL);
	CHECK_EQ(m->nca, 2);
	CHECK_STR(m->dial_timeout, "3s");

	m = &cfg->mirrors[2];
	CHECK_STR(m->scheme, "https");
	CHECK_STR(m->host, "dragonfly:65001");
	CHECK_STR(m->path, "/v2");    /* empty path still gets /v2 */
	CHECK(m->override_path);
	CHECK_EQ(m->caps, SG_HOST_CAP_ALL);
	sg_hosts_config_free(cfg);
}

TEST(override_path_and_defaults)
{
	const char *t = "[host.\"https://artifactory/api/docker/x\"]\n"
			"override_path = true\n"
			"[host.\"https://m2/mirror/v2/\"]\n"
			"[host.\"https://m3/a\"]\n";
	struct sg_hosts_config *cfg = parse_ok(t, "ghcr.io");
	CHECK_STR(cfg->upstream.host, "ghcr.io");
	CHECK_STR(cfg->upstream.path, "/v2");
	CHECK_STR(cfg->mirrors[0].path, "/api/docker/x");
	CHECK_STR(cfg->mirrors[1].path, "/mirror/v2");
	CHECK_STR(cfg->mirrors[2].path, "/a/v2");
	sg_hosts_config_free(cfg);

	cfg = parse_ok("", "localhost:5000");
	CHECK_STR(cfg->upstream.host, "localhost:5000");
	CHECK_EQ(cfg->nmirrors, 0);
	sg_hosts_config_free(cfg);

	/* Top-level settings configure the upstream. */
	cfg = parse_ok("server = \"http://10.0.0.1:5000\"\nskip_verify = true\n"
		       "capabilities = [\"pull\"]\nca = \"/ca.pem\"\n[header]\nx = \"y\"\n",
		       "10.0.0.1:5000");
	CHECK_STR(cfg->upstream.scheme, "http");
	CHECK(cfg->upstream.skip_verify);
	CHECK_EQ(cfg->upstream.caps, SG_HOST_CAP_PULL);
	CHECK_EQ(cfg->upstream.nheaders, 1);
	CHECK_STR(cfg->upstream.ca[0], "/ca.pem");
	sg_hosts_config_free(cfg);

	/* A top-level [header] table after a host table: both are complete. */
	cfg = parse_ok("[host.\"https://m/x\"]\n[header]\nx = \"y\"\n", "docker.io");
	CHECK_STR(cfg->mirrors[0].path, "/x/v2");
	CHECK_EQ(cfg->upstream.nheaders, 1);
	CHECK_EQ(cfg->mirrors[0].nheaders, 0);
	sg_hosts_config_free(cfg);

	CHECK_EQ(sg_hosts_default("docker.io", &cfg), 0);
	CHECK_STR(cfg->upstream.host, "registry-1.docker.io");
	CHECK_STR(cfg->upstream.path, "/v2");
	sg_hosts_config_free(cfg);
	CHECK_EQ(sg_hosts_default("bad host", &cfg), -EINVAL);
	sg_hosts_config_free(NULL);
}

TEST(strings_and_escapes)
{
	const char *t = "[host.\"https://m\".header]\n";
	parse_bad(t, 1, "must follow");
	t = "[host.\"https://m\"]\n[host.\"https://m\".header]\n"
	    "a = \"tab\\there\\u00e9\\U0001F600\\\"q\\\\\"\n"
	    "b = 'lit\\n#notcomment'  # comment\n";
	struct sg_hosts_config *cfg = parse_ok(t, "docker.io");
	CHECK_STR(cfg->mirrors[0].headers[0].values[0], "tab\there\xc3\xa9\xf0\x9f\x98\x80\"q\\");
	CHECK_STR(cfg->mirrors[0].headers[1].values[0], "lit\\n#notcomment");
	sg_hosts_config_free(cfg);
}

TEST(errors_with_lines)
{
	parse_bad("server = 5\n", 1, "numbers");
	parse_bad("\n\nfoo = \"x\"\n", 3, "unknown key \"foo\"");
	parse_bad("[host.\"https://m\"]\nserver = \"https://x\"\n", 2, "unknown key \"server\"");
	parse_bad("[host.\"https://m\"]\ncapabilities = [\"pull\", \"fly\"]\n", 2, "unknown capability");
	parse_bad("[host.\"https://m\"]\ncapabilities = \"pull\"\n", 2, "array of strings");
	parse_bad("[host.\"https://m\"]\nskip_verify = \"yes\"\n", 2, "true or false");
	parse_bad("[host.\"https://m\"]\nskip_verify = true\nskip_verify = false\n", 3, "duplicate key");
	parse_bad("[host.\"https://m\"]\n[host.\"https://m\"]\n", 2, "duplicate table");
	parse_bad("[[host]]\n", 1, "array tables");
	parse_bad("[plugins.\"x\"]\n", 1, "unsupported table");
	parse_bad("[host]\n", 1, "unsupported table");
	parse_bad("[host.\"https://m\".auth]\n", 1, "unsupported table");
	parse_bad("header = { a = \"b\" }\n", 1, "inline tables");
	parse_bad("host.x = 1\n", 1, "dotted keys");
	parse_bad("server \"x\"\n", 1, "expected '='");
	parse_bad("server = \"x\" junk\n", 1, "after value");
	parse_bad("server = \"unterminated\n", 1, "unterminated string");
	parse_bad("server = \"\"\"multi\"\"\"\n", 1, "multi-line");
	parse_bad("server = \"a\\qb\"\n", 1, "unknown escape");
	parse_bad("server = \"\\u12\"\n", 1, "escape");
	parse_bad("server = \"\\ud800\"\n", 1, "unicode");
	parse_bad("server = \"ftp://x\"\n", 1, "scheme");
	parse_bad("server = \"https://\"\n", 1, "no host");
	parse_bad("server = \"https://a b\"\n", 1, "invalid host");
	parse_bad("server =\n", 1, "missing value");
	parse_bad("ca = [\"a\"\n\"b\"]\n", 2, "expected ','");
	parse_bad("ca = [\"a\",\n", 2, "unterminated array");
	parse_bad("ca = [[[\"a\"]]]\n", 1, "nested too deeply");
	parse_bad("client = [[\"a\"]]\n", 1, "client");
	parse_bad("ca = \"\"\n", 1, "empty");
	parse_bad("[header]\nx = 1\n", 2, "numbers");
	parse_bad("[header]\nbad name = \"v\"\n", 2, "expected '='");
	parse_bad("[header]\n\"bad name\" = \"v\"\n", 2, "invalid header name");
	parse_bad("[header]\nx = \"a\\nb\"\n", 2, "line break");
	parse_bad("[header]\nx = []\n", 2, "no values");
	parse_bad("[header]\nx = \"a\"\nX = \"b\"\n", 3, "duplicate header");
	parse_bad("[header]\n[header]\n", 2, "duplicate table");
	parse_bad("header = \"x\"\n", 1, "must be a table");
	parse_bad("server = tru\n", 1, "unsupported value");
	parse_bad("server = truex\n", 1, "unsupported value");
	parse_bad("[host.\"https://m\"\n", 1, "expected '.' or ']'");
	parse_bad("[host.\"https://m\"] x\n", 1, "after value");
	parse_bad("= 1\n", 1, "expected a key");
	parse_bad("x = \"a\x01\"\n", 1, "control character");
}

TEST(limits)
{
	static char t[80000];
	size_t n = 0;
	for (int i = 0; i <= SG_HOSTS_MAX; i++)
		n += (size_t)snprintf(t + n, sizeof(t) - n, "[host.\"https://m%d\"]\n", i);
	struct sg_hosts_config *cfg;
	struct sg_error e = { 0 };
	CHECK_EQ(sg_hosts_toml_parse(t, n, "docker.io", NULL, &cfg, &e), -E2BIG);
	CHECK_EQ((unsigned)e.code, SG_HOSTS_MAX + 1);

	n = (size_t)snprintf(t, sizeof(t), "ca = [");
	for (int i = 0; i <= SG_HOSTS_ARRAY_MAX; i++)
		n += (size_t)snprintf(t + n, sizeof(t) - n, "\"/a\",");
	n += (size_t)snprintf(t + n, sizeof(t) - n, "]\n");
	CHECK_EQ(sg_hosts_toml_parse(t, n, "docker.io", NULL, &cfg, &e), -E2BIG);

	n = (size_t)snprintf(t, sizeof(t), "server = \"");
	memset(t + n, 'a', 5000);
	n += 5000;
	n += (size_t)snprintf(t + n, sizeof(t) - n, "\"\n");
	CHECK_EQ(sg_hosts_toml_parse(t, n, "docker.io", NULL, &cfg, &e), -E2BIG);

	memset(t, '\n', 70000);
	CHECK_EQ(sg_hosts_toml_parse(t, 70000, "docker.io", NULL, &cfg, &e), -E2BIG);
	CHECK_EQ(sg_hosts_toml_parse("a\0b", 3, "docker.io", NULL, &cfg, &e), -EBADMSG);
	CHECK_EQ(sg_hosts_toml_parse("", 0, "", NULL, &cfg, &e), -EINVAL);
}

TEST(message_bound_kept)
{
	/* A long key quoted in a message is cut where it always was (159 characters), and the
	 * line rides in err.code. */
	static char t[600];
	struct sg_hosts_config *cfg = NULL;
	struct sg_error e = { 0 };
	int n = snprintf(t, sizeof(t), "\n\n%0300d = true\n", 7);
	CHECK(n > 300);
	CHECK_EQ(sg_hosts_toml_parse(t, (size_t)n, "docker.io", NULL, &cfg, &e), -EBADMSG);
	CHECK(cfg == NULL);
	CHECK_EQ(e.code, 3);
	CHECK(strstr(e.msg, "unknown key \"000") == e.msg);
	CHECK_EQ(strlen(e.msg), 159);
}

TEST(all_prefixes_fail_cleanly)
{
	/* Every prefix of a valid file either parses or fails with an error and a line: no
	 * crash, no leak (checked under ASan). */
	const char *t = "server = \"https://r\"\n[host.\"https://m\"]\ncapabilities = [\"pull\",\n"
			"\"resolve\"]\nclient = [[\"/c\", \"/k\"]]\n[host.\"https://m\".header]\n"
			"a = [\"x\", \"y\"]\n";
	size_t len = strlen(t);
	for (size_t k = 0; k <= len; k++) {
		struct sg_hosts_config *cfg = NULL;
		struct sg_error e = { 0 };
		int r = sg_hosts_toml_parse(t, k, "docker.io", NULL, &cfg, &e);
		if (r == 0)
			sg_hosts_config_free(cfg);
		else
			CHECK((unsigned)e.code >= 1 && e.msg[0]);
	}
}

TEST_MAIN()
