/* eStargz footers, the TOC member, loading (in memory and through a range source) and
 * chunk verification.  The JSON is parsed by toc_parse.c into the index of toc.c. */
#include "fs/estargz.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/loop.h"
#include "daemon/core/offload.h"
#include "fs/gz.h"
#include "fs/big_alloc.h"
#include "daemon/core/range_source.h"
#include "fs/tar.h"
#include "fs/toc_parse.h"

#define ZSTD_CHUNKED_MAGIC "GnUlInUx"
#define EXTERNAL_TOC_MAGIC "STARGZEXTERNALTOC"
/* The tar header, its padding and the two end-of-archive blocks around the JSON. */
#define TOC_TAR_OVERHEAD (512 + 512 + 1024 + 512 * 4)

/* ---- errors ---- */

static const char *const code_names[_SG_ESGZ_CODE_MAX] = {
	[SG_ESGZ_OK] = "ok",
	[SG_ESGZ_E_IO] = "io",
	[SG_ESGZ_E_FOOTER] = "footer",
	[SG_ESGZ_E_UNSUPPORTED] = "unsupported",
	[SG_ESGZ_E_TOC_OFFSET] = "toc-offset",
	[SG_ESGZ_E_TOC_GZIP] = "toc-gzip",
	[SG_ESGZ_E_TOC_TOO_LARGE] = "toc-too-large",
	[SG_ESGZ_E_TOC_TAR] = "toc-tar",
	[SG_ESGZ_E_TOC_DIGEST] = "toc-digest",
	[SG_ESGZ_E_NO_TOC_DIGEST] = "no-toc-digest",
	[SG_ESGZ_E_JSON] = "json",
	[SG_ESGZ_E_SCHEMA] = "schema",
	[SG_ESGZ_E_NAME] = "name",
	[SG_ESGZ_E_DUPLICATE] = "duplicate",
	[SG_ESGZ_E_NOT_DIR] = "not-dir",
	[SG_ESGZ_E_HARDLINK] = "hardlink",
	[SG_ESGZ_E_CHUNK_RANGE] = "chunk-range",
	[SG_ESGZ_E_CHUNK_OVERLAP] = "chunk-overlap",
	[SG_ESGZ_E_OVERFLOW] = "overflow",
	[SG_ESGZ_E_NO_CHUNK_DIGEST] = "no-chunk-digest",
	[SG_ESGZ_E_LIMIT] = "limit",
	[SG_ESGZ_E_NOMEM] = "nomem",
	[SG_ESGZ_E_CHUNK_GZIP] = "chunk-gzip",
	[SG_ESGZ_E_CHUNK_DIGEST] = "chunk-digest",
	[SG_ESGZ_E_CANCELED] = "canceled",
	[SG_ESGZ_E_CHUNK_SIZE] = "chunk-size",
	[SG_ESGZ_E_CHUNK_RATIO] = "chunk-ratio",
};

const char *sg_esgz_code_name(int code)
{
	if (code < 0 || code >= _SG_ESGZ_CODE_MAX || !code_names[code])
		return "unknown";
	return code_names[code];
}

/* Arguments no caller passes: -EINVAL, and no message to go with it. */
static int invalid(struct sg_error *err)
{
	sg_error_clear(err);
	return -EINVAL;
}

/* ---- footer ---- */

static bool hex16(const uint8_t *s, uint64_t *ret)
{
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		uint8_t c = s[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return false;
		v = v << 4 | d;
	}
	*ret = v;
	return true;
}

/* An empty gzip member whose only header extra is `xlen` bytes; returns the extra. */
static const uint8_t *footer_extra(const uint8_t *f, size_t size, unsigned xlen)
{
	if (f[0] != 0x1f || f[1] != 0x8b || f[2] != 8 || f[3] != 0x04)
		return NULL;
	if ((unsigned)(f[10] | f[11] << 8) != xlen || 12 + xlen + 13 != size)
		return NULL;
	/* CRC32 and ISIZE of an empty member are zero. */
	static const uint8_t zero[8];
	if (memcmp(f + size - 8, zero, 8) != 0)
		return NULL;
	return f + 12;
}

int sg_esgz_parse_footer(const void *tail, size_t tail_len, uint64_t blob_size,
			 struct sg_esgz_footer *ret, struct sg_error *err)
{
	const uint8_t *t = tail, *end;
	const uint8_t *x;
	uint64_t off = 0;
	size_t fsize = 0;
	int format = 0;

	if (!ret || (!tail && tail_len) || tail_len > blob_size)
		return invalid(err);
	end = t + tail_len;
	if (tail_len >= 8 && memcmp(end - 8, ZSTD_CHUNKED_MAGIC, 8) == 0)
		return sg_error_setc(err, -EOPNOTSUPP, SG_ESGZ_E_UNSUPPORTED,
				     "zstd:chunked layers are not supported");
	size_t look = tail_len < 80 ? tail_len : 80;
	if (look && memmem(end - look, look, EXTERNAL_TOC_MAGIC, strlen(EXTERNAL_TOC_MAGIC)))
		return sg_error_setc(err, -EOPNOTSUPP, SG_ESGZ_E_UNSUPPORTED,
				     "eStargz with an external TOC is not supported");
	if (tail_len >= SG_ESGZ_FOOTER_SIZE &&
	    (x = footer_extra(end - SG_ESGZ_FOOTER_SIZE, SG_ESGZ_FOOTER_SIZE, 26)) &&
	    x[0] == 'S' && x[1] == 'G' && x[2] == 22 && x[3] == 0 &&
	    memcmp(x + 20, "STARGZ", 6) == 0) {
		if (!hex16(x + 4, &off))
			return sg_error_setc(err, -EBADMSG, SG_ESGZ_E_FOOTER,
					     "eStargz footer has a malformed TOC offset");
		format = SG_ESGZ_FORMAT_ESTARGZ;
		fsize = SG_ESGZ_FOOTER_SIZE;
	} else if (tail_len >= SG_ESGZ_LEGACY_FOOTER_SIZE &&
		   (x = footer_extra(end - SG_ESGZ_LEGACY_FOOTER_SIZE,
				     SG_ESGZ_LEGACY_FOOTER_SIZE, 22)) &&
		   memcmp(x + 16, "STARGZ", 6) == 0) {
		if (!hex16(x, &off))
			return sg_error_setc(err, -EBADMSG, SG_ESGZ_E_FOOTER,
					     "stargz footer has a malformed TOC offset");
		format = SG_ESGZ_FORMAT_LEGACY;
		fsize = SG_ESGZ_LEGACY_FOOTER_SIZE;
	} else {
		if (blob_size < SG_ESGZ_LEGACY_FOOTER_SIZE)
			return sg_error_setc(err, -EBADMSG, SG_ESGZ_E_FOOTER,
					     "blob of %llu bytes is too small for a footer",
					     (unsigned long long)blob_size);
		return sg_error_setc(err, -EBADMSG, SG_ESGZ_E_FOOTER,
				     "no eStargz or stargz footer: not a seekable layer");
	}
	/* The TOC member needs at least an empty gzip member's 18 bytes. */
	if (off > blob_size - fsize || blob_size - fsize - off < 18)
		return sg_error_setc(err, -ERANGE, SG_ESGZ_E_TOC_OFFSET,
				     "TOC offset %llu is outside the blob of %llu bytes",
				     (unsigned long long)off, (unsigned long long)blob_size);
	*ret = (struct sg_esgz_footer){ .format = format, .toc_offset = off,
					.toc_end = blob_size - fsize };
	return 0;
}

/* ---- the TOC member ---- */

/* Finds the JSON inside the decompressed member: the first tar entry (after any PAX or GNU
 * extended headers, which fs/tar.c merges, and PAX global headers), a regular file named
 * stargz.index.json.  *ret_hdr gets its metadata (release with sg_tar_entry_done): the tree
 * shows the file as tar -x creates it. */
static int toc_json(const uint8_t *m, size_t len, const uint8_t **ret_json,
		    size_t *ret_json_len, struct sg_tar_entry *ret_hdr, struct sg_error *err)
{
	struct sg_tar_reader rd;
	struct sg_tar_entry e;
	int r;

	sg_tar_reader_init(&rd, m, len);
	while ((r = sg_tar_next(&rd, &e)) == 1 && e.type == 'g')
		sg_tar_entry_done(&e);
	if (r < 0)
		return sg_error_setc(err, -EBADMSG, SG_ESGZ_E_TOC_TAR,
				     "TOC member is not a valid tar entry: %s", rd.err);
	if (r == 0)
		return sg_error_setc(err, -EBADMSG, SG_ESGZ_E_TOC_TAR,
				     "TOC member holds no tar entry");
	if (e.type != '0')
		r = sg_error_setc(err, -EBADMSG, SG_ESGZ_E_TOC_TAR,
				  "TOC tar entry is not a regular file");
	else if (strcmp(e.name, SG_ESGZ_TOC_NAME) != 0)
		r = sg_error_setc(err, -EBADMSG, SG_ESGZ_E_TOC_TAR,
				  "TOC tar entry is not named " SG_ESGZ_TOC_NAME);
	if (r < 0) {
		sg_tar_entry_done(&e);
		return r;
	}
	*ret_json = m + e.data_off;
	*ret_json_len = (size_t)e.size;
	*ret_hdr = e;
	return 0;
}

/* Hashing a large TOC runs on a helper thread while the parser works: on two cores that
 * takes the hash (~26 ms for a 100k-entry TOC) off the load's critical path.  The index
 * built meanwhile is thrown away unless the digest matches, so nothing unverified escapes;
 * the parser itself is built (and fuzzed) for hostile input. */
#define PARALLEL_HASH_MIN (4u << 20)

struct hash_job {
	const void *data;
	size_t len;
	struct sg_digest digest;
};

static void *hash_thread(void *arg)
{
	struct hash_job *job = arg;

	sg_sha256(job->data, job->len, &job->digest);
	return NULL;
}

static bool need_digest(const struct sg_esgz_options *opts)
{
	return !opts || (!opts->toc_digest && !opts->skip_verify);
}

static int no_digest(struct sg_error *err)
{
	return sg_error_setc(err, -EPERM, SG_ESGZ_E_NO_TOC_DIGEST,
			     "no TOC digest to verify the layer against (the image lacks the "
			     "containerd.io/snapshot/stargz/toc.digest annotation); refusing "
			     "unless verification is turned off explicitly");
}

static uint64_t max_toc(const struct sg_esgz_options *opts)
{
	return opts && opts->max_toc_size ? opts->max_toc_size : SG_ESGZ_DEFAULT_MAX_TOC;
}

/* The TOC member must be exactly one gzip member.  Its ISIZE sizes the buffer (never above
 * max_out, nor above what deflate's 1032:1 ratio allows: a larger claim is a bomb or a lie). */
static int inflate_toc(struct sg_gz *gz, const uint8_t *in, size_t len, uint64_t max_out,
		       uint8_t **ret_out, size_t *ret_cap, size_t *ret_len)
{
	int64_t isize = sg_gz_isize(in, len);
	size_t used = 0, out_len = 0, cap;
	uint8_t *out;
	int r;

	if (isize < 0)
		return (int)isize;
	if (len <= SIZE_MAX / SG_GZ_MAX_DEFLATE_RATIO && len * SG_GZ_MAX_DEFLATE_RATIO < max_out)
		max_out = len * SG_GZ_MAX_DEFLATE_RATIO;
	/* A TOC of 4 GiB or more (ISIZE wraps) is over any sane limit anyway. */
	if ((uint64_t)isize > max_out)
		return -EFBIG;
	cap = (size_t)isize + 1;
	out = sg_big_realloc(NULL, 0, cap);
	if (!out)
		return -ENOMEM;
	r = sg_gz_member(gz, in, len, out, (size_t)isize, &used, &out_len);
	if (r == 0 && (used != len || out_len != (size_t)isize))
		r = -EBADMSG;
	if (r < 0) {
		sg_big_free(out, cap);
		return r;
	}
	*ret_out = out;
	*ret_cap = cap;
	*ret_len = out_len;
	return 0;
}

int sg_esgz_load_toc_member(struct sg_gz *gz, const void *member, size_t len,
			    const struct sg_esgz_footer *footer, const struct sg_esgz_options *opts,
			    struct sg_toc **ret_toc, struct sg_error *err)
{
	uint64_t limit = max_toc(opts);
	uint8_t *out = NULL;
	size_t out_len = 0, out_cap = 0, json_len = 0;
	const uint8_t *json = NULL;
	struct sg_tar_entry hdr = { 0 };
	struct sg_digest d;
	struct sg_toc *toc = NULL;
	int r;

	if (!gz || !footer || !ret_toc || (!member && len))
		return invalid(err);
	if (need_digest(opts))
		return no_digest(err);
	if (len > limit + TOC_TAR_OVERHEAD)
		return sg_error_setc(err, -EFBIG, SG_ESGZ_E_TOC_TOO_LARGE,
				     "compressed TOC of %zu bytes exceeds the %llu-byte limit", len,
				     (unsigned long long)limit);
	r = inflate_toc(gz, member, len, limit + TOC_TAR_OVERHEAD, &out, &out_cap, &out_len);
	if (r == -EFBIG || r == -ENOBUFS)
		return sg_error_setc(err, -EFBIG, SG_ESGZ_E_TOC_TOO_LARGE,
				     "TOC decompresses to more than the %llu-byte limit "
				     "(or claims to)",
				     (unsigned long long)limit);
	if (r == -ENOMEM)
		return sg_error_setc(err, -ENOMEM, SG_ESGZ_E_NOMEM, "out of memory for the TOC");
	if (r < 0)
		return sg_error_setc(err, -EBADMSG, SG_ESGZ_E_TOC_GZIP,
				     "TOC at offset %llu is not a single valid gzip member",
				     (unsigned long long)footer->toc_offset);
	r = toc_json(out, out_len, &json, &json_len, &hdr, err);
	if (r < 0)
		goto out;
	if (json_len > limit) {
		r = sg_error_setc(err, -EFBIG, SG_ESGZ_E_TOC_TOO_LARGE,
				  "TOC JSON of %zu bytes exceeds the %llu-byte limit", json_len,
				  (unsigned long long)limit);
		goto out;
	}
	struct hash_job job = { .data = json, .len = json_len };
	pthread_t th;
	bool threaded = json_len >= PARALLEL_HASH_MIN &&
			pthread_create(&th, NULL, hash_thread, &job) == 0;
	int pr = 0;

	if (threaded) {
		struct sg_error perr = { 0 };
		pr = sg_toc_parse_json(json, json_len, footer->toc_offset, opts, &toc, &perr);
		pthread_join(th, NULL);
		if (err && pr < 0)
			*err = perr;
	} else {
		hash_thread(&job);
	}
	d = job.digest;
	if (opts && opts->toc_digest && !sg_digest_equal(&d, opts->toc_digest)) {
		char want[SG_DIGEST_STRLEN + 1], got[SG_DIGEST_STRLEN + 1];
		sg_toc_free(toc);
		toc = NULL;
		sg_digest_format(opts->toc_digest, want);
		sg_digest_format(&d, got);
		r = sg_error_setc(err, -EBADMSG, SG_ESGZ_E_TOC_DIGEST,
				  "TOC digest mismatch: want %s, got %s", want, got);
		goto out;
	}
	/* Small TOCs: verified above before the parser saw a byte. */
	r = threaded ? pr : sg_toc_parse_json(json, json_len, footer->toc_offset, opts, &toc, err);
	if (r < 0)
		goto out;
	r = sg_toc_add_self(toc, &hdr, json_len);
	if (r < 0) {
		sg_toc_free(toc);
		if (r == -ENOMEM)
			r = sg_error_setc(err, -ENOMEM, SG_ESGZ_E_NOMEM, "out of memory");
		else if (r == -EOVERFLOW)
			r = sg_error_setc(err, -EOVERFLOW, SG_ESGZ_E_OVERFLOW,
					  "the TOC's tar header has an out-of-range uid or gid");
		else
			r = sg_error_setc(err, -E2BIG, SG_ESGZ_E_LIMIT, "TOC index is full");
		goto out;
	}
	sg_toc_set_digest(toc, &d, opts && opts->toc_digest);
	if (opts && opts->keep_json) {
		sg_toc_keep_json(toc, out, out_cap, json, json_len);
		out = NULL;
	}
	*ret_toc = toc;
out:
	sg_tar_entry_done(&hdr);
	if (out)
		sg_big_free(out, out_cap);
	return r;
}

int sg_esgz_load_blob(struct sg_gz *gz, const void *blob, size_t len,
		      const struct sg_esgz_options *opts, struct sg_toc **ret_toc,
		      struct sg_error *err)
{
	struct sg_esgz_footer f;
	size_t tail = len < 128 ? len : 128;
	int r;

	if (!gz || !ret_toc || (!blob && len))
		return invalid(err);
	r = sg_esgz_parse_footer((const uint8_t *)blob + len - tail, tail, len, &f, err);
	if (r < 0)
		return r;
	return sg_esgz_load_toc_member(gz, (const uint8_t *)blob + f.toc_offset,
				       (size_t)(f.toc_end - f.toc_offset), &f, opts, ret_toc, err);
}

/* ---- completing the caller's op ---- */

/* The caller's op was idle when handed over (the entry points refuse a busy one) and is
 * ours until this post, so the post cannot fail unless the caller submitted the op
 * elsewhere meanwhile: that would lose this completion for good, so it is a crash here
 * rather than a hang later. */
static void complete(struct sg_loop *loop, struct sg_op *op, int res, sg_op_cb cb)
{
	if (sg_post(loop, op, res, cb) < 0)
		abort();
}

/* ---- parsing on a helper thread ---- */

struct async_parse {
	uint8_t *member;
	size_t len;
	struct sg_esgz_footer footer;
	struct sg_esgz_options opts;
	struct sg_digest digest;
	struct sg_error err;
	struct sg_toc *toc;
	int res;
	struct sg_offload work;
	struct sg_loop *loop;
	struct sg_toc **ret_toc;  /* the caller's results and continuation */
	struct sg_error *ret_err;
	struct sg_op *done_op;
	sg_op_cb done_cb;
};

/* On the helper thread: touches nothing but its job. */
static void parse_work(struct sg_offload *w)
{
	struct async_parse *a = sg_container_of(w, struct async_parse, work);
	struct sg_gz *gz = NULL;

	a->res = sg_gz_new(&gz);
	if (a->res < 0)
		a->res = sg_error_setc(&a->err, -ENOMEM, SG_ESGZ_E_NOMEM, "out of memory");
	else
		a->res = sg_esgz_load_toc_member(gz, a->member, a->len, &a->footer, &a->opts,
						 &a->toc, &a->err);
	sg_gz_free(gz);
}

static void parse_done(struct sg_op *op)
{
	struct async_parse *a = sg_container_of(op, struct async_parse, work.op);

	if (op->res < 0 && a->res == 0) {
		/* The loop drains: the TOC is not wanted any more. */
		sg_toc_free(a->toc);
		a->toc = NULL;
		a->res = sg_error_setc(&a->err, -ECANCELED, SG_ESGZ_E_CANCELED, "canceled");
	}
	if (a->res == 0)
		*a->ret_toc = a->toc;
	else if (a->ret_err)
		*a->ret_err = a->err;
	complete(a->loop, a->done_op, a->res, a->done_cb);
	free(a->member);
	free(a);
}

int sg_esgz_load_toc_member_async(struct sg_loop *loop, const void *member, size_t len,
				  const struct sg_esgz_footer *footer,
				  const struct sg_esgz_options *opts, struct sg_toc **ret_toc,
				  struct sg_error *err, struct sg_op *op, sg_op_cb cb)
{
	struct async_parse *a;
	int r;

	if (!loop || !footer || !ret_toc || !op || !cb || (!member && len))
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->len = len;
	a->footer = *footer;
	if (opts)
		a->opts = *opts;
	if (opts && opts->toc_digest) {
		a->digest = *opts->toc_digest;
		a->opts.toc_digest = &a->digest;
	}
	a->loop = loop;
	a->ret_toc = ret_toc;
	a->ret_err = err;
	a->done_op = op;
	a->done_cb = cb;
	a->member = malloc(len ? len : 1);
	if (!a->member) {
		r = -ENOMEM;
		goto fail;
	}
	memcpy(a->member, member, len);
	r = sg_offload_start(loop, &a->work, parse_work, parse_done);
	if (r < 0) {
		/* Not started, or the loop refuses (draining) after the parse ran: the caller
		 * decides. */
		sg_toc_free(a->toc);
		goto fail;
	}
	return 0;
fail:
	free(a->member);
	free(a);
	return r;
}

/* ---- asynchronous open ---- */

struct sg_esgz_open {
	struct sg_range_source *src;
	struct sg_esgz_options opts;
	struct sg_digest digest;
	struct sg_op op;         /* ours: the reads, the parse, at last the free */
	uint8_t *tail;
	size_t tail_len;
	uint8_t *member;         /* when the TOC starts before the tail */
	size_t member_len;
	struct sg_esgz_footer footer;
	bool canceled;
	bool finished;           /* the caller's op is posted; only the free is to come */
	struct sg_error err;
	struct sg_toc *toc;      /* the helper thread's */
	struct sg_toc **ret_toc; /* the caller's results and continuation */
	struct sg_error *ret_err;
	struct sg_op *done_op;
	sg_op_cb done_cb;
};

static void open_free(struct sg_op *op)
{
	free(sg_container_of(op, struct sg_esgz_open, op));
}

/* Always runs from a callback of req->op, so that op is idle for the free: posted after
 * the caller's, it runs after the caller's callback, and the handle stays valid (a cancel
 * harmless) until that has returned, as sg_esgz_open promises. */
static void open_finish(struct sg_esgz_open *req, int res, struct sg_toc *toc)
{
	if (res < 0 && req->canceled && req->err.code == SG_ESGZ_OK)
		res = sg_error_setc(&req->err, -ECANCELED, SG_ESGZ_E_CANCELED, "canceled");
	if (res == 0)
		*req->ret_toc = toc;
	else if (req->ret_err)
		*req->ret_err = req->err;
	free(req->tail);
	free(req->member);
	req->tail = req->member = NULL;
	req->finished = true;
	complete(req->src->loop, req->done_op, res, req->done_cb);
	if (sg_post(req->src->loop, &req->op, 0, open_free) < 0)
		free(req);   /* not reached: req->op is idle here */
}

static void open_parsed(struct sg_op *op)
{
	struct sg_esgz_open *req = sg_container_of(op, struct sg_esgz_open, op);
	struct sg_toc *toc = op->res < 0 ? NULL : req->toc;
	int res = op->res;

	if (res == 0 && req->canceled) {
		sg_toc_free(toc);
		toc = NULL;
		res = -ECANCELED;
	}
	open_finish(req, res, toc);
}

static void open_parse(struct sg_esgz_open *req, const uint8_t *member, size_t len)
{
	struct sg_gz *gz = NULL;
	struct sg_toc *toc = NULL;
	int r;

	if (sg_esgz_load_toc_member_async(req->src->loop, member, len, &req->footer, &req->opts,
					  &req->toc, &req->err, &req->op, open_parsed) == 0)
		return;
	r = sg_gz_new(&gz);
	if (r < 0) {
		r = sg_error_setc(&req->err, -ENOMEM, SG_ESGZ_E_NOMEM, "out of memory");
	} else {
		r = sg_esgz_load_toc_member(gz, member, len, &req->footer, &req->opts, &toc,
					    &req->err);
		sg_gz_free(gz);
	}
	open_finish(req, r, r < 0 ? NULL : toc);
}

static int io_result(struct sg_esgz_open *req, size_t want)
{
	if (req->canceled)
		return -ECANCELED;
	if (req->op.res < 0)
		return sg_error_setc(&req->err, req->op.res, SG_ESGZ_E_IO,
				     "reading the layer failed: %s", strerror(-req->op.res));
	if ((size_t)req->op.res != want)
		return sg_error_setc(&req->err, -EIO, SG_ESGZ_E_IO,
				     "layer blob is shorter than its size");
	return 0;
}

static void open_member_done(struct sg_op *op)
{
	struct sg_esgz_open *req = sg_container_of(op, struct sg_esgz_open, op);
	int r = io_result(req, req->member_len);

	if (r < 0) {
		open_finish(req, r, NULL);
		return;
	}
	open_parse(req, req->member, req->member_len);
}

static void open_fail_posted(struct sg_op *op)
{
	struct sg_esgz_open *req = sg_container_of(op, struct sg_esgz_open, op);

	open_finish(req, op->res, NULL);
}

static void open_tail_done(struct sg_op *op)
{
	struct sg_esgz_open *req = sg_container_of(op, struct sg_esgz_open, op);
	uint64_t size = req->src->size, tail_off = size - req->tail_len;
	int r = io_result(req, req->tail_len);

	if (r < 0)
		goto fail;
	r = sg_esgz_parse_footer(req->tail, req->tail_len, size, &req->footer, &req->err);
	if (r < 0)
		goto fail;
	if (req->footer.toc_offset >= tail_off) {
		/* The usual case: the tail read already holds the TOC. */
		open_parse(req, req->tail + (req->footer.toc_offset - tail_off),
			   (size_t)(req->footer.toc_end - req->footer.toc_offset));
		return;
	}
	uint64_t mlen = req->footer.toc_end - req->footer.toc_offset;
	if (mlen > max_toc(&req->opts) + TOC_TAR_OVERHEAD || mlen > SIZE_MAX) {
		r = sg_error_setc(&req->err, -EFBIG, SG_ESGZ_E_TOC_TOO_LARGE,
				  "compressed TOC of %llu bytes exceeds the %llu-byte limit",
				  (unsigned long long)mlen,
				  (unsigned long long)max_toc(&req->opts));
		goto fail;
	}
	free(req->tail);
	req->tail = NULL;
	req->member_len = (size_t)mlen;
	req->member = malloc(req->member_len ? req->member_len : 1);
	if (!req->member) {
		r = sg_error_setc(&req->err, -ENOMEM, SG_ESGZ_E_NOMEM, "out of memory");
		goto fail;
	}
	r = sg_range_read(req->src, req->footer.toc_offset, req->member_len, req->member,
			  &req->op, open_member_done);
	if (r < 0) {
		r = sg_error_setc(&req->err, r, SG_ESGZ_E_IO, "reading the TOC failed: %s",
				  strerror(-r));
		goto fail;
	}
	return;
fail:
	open_finish(req, r, NULL);
}

int sg_esgz_open(struct sg_range_source *src, const struct sg_esgz_options *opts,
		 struct sg_esgz_open **ret_req, struct sg_toc **ret_toc, struct sg_error *err,
		 struct sg_op *op, sg_op_cb cb)
{
	struct sg_esgz_open *req;
	int r;

	if (!src || !ret_toc || !op || !cb)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	req = calloc(1, sizeof(*req));
	if (!req)
		return -ENOMEM;
	req->src = src;
	req->ret_toc = ret_toc;
	req->ret_err = err;
	req->done_op = op;
	req->done_cb = cb;
	if (opts)
		req->opts = *opts;
	if (opts && opts->toc_digest) {
		req->digest = *opts->toc_digest;
		req->opts.toc_digest = &req->digest;
	}
	sg_op_init(&req->op);
	if (need_digest(&req->opts)) {
		/* Refuse before fetching a byte; still through the loop, like every outcome. */
		r = no_digest(&req->err);
		goto post;
	}
	size_t want = req->opts.tail_len ? req->opts.tail_len : SG_ESGZ_TAIL_READ;
	if (want < SG_ESGZ_TAIL_MIN)
		want = SG_ESGZ_TAIL_MIN;
	req->tail_len = src->size < want ? (size_t)src->size : want;
	req->tail = malloc(req->tail_len ? req->tail_len : 1);
	if (!req->tail) {
		free(req);
		return -ENOMEM;
	}
	r = sg_range_read(src, src->size - req->tail_len, req->tail_len, req->tail, &req->op,
			  open_tail_done);
	if (r == 0)
		goto done;
	r = sg_error_setc(&req->err, r, SG_ESGZ_E_IO, "reading the layer failed: %s",
			  strerror(-r));
post:
	/* Cannot fail (req->op is new, and posts are accepted while the loop drains); the
	 * synchronous refusal only guards that assumption. */
	if (sg_post(src->loop, &req->op, r, open_fail_posted) < 0) {
		if (err)
			*err = req->err;
		free(req->tail);
		free(req);
		return r;
	}
done:
	if (ret_req)
		*ret_req = req;
	return 0;
}

/* Safe at any time until the callback has returned, the TOC loader thread included: cancel
 * only sets a flag and cancels a read in flight.  The thread touches nothing but its own
 * async_parse (a copy of the member, the footer and the options), which is freed only by
 * parse_done after pthread_join; req itself is freed only after the caller's callback,
 * which the parse still leads to.  There is no free of a request in flight to refuse: it
 * has no free but its completion. */
void sg_esgz_open_cancel(struct sg_esgz_open *req)
{
	if (!req || req->canceled || req->finished)
		return;
	req->canceled = true;
	if (sg_op_busy(&req->op) && req->op.kind != SG_OP_POST)
		(void)sg_range_cancel(req->src, &req->op);
}

/* ---- chunks ---- */

int sg_esgz_verify_chunk(const struct sg_toc_chunk *c, const void *data, size_t len,
			 struct sg_error *err)
{
	struct sg_digest d;

	if (!c || (!data && len))
		return invalid(err);
	if (!c->has_digest)
		return sg_error_setc(err, -ENODATA, SG_ESGZ_E_NO_CHUNK_DIGEST,
				     "chunk at %llu has no digest", (unsigned long long)c->offset);
	if (len != c->size)
		return sg_error_setc(err, -EBADMSG, SG_ESGZ_E_CHUNK_DIGEST,
				     "chunk at %llu has %zu bytes, the TOC says %llu",
				     (unsigned long long)c->offset, len,
				     (unsigned long long)c->size);
	sg_sha256(data, len, &d);
	if (!sg_digest_equal(&d, &c->digest))
		return sg_error_setc(err, -EBADMSG, SG_ESGZ_E_CHUNK_DIGEST,
				     "chunk at %llu does not match its chunkDigest",
				     (unsigned long long)c->offset);
	return 0;
}

int sg_esgz_extract_chunk(struct sg_gz *gz, const struct sg_toc_chunk *c, const void *member,
			  size_t member_len, bool skip_verify, void *out,
			  struct sg_error *err)
{
	const uint8_t *in = member;
	uint8_t *buf = NULL;
	size_t need, cap, have = 0, at = 0;
	uint64_t most;
	int r;

	if (!gz || !c || !member || (!out && c->size))
		return invalid(err);
	if (c->inner_offset > SIZE_MAX / 2 || c->size > SIZE_MAX / 2)
		return sg_error_setc(err, -EOVERFLOW, SG_ESGZ_E_OVERFLOW, "chunk too large");
	need = (size_t)(c->inner_offset + c->size);
	/* Deflate cannot expand past 1032:1: a TOC asking for more is lying, and we do not
	 * allocate for it.  (A loaded TOC never does: sg_toc_parse_json checks the same
	 * bound; callers may pass other chunks.) */
	most = sg_gz_max_output(member_len);
	if (need > most)
		return sg_error_setc(err, -EBADMSG, SG_ESGZ_E_CHUNK_RATIO,
				     "chunk at %llu needs %zu bytes from a %zu-byte member",
				     (unsigned long long)c->offset, need, member_len);
	/* The member holds the chunk plus any tar headers up to the next data; grow into
	 * those only when a member turns out larger (bounded: 256 MiB past the chunk, and
	 * never past what the member can inflate to). */
	cap = need + 65536;
	if (cap > most)
		cap = (size_t)most;
	if (cap == 0)
		cap = 1;   /* realloc(p, 0) may free */
	for (;;) {
		uint8_t *nb = realloc(buf, cap);
		size_t used = 0, produced = 0;

		if (!nb) {
			r = sg_error_setc(err, -ENOMEM, SG_ESGZ_E_NOMEM, "out of memory");
			goto out;
		}
		buf = nb;
		r = sg_gz_member(gz, in + at, member_len - at, buf + have, cap - have, &used,
				 &produced);
		if (r == -ENOBUFS && cap - need < (256u << 20) && cap < most) {
			cap = need + (cap - need) * 8;
			if (cap > most)
				cap = (size_t)most;
			continue;
		}
		if (r < 0) {
			r = sg_error_setc(err, -EBADMSG, SG_ESGZ_E_CHUNK_GZIP,
					  "chunk member at %llu does not decompress",
					  (unsigned long long)c->offset);
			goto out;
		}
		have += produced;
		at += used;
		if (have >= need)
			break;
		/* Writers may start a new member for what follows; keep walking. */
		if (at >= member_len) {
			r = sg_error_setc(err, -EBADMSG, SG_ESGZ_E_CHUNK_GZIP,
					  "chunk member at %llu holds %zu bytes, the TOC needs %zu",
					  (unsigned long long)c->offset, have, need);
			goto out;
		}
	}
	if (!skip_verify) {
		r = sg_esgz_verify_chunk(c, buf + c->inner_offset, (size_t)c->size, err);
		if (r < 0)
			goto out;
	}
	memcpy(out, buf + c->inner_offset, (size_t)c->size);
	r = 0;
out:
	free(buf);
	return r;
}

/* ---- an index from the TOC JSON kept on disk ---- */

int sg_esgz_self_of(const struct sg_toc *toc, struct sg_esgz_self *ret)
{
	uint32_t id = sg_toc_self(toc);

	if (id == SG_TOC_NONE)
		return -ENOENT;
	const struct sg_toc_node *n = sg_toc_node(toc, id);
	const char *u = sg_toc_str(toc, n->user), *g = sg_toc_str(toc, n->group);
	if (strlen(u) >= sizeof(ret->uname) || strlen(g) >= sizeof(ret->gname))
		return -ENAMETOOLONG;
	memset(ret, 0, sizeof(*ret));
	ret->mode = n->mode;
	ret->uid = n->uid;
	ret->gid = n->gid;
	ret->mtime_sec = n->mtime_sec;
	ret->mtime_nsec = n->mtime_nsec;
	memcpy(ret->uname, u, strlen(u) + 1);
	memcpy(ret->gname, g, strlen(g) + 1);
	return 0;
}

int sg_esgz_restore_toc(const char *json_path, uint64_t toc_offset,
			const struct sg_esgz_self *self, const struct sg_esgz_options *opts,
			struct sg_toc **ret_toc, struct sg_error *err)
{
	uint64_t limit = opts && opts->max_toc_size ? opts->max_toc_size : SG_ESGZ_DEFAULT_MAX_TOC;
	struct sg_toc *toc = NULL;
	uint8_t *buf = NULL;
	size_t cap = 0, len = 0;
	struct sg_digest d;
	struct stat st;
	int fd, r;

	if (!opts || (!opts->toc_digest && !opts->skip_verify))
		return sg_error_setc(err, -EINVAL, SG_ESGZ_E_TOC_DIGEST,
				     "no TOC digest to check the TOC copy against");
	fd = open(json_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sg_error_setc(err, -errno, SG_ESGZ_E_IO, "cannot open %s: %s", json_path,
				     strerror(errno));
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || (uint64_t)st.st_size > limit) {
		r = sg_error_setc(err, -EFBIG, SG_ESGZ_E_TOC_TOO_LARGE, "%s: empty or too large",
				  json_path);
		goto out;
	}
	len = (size_t)st.st_size;
	cap = len;
	buf = sg_big_realloc(NULL, 0, cap);
	if (!buf) {
		r = sg_error_setc(err, -ENOMEM, SG_ESGZ_E_NOMEM, "out of memory for the TOC");
		goto out;
	}
	for (size_t done = 0; done < len;) {
		ssize_t n = pread(fd, buf + done, len - done, (off_t)done);
		if (n <= 0) {
			r = sg_error_setc(err, n < 0 ? -errno : -EIO, SG_ESGZ_E_IO,
					  "cannot read %s", json_path);
			goto out;
		}
		done += (size_t)n;
	}
	/* The copy is only as good as its digest: the one containerd's label pinned. */
	sg_sha256(buf, len, &d);
	if (opts->toc_digest && !sg_digest_equal(&d, opts->toc_digest)) {
		r = sg_error_setc(err, -EBADMSG, SG_ESGZ_E_TOC_DIGEST,
				  "%s does not match the layer's TOC digest", json_path);
		goto out;
	}
	r = sg_toc_parse_json(buf, len, toc_offset, opts, &toc, err);
	if (r < 0)
		goto out;
	struct sg_tar_entry h = {
		.mode = self->mode, .uid = self->uid, .gid = self->gid,
		.mtime_sec = self->mtime_sec, .mtime_nsec = (int32_t)self->mtime_nsec,
		.uname = (char *)self->uname, .gname = (char *)self->gname,
	};
	r = sg_toc_add_self(toc, &h, len);
	if (r < 0) {
		sg_toc_free(toc);
		toc = NULL;
		r = sg_error_setc(err, r, SG_ESGZ_E_LIMIT, "cannot add stargz.index.json: %s",
				  strerror(-r));
		goto out;
	}
	sg_toc_set_digest(toc, &d, opts->toc_digest != NULL);
	if (opts->keep_json) {
		sg_toc_keep_json(toc, buf, cap, buf, len);
		buf = NULL;
	}
	*ret_toc = toc;
out:
	close(fd);
	if (buf)
		sg_big_free(buf, cap);
	return r;
}
