/* eStargz blobs: the footer, the TOC member, loading a layer's TOC, and its chunks.
 *
 * A blob is a gzip stream made of many members: file contents start new members, so a
 * file (or a chunk of a large file) can be fetched and decompressed alone.  The last
 * members are the TOC (a tar entry "stargz.index.json" holding JSON) and a footer, an
 * empty gzip member whose extra field says where the TOC starts.  Two footers exist: the
 * 51-byte eStargz one (subfield "SG") and the 47-byte legacy stargz one.  zstd:chunked and
 * external-TOC blobs are recognised and refused with SG_ESGZ_E_UNSUPPORTED.
 *
 * Loading a layer is: read the tail, parse the footer, read and decompress the TOC member,
 * check the sha256 of the TOC JSON against the digest the image gives
 * (containerd.io/snapshot/stargz/toc.digest), and parse the JSON straight into the index
 * (fs/toc_parse.h; the index and its queries are fs/toc.h).  The same code serves the
 * asynchronous path (sg_esgz_open, over a range source on the loop) and the in-memory one
 * (sg_esgz_load_blob, for tools and the fuzzer).  The options and the error codes below
 * are those of the whole load, the parser's included.
 *
 * Every refusal comes back twice: as a negative errno (the return value) and in a
 * struct sg_error (daemon/core/error.h) whose code is an enum sg_esgz_code and whose message
 * says what is wrong.  Nothing is logged, and a failed load leaves nothing behind. */
#ifndef STARGZD_FS_ESTARGZ_H
#define STARGZD_FS_ESTARGZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/digest.h"
#include "daemon/core/error.h"
#include "daemon/core/loop.h"
#include "fs/toc.h"

struct sg_gz;
struct sg_range_source;

#define SG_ESGZ_FOOTER_SIZE 51
#define SG_ESGZ_LEGACY_FOOTER_SIZE 47
#define SG_ESGZ_DEFAULT_MAX_TOC (256u << 20)   /* decompressed TOC member */
#define SG_ESGZ_DEFAULT_MAX_ENTRIES (8u << 20)
/* Chunk bounds (sg_esgz_options.max_chunk_size).  The reference converter writes 4 MiB
 * chunks, so 64 MiB leaves room for any real layer.  The ceiling keeps every buffer a chunk
 * needs (up to twice the limit for its compressed member) under 2^31 bytes, the most one
 * io_uring result (int32_t) can report. */
#define SG_ESGZ_DEFAULT_MAX_CHUNK (64ull << 20)
#define SG_ESGZ_MAX_CHUNK_CEILING (512ull << 20)

enum sg_esgz_code {
	SG_ESGZ_OK = 0,
	SG_ESGZ_E_IO,              /* the range source failed */
	SG_ESGZ_E_FOOTER,          /* no valid eStargz/stargz footer */
	SG_ESGZ_E_UNSUPPORTED,     /* zstd:chunked, external TOC */
	SG_ESGZ_E_TOC_OFFSET,      /* TOC offset outside the blob */
	SG_ESGZ_E_TOC_GZIP,        /* TOC member is not one valid gzip member */
	SG_ESGZ_E_TOC_TOO_LARGE,   /* over the configured limit, or a gzip bomb */
	SG_ESGZ_E_TOC_TAR,         /* TOC member is not a stargz.index.json tar entry */
	SG_ESGZ_E_TOC_DIGEST,      /* sha256 of the TOC JSON differs from the given digest */
	SG_ESGZ_E_NO_TOC_DIGEST,   /* no digest to check and verification not turned off */
	SG_ESGZ_E_JSON,            /* malformed JSON */
	SG_ESGZ_E_SCHEMA,          /* well-formed JSON that is not a valid TOC */
	SG_ESGZ_E_NAME,            /* absolute path, "..", empty or oversized component */
	SG_ESGZ_E_DUPLICATE,       /* the same path twice */
	SG_ESGZ_E_NOT_DIR,         /* a parent path exists but is not a directory */
	SG_ESGZ_E_HARDLINK,        /* hardlink target missing or a directory */
	SG_ESGZ_E_CHUNK_RANGE,     /* chunk data outside the blob's payload */
	SG_ESGZ_E_CHUNK_OVERLAP,   /* chunks out of order, overlapping, or not covering a file */
	SG_ESGZ_E_OVERFLOW,        /* a size or offset that overflows */
	SG_ESGZ_E_NO_CHUNK_DIGEST, /* a chunk without chunkDigest while verifying */
	SG_ESGZ_E_LIMIT,           /* too many entries / index too large */
	SG_ESGZ_E_NOMEM,
	SG_ESGZ_E_CHUNK_GZIP,      /* chunk member does not decompress as described */
	SG_ESGZ_E_CHUNK_DIGEST,    /* chunk bytes do not match chunkDigest */
	SG_ESGZ_E_CANCELED,
	SG_ESGZ_E_CHUNK_SIZE,      /* a chunk (or its compressed member) over max_chunk_size */
	SG_ESGZ_E_CHUNK_RATIO,     /* more bytes than its compressed member can hold */
	_SG_ESGZ_CODE_MAX,
};

const char *sg_esgz_code_name(int code);

struct sg_esgz_options {
	/* The digest of the TOC JSON from the image's layer annotation; NULL when none. */
	const struct sg_digest *toc_digest;
	/* Explicit opt-out: load without a TOC digest and do not require chunk digests.
	 * Nothing else turns verification off. */
	bool skip_verify;
	uint64_t max_toc_size;     /* decompressed TOC member; 0 = SG_ESGZ_DEFAULT_MAX_TOC */
	uint32_t max_entries;      /* 0 = SG_ESGZ_DEFAULT_MAX_ENTRIES */
	/* The most decompressed bytes one chunk may need, checked for every chunk when the TOC
	 * is loaded: its size plus its innerOffset (what has to be inflated to reach its end),
	 * and its compressed member (offset .. next offset) may not exceed twice this.  A
	 * chunk's buffers are allocated before its bytes can be verified, so this is what
	 * bounds the memory an untrusted layer can make us spend per chunk.  0 =
	 * SG_ESGZ_DEFAULT_MAX_CHUNK (64 MiB); values above SG_ESGZ_MAX_CHUNK_CEILING (512 MiB)
	 * count as the ceiling.  A layer with a larger chunk is refused (SG_ESGZ_E_CHUNK_SIZE). */
	uint64_t max_chunk_size;
	/* Keep the verified TOC JSON with the index (sg_toc_json): the content of its
	 * stargz.index.json node.  Off for tools that only want the index. */
	bool keep_json;
	/* sg_esgz_open: the bytes of the blob's end read first, footer and TOC in one read when
	 * the TOC fits (0 = SG_ESGZ_TAIL_READ; at least SG_ESGZ_TAIL_MIN).  A TOC that starts
	 * before them is read next, as with the default. */
	size_t tail_len;
};

/* ---- footer ---- */

enum sg_esgz_format {
	SG_ESGZ_FORMAT_ESTARGZ = 1,
	SG_ESGZ_FORMAT_LEGACY,
};

struct sg_esgz_footer {
	int format;                /* enum sg_esgz_format */
	uint64_t toc_offset;       /* where the TOC gzip member starts */
	uint64_t toc_end;          /* where it ends: blob size - footer size */
};

/* tail = the last tail_len bytes of a blob of blob_size bytes (tail_len >= min(blob_size,
 * SG_ESGZ_FOOTER_SIZE)).  Tries the eStargz footer, then the legacy one. */
int sg_esgz_parse_footer(const void *tail, size_t tail_len, uint64_t blob_size,
			 struct sg_esgz_footer *ret, struct sg_error *err);

/* ---- loading ---- */

/* The TOC gzip member [footer.toc_offset, footer.toc_end): decompress (bounded by
 * max_toc_size), check the tar header, verify the digest, parse.  A small TOC is hashed
 * before the parser sees it; a large one (>= 4 MiB of JSON) is hashed on a short-lived
 * helper thread while it is parsed, and the index is discarded on a mismatch, so the
 * result is the same and the hash is off the critical path.  Runs on the caller's thread
 * otherwise (about 130-180 ms for 100k entries here: the loop stalls that long). */
int sg_esgz_load_toc_member(struct sg_gz *gz, const void *member, size_t len,
			    const struct sg_esgz_footer *footer, const struct sg_esgz_options *opts,
			    struct sg_toc **ret_toc, struct sg_error *err);

/* A whole blob in memory: footer + TOC. */
int sg_esgz_load_blob(struct sg_gz *gz, const void *blob, size_t len,
		      const struct sg_esgz_options *opts, struct sg_toc **ret_toc,
		      struct sg_error *err);

/* sg_esgz_load_toc_member off the loop thread: inflating, hashing and indexing a big TOC
 * takes 100-250 ms, during which a loop-thread parse would hold up every other mount's
 * requests.  The member and the options (with the digest they point to) are copied.  The
 * continuation follows daemon/core/loop.h: on 0, cb(op) runs once from the loop with
 * op->res = 0 and *ret_toc the caller's, or a negative errno and err filled, the same
 * results as the synchronous call (-ECANCELED and no TOC if the loop drains first).  A
 * negative errno when no thread could be started (or -EBUSY: op is still in flight):
 * nothing runs and no callback follows; parse synchronously. */
int sg_esgz_load_toc_member_async(struct sg_loop *loop, const void *member, size_t len,
				  const struct sg_esgz_footer *footer,
				  const struct sg_esgz_options *opts, struct sg_toc **ret_toc,
				  struct sg_error *err, struct sg_op *op, sg_op_cb cb);

/* The TOC's own tar entry as a loaded index shows it (its stargz.index.json node): with the
 * TOC JSON, the blob's toc_offset and this, sg_esgz_restore_toc rebuilds the very same
 * index (same node ids, so the same inode numbers) without the blob. */
struct sg_esgz_self {
	uint32_t mode, uid, gid, mtime_nsec;
	int64_t mtime_sec;
	char uname[64], gname[64];
};
/* -ENOENT: the index has no such node; -ENAMETOOLONG: an owner name longer than 63 bytes. */
int sg_esgz_self_of(const struct sg_toc *toc, struct sg_esgz_self *ret);
/* Loads the index from a copy of its TOC JSON on disk (a layer's stargz.index.json, written
 * from the verified JSON): the file is hashed and must match opts->toc_digest (required
 * unless opts->skip_verify), then parsed with the same checks as a load from the blob.
 * opts->keep_json keeps the JSON with the index as the blob loader does.  Runs on the
 * caller's thread: ~150 ms for 100k entries, a few ms for common layers. */
int sg_esgz_restore_toc(const char *json_path, uint64_t toc_offset,
			const struct sg_esgz_self *self, const struct sg_esgz_options *opts,
			struct sg_toc **ret_toc, struct sg_error *err);

/* Asynchronous load through a range source: one read of the blob's tail (large enough
 * to hold the TOC of most layers), a second read only if the TOC starts before it.
 * On 0, cb(op) runs once from the loop: op->res 0 with *ret_toc the caller's, or a negative
 * errno and err filled (SG_ESGZ_E_IO for the range source's failures).  The options (and
 * the digest they point to) are copied.  *ret_req (if ret_req is not NULL) is a handle for
 * sg_esgz_open_cancel, valid until cb has returned; a cancel before the outcome is decided
 * makes the op complete with -ECANCELED (SG_ESGZ_E_CANCELED), still exactly once, when
 * what is in flight has ended.  A negative errno from the call itself (-EBUSY: op is
 * still in flight): nothing started, no callback. */
struct sg_esgz_open;
#define SG_ESGZ_TAIL_READ (512u << 10)
#define SG_ESGZ_TAIL_MIN 128u   /* every footer format, with room to tell them apart */
int sg_esgz_open(struct sg_range_source *src, const struct sg_esgz_options *opts,
		 struct sg_esgz_open **ret_req, struct sg_toc **ret_toc, struct sg_error *err,
		 struct sg_op *op, sg_op_cb cb);
void sg_esgz_open_cancel(struct sg_esgz_open *req);

/* ---- chunks ---- */

/* Checks decompressed chunk bytes against the chunk's digest.  0, -EBADMSG with
 * SG_ESGZ_E_CHUNK_DIGEST, or -ENODATA with SG_ESGZ_E_NO_CHUNK_DIGEST. */
int sg_esgz_verify_chunk(const struct sg_toc_chunk *c, const void *data, size_t len,
			 struct sg_error *err);

/* The compressed member [c->offset, c->next_offset) in `member`: decompresses it into a
 * scratch buffer (bounded by inner_offset + size + 1 MiB of tar headers), copies the chunk's
 * c->size bytes to out and, unless skip_verify, checks its digest first. */
int sg_esgz_extract_chunk(struct sg_gz *gz, const struct sg_toc_chunk *c, const void *member,
			  size_t member_len, bool skip_verify, void *out,
			  struct sg_error *err);

#endif
