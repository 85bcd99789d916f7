/* toc-bench: how fast does a 100k-entry TOC load, and how much memory does the index keep?
 *
 * Generates a node_modules-shaped layer in memory (default 100,000 files of 1-4 KiB, like
 * the reference measurement in the project notes), converts it to eStargz with stargzify's
 * own modules (tools/stargzify/convert.h: the TOC is what the converter, and the reference
 * converter, write for such a layer), then loads it the way the daemon does (footer, TOC
 * member decompression, TOC digest check, JSON parse straight into the index) several
 * times, and prints the best time and the bytes the index holds:
 *
 *   toc-bench [-n FILES] [-r REPEATS] [-o BLOB]   (-o also writes the blob for other tools,
 *                                                  e.g. tools/bench/json-compare.c)
 *
 * Memory is reported two ways: the index's own accounting (packed arrays + hash, names
 * separately) and the RSS growth across a load (what stays resident after the temporary
 * buffers are freed). */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fs/estargz.h"
#include "fs/gz.h"
#include "fs/tar.h"
#include "tools/stargzify/convert.h"
#include "tools/stargzify/input.h"
#include "tools/stargzify/sbuf.h"

#define LAYER_MTIME 1577934245   /* 2020-01-02T03:04:05Z */
#define FILES_PER_PACKAGE 100

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

/* ---- the layer */

static uint32_t next_rand(uint32_t *x)
{
	*x = *x * 1103515245u + 12345u;
	return *x >> 8;
}

/* One tar entry (ustar; names are short) and its payload. */
static void tar_entry(struct sbuf *t, const char *name, char type, const void *data, size_t len)
{
	uint8_t h[SG_TAR_BLOCK] = { 0 };
	bool file = type == '0';
	unsigned sum = 0;

	snprintf((char *)h, 100, "%s", name);
	snprintf((char *)h + 100, 8, "%07o", file ? 0644 : 0755);
	snprintf((char *)h + 108, 8, "%07o", file ? 1000 : 0);        /* uid */
	snprintf((char *)h + 116, 8, "%07o", file ? 1000 : 0);        /* gid */
	snprintf((char *)h + 124, 12, "%011zo", len);
	snprintf((char *)h + 136, 12, "%011o", LAYER_MTIME);
	h[156] = (uint8_t)type;
	memcpy(h + 257, "ustar\0" "00", 8);
	snprintf((char *)h + 265, 32, "%s", file ? "node" : "");      /* uname */
	snprintf((char *)h + 297, 32, "%s", file ? "node" : "");      /* gname */
	memset(h + 148, ' ', 8);
	for (size_t i = 0; i < sizeof(h); i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	h[155] = ' ';
	sb_put(t, h, sizeof(h));
	sb_put(t, data, len);
	sb_zero(t, (SG_TAR_BLOCK - len % SG_TAR_BLOCK) % SG_TAR_BLOCK);
}

/* len bytes of JavaScript-looking words. */
static void js_text(char *out, size_t len, uint32_t *x)
{
	static const char *const words[] = { "function", "return", "const", "module", "exports",
		"require", "this", "value", "undefined", "=>", "{", "}", "(", ")", ";", "if",
		"else", "null", "async", "await", "options", "callback", "length", "\n" };
	size_t n = 0;

	while (n < len) {
		const char *w = words[next_rand(x) % (sizeof(words) / sizeof(words[0]))];
		size_t wl = strlen(w) < len - n ? strlen(w) : len - n;
		memcpy(out + n, w, wl);
		n += wl;
		if (n < len)
			out[n++] = ' ';
	}
}

/* node_modules/ with packages of 100 files each: pkg-NNNNN/{package.json, README.md,
 * lib/file-NNN.js}, 1-4 KiB each, owned by node (1000:1000).  Deterministic. */
static int gen_layer(unsigned nfiles, struct sbuf *t)
{
	char name[128], content[4096];
	uint32_t x = 42;

	tar_entry(t, "node_modules/", '5', NULL, 0);
	for (unsigned i = 0; i < nfiles; i++) {
		unsigned pkg = i / FILES_PER_PACKAGE, k = i % FILES_PER_PACKAGE;
		size_t len = 1024 + next_rand(&x) % 3073;

		if (k == 0) {
			snprintf(name, sizeof(name), "node_modules/pkg-%05u/", pkg);
			tar_entry(t, name, '5', NULL, 0);
			snprintf(name, sizeof(name), "node_modules/pkg-%05u/lib/", pkg);
			tar_entry(t, name, '5', NULL, 0);
			snprintf(name, sizeof(name), "node_modules/pkg-%05u/package.json", pkg);
		} else if (k == 1) {
			snprintf(name, sizeof(name), "node_modules/pkg-%05u/README.md", pkg);
		} else {
			snprintf(name, sizeof(name), "node_modules/pkg-%05u/lib/file-%03u.js", pkg, k);
		}
		js_text(content, len, &x);
		tar_entry(t, name, '0', content, len);
	}
	sb_zero(t, 2 * SG_TAR_BLOCK);
	return t->oom ? -ENOMEM : 0;
}

/* The layer converted as stargzify converts it (gzip level 1, all CPUs), in a memfd. */
static int make_blob(unsigned nfiles, int *ret_fd, struct sz_result *res)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	struct sz_options opt = { .chunk_size = SZ_DEFAULT_CHUNK_SIZE, .level = 1,
				  .threads = ncpu > 0 ? (unsigned)ncpu : 1, .progress = 0 };
	struct sbuf tar = { 0 };
	struct sz_input in;
	int fd = memfd_create("toc-bench", MFD_CLOEXEC), ret;

	if (fd < 0)
		return -errno;
	ret = gen_layer(nfiles, &tar);
	if (ret == 0) {
		sz_input_from_memory(&in, tar.p, tar.len);
		ret = sz_convert(&opt, &in, "generated layer", fd, res);
	}
	sb_free(&tar);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	*ret_fd = fd;
	return 0;
}

/* ---- the measurement */

int main(int argc, char **argv)
{
	unsigned nfiles = 100000, repeats = 5;
	const char *out = NULL;
	int opt, fd = -1;

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

	struct sz_result res;
	double t0 = now_ms();
	int r = make_blob(nfiles, &fd, &res);
	if (r < 0) {
		fprintf(stderr, "toc-bench: generating the layer: %s\n", strerror(-r));
		return 1;
	}
	double gen_ms = now_ms() - t0;
	const uint8_t *blob = mmap(NULL, res.blob_size, PROT_READ, MAP_SHARED, fd, 0);
	if (blob == MAP_FAILED) {
		fprintf(stderr, "toc-bench: mapping the blob: %s\n", strerror(errno));
		return 1;
	}
	size_t blob_len = res.blob_size;

	struct sg_esgz_footer f;
	struct sg_error err;
	if (sg_esgz_parse_footer(blob + blob_len - 51, 51, blob_len, &f, &err) < 0) {
		fprintf(stderr, "toc-bench: %s\n", err.msg);
		return 1;
	}
	if (out) {
		FILE *fp = fopen(out, "w");
		if (!fp || fwrite(blob, 1, blob_len, fp) != blob_len || fclose(fp) != 0) {
			fprintf(stderr, "toc-bench: writing %s: %s\n", out, strerror(errno));
			return 1;
		}
		char ds[SG_DIGEST_STRLEN + 1];
		sg_digest_format(&res.toc, ds);
		printf("wrote %s (toc digest %s)\n", out, ds);
	}

	struct sg_gz *gz;
	if (sg_gz_new(&gz) < 0)
		return 1;
	struct sg_esgz_options o = { .toc_digest = &res.toc };
	double best = 1e18, best_cpu = 1e18;
	long rss_growth = 0;
	struct sg_toc *toc = NULL;
	for (unsigned i = 0; i < repeats; i++) {
		sg_toc_free(toc);
		toc = NULL;
		malloc_trim(0);
		long rss0 = rss_kb();
		double t = now_ms(), c = cpu_ms();
		r = sg_esgz_load_blob(gz, blob, blob_len, &o, &toc, &err);
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
	       nfiles, n, blob_len / 1e6, (f.toc_end - f.toc_offset) / 1e6, gen_ms);
	printf("load (footer + inflate + sha256 + parse + index), best of %u: %.1f ms wall, "
	       "%.1f ms CPU\n", repeats, best, best_cpu);
	printf("index: %.1f bytes/entry + names %.1f bytes/entry (total %.2f MiB); "
	       "RSS growth across the last load %.1f bytes/entry\n",
	       (double)idx / n, (double)names / n, (idx + names) / 1048576.0,
	       (double)rss_growth * 1024.0 / n);
	sg_toc_free(toc);
	sg_gz_free(gz);
	munmap((void *)blob, blob_len);
	close(fd);
	return 0;
}
