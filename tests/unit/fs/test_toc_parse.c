/* fs/toc_parse.c: TOC JSON, its grammar and its scalars (numbers, times, digests, base64),
 * and the refusals of malformed JSON with their specific error codes. */
#include <errno.h>
#include <stdio.h>

#include "fs/estargz.h"
#include "fs/toc.h"
#include "fs/toc_parse.h"
#include "tests/helpers/toc_hostile.h"
#include "tests/unit/test.h"

static const struct sg_esgz_options skip = { .skip_verify = true };

TEST(hostile_numbers)
{
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":9223372036854775808,\"offset\":1}",
		      SG_ESGZ_E_OVERFLOW);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":99999999999999999999999}",
		      SG_ESGZ_E_OVERFLOW);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":18446744073709551615}",
		      SG_ESGZ_E_OVERFLOW);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":4,\"offset\":1,"
		      "\"innerOffset\":18446744073709551614}", SG_ESGZ_E_OVERFLOW);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"fifo\",\"uid\":4294967296}", SG_ESGZ_E_OVERFLOW);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"fifo\",\"uid\":-1}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"fifo\",\"mode\":1.5}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"fifo\",\"modtime\":\"yesterday\"}", SG_ESGZ_E_SCHEMA);
}

TEST(hostile_json_and_schema)
{
	CHECK_HOSTILE("{\"name\":\"a\",", SG_ESGZ_E_JSON);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"socket\"}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\"}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"type\":\"dir\"}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":5,\"type\":\"dir\"}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"dir\",\"name\":\"b\"}", SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":1,\"digest\":\"md5:00\"}",
		      SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"reg\",\"size\":1,\"chunkDigest\":\"sha256:"
		      "zz00000000000000000000000000000000000000000000000000000000000000\"}",
		      SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("{\"name\":\"a\",\"type\":\"dir\",\"xattrs\":{\"user.x\":\"!!!\"}}",
		      SG_ESGZ_E_SCHEMA);
	CHECK_HOSTILE("[1,2]", SG_ESGZ_E_SCHEMA);
	/* Unknown fields (even nested) are ignored, like the reference. */
	CHECK_EQ(hostile("{\"name\":\"a\",\"type\":\"dir\",\"NumLink\":3,\"x\":{\"y\":[1,{}]}}",
			 &(struct sg_error){ 0 }), 0);

	struct sg_error err;
	struct sg_toc *toc = NULL;
	CHECK_EQ(sg_toc_parse_json("{\"version\":1}", 13, 100, &skip, &toc, &err), -EINVAL);
	CHECK_EQ(err.code, SG_ESGZ_E_SCHEMA);
	CHECK_EQ(sg_toc_parse_json("{\"entries\":{}}", 14, 100, &skip, &toc, &err), -EINVAL);
	CHECK_EQ(err.code, SG_ESGZ_E_SCHEMA);
	CHECK_EQ(sg_toc_parse_json("{\"entries\":[]} x", 16, 100, &skip, &toc, &err), -EBADMSG);
	CHECK_EQ(err.code, SG_ESGZ_E_JSON);
	struct sg_esgz_options lim = { .skip_verify = true, .max_entries = 2 };
	const char *three = "{\"entries\":[{\"name\":\"a\",\"type\":\"dir\"},{\"name\":\"b\",\"type\":\"dir\"},"
			    "{\"name\":\"c\",\"type\":\"dir\"}]}";
	CHECK_EQ(sg_toc_parse_json(three, strlen(three), 100, &lim, &toc, &err), -E2BIG);
	CHECK_EQ(err.code, SG_ESGZ_E_LIMIT);
}

TEST_MAIN()
