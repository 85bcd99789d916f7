/* A tar parser over a buffer in memory (an mmap'd layer): ustar, GNU (long names and links,
 * base-256 numbers), PAX extended headers (path, linkpath, size, uid, gid, uname, gname,
 * mtime, SCHILY.xattr.*), and v7.  It reports each entry's metadata the way Go's archive/tar
 * does (the reference eStargz converter is built on it) and where its header blocks, payload
 * and padding lie, so a caller can copy entries through byte for byte.
 *
 * Pure code: no I/O, no allocation except the entry's strings, errors as negative errno with a
 * message naming the offending entry.  Sparse files, multi-volume and unknown entry types are
 * refused (-ENOTSUP); damaged input is -EBADMSG. */
#ifndef STARGZD_FS_TAR_H
#define STARGZD_FS_TAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SG_TAR_BLOCK 512
/* Limit on GNU long-name and PAX header payloads (Go's archive/tar uses the same). */
#define SG_TAR_MAX_SPECIAL (1u << 20)

struct sg_tar_xattr {
	char *key;        /* without the "SCHILY.xattr." prefix */
	uint8_t *value;   /* may contain NULs */
	size_t len;
};

struct sg_tar_entry {
	/* Byte ranges in the input.  [hdr_off, data_off) holds the entry's header blocks (PAX and
	 * GNU long-name blocks included), [data_off, data_off + size) the payload, and the entry
	 * including its padding ends at end_off (a multiple of 512 after hdr_off). */
	uint64_t hdr_off, data_off, end_off;
	uint64_t size;          /* payload bytes: 0 for every type but regular files */
	char type;              /* '0' reg, '1' hardlink, '2' symlink, '3' char, '4' block,
	                         * '5' dir, '6' fifo, 'g' PAX global header */
	char *name;             /* as stored (PAX path > GNU long name > prefix "/" name) */
	char *linkname;
	char *uname, *gname;    /* "" when absent */
	int64_t mode, uid, gid, devmajor, devminor;
	int64_t mtime_sec;      /* PAX mtime when present (nsec normalized to [0, 1e9)) */
	int32_t mtime_nsec;
	struct sg_tar_xattr *xattrs;   /* in the order of the PAX records, keys unique */
	size_t n_xattrs;
	unsigned index;         /* entry number, from 0 */
};

struct sg_tar_reader {
	const uint8_t *buf;
	size_t len;
	uint64_t pos;
	unsigned index;
	bool done;
	char err[512];          /* message of the last error */
};

void sg_tar_reader_init(struct sg_tar_reader *r, const void *buf, size_t len);

/* Parses the next entry into *ret (which the caller releases with sg_tar_entry_done).
 * Returns 1 for an entry, 0 at the end of the archive (two zero blocks, or the end of the
 * buffer on a block boundary), or a negative errno with r->err set; *ret is untouched on
 * 0 and on error. */
int sg_tar_next(struct sg_tar_reader *r, struct sg_tar_entry *ret);

void sg_tar_entry_done(struct sg_tar_entry *e);

/* Go's path.Clean("/" + name) without the leading "/": the key under which the reference
 * deduplicates entries ("./a//b/" -> "a/b", "./" -> "").  Returns a malloc'd string or NULL. */
char *sg_tar_clean_name(const char *name);

/* Writes a ustar header block exactly as Go's archive/tar writes one for a header holding only
 * a name (< 100 bytes), typeflag '0' and a size: the form of the eStargz landmark and TOC
 * entries.  -ENAMETOOLONG if the name does not fit. */
int sg_tar_make_reg_header(uint8_t blk[SG_TAR_BLOCK], const char *name, uint64_t size);

#endif
