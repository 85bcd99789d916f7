/* Tests for net/token: entries per (host, repository), values with their expiry, the fetch
 * flag, and the bound that drops the oldest entry no fetch is running for. */
#include <errno.h>
#include <string.h>

#include "net/token.h"
#include "tests/unit/test.h"

TEST(entries_values_and_drop)
{
	struct sg_tokens *t;
	time_t expiry = 0;

	CHECK_EQ(sg_tokens_new(0, &t), 0);
	CHECK(sg_tokens_entry(t, "reg:5000", "a/b", false) == NULL);
	struct sg_token *e = sg_tokens_entry(t, "reg:5000", "a/b", true);
	CHECK(e != NULL);
	CHECK(sg_tokens_entry(t, "reg:5000", "a/b", false) == e);
	CHECK(sg_tokens_entry(t, "reg:5000", "a/c", false) == NULL);
	CHECK(sg_tokens_entry(t, "reg:5001", "a/b", false) == NULL);
	CHECK(sg_token_value(e, &expiry) == NULL);
	CHECK_EQ(sg_token_set(e, "xyz", 1234), 0);
	CHECK_STR(sg_token_value(e, &expiry), "Bearer xyz");
	CHECK_EQ(expiry, 1234);
	CHECK_EQ(sg_token_set(e, "second", 99), 0);
	CHECK_STR(sg_token_value(e, NULL), "Bearer second");
	sg_token_drop(e);
	CHECK(sg_token_value(e, NULL) == NULL);
	CHECK(!sg_token_fetching(e));
	sg_token_set_fetching(e, true);
	CHECK(sg_token_fetching(e));
	/* A key too long for the table is no entry. */
	char repo[600];
	memset(repo, 'r', sizeof(repo) - 1);
	repo[sizeof(repo) - 1] = '\0';
	CHECK(sg_tokens_entry(t, "reg:5000", repo, true) == NULL);
	sg_tokens_free(t);
	sg_tokens_free(NULL);
}

TEST(bound_drops_the_oldest_not_fetching)
{
	struct sg_tokens *t;

	CHECK_EQ(sg_tokens_new(2, &t), 0);
	struct sg_token *a = sg_tokens_entry(t, "h", "a", true);
	struct sg_token *b = sg_tokens_entry(t, "h", "b", true);
	CHECK(a && b);
	CHECK_EQ(sg_token_set(b, "tb", 1), 0);
	sg_token_set_fetching(a, true);
	/* a is the oldest, but a fetch runs for it: b goes. */
	struct sg_token *c = sg_tokens_entry(t, "h", "c", true);
	CHECK(c != NULL);
	CHECK(sg_tokens_entry(t, "h", "a", false) == a);
	CHECK(sg_tokens_entry(t, "h", "b", false) == NULL);
	/* Every entry fetching: no room. */
	sg_token_set_fetching(c, true);
	CHECK(sg_tokens_entry(t, "h", "d", true) == NULL);
	sg_token_set_fetching(a, false);
	CHECK(sg_tokens_entry(t, "h", "d", true) != NULL);
	CHECK(sg_tokens_entry(t, "h", "a", false) == NULL);
	sg_tokens_free(t);
}

TEST_MAIN()
