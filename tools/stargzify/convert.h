/* Conversion of one layer: a mapped tar (input.h) in, an eStargz blob out.
 *
 * The blob follows the eStargz format as the reference converter (stargz-snapshotter's Go
 * estargz.Build) writes it: the landmark entry first (or after the prioritized files), every
 * regular file's payload (every chunk of a large file) starting a new gzip member, the TOC
 * "stargz.index.json" as the last tar entry in its own member, then the 51-byte footer
 * (toc_writer.h).  Entries are deduplicated (the last entry of a name wins) and any landmark
 * or TOC entry of the input is dropped, as the reference does.  Unlike the reference, the tar
 * headers are copied through unchanged, so every entry of the output tar is byte-identical
 * to the input's.
 *
 * One pass indexes the entries, a second emits them, dropping the input pages it has passed.
 * Compression runs on worker threads (pipeline.h); the main thread hashes (chunk digests,
 * diffID, blob digest) and writes in order, so the output does not depend on the thread
 * count.
 *
 * Known differences from the reference: tar headers are not re-encoded (see above); a
 * prioritized path whose parent directories have no entries in the tar is still moved (the
 * reference reports it missing); userName/groupName are elided per whole layer (the
 * reference restarts the elision in each of its parallel parts).  Readers accept both.
 *
 * Problems are reported on stderr as they happen (util.h), warnings too ("prioritized file
 * ... is not in the layer"); the result is 0 or a negative errno. */
#ifndef STARGZIFY_CONVERT_H
#define STARGZIFY_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/digest.h"

struct sz_input;

#define SZ_DEFAULT_CHUNK_SIZE (4u << 20)
/* The reference uses Go's gzip.BestCompression (9).  libdeflate's level 6 already compresses
 * better than that (Debian rootfs layer: 79.9 MB vs the reference's 81.7 MB; 100k small files:
 * 182.4 vs 183.3 MB) at twice the speed of its own level 9, so it is the default. */
#define SZ_DEFAULT_LEVEL 6

struct sz_options {
	uint64_t chunk_size;
	int level;
	unsigned threads;
	const char *prioritize_file;   /* paths placed first, one a line ("-": stdin), or NULL */
	/* Paths placed first (after those of prioritize_file): a startup profile's files
	 * (profile_paths.h). */
	char *const *prioritize_paths;
	size_t n_prioritize_paths;
	bool json;
	int progress;           /* -1 auto (TTY), 0 off, 1 on */
};

struct sz_result {
	struct sg_digest blob, toc, diff_id;
	uint64_t blob_size, uncompressed_size, toc_offset;
	size_t n_entries;
};

/* Converts the mapped tar `in` into an eStargz blob written to out_fd (from its current
 * position).  label names the input in messages. */
int sz_convert(const struct sz_options *opt, struct sz_input *in, const char *label, int out_fd,
	       struct sz_result *res);

#endif
