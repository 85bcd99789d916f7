/* Tar parsing over a memory buffer; see tar.h.  Field semantics follow Go's archive/tar
 * (reader.go, format.go, strconv.go), which is what the reference eStargz converter sees. */
#include "fs/tar.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ustar header layout */
#define OFF_NAME      0
#define OFF_MODE      100
#define OFF_UID       108
#define OFF_GID       116
#define OFF_SIZE      124
#define OFF_MTIME     136
#define OFF_CHKSUM    148
#define OFF_TYPE      156
#define OFF_LINKNAME  157
#define OFF_MAGIC     257
#define OFF_VERSION   263
#define OFF_UNAME     265
#define OFF_GNAME     297
#define OFF_DEVMAJOR  329
#define OFF_DEVMINOR  337
#define OFF_PREFIX    345
#define OFF_STAR_TRAILER 508

enum tar_format { FMT_V7, FMT_USTAR, FMT_GNU, FMT_STAR };

static uint64_t pad512(uint64_t n)
{
	return (n + SG_TAR_BLOCK - 1) & ~(uint64_t)(SG_TAR_BLOCK - 1);
}

static int fail(struct sg_tar_reader *r, int err, const char *name, uint64_t off, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int fail(struct sg_tar_reader *r, int err, const char *name, uint64_t off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (name && *name)
		n = snprintf(r->err, sizeof(r->err), "tar entry %u \"%.200s\" (header at offset %llu): ",
			     r->index, name, (unsigned long long)off);
	else
		n = snprintf(r->err, sizeof(r->err), "tar entry %u (header at offset %llu): ", r->index,
			     (unsigned long long)off);
	if (n < 0 || (size_t)n >= sizeof(r->err))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(r->err + n, sizeof(r->err) - (size_t)n, fmt, ap);
	va_end(ap);
	return err;
}

void sg_tar_reader_init(struct sg_tar_reader *r, const void *buf, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->buf = buf;
	r->len = len;
}

/* Length of a NUL-terminated field of at most max bytes. */
static size_t field_len(const uint8_t *p, size_t max)
{
	const uint8_t *z = memchr(p, 0, max);
	return z ? (size_t)(z - p) : max;
}

/* Go's parser.parseNumeric: base-256 when the top bit is set, else octal padded with spaces
 * and NULs.  Returns 0 and sets *ok = false on garbage or overflow. */
static int64_t parse_numeric(const uint8_t *b, size_t n, bool *ok)
{
	if (n > 0 && (b[0] & 0x80)) {
		uint8_t inv = (b[0] & 0x40) ? 0xff : 0x00;
		uint64_t x = 0;
		for (size_t i = 0; i < n; i++) {
			uint8_t c = b[i] ^ inv;
			if (i == 0)
				c &= 0x7f;
			if (x >> 56) {
				*ok = false;
				return 0;
			}
			x = x << 8 | c;
		}
		if (x >> 63) {
			*ok = false;
			return 0;
		}
		return inv ? (int64_t)~x : (int64_t)x;
	}
	size_t s = 0, e = n;
	while (s < e && (b[s] == ' ' || b[s] == 0))
		s++;
	while (e > s && (b[e - 1] == ' ' || b[e - 1] == 0))
		e--;
	if (s == e)
		return 0;
	const uint8_t *z = memchr(b + s, 0, e - s);   /* parseString: stop at a NUL */
	if (z)
		e = (size_t)(z - b);
	uint64_t x = 0;
	for (size_t i = s; i < e; i++) {
		if (b[i] < '0' || b[i] > '7' || (x >> 61)) {
			*ok = false;
			return 0;
		}
		x = x << 3 | (uint64_t)(b[i] - '0');
	}
	if (x >> 63) {   /* Go converts the uint64 to int64; anything this large is bogus */
		*ok = false;
		return 0;
	}
	return (int64_t)x;
}

/* strconv.ParseInt(s, 10, 64) */
static bool parse_dec(const char *s, size_t n, int64_t *ret)
{
	bool neg = false;
	uint64_t x = 0;
	size_t i = 0;

	if (n > 0 && (s[0] == '+' || s[0] == '-')) {
		neg = s[0] == '-';
		i = 1;
	}
	if (i == n)
		return false;
	for (; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (x > (UINT64_MAX - 9) / 10)
			return false;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	if (neg ? x > (uint64_t)INT64_MAX + 1 : x > (uint64_t)INT64_MAX)
		return false;
	*ret = neg ? (int64_t)(0 - x) : (int64_t)x;
	return true;
}

/* Go's parsePAXTime: "sec[.frac]" with sec possibly negative. */
static bool parse_pax_time(const char *s, size_t n, int64_t *sec, int32_t *nsec)
{
	const char *dot = memchr(s, '.', n);
	size_t sl = dot ? (size_t)(dot - s) : n;
	int64_t secs, ns = 0;

	if (!parse_dec(s, sl, &secs))
		return false;
	if (dot) {
		const char *f = dot + 1;
		size_t fl = n - sl - 1;
		if (fl == 0)
			goto done;
		for (size_t i = 0; i < fl; i++)
			if (f[i] < '0' || f[i] > '9')
				return false;
		for (size_t i = 0; i < 9; i++)
			ns = ns * 10 + (i < fl ? f[i] - '0' : 0);
		if (sl > 0 && s[0] == '-')
			ns = -ns;
	}
done:
	/* time.Unix normalizes nsec into [0, 1e9) */
	if (ns < 0) {
		if (secs == INT64_MIN)
			return false;
		secs -= 1;
		ns += 1000000000;
	}
	*sec = secs;
	*nsec = (int32_t)ns;
	return true;
}

static bool checksum_ok(const uint8_t *blk)
{
	bool ok = true;
	int64_t want = parse_numeric(blk + OFF_CHKSUM, 8, &ok);
	int64_t u = 0, s = 0;

	if (!ok)
		return false;
	for (int i = 0; i < SG_TAR_BLOCK; i++) {
		uint8_t c = (i >= OFF_CHKSUM && i < OFF_CHKSUM + 8) ? ' ' : blk[i];
		u += c;
		s += (int8_t)c;
	}
	return want == u || want == s;
}

static enum tar_format block_format(const uint8_t *blk)
{
	if (memcmp(blk + OFF_MAGIC, "ustar\0", 6) == 0)
		return memcmp(blk + OFF_STAR_TRAILER, "tar\0", 4) == 0 ? FMT_STAR : FMT_USTAR;
	if (memcmp(blk + OFF_MAGIC, "ustar ", 6) == 0 && memcmp(blk + OFF_VERSION, " \0", 2) == 0)
		return FMT_GNU;
	return FMT_V7;
}

static bool is_zero_block(const uint8_t *blk)
{
	for (int i = 0; i < SG_TAR_BLOCK; i++)
		if (blk[i])
			return false;
	return true;
}

static char *dup_n(const void *p, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		return NULL;
	memcpy(s, p, n);
	s[n] = 0;
	return s;
}

struct pax_rec {
	const char *k, *v;
	size_t kl, vl;
};

/* Iterates the records "LEN KEY=VALUE\n" of a PAX header.  Returns 1 and the record, 0 at the
 * end, -EBADMSG on a malformed record (Go's parsePAXRecord + validPAXRecord). */
static int pax_next(const char **p, const char *end, struct pax_rec *rec)
{
	const char *s = *p;
	size_t avail = (size_t)(end - s);
	const char *sp, *eq;
	int64_t n;

	if (avail == 0)
		return 0;
	sp = memchr(s, ' ', avail);
	if (!sp || !parse_dec(s, (size_t)(sp - s), &n) || n < 5 || (uint64_t)n > avail ||
	    (sp - s) + 1 >= n || s[n - 1] != '\n')
		return -EBADMSG;
	eq = memchr(sp + 1, '=', (size_t)(s + n - 1 - (sp + 1)));
	if (!eq || eq == sp + 1)
		return -EBADMSG;
	rec->k = sp + 1;
	rec->kl = (size_t)(eq - rec->k);
	rec->v = eq + 1;
	rec->vl = (size_t)(s + n - 1 - rec->v);
	if (memchr(rec->k, 0, rec->kl))
		return -EBADMSG;
	*p = s + n;
	return 1;
}

static bool key_is(const struct pax_rec *rec, const char *key)
{
	size_t l = strlen(key);
	return rec->kl == l && memcmp(rec->k, key, l) == 0;
}

#define XATTR_PREFIX "SCHILY.xattr."

static int add_xattr(struct sg_tar_entry *e, const struct pax_rec *rec)
{
	size_t pl = strlen(XATTR_PREFIX);
	const char *k = rec->k + pl;
	size_t kl = rec->kl - pl;
	uint8_t *v = malloc(rec->vl ? rec->vl : 1);

	if (!v)
		return -ENOMEM;
	memcpy(v, rec->v, rec->vl);
	for (size_t i = 0; i < e->n_xattrs; i++) {
		if (strlen(e->xattrs[i].key) == kl && memcmp(e->xattrs[i].key, k, kl) == 0) {
			free(e->xattrs[i].value);
			e->xattrs[i].value = v;
			e->xattrs[i].len = rec->vl;
			return 0;
		}
	}
	struct sg_tar_xattr *nx = realloc(e->xattrs, (e->n_xattrs + 1) * sizeof(*nx));
	char *key = dup_n(k, kl);
	if (!nx || !key) {
		if (nx)
			e->xattrs = nx;
		free(key);
		free(v);
		return -ENOMEM;
	}
	e->xattrs = nx;
	e->xattrs[e->n_xattrs++] = (struct sg_tar_xattr){ .key = key, .value = v, .len = rec->vl };
	return 0;
}

static int set_str(char **dst, const char *s, size_t n)
{
	char *d = dup_n(s, n);
	if (!d)
		return -ENOMEM;
	free(*dst);
	*dst = d;
	return 0;
}

void sg_tar_entry_done(struct sg_tar_entry *e)
{
	if (!e)
		return;
	free(e->name);
	free(e->linkname);
	free(e->uname);
	free(e->gname);
	for (size_t i = 0; i < e->n_xattrs; i++) {
		free(e->xattrs[i].key);
		free(e->xattrs[i].value);
	}
	free(e->xattrs);
	memset(e, 0, sizeof(*e));
}

/* Applies a PAX extended header to the entry (Go's mergePAX). */
static int apply_pax(struct sg_tar_reader *r, struct sg_tar_entry *e, const char *pax, size_t pax_len,
		     uint64_t hdr_off, int64_t *size, bool *size_set)
{
	const char *p = pax, *end = pax + pax_len;
	struct pax_rec rec;
	int k;

	while ((k = pax_next(&p, end, &rec)) > 0) {
		int ret = 0;
		bool ok = true;

		if (key_is(&rec, "path") || key_is(&rec, "linkpath") || key_is(&rec, "uname") ||
		    key_is(&rec, "gname")) {
			if (memchr(rec.v, 0, rec.vl))
				return fail(r, -EBADMSG, e->name, hdr_off, "PAX record %.*s contains a NUL byte",
					    (int)rec.kl, rec.k);
		}
		if (key_is(&rec, "path"))
			ret = set_str(&e->name, rec.v, rec.vl);
		else if (key_is(&rec, "linkpath"))
			ret = set_str(&e->linkname, rec.v, rec.vl);
		else if (key_is(&rec, "uname"))
			ret = set_str(&e->uname, rec.v, rec.vl);
		else if (key_is(&rec, "gname"))
			ret = set_str(&e->gname, rec.v, rec.vl);
		else if (key_is(&rec, "uid"))
			ok = parse_dec(rec.v, rec.vl, &e->uid);
		else if (key_is(&rec, "gid"))
			ok = parse_dec(rec.v, rec.vl, &e->gid);
		else if (key_is(&rec, "size")) {
			ok = parse_dec(rec.v, rec.vl, size);
			*size_set = true;
		} else if (key_is(&rec, "mtime"))
			ok = parse_pax_time(rec.v, rec.vl, &e->mtime_sec, &e->mtime_nsec);
		else if (rec.kl > 11 && memcmp(rec.k, "GNU.sparse.", 11) == 0)
			return fail(r, -ENOTSUP, e->name, hdr_off,
				    "sparse files (PAX %.*s) are not supported; re-create the layer without --sparse",
				    (int)rec.kl, rec.k);
		else if (rec.kl > strlen(XATTR_PREFIX) && memcmp(rec.k, XATTR_PREFIX, strlen(XATTR_PREFIX)) == 0)
			ret = add_xattr(e, &rec);
		if (ret < 0)
			return fail(r, ret, e->name, hdr_off, "out of memory");
		if (!ok)
			return fail(r, -EBADMSG, e->name, hdr_off, "PAX record %.*s has a bad value \"%.*s\"",
				    (int)rec.kl, rec.k, (int)(rec.vl > 40 ? 40 : rec.vl), rec.v);
	}
	if (k < 0)
		return fail(r, -EBADMSG, e->name, hdr_off, "malformed PAX extended header record at byte %zu",
			    (size_t)(p - pax));
	return 0;
}

int sg_tar_next(struct sg_tar_reader *r, struct sg_tar_entry *ret)
{
	const uint8_t *buf = r->buf;
	const char *pax = NULL, *longname = NULL, *longlink = NULL;
	size_t pax_len = 0, longname_len = 0, longlink_len = 0;
	uint64_t start = r->pos, pos = r->pos;
	struct sg_tar_entry e;
	int err;

	if (r->done)
		return 0;
	memset(&e, 0, sizeof(e));
	for (;;) {
		const uint8_t *blk;
		bool ok = true;
		int64_t hsize;
		char type;

		if (pos == r->len || (pos > r->len)) {
			if (pos != start)
				return fail(r, -EBADMSG, NULL, pos, "archive ends after an extended header");
			r->done = true;
			return 0;
		}
		if (r->len - pos < SG_TAR_BLOCK)
			return fail(r, -EBADMSG, NULL, pos, "truncated header (%llu bytes left)",
				    (unsigned long long)(r->len - pos));
		blk = buf + pos;
		if (is_zero_block(blk)) {
			if (pos != start)
				return fail(r, -EBADMSG, NULL, pos, "end-of-archive marker after an extended header");
			if (r->len - pos >= 2 * SG_TAR_BLOCK && !is_zero_block(blk + SG_TAR_BLOCK))
				return fail(r, -EBADMSG, NULL, pos,
					    "a zero block followed by a header (concatenated archives are not supported)");
			r->done = true;
			return 0;
		}
		if (!checksum_ok(blk))
			return fail(r, -EBADMSG, NULL, pos, "bad header checksum (not a tar archive, or damaged)");
		type = (char)blk[OFF_TYPE];
		hsize = parse_numeric(blk + OFF_SIZE, 12, &ok);
		if (!ok || hsize < 0)
			return fail(r, -EBADMSG, NULL, pos, "bad size field");
		if (type == 'x' || type == 'L' || type == 'K') {
			uint64_t d = pos + SG_TAR_BLOCK;
			if ((uint64_t)hsize > SG_TAR_MAX_SPECIAL)
				return fail(r, -EBADMSG, NULL, pos, "extended header of %lld bytes is too large",
					    (long long)hsize);
			if ((uint64_t)hsize > r->len - d)
				return fail(r, -EBADMSG, NULL, pos, "truncated extended header");
			if (type == 'x') {
				pax = (const char *)buf + d;
				pax_len = (size_t)hsize;
			} else if (type == 'L') {
				longname = (const char *)buf + d;
				longname_len = field_len(buf + d, (size_t)hsize);
			} else {
				longlink = (const char *)buf + d;
				longlink_len = field_len(buf + d, (size_t)hsize);
			}
			pos = d + pad512((uint64_t)hsize);
			continue;
		}

		/* A real entry (or a global header). */
		enum tar_format fmt = block_format(blk);
		size_t nl = field_len(blk + OFF_NAME, 100);
		const uint8_t *prefix = NULL;
		size_t pl = 0;

		e.index = r->index;
		e.hdr_off = start;
		e.mode = parse_numeric(blk + OFF_MODE, 8, &ok);
		e.uid = parse_numeric(blk + OFF_UID, 8, &ok);
		e.gid = parse_numeric(blk + OFF_GID, 8, &ok);
		e.mtime_sec = parse_numeric(blk + OFF_MTIME, 12, &ok);
		if (fmt != FMT_V7) {
			e.devmajor = parse_numeric(blk + OFF_DEVMAJOR, 8, &ok);
			e.devminor = parse_numeric(blk + OFF_DEVMINOR, 8, &ok);
			e.uname = dup_n(blk + OFF_UNAME, field_len(blk + OFF_UNAME, 32));
			e.gname = dup_n(blk + OFF_GNAME, field_len(blk + OFF_GNAME, 32));
		} else {
			e.uname = dup_n("", 0);
			e.gname = dup_n("", 0);
		}
		if (fmt == FMT_USTAR) {
			prefix = blk + OFF_PREFIX;
			pl = field_len(prefix, 155);
		} else if (fmt == FMT_STAR) {
			prefix = blk + OFF_PREFIX;
			pl = field_len(prefix, 131);
		}
		if (pl > 0) {
			e.name = malloc(pl + 1 + nl + 1);
			if (e.name) {
				memcpy(e.name, prefix, pl);
				e.name[pl] = '/';
				memcpy(e.name + pl + 1, blk + OFF_NAME, nl);
				e.name[pl + 1 + nl] = 0;
			}
		} else {
			e.name = dup_n(blk + OFF_NAME, nl);
		}
		e.linkname = dup_n(blk + OFF_LINKNAME, field_len(blk + OFF_LINKNAME, 100));
		if (!e.name || !e.linkname || !e.uname || !e.gname) {
			err = fail(r, -ENOMEM, NULL, start, "out of memory");
			goto fail;
		}
		if (!ok) {
			err = fail(r, -EBADMSG, e.name, start, "bad numeric field in header");
			goto fail;
		}

		if (type == 'g') {
			if (pos != start) {
				err = fail(r, -EBADMSG, e.name, start, "extended header before a global header");
				goto fail;
			}
			if ((uint64_t)hsize > SG_TAR_MAX_SPECIAL || (uint64_t)hsize > r->len - (pos + SG_TAR_BLOCK)) {
				err = fail(r, -EBADMSG, e.name, start, "bad global header size");
				goto fail;
			}
			/* Validate its records; report nothing from them. */
			const char *p = (const char *)buf + pos + SG_TAR_BLOCK, *end = p + hsize;
			struct pax_rec rec;
			int k;
			while ((k = pax_next(&p, end, &rec)) > 0)
				;
			if (k < 0) {
				err = fail(r, -EBADMSG, e.name, start, "malformed PAX global header");
				goto fail;
			}
			e.type = 'g';
			e.data_off = pos + SG_TAR_BLOCK;
			e.size = 0;
			e.end_off = e.data_off + pad512((uint64_t)hsize);
			r->pos = e.end_off;
			r->index++;
			*ret = e;
			return 1;
		}

		int64_t size = hsize;
		bool size_set = false;
		if (pax) {
			err = apply_pax(r, &e, pax, pax_len, start, &size, &size_set);
			if (err < 0)
				goto fail;
		}
		if (longname) {
			err = set_str(&e.name, longname, longname_len);
			if (err < 0) {
				fail(r, err, NULL, start, "out of memory");
				goto fail;
			}
		}
		if (longlink) {
			err = set_str(&e.linkname, longlink, longlink_len);
			if (err < 0) {
				fail(r, err, NULL, start, "out of memory");
				goto fail;
			}
		}
		if (type == '\0') {
			size_t l = strlen(e.name);
			type = (l > 0 && e.name[l - 1] == '/') ? '5' : '0';
		}
		switch (type) {
		case '0':
			break;
		case '1': case '2': case '3': case '4': case '5': case '6':
			size = 0;   /* header-only types carry no payload, whatever the size field says */
			break;
		case 'S':
			err = fail(r, -ENOTSUP, e.name, start,
				   "sparse files are not supported; re-create the layer without --sparse");
			goto fail;
		case '7':
			err = fail(r, -ENOTSUP, e.name, start, "contiguous files (type '7') are not supported");
			goto fail;
		default:
			if (type >= 0x20 && type < 0x7f)
				err = fail(r, -ENOTSUP, e.name, start, "unsupported entry type '%c'", type);
			else
				err = fail(r, -ENOTSUP, e.name, start, "unsupported entry type 0x%02x", (uint8_t)type);
			goto fail;
		}
		if (size < 0) {
			err = fail(r, -EBADMSG, e.name, start, "negative size");
			goto fail;
		}
		e.type = type;
		e.data_off = pos + SG_TAR_BLOCK;
		e.size = (uint64_t)size;
		if (e.size > r->len - e.data_off) {
			err = fail(r, -EBADMSG, e.name, start,
				   "truncated: payload of %llu bytes, only %llu left in the archive",
				   (unsigned long long)e.size, (unsigned long long)(r->len - e.data_off));
			goto fail;
		}
		if (strlen(e.name) == 0) {
			err = fail(r, -EBADMSG, NULL, start, "entry has an empty name");
			goto fail;
		}
		e.end_off = e.data_off + pad512(e.size);
		r->pos = e.end_off;
		r->index++;
		*ret = e;
		return 1;
	}
fail:
	sg_tar_entry_done(&e);
	return err;
}

char *sg_tar_clean_name(const char *name)
{
	/* Go's path.Clean on "/" + name, a rooted path: "." elements vanish, ".." pops (never
	 * above the root), slashes collapse, no trailing slash.  The result drops the root "/". */
	size_t n = strlen(name);
	char *out = malloc(n + 2);
	size_t w = 0;   /* output length, excluding the implicit leading "/" */
	size_t i = 0;

	if (!out)
		return NULL;
	while (i < n) {
		size_t j;
		while (i < n && name[i] == '/')
			i++;
		j = i;
		while (j < n && name[j] != '/')
			j++;
		size_t len = j - i;
		if (len == 0 || (len == 1 && name[i] == '.')) {
			/* skip */
		} else if (len == 2 && name[i] == '.' && name[i + 1] == '.') {
			while (w > 0 && out[w - 1] != '/')
				w--;
			if (w > 0)
				w--;   /* drop the separator */
		} else {
			if (w > 0)
				out[w++] = '/';
			memcpy(out + w, name + i, len);
			w += len;
		}
		i = j;
	}
	out[w] = 0;
	return out;
}

static void put_octal(uint8_t *dst, size_t width, uint64_t v)
{
	/* width - 1 octal digits, zero padded, then NUL (Go's formatOctal) */
	dst[width - 1] = 0;
	for (size_t i = width - 1; i-- > 0;) {
		dst[i] = (uint8_t)('0' + (v & 7));
		v >>= 3;
	}
}

int sg_tar_make_reg_header(uint8_t blk[SG_TAR_BLOCK], const char *name, uint64_t size)
{
	size_t nl = strlen(name);
	unsigned sum = 0;

	if (nl > 100 || size >= (1ull << 33))
		return -ENAMETOOLONG;
	memset(blk, 0, SG_TAR_BLOCK);
	memcpy(blk + OFF_NAME, name, nl);
	put_octal(blk + OFF_MODE, 8, 0);
	put_octal(blk + OFF_UID, 8, 0);
	put_octal(blk + OFF_GID, 8, 0);
	put_octal(blk + OFF_SIZE, 12, size);
	put_octal(blk + OFF_MTIME, 12, 0);
	blk[OFF_TYPE] = '0';
	memcpy(blk + OFF_MAGIC, "ustar\0" "00", 8);
	put_octal(blk + OFF_DEVMAJOR, 8, 0);
	put_octal(blk + OFF_DEVMINOR, 8, 0);
	memset(blk + OFF_CHKSUM, ' ', 8);
	for (int i = 0; i < SG_TAR_BLOCK; i++)
		sum += blk[i];
	/* "%06o\0 " */
	put_octal(blk + OFF_CHKSUM, 7, sum);
	blk[OFF_CHKSUM + 7] = ' ';
	return 0;
}
