/* Learned startup profiles: recorder, merge, format and parser.  See profile.h. */
#include "fs/profile.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

struct sg_profile {
	struct sg_digest toc;
	struct sg_digest layer;
	bool has_layer;
	uint64_t toc_tail;            /* the layer blob's bytes from its TOC on; 0 = unknown */
	struct sg_profile_span *head; /* sg_profile_set_head */
	size_t n_head;
	uint32_t n_chunks;
	/* One bit per chunk: in the profile.  A parsed profile drops it (a bundle of many layers
	 * would hold many) and builds it again on the first call that changes the profile. */
	uint64_t *seen;
	struct sg_profile_range *ranges;
	size_t n, cap;
	uint64_t chunks;
	uint64_t quiet_ns;
	uint32_t max_ranges;
	uint64_t last_new_ns;
	uint64_t session_chunks;      /* recorded since sg_profile_new or the last rearm */
	uint64_t epoch_ns;            /* times are counted from here, once epoch_set */
	bool epoch_set;
	bool has_times;
	bool recording;
	bool truncated;
};

#define WORDS(n) (((size_t)(n) + 63) / 64)

/* items (n used of *cap, each `size` bytes) with room for one more: items itself, or a
 * copy twice as large (`first` the first time), *cap updated; NULL when out of memory
 * (items as it was). */
static void *grow(void *items, size_t n, size_t *cap, size_t size, size_t first)
{
	if (n < *cap)
		return items;
	size_t c = *cap ? *cap * 2 : first;
	void *a = realloc(items, c * size);
	if (a)
		*cap = c;
	return a;
}

static bool bit_get(const uint64_t *b, uint32_t i)
{
	return (b[i / 64] >> (i % 64)) & 1;
}

int sg_profile_new(const struct sg_digest *toc, uint32_t n_chunks,
		   const struct sg_profile_limits *limits, struct sg_profile **ret)
{
	struct sg_profile *p;

	if (!toc || !ret || n_chunks == 0 || n_chunks > SG_PROFILE_CHUNKS_MAX)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->toc = *toc;
	p->n_chunks = n_chunks;
	p->quiet_ns = limits && limits->quiet_ns ? limits->quiet_ns : SG_PROFILE_QUIET_NS;
	p->max_ranges = limits && limits->max_ranges && limits->max_ranges < SG_PROFILE_RANGES_MAX
				? limits->max_ranges : SG_PROFILE_RANGES_MAX;
	p->recording = true;
	p->has_times = true;   /* a recorder notes times; a parsed profile says */
	p->seen = calloc(WORDS(n_chunks), sizeof(uint64_t));
	if (!p->seen) {
		free(p);
		return -ENOMEM;
	}
	*ret = p;
	return 0;
}

void sg_profile_free(struct sg_profile *p)
{
	if (!p)
		return;
	free(p->seen);
	free(p->ranges);
	free(p->head);
	free(p);
}

void sg_profile_set_layer(struct sg_profile *p, const struct sg_digest *layer)
{
	p->has_layer = layer != NULL;
	if (layer)
		p->layer = *layer;
}

void sg_profile_set_head(struct sg_profile *p, const struct sg_profile_span *spans, size_t n)
{
	struct sg_profile_span *h = NULL;
	size_t k = 0;
	uint64_t bytes = 0;

	if (n > 0 && !(h = malloc((n < SG_PROFILE_HEAD_MAX ? n : SG_PROFILE_HEAD_MAX) * sizeof(*h))))
		return;   /* no memory: the profile goes without a head, as an older one does */
	for (size_t i = 0; i < n && k < SG_PROFILE_HEAD_MAX; i++) {
		if (spans[i].end <= spans[i].offset)
			continue;
		uint64_t len = spans[i].end - spans[i].offset;
		if (len > SG_PROFILE_HEAD_BYTES - bytes)
			break;
		h[k++] = spans[i];
		bytes += len;
	}
	free(p->head);
	p->head = k ? h : NULL;
	p->n_head = k;
	if (!k)
		free(h);
}

size_t sg_profile_head(const struct sg_profile *p, const struct sg_profile_span **ret)
{
	*ret = p->head;
	return p->n_head;
}

void sg_profile_set_toc_tail(struct sg_profile *p, uint64_t toc_tail)
{
	p->toc_tail = toc_tail <= SG_PROFILE_TOC_TAIL_MAX ? toc_tail : 0;
}

/* The bitmap again, from the ranges (a parsed profile has none). */
static int ensure_seen(struct sg_profile *p)
{
	if (p->seen)
		return 0;
	p->seen = calloc(WORDS(p->n_chunks), sizeof(uint64_t));
	if (!p->seen)
		return -ENOMEM;
	for (size_t i = 0; i < p->n; i++)
		for (uint64_t c = p->ranges[i].first; c <= p->ranges[i].last; c++)
			p->seen[c / 64] |= 1ull << (c % 64);
	return 0;
}

/* Appends [first, last] (none of it seen yet), first read at at_ms, after the last range,
 * merging when they touch (the earlier time stays).  -E2BIG at the cap, -ENOMEM. */
static int append_run(struct sg_profile *p, uint32_t first, uint32_t last, uint32_t at_ms)
{
	if (p->n && p->ranges[p->n - 1].last + 1 == first) {
		p->ranges[p->n - 1].last = last;
	} else {
		if (p->n >= p->max_ranges) {
			p->truncated = true;
			return -E2BIG;
		}
		struct sg_profile_range *r = grow(p->ranges, p->n, &p->cap, sizeof(*r), 16);
		if (!r)
			return -ENOMEM;
		p->ranges = r;
		p->ranges[p->n++] = (struct sg_profile_range){ first, last, at_ms };
	}
	for (uint64_t c = first; c <= last; c++)
		p->seen[c / 64] |= 1ull << (c % 64);
	p->chunks += (uint64_t)last - first + 1;
	return 0;
}

/* The first index in [from, end) whose bit is `want`, or end.  Word at a time, so that a
 * long span costs span/64 steps. */
static uint64_t scan(const uint64_t *b, uint64_t from, uint64_t end, bool want)
{
	while (from < end) {
		uint64_t w = b[from / 64];
		if (!want)
			w = ~w;
		w &= ~0ull << (from % 64);
		if (w) {
			uint64_t at = from / 64 * 64 + (uint64_t)__builtin_ctzll(w);
			return at < end ? at : end;
		}
		from = (from / 64 + 1) * 64;
	}
	return end;
}

/* Adds the chunks of [first, last] not in the profile yet, in order, first read at at_ms.
 * 0, -E2BIG (cap) or -ENOMEM. */
static int add_span(struct sg_profile *p, uint32_t first, uint32_t last, uint32_t at_ms)
{
	uint64_t end = (uint64_t)last + 1, at = first;
	int r;

	while (at < end) {
		uint64_t a = scan(p->seen, at, end, false);
		if (a >= end)
			break;
		uint64_t b = scan(p->seen, a, end, true);
		r = append_run(p, (uint32_t)a, (uint32_t)(b - 1), at_ms);
		if (r < 0)
			return r;
		at = b;
	}
	return 0;
}

enum sg_profile_note_result sg_profile_note(struct sg_profile *p, uint32_t chunk,
					    uint64_t now_ns)
{
	if (sg_profile_quiet(p, now_ns) || !p->recording)
		return SG_PROFILE_DONE;
	if (chunk >= p->n_chunks)
		return SG_PROFILE_KNOWN;
	if (ensure_seen(p) < 0)
		return SG_PROFILE_KNOWN;    /* a lost note only makes the hint weaker */
	if (bit_get(p->seen, chunk))
		return SG_PROFILE_KNOWN;
	if (!p->epoch_set) {
		p->epoch_ns = now_ns;
		p->epoch_set = true;
	}
	uint64_t ms = now_ns > p->epoch_ns ? (now_ns - p->epoch_ns) / 1000000u : 0;
	int r = append_run(p, chunk, chunk, ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms);
	if (r == -E2BIG) {
		p->recording = false;
		return SG_PROFILE_DONE;
	}
	if (r < 0)
		return SG_PROFILE_KNOWN;
	p->last_new_ns = now_ns;
	p->session_chunks++;
	return SG_PROFILE_RECORDED;
}

void sg_profile_set_epoch(struct sg_profile *p, uint64_t epoch_ns)
{
	p->epoch_ns = epoch_ns;
	p->epoch_set = true;
}

void sg_profile_touch(struct sg_profile *p, uint64_t now_ns)
{
	if (p->recording && p->session_chunks && now_ns > p->last_new_ns)
		p->last_new_ns = now_ns;
}

bool sg_profile_quiet(struct sg_profile *p, uint64_t now_ns)
{
	if (p->recording && p->session_chunks && p->quiet_ns != UINT64_MAX &&
	    now_ns >= p->last_new_ns && now_ns - p->last_new_ns >= p->quiet_ns)
		p->recording = false;
	return !p->recording;
}

bool sg_profile_recording(const struct sg_profile *p)
{
	return p->recording;
}

void sg_profile_rearm(struct sg_profile *p)
{
	p->recording = !p->truncated;
	p->session_chunks = 0;
	p->epoch_set = false;   /* a new workload: its own clock */
}

/* The time of the last range, for ranges from a producer that gave none: they keep their
 * place after it. */
static uint32_t last_time(const struct sg_profile *p)
{
	return p->n ? p->ranges[p->n - 1].at_ms : 0;
}

int sg_profile_merge(struct sg_profile *dst, const struct sg_profile *src, struct sg_error *err)
{
	char a[SG_DIGEST_STRLEN + 1], b[SG_DIGEST_STRLEN + 1];
	int r;

	if (!sg_digest_equal(&dst->toc, &src->toc)) {
		sg_digest_format(&dst->toc, a);
		sg_digest_format(&src->toc, b);
		return sg_error_set(err, -EINVAL, "profile for TOC %s cannot merge into TOC %s", b,
				    a);
	}
	if (dst->n_chunks != src->n_chunks)
		return sg_error_set(err, -EINVAL,
				    "profiles of one TOC disagree on its chunk count (%" PRIu32
				    " and %" PRIu32 ")", dst->n_chunks, src->n_chunks);
	r = ensure_seen(dst);
	if (r < 0)
		return sg_error_set(err, r, "out of memory");
	for (size_t i = 0; i < src->n; i++) {
		uint32_t at = src->has_times ? src->ranges[i].at_ms : last_time(dst);
		r = add_span(dst, src->ranges[i].first, src->ranges[i].last, at);
		if (r == -E2BIG)
			break;
		if (r < 0)
			return sg_error_set(err, r, "out of memory");
	}
	if (!dst->has_layer && src->has_layer)
		sg_profile_set_layer(dst, &src->layer);
	if (!dst->toc_tail)
		dst->toc_tail = src->toc_tail;
	if (!dst->n_head)   /* the head belongs to the first ranges, which are dst's */
		sg_profile_set_head(dst, src->head, src->n_head);
	dst->has_times |= src->has_times;
	return 0;
}

uint64_t sg_profile_fit(struct sg_profile *p, uint32_t n_chunks)
{
	size_t k = 0;

	if (n_chunks >= p->n_chunks)
		return p->chunks;
	p->chunks = 0;
	for (size_t i = 0; i < p->n; i++) {
		struct sg_profile_range r = p->ranges[i];
		if (r.first >= n_chunks)
			continue;
		if (r.last >= n_chunks)
			r.last = n_chunks - 1;
		p->ranges[k++] = r;
		p->chunks += (uint64_t)r.last - r.first + 1;
	}
	p->n = k;
	p->n_chunks = n_chunks;
	free(p->seen);
	p->seen = NULL;     /* rebuilt for the smaller count when needed */
	return p->chunks;
}

size_t sg_profile_plan(const struct sg_profile *p, sg_profile_extent_fn extent,
		       bool (*has_chunk)(void *ctx, uint32_t chunk), void *ctx,
		       uint64_t max_request_bytes, uint64_t budget_bytes,
		       struct sg_profile_fetch *out, size_t cap, uint64_t *ret_bytes)
{
	struct sg_profile_fetch cur = { 0 };
	bool open = false;
	uint64_t planned = 0;
	size_t n = 0;

	/* Emits the request being built; false once nothing more may be planned. */
#define EMIT() \
	do { \
		if (open) { \
			out[n++] = cur; \
			planned += cur.end - cur.offset; \
			open = false; \
			if (n == cap || (budget_bytes && planned >= budget_bytes)) \
				goto done; \
		} \
	} while (0)

	if (cap == 0)
		goto done;
	for (size_t i = 0; i < p->n; i++) {
		for (uint64_t c = p->ranges[i].first; c <= p->ranges[i].last; c++) {
			uint64_t off, end;

			if ((has_chunk && has_chunk(ctx, (uint32_t)c)) ||
			    extent(ctx, (uint32_t)c, &off, &end) < 0 || end <= off) {
				EMIT();
				continue;
			}
			/* Chunks sharing a gzip member have the same extent: one span. */
			if (open && c == (uint64_t)cur.last + 1 && off >= cur.offset &&
			    off <= cur.end &&
			    (!max_request_bytes ||
			     (end > cur.end ? end : cur.end) - cur.offset <= max_request_bytes)) {
				cur.last = (uint32_t)c;
				if (end > cur.end)
					cur.end = end;
				continue;
			}
			EMIT();
			cur = (struct sg_profile_fetch){ (uint32_t)c, (uint32_t)c, off, end };
			open = true;
		}
		EMIT();    /* ranges are requested in their recorded order, one after another */
	}
done:
#undef EMIT
	if (ret_bytes)
		*ret_bytes = planned;
	return n;
}

const struct sg_digest *sg_profile_toc(const struct sg_profile *p)
{
	return &p->toc;
}

uint64_t sg_profile_toc_tail(const struct sg_profile *p)
{
	return p->toc_tail;
}

const struct sg_digest *sg_profile_layer(const struct sg_profile *p)
{
	return p->has_layer ? &p->layer : NULL;
}

uint32_t sg_profile_chunk_count(const struct sg_profile *p)
{
	return p->n_chunks;
}

size_t sg_profile_ranges(const struct sg_profile *p, const struct sg_profile_range **ret)
{
	*ret = p->ranges;
	return p->n;
}

uint64_t sg_profile_chunks(const struct sg_profile *p)
{
	return p->chunks;
}

bool sg_profile_has_times(const struct sg_profile *p)
{
	return p->has_times;
}

bool sg_profile_truncated(const struct sg_profile *p)
{
	return p->truncated;
}

bool sg_profile_has(const struct sg_profile *p, uint32_t chunk)
{
	if (chunk >= p->n_chunks)
		return false;
	if (p->seen)
		return bit_get(p->seen, chunk);
	for (size_t i = 0; i < p->n; i++)
		if (chunk >= p->ranges[i].first && chunk <= p->ranges[i].last)
			return true;
	return false;
}

/* ---- the format ---- */

static void write_doc(FILE *f, const struct sg_profile *p)
{
	char d[SG_DIGEST_STRLEN + 1];

	sg_digest_format(&p->toc, d);
	fprintf(f, "{\"schemaVersion\":%d,\"toc\":\"%s\"", SG_PROFILE_SCHEMA_VERSION, d);
	if (p->has_layer) {
		sg_digest_format(&p->layer, d);
		fprintf(f, ",\"layer\":\"%s\"", d);
	}
	if (p->toc_tail)
		fprintf(f, ",\"tocTail\":%" PRIu64, p->toc_tail);
	fprintf(f, ",\"chunkCount\":%" PRIu32 ",\"chunks\":[", p->n_chunks);
	for (size_t i = 0; i < p->n; i++)
		fprintf(f, "%s[%" PRIu32 ",%" PRIu32 "]", i ? "," : "", p->ranges[i].first,
			p->ranges[i].last);
	fputc(']', f);
	if (p->has_times) {
		fputs(",\"ms\":[", f);
		for (size_t i = 0; i < p->n; i++)
			fprintf(f, "%s%" PRIu32, i ? "," : "", p->ranges[i].at_ms);
		fputc(']', f);
	}
	if (p->n_head) {
		fputs(",\"head\":[", f);
		for (size_t i = 0; i < p->n_head; i++)
			fprintf(f, "%s[%" PRIu64 ",%" PRIu64 "]", i ? "," : "", p->head[i].offset,
				p->head[i].end);
		fputc(']', f);
	}
	fputc('}', f);
}

static int finish_stream(FILE *f, char **buf, size_t *len, char **ret, size_t *ret_len)
{
	bool bad = ferror(f) != 0;
	if (fclose(f) != 0 || bad) {
		free(*buf);
		return -ENOMEM;
	}
	*ret = *buf;
	if (ret_len)
		*ret_len = *len;
	return 0;
}

int sg_profile_format(const struct sg_profile *p, char **ret, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return -ENOMEM;
	write_doc(f, p);
	fputc('\n', f);
	return finish_stream(f, &buf, &len, ret, ret_len);
}

int sg_profile_bundle_format(struct sg_profile *const *ps, size_t n, char **ret, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return -ENOMEM;
	fprintf(f, "{\"schemaVersion\":%d,\"mediaType\":\"%s\",\"profiles\":[",
		SG_PROFILE_SCHEMA_VERSION, SG_PROFILE_BLOB_TYPE);
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc(',', f);
		write_doc(f, ps[i]);
	}
	fputs("]}\n", f);
	return finish_stream(f, &buf, &len, ret, ret_len);
}

/* ---- the parser: yajl callbacks over a small state machine ---- */

enum state {
	S_START,     /* before the top object */
	S_OBJ,       /* in a profile object (or the bundle), a key or the end next */
	S_VALUE,     /* a key was read, its value next */
	S_CHUNKS,    /* in "chunks": a pair or the end next */
	S_PAIR,      /* in a pair */
	S_PROFILES,  /* in "profiles": an object or the end next */
	S_MS,        /* in "ms": a number or the end next */
	S_HEAD,      /* in "head": a pair or the end next */
	S_HPAIR,     /* in a pair of "head" */
	S_SKIP,      /* inside a value of an unknown key */
	S_END,
};

enum key {
	K_UNKNOWN,
	K_SCHEMA,
	K_TOC,
	K_LAYER,
	K_COUNT,
	K_CHUNKS,
	K_PROFILES,
	K_MEDIA_TYPE,
	K_MS,
	K_TOC_TAIL,
	K_HEAD,
};

/* The fields of one document as read; checked when its object closes. */
struct doc {
	int64_t schema;               /* -1 = absent */
	int64_t count;                /* -1 = absent */
	uint64_t toc_tail;            /* 0 = absent */
	bool has_toc, has_layer, has_chunks, has_ms, has_head;
	struct sg_digest toc, layer;
	struct sg_profile_span head[SG_PROFILE_HEAD_MAX];
	size_t n_head;
	uint64_t head_bytes;
	struct sg_profile_range *ranges;
	size_t n, cap;
	uint32_t *ms;                 /* "ms", one per range */
	size_t n_ms, cap_ms;
	uint64_t listed;              /* chunks named, repeats counted */
};

struct parser {
	enum state state;
	enum key key;
	bool in_bundle;               /* the current object is an entry of "profiles" */
	bool bundle_wanted;
	bool saw_profiles;
	unsigned skip_depth;
	unsigned pair_n;
	uint64_t pair[2];
	struct doc top, sub;
	struct sg_profile **out;
	size_t nout;
	int rc;
	struct sg_error *err;
};

static struct doc *cur(struct parser *p)
{
	return p->in_bundle ? &p->sub : &p->top;
}

static void doc_reset(struct doc *d)
{
	free(d->ranges);
	free(d->ms);
	*d = (struct doc){ .schema = -1, .count = -1 };
}

static int fail(struct parser *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct parser *p, int rc, const char *fmt, ...)
{
	va_list ap;
	char msg[SG_ERROR_MSG_MAX];

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->in_bundle)
		sg_error_set(p->err, rc, "profile %zu: %s", p->nout, msg);
	else
		sg_error_set(p->err, rc, "%s", msg);
	p->rc = rc;
	return 0;      /* stops yajl */
}

/* fail() for the code outside the callbacks: the errno. */
#define REFUSE(p, ...) (fail(p, __VA_ARGS__), (p)->rc)

/* A value has been consumed: back to the object's keys. */
static int value_done(struct parser *p)
{
	p->state = S_OBJ;
	return 1;
}

static int unexpected(struct parser *p, const char *what)
{
	static const char *const names[] = { "", "schemaVersion", "toc", "layer", "chunkCount",
					     "chunks", "profiles", "mediaType", "ms", "tocTail",
					     "head" };
	if (p->state == S_VALUE)
		return fail(p, -EINVAL, "\"%s\" must not be %s", names[p->key], what);
	return fail(p, -EINVAL, "unexpected %s", what);
}

/* Skipping an unknown key's value: containers nest, a scalar at depth 0 ends it. */
static int skip_scalar(struct parser *p)
{
	if (p->skip_depth == 0)
		return value_done(p);
	return 1;
}

static int parse_uint(const char *s, size_t len, uint64_t max, uint64_t *ret)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*ret = v;
	return 0;
}

static int cb_null(void *ctx)
{
	struct parser *p = ctx;
	if (p->state == S_SKIP)
		return skip_scalar(p);
	return unexpected(p, "null");
}

static int cb_bool(void *ctx, int v)
{
	struct parser *p = ctx;
	if (p->state == S_SKIP)
		return skip_scalar(p);
	return unexpected(p, "a boolean");
}

static int cb_number(void *ctx, const char *s, size_t len)
{
	struct parser *p = ctx;
	struct doc *d = cur(p);
	uint64_t v;

	if (p->state == S_SKIP)
		return skip_scalar(p);
	if (p->state == S_PAIR) {
		if (p->pair_n >= 2)
			return fail(p, -EINVAL, "a chunk range has more than two indices");
		if (parse_uint(s, len, UINT32_MAX, &v) < 0)
			return fail(p, -EINVAL, "chunk index %.*s is not an integer in 0..%u",
				    (int)(len > 24 ? 24 : len), s, UINT32_MAX);
		p->pair[p->pair_n++] = v;
		return 1;
	}
	if (p->state == S_HPAIR) {
		if (p->pair_n >= 2)
			return fail(p, -EINVAL, "a head span has more than two offsets");
		if (parse_uint(s, len, (uint64_t)1 << 53, &v) < 0)
			return fail(p, -EINVAL, "head offset %.*s is not an integer in 0..2^53",
				    (int)(len > 24 ? 24 : len), s);
		p->pair[p->pair_n++] = v;
		return 1;
	}
	if (p->state == S_MS) {
		if (d->n_ms >= SG_PROFILE_RANGES_MAX)
			return fail(p, -E2BIG, "more than %u times in \"ms\"", SG_PROFILE_RANGES_MAX);
		if (parse_uint(s, len, UINT32_MAX, &v) < 0)
			return fail(p, -EINVAL, "time %.*s is not an integer in 0..%u",
				    (int)(len > 24 ? 24 : len), s, UINT32_MAX);
		uint32_t *ms = grow(d->ms, d->n_ms, &d->cap_ms, sizeof(*ms), 64);
		if (!ms)
			return fail(p, -ENOMEM, "out of memory");
		d->ms = ms;
		d->ms[d->n_ms++] = (uint32_t)v;
		return 1;
	}
	if (p->state != S_VALUE)
		return unexpected(p, "a number");
	if (p->key == K_SCHEMA) {
		if (parse_uint(s, len, 1000000, &v) < 0)
			return fail(p, -EINVAL, "\"schemaVersion\" is not a small integer");
		d->schema = (int64_t)v;
		return value_done(p);
	}
	if (p->key == K_COUNT) {
		if (parse_uint(s, len, UINT32_MAX, &v) < 0 || v == 0 || v > SG_PROFILE_CHUNKS_MAX)
			return fail(p, -EINVAL, "\"chunkCount\" %.*s is not in 1..%u",
				    (int)(len > 24 ? 24 : len), s, SG_PROFILE_CHUNKS_MAX);
		d->count = (int64_t)v;
		return value_done(p);
	}
	if (p->key == K_TOC_TAIL) {
		if (parse_uint(s, len, SG_PROFILE_TOC_TAIL_MAX, &v) < 0 || v == 0)
			return fail(p, -EINVAL, "\"tocTail\" %.*s is not in 1..%llu",
				    (int)(len > 24 ? 24 : len), s,
				    (unsigned long long)SG_PROFILE_TOC_TAIL_MAX);
		d->toc_tail = v;
		return value_done(p);
	}
	return unexpected(p, "a number");
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
	struct parser *p = ctx;
	struct doc *d = cur(p);
	struct sg_digest *dst;

	if (p->state == S_SKIP)
		return skip_scalar(p);
	if (p->state != S_VALUE)
		return unexpected(p, "a string");
	if (p->key == K_MEDIA_TYPE) {
		if (len != strlen(SG_PROFILE_BLOB_TYPE) ||
		    memcmp(s, SG_PROFILE_BLOB_TYPE, len) != 0)
			return fail(p, -EINVAL, "\"mediaType\" is not %s", SG_PROFILE_BLOB_TYPE);
		return value_done(p);
	}
	if (p->key != K_TOC && p->key != K_LAYER)
		return unexpected(p, "a string");
	dst = p->key == K_TOC ? &d->toc : &d->layer;
	if (sg_digest_parse((const char *)s, len, dst) < 0)
		return fail(p, -EINVAL, "\"%s\" is not a sha256 digest",
			    p->key == K_TOC ? "toc" : "layer");
	if (p->key == K_TOC)
		d->has_toc = true;
	else
		d->has_layer = true;
	return value_done(p);
}

static int cb_start_map(void *ctx)
{
	struct parser *p = ctx;

	switch (p->state) {
	case S_START:
		p->state = S_OBJ;
		return 1;
	case S_SKIP:
		p->skip_depth++;
		return 1;
	case S_PROFILES:
		if (p->nout >= SG_PROFILE_BUNDLE_MAX)
			return fail(p, -E2BIG, "more than %u profiles in a bundle",
				    SG_PROFILE_BUNDLE_MAX);
		p->in_bundle = true;
		doc_reset(&p->sub);
		p->state = S_OBJ;
		return 1;
	default:
		return unexpected(p, "an object");
	}
}

static int cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
	static const struct {
		const char *name;
		enum key key;
	} keys[] = {
		{ "schemaVersion", K_SCHEMA }, { "toc", K_TOC }, { "layer", K_LAYER },
		{ "chunkCount", K_COUNT }, { "chunks", K_CHUNKS }, { "profiles", K_PROFILES },
		{ "mediaType", K_MEDIA_TYPE }, { "ms", K_MS }, { "tocTail", K_TOC_TAIL },
		{ "head", K_HEAD },
	};
	struct parser *p = ctx;

	if (p->state == S_SKIP)
		return 1;
	if (p->state != S_OBJ)
		return unexpected(p, "a key");
	p->key = K_UNKNOWN;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strlen(keys[i].name) == len && memcmp(keys[i].name, s, len) == 0)
			p->key = keys[i].key;
	/* A bundle entry is a plain document; "profiles" and "mediaType" belong to the
	 * bundle, whose own keys are only those two and the schema version. */
	if (p->key == K_PROFILES && p->in_bundle)
		p->key = K_UNKNOWN;
	if (p->key == K_UNKNOWN) {
		p->state = S_SKIP;
		p->skip_depth = 0;
		return 1;
	}
	p->state = S_VALUE;
	return 1;
}

static int finish_doc(struct parser *p, struct doc *d, struct sg_profile **ret);

static int cb_end_map(void *ctx)
{
	struct parser *p = ctx;

	if (p->state == S_SKIP) {
		if (--p->skip_depth == 0)
			return value_done(p);
		return 1;
	}
	if (p->state != S_OBJ)
		return unexpected(p, "end of object");
	if (p->in_bundle) {
		struct sg_profile *prof = NULL;
		int r = finish_doc(p, &p->sub, &prof);
		if (r < 0)
			return 0;
		for (size_t i = 0; i < p->nout; i++)
			if (sg_digest_equal(&p->out[i]->toc, &prof->toc)) {
				sg_profile_free(prof);
				return fail(p, -EINVAL, "a second profile for the same TOC digest");
			}
		p->out[p->nout++] = prof;
		doc_reset(&p->sub);
		p->in_bundle = false;
		p->state = S_PROFILES;
		return 1;
	}
	p->state = S_END;
	return 1;
}

static int cb_start_array(void *ctx)
{
	struct parser *p = ctx;

	switch (p->state) {
	case S_SKIP:
		p->skip_depth++;
		return 1;
	case S_VALUE:
		if (p->key == K_CHUNKS) {
			if (cur(p)->has_chunks)
				return fail(p, -EINVAL, "\"chunks\" given twice");
			cur(p)->has_chunks = true;
			p->state = S_CHUNKS;
			return 1;
		}
		if (p->key == K_MS) {
			if (cur(p)->has_ms)
				return fail(p, -EINVAL, "\"ms\" given twice");
			cur(p)->has_ms = true;
			p->state = S_MS;
			return 1;
		}
		if (p->key == K_HEAD) {
			if (cur(p)->has_head)
				return fail(p, -EINVAL, "\"head\" given twice");
			cur(p)->has_head = true;
			p->state = S_HEAD;
			return 1;
		}
		if (p->key == K_PROFILES) {
			if (!p->out)
				return fail(p, -EINVAL, "a bundle of profiles, not one profile");
			if (p->saw_profiles)
				return fail(p, -EINVAL, "\"profiles\" given twice");
			p->saw_profiles = true;
			p->state = S_PROFILES;
			return 1;
		}
		return unexpected(p, "an array");
	case S_CHUNKS:
		p->pair_n = 0;
		p->state = S_PAIR;
		return 1;
	case S_HEAD:
		p->pair_n = 0;
		p->state = S_HPAIR;
		return 1;
	default:
		return unexpected(p, "an array");
	}
}

static int cb_end_array(void *ctx)
{
	struct parser *p = ctx;
	struct doc *d = cur(p);

	switch (p->state) {
	case S_SKIP:
		if (--p->skip_depth == 0)
			return value_done(p);
		return 1;
	case S_PAIR:
		if (p->pair_n != 2)
			return fail(p, -EINVAL, "a chunk range is not [first,last]");
		if (p->pair[0] > p->pair[1])
			return fail(p, -EINVAL, "chunk range [%" PRIu64 ",%" PRIu64 "] is reversed",
				    p->pair[0], p->pair[1]);
		if (d->n >= SG_PROFILE_RANGES_MAX)
			return fail(p, -E2BIG, "more than %u chunk ranges", SG_PROFILE_RANGES_MAX);
		struct sg_profile_range *r = grow(d->ranges, d->n, &d->cap, sizeof(*r), 64);
		if (!r)
			return fail(p, -ENOMEM, "out of memory");
		d->ranges = r;
		d->ranges[d->n++] = (struct sg_profile_range){ (uint32_t)p->pair[0],
							       (uint32_t)p->pair[1], 0 };
		d->listed += p->pair[1] - p->pair[0] + 1;
		p->state = S_CHUNKS;
		return 1;
	case S_HPAIR:
		if (p->pair_n != 2)
			return fail(p, -EINVAL, "a head span is not [offset,end]");
		if (p->pair[0] >= p->pair[1])
			return fail(p, -EINVAL, "head span [%" PRIu64 ",%" PRIu64 ") is empty",
				    p->pair[0], p->pair[1]);
		if (d->n_head >= SG_PROFILE_HEAD_MAX)
			return fail(p, -E2BIG, "more than %u head spans", SG_PROFILE_HEAD_MAX);
		if (p->pair[1] - p->pair[0] > SG_PROFILE_HEAD_BYTES - d->head_bytes)
			return fail(p, -E2BIG, "the head spans more than %llu bytes",
				    (unsigned long long)SG_PROFILE_HEAD_BYTES);
		d->head[d->n_head++] = (struct sg_profile_span){ p->pair[0], p->pair[1] };
		d->head_bytes += p->pair[1] - p->pair[0];
		p->state = S_HEAD;
		return 1;
	case S_CHUNKS:
	case S_PROFILES:
	case S_MS:
	case S_HEAD:
		return value_done(p);
	default:
		return unexpected(p, "end of array");
	}
}

static const yajl_callbacks callbacks = {
	.yajl_null = cb_null,
	.yajl_boolean = cb_bool,
	.yajl_number = cb_number,
	.yajl_string = cb_string,
	.yajl_start_map = cb_start_map,
	.yajl_map_key = cb_map_key,
	.yajl_end_map = cb_end_map,
	.yajl_start_array = cb_start_array,
	.yajl_end_array = cb_end_array,
};

static int check_schema(struct parser *p, const struct doc *d)
{
	if (d->schema < 0)
		return REFUSE(p, -EINVAL, "no \"schemaVersion\"");
	if (d->schema != SG_PROFILE_SCHEMA_VERSION)
		return REFUSE(p, -ENOTSUP, "schemaVersion %" PRId64 " is not supported (only %d)",
			    d->schema, SG_PROFILE_SCHEMA_VERSION);
	return 0;
}

/* A document's fields into a profile: the schema checked, every index below chunkCount, and
 * the ranges replayed through the recorder, which drops repeats (first mention wins). */
static int finish_doc(struct parser *p, struct doc *d, struct sg_profile **ret)
{
	struct sg_profile *prof = NULL;
	int r;

	r = check_schema(p, d);
	if (r < 0)
		return r;
	if (!d->has_toc)
		return REFUSE(p, -EINVAL, "no \"toc\" digest");
	if (d->count < 0)
		return REFUSE(p, -EINVAL, "no \"chunkCount\"");
	if (!d->has_chunks)
		return REFUSE(p, -EINVAL, "no \"chunks\"");
	/* Repeats are tolerated, but not without bound: the work of dropping them grows with
	 * the chunks named. */
	if (d->listed > (uint64_t)d->count)
		return REFUSE(p, -EINVAL, "the ranges name %" PRIu64 " chunks, more than chunkCount %"
			    PRId64, d->listed, d->count);
	for (size_t i = 0; i < d->n; i++)
		if (d->ranges[i].last >= d->count)
			return REFUSE(p, -EINVAL, "chunk %" PRIu32 " is past chunkCount %" PRId64,
				    d->ranges[i].last, d->count);
	if (d->has_ms && d->n_ms != d->n)
		return REFUSE(p, -EINVAL, "\"ms\" has %zu times for %zu chunk ranges", d->n_ms,
			      d->n);
	r = sg_profile_new(&d->toc, (uint32_t)d->count, NULL, &prof);
	if (r < 0)
		return REFUSE(p, r, "out of memory");
	if (d->has_layer)
		sg_profile_set_layer(prof, &d->layer);
	prof->toc_tail = d->toc_tail;
	prof->has_times = d->has_ms;
	sg_profile_set_head(prof, d->head, d->n_head);
	if (d->n_head && !prof->n_head) {
		sg_profile_free(prof);
		return REFUSE(p, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < d->n; i++) {
		r = add_span(prof, d->ranges[i].first, d->ranges[i].last,
			     d->has_ms ? d->ms[i] : 0);
		if (r < 0) {
			sg_profile_free(prof);
			return REFUSE(p, r, "%s", r == -ENOMEM ? "out of memory"
							       : "too many chunk ranges");
		}
	}
	/* A parsed profile is done recording; its bitmap comes back when it is changed. */
	prof->recording = false;
	free(prof->seen);
	prof->seen = NULL;
	*ret = prof;
	return 0;
}

static int run(struct parser *p, const void *json, size_t len)
{
	yajl_handle h;
	yajl_status st;

	if (!json && len)
		return sg_error_set(p->err, -EINVAL, "no profile");
	if (len > SG_PROFILE_JSON_MAX)
		return sg_error_set(p->err, -E2BIG, "profile of %zu bytes is larger than %u bytes",
				    len, SG_PROFILE_JSON_MAX);
	h = yajl_alloc(&callbacks, NULL, p);
	if (!h)
		return sg_error_set(p->err, -ENOMEM, "out of memory");
	st = yajl_parse(h, json, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	if (st != yajl_status_ok && p->rc == 0) {
		unsigned char *msg = yajl_get_error(h, 0, json, len);
		p->rc = sg_error_set(p->err, -EBADMSG, "profile JSON: %s",
				     msg ? (const char *)msg : "parse error");
		if (msg)
			yajl_free_error(h, msg);
	}
	yajl_free(h);
	if (p->rc == 0 && p->state != S_END)
		p->rc = sg_error_set(p->err, -EBADMSG, "profile JSON is not an object");
	return p->rc;
}

int sg_profile_parse(const void *json, size_t len, struct sg_profile **ret, struct sg_error *err)
{
	struct parser p = { .err = err, .top = { .schema = -1, .count = -1 },
			    .sub = { .schema = -1, .count = -1 } };
	int r;

	if (!ret)
		return -EINVAL;
	r = run(&p, json, len);
	if (r == 0)
		r = finish_doc(&p, &p.top, ret);
	doc_reset(&p.top);
	doc_reset(&p.sub);
	return r;
}

void sg_profile_bundle_free(struct sg_profile **ps, size_t n)
{
	if (!ps)
		return;
	for (size_t i = 0; i < n; i++)
		sg_profile_free(ps[i]);
	free(ps);
}

int sg_profile_bundle_parse(const void *json, size_t len, struct sg_profile ***ret,
			    size_t *ret_n, struct sg_error *err)
{
	struct parser p = { .err = err, .top = { .schema = -1, .count = -1 },
			    .sub = { .schema = -1, .count = -1 } };
	int r;

	if (!ret || !ret_n)
		return -EINVAL;
	p.out = calloc(SG_PROFILE_BUNDLE_MAX, sizeof(*p.out));
	if (!p.out)
		return sg_error_set(err, -ENOMEM, "out of memory");
	r = run(&p, json, len);
	if (r == 0)
		r = check_schema(&p, &p.top);
	if (r == 0 && (!p.saw_profiles || p.top.has_toc || p.top.has_chunks))
		r = sg_error_set(err, -EINVAL, "not a bundle of profiles (no \"profiles\" array)");
	doc_reset(&p.top);
	doc_reset(&p.sub);
	if (r < 0) {
		sg_profile_bundle_free(p.out, p.nout);
		return r;
	}
	*ret = p.out;
	*ret_n = p.nout;
	return 0;
}
