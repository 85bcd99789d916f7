/* Byte-range answers of HTTP/1.1 (RFC 9110 section 14): the Content-Range of a 206 and the
 * multipart/byteranges body that answers a request for several ranges.
 *
 * Pure, like the response parser in http1.h: no sockets, no loop, no allocation.  The
 * multipart parser is fed the body slices the response parser returns and reports one event
 * at a time, so it can be driven from a completion callback and fuzzed as a plain function.
 *
 * Errors are negative errno values: -EBADMSG malformed, -EMSGSIZE a line too long, -E2BIG too
 * many part headers, -EPIPE the body ended inside the multipart document.  `err` of a
 * multipart parser holds a static description of its last error.
 */
#ifndef STARGZD_NET_HTTP1_RANGES_H
#define STARGZD_NET_HTTP1_RANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http1.h"

/* ---- Content-Range ---- */

/* Content-Range: "bytes FIRST-LAST/TOTAL", "bytes FIRST-LAST/" "*" (unknown total) or
 * "bytes " "*" "/TOTAL" (unsatisfied range; the quotes only keep this comment open).  total is
 * SG_HTTP1_RANGE_UNKNOWN for an unknown total.  An unsatisfied range has unsatisfied = true
 * and first = last = 0.  Returns 0 or -EBADMSG. */
#define SG_HTTP1_RANGE_UNKNOWN UINT64_MAX
struct sg_http1_range {
	uint64_t first, last, total;
	bool unsatisfied;
};
int sg_http1_parse_content_range(const char *value, size_t len, struct sg_http1_range *ret);

/* ---- multipart/byteranges ----
 *
 * The body of a 206 answering a multi-range request.  Each part carries its own
 * Content-Range, and its data length follows from it, so the parser counts bytes instead of
 * searching for the boundary inside blob data (which would be both slower and ambiguous).
 * Feed it the body slices the response parser returns. */

#define SG_MULTIPART_BOUNDARY_MAX 70    /* RFC 2046 */
#define SG_MULTIPART_LINE_MAX     1024
#define SG_MULTIPART_PART_HEADERS_MAX 32

enum sg_multipart_event {
	SG_MULTIPART_NEED_MORE = 0,
	SG_MULTIPART_PART = 1,        /* a new part begins: `range` is set */
	SG_MULTIPART_DATA = 2,        /* data of the current part; offset = absolute blob offset */
	SG_MULTIPART_DONE = 3,        /* closing delimiter seen */
};

struct sg_multipart {
	struct sg_http1_range range;  /* of the current part */
	uint64_t data_offset;         /* SG_MULTIPART_DATA: blob offset of the slice's first byte */
	unsigned parts;               /* parts started so far */
	const char *err;

	/* Private. */
	uint8_t state;
	bool have_range;
	uint8_t boundary_len;
	uint16_t line_len;
	uint16_t part_headers;
	uint16_t blank_lines;
	uint64_t remaining;
	char boundary[SG_MULTIPART_BOUNDARY_MAX + 1];
	char line[SG_MULTIPART_LINE_MAX];
};

/* Extracts the boundary parameter from a Content-Type value "multipart/byteranges;
 * boundary=..." (token or quoted string).  Returns its length, -ENOENT if the media type is
 * not multipart/byteranges or has no boundary, -EBADMSG if malformed. */
int sg_multipart_boundary(const char *content_type, size_t len, char *buf, size_t cap);
/* Returns 0 or -EINVAL for an empty or too-long boundary. */
int sg_multipart_init(struct sg_multipart *m, const char *boundary, size_t len);
int sg_multipart_feed(struct sg_multipart *m, const uint8_t *in, size_t len, size_t *ret_consumed,
		      struct sg_http1_slice *ret_data);
/* The body ended.  Returns SG_MULTIPART_DONE if the closing delimiter was seen, else -EPIPE. */
int sg_multipart_finish(struct sg_multipart *m);

#endif
