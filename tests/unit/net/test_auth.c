/* Tests for net/auth: challenges, token URL, token JSON, base64/Basic, config.json. */
#include <errno.h>

#include "net/auth.h"
#include "tests/unit/test.h"

static int parse(const char *v, struct sg_auth_challenge *c, size_t max)
{
	return sg_auth_parse_challenges(v, strlen(v), c, max);
}

TEST(challenge_docker_hub)
{
	static struct sg_auth_challenge c[4];
	const char *v = "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
			"scope=\"repository:library/ubuntu:pull\"";
	CHECK_EQ(parse(v, c, 4), 1);
	CHECK_EQ(c[0].scheme, SG_AUTH_BEARER);
	CHECK_STR(c[0].realm, "https://auth.docker.io/token");
	CHECK_STR(c[0].service, "registry.docker.io");
	CHECK_STR(c[0].scope, "repository:library/ubuntu:pull");
}

TEST(challenge_variants)
{
	static struct sg_auth_challenge c[8];
	/* Several challenges, token values, odd spacing and case, escapes, unknown params. */
	const char *v = "Basic realm=\"Registry Realm\" , bearer  Realm = \"https://a/t\" , "
			"service=\"x\\\"y\", foo=bar,error=\"insufficient_scope\" ,"
			"Negotiate abc123==, Digest realm=\"d\", nonce=\"n\"";
	CHECK_EQ(parse(v, c, 8), 4);
	CHECK_EQ(c[0].scheme, SG_AUTH_BASIC);
	CHECK_STR(c[0].realm, "Registry Realm");
	CHECK_EQ(c[1].scheme, SG_AUTH_BEARER);
	CHECK_STR(c[1].realm, "https://a/t");
	CHECK_STR(c[1].service, "x\"y");
	CHECK_STR(c[1].error, "insufficient_scope");
	CHECK_EQ(c[2].scheme, SG_AUTH_OTHER);
	CHECK_EQ(c[3].scheme, SG_AUTH_OTHER);
	CHECK_STR(c[3].realm, "d");
	/* Only `max` are stored. */
	CHECK_EQ(parse(v, c, 2), 2);
	/* Bare scheme, empty header. */
	CHECK_EQ(parse("Bearer", c, 8), 1);
	CHECK_EQ(c[0].scheme, SG_AUTH_BEARER);
	CHECK_STR(c[0].realm, "");
	CHECK_EQ(parse("", c, 8), 0);
	CHECK_EQ(parse(" , ,", c, 8), 0);
	/* Scope with several entries and an empty quoted value. */
	CHECK_EQ(parse("Bearer realm=\"https://r\",scope=\"repository:a:pull repository:b:pull\","
		       "service=\"\"", c, 8), 1);
	CHECK_STR(c[0].scope, "repository:a:pull repository:b:pull");
	CHECK_STR(c[0].service, "");
}

TEST(challenge_malformed)
{
	static struct sg_auth_challenge c[4];
	const char *bad[] = {
		"Bearer realm=\"unterminated",
		"Bearer realm=\"x\" junk",
		"Bearer realm=\"x\\",
		"=x",
		"Bearer realm=\"a\x01\"",
		"Bear\"er realm=x",
		"Bearer realm=x;y",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (parse(bad[i], c, 4) >= 0)
			TEST_FAIL("accepted \"%s\"", bad[i]);
	/* Bounds: a realm longer than the buffer, too many challenges or params. */
	static char big[4096];
	int n = snprintf(big, sizeof(big), "Bearer realm=\"");
	memset(big + n, 'r', 2000);
	strcpy(big + n + 2000, "\"");
	CHECK_EQ(parse(big, c, 4), -ENAMETOOLONG);
	big[0] = 0;
	for (int i = 0; i < 12; i++)
		strcat(big, "Basic realm=x, ");
	CHECK_EQ(parse(big, c, 4), -E2BIG);
	strcpy(big, "Bearer ");
	for (int i = 0; i < 20; i++)
		strcat(big, "a=b,");
	CHECK_EQ(parse(big, c, 4), -E2BIG);
}

static int parse_one(const char *v)
{
	static struct sg_auth_challenge c1;
	return sg_auth_parse_challenges(v, strlen(v), &c1, 1);
}

TEST(token_url)
{
	static struct sg_auth_challenge c;
	char buf[512];

	memset(&c, 0, sizeof(c));
	strcpy(c.realm, "https://auth.docker.io/token");
	strcpy(c.service, "registry.docker.io");
	strcpy(c.scope, "repository:library/ubuntu:pull");
	CHECK(sg_auth_token_url(&c, NULL, buf, sizeof(buf)) > 0);
	CHECK_STR(buf, "https://auth.docker.io/token?service=registry.docker.io"
		       "&scope=repository%3Alibrary%2Fubuntu%3Apull");
	/* Extra scope appended once; duplicates dropped; realm with a query. */
	strcpy(c.realm, "https://ghcr.io/token?x=1");
	strcpy(c.service, "ghcr io");
	strcpy(c.scope, "repository:a:pull  repository:b:pull,push");
	CHECK(sg_auth_token_url(&c, "repository:a:pull repository:c:pull", buf, sizeof(buf)) > 0);
	CHECK_STR(buf, "https://ghcr.io/token?x=1&service=ghcr%20io&scope=repository%3Aa%3Apull"
		       "&scope=repository%3Ab%3Apull%2Cpush&scope=repository%3Ac%3Apull");
	/* No service, no scope. */
	c.service[0] = c.scope[0] = 0;
	strcpy(c.realm, "http://127.0.0.1:5001/auth");
	CHECK(sg_auth_token_url(&c, NULL, buf, sizeof(buf)) > 0);
	CHECK_STR(buf, "http://127.0.0.1:5001/auth");
	/* Refused realms and short buffers. */
	strcpy(c.realm, "ftp://x/");
	CHECK_EQ(sg_auth_token_url(&c, NULL, buf, sizeof(buf)), -EINVAL);
	strcpy(c.realm, "https://x/a b");
	CHECK_EQ(sg_auth_token_url(&c, NULL, buf, sizeof(buf)), -EINVAL);
	strcpy(c.realm, "https://x/t");
	strcpy(c.scope, "repository:a:pull");
	/* "https://x/t?scope=repository%3Aa%3Apull" is 39 bytes. */
	for (size_t cap = 0; cap < 40; cap++)
		CHECK_EQ(sg_auth_token_url(&c, NULL, buf, cap), -ENOSPC);
	CHECK_EQ(sg_auth_token_url(&c, NULL, buf, 40), 39);
	/* An unquoted value must be a token: a URL is not one. */
	CHECK_EQ(parse_one("Bearer realm=https://x"), -EBADMSG);
	CHECK_EQ(parse_one("Bearer realm=abc"), 1);
}

TEST(query_escape)
{
	char b[32];
	CHECK_EQ(sg_auth_query_escape("a b/c~_.-", 9, b, sizeof(b)), 13);
	CHECK_STR(b, "a%20b%2Fc~_.-");
	CHECK_EQ(sg_auth_query_escape("\xff", 1, b, sizeof(b)), 3);
	CHECK_STR(b, "%FF");
	CHECK_EQ(sg_auth_query_escape("abc", 3, b, 3), -ENOSPC);
}

TEST(token_json)
{
	struct sg_auth_token t;
	const char *j = "{\"token\":\"abc.def\",\"access_token\":\"other\",\"expires_in\":300,"
			"\"issued_at\":\"2024-01-02T03:04:05.123456Z\"}";
	CHECK_EQ(sg_auth_parse_token(j, strlen(j), &t), 0);
	CHECK_STR(t.token, "abc.def");
	CHECK_EQ(t.expires_in, 300);
	CHECK_EQ(t.issued_at, 1704164645);
	CHECK_EQ(sg_auth_token_expiry(&t, 1000), 1000 + 300 - 30);
	sg_auth_token_done(&t);

	j = "{\"access_token\":\"oauth\"}";
	CHECK_EQ(sg_auth_parse_token(j, strlen(j), &t), 0);
	CHECK_STR(t.token, "oauth");
	CHECK_EQ(t.expires_in, 60);
	CHECK_EQ(t.issued_at, 0);
	CHECK_EQ(sg_auth_token_expiry(&t, 1000), 1000 + 60 - 15);
	sg_auth_token_done(&t);

	j = "{\"token\":\"t\",\"expires_in\":5,\"issued_at\":\"garbage\"}";
	CHECK_EQ(sg_auth_parse_token(j, strlen(j), &t), 0);
	CHECK_EQ(t.expires_in, 60);
	sg_auth_token_done(&t);
	j = "{\"token\":\"t\",\"expires_in\":99999999}";
	CHECK_EQ(sg_auth_parse_token(j, strlen(j), &t), 0);
	CHECK_EQ(t.expires_in, 86400);
	sg_auth_token_done(&t);

	const char *bad[] = {
		"", "[]", "{}", "{\"token\":\"\"}", "{\"token\":5}", "{\"token\":\"a\\nb\"}",
		"{\"token\":\"a\",\"expires_in\":\"300\"}", "{\"token\":\"a\"", "{\"token\":\"a\"}x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = sg_auth_parse_token(bad[i], strlen(bad[i]), &t);
		if (r != -EBADMSG)
			TEST_FAIL("case %zu: %d", i, r);
		CHECK(t.token == NULL);
	}
	/* Deep nesting is refused before yajl sees it. */
	static char deep[100000];
	memset(deep, '[', sizeof(deep) - 1);
	CHECK_EQ(sg_auth_parse_token(deep, strlen(deep), &t), -E2BIG);
}

TEST(rfc3339)
{
	time_t t;
	CHECK_EQ(sg_auth_parse_rfc3339("1970-01-01T00:00:00Z", 20, &t), 0);
	CHECK_EQ(t, 0);
	CHECK_EQ(sg_auth_parse_rfc3339("2024-01-02T04:04:05+01:00", 25, &t), 0);
	CHECK_EQ(t, 1704164645);
	CHECK_EQ(sg_auth_parse_rfc3339("2024-01-02T02:04:05.5-01:00", 27, &t), 0);
	CHECK_EQ(t, 1704164645);
	CHECK_EQ(sg_auth_parse_rfc3339("2024-13-02T02:04:05Z", 20, &t), -EBADMSG);
	CHECK_EQ(sg_auth_parse_rfc3339("2024-01-02T02:04:05", 19, &t), -EBADMSG);
	CHECK_EQ(sg_auth_parse_rfc3339("2024-01-02T02:04:05.Z", 21, &t), -EBADMSG);
	CHECK_EQ(sg_auth_parse_rfc3339("2024-01-02T02:04:05+0100", 24, &t), -EBADMSG);
}

TEST(base64)
{
	char e[64];
	uint8_t d[64];
	const struct { const char *plain, *enc; } v[] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t pl = strlen(v[i].plain);
		CHECK_EQ(sg_base64_encode((const uint8_t *)v[i].plain, pl, e, sizeof(e)),
			 strlen(v[i].enc));
		CHECK_STR(e, v[i].enc);
		CHECK_EQ(sg_base64_decode(v[i].enc, strlen(v[i].enc), d, sizeof(d)), pl);
		CHECK_MEM(d, v[i].plain, pl);
	}
	const char *bad[] = { "Zg=", "Zg=a", "Z===", "Zh==", "Zm9=", "Zg==Zg==", "Zm9v!A==", "====" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (sg_base64_decode(bad[i], strlen(bad[i]), d, sizeof(d)) != -EBADMSG)
			TEST_FAIL("accepted \"%s\"", bad[i]);
	CHECK_EQ(sg_base64_decode("Zm9vYmFy", 8, d, 5), -ENOSPC);
	CHECK_EQ(sg_base64_encode((const uint8_t *)"foo", 3, e, 4), -ENOSPC);
}

TEST(basic_header)
{
	char b[128];
	CHECK_EQ(sg_auth_basic_header("Aladdin", "open sesame", b, sizeof(b)), 34);
	CHECK_STR(b, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
	CHECK_EQ(sg_auth_basic_header("a:b", "c", b, sizeof(b)), -EINVAL);
	CHECK_EQ(sg_auth_basic_header("user", "pass", b, 10), -ENOSPC);
	CHECK_EQ(sg_auth_basic_header("", "", b, sizeof(b)), 10);
	CHECK_STR(b, "Basic Og==");
}

TEST(docker_config)
{
	struct sg_docker_config *cfg;
	struct sg_docker_cred c;
	struct sg_error e = { 0 };
	/* "dXNlcjpwYTpzcw==" is "user:pa:ss". */
	const char *j = "{\"auths\":{"
			"\"https://index.docker.io/v1/\":{\"auth\":\"dXNlcjpwYTpzcw==\"},"
			"\"localhost:5000\":{\"username\":\"u\",\"password\":\"p\"},"
			"\"https://quay.io/v2/\":{\"identitytoken\":\"refresh\",\"username\":\"<token>\"},"
			"\"empty.io\":{},"
			"\"bad.io\":{\"auth\":\"!!!!\"}},"
			"\"credHelpers\":{\"gcr.io\":\"gcloud\"},"
			"\"HttpHeaders\":{\"User-Agent\":\"x\"}}";
	CHECK_EQ(sg_docker_config_parse(j, strlen(j), &cfg, &e), 0);

	CHECK_EQ(sg_docker_config_lookup(cfg, "docker.io", &c), 0);
	CHECK_STR(c.username, "user");
	CHECK_STR(c.password, "pa:ss");
	CHECK(c.helper == NULL);
	sg_docker_cred_done(&c);
	CHECK_EQ(sg_docker_config_lookup(cfg, "registry-1.docker.io", &c), 0);
	CHECK_STR(c.username, "user");
	sg_docker_cred_done(&c);
	CHECK_EQ(sg_docker_config_lookup(cfg, "localhost:5000", &c), 0);
	CHECK_STR(c.username, "u");
	CHECK_STR(c.password, "p");
	sg_docker_cred_done(&c);
	CHECK_EQ(sg_docker_config_lookup(cfg, "quay.io", &c), 0);
	CHECK_STR(c.identity_token, "refresh");
	CHECK_STR(c.username, "<token>");
	sg_docker_cred_done(&c);
	CHECK_EQ(sg_docker_config_lookup(cfg, "gcr.io", &c), 0);
	CHECK_STR(c.helper, "gcloud");
	CHECK(c.username == NULL);
	sg_docker_cred_done(&c);
	CHECK_EQ(sg_docker_config_lookup(cfg, "empty.io", &c), -ENOENT);
	CHECK_EQ(sg_docker_config_lookup(cfg, "ghcr.io", &c), -ENOENT);
	CHECK_EQ(sg_docker_config_lookup(cfg, "bad.io", &c), -EBADMSG);
	sg_docker_config_free(cfg);

	/* credsStore applies to every registry without a credHelpers entry. */
	j = "{\"auths\":{\"ghcr.io\":{}, \"x.io\":{\"auth\":\"dTpw\"}},\"credsStore\":\"desktop\","
	    "\"credHelpers\":{\"ecr.aws\":\"ecr-login\"}}";
	CHECK_EQ(sg_docker_config_parse(j, strlen(j), &cfg, &e), 0);
	CHECK_EQ(sg_docker_config_lookup(cfg, "ghcr.io", &c), 0);
	CHECK_STR(c.helper, "desktop");
	sg_docker_cred_done(&c);
	CHECK_EQ(sg_docker_config_lookup(cfg, "x.io", &c), 0);
	CHECK_STR(c.helper, "desktop");
	sg_docker_cred_done(&c);
	CHECK_EQ(sg_docker_config_lookup(cfg, "ecr.aws", &c), 0);
	CHECK_STR(c.helper, "ecr-login");
	sg_docker_cred_done(&c);
	sg_docker_config_free(cfg);

	CHECK_EQ(sg_docker_config_parse("{}", 2, &cfg, &e), 0);
	CHECK_EQ(sg_docker_config_lookup(cfg, "docker.io", &c), -ENOENT);
	sg_docker_config_free(cfg);
	sg_docker_config_free(NULL);
}

TEST(docker_config_malformed)
{
	struct sg_docker_config *cfg = (void *)1;
	struct sg_error e = { 0 };
	const char *bad[] = {
		"", "[]", "{\"auths\":[]}", "{\"auths\":{\"a\":1}}", "{\"credHelpers\":{\"a\":1}}",
		"{\"credHelpers\":{\"a\":\"../../bin/sh\"}}", "{\"credsStore\":\"a b\"}",
		"{\"credsStore\":5}", "{\"auths\":{}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e = (struct sg_error){ 0 };
		int r = sg_docker_config_parse(bad[i], strlen(bad[i]), &cfg, &e);
		if (r != -EBADMSG)
			TEST_FAIL("case %zu: %d", i, r);
		CHECK(cfg == NULL);
		CHECK(e.msg[0] != '\0');
	}
}

TEST_MAIN()
