/* HTTP/1.1 for the registry client: a request writer and an incremental response parser
 * (the byte-range answers a 206 carries are parsed by http1_ranges.h).
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
/* "Range: bytes=a-b[,c-d...]" for inclusive ranges; first > last is refused (-EINVAL).  A
 * range whose first is SG_HTTP1_SUFFIX asks for the blob's last `last` bytes ("bytes=-N"). */
struct sg_http1_byte_range {
	uint64_t first, last;
};
#define SG_HTTP1_SUFFIX UINT64_MAX
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

/* Decimal unsigned integer, digits only, no sign or spaces. 0, -EBADMSG or -ERANGE. */
int sg_http1_parse_u64(const char *s, size_t len, uint64_t *ret);

/* Whether (a, alen) is `b` ignoring ASCII case: header names, media types, parameters. */
bool sg_http1_name_eq(const char *a, size_t alen, const char *b);
/* RFC 9110 tchar: the characters of a token (header names, media type parameters). */
bool sg_http1_is_tchar(unsigned char c);

#endif
