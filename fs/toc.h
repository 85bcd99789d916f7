/* The TOC index: a compact, immutable view of an eStargz layer's files and chunks.
 *
 * Nodes and chunks live in packed arrays, names in one string arena, node ids are dense
 * uint32 (0 = root), and an open-addressing hash of (parent, name) answers lookups.  Once a
 * loader hands an index out (fs/estargz.h) it never changes: every query below is a read,
 * pointers stay valid while the index lives, and a NULL index or an id out of range gives
 * NULL, SG_TOC_NONE, "" or -EINVAL rather than a crash.
 *
 * Indexes are built by the TOC builder (fs/toc_build.h, from the JSON parser in
 * fs/toc_parse.h) and finished by the loader (fs/estargz.c), through the "building" calls at
 * the end of this header; nothing else writes to an index. */
#ifndef STARGZD_FS_TOC_H
#define STARGZD_FS_TOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/digest.h"

struct sg_tar_entry;

#define SG_TOC_NONE UINT32_MAX
#define SG_TOC_ROOT 0u

/* The TOC's own file at the root of the layer (see sg_toc_self). */
#define SG_ESGZ_TOC_NAME "stargz.index.json"

enum sg_toc_type {
	SG_TOC_DIR = 1,
	SG_TOC_REG,
	SG_TOC_SYMLINK,
	SG_TOC_HARDLINK,   /* `link` is the target node; the FUSE layer shows the target */
	SG_TOC_CHAR,
	SG_TOC_BLOCK,
	SG_TOC_FIFO,
};

enum sg_toc_flags {
	SG_TOC_F_IMPLIED = 1 << 0,   /* directory created because a child needed it */
	SG_TOC_F_WHITEOUT = 1 << 1,  /* was ".wh.NAME": the node is named NAME; show it as a
				      * 0:0 character device (overlayfs whiteout) */
	SG_TOC_F_OPAQUE = 1 << 2,    /* directory had ".wh..wh..opq": mark opaque */
	SG_TOC_F_SELF = 1 << 3,      /* stargz.index.json, the TOC JSON itself: no chunks (see
				      * sg_toc_self) */
};

/* One file, directory or link.  Read-only view; pointers stay valid while the toc lives. */
struct sg_toc_node {
	uint64_t size;          /* regular file size */
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	uint32_t mode;          /* permission bits with setuid/setgid/sticky (07777) */
	uint32_t uid, gid;
	uint32_t parent;        /* the root is its own parent */
	uint32_t first_child;   /* children in TOC order, SG_TOC_NONE ends */
	uint32_t next_sibling;
	uint32_t name;          /* basename: string offset (sg_toc_str) */
	uint32_t link;          /* symlink: target string; hardlink: target node id */
	uint32_t nlink;         /* names referring to it (dirs: 2 + subdirectories) */
	uint32_t dev_major, dev_minor;
	uint32_t first_chunk, nchunks;
	uint32_t xattrs;        /* xattr record offset, 0 = none */
	uint32_t user, group;   /* userName / groupName string offsets, 0 = "" */
	uint32_t digest;        /* index for sg_toc_file_digest, SG_TOC_NONE = none */
	uint16_t name_len;
	uint8_t type;           /* enum sg_toc_type */
	uint8_t flags;          /* enum sg_toc_flags */
};

/* One piece of a regular file: the gzip member [offset, next_offset) of the blob holds it
 * at inner_offset in its decompressed bytes. */
struct sg_toc_chunk {
	uint64_t offset;
	uint64_t next_offset;
	uint64_t file_offset;   /* uncompressed offset within the file */
	uint64_t size;          /* uncompressed bytes */
	uint64_t inner_offset;
	struct sg_digest digest;
	bool has_digest;
};

struct sg_toc;

void sg_toc_free(struct sg_toc *toc);

/* ---- queries ---- */

uint32_t sg_toc_count(const struct sg_toc *toc);
const struct sg_toc_node *sg_toc_node(const struct sg_toc *toc, uint32_t id);
const char *sg_toc_str(const struct sg_toc *toc, uint32_t off);
const struct sg_toc_chunk *sg_toc_chunks(const struct sg_toc *toc, const struct sg_toc_node *n);
/* The index, among n's chunks, of the first one that ends past `offset` (the one holding it,
 * chunks being sorted by file offset); n->nchunks when none does. */
uint32_t sg_toc_chunk_at(const struct sg_toc *toc, const struct sg_toc_node *n, uint64_t offset);
/* The file's "digest" field, NULL when the TOC gave none. */
const struct sg_digest *sg_toc_file_digest(const struct sg_toc *toc, const struct sg_toc_node *n);
/* The node holding the data of n: n itself, or a hardlink's target. */
const struct sg_toc_node *sg_toc_resolve(const struct sg_toc *toc, const struct sg_toc_node *n);
/* Looks a name up in a directory.  Returns the node id or SG_TOC_NONE. */
uint32_t sg_toc_lookup(const struct sg_toc *toc, uint32_t dir, const char *name, size_t len);
/* "a/b/c" from the root (leading "./" and "/" and trailing "/" tolerated). */
uint32_t sg_toc_lookup_path(const struct sg_toc *toc, const char *path);
/* Writes the node's path (no leading slash, "" for the root); returns its length, or
 * -ENAMETOOLONG if it did not fit. */
int sg_toc_path(const struct sg_toc *toc, uint32_t id, char *buf, size_t size);
/* Extended attributes: iterate with idx = 0, 1, ... until -ENOENT. */
int sg_toc_xattr(const struct sg_toc *toc, const struct sg_toc_node *n, unsigned idx,
		 const char **ret_name, const void **ret_value, size_t *ret_value_len);

/* Prefetch landmark: when the layer has ".prefetch.landmark", the prioritized files are
 * the blob's bytes [0, prefetch_end).  has_no_prefetch says ".no.prefetch.landmark" was
 * present (the converter had no priority list). */
bool sg_toc_has_prefetch(const struct sg_toc *toc, uint64_t *ret_prefetch_end);
bool sg_toc_has_no_prefetch_landmark(const struct sg_toc *toc);
bool sg_toc_verified(const struct sg_toc *toc);   /* TOC digest was checked */

/* The bookkeeping entries are part of the layer's tar, so a full pull extracts them; the
 * tree has them too.  The landmarks are ordinary TOC entries.  stargz.index.json is not in
 * the TOC: a loaded index gets a node for it at the root (SG_TOC_F_SELF, a regular file of
 * the JSON's size, no chunks) with the mode, owner, names and mtime of its tar header in
 * the TOC member.  sg_toc_self returns that node, SG_TOC_NONE when the index has none (one
 * parsed by sg_toc_parse_json alone).
 *
 * Its content is the TOC JSON itself.  With sg_esgz_options.keep_json the loader leaves the
 * verified JSON with the index (sg_toc_json) until sg_toc_drop_json or sg_toc_free, so that
 * whoever serves the file (sg_layer_new) can store it once and release the memory. */
uint32_t sg_toc_self(const struct sg_toc *toc);
bool sg_toc_json(const struct sg_toc *toc, const void **ret_json, size_t *ret_len);
void sg_toc_drop_json(struct sg_toc *toc);
const struct sg_digest *sg_toc_digest(const struct sg_toc *toc);   /* sha256 of the JSON */
uint64_t sg_toc_offset(const struct sg_toc *toc);
/* Heap bytes held by the index, split into names (string arena) and the rest. */
void sg_toc_memory(const struct sg_toc *toc, size_t *ret_index_bytes, size_t *ret_name_bytes);

/* ---- building (fs/toc_build.c and fs/estargz.c only) ----
 *
 * These calls check nothing about the layer (the builder does); they keep the index's own
 * invariants: ids dense, every named node in the hash, arena offsets in 32 bits.  Each
 * returns 0 or a negative errno (-ENOMEM, or -E2BIG when an arena or the hash would
 * outgrow its 32-bit offsets) and leaves the index as it was on failure. */

/* A hash slot keeps the node id in 24 bits (and 8 bits of the hash beside it). */
#define SG_TOC_MAX_NODES ((1u << 24) - 2)

/* An index holding only the root (an implied 0755 directory), with its arrays and hash
 * sized for est_nodes nodes at once: one mapping each, so no regrowth and no rehash while
 * building.  Chunk members end at toc_offset at the latest. */
int sg_toc_new(uint64_t toc_offset, uint32_t est_nodes, struct sg_toc **ret_toc);
/* A child of dir named name[0..len) (neither checked nor made unique here): its fields are
 * zero, links and chunks SG_TOC_NONE, nlink 1.  Children are kept newest first until
 * sg_toc_seal puts them in the order they were added. */
int sg_toc_add_node(struct sg_toc *toc, uint32_t dir, const char *name, size_t len,
		    uint32_t *ret_id);
/* The node to fill in; valid until the next sg_toc_add_node or sg_toc_add_self. */
struct sg_toc_node *sg_toc_node_mut(struct sg_toc *toc, uint32_t id);
/* Copies s[0..len) into the string arena; *ret_off for sg_toc_str (0 for "").  */
int sg_toc_add_str(struct sg_toc *toc, const char *s, size_t len, uint32_t *ret_off);
/* Appends *c to the chunks of regular file `file` (a file's chunks are added together). */
int sg_toc_add_chunk(struct sg_toc *toc, uint32_t file, const struct sg_toc_chunk *c);
/* Sets next_offset of chunks [from, count) (their member ends where the next begins);
 * returns the chunk count. */
uint32_t sg_toc_end_members(struct sg_toc *toc, uint32_t from, uint64_t next_offset);
/* The file's "digest" field; kept once, as the chunk's, when its only chunk has it too. */
int sg_toc_set_file_digest(struct sg_toc *toc, uint32_t id, const struct sg_digest *d);
/* count xattr records (name length u16 with the NUL, value length u32, name, value). */
int sg_toc_set_xattrs(struct sg_toc *toc, uint32_t id, uint32_t count, const void *records,
		      size_t len);
void sg_toc_set_prefetch(struct sg_toc *toc, uint64_t prefetch_end);
void sg_toc_set_no_prefetch(struct sg_toc *toc);
/* Starts fetching the hash slot of (dir, name) into the cache, for a lookup soon after. */
void sg_toc_prefetch_name(const struct sg_toc *toc, uint32_t dir, const char *name, size_t len);
/* Puts children in the order they were added and gives back the arrays' spare room. */
void sg_toc_seal(struct sg_toc *toc);

/* For the loader: the verification outcome; the verified TOC member (an sg_big mapping of
 * cap bytes holding the JSON at json), owned by the index from then on; and the
 * stargz.index.json node, added as tar -x would create it from the TOC's own tar header h
 * (the TOC lists no entry for itself): a regular file of json_len bytes without chunks,
 * flagged SG_TOC_F_SELF, the root's last child (it is the blob's last entry).
 * sg_toc_add_self fails with -EEXIST, -EOVERFLOW (uid/gid), -E2BIG or -ENOMEM. */
void sg_toc_set_digest(struct sg_toc *toc, const struct sg_digest *d, bool verified);
void sg_toc_keep_json(struct sg_toc *toc, uint8_t *buf, size_t cap, const uint8_t *json,
		      size_t len);
int sg_toc_add_self(struct sg_toc *toc, const struct sg_tar_entry *h, size_t json_len);

#endif
