/* The TOC parser (see toc_parse.h): yajl callbacks over a small state machine.
 *
 * Each entry's fields are collected into a scratch struct sg_toc_entry and committed to
 * the builder (toc_build.h) when its object closes, so the JSON never exists as a tree. */
#include "fs/toc_parse.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "fs/toc_build.h"

enum state {
	S_START, S_TOP, S_TOP_VAL, S_ENTRIES, S_ENTRY, S_ENTRY_VAL, S_XATTRS, S_XATTR_VAL, S_DONE,
};

struct parser {
	struct sg_toc_builder *b;
	struct sg_error *err;
	int rc;                   /* first error (negative errno) */

	enum state state;
	enum sg_toc_field field;  /* the key whose value comes next */
	unsigned skip;            /* depth inside an ignored value */
	bool seen_entries;
	uint32_t nentries;        /* handed to the builder */
	struct sg_toc_entry e;
	struct sg_toc_text xattr_name;

	/* Layers repeat modification times a lot; the last one parsed is kept. */
	char last_time[40];
	size_t last_time_len;
	int64_t last_sec;
	uint32_t last_nsec;
};

/* The first failure names the cause; one after it would pass only its errno up. */
#define FAIL(p, code, errnum, ...) \
	((p)->rc = (p)->rc < 0 ? -(errnum) \
			       : sg_error_setc((p)->err, -(errnum), (code), __VA_ARGS__), 0)

static int nomem(struct parser *p)
{
	return FAIL(p, SG_ESGZ_E_NOMEM, ENOMEM, "out of memory building the TOC index");
}

/* An entry's object closed: the builder decides what it means. */
static int commit_entry(struct parser *p)
{
	int r;

	p->nentries++;
	r = sg_toc_builder_add(p->b, &p->e, p->err);
	if (r < 0) {
		p->rc = r;
		return 0;
	}
	return 1;
}

/* ---- scalar decoding ---- */

static int parse_u64(struct parser *p, const char *s, size_t len, uint64_t *ret)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		goto bad;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			goto bad;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return FAIL(p, SG_ESGZ_E_OVERFLOW, EOVERFLOW, "number in entry %u overflows",
				    p->nentries + 1);
		v = v * 10 + d;
	}
	*ret = v;
	return 1;
bad:
	if (len > 0 && s[0] == '-')
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "negative number in entry %u",
			    p->nentries + 1);
	if (len > 20 && strspn(s, "0123456789") == len)
		return FAIL(p, SG_ESGZ_E_OVERFLOW, EOVERFLOW, "number in entry %u overflows",
			    p->nentries + 1);
	return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "number in entry %u is not an integer",
		    p->nentries + 1);
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, size_t n, unsigned *ret)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*ret = v;
	return true;
}

/* RFC 3339 as Go writes it: 2006-01-02T15:04:05[.frac](Z|+07:00). */
static int parse_time(struct parser *p, const char *s, size_t len)
{
	unsigned y, mo, d, h, mi, se, nsec = 0, scale = 100000000;
	size_t i = 19;

	if (len == p->last_time_len && memcmp(s, p->last_time, len) == 0) {
		p->e.mtime_sec = p->last_sec;
		p->e.mtime_nsec = p->last_nsec;
		return 1;
	}

	if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
	    s[13] != ':' || s[16] != ':' || !digits(s, 4, &y) || !digits(s + 5, 2, &mo) ||
	    !digits(s + 8, 2, &d) || !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) ||
	    !digits(s + 17, 2, &se) || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || se > 60)
		goto bad;
	if (s[i] == '.') {
		i++;
		size_t start = i;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (scale) {
				nsec += (unsigned)(s[i] - '0') * scale;
				scale /= 10;
			}
			i++;
		}
		if (i == start)
			goto bad;
	}
	int64_t off = 0;
	if (i < len && (s[i] == 'Z' || s[i] == 'z') && i + 1 == len) {
		off = 0;
	} else if (i + 6 == len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
		unsigned oh, om;
		if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
			goto bad;
		off = (int64_t)(oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
	} else {
		goto bad;
	}
	p->e.mtime_sec = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
	p->e.mtime_nsec = nsec;
	if (len <= sizeof(p->last_time)) {
		memcpy(p->last_time, s, len);
		p->last_time_len = len;
		p->last_sec = p->e.mtime_sec;
		p->last_nsec = nsec;
	}
	return 1;
bad:
	return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "bad modtime in entry %u", p->nentries + 1);
}

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* Standard base64 with padding (Go's encoding of []byte), appended to out. */
static int base64_append(struct sg_toc_text *out, const char *s, size_t len)
{
	if (len % 4)
		return -EINVAL;
	if (sg_toc_text_reserve(out, out->len + len / 4 * 3 + 1) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		for (int k = 0; k < 4; k++) {
			if (s[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else {
				if (pad)
					return -EINVAL;
				v[k] = b64val((unsigned char)s[i + k]);
				if (v[k] < 0)
					return -EINVAL;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		out->p[out->len++] = (char)(w >> 16);
		if (pad < 2)
			out->p[out->len++] = (char)(w >> 8);
		if (pad < 1)
			out->p[out->len++] = (char)w;
	}
	return 0;
}

/* ---- yajl callbacks ---- */

static enum sg_toc_field field_of(const unsigned char *k, size_t len)
{
#define K(s, f) if (len == sizeof(s) - 1 && memcmp(k, s, len) == 0) return SG_TOC_FIELD_##f
	switch (len) {
	case 3: K("uid", UID); K("gid", GID); break;
	case 4: K("name", NAME); K("type", TYPE); K("size", SIZE); K("mode", MODE); break;
	case 6: K("offset", OFFSET); K("digest", DIGEST); K("xattrs", XATTRS); break;
	case 7: K("modtime", MODTIME); break;
	case 8: K("linkName", LINKNAME); K("userName", USERNAME); K("devMajor", DEVMAJOR);
		K("devMinor", DEVMINOR); break;
	case 9: K("groupName", GROUPNAME); K("chunkSize", CHUNKSIZE); break;
	case 11: K("innerOffset", INNEROFFSET); K("chunkOffset", CHUNKOFFSET);
		K("chunkDigest", CHUNKDIGEST); break;
	}
#undef K
	return SG_TOC_FIELD_NONE;
}

static int entry_type_of(const unsigned char *s, size_t len)
{
#define K(str, v) if (len == sizeof(str) - 1 && memcmp(s, str, len) == 0) return SG_TOC_ENTRY_##v
	K("reg", REG); K("dir", DIR); K("chunk", CHUNK); K("symlink", SYMLINK);
	K("hardlink", HARDLINK); K("char", CHAR); K("block", BLOCK); K("fifo", FIFO);
#undef K
	return SG_TOC_ENTRY_NONE;
}

static int value_scalar(struct parser *p, int kind, const char *s, size_t len);

/* "sha256:<64 hex>" -> bytes.  A table-driven twin of sg_digest_parse: two digests per
 * entry made the generic one a visible share of the TOC load. */
static int8_t hex_table[256];

static void hex_table_init(void)
{
	if (hex_table['1'] == 1)
		return;
	memset(hex_table, -1, sizeof(hex_table));
	for (int i = 0; i < 10; i++)
		hex_table['0' + i] = (int8_t)i;
	for (int i = 0; i < 6; i++) {
		hex_table['a' + i] = (int8_t)(10 + i);
		hex_table['A' + i] = (int8_t)(10 + i);
	}
}

static int digest_parse_fast(const char *s, size_t len, struct sg_digest *ret)
{
	if (len != 7 + 64 || memcmp(s, "sha256:", 7) != 0)
		return sg_digest_parse(s, len, ret);   /* its error codes */
	const unsigned char *h = (const unsigned char *)s + 7;
	int bad = 0;
	for (int i = 0; i < 32; i++) {
		int hi = hex_table[h[2 * i]], lo = hex_table[h[2 * i + 1]];
		bad |= hi | lo;
		ret->bytes[i] = (uint8_t)((hi & 15) << 4 | (lo & 15));
	}
	return bad < 0 ? -EINVAL : 0;
}

/* A value for a key we ignore, or a container where a scalar is expected. */
static int unexpected_container(struct parser *p)
{
	if (p->state == S_TOP_VAL && p->field == SG_TOC_FIELD_XATTRS)
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "\"entries\" is not an array");
	if (p->state == S_TOP_VAL || (p->state == S_ENTRY_VAL && p->field == SG_TOC_FIELD_NONE)) {
		p->skip = 1;
		return 1;
	}
	return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "unexpected object or array in TOC entry %u",
		    p->nentries + 1);
}

static int cb_start_map(void *ctx)
{
	struct parser *p = ctx;

	if (p->skip) {
		p->skip++;
		return 1;
	}
	switch (p->state) {
	case S_START:
		p->state = S_TOP;
		return 1;
	case S_ENTRIES: {
		struct sg_toc_entry *e = &p->e;
		e->present = 0;
		e->type = SG_TOC_ENTRY_NONE;
		e->size = e->offset = e->inner = e->chunk_off = e->chunk_size = 0;
		e->mode = e->uid = e->gid = e->dev_major = e->dev_minor = 0;
		e->mtime_sec = 0;
		e->mtime_nsec = 0;
		e->name.len = e->link.len = e->user.len = e->group.len = e->xattrs.len = 0;
		e->nxattrs = 0;
		if (e->user.p)
			e->user.p[0] = 0;
		if (e->group.p)
			e->group.p[0] = 0;
		if (e->link.p)
			e->link.p[0] = 0;
		p->state = S_ENTRY;
		return 1;
	}
	case S_ENTRY_VAL:
		if (p->field == SG_TOC_FIELD_XATTRS) {
			p->e.present |= 1u << SG_TOC_FIELD_XATTRS;
			p->state = S_XATTRS;
			return 1;
		}
		return unexpected_container(p);
	default:
		return unexpected_container(p);
	}
}

static int cb_end_map(void *ctx)
{
	struct parser *p = ctx;

	if (p->skip) {
		if (--p->skip == 0)
			p->state = p->state == S_TOP_VAL ? S_TOP : S_ENTRY;
		return 1;
	}
	switch (p->state) {
	case S_TOP:
		p->state = S_DONE;
		return 1;
	case S_ENTRY:
		p->state = S_ENTRIES;
		return commit_entry(p);
	case S_XATTRS:
		p->state = S_ENTRY;
		return 1;
	default:
		return FAIL(p, SG_ESGZ_E_JSON, EBADMSG, "unbalanced JSON");
	}
}

static int cb_start_array(void *ctx)
{
	struct parser *p = ctx;

	if (p->skip) {
		p->skip++;
		return 1;
	}
	if (p->state == S_TOP_VAL && p->field == SG_TOC_FIELD_XATTRS /* "entries" */) {
		if (p->seen_entries)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "two \"entries\" arrays");
		p->seen_entries = true;
		p->state = S_ENTRIES;
		return 1;
	}
	return unexpected_container(p);
}

static int cb_end_array(void *ctx)
{
	struct parser *p = ctx;

	if (p->skip) {
		if (--p->skip == 0)
			p->state = p->state == S_TOP_VAL ? S_TOP : S_ENTRY;
		return 1;
	}
	if (p->state == S_ENTRIES) {
		p->state = S_TOP;
		return 1;
	}
	return FAIL(p, SG_ESGZ_E_JSON, EBADMSG, "unbalanced JSON");
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t len)
{
	struct parser *p = ctx;

	if (p->skip)
		return 1;
	switch (p->state) {
	case S_TOP:
		/* SG_TOC_FIELD_XATTRS stands for "entries" at the top level; anything else is
		 * skipped. */
		p->field = (len == 7 && memcmp(k, "entries", 7) == 0) ? SG_TOC_FIELD_XATTRS
								     : SG_TOC_FIELD_NONE;
		p->state = S_TOP_VAL;
		return 1;
	case S_ENTRY:
		p->field = field_of(k, len);
		p->state = S_ENTRY_VAL;
		return 1;
	case S_XATTRS:
		if (len == 0 || len > SG_TOC_NAME_MAX || memchr(k, 0, len))
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "bad xattr name in entry %u",
				    p->nentries + 1);
		if (sg_toc_text_set(&p->xattr_name, k, len) < 0)
			return nomem(p);
		p->state = S_XATTR_VAL;
		return 1;
	default:
		return FAIL(p, SG_ESGZ_E_JSON, EBADMSG, "unexpected key");
	}
}

enum { V_STRING, V_NUMBER, V_OTHER, V_NULL };

static int value_scalar(struct parser *p, int kind, const char *s, size_t len)
{
	struct sg_toc_entry *e = &p->e;
	uint64_t *num = NULL;
	struct sg_toc_text *str = NULL;

	if (p->skip)
		return 1;
	switch (p->state) {
	case S_TOP_VAL:
		if (p->field == SG_TOC_FIELD_XATTRS && kind != V_NULL)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "\"entries\" is not an array");
		p->state = S_TOP;
		return 1;
	case S_XATTR_VAL: {
		p->state = S_XATTRS;
		if (kind != V_STRING)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "xattr value is not a string");
		size_t at = e->xattrs.len;
		uint16_t nl = (uint16_t)(p->xattr_name.len + 1);
		uint32_t vl;
		if (sg_toc_text_reserve(&e->xattrs, at + 6 + nl + 1) < 0)
			return nomem(p);
		memcpy(e->xattrs.p + at + 6, p->xattr_name.p, nl);
		e->xattrs.len = at + 6 + nl;
		int r = base64_append(&e->xattrs, s, len);
		if (r == -ENOMEM)
			return nomem(p);
		if (r < 0)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "xattr \"%s\" is not valid base64",
				    p->xattr_name.p);
		vl = (uint32_t)(e->xattrs.len - at - 6 - nl);
		memcpy(e->xattrs.p + at, &nl, 2);
		memcpy(e->xattrs.p + at + 2, &vl, 4);
		if (++e->nxattrs > 4096 || e->xattrs.len > (1u << 20))
			return FAIL(p, SG_ESGZ_E_LIMIT, E2BIG, "too many xattrs in entry %u",
				    p->nentries + 1);
		return 1;
	}
	case S_ENTRY_VAL:
		break;
	default:
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "TOC is not an object with \"entries\"");
	}
	p->state = S_ENTRY;
	if (kind == V_NULL || p->field == SG_TOC_FIELD_NONE)
		return 1;
	if (e->present & (1u << p->field))
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "a field repeats in entry %u",
			    p->nentries + 1);
	e->present |= 1u << p->field;
	switch (p->field) {
	case SG_TOC_FIELD_SIZE: num = &e->size; break;
	case SG_TOC_FIELD_MODE: num = &e->mode; break;
	case SG_TOC_FIELD_UID: num = &e->uid; break;
	case SG_TOC_FIELD_GID: num = &e->gid; break;
	case SG_TOC_FIELD_OFFSET: num = &e->offset; break;
	case SG_TOC_FIELD_INNEROFFSET: num = &e->inner; break;
	case SG_TOC_FIELD_DEVMAJOR: num = &e->dev_major; break;
	case SG_TOC_FIELD_DEVMINOR: num = &e->dev_minor; break;
	case SG_TOC_FIELD_CHUNKOFFSET: num = &e->chunk_off; break;
	case SG_TOC_FIELD_CHUNKSIZE: num = &e->chunk_size; break;
	case SG_TOC_FIELD_NAME: str = &e->name; break;
	case SG_TOC_FIELD_LINKNAME: str = &e->link; break;
	case SG_TOC_FIELD_USERNAME: str = &e->user; break;
	case SG_TOC_FIELD_GROUPNAME: str = &e->group; break;
	default: break;
	}
	if (num) {
		if (kind != V_NUMBER)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "a numeric field of entry %u is not a number",
				    p->nentries + 1);
		return parse_u64(p, s, len, num);
	}
	if (kind != V_STRING)
		return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "a string field of entry %u is not a string",
			    p->nentries + 1);
	if (str) {
		if (len > SG_TOC_PATH_MAX)
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "a name in entry %u is longer than %d bytes",
				    p->nentries + 1, SG_TOC_PATH_MAX);
		if (memchr(s, 0, len))
			return FAIL(p, SG_ESGZ_E_NAME, EINVAL, "a name in entry %u contains a NUL byte",
				    p->nentries + 1);
		if (sg_toc_text_set(str, s, len) < 0)
			return nomem(p);
		if (str == &e->name)
			sg_toc_builder_hint(p->b, s, len);
		return 1;
	}
	switch (p->field) {
	case SG_TOC_FIELD_TYPE:
		e->type = entry_type_of((const unsigned char *)s, len);
		if (e->type == SG_TOC_ENTRY_NONE)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "entry %u has an unknown type",
				    p->nentries + 1);
		return 1;
	case SG_TOC_FIELD_MODTIME:
		return parse_time(p, s, len);
	case SG_TOC_FIELD_DIGEST:
	case SG_TOC_FIELD_CHUNKDIGEST: {
		bool file = p->field == SG_TOC_FIELD_DIGEST;
		int r = digest_parse_fast(s, len, file ? &e->digest : &e->chunk_digest);
		if (r < 0)
			return FAIL(p, SG_ESGZ_E_SCHEMA, EINVAL, "entry %u has a bad %s",
				    p->nentries + 1, file ? "digest" : "chunkDigest");
		return 1;
	}
	default:
		return 1;
	}
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
	return value_scalar(ctx, V_STRING, (const char *)s, len);
}

static int cb_number(void *ctx, const char *s, size_t len)
{
	return value_scalar(ctx, V_NUMBER, s, len);
}

static int cb_bool(void *ctx, int b)
{
	return value_scalar(ctx, V_OTHER, "", 0);
}

static int cb_null(void *ctx)
{
	return value_scalar(ctx, V_NULL, "", 0);
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

/* ---- the entry point ---- */

static void entry_free(struct sg_toc_entry *e)
{
	free(e->name.p);
	free(e->link.p);
	free(e->user.p);
	free(e->group.p);
	free(e->xattrs.p);
}

/* Runs yajl over the whole text.  0, or the first refusal's errno (err filled). */
static int parse(struct parser *p, yajl_handle h, const void *json, size_t len)
{
	/* Names are bytes to us (tar names need not be UTF-8); skip validation. */
	yajl_config(h, yajl_dont_validate_strings, 1);
	yajl_status st = yajl_parse(h, json, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	if (st != yajl_status_ok) {
		if (p->rc < 0)
			return p->rc;
		unsigned char *msg = yajl_get_error(h, 0, json, len);
		int r = sg_error_setc(p->err, -EBADMSG, SG_ESGZ_E_JSON, "TOC JSON: %s",
				      msg ? (const char *)msg : "parse error");
		if (msg)
			yajl_free_error(h, msg);
		return r;
	}
	if (p->state != S_DONE || !p->seen_entries)
		return sg_error_setc(p->err, -EINVAL, SG_ESGZ_E_SCHEMA,
				     "TOC JSON has no \"entries\" array");
	return 0;
}

int sg_toc_parse_json(const void *json, size_t len, uint64_t toc_offset,
		      const struct sg_esgz_options *opts, struct sg_toc **ret_toc,
		      struct sg_error *err)
{
	struct parser p = { .err = err };
	yajl_handle h = NULL;
	int r;

	if (!ret_toc || (!json && len)) {
		sg_error_clear(err);
		return -EINVAL;
	}
	hex_table_init();
	/* Size the index once from the JSON length (an entry takes about 250-400 bytes of
	 * JSON): one mapping per array, so no regrowth, no rehash, and huge pages from the
	 * start. */
	uint64_t est = len / 320 + 16;
	r = sg_toc_builder_new(toc_offset, est > UINT32_MAX ? UINT32_MAX : (uint32_t)est, opts,
			       &p.b, err);
	if (r < 0)
		goto out;
	h = yajl_alloc(&callbacks, NULL, &p);
	if (!h) {
		r = sg_error_setc(err, -ENOMEM, SG_ESGZ_E_NOMEM, "out of memory");
		goto out;
	}
	r = parse(&p, h, json, len);
	if (r == 0)
		r = sg_toc_builder_finish(p.b, ret_toc, err);
out:
	if (h)
		yajl_free(h);
	entry_free(&p.e);
	free(p.xattr_name.p);
	sg_toc_builder_free(p.b);
	return r < 0 ? r : 0;
}
