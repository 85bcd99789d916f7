/* The converter's input: a whole uncompressed tar, mapped into memory.
 *
 * A plain tar file is mapped as it is.  A tar.gz (recognised by its magic, any number of gzip
 * members, zero padding after the last one tolerated) is inflated into an unlinked temp file
 * in $TMPDIR (default /var/tmp) and that is mapped; stdin ("-") and other non-regular files
 * are first copied into such a file.  zstd input is refused (-ENOTSUP).
 *
 * Both mappings are file-backed, so the converter may drop pages it has passed with
 * madvise(MADV_DONTNEED) and read them again later (`droppable`): a layer larger than memory
 * converts in a bounded footprint.  Failures are reported on stderr (util.h) and return a
 * negative errno. */
#ifndef STARGZIFY_INPUT_H
#define STARGZIFY_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sz_input {
	const uint8_t *buf;     /* the tar */
	size_t len;
	void *map;              /* the mapping to drop pages of and unmap, NULL if none */
	size_t map_len;
	bool droppable;         /* madvise(MADV_DONTNEED) keeps the data (file-backed mapping) */
	bool was_gzip;
	uint64_t compressed_len;
};

/* Maps a tar or tar.gz from a path ("-" = stdin). */
int sz_input_open(const char *path, struct sz_input *in);
/* A tar already in memory (not copied, not droppable): for callers that generate one. */
void sz_input_from_memory(struct sz_input *in, const void *tar, size_t len);
/* Unmaps; in is zeroed (done twice is harmless). */
void sz_input_done(struct sz_input *in);

#endif
