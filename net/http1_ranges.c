/* Byte-range answers: Content-Range and multipart/byteranges.  See http1_ranges.h. */
#include "net/http1_ranges.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* ---- Content-Range ---- */

int sg_http1_parse_content_range(const char *v, size_t len, struct sg_http1_range *ret)
{
	struct sg_http1_range r = { 0 };
	size_t i = 0, s;

	/* The unit is case-insensitive; whitespace between unit and range is one SP, but
	 * tolerate several. */
	if (len < 6 || !sg_http1_name_eq(v, 5, "bytes") || !is_ows(v[5]))
		return -EBADMSG;
	i = 6;
	while (i < len && is_ows(v[i]))
		i++;
	if (i < len && v[i] == '*') {
		r.unsatisfied = true;
		i++;
	} else {
		s = i;
		while (i < len && v[i] >= '0' && v[i] <= '9')
			i++;
		if (sg_http1_parse_u64(v + s, i - s, &r.first) < 0)
			return -EBADMSG;
		if (i >= len || v[i] != '-')
			return -EBADMSG;
		s = ++i;
		while (i < len && v[i] >= '0' && v[i] <= '9')
			i++;
		if (sg_http1_parse_u64(v + s, i - s, &r.last) < 0)
			return -EBADMSG;
		if (r.first > r.last)
			return -EBADMSG;
	}
	if (i >= len || v[i] != '/')
		return -EBADMSG;
	i++;
	if (i < len && v[i] == '*' && i + 1 == len) {
		if (r.unsatisfied)
			return -EBADMSG;   /* "* / *" says nothing */
		r.total = SG_HTTP1_RANGE_UNKNOWN;
	} else {
		if (sg_http1_parse_u64(v + i, len - i, &r.total) < 0)
			return -EBADMSG;
		if (!r.unsatisfied && r.last >= r.total)
			return -EBADMSG;
		if (r.total == SG_HTTP1_RANGE_UNKNOWN)
			return -EBADMSG;
	}
	*ret = r;
	return 0;
}

/* ---- multipart/byteranges ---- */

enum {
	MP_PREAMBLE,
	MP_HEADERS,
	MP_DATA,
	MP_AFTER_DATA,
	MP_EPILOGUE,
	MP_ERROR,
};

/* Preamble and the blank lines between a part and its delimiter are bounded. */
#define MP_PREAMBLE_LINES_MAX 64
#define MP_BLANK_LINES_MAX    4

int sg_multipart_boundary(const char *ct, size_t len, char *buf, size_t cap)
{
	size_t i = 0, s;

	while (i < len && is_ows(ct[i]))
		i++;
	s = i;
	while (i < len && ct[i] != ';' && !is_ows(ct[i]))
		i++;
	if (!sg_http1_name_eq(ct + s, i - s, "multipart/byteranges"))
		return -ENOENT;
	while (i < len) {
		while (i < len && (is_ows(ct[i]) || ct[i] == ';'))
			i++;
		s = i;
		while (i < len && sg_http1_is_tchar((unsigned char)ct[i]))
			i++;
		size_t name_end = i;
		while (i < len && is_ows(ct[i]))
			i++;
		if (name_end == s || i >= len || ct[i] != '=')
			return -EBADMSG;
		i++;
		while (i < len && is_ows(ct[i]))
			i++;
		bool want = sg_http1_name_eq(ct + s, name_end - s, "boundary");
		size_t out = 0;
		if (i < len && ct[i] == '"') {
			i++;
			for (;;) {
				if (i >= len)
					return -EBADMSG;
				char c = ct[i++];
				if (c == '"')
					break;
				if (c == '\\') {
					if (i >= len)
						return -EBADMSG;
					c = ct[i++];
				}
				if (want) {
					if (out + 1 >= cap)
						return -EBADMSG;
					buf[out++] = c;
				}
			}
		} else {
			s = i;
			while (i < len && sg_http1_is_tchar((unsigned char)ct[i]))
				i++;
			if (i == s)
				return -EBADMSG;
			if (want) {
				if (i - s + 1 > cap)
					return -EBADMSG;
				memcpy(buf, ct + s, i - s);
				out = i - s;
			}
		}
		if (want) {
			if (out == 0 || out > SG_MULTIPART_BOUNDARY_MAX)
				return -EBADMSG;
			buf[out] = '\0';
			return (int)out;
		}
		while (i < len && is_ows(ct[i]))
			i++;
		if (i < len && ct[i] != ';')
			return -EBADMSG;
	}
	return -ENOENT;
}

int sg_multipart_init(struct sg_multipart *m, const char *boundary, size_t len)
{
	if (len == 0 || len > SG_MULTIPART_BOUNDARY_MAX)
		return -EINVAL;
	memset(m, 0, offsetof(struct sg_multipart, line));
	memcpy(m->boundary, boundary, len);
	m->boundary[len] = '\0';
	m->boundary_len = (uint8_t)len;
	m->state = MP_PREAMBLE;
	return 0;
}

static int mp_fail(struct sg_multipart *m, int err, const char *why)
{
	m->state = MP_ERROR;
	m->err = why;
	return err;
}

/* Collects one line into m->line.  Returns 1 with a complete line (CR and LF stripped,
 * trailing blanks stripped: RFC 2046 allows transport padding after a delimiter), 0 when the
 * input ran out, or a negative errno. */
static int mp_line(struct sg_multipart *m, const uint8_t *in, size_t len, size_t *i)
{
	while (*i < len) {
		char c = (char)in[(*i)++];
		if (c == '\n') {
			while (m->line_len > 0 && (m->line[m->line_len - 1] == '\r' ||
						   is_ows(m->line[m->line_len - 1])))
				m->line_len--;
			return 1;
		}
		if (m->line_len >= SG_MULTIPART_LINE_MAX)
			return mp_fail(m, -EMSGSIZE, "multipart line too long");
		m->line[m->line_len++] = c;
	}
	return 0;
}

/* 1: "--boundary", 2: "--boundary--", 0: anything else. */
static int mp_delimiter(const struct sg_multipart *m)
{
	size_t b = m->boundary_len;

	if (m->line_len < b + 2 || m->line[0] != '-' || m->line[1] != '-' ||
	    memcmp(m->line + 2, m->boundary, b) != 0)
		return 0;
	if (m->line_len == b + 2)
		return 1;
	if (m->line_len == b + 4 && m->line[b + 2] == '-' && m->line[b + 3] == '-')
		return 2;
	return 0;
}

static void mp_new_part(struct sg_multipart *m)
{
	m->state = MP_HEADERS;
	m->have_range = false;
	m->part_headers = 0;
}

int sg_multipart_feed(struct sg_multipart *m, const uint8_t *in, size_t len, size_t *ret_consumed,
		      struct sg_http1_slice *ret_data)
{
	size_t i = 0;
	int r;

	*ret_data = (struct sg_http1_slice){ 0 };
	for (;;) {
		*ret_consumed = i;
		switch (m->state) {
		case MP_DATA: {
			size_t n = len - i;
			if (n == 0)
				return SG_MULTIPART_NEED_MORE;
			if (n > m->remaining)
				n = (size_t)m->remaining;
			ret_data->data = in + i;
			ret_data->len = n;
			m->data_offset = m->range.last + 1 - m->remaining;
			m->remaining -= n;
			if (m->remaining == 0) {
				m->state = MP_AFTER_DATA;
				m->blank_lines = 0;
			}
			*ret_consumed = i + n;
			return SG_MULTIPART_DATA;
		}
		case MP_EPILOGUE:
			*ret_consumed = len;
			return SG_MULTIPART_DONE;
		case MP_ERROR:
			return -EBADMSG;
		default:
			break;
		}
		r = mp_line(m, in, len, &i);
		*ret_consumed = i;
		if (r <= 0)
			return r;   /* 0 == SG_MULTIPART_NEED_MORE */
		int d = mp_delimiter(m);
		switch (m->state) {
		case MP_PREAMBLE:
			if (d == 1) {
				mp_new_part(m);
			} else if (d == 2) {
				return mp_fail(m, -EBADMSG, "multipart body without parts");
			} else if (++m->blank_lines > MP_PREAMBLE_LINES_MAX) {
				return mp_fail(m, -EBADMSG, "no multipart delimiter found");
			}
			break;
		case MP_HEADERS:
			if (m->line_len == 0) {
				if (!m->have_range)
					return mp_fail(m, -EBADMSG, "part without Content-Range");
				if (m->range.unsatisfied)
					return mp_fail(m, -EBADMSG, "unsatisfied range in a part");
				m->remaining = m->range.last - m->range.first + 1;
				m->data_offset = m->range.first;
				m->state = MP_DATA;
				m->parts++;
				m->line_len = 0;
				*ret_consumed = i;
				return SG_MULTIPART_PART;
			}
			if (++m->part_headers > SG_MULTIPART_PART_HEADERS_MAX)
				return mp_fail(m, -E2BIG, "too many part headers");
			if (m->line[0] == ' ' || m->line[0] == '\t')
				return mp_fail(m, -EBADMSG, "folded part header");
			{
				size_t c = 0;
				while (c < m->line_len && m->line[c] != ':')
					c++;
				if (c == m->line_len)
					return mp_fail(m, -EBADMSG, "malformed part header");
				if (sg_http1_name_eq(m->line, c, "content-range")) {
					size_t vs = c + 1;
					while (vs < m->line_len && is_ows(m->line[vs]))
						vs++;
					if (m->have_range)
						return mp_fail(m, -EBADMSG, "two Content-Range in a part");
					if (sg_http1_parse_content_range(m->line + vs, m->line_len - vs,
									 &m->range) < 0)
						return mp_fail(m, -EBADMSG, "malformed part Content-Range");
					m->have_range = true;
				}
			}
			break;
		case MP_AFTER_DATA:
			if (d == 1) {
				mp_new_part(m);
			} else if (d == 2) {
				m->state = MP_EPILOGUE;
				m->line_len = 0;
				return SG_MULTIPART_DONE;
			} else if (m->line_len != 0 || ++m->blank_lines > MP_BLANK_LINES_MAX) {
				return mp_fail(m, -EBADMSG, "expected a delimiter after part data");
			}
			break;
		default:
			return mp_fail(m, -EBADMSG, "internal multipart state");
		}
		m->line_len = 0;
	}
}

int sg_multipart_finish(struct sg_multipart *m)
{
	if (m->state == MP_EPILOGUE)
		return SG_MULTIPART_DONE;
	return mp_fail(m, -EPIPE, "multipart body ended early");
}
