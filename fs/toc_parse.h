/* The TOC parser: eStargz TOC JSON straight into an index, with no DOM.
 *
 * yajl drives a small state machine over {"version": ..., "entries": [ {...}, ... ]};
 * each entry's fields are decoded (integers, RFC 3339 times, sha256 digests, base64 xattr
 * values) into a struct sg_toc_entry and handed to the TOC builder (fs/toc_build.h) when
 * its object closes.  Unknown fields are skipped, like the reference does; names are bytes
 * (tar names need not be UTF-8).  The parser is built, and fuzzed (tests/fuzz/toc), for
 * hostile input: every refusal is a negative errno with an SG_ESGZ_E_* code and a message
 * in err, and leaves nothing behind. */
#ifndef STARGZD_FS_TOC_PARSE_H
#define STARGZD_FS_TOC_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "fs/estargz.h"
#include "fs/toc.h"

/* Parses TOC JSON into an index.  toc_offset bounds every chunk (payload is [0, toc_offset)).
 * The digest is not checked here (sg_esgz_load_toc_member does).
 *
 * Besides the schema, every regular file must be producible from the blob as described,
 * or the layer is refused with an error naming the entry:
 *  - tiling: its chunks, in TOC order, start at file offset 0, each next one where the
 *    previous ended, each non-empty, the last ending at the file size (an empty file has
 *    none);
 *  - placement: every member starts inside the payload, members never go backwards in the
 *    blob, and pieces sharing one member (innerOffset) do not overlap; so no two chunks
 *    claim the same bytes, and a chunk's compressed member [offset, next_offset) is
 *    non-empty and ends at the next member or the TOC;
 *  - size: innerOffset + size <= max_chunk_size, and the member at most twice that;
 *  - ratio: innerOffset + size <= sg_gz_max_output(next_offset - offset), the most a
 *    gzip member of that length can inflate to (fs/gz.h).
 * Equal chunk digests at different places are fine (identical content). */
int sg_toc_parse_json(const void *json, size_t len, uint64_t toc_offset,
		      const struct sg_esgz_options *opts, struct sg_toc **ret_toc,
		      struct sg_error *err);

#endif
