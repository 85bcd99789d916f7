/* The converter's growable byte buffer (tools/stargzify/sbuf.c). */
#include "tools/stargzify/sbuf.h"
#include "tests/unit/test.h"

#include <string.h>

TEST(appends_bytes_zeros_strings_and_formats)
{
	struct sbuf b = { 0 };

	sb_put(&b, "ab", 2);
	sb_zero(&b, 3);
	sb_puts(&b, "cd");
	sb_printf(&b, "[%d:%s]", 42, "x");
	sb_put(&b, NULL, 0);
	sb_zero(&b, 0);
	CHECK_EQ(b.len, 13);
	CHECK_MEM(b.p, "ab\0\0\0cd[42:x]", 13);
	CHECK(!b.oom);
	sb_free(&b);
	CHECK(b.p == NULL);
	CHECK_EQ(b.len, 0);
	CHECK_EQ(b.cap, 0);
}

TEST(grows_from_4k_by_doubling_and_keeps_the_content)
{
	struct sbuf b = { 0 };
	char block[1000];

	CHECK(sb_reserve(&b, 1));
	CHECK_EQ(b.cap, 4096);
	for (int i = 0; i < 10; i++) {
		memset(block, 'a' + i, sizeof(block));
		sb_put(&b, block, sizeof(block));
	}
	CHECK_EQ(b.len, 10000);
	CHECK_EQ(b.cap, 16384);
	for (int i = 0; i < 10; i++)
		CHECK(b.p[i * 1000] == 'a' + i && b.p[i * 1000 + 999] == 'a' + i);
	CHECK(sb_reserve(&b, 6384));   /* exactly fits: no growth */
	CHECK_EQ(b.cap, 16384);
	sb_free(&b);
}

TEST(printf_output_is_cut_at_255_bytes)
{
	struct sbuf b = { 0 };
	char big[400];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	sb_printf(&b, "%s", big);
	CHECK_EQ(b.len, 255);
	sb_printf(&b, "%s", "");   /* nothing printed, nothing added */
	CHECK_EQ(b.len, 255);
	sb_free(&b);
}

TEST(after_a_failed_allocation_every_append_is_ignored)
{
	struct sbuf b = { 0 };

	sb_puts(&b, "kept");
	b.oom = true;   /* what a failed realloc leaves */
	sb_puts(&b, "lost");
	sb_zero(&b, 10);
	sb_printf(&b, "%d", 1);
	CHECK(!sb_reserve(&b, 1));
	CHECK_EQ(b.len, 4);
	CHECK_MEM(b.p, "kept", 4);
	sb_free(&b);
	CHECK(!b.oom);
}

TEST_MAIN()
