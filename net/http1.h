/* HTTP/1.1 for the registry client: a request writer and an incremental response parser.
 *
 * Both are pure: no sockets, no loop, no allocation.  The parser is a state machine fed with
 * whatever bytes the transport delivered (one byte or a whole buffer) and returns one event at
 * a time, like picohttpparser's -2 "partial" and h2o's INCOMPLETE, so it can be driven from a
 * completion callback and fuzzed as a plain function.
 *
 * Driving the parser (loop until NEED_MORE or DONE, not merely until the input is used up:
 * a bodyless response or a finished Content-Length body reports DONE with no input left):
 *
 *	sg_http1_parser_init(&p, is_head_request);
 *	for (;;) {
 *		size_t n;
 *		int ev = sg_http1_feed(&p, buf + off, len - off, &n, &body);
 *		off += n;
 *		if (ev < 0)                 -> error (p.err says why), the connection is unusable
 *		if (ev == SG_HTTP1_NEED_MORE) -> all input consumed: read more, call again
 *		if (ev == SG_HTTP1_HEAD)    -> status and headers are available
 *		if (ev == SG_HTTP1_BODY)    -> body.data/body.len point into buf (chunking removed)
 *		if (ev == SG_HTTP1_DONE)    -> complete; buf[off..] belongs to the next response
 *	}
 *	on EOF: sg_http1_finish(&p) -> SG_HTTP1_DONE for a read-until-close body, else an error.
 *
 * The status line and headers are copied into the parser's own bounded buffer, so header
 * values stay valid after the input buffer is reused, until the parser is re-initialized.
 * Body bytes are never copied.
 *
 * Errors are negative errno values: -EBADMSG malformed, -EMSGSIZE head or a line too large,
 * -E2BIG too many headers, -ERANGE a number overflows, -EPIPE EOF inside a message.
 * `err` holds a static description of the last error.
 */
#ifndef STARGZD_NET_HTTP1_H
#define STARGZD_NET_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds.  Registry responses carry 10-30 headers; S3/GCS redirects put 1-2 KiB URLs in
 * Location.  16 KiB and 100 headers are what nginx and picohttpparser users allow. */
#define SG_HTTP1_HEAD_MAX     16384
#define SG_HTTP1_HEADERS_MAX  100
/* A chunk-size line with extensions, and a trailer section, are bounded separately. */
#define SG_HTTP1_CHUNK_LINE_MAX 4096

/* ---- request writer ----
 *
 * Writes into a caller buffer.  Errors are sticky (as in BearSSL): check once at the end.
 * Any CR, LF or NUL in a method, target, name or value is refused (-EINVAL) so that a value
 * taken from a registry (a redirect Location, a token) can never inject a header. */
struct sg_http1_writer {
	char *buf;
	size_t cap;
	size_t len;
	int err;         /* 0, -ENOSPC or -EINVAL */
};

void sg_http1_req_begin(struct sg_http1_writer *w, char *buf, size_t cap, const char *method,
			const char *target, const char *host);
void sg_http1_req_header(struct sg_http1_writer *w, const char *name, const char *value);
/* A header whose value is given as (pointer, length). */
void sg_http1_req_header_n(struct sg_http1_writer *w, const char *name, const char *value,
			   size_t value_len);
/* "Range: bytes=a-b[,c-d...]" for inclusive ranges; first > last is refused (-EINVAL). */
struct sg_http1_byte_range {
	uint64_t first, last;
};
void sg_http1_req_ranges(struct sg_http1_writer *w, const struct sg_http1_byte_range *ranges,
			 size_t n);
/* Ends the head.  Returns the request length, or the sticky negative errno. */
int sg_http1_req_end(struct sg_http1_writer *w);

/* ---- response parser ---- */

enum sg_http1_event {
	SG_HTTP1_NEED_MORE = 0,   /* all input consumed, nothing to report yet */
	SG_HTTP1_HEAD = 1,        /* status line and headers parsed */
	SG_HTTP1_BODY = 2,        /* a slice of body bytes */
	SG_HTTP1_DONE = 3,        /* the response is complete */
};

enum sg_http1_framing {
	SG_HTTP1_BODY_NONE,       /* HEAD, 1xx, 204, 304, or Content-Length: 0 */
	SG_HTTP1_BODY_LENGTH,     /* Content-Length */
	SG_HTTP1_BODY_CHUNKED,
	SG_HTTP1_BODY_EOF,        /* until the peer closes */
};

struct sg_http1_slice {
	const uint8_t *data;
	size_t len;
};

struct sg_http1_header {
	uint16_t name_off, name_len;
	uint16_t value_off, value_len;
};

struct sg_http1_parser {
	/* Results, valid from SG_HTTP1_HEAD on. */
	int status;                   /* 100..999 */
	int minor_version;            /* 0 or 1 */
	bool keep_alive;              /* the connection may carry another request afterwards */
	enum sg_http1_framing framing;
	uint64_t content_length;      /* SG_HTTP1_BODY_LENGTH: the declared length */
	uint64_t body_received;       /* body bytes delivered so far (after de-chunking) */
	const char *err;              /* static text for the last error */

	/* Private. */
	bool head_request;
	uint8_t state;
	uint16_t head_max;
	uint16_t nheaders;
	uint16_t reason_off, reason_len;
	uint32_t head_len;
	uint32_t line_start;          /* start of the line being accumulated in head[] */
	uint32_t aux_len;             /* chunk-size line / trailer bytes seen */
	uint64_t remaining;           /* body bytes left in this message or chunk */
	struct sg_http1_header headers[SG_HTTP1_HEADERS_MAX];
	char head[SG_HTTP1_HEAD_MAX];
};

/* Prepares for one response.  head_request: the request was HEAD, so there is no body whatever
 * the headers say. */
void sg_http1_parser_init(struct sg_http1_parser *p, bool head_request);
/* Lowers the head size limit (for tests and paranoid callers); values above the built-in
 * maximum are clamped. */
void sg_http1_parser_set_head_max(struct sg_http1_parser *p, size_t head_max);

/* Feeds bytes.  Returns an sg_http1_event or a negative errno; *ret_consumed is always set.
 * After SG_HTTP1_DONE the parser consumes nothing more until re-initialized. */
int sg_http1_feed(struct sg_http1_parser *p, const uint8_t *in, size_t len, size_t *ret_consumed,
		  struct sg_http1_slice *ret_body);
/* The peer closed the connection.  Returns SG_HTTP1_DONE if that ends the message cleanly
 * (read-until-close body, or already done), or -EPIPE. */
int sg_http1_finish(struct sg_http1_parser *p);
bool sg_http1_done(const struct sg_http1_parser *p);

/* Header access after SG_HTTP1_HEAD.  Names compare case-insensitively.  Values have no
 * leading or trailing whitespace and are not NUL-terminated: use the returned length.
 * Returns NULL if absent.  With several headers of one name, `index` picks the n-th. */
const char *sg_http1_header(const struct sg_http1_parser *p, const char *name, size_t *ret_len);
const char *sg_http1_header_nth(const struct sg_http1_parser *p, const char *name, unsigned index,
				size_t *ret_len);
/* Copies a header value into buf as a C string.  Returns its length, -ENOENT if absent or
 * -ENOSPC if it does not fit. */
int sg_http1_header_copy(const struct sg_http1_parser *p, const char *name, char *buf, size_t cap);
unsigned sg_http1_header_count(const struct sg_http1_parser *p);
/* The i-th header in arrival order. */
void sg_http1_header_at(const struct sg_http1_parser *p, unsigned i, const char **ret_name,
			size_t *ret_name_len, const char **ret_value, size_t *ret_value_len);
const char *sg_http1_reason(const struct sg_http1_parser *p, size_t *ret_len);

/* ---- helpers on header values ---- */

/* Case-insensitive match of `token` in a comma-separated list (Connection, Transfer-Encoding). */
bool sg_http1_list_has_token(const char *value, size_t len, const char *token);

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

/* Decimal unsigned integer, digits only, no sign or spaces. 0, -EBADMSG or -ERANGE. */
int sg_http1_parse_u64(const char *s, size_t len, uint64_t *ret);

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
