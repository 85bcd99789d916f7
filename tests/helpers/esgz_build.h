/* A tiny eStargz writer for tests, fuzz seeds and benchmarks (header-only, static).
 *
 * It lays a blob out like the reference converter: each file's tar header goes into the
 * current gzip member, each chunk of content starts a new member, and the TOC
 * (stargz.index.json as the last tar entry, plus the end-of-archive blocks) is one member
 * followed by the footer.  TOC entries are JSON text the caller can also write by hand
 * (esgz_toc_raw), which is how hostile-input tests describe impossible layers.
 *
 * Not library code: on allocation failure it aborts. */
#ifndef STARGZD_TESTS_ESGZ_BUILD_H
#define STARGZD_TESTS_ESGZ_BUILD_H

#include <libdeflate.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/digest.h"

struct esgz_buf {
	uint8_t *p;
	size_t len, cap;
};

struct esgz_b {
	struct esgz_buf blob;     /* compressed output so far */
	struct esgz_buf pending;  /* uncompressed bytes of the open member */
	struct esgz_buf toc;      /* the "entries" array text, without brackets */
	struct libdeflate_compressor *c;
	size_t tar_len;           /* uncompressed tar bytes written (for padding) */
	int nentries;
	int level;
	/* When set, the TOC member starts with these header blocks (e.g. a PAX header and a
	 * ustar header of the caller's making) instead of the default ustar header. */
	const uint8_t *toc_hdr;
	size_t toc_hdr_len;
};

static inline void esgz_buf_reserve(struct esgz_buf *b, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort();
		b->cap = cap;
	}
}

static inline void esgz_buf_put(struct esgz_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort();
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
}

static inline void esgz_buf_printf(struct esgz_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline void esgz_buf_printf(struct esgz_buf *b, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < (int)sizeof(small)) {
		esgz_buf_put(b, small, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big)
		abort();
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	esgz_buf_put(b, big, (size_t)n);
	free(big);
}

static inline void esgz_init(struct esgz_b *b, int level)
{
	memset(b, 0, sizeof(*b));
	b->level = level;
	b->c = libdeflate_alloc_compressor(level);
	if (!b->c)
		abort();
}

static inline void esgz_done(struct esgz_b *b)
{
	free(b->blob.p);
	free(b->pending.p);
	free(b->toc.p);
	libdeflate_free_compressor(b->c);
	memset(b, 0, sizeof(*b));
}

/* Closes the open member (if it has bytes) into the blob. */
static inline void esgz_flush(struct esgz_b *b)
{
	if (!b->pending.len)
		return;
	size_t bound = libdeflate_gzip_compress_bound(b->c, b->pending.len);
	esgz_buf_reserve(&b->blob, bound);
	size_t n = libdeflate_gzip_compress(b->c, b->pending.p, b->pending.len,
					    b->blob.p + b->blob.len, bound);
	if (!n)
		abort();
	b->blob.len += n;
	b->pending.len = 0;
}

static inline void esgz_tar_octal(char *dst, size_t width, uint64_t v)
{
	/* width-1 octal digits and a NUL */
	snprintf(dst, width, "%0*llo", (int)width - 1, (unsigned long long)v);
}

/* A ustar header (names up to 255 via prefix). */
static inline void esgz_tar_header(uint8_t h[512], const char *name, char typeflag,
				   uint64_t size, unsigned mode, const char *linkname)
{
	size_t nl = strlen(name);

	memset(h, 0, 512);
	if (nl <= 100) {
		memcpy(h, name, nl);
	} else {
		const char *cut = name + nl - 100;
		while (*cut && *cut != '/')
			cut++;
		if (*cut == '/' && (size_t)(cut - name) <= 155) {
			memcpy(h + 345, name, (size_t)(cut - name));
			memcpy(h, cut + 1, strlen(cut + 1));
		} else {
			memcpy(h, name, 100);   /* truncated: tests do not rely on it */
		}
	}
	esgz_tar_octal((char *)h + 100, 8, mode & 07777);
	esgz_tar_octal((char *)h + 108, 8, 0);
	esgz_tar_octal((char *)h + 116, 8, 0);
	esgz_tar_octal((char *)h + 124, 12, size);
	esgz_tar_octal((char *)h + 136, 12, 0);
	h[156] = (uint8_t)typeflag;
	if (linkname)
		memcpy(h + 157, linkname, strnlen(linkname, 100));
	memcpy(h + 257, "ustar\0" "00", 8);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	h[155] = ' ';
}

static inline void esgz_tar_put(struct esgz_b *b, const void *p, size_t n)
{
	esgz_buf_put(&b->pending, p, n);
	b->tar_len += n;
}

static inline void esgz_tar_pad(struct esgz_b *b)
{
	static const uint8_t zero[512];
	size_t rem = b->tar_len % 512;
	if (rem)
		esgz_tar_put(b, zero, 512 - rem);
}

/* Appends one raw TOC entry object, e.g. esgz_toc_raw(b, "{\"name\":\"a\",\"type\":\"dir\"}"). */
static inline void esgz_toc_raw(struct esgz_b *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline void esgz_toc_raw(struct esgz_b *b, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	if (b->nentries++)
		esgz_buf_put(&b->toc, ",", 1);
	esgz_buf_put(&b->toc, s, (size_t)n);
	free(s);
}

static inline const char *esgz_typename(char t)
{
	switch (t) {
	case '5': return "dir";
	case '2': return "symlink";
	case '1': return "hardlink";
	case '3': return "char";
	case '4': return "block";
	case '6': return "fifo";
	default: return "reg";
	}
}

/* Adds a tar entry and its TOC entries.  chunk_size 0 = one chunk.  extra is appended to
 * the first TOC entry's fields (e.g. ",\"uid\":5"), may be NULL. */
static inline void esgz_add(struct esgz_b *b, const char *name, char typeflag, unsigned mode,
			    const void *data, size_t len, const char *linkname, size_t chunk_size,
			    const char *extra)
{
	uint8_t h[512];
	char dg[SG_DIGEST_STRLEN + 1];
	struct sg_digest d;

	esgz_tar_header(h, name, typeflag, typeflag == '0' ? len : 0, mode, linkname);
	esgz_tar_put(b, h, 512);
	if (typeflag != '0' || len == 0) {
		esgz_toc_raw(b, "{\"name\":\"%s\",\"type\":\"%s\",\"mode\":%u,"
			     "\"modtime\":\"2020-01-02T03:04:05Z\"%s%s%s%s}",
			     name, esgz_typename(typeflag), mode, linkname ? ",\"linkName\":\"" : "",
			     linkname ? linkname : "", linkname ? "\"" : "", extra ? extra : "");
		return;
	}
	sg_sha256(data, len, &d);
	sg_digest_format(&d, dg);
	if (!chunk_size || chunk_size > len)
		chunk_size = len;
	for (size_t off = 0; off < len; off += chunk_size) {
		size_t n = len - off < chunk_size ? len - off : chunk_size;
		char cd[SG_DIGEST_STRLEN + 1];
		struct sg_digest cdd;

		esgz_flush(b);
		size_t member = b->blob.len;
		esgz_tar_put(b, (const uint8_t *)data + off, n);
		sg_sha256((const uint8_t *)data + off, n, &cdd);
		sg_digest_format(&cdd, cd);
		if (off == 0)
			esgz_toc_raw(b, "{\"name\":\"%s\",\"type\":\"reg\",\"size\":%zu,\"mode\":%u,"
				     "\"modtime\":\"2020-01-02T03:04:05Z\",\"offset\":%zu,"
				     "\"digest\":\"%s\",\"chunkSize\":%zu,\"chunkDigest\":\"%s\"%s}",
				     name, len, mode, member, dg, n == len ? 0 : n, cd,
				     extra ? extra : "");
		else
			esgz_toc_raw(b, "{\"name\":\"%s\",\"type\":\"chunk\",\"offset\":%zu,"
				     "\"chunkOffset\":%zu,\"chunkSize\":%zu,\"chunkDigest\":\"%s\"}",
				     name, member, off, off + n == len ? 0 : n, cd);
	}
	esgz_tar_pad(b);
}

/* Appends the TOC member and footer.  toc_json NULL = the accumulated entries.  The blob
 * stays in b->blob.  *ret_toc_digest (may be NULL) gets the digest of the TOC JSON. */
static inline void esgz_finish_json(struct esgz_b *b, const char *toc_json, size_t toc_len,
				    int legacy, struct sg_digest *ret_toc_digest)
{
	static const uint8_t zero[1024];
	uint8_t h[512];

	esgz_flush(b);
	size_t toc_off = b->blob.len;
	esgz_tar_header(h, "stargz.index.json", '0', toc_len, 0644, NULL);
	b->tar_len = 0;
	if (b->toc_hdr)
		esgz_tar_put(b, b->toc_hdr, b->toc_hdr_len);
	else
		esgz_tar_put(b, h, 512);
	esgz_tar_put(b, toc_json, toc_len);
	esgz_tar_pad(b);
	esgz_tar_put(b, zero, 1024);
	esgz_flush(b);
	if (ret_toc_digest)
		sg_sha256(toc_json, toc_len, ret_toc_digest);

	/* The footer: an empty gzip member whose FEXTRA carries the TOC offset. */
	uint8_t f[51];
	size_t n = 0;
	const uint8_t hdr[10] = { 0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff };
	char off[17];
	memcpy(f, hdr, 10);
	n = 10;
	snprintf(off, sizeof(off), "%016zx", toc_off);
	if (legacy) {
		f[n++] = 22; f[n++] = 0;
	} else {
		f[n++] = 26; f[n++] = 0;
		f[n++] = 'S'; f[n++] = 'G'; f[n++] = 22; f[n++] = 0;
	}
	memcpy(f + n, off, 16); n += 16;
	memcpy(f + n, "STARGZ", 6); n += 6;
	const uint8_t tail[13] = { 1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0 };
	memcpy(f + n, tail, 13); n += 13;
	esgz_buf_put(&b->blob, f, n);
}

static inline void esgz_finish(struct esgz_b *b, int legacy, struct sg_digest *ret_toc_digest)
{
	struct esgz_buf j = { 0 };

	esgz_buf_printf(&j, "{\"version\":1,\"entries\":[%s]}", b->toc.p ? (char *)b->toc.p : "");
	esgz_finish_json(b, (const char *)j.p, j.len, legacy, ret_toc_digest);
	free(j.p);
}

/* A node_modules-shaped layer: nfiles regular files of 1-4 KiB spread over packages of
 * about 100 files each (package.json, README.md, lib/ with a few subdirectories), JS-like
 * text content.  Deterministic for a given seed. */
static inline void esgz_gen_node_modules(struct esgz_b *b, unsigned nfiles, uint32_t seed)
{
	static const char *words[] = { "function", "return", "const", "module", "exports",
		"require", "this", "value", "undefined", "=>", "{", "}", "(", ")", ";", "if",
		"else", "null", "async", "await", "options", "callback", "length", "\n" };
	char name[256], *content = malloc(4096);
	uint32_t x = seed ? seed : 1;
	unsigned pkg = 0, in_pkg = 0, per_pkg = 100;

	if (!content)
		abort();
	esgz_add(b, "node_modules/", '5', 0755, NULL, 0, NULL, 0, NULL);
	for (unsigned i = 0; i < nfiles; i++) {
		if (in_pkg == 0) {
			snprintf(name, sizeof(name), "node_modules/pkg-%05u/", pkg);
			esgz_add(b, name, '5', 0755, NULL, 0, NULL, 0, NULL);
			snprintf(name, sizeof(name), "node_modules/pkg-%05u/lib/", pkg);
			esgz_add(b, name, '5', 0755, NULL, 0, NULL, 0, NULL);
		}
		x = x * 1103515245u + 12345u;
		size_t len = 1024 + (x >> 8) % 3073, n = 0;
		while (n < len) {
			x = x * 1103515245u + 12345u;
			const char *w = words[(x >> 16) % (sizeof(words) / sizeof(words[0]))];
			size_t wl = strlen(w);
			if (n + wl + 1 > len)
				wl = len - n - 1 > 0 ? len - n - 1 : 0;
			memcpy(content + n, w, wl);
			n += wl;
			if (n < len)
				content[n++] = ' ';
		}
		if (in_pkg == 0)
			snprintf(name, sizeof(name), "node_modules/pkg-%05u/package.json", pkg);
		else if (in_pkg == 1)
			snprintf(name, sizeof(name), "node_modules/pkg-%05u/README.md", pkg);
		else
			snprintf(name, sizeof(name), "node_modules/pkg-%05u/lib/file-%03u.js", pkg,
				 in_pkg);
		esgz_add(b, name, '0', 0644, content, len, NULL, 0, ",\"uid\":1000,\"gid\":1000,"
			 "\"userName\":\"node\",\"groupName\":\"node\"");
		if (++in_pkg == per_pkg) {
			in_pkg = 0;
			pkg++;
		}
	}
	free(content);
}

/* A layer of nfiles incompressible files "f0", "f1", ... of file_size bytes each (content
 * holds them back to back, filled here from a fixed xorshift sequence) in chunk-sized
 * chunks, written to path.  *ret_toc_digest (may be NULL): the TOC's digest;
 * *ret_blob_digest (may be NULL): the blob's.  Returns 0, or -1 if the file cannot be
 * written. */
static inline int esgz_write_random_files(const char *path, uint8_t *content, int nfiles,
					  size_t file_size, size_t chunk,
					  struct sg_digest *ret_toc_digest,
					  struct sg_digest *ret_blob_digest)
{
	uint64_t x = 88172645463325252ull;
	struct esgz_b b;
	char name[32];

	for (size_t i = 0; i < (size_t)nfiles * file_size; i++) {
		x ^= x << 13; x ^= x >> 7; x ^= x << 17;
		content[i] = (uint8_t)x;
	}
	esgz_init(&b, 1);
	for (int f = 0; f < nfiles; f++) {
		snprintf(name, sizeof(name), "f%d", f);
		esgz_add(&b, name, '0', 0644, content + (size_t)f * file_size, file_size, NULL,
			 chunk, NULL);
	}
	esgz_finish(&b, 0, ret_toc_digest);
	if (ret_blob_digest)
		sg_sha256(b.blob.p, b.blob.len, ret_blob_digest);
	FILE *fp = fopen(path, "w");
	int r = fp && fwrite(b.blob.p, 1, b.blob.len, fp) == b.blob.len ? 0 : -1;
	if (fp && fclose(fp) != 0)
		r = -1;
	esgz_done(&b);
	return r;
}

#endif
