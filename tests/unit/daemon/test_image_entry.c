/* Tests for daemon/image_entry: the programs an image config names (Entrypoint, Cmd, a
 * shell's -c string, PATH, WorkingDir), its bounds and refusals; and the fetch of the
 * config (manifest, then the config blob, verified) from a scripted registry. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/digest.h"
#include "daemon/image_entry.h"
#include "tests/helpers/registry_env.h"
#include "tests/unit/test.h"

static struct sg_image_entry e;
static struct sg_error err;

static int parse(const char *json)
{
	err = (struct sg_error){ 0 };
	return sg_image_entry_parse(json, strlen(json), &e, &err);
}

/* "path:command path:command ..." of e. */
static const char *paths(void)
{
	static char out[SG_ENTRY_PATHS_MAX * (SG_ENTRY_PATH_MAX + 4)];
	size_t at = 0;

	out[0] = '\0';
	for (size_t i = 0; i < e.n; i++)
		at += (size_t)snprintf(out + at, sizeof(out) - at, "%s%s:%u", i ? " " : "",
				       e.p[i].path, e.p[i].command);
	return out;
}

TEST(the_command_is_looked_up_in_the_images_path)
{
	CHECK_EQ(parse("{\"config\":{\"Cmd\":[\"python3\",\"-c\",\"print(1)\"],"
		       "\"Env\":[\"LANG=C.UTF-8\",\"PATH=/usr/local/bin:relative:/usr/bin/\"]}}"), 0);
	CHECK_STR(paths(), "/usr/local/bin/python3:0 /usr/bin/python3:0");
	/* no PATH: the default one */
	CHECK_EQ(parse("{\"config\":{\"Cmd\":[\"python3\"]}}"), 0);
	CHECK_STR(paths(), "/usr/local/sbin/python3:0 /usr/local/bin/python3:0 /usr/sbin/python3:0 "
		  "/usr/bin/python3:0 /sbin/python3:0 /bin/python3:0");
}

TEST(the_entrypoint_comes_before_the_command_and_a_relative_path_from_the_workdir)
{
	CHECK_EQ(parse("{\"config\":{\"Entrypoint\":[\"/docker-entrypoint.sh\"],"
		       "\"Cmd\":[\"nginx\",\"-g\",\"daemon off;\"]}}"), 0);
	CHECK_STR(paths(), "/docker-entrypoint.sh:0");
	CHECK_EQ(parse("{\"config\":{\"Cmd\":[\"./run\"],\"WorkingDir\":\"/app/\"}}"), 0);
	CHECK_STR(paths(), "/app/run:0");
	CHECK_EQ(parse("{\"config\":{\"Cmd\":[\"bin/run\"]}}"), 0);   /* no WorkingDir */
	CHECK_EQ(e.n, 0);
}

TEST(a_shells_c_string_gives_its_commands)
{
	/* the bench's gcc workload: printf is a builtin, quotes hold ; and > */
	CHECK_EQ(parse("{\"config\":{\"Cmd\":[\"sh\",\"-c\",\"printf \\\"#include <stdio.h>\\\\n"
		       "int main(void){puts(\\\\\\\"hello\\\\\\\");return 0;}\\\\n\\\" >/tmp/h.c && "
		       "gcc -O2 -o /tmp/h /tmp/h.c && /tmp/h\"],\"Env\":[\"PATH=/usr/bin:/bin\"]}}"), 0);
	CHECK_STR(paths(), "/usr/bin/sh:0 /bin/sh:0 /usr/bin/gcc:1 /bin/gcc:1 /tmp/h:2");
	/* assignments, exec, redirections with their targets, env's options, pipes, ( ) */
	CHECK_EQ(parse("{\"config\":{\"Entrypoint\":[\"/bin/bash\",\"-c\"],\"Cmd\":[\"FOO=1 exec 2> "
		       "/dev/null /app/server --port 80; env -i X=1 node 'app;js' | tee log; "
		       "(cd /x && ./y) & echo done\"],\"Env\":[\"PATH=/usr/bin\"]}}"), 0);
	CHECK_STR(paths(), "/bin/bash:0 /app/server:1 /usr/bin/node:2 /usr/bin/tee:3");
	/* not a shell: its arguments are no commands */
	CHECK_EQ(parse("{\"config\":{\"Cmd\":[\"/usr/bin/python3\",\"-c\",\"gcc\"]}}"), 0);
	CHECK_STR(paths(), "/usr/bin/python3:0");
}

TEST(no_command_is_no_program_and_no_error)
{
	CHECK_EQ(parse("{}"), 0);
	CHECK_EQ(e.n, 0);
	CHECK_EQ(parse("{\"config\":null}"), 0);
	CHECK_EQ(e.n, 0);
	CHECK_EQ(parse("{\"config\":{\"Cmd\":null,\"Entrypoint\":[]}}"), 0);
	CHECK_EQ(e.n, 0);
	CHECK_EQ(parse("{\"config\":{\"Cmd\":[\"sh\",\"-c\",\"echo hi; exit 0\"],"
		       "\"Env\":[\"PATH=/bin\"]}}"), 0);
	CHECK_STR(paths(), "/bin/sh:0");
}

TEST(malformed_configs_are_refused_with_a_reason)
{
	CHECK_EQ(parse("not json"), -EBADMSG);
	CHECK(err.msg[0]);
	CHECK_EQ(parse("[]"), -EBADMSG);
	CHECK_STR(err.msg, "image config: not a JSON object");
	CHECK_EQ(parse("{\"config\":{\"Cmd\":\"python3\"}}"), -EBADMSG);
	CHECK(strstr(err.msg, "lists of strings"));
	CHECK_EQ(parse("{\"config\":{\"Cmd\":[1]}}"), -EBADMSG);
	CHECK_EQ(parse("{\"config\":{\"Env\":{}}}"), -EBADMSG);
	CHECK_EQ(parse("{\"config\":[]}"), -EBADMSG);
	size_t big = SG_IMAGE_CONFIG_MAX + 16;
	char *s = malloc(big + 1);
	CHECK(s != NULL);
	memset(s, ' ', big);
	memcpy(s, "{\"a\":\"", 6);
	memcpy(s + big - 2, "\"}", 2);
	s[big] = '\0';
	CHECK_EQ(sg_image_entry_parse(s, big, &e, &err), -E2BIG);
	free(s);
}

TEST(commands_paths_and_names_are_bounded)
{
	char json[8192];
	size_t at = (size_t)snprintf(json, sizeof(json), "{\"config\":{\"Cmd\":[\"sh\",\"-c\",\"");
	for (int i = 0; i < 20; i++)
		at += (size_t)snprintf(json + at, sizeof(json) - at, "p%d; ", i);
	at += (size_t)snprintf(json + at, sizeof(json) - at, "\"],\"Env\":[\"PATH=");
	for (int i = 0; i < 12; i++)
		at += (size_t)snprintf(json + at, sizeof(json) - at, "%s/d%d", i ? ":" : "", i);
	snprintf(json + at, sizeof(json) - at, "\"]}}");
	CHECK_EQ(parse(json), 0);
	CHECK_EQ(e.n, SG_ENTRY_PATHS_MAX);   /* 8 commands x 12 directories, cut at 64 */
	for (size_t i = 0; i < e.n; i++)
		CHECK(e.p[i].command < SG_ENTRY_COMMANDS_MAX);
	/* a name longer than a path may be: left out */
	char name[400];
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(json, sizeof(json), "{\"config\":{\"Cmd\":[\"/%s\"]}}", name);
	CHECK_EQ(parse(json), 0);
	CHECK_EQ(e.n, 0);
}

/* ---- the fetch, from a scripted registry ---- */

static const char config_json[] =
	"{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Cmd\":[\"python3\"],"
	"\"Env\":[\"PATH=/usr/local/bin:/usr/bin\"]}}";
static char manifest_resp[4096], config_resp[2048], manifest_json[2048];
static const char *script[2];

static void make_responses(const char *config_digest, size_t config_size)
{
	snprintf(manifest_json, sizeof(manifest_json),
		 "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
		 "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
		 "\"digest\":\"%s\",\"size\":%zu},\"layers\":[]}", config_digest, config_size);
	snprintf(manifest_resp, sizeof(manifest_resp), "HTTP/1.1 200 OK\r\nContent-Type: "
		 "application/vnd.oci.image.manifest.v1+json\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(manifest_json), manifest_json);
	snprintf(config_resp, sizeof(config_resp), "HTTP/1.1 200 OK\r\nContent-Type: "
		 "application/octet-stream\r\nContent-Length: %zu\r\n\r\n%s", strlen(config_json),
		 config_json);
}

struct fetch {
	struct sg_op op;
	struct sg_error err;
	struct sg_image_entry e;
	int res, calls;
};

static void on_fetched(struct sg_op *op)
{
	struct fetch *f = sg_container_of(op, struct fetch, op);
	f->res = op->res;
	f->calls++;
}

static int fetch(struct registry_env *c, struct fetch *f, const char *config_digest,
		 size_t config_size)
{
	char ref[128];

	make_responses(config_digest, config_size);
	memset(c, 0, sizeof(*c));
	script[0] = manifest_resp;
	script[1] = config_resp;
	c->srv.script = script;
	c->srv.nscript = 2;
	registry_env_start(c, 2, 1);
	memset(f, 0, sizeof(*f));
	sg_op_init(&f->op);
	snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/img:v1", c->srv.port);
	CHECK_EQ(sg_image_entry_fetch(c->loop, c->reg, ref, NULL, &f->e, &f->err, &f->op,
				      on_fetched), 0);
	for (int i = 0; i < 100 && !f->calls; i++)
		CHECK(sg_loop_run_once(c->loop, 50) >= 0);
	CHECK_EQ(f->calls, 1);
	return f->res;
}

TEST(the_config_is_fetched_by_the_manifests_descriptor_and_verified)
{
	static struct registry_env c;
	static struct fetch f;
	char digest[SG_DIGEST_STRLEN + 1], want[256];
	struct sg_digest d;

	sg_sha256((const uint8_t *)config_json, strlen(config_json), &d);
	sg_digest_format(&d, digest);
	CHECK_EQ(fetch(&c, &f, digest, strlen(config_json)), 0);
	CHECK_EQ(f.e.n, 2);
	CHECK_STR(f.e.p[0].path, "/usr/local/bin/python3");
	CHECK_STR(f.e.p[1].path, "/usr/bin/python3");
	snprintf(want, sizeof(want), "GET /v2/test/img/blobs/%s HTTP/1.1\r\n", digest);
	CHECK(strstr(c.srv.heads[1], want) == c.srv.heads[1]);
	registry_env_stop(&c);

	/* bytes that are not the descriptor's: refused, nothing parsed */
	digest[SG_DIGEST_STRLEN - 1] = digest[SG_DIGEST_STRLEN - 1] == '0' ? '1' : '0';
	CHECK_EQ(fetch(&c, &f, digest, strlen(config_json)), -EBADMSG);
	CHECK(strstr(f.err.msg, "digest mismatch"));
	CHECK_EQ(f.e.n, 0);
	registry_env_stop(&c);
	sg_digest_format(&d, digest);
	CHECK_EQ(fetch(&c, &f, digest, strlen(config_json) + 1), -EBADMSG);
	CHECK(strstr(f.err.msg, "the descriptor says"));
	registry_env_stop(&c);
}

/* A shutdown while the manifest, or then the config, is on its way: the fetch ends once,
 * cancelled, with nothing parsed, and the registry is idle after it. */
TEST(a_shutdown_in_the_middle_ends_the_fetch_once)
{
	static struct registry_env c;
	static struct fetch f;
	char digest[SG_DIGEST_STRLEN + 1], ref[128];
	struct sg_digest d;

	sg_sha256((const uint8_t *)config_json, strlen(config_json), &d);
	sg_digest_format(&d, digest);
	for (int step = 0; step < 2; step++) {
		make_responses(digest, strlen(config_json));
		memset(&c, 0, sizeof(c));
		script[0] = manifest_resp;
		script[1] = config_resp;
		c.srv.script = script;
		c.srv.nscript = 2;
		registry_env_start(&c, 2, 1);
		memset(&f, 0, sizeof(f));
		sg_op_init(&f.op);
		snprintf(ref, sizeof(ref), "127.0.0.1:%d/test/img:v1", c.srv.port);
		CHECK_EQ(sg_image_entry_fetch(c.loop, c.reg, ref, NULL, &f.e, &f.err, &f.op,
					      on_fetched), 0);
		if (step == 1) {   /* the manifest answered, the config's answer held back */
			for (int i = 0; i < 100 && atomic_load(&c.srv.nheads) < 1; i++)
				CHECK(sg_loop_run_once(c.loop, 20) >= 0);
			CHECK_EQ(atomic_load(&c.srv.nheads), 1);
			atomic_store(&c.srv.delay_ms, 3000);
			for (int i = 0; i < 10; i++)
				CHECK(sg_loop_run_once(c.loop, 20) >= 0);
		}
		CHECK_EQ(f.calls, 0);
		sg_registry_shutdown(c.reg);
		CHECK_EQ(sg_loop_drain(c.loop, 5000), 0);
		CHECK_EQ(f.calls, 1);
		CHECK_EQ(f.res, -ECANCELED);
		CHECK_EQ(f.e.n, 0);
		CHECK(!sg_registry_busy(c.reg));
		sg_registry_free(c.reg);
		sg_loop_free(c.loop);
	}
}

TEST(a_config_above_the_bound_is_not_fetched)
{
	static struct registry_env c;
	static struct fetch f;

	CHECK_EQ(fetch(&c, &f, "sha256:" "0123456789abcdef0123456789abcdef"
			       "0123456789abcdef0123456789abcdef", SG_IMAGE_CONFIG_MAX + 1), -E2BIG);
	CHECK(strstr(f.err.msg, "above"));
	CHECK_EQ(c.srv.nheads, 1);   /* the manifest only */
	registry_env_stop(&c);
}

TEST_MAIN()
