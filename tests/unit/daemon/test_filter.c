/* containerd's filter syntax (daemon/filter.c): what matches, and the error texts (they are
 * the List RPC's InvalidArgument message). */
#include "daemon/filter.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <string.h>

/* A snapshot-like object: name, kind and labels.a / labels."x.y". */
static bool field(const char *const *path, size_t n, const char **value, void *userdata)
{
	const char *const *o = userdata;   /* name, kind, label a (or NULL), label x.y */

	if (n == 1 && strcmp(path[0], "name") == 0)
		return *value = o[0], true;
	if (n == 1 && strcmp(path[0], "kind") == 0)
		return *value = o[1], true;
	if (n == 2 && strcmp(path[0], "labels") == 0 && strcmp(path[1], "a") == 0 && o[2])
		return *value = o[2], true;
	if (n == 2 && strcmp(path[0], "labels") == 0 && strcmp(path[1], "x.y") == 0 && o[3])
		return *value = o[3], true;
	return false;
}

static int matches(const char *const *filters, size_t n, const char *const *obj)
{
	struct sg_filter *f;
	struct sg_error err = { 0 };

	CHECK_EQ(sg_filter_parse(filters, n, &f, &err), 0);
	CHECK_STR(err.msg, "");
	bool m = sg_filter_match(f, field, (void *)obj);
	sg_filter_free(f);
	return m;
}

/* F("a", "b") is the two arguments filters, n of sg_filter_parse. */
#define F(...) ((const char *const[]){ __VA_ARGS__ }), \
	sizeof((const char *const[]){ __VA_ARGS__ }) / sizeof(char *)

TEST(selectors_and_and_or)
{
	const char *const a[] = { "ns/1", "active", "1", NULL };
	const char *const b[] = { "ns/2", "committed", NULL, "z" };

	CHECK(matches(NULL, 0, a));
	CHECK(matches(F(""), a));
	CHECK(matches(F("name==ns/1"), a));
	CHECK(!matches(F("name==ns/1"), b));
	CHECK(matches(F("name!=ns/1"), b));
	CHECK(matches(F("kind==active,labels.a"), a));
	CHECK(!matches(F("kind==active,labels.a"), b));
	CHECK(matches(F("kind==active", "kind==committed"), b));   /* OR */
	CHECK(matches(F("labels.\"x.y\"==z"), b));
	CHECK(matches(F("labels.a!=2"), b));   /* missing is "" */
	CHECK(matches(F("name~=^ns/[12]$"), a) && matches(F("name~=\"s/2\""), b));
	CHECK(!matches(F("name~=^s"), a));
	CHECK(matches(F("name=='ns/1'"), a) && matches(F("name==/ns\\/1/"), a));
}

static void check_error(const char *filter, const char *want)
{
	const char *const fs[] = { filter };
	struct sg_filter *f = NULL;
	struct sg_error err = { 0 };

	CHECK_EQ(sg_filter_parse(fs, 1, &f, &err), -EINVAL);
	CHECK(f == NULL);
	CHECK_STR(err.msg, want);
	CHECK_EQ(sg_filter_parse(fs, 1, &f, NULL), -EINVAL);   /* no message wanted */
}

TEST(syntax_errors_name_the_filter_and_the_position)
{
	check_error("name=ex", "filter \"name=ex\": expected ==, != or ~= at position 4");
	check_error("labels.\"unterminated", "filter \"labels.\"unterminated\": unterminated "
		    "quoted string at position 20");
	check_error("==x", "filter \"==x\": expected a field name at position 0");
	check_error("name==", "filter \"name==\": expected a value at position 6");
	check_error("name==\"a\"x", "filter \"name==\"a\"x\": expected , at position 9");
	check_error("name==a,", "filter \"name==a,\": expected a field name at position 8");
	check_error("a.", "filter \"a.\": expected a field name at position 2");
	check_error("name~=\"(\"", "filter \"name~=\"(\"\": bad regular expression: Unmatched ( or \\(");
}

TEST_MAIN()
