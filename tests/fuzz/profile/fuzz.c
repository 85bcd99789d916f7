/* libFuzzer target: the startup-profile parser (fs/profile.h), one document or a bundle (byte 0
 * picks), then what the daemon does with a parsed profile: format it again (which must parse
 * to the same ranges), plan its replay, fit it to a smaller layer, and merge it into a
 * recorder. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fs/profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Ranges are in 0..count-1, each chunk once, and their sum is the chunk total. */
static void check(const struct sg_profile *p)
{
	const struct sg_profile_range *r;
	size_t n = sg_profile_ranges(p, &r);
	uint64_t sum = 0;

	for (size_t i = 0; i < n; i++) {
		if (r[i].first > r[i].last || r[i].last >= sg_profile_chunk_count(p))
			abort();
		sum += (uint64_t)r[i].last - r[i].first + 1;
	}
	if (sum != sg_profile_chunks(p) || sum > sg_profile_chunk_count(p))
		abort();
}

/* Chunk c of a synthetic layer: blob bytes [64 c, 64 c + 64), every 7th sharing a member with
 * the one before. */
static int extent(void *ctx, uint32_t c, uint64_t *off, uint64_t *end)
{
	uint64_t first = c % 7 == 0 && c ? c - 1 : c;
	*off = 64 * first;
	*end = 64 * (uint64_t)c + 64;
	return 0;
}

/* The replay plan: requests within the profile's chunks, each at most 1000 bytes unless it is
 * one chunk, the bytes summed right. */
static void check_plan(const struct sg_profile *p)
{
	static struct sg_profile_fetch f[256];
	uint64_t bytes = 0, sum = 0;
	size_t n = sg_profile_plan(p, extent, NULL, NULL, 1000, 50000, f, 256, &bytes);

	for (size_t i = 0; i < n; i++) {
		if (f[i].first > f[i].last || f[i].end <= f[i].offset ||
		    !sg_profile_has(p, f[i].first) || !sg_profile_has(p, f[i].last) ||
		    (f[i].first != f[i].last && f[i].end - f[i].offset > 1000))
			abort();
		sum += f[i].end - f[i].offset;
	}
	if (sum != bytes)
		abort();
}

static void exercise(struct sg_profile *p)
{
	struct sg_profile *again = NULL, *rec = NULL;
	const struct sg_profile_range *r1, *r2;
	char *json = NULL;
	size_t len = 0;

	check(p);
	check_plan(p);
	if (sg_profile_format(p, &json, &len) != 0)
		abort();
	if (sg_profile_parse(json, len, &again, NULL) != 0)
		abort();
	size_t n1 = sg_profile_ranges(p, &r1), n2 = sg_profile_ranges(again, &r2);
	if (n1 != n2 || (n1 && memcmp(r1, r2, n1 * sizeof(*r1)) != 0))
		abort();
	if (sg_profile_new(sg_profile_toc(p), sg_profile_chunk_count(p), NULL, &rec) != 0)
		abort();
	(void)sg_profile_note(rec, sg_profile_chunk_count(p) / 2, 1);
	if (sg_profile_merge(rec, again, NULL) != 0)
		abort();
	check(rec);
	(void)sg_profile_fit(again, sg_profile_chunk_count(p) / 3 + 1);
	check(again);
	sg_profile_free(rec);
	sg_profile_free(again);
	free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sg_error err = { 0 };

	if (size < 1)
		return 0;
	if (data[0] & 1) {
		struct sg_profile **ps = NULL;
		size_t n = 0;
		int r = sg_profile_bundle_parse(data + 1, size - 1, &ps, &n, &err);
		if (r == 0) {
			for (size_t i = 0; i < n; i++)
				exercise(ps[i]);
			sg_profile_bundle_free(ps, n);
		} else if (ps || !err.msg[0]) {
			abort();
		}
	} else {
		struct sg_profile *p = NULL;
		int r = sg_profile_parse(data + 1, size - 1, &p, &err);
		if (r == 0) {
			exercise(p);
			sg_profile_free(p);
		} else if (p || !err.msg[0]) {
			abort();
		}
	}
	return 0;
}
