/* The headers a C or C++ source names with #include and #include_next, read from its bytes: a
 * pure function over untrusted bytes (a layer's content), for speculation (fs/layer_spec.h).
 * No preprocessing: every directive is reported, also one inside #if 0 or a block comment
 * (a few small headers too many at worst), and one whose operand is a macro is skipped. */
#ifndef STARGZD_FS_C_INCLUDES_H
#define STARGZD_FS_C_INCLUDES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* At most this many names are reported per file (<bits/stdc++.h> names about 90). */
#define SG_C_INCLUDES_MAX 128
/* Longer names are skipped. */
#define SG_C_INCLUDE_NAME_MAX 255

struct sg_c_include {
	const char *name;   /* NUL-terminated at len; no NUL, newline or ".." component */
	size_t len;
	bool quoted;        /* "name": looked for beside the file first; <name>: in the search path */
	bool next;          /* #include_next: the search path after the file's own directory */
};

/* Calls cb(ctx, inc) for each directive in buf[0..len), in file order; inc->name points into
 * a buffer of the caller's stack, valid during the call.  A directive cut off at len is not
 * reported.  Returns how many were reported. */
unsigned sg_c_includes(const uint8_t *buf, size_t len,
		       void (*cb)(void *ctx, const struct sg_c_include *inc), void *ctx);

#endif
