/* The TOML reader shared by config.toml and hosts.toml (daemon/core/toml.c): what the
 * options add (integers, array tables) and what stays refused, with the line of each error.
 * hosts.toml's own grammar and messages are tested in tests/unit/net/test_hosts_toml.c. */
#include "daemon/core/toml.h"
#include "tests/unit/test.h"

#include <errno.h>

struct rec {
	char log[2048];
	size_t n;
};

static int on_table(void *ud, struct sg_toml *t, char *const *path, size_t n, bool array)
{
	struct rec *r = ud;
	r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n, "%s", array ? "[[" : "[");
	for (size_t i = 0; i < n; i++)
		r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n, "%s%s", i ? "." : "", path[i]);
	r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n, "%s@%u ", array ? "]]" : "]",
				 sg_toml_line(t));
	return 0;
}

static int on_keyval(void *ud, struct sg_toml *t, const char *key, struct sg_toml_value *v)
{
	struct rec *r = ud;
	if (strcmp(key, "refuse") == 0)
		return sg_toml_fail(t, -EINVAL, "refused %s", key);
	r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n, "%s=", key);
	switch (v->type) {
	case SG_TOML_INT:
		r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n, "%lld", (long long)v->i);
		break;
	case SG_TOML_BOOL:
		r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n, "%s", v->b ? "T" : "F");
		break;
	case SG_TOML_STRING:
		r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n, "'%s'", v->s);
		break;
	case SG_TOML_ARRAY:
		r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n, "#%zu", v->n);
		break;
	}
	r->n += (size_t)snprintf(r->log + r->n, sizeof(r->log) - r->n, "@%u ", sg_toml_line(t));
	return 0;
}

static const struct sg_toml_options all = { .integers = true, .array_tables = true };

static int run(const char *text, const struct sg_toml_options *o, struct rec *r, struct sg_error *e)
{
	struct sg_toml_handler h = { on_table, on_keyval, r };
	memset(r, 0, sizeof(*r));
	*e = (struct sg_error){ 0 };
	return sg_toml_parse(text, strlen(text), o, &h, e);
}

TEST(integers_and_array_tables_when_allowed)
{
	struct rec r;
	struct sg_error e;

	CHECK_EQ(run("a = 0\nb = -12\nc = +1_000\nd = 9223372036854775807\n"
		     "e = -9223372036854775808\n[[x.\"y z\".m]]\nh = [1, 2]\n[x.\"y z\".m.h]\n"
		     "k = 'v'\n", &all, &r, &e), 0);
	CHECK_STR(r.log, "a=0@1 b=-12@2 c=1000@3 d=9223372036854775807@4 "
			 "e=-9223372036854775808@5 [[x.y z.m]]@6 h=#2@7 [x.y z.m.h]@8 k='v'@9 ");
}

TEST(what_stays_refused)
{
	static const struct {
		const char *text;
		unsigned line;
		const char *msg;
	} bad[] = {
		{ "a = 01\n", 1, "leading zero" },
		{ "a = 9223372036854775808\n", 1, "out of range" },
		{ "a = 1.5\n", 1, "only decimal integers" },
		{ "a = 1e3\n", 1, "only decimal integers" },
		{ "a = 0x10\n", 1, "only decimal integers" },
		{ "\na = 1979-05-27\n", 2, "only decimal integers" },
		{ "a = 1_\n", 1, "only decimal integers" },
		{ "a = -\n", 1, "expected a number" },
		{ "a = { b = 1 }\n", 1, "inline tables" },
		{ "a.b = 1\n", 1, "dotted keys" },
		{ "[[a]\n", 1, "']]'" },
		{ "[a.b.c.d.e.f.g.h.i]\n", 1, "too many parts" },
		{ "a = 1\n\nrefuse = 2\n", 3, "refused refuse" },
		{ "a = yes\n", 1, "a: unsupported value" },
	};
	struct rec r;
	struct sg_error e;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = run(bad[i].text, &all, &r, &e);
		if (rc >= 0 || (unsigned)e.code != bad[i].line || !strstr(e.msg, bad[i].msg))
			TEST_FAIL("%s: rc %d line %d \"%s\", want line %u \"%s\"", bad[i].text, rc,
				  e.code, e.msg, bad[i].line, bad[i].msg);
	}
	/* Without the options: hosts.toml's refusals. */
	CHECK_EQ(run("a = 1\n", NULL, &r, &e), -EBADMSG);
	CHECK(strstr(e.msg, "numbers and dates are not supported here"));
	CHECK_EQ(run("[[a]]\n", NULL, &r, &e), -EBADMSG);
	CHECK(strstr(e.msg, "array tables"));
}

TEST(every_prefix_fails_cleanly)
{
	const char *t = "a = -1_2\n[[r.h.\"x\".m]]\nhost = \"m\"\nv = [[\"a\", 'b'], [],]\n"
			"[r.h.\"x\".m.header]\nk = [\"v\\u00e9\"]\n";
	size_t len = strlen(t);
	for (size_t k = 0; k <= len; k++) {
		struct rec r = { 0 };
		struct sg_error e = { 0 };
		struct sg_toml_handler h = { on_table, on_keyval, &r };
		int rc = sg_toml_parse(t, k, &all, &h, &e);
		if (rc < 0)
			CHECK(e.code >= 1 && e.msg[0]);
	}
}

TEST_MAIN()
