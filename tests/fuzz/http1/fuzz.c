/* libFuzzer target: the HTTP/1.1 response parser, fed in pieces, plus Content-Range and
 * multipart/byteranges on whatever the headers announce.
 *
 * Input layout: byte 0 picks flags (bit 0: the request was HEAD; bits 1-7: piece size seed),
 * the rest is the response bytes.  Invariants checked: the parser never claims more input than
 * it was given, body bytes add up, and a finished parser stays finished. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/http1.h"
#include "net/http1_ranges.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void feed_multipart(struct sg_multipart *m, const struct sg_http1_slice *b, bool *dead)
{
	size_t o = 0;

	while (!*dead) {
		size_t n;
		struct sg_http1_slice d;
		int ev = sg_multipart_feed(m, b->data + o, b->len - o, &n, &d);
		if (n > b->len - o)
			abort();
		o += n;
		if (ev < 0 || ev == SG_MULTIPART_DONE) {
			*dead = true;
			return;
		}
		if (ev == SG_MULTIPART_NEED_MORE) {
			if (o != b->len)
				abort();
			return;
		}
		if (ev == SG_MULTIPART_DATA && (d.len == 0 || d.data < b->data ||
						d.data + d.len > b->data + b->len))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sg_http1_parser p;
	static struct sg_multipart m;
	bool mp = false, mp_dead = false;
	uint64_t body = 0;

	if (size < 1)
		return 0;
	bool head = data[0] & 1;
	size_t step = 1 + (data[0] >> 1);
	data++;
	size--;

	sg_http1_parser_init(&p, head);
	size_t off = 0;
	while (off <= size) {
		size_t plen = size - off < step ? size - off : step;
		/* Copy each piece so that ASan sees reads past its end. */
		uint8_t *piece = malloc(plen ? plen : 1);
		memcpy(piece, data + off, plen);
		size_t used = 0;
		int ev = 0;
		for (;;) {
			size_t n;
			struct sg_http1_slice b;
			ev = sg_http1_feed(&p, piece + used, plen - used, &n, &b);
			if (n > plen - used)
				abort();
			used += n;
			if (ev < 0 || ev == SG_HTTP1_DONE)
				break;
			if (ev == SG_HTTP1_NEED_MORE) {
				if (used != plen)
					abort();
				break;
			}
			if (ev == SG_HTTP1_HEAD) {
				size_t vl;
				const char *v = sg_http1_header(&p, "content-range", &vl);
				struct sg_http1_range r;
				if (v && sg_http1_parse_content_range(v, vl, &r) == 0 && !r.unsatisfied &&
				    r.first > r.last)
					abort();
				v = sg_http1_header(&p, "content-type", &vl);
				char bnd[SG_MULTIPART_BOUNDARY_MAX + 1];
				int bl = v ? sg_multipart_boundary(v, vl, bnd, sizeof(bnd)) : -ENOENT;
				if (bl > 0 && sg_multipart_init(&m, bnd, (size_t)bl) == 0)
					mp = true;
				for (unsigned i = 0; i < sg_http1_header_count(&p); i++) {
					const char *nm, *vv;
					size_t nl, vvl;
					sg_http1_header_at(&p, i, &nm, &nl, &vv, &vvl);
					if (nl == 0 || memchr(vv, '\n', vvl) || memchr(nm, ':', nl))
						abort();
				}
			}
			if (ev == SG_HTTP1_BODY) {
				if (b.len == 0 || b.data < piece || b.data + b.len > piece + plen)
					abort();
				body += b.len;
				if (mp)
					feed_multipart(&m, &b, &mp_dead);
			}
		}
		free(piece);
		if (ev < 0 || ev == SG_HTTP1_DONE)
			break;
		off += plen;
		if (plen == 0)
			break;
	}
	if (body != p.body_received)
		abort();
	if (sg_http1_done(&p)) {
		size_t n;
		struct sg_http1_slice b;
		if (sg_http1_feed(&p, data, size, &n, &b) != SG_HTTP1_DONE || n != 0)
			abort();
		if (p.framing == SG_HTTP1_BODY_LENGTH && body != p.content_length)
			abort();
	} else {
		(void)sg_http1_finish(&p);
	}
	if (mp && !mp_dead)
		(void)sg_multipart_finish(&m);
	return 0;
}
