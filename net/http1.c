/* HTTP/1.1 request writer and incremental response parser.  See http1.h. */
#include "net/http1.h"
#include "daemon/core/hex.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- small character helpers ---- */

static inline char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

bool sg_http1_name_eq(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

bool sg_http1_is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

int sg_http1_parse_u64(const char *s, size_t len, uint64_t *ret)
{
	uint64_t v = 0;

	if (len == 0)
		return -EBADMSG;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EBADMSG;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

/* ---- request writer ---- */

static bool has_ctl(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return true;
	return false;
}

static void w_put(struct sg_http1_writer *w, const char *s, size_t len)
{
	if (w->err)
		return;
	if (w->cap - w->len < len) {
		w->err = -ENOSPC;
		return;
	}
	memcpy(w->buf + w->len, s, len);
	w->len += len;
}

static void w_puts(struct sg_http1_writer *w, const char *s)
{
	w_put(w, s, strlen(s));
}

void sg_http1_req_begin(struct sg_http1_writer *w, char *buf, size_t cap, const char *method,
			const char *target, const char *host)
{
	*w = (struct sg_http1_writer){ .buf = buf, .cap = cap };
	if (!method || !target || !host || !*method || !*target) {
		w->err = -EINVAL;
		return;
	}
	for (const char *m = method; *m; m++)
		if (!sg_http1_is_tchar((unsigned char)*m)) {
			w->err = -EINVAL;
			return;
		}
	/* A request target never contains spaces or controls; refuse rather than escape, the
	 * caller builds targets from validated references. */
	for (const char *t = target; *t; t++)
		if ((unsigned char)*t <= ' ' || *t == 0x7f) {
			w->err = -EINVAL;
			return;
		}
	w_puts(w, method);
	w_put(w, " ", 1);
	w_puts(w, target);
	w_put(w, " HTTP/1.1\r\n", 11);
	if (*host)
		sg_http1_req_header(w, "Host", host);
}

void sg_http1_req_header_n(struct sg_http1_writer *w, const char *name, const char *value,
			   size_t value_len)
{
	if (w->err)
		return;
	if (!name || !*name || (!value && value_len)) {
		w->err = -EINVAL;
		return;
	}
	for (const char *n = name; *n; n++)
		if (!sg_http1_is_tchar((unsigned char)*n)) {
			w->err = -EINVAL;
			return;
		}
	if (has_ctl(value, value_len)) {
		w->err = -EINVAL;
		return;
	}
	w_puts(w, name);
	w_put(w, ": ", 2);
	w_put(w, value, value_len);
	w_put(w, "\r\n", 2);
}

void sg_http1_req_header(struct sg_http1_writer *w, const char *name, const char *value)
{
	sg_http1_req_header_n(w, name, value, value ? strlen(value) : 0);
}

void sg_http1_req_ranges(struct sg_http1_writer *w, const struct sg_http1_byte_range *ranges,
			 size_t n)
{
	char tmp[48];

	if (w->err)
		return;
	if (n == 0) {
		w->err = -EINVAL;
		return;
	}
	w_puts(w, "Range: bytes=");
	for (size_t i = 0; i < n; i++) {
		int k;
		if (ranges[i].first == SG_HTTP1_SUFFIX && ranges[i].last > 0) {
			k = snprintf(tmp, sizeof(tmp), "%s-%" PRIu64, i ? "," : "", ranges[i].last);
			w_put(w, tmp, (size_t)k);
			continue;
		}
		if (ranges[i].first > ranges[i].last) {
			w->err = -EINVAL;
			return;
		}
		k = snprintf(tmp, sizeof(tmp), "%s%" PRIu64 "-%" PRIu64, i ? "," : "",
			     ranges[i].first, ranges[i].last);
		w_put(w, tmp, (size_t)k);
	}
	w_put(w, "\r\n", 2);
}

int sg_http1_req_end(struct sg_http1_writer *w)
{
	w_put(w, "\r\n", 2);
	if (w->err)
		return w->err;
	if (w->len > INT32_MAX)
		return -EOVERFLOW;
	return (int)w->len;
}

/* ---- response parser ---- */

enum {
	ST_HEAD,
	ST_BODY_NONE,
	ST_BODY_LENGTH,
	ST_BODY_EOF,
	ST_CHUNK_SIZE_FIRST,   /* expecting the first hex digit of a chunk size */
	ST_CHUNK_SIZE,
	ST_CHUNK_EXT,          /* skipping chunk extensions up to LF */
	ST_CHUNK_SIZE_LF,      /* saw CR after the size line */
	ST_CHUNK_DATA,
	ST_CHUNK_DATA_CR,      /* expecting CRLF after chunk data */
	ST_CHUNK_DATA_LF,
	ST_TRAILER,
	ST_DONE,
	ST_ERROR,
};

/* How many stray empty lines before a status line are forgiven (some servers send an extra
 * CRLF after a body). */
#define LEADING_EMPTY_LINES_MAX 4

void sg_http1_parser_init(struct sg_http1_parser *p, bool head_request)
{
	/* The 16 KiB head buffer is not cleared: it is only ever read below head_len. */
	p->status = 0;
	p->minor_version = 0;
	p->keep_alive = false;
	p->framing = SG_HTTP1_BODY_NONE;
	p->content_length = 0;
	p->body_received = 0;
	p->err = NULL;
	p->head_request = head_request;
	p->state = ST_HEAD;
	p->head_max = SG_HTTP1_HEAD_MAX;
	p->nheaders = 0;
	p->reason_off = p->reason_len = 0;
	p->head_len = 0;
	p->line_start = 0;
	p->aux_len = 0;
	p->remaining = 0;
}

void sg_http1_parser_set_head_max(struct sg_http1_parser *p, size_t head_max)
{
	if (head_max > SG_HTTP1_HEAD_MAX)
		head_max = SG_HTTP1_HEAD_MAX;
	if (head_max < 16)
		head_max = 16;
	p->head_max = (uint16_t)head_max;
}

bool sg_http1_done(const struct sg_http1_parser *p)
{
	return p->state == ST_DONE;
}

static int fail(struct sg_http1_parser *p, int err, const char *why)
{
	p->state = ST_ERROR;
	p->err = why;
	return err;
}

/* "HTTP/1.1 200 OK" (line without its CRLF). */
static int parse_status_line(struct sg_http1_parser *p, uint32_t off, uint32_t len)
{
	const char *l = p->head + off;

	if (len < 12 || memcmp(l, "HTTP/1.", 7) != 0)
		return fail(p, -EBADMSG, "malformed status line");
	if (l[7] != '0' && l[7] != '1')
		return fail(p, -EBADMSG, "unsupported HTTP version");
	p->minor_version = l[7] - '0';
	if (l[8] != ' ')
		return fail(p, -EBADMSG, "malformed status line");
	for (int i = 9; i < 12; i++)
		if (l[i] < '0' || l[i] > '9')
			return fail(p, -EBADMSG, "malformed status code");
	p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	if (p->status < 100)
		return fail(p, -EBADMSG, "malformed status code");
	if (len == 12) {
		p->reason_off = (uint16_t)(off + 12);
		p->reason_len = 0;
		return 0;
	}
	if (l[12] != ' ')
		return fail(p, -EBADMSG, "malformed status line");
	for (uint32_t i = 13; i < len; i++) {
		unsigned char c = (unsigned char)l[i];
		if ((c < ' ' && c != '\t') || c == 0x7f)
			return fail(p, -EBADMSG, "control character in reason phrase");
	}
	p->reason_off = (uint16_t)(off + 13);
	p->reason_len = (uint16_t)(len - 13);
	return 0;
}

static int parse_header_line(struct sg_http1_parser *p, uint32_t off, uint32_t len)
{
	char *l = p->head + off;
	uint32_t i = 0, vs, ve;

	if (is_ows(l[0])) {
		/* obs-fold: RFC 9112 5.2 asks a user agent to replace it with spaces.  The previous
		 * line's CRLF sits right before this one in head[], so blank it and extend the
		 * previous value over it. */
		if (p->nheaders == 0)
			return fail(p, -EBADMSG, "continuation line before any header");
		struct sg_http1_header *h = &p->headers[p->nheaders - 1];
		for (uint32_t k = h->value_off + h->value_len; k < off; k++)
			p->head[k] = ' ';
		for (uint32_t k = 0; k < len && is_ows(l[k]); k++)
			l[k] = ' ';
		ve = len;
		while (ve > 0 && is_ows(l[ve - 1]))
			ve--;
		for (uint32_t k = 0; k < ve; k++) {
			unsigned char c = (unsigned char)l[k];
			if ((c < ' ' && c != '\t') || c == 0x7f)
				return fail(p, -EBADMSG, "control character in header value");
		}
		if (ve > 0) {
			if (h->value_len == 0) {
				/* The value started empty: start it at the first non-blank byte. */
				uint32_t k = 0;
				while (is_ows(l[k]))
					k++;
				h->value_off = (uint16_t)(off + k);
			}
			h->value_len = (uint16_t)(off + ve - h->value_off);
		}
		return 0;
	}
	while (i < len && sg_http1_is_tchar((unsigned char)l[i]))
		i++;
	if (i == 0 || i == len || l[i] != ':')
		return fail(p, -EBADMSG, "malformed header line");
	if (p->nheaders >= SG_HTTP1_HEADERS_MAX)
		return fail(p, -E2BIG, "too many headers");
	vs = i + 1;
	while (vs < len && is_ows(l[vs]))
		vs++;
	ve = len;
	while (ve > vs && is_ows(l[ve - 1]))
		ve--;
	for (uint32_t k = vs; k < ve; k++) {
		unsigned char c = (unsigned char)l[k];
		if ((c < ' ' && c != '\t') || c == 0x7f)
			return fail(p, -EBADMSG, "control character in header value");
	}
	p->headers[p->nheaders++] = (struct sg_http1_header){
		.name_off = (uint16_t)off,
		.name_len = (uint16_t)i,
		.value_off = (uint16_t)(off + vs),
		.value_len = (uint16_t)(ve - vs),
	};
	return 0;
}

bool sg_http1_list_has_token(const char *value, size_t len, const char *token)
{
	size_t i = 0;

	while (i < len) {
		while (i < len && (is_ows(value[i]) || value[i] == ','))
			i++;
		size_t s = i;
		while (i < len && value[i] != ',')
			i++;
		size_t e = i;
		while (e > s && is_ows(value[e - 1]))
			e--;
		/* Parameters (";q=...") are not part of the token. */
		size_t semi = s;
		while (semi < e && value[semi] != ';')
			semi++;
		while (semi > s && is_ows(value[semi - 1]))
			semi--;
		if (semi > s && sg_http1_name_eq(value + s, semi - s, token))
			return true;
	}
	return false;
}

/* The last coding of a Transfer-Encoding list (over all its header lines). */
static bool last_coding_is_chunked(const struct sg_http1_parser *p)
{
	const char *v, *last = NULL;
	size_t vlen, last_len = 0;

	for (unsigned i = 0; (v = sg_http1_header_nth(p, "transfer-encoding", i, &vlen)); i++) {
		if (vlen) {
			last = v;
			last_len = vlen;
		}
	}
	if (!last)
		return false;
	size_t e = last_len;
	while (e > 0 && (is_ows(last[e - 1]) || last[e - 1] == ','))
		e--;
	size_t s = e;
	while (s > 0 && last[s - 1] != ',')
		s--;
	while (s < e && is_ows(last[s]))
		s++;
	return sg_http1_name_eq(last + s, e - s, "chunked");
}

/* Decides framing and persistence once the head is complete (RFC 9112 6.3). */
static int head_complete(struct sg_http1_parser *p)
{
	const char *v;
	size_t vlen;
	bool have_cl = false, have_te = false;
	uint64_t cl = 0;

	for (unsigned i = 0; (v = sg_http1_header_nth(p, "content-length", i, &vlen)); i++) {
		uint64_t n;
		int r = sg_http1_parse_u64(v, vlen, &n);
		if (r == -ERANGE)
			return fail(p, -ERANGE, "Content-Length too large");
		if (r < 0)
			return fail(p, -EBADMSG, "malformed Content-Length");
		if (have_cl && n != cl)
			return fail(p, -EBADMSG, "conflicting Content-Length headers");
		have_cl = true;
		cl = n;
	}
	have_te = sg_http1_header(p, "transfer-encoding", &vlen) != NULL;

	if (p->minor_version >= 1)
		p->keep_alive = true;
	for (unsigned i = 0; (v = sg_http1_header_nth(p, "connection", i, &vlen)); i++) {
		if (sg_http1_list_has_token(v, vlen, "close"))
			p->keep_alive = false;
		else if (p->minor_version == 0 && sg_http1_list_has_token(v, vlen, "keep-alive"))
			p->keep_alive = true;
	}
	if (have_cl)
		p->content_length = cl;

	if (p->head_request || p->status == 204 || p->status == 304) {
		p->framing = SG_HTTP1_BODY_NONE;
	} else if (have_te) {
		/* Transfer-Encoding overrides Content-Length; a message with both may be an attempt
		 * at smuggling, so the connection is not reused afterwards. */
		if (have_cl)
			p->keep_alive = false;
		if (last_coding_is_chunked(p)) {
			p->framing = SG_HTTP1_BODY_CHUNKED;
		} else {
			p->framing = SG_HTTP1_BODY_EOF;
			p->keep_alive = false;
		}
	} else if (have_cl) {
		p->framing = cl ? SG_HTTP1_BODY_LENGTH : SG_HTTP1_BODY_NONE;
	} else {
		p->framing = SG_HTTP1_BODY_EOF;
		p->keep_alive = false;
	}
	switch (p->framing) {
	case SG_HTTP1_BODY_NONE:
		p->state = ST_BODY_NONE;
		break;
	case SG_HTTP1_BODY_LENGTH:
		p->state = ST_BODY_LENGTH;
		p->remaining = cl;
		break;
	case SG_HTTP1_BODY_CHUNKED:
		p->state = ST_CHUNK_SIZE_FIRST;
		p->remaining = 0;
		p->aux_len = 0;
		break;
	case SG_HTTP1_BODY_EOF:
		p->state = ST_BODY_EOF;
		break;
	}
	return SG_HTTP1_HEAD;
}

/* Resets the head state for the next head (after an interim 1xx response). */
static void head_reset(struct sg_http1_parser *p)
{
	p->status = 0;
	p->nheaders = 0;
	p->head_len = 0;
	p->line_start = 0;
	p->reason_off = p->reason_len = 0;
	p->aux_len = 0;
}

/* One complete line [line_start, head_len) including its LF. */
static int head_line(struct sg_http1_parser *p)
{
	uint32_t off = p->line_start;
	uint32_t len = p->head_len - off - 1;   /* without LF */
	int r;

	if (len > 0 && p->head[off + len - 1] == '\r')
		len--;
	for (uint32_t k = 0; k < len; k++)
		if (p->head[off + k] == '\r' || p->head[off + k] == '\0')
			return fail(p, -EBADMSG, "stray CR or NUL in head");

	if (p->status == 0) {
		if (len == 0) {
			/* Forgive a few empty lines before the status line, then drop them. */
			if (++p->aux_len > LEADING_EMPTY_LINES_MAX)
				return fail(p, -EBADMSG, "empty lines instead of a status line");
			p->head_len = p->line_start = 0;
			return 0;
		}
		r = parse_status_line(p, off, len);
		if (r < 0)
			return r;
		p->line_start = p->head_len;
		return 0;
	}
	if (len == 0) {
		if (p->status < 200) {
			if (p->status == 101)
				return fail(p, -EBADMSG, "unexpected protocol switch");
			/* Interim response (100 Continue, 103 Early Hints): skip it. */
			head_reset(p);
			return 0;
		}
		return head_complete(p);
	}
	r = parse_header_line(p, off, len);
	if (r < 0)
		return r;
	p->line_start = p->head_len;
	return 0;
}

static int feed_head(struct sg_http1_parser *p, const uint8_t *in, size_t len, size_t *used)
{
	size_t i = 0;

	while (i < len) {
		const uint8_t *lf = memchr(in + i, '\n', len - i);
		size_t take = lf ? (size_t)(lf - (in + i)) + 1 : len - i;
		if (take > (size_t)p->head_max - p->head_len) {
			*used = i;
			return fail(p, -EMSGSIZE, "response head too large");
		}
		memcpy(p->head + p->head_len, in + i, take);
		p->head_len += (uint32_t)take;
		i += take;
		if (!lf)
			break;
		int r = head_line(p);
		if (r != 0) {
			*used = i;
			return r;
		}
	}
	*used = i;
	return SG_HTTP1_NEED_MORE;
}

static int body_slice(struct sg_http1_parser *p, const uint8_t *in, size_t n,
		      struct sg_http1_slice *body)
{
	body->data = in;
	body->len = n;
	p->body_received += n;
	return SG_HTTP1_BODY;
}

int sg_http1_feed(struct sg_http1_parser *p, const uint8_t *in, size_t len, size_t *ret_consumed,
		  struct sg_http1_slice *ret_body)
{
	size_t i = 0;
	int r;

	*ret_consumed = 0;
	if (ret_body)
		*ret_body = (struct sg_http1_slice){ 0 };
	for (;;) {
		switch (p->state) {
		case ST_HEAD: {
			size_t used = 0;
			r = feed_head(p, in + i, len - i, &used);
			i += used;
			if (r != SG_HTTP1_NEED_MORE) {
				*ret_consumed = i;
				return r;
			}
			*ret_consumed = i;
			return SG_HTTP1_NEED_MORE;
		}
		case ST_BODY_NONE:
			p->state = ST_DONE;
			*ret_consumed = i;
			return SG_HTTP1_DONE;
		case ST_BODY_LENGTH: {
			if (p->remaining == 0) {
				p->state = ST_DONE;
				*ret_consumed = i;
				return SG_HTTP1_DONE;
			}
			size_t n = len - i;
			if (n == 0) {
				*ret_consumed = i;
				return SG_HTTP1_NEED_MORE;
			}
			if (n > p->remaining)
				n = (size_t)p->remaining;
			p->remaining -= n;
			*ret_consumed = i + n;
			if (!ret_body)
				return fail(p, -EINVAL, "no body slice given");
			return body_slice(p, in + i, n, ret_body);
		}
		case ST_BODY_EOF: {
			size_t n = len - i;
			*ret_consumed = len;
			if (n == 0)
				return SG_HTTP1_NEED_MORE;
			if (!ret_body)
				return fail(p, -EINVAL, "no body slice given");
			return body_slice(p, in + i, n, ret_body);
		}
		case ST_CHUNK_DATA: {
			size_t n = len - i;
			if (n == 0) {
				*ret_consumed = i;
				return SG_HTTP1_NEED_MORE;
			}
			if (n > p->remaining)
				n = (size_t)p->remaining;
			p->remaining -= n;
			if (p->remaining == 0)
				p->state = ST_CHUNK_DATA_CR;
			*ret_consumed = i + n;
			if (!ret_body)
				return fail(p, -EINVAL, "no body slice given");
			return body_slice(p, in + i, n, ret_body);
		}
		case ST_DONE:
			*ret_consumed = i;
			return SG_HTTP1_DONE;
		case ST_ERROR:
			*ret_consumed = i;
			return -EBADMSG;
		default:
			break;
		}

		/* Byte-at-a-time states of the chunked framing: short lines between data runs. */
		if (i == len) {
			*ret_consumed = i;
			return SG_HTTP1_NEED_MORE;
		}
		unsigned char c = in[i++];
		switch (p->state) {
		case ST_CHUNK_SIZE_FIRST:
		case ST_CHUNK_SIZE: {
			int h = sg_hexval(c);
			if (++p->aux_len > SG_HTTP1_CHUNK_LINE_MAX)
				goto line_too_long;
			if (h >= 0) {
				if (p->remaining > (UINT64_MAX >> 4)) {
					*ret_consumed = i;
					return fail(p, -ERANGE, "chunk size too large");
				}
				p->remaining = (p->remaining << 4) | (uint64_t)h;
				p->state = ST_CHUNK_SIZE;
				break;
			}
			if (p->state == ST_CHUNK_SIZE_FIRST)
				goto bad_chunk;
			if (c == ';' || is_ows((char)c))
				p->state = ST_CHUNK_EXT;
			else if (c == '\r')
				p->state = ST_CHUNK_SIZE_LF;
			else if (c == '\n')
				goto size_line_done;
			else
				goto bad_chunk;
			break;
		}
		case ST_CHUNK_EXT:
			if (++p->aux_len > SG_HTTP1_CHUNK_LINE_MAX)
				goto line_too_long;
			if (c == '\n')
				goto size_line_done;
			if (c == '\0')
				goto bad_chunk;
			break;
		case ST_CHUNK_SIZE_LF:
			if (c != '\n')
				goto bad_chunk;
		size_line_done:
			p->aux_len = 0;
			if (p->remaining == 0) {
				/* Last chunk; a trailer section follows.  `remaining` counts trailer
				 * bytes from here on and aux_len the current trailer line. */
				p->state = ST_TRAILER;
			} else {
				p->state = ST_CHUNK_DATA;
			}
			break;
		case ST_CHUNK_DATA_CR:
			if (c == '\r')
				p->state = ST_CHUNK_DATA_LF;
			else if (c == '\n')
				goto next_chunk;
			else
				goto bad_chunk;
			break;
		case ST_CHUNK_DATA_LF:
			if (c != '\n')
				goto bad_chunk;
		next_chunk:
			p->state = ST_CHUNK_SIZE_FIRST;
			p->remaining = 0;
			p->aux_len = 0;
			break;
		case ST_TRAILER:
			if (++p->remaining > p->head_max) {
				*ret_consumed = i;
				return fail(p, -EMSGSIZE, "trailer section too large");
			}
			if (c == '\n') {
				if (p->aux_len == 0) {
					p->state = ST_DONE;
					*ret_consumed = i;
					return SG_HTTP1_DONE;
				}
				p->aux_len = 0;
			} else if (c != '\r') {
				if (c == '\0') {
					*ret_consumed = i;
					return fail(p, -EBADMSG, "NUL in trailer");
				}
				p->aux_len++;
			}
			break;
		default:
			*ret_consumed = i;
			return fail(p, -EBADMSG, "internal parser state");
		}
		continue;
	line_too_long:
		*ret_consumed = i;
		return fail(p, -EMSGSIZE, "chunk size line too long");
	bad_chunk:
		*ret_consumed = i;
		return fail(p, -EBADMSG, "malformed chunked encoding");
	}
}

int sg_http1_finish(struct sg_http1_parser *p)
{
	switch (p->state) {
	case ST_DONE:
		return SG_HTTP1_DONE;
	case ST_BODY_EOF:
	case ST_BODY_NONE:
		p->state = ST_DONE;
		return SG_HTTP1_DONE;
	case ST_BODY_LENGTH:
		if (p->remaining == 0) {
			p->state = ST_DONE;
			return SG_HTTP1_DONE;
		}
		return fail(p, -EPIPE, "connection closed before the end of the body");
	case ST_HEAD:
		return fail(p, -EPIPE, "connection closed before a complete response head");
	case ST_ERROR:
		return -EBADMSG;
	default:
		return fail(p, -EPIPE, "connection closed inside a chunked body");
	}
}

/* ---- header access ---- */

const char *sg_http1_header_nth(const struct sg_http1_parser *p, const char *name, unsigned index,
				size_t *ret_len)
{
	for (unsigned i = 0; i < p->nheaders; i++) {
		const struct sg_http1_header *h = &p->headers[i];
		if (!sg_http1_name_eq(p->head + h->name_off, h->name_len, name))
			continue;
		if (index-- > 0)
			continue;
		if (ret_len)
			*ret_len = h->value_len;
		return p->head + h->value_off;
	}
	return NULL;
}

const char *sg_http1_header(const struct sg_http1_parser *p, const char *name, size_t *ret_len)
{
	return sg_http1_header_nth(p, name, 0, ret_len);
}

int sg_http1_header_copy(const struct sg_http1_parser *p, const char *name, char *buf, size_t cap)
{
	size_t len;
	const char *v = sg_http1_header(p, name, &len);

	if (!v)
		return -ENOENT;
	if (len + 1 > cap)
		return -ENOSPC;
	memcpy(buf, v, len);
	buf[len] = '\0';
	return (int)len;
}

unsigned sg_http1_header_count(const struct sg_http1_parser *p)
{
	return p->state == ST_HEAD ? 0 : p->nheaders;
}

void sg_http1_header_at(const struct sg_http1_parser *p, unsigned i, const char **ret_name,
			size_t *ret_name_len, const char **ret_value, size_t *ret_value_len)
{
	const struct sg_http1_header *h = &p->headers[i];

	*ret_name = p->head + h->name_off;
	*ret_name_len = h->name_len;
	*ret_value = p->head + h->value_off;
	*ret_value_len = h->value_len;
}

const char *sg_http1_reason(const struct sg_http1_parser *p, size_t *ret_len)
{
	*ret_len = p->reason_len;
	return p->head + p->reason_off;
}
