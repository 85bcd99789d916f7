/* The error-message convention (daemon/core/error.c). */
#include "daemon/core/error.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <string.h>

TEST(set_returns_the_errno_and_fills_the_message)
{
	struct sg_error err = { 0 };

	CHECK_EQ(sg_error_set(&err, -EIO, "blob %s: HTTP %d", "sha256:ab", 404), -EIO);
	CHECK_EQ(strcmp(err.msg, "blob sha256:ab: HTTP 404"), 0);
	CHECK_EQ(err.code, 0);
	CHECK_EQ(sg_error_setc(&err, -EBADMSG, 7, "line 7: bad key"), -EBADMSG);
	CHECK_EQ(err.code, 7);
	CHECK_EQ(sg_error_set(NULL, -ENOENT, "nobody listens"), -ENOENT);
	sg_error_clear(&err);
	CHECK_EQ(err.code, 0);
	CHECK_EQ(err.msg[0], '\0');
}

TEST(prefix_adds_context_and_never_overflows)
{
	struct sg_error err = { 0 };
	char big[2000];

	sg_error_prefix(&err, "layer %s", "sha256:cd");
	CHECK_EQ(strcmp(err.msg, "layer sha256:cd"), 0);
	sg_error_set(&err, -EIO, "HTTP 404");
	sg_error_prefix(&err, "layer %s", "sha256:cd");
	CHECK_EQ(strcmp(err.msg, "layer sha256:cd: HTTP 404"), 0);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	sg_error_prefix(&err, "%s", big);
	CHECK_EQ(strlen(err.msg), (size_t)SG_ERROR_MSG_MAX - 1);
	sg_error_set(&err, -EIO, "%s", big);
	CHECK_EQ(strlen(err.msg), (size_t)SG_ERROR_MSG_MAX - 1);
	sg_error_prefix(&err, "ctx");
	CHECK_EQ(strncmp(err.msg, "ctx: xxx", 8), 0);
	CHECK_EQ(strlen(err.msg), (size_t)SG_ERROR_MSG_MAX - 1);
	sg_error_prefix(NULL, "ctx");
}

TEST_MAIN()
