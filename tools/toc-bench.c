/* toc-bench: how fast does a 100k-entry TOC load, and how much memory does the index keep?
 *
 * Generates a node_modules-shaped eStargz layer in memory (default 100,000 files of
 * 1-4 KiB, like the reference measurement in the project notes), then loads it the way the
 * daemon does (footer, TOC member decompression, TOC digest check, JSON parse straight into
 * the index) several times, and prints the best time and the bytes the index holds:
 *
 *   toc-bench [-n FILES] [-r REPEATS] [-o BLOB]   (-o also writes the blob for other tools)
 *
 * Memory is reported two ways: the index's own accounting (packed arrays + hash, names
 * separately) and the heap growth measured by mallinfo2 across a load (what stays resident
 * after the temporary buffers are freed). */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs/estargz.h"
#include "fs/gz.h"
#include "tests/helpers/esgz_build.h"

static double clock_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double now_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

/* CPU time too: on a shared 2-core machine wall time mostly measures the neighbours. */
static double cpu_ms(void)
{
	return clock_ms(CLOCK_PROCESS_CPUTIME_ID);
}

static long rss_kb(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmRSS:", 6) == 0)
			v = atol(line + 6);
	fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	unsigned nfiles = 100000, repeats = 5;
	const char *out = NULL;
	int opt;

	while ((opt = getopt(argc, argv, "n:r:o:h")) != -1) {
		switch (opt) {
		case 'n': nfiles = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'r': repeats = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'o': out = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-n FILES] [-r REPEATS] [-o BLOB]\n", argv[0]);
			return 2;
		}
	}
	if (!repeats)
		repeats = 1;

	struct esgz_b b;
	struct sg_digest d;
	double t0 = now_ms();
	esgz_init(&b, 1);
	esgz_gen_node_modules(&b, nfiles, 42);
	esgz_finish(&b, 0, &d);
	double gen_ms = now_ms() - t0;
	free(b.pending.p);
	b.pending = (struct esgz_buf){ 0 };
	free(b.toc.p);
	b.toc = (struct esgz_buf){ 0 };

	struct sg_esgz_footer f;
	struct sg_error err;
	if (sg_esgz_parse_footer(b.blob.p + b.blob.len - 51, 51, b.blob.len, &f, &err) < 0) {
		fprintf(stderr, "toc-bench: %s\n", err.msg);
		return 1;
	}
	if (out) {
		FILE *fp = fopen(out, "w");
		if (!fp || fwrite(b.blob.p, 1, b.blob.len, fp) != b.blob.len || fclose(fp) != 0) {
			fprintf(stderr, "toc-bench: writing %s: %s\n", out, strerror(errno));
			return 1;
		}
		char ds[SG_DIGEST_STRLEN + 1];
		sg_digest_format(&d, ds);
		printf("wrote %s (toc digest %s)\n", out, ds);
	}

	struct sg_gz *gz;
	if (sg_gz_new(&gz) < 0)
		return 1;
	struct sg_esgz_options o = { .toc_digest = &d };
	double best = 1e18, best_cpu = 1e18;
	long rss_growth = 0;
	struct sg_toc *toc = NULL;
	for (unsigned i = 0; i < repeats; i++) {
		sg_toc_free(toc);
		toc = NULL;
		malloc_trim(0);
		long rss0 = rss_kb();
		double t = now_ms(), c = cpu_ms();
		int r = sg_esgz_load_blob(gz, b.blob.p, b.blob.len, &o, &toc, &err);
		t = now_ms() - t;
		c = cpu_ms() - c;
		long rss1 = rss_kb();
		if (r < 0) {
			fprintf(stderr, "toc-bench: load failed: %s: %s\n", sg_esgz_code_name(err.code),
				err.msg);
			return 1;
		}
		rss_growth = rss1 - rss0;
		if (t < best)
			best = t;
		if (c < best_cpu)
			best_cpu = c;
	}
	size_t idx, names;
	sg_toc_memory(toc, &idx, &names);
	unsigned n = sg_toc_count(toc);
	printf("layer: %u files, %u index nodes, blob %.1f MB, TOC member %.1f MB (generated in %.0f ms)\n",
	       nfiles, n, b.blob.len / 1e6, (f.toc_end - f.toc_offset) / 1e6, gen_ms);
	printf("load (footer + inflate + sha256 + parse + index), best of %u: %.1f ms wall, "
	       "%.1f ms CPU\n", repeats, best, best_cpu);
	printf("index: %.1f bytes/entry + names %.1f bytes/entry (total %.2f MiB); "
	       "RSS growth across the last load %.1f bytes/entry\n",
	       (double)idx / n, (double)names / n, (idx + names) / 1048576.0,
	       (double)rss_growth * 1024.0 / n);
	sg_toc_free(toc);
	sg_gz_free(gz);
	esgz_done(&b);
	return 0;
}
