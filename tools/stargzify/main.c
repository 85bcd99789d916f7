/* stargzify: converts a container image layer (tar or tar.gz) into an eStargz blob, or every
 * layer of an OCI image layout.
 *
 *   stargzify [OPTIONS] INPUT OUTPUT           INPUT: tar, tar.gz (by magic) or "-" for stdin;
 *                                              OUTPUT: a file, or "-" for stdout
 *   stargzify [OPTIONS] --oci-layout SRC DST   converts an OCI image layout directory
 *
 * This file is the command line and the single-layer mode; the work is done by the modules
 * next to it:
 *   input.h       the whole uncompressed tar, mapped (a .tar.gz or stdin inflated or copied
 *                 into an unlinked temp file first)
 *   convert.h     one layer -> one eStargz blob, byte-compatible with the reference converter
 *   pipeline.h    gzip members compressed on worker threads, written in order
 *   toc_writer.h  the TOC JSON as Go's json.MarshalIndent writes it, and the footer
 *   oci_layout.h  --oci-layout: every layer, config diff_ids, manifests, index
 *   profile_paths.h  --prioritize PROFILE: a startup profile as the priority list
 *   sbuf.h, util.h  a growable buffer; the error line and a blocking write */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/core/digest.h"
#include "tools/stargzify/convert.h"
#include "tools/stargzify/input.h"
#include "tools/stargzify/oci_layout.h"
#include "tools/stargzify/profile_paths.h"
#include "tools/stargzify/util.h"

/* ---- single-layer mode */

static void print_result(const struct sz_options *opt, const struct sz_result *r, FILE *f)
{
	char blob[SG_DIGEST_STRLEN + 1], toc[SG_DIGEST_STRLEN + 1], diff[SG_DIGEST_STRLEN + 1];
	sg_digest_format(&r->blob, blob);
	sg_digest_format(&r->toc, toc);
	sg_digest_format(&r->diff_id, diff);
	if (opt->json)
		fprintf(f, "{\"blobDigest\":\"%s\",\"blobSize\":%" PRIu64 ",\"tocDigest\":\"%s\","
			   "\"diffID\":\"%s\",\"uncompressedSize\":%" PRIu64 ",\"tocOffset\":%" PRIu64
			   ",\"tocEntries\":%zu}\n",
			blob, r->blob_size, toc, diff, r->uncompressed_size, r->toc_offset, r->n_entries);
	else
		fprintf(f, "blob-digest %s\nblob-size %" PRIu64 "\ntoc-digest %s\ndiff-id %s\n"
			   "uncompressed-size %" PRIu64 "\n",
			blob, r->blob_size, toc, diff, r->uncompressed_size);
}

static int convert_file(const struct sz_options *opt, const char *src, const char *dst)
{
	struct sz_input in;
	struct sz_result res;
	char tmp[PATH_MAX] = "";
	int fd = -1, ret;
	bool to_stdout = strcmp(dst, "-") == 0;

	ret = sz_input_open(src, &in);
	if (ret < 0)
		return ret;
	if (to_stdout) {
		fd = STDOUT_FILENO;
	} else {
		if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", dst) >= sizeof(tmp)) {
			ret = -ENAMETOOLONG;
			sz_errorf("%s: path too long", dst);
			goto out;
		}
		fd = mkostemp(tmp, O_CLOEXEC);
		if (fd < 0) {
			ret = -errno;
			sz_errorf("cannot create %s: %s", tmp, strerror(errno));
			tmp[0] = 0;
			goto out;
		}
		fchmod(fd, 0644);
	}
	ret = sz_convert(opt, &in, strcmp(src, "-") == 0 ? "stdin" : src, fd, &res);
	if (ret < 0)
		goto out;
	if (!to_stdout) {
		if (close(fd) < 0) {
			fd = -1;
			ret = -errno;
			sz_errorf("writing %s: %s", dst, strerror(errno));
			goto out;
		}
		fd = -1;
		if (rename(tmp, dst) < 0) {
			ret = -errno;
			sz_errorf("cannot rename %s to %s: %s", tmp, dst, strerror(errno));
			goto out;
		}
		tmp[0] = 0;
	}
	print_result(opt, &res, to_stdout ? stderr : stdout);
out:
	if (fd >= 0 && !to_stdout)
		close(fd);
	if (tmp[0])
		unlink(tmp);
	sz_input_done(&in);
	return ret;
}

/* ---- command line */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [OPTIONS] INPUT OUTPUT\n"
		"       %s [OPTIONS] --oci-layout SRC_DIR DST_DIR\n"
		"Converts a layer (tar or tar.gz; \"-\" reads stdin, OUTPUT \"-\" writes stdout) to eStargz\n"
		"and prints the blob digest, TOC digest, diffID (sha256 of the gunzipped blob: the new\n"
		"layer's diff_id) and uncompressed size (io.containers.estargz.uncompressed-size).\n"
		"  --chunk-size N     chunk size for large files (default 4194304; K/M suffixes)\n"
		"  --level N          gzip level 0-12 (libdeflate; default %d)\n"
		"  --prioritize FILE  paths (one a line) placed first, then .prefetch.landmark; or a\n"
		"                     startup profile (JSON, `stargzd profile show --json`): the files\n"
		"                     of its chunks in first-read order, which needs\n"
		"  --prioritize-from BLOB  the eStargz blob the profile was recorded on (its TOC\n"
		"                     digest must be the profile's)\n"
		"  --threads N        compression threads (default: number of CPUs)\n"
		"  --json             print the result as JSON\n"
		"  --progress / --no-progress   progress line on stderr (default: on a TTY, large inputs)\n"
		"  --oci-layout       convert an OCI image layout: every layer, config diff_ids, manifest\n"
		"                     annotations (" SZ_ANN_TOC_DIGEST ", " SZ_ANN_UNCOMPRESSED_SIZE ")\n",
		SZ_PROG, SZ_PROG, SZ_DEFAULT_LEVEL);
}

static bool parse_size(const char *s, uint64_t *ret)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	if (*end == 'K' || *end == 'k')
		v <<= 10, end++;
	else if (*end == 'M' || *end == 'm')
		v <<= 20, end++;
	else if (*end == 'G' || *end == 'g')
		v <<= 30, end++;
	if (*end == 'i' && end[-1] != 0 && end[1] == 'B')
		end += 2;
	if (*end)
		return false;
	*ret = v;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "chunk-size", required_argument, NULL, 'c' },
		{ "level", required_argument, NULL, 'l' },
		{ "prioritize", required_argument, NULL, 'p' },
		{ "prioritize-from", required_argument, NULL, 'F' },
		{ "threads", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "progress", no_argument, NULL, 'P' },
		{ "no-progress", no_argument, NULL, 'N' },
		{ "oci-layout", no_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct sz_options opt = { .chunk_size = SZ_DEFAULT_CHUNK_SIZE, .level = SZ_DEFAULT_LEVEL,
				  .progress = -1 };
	bool oci = false;
	const char *prioritize_from = NULL;
	char **profile_paths = NULL;
	size_t n_profile_paths = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int c, ret;

	opt.threads = ncpu > 0 ? (unsigned)ncpu : 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (!parse_size(optarg, &opt.chunk_size) || opt.chunk_size == 0 ||
			    opt.chunk_size > (1ull << 30)) {
				sz_errorf("--chunk-size: expected 1 byte .. 1 GiB, got \"%s\"", optarg);
				return 2;
			}
			break;
		case 'l': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || end == optarg || v < 0 || v > 12) {
				sz_errorf("--level: expected 0..12, got \"%s\"", optarg);
				return 2;
			}
			opt.level = (int)v;
			break;
		}
		case 'p':
			opt.prioritize_file = optarg;
			break;
		case 'F':
			prioritize_from = optarg;
			break;
		case 't': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || end == optarg || v < 1 || v > 256) {
				sz_errorf("--threads: expected 1..256, got \"%s\"", optarg);
				return 2;
			}
			opt.threads = (unsigned)v;
			break;
		}
		case 'j':
			opt.json = true;
			break;
		case 'P':
			opt.progress = 1;
			break;
		case 'N':
			opt.progress = 0;
			break;
		case 'o':
			oci = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	if (opt.prioritize_file && sz_is_profile(opt.prioritize_file)) {
		if (sz_profile_paths(opt.prioritize_file, prioritize_from, &profile_paths,
				     &n_profile_paths) < 0)
			return 1;
		opt.prioritize_file = NULL;
		opt.prioritize_paths = profile_paths;
		opt.n_prioritize_paths = n_profile_paths;
	} else if (prioritize_from) {
		sz_errorf("--prioritize-from goes with a startup profile given to --prioritize");
		return 2;
	}
	if (oci)
		ret = sz_convert_oci(&opt, argv[optind], argv[optind + 1]);
	else
		ret = convert_file(&opt, argv[optind], argv[optind + 1]);
	sz_paths_free(profile_paths, n_profile_paths);
	return ret < 0 ? 1 : 0;
}
