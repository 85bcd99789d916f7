/* The TOC builder: TOC entries, one at a time and in TOC order, into an index (fs/toc.h).
 *
 * The JSON parser (fs/toc_parse.h) collects each entry's fields into a struct sg_toc_entry
 * and hands it over when the entry's object closes; the builder decides what the entry
 * means and refuses what a layer may not say:
 *  - names: relative, no "..", no NUL, components of at most SG_TOC_NAME_MAX bytes;
 *    "dir/./x//y/" means "dir/x/y"; missing parent directories are implied, like the
 *    reference does; a path twice, or a parent that is not a directory, is refused;
 *  - whiteouts (".wh.NAME", ".wh..wh..opq"), the prefetch landmarks, the shadowed
 *    stargz.index.json entry, hardlinks (to an existing non-directory) and symlinks;
 *  - every regular file must be producible from the blob as described (the rules are in
 *    fs/toc_parse.h, at sg_toc_parse_json).
 * A refusal returns a negative errno and fills err with an SG_ESGZ_E_* code (fs/estargz.h)
 * and a message naming the entry (bounded, control characters shown as '?').  After a
 * refusal the builder takes no more entries: free it. */
#ifndef STARGZD_FS_TOC_BUILD_H
#define STARGZD_FS_TOC_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/core/digest.h"
#include "daemon/core/error.h"
#include "fs/estargz.h"
#include "fs/toc.h"

#define SG_TOC_NAME_MAX 255    /* one path component */
#define SG_TOC_PATH_MAX 4096   /* a name, a link target */

/* The fields of a TOC entry (bit numbers of sg_toc_entry.present). */
enum sg_toc_field {
	SG_TOC_FIELD_NONE, SG_TOC_FIELD_NAME, SG_TOC_FIELD_TYPE, SG_TOC_FIELD_SIZE,
	SG_TOC_FIELD_MODTIME, SG_TOC_FIELD_LINKNAME, SG_TOC_FIELD_MODE, SG_TOC_FIELD_UID,
	SG_TOC_FIELD_GID, SG_TOC_FIELD_USERNAME, SG_TOC_FIELD_GROUPNAME, SG_TOC_FIELD_OFFSET,
	SG_TOC_FIELD_INNEROFFSET, SG_TOC_FIELD_DEVMAJOR, SG_TOC_FIELD_DEVMINOR,
	SG_TOC_FIELD_XATTRS, SG_TOC_FIELD_DIGEST, SG_TOC_FIELD_CHUNKOFFSET,
	SG_TOC_FIELD_CHUNKSIZE, SG_TOC_FIELD_CHUNKDIGEST,
};

/* Its "type". */
enum sg_toc_entry_type {
	SG_TOC_ENTRY_NONE, SG_TOC_ENTRY_DIR, SG_TOC_ENTRY_REG, SG_TOC_ENTRY_SYMLINK,
	SG_TOC_ENTRY_HARDLINK, SG_TOC_ENTRY_CHAR, SG_TOC_ENTRY_BLOCK, SG_TOC_ENTRY_FIFO,
	SG_TOC_ENTRY_CHUNK,
};

/* Bytes that grow: p[len] is always a NUL once p is set.  Reused from entry to entry. */
struct sg_toc_text {
	char *p;
	size_t len, cap;
};

/* Makes room for need bytes (cap >= need).  0 or -ENOMEM. */
int sg_toc_text_reserve(struct sg_toc_text *b, size_t need);
/* b = s[0..len) and a NUL.  0 or -ENOMEM. */
int sg_toc_text_set(struct sg_toc_text *b, const void *s, size_t len);

/* One entry as the JSON gave it: numbers unchecked but for their syntax, strings of at most
 * SG_TOC_PATH_MAX bytes without NUL. */
struct sg_toc_entry {
	uint32_t present;         /* 1 << enum sg_toc_field */
	int type;                 /* enum sg_toc_entry_type */
	uint64_t size, offset, inner, chunk_off, chunk_size, mode, uid, gid, dev_major, dev_minor;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	struct sg_digest digest, chunk_digest;
	struct sg_toc_text name, link, user, group;
	struct sg_toc_text xattrs;   /* records as in the index (sg_toc_set_xattrs), no count */
	uint32_t nxattrs;
};

struct sg_toc_builder;

/* A builder for a blob whose payload ends at toc_offset (every chunk lies before it), its
 * index sized for about est_entries entries.  The options are copied; max_entries and
 * max_chunk_size of 0 mean the defaults, and values over the limits count as the limits. */
int sg_toc_builder_new(uint64_t toc_offset, uint32_t est_entries,
		       const struct sg_esgz_options *opts, struct sg_toc_builder **ret_b,
		       struct sg_error *err);
/* The next entry.  0, or a negative errno with err filled. */
int sg_toc_builder_add(struct sg_toc_builder *b, const struct sg_toc_entry *e,
		       struct sg_error *err);
/* The name of the entry being parsed, as soon as it is known: a hint that lets the builder
 * start fetching what the entry will need.  Changes nothing. */
void sg_toc_builder_hint(struct sg_toc_builder *b, const char *name, size_t len);
/* After the last entry: the last file's chunks and every chunk's member are checked, and
 * the index is sealed and handed over.  0 (*ret_toc is the caller's), or a negative errno
 * with err filled. */
int sg_toc_builder_finish(struct sg_toc_builder *b, struct sg_toc **ret_toc,
			  struct sg_error *err);
/* Frees the builder and the index if it was not handed over.  NULL is fine. */
void sg_toc_builder_free(struct sg_toc_builder *b);

#endif
