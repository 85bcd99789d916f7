/* The TOC of an eStargz blob, written as the reference converter (stargz-snapshotter's Go
 * estargz.Build) writes it: the JSON of json.MarshalIndent(toc, "", "\t"), byte for byte, and
 * the 51-byte footer that says where the TOC's gzip member starts.
 *
 * Go compatibility is what the tests check against the reference (tests/integration/
 * stargzify.sh compares TOCs and digests): strings are encoded as Go's encoding/json does
 * (HTML-safe: <, >, & as \u003c..; U+2028/U+2029 escaped; invalid UTF-8 as \ufffd, one per
 * bad byte), zero-valued fields are omitted (omitempty), xattrs are sorted by key with
 * base64 values, modtime is RFC 3339 in UTC rounded to the second, and userName/groupName
 * only appear when they differ from the last name given for that id (Go's nameIfChanged).
 *
 * Everything appends to a struct sbuf; -ENOMEM is the only failure. */
#ifndef STARGZIFY_TOC_WRITER_H
#define STARGZIFY_TOC_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/digest.h"
#include "tools/stargzify/sbuf.h"

struct sg_tar_entry;

#define SZ_TOC_NAME "stargz.index.json"
#define SZ_FOOTER_SIZE 51

enum sz_toc_type {
	SZ_TOC_DIR, SZ_TOC_REG, SZ_TOC_SYMLINK, SZ_TOC_HARDLINK, SZ_TOC_CHAR, SZ_TOC_BLOCK,
	SZ_TOC_FIFO, SZ_TOC_CHUNK,
};

/* One TOC entry: a tar entry (te) plus what the conversion learnt about it. */
struct sz_toc_ent {
	const struct sg_tar_entry *te;  /* NULL for the landmark and for chunks */
	const char *name;
	enum sz_toc_type type;
	const char *uname, *gname;      /* NULL when unchanged for the id (Go's nameIfChanged) */
	uint64_t size;
	int64_t member;                 /* gzip member holding the payload, -1 if none */
	uint64_t chunk_offset, chunk_size;
	bool has_digest, has_chunk_digest;
	struct sg_digest digest, chunk_digest;
};

/* Appends the whole TOC JSON for ents[0..n).  member_off[m] is the blob offset of gzip member
 * m (an entry's "offset"; 0 is omitted, as Go does).  0 or -ENOMEM. */
int sz_toc_json(const struct sz_toc_ent *ents, size_t n, const uint64_t *member_off,
		struct sbuf *b);

/* The footer: an empty gzip member whose extra field holds toc_off, as Go's gzip writer emits
 * it at NoCompression. */
void sz_toc_footer(uint8_t out[SZ_FOOTER_SIZE], uint64_t toc_off);

/* The pieces, for the tests and for whoever needs one alone. */
/* A JSON string (quotes included) of the n bytes at s, as Go's encoding/json writes it. */
void sz_json_str(struct sbuf *b, const char *s, size_t n);
/* Standard base64 with padding (Go's []byte in JSON). */
void sz_base64(struct sbuf *b, const uint8_t *s, size_t n);
/* Go's t.UTC().Round(time.Second).Format(time.RFC3339); "" when sec == 0 (Unix() == 0). */
void sz_toc_modtime(char out[40], int64_t sec, int32_t nsec);

/* Go's nameIfChanged: the last user (or group) name given per id.  Zero-initialised it is
 * empty.  Returns name when it must be written, NULL when it is empty or unchanged for the
 * id.  The strings are not copied: they must outlive the map. */
struct sz_id_names {
	int64_t *ids;
	const char **names;
	size_t mask, n;
};
const char *sz_name_if_changed(struct sz_id_names *m, int64_t id, const char *name);
void sz_id_names_free(struct sz_id_names *m);

#endif
