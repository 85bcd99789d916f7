/* libFuzzer target for the eStargz footer + TOC parser and the index built from it.
 *
 * The first input byte picks the entry point: odd = the rest is TOC JSON for
 * sg_toc_parse_json (reaches the index builder quickly), even = the rest is a whole blob
 * for sg_esgz_load_blob (footer, TOC member inflate, tar header, then the same parser).
 * Verification is off so that inputs reach the parser without a matching digest, and the
 * limits are small so that one input stays fast.  A successful load is walked through
 * every accessor, the way the FUSE layer will. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fs/estargz.h"
#include "fs/gz.h"
#include "fs/toc_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct sg_toc *toc)
{
	char path[8192];
	uint32_t n = sg_toc_count(toc);

	for (uint32_t id = 0; id < n; id++) {
		const struct sg_toc_node *node = sg_toc_node(toc, id);
		int len = sg_toc_path(toc, id, path, sizeof(path));
		if (len >= 0 && sg_toc_lookup_path(toc, path) != id && id != 0 &&
		    !(node->flags & SG_TOC_F_WHITEOUT))
			__builtin_trap();   /* every node must be found under its own path */
		(void)sg_toc_str(toc, node->name);
		(void)sg_toc_resolve(toc, node);
		(void)sg_toc_file_digest(toc, node);
		const struct sg_toc_chunk *c = sg_toc_chunks(toc, node);
		uint64_t covered = 0;
		for (uint32_t i = 0; c && i < node->nchunks; i++) {
			if (c[i].file_offset != covered || c[i].offset >= c[i].next_offset ||
			    c[i].next_offset > sg_toc_offset(toc))
				__builtin_trap();
			/* Every chunk is non-empty, within the chunk limit, and one its member
			 * can hold (issue 11: sizes checked at load, not at read). */
			uint64_t need = c[i].inner_offset + c[i].size;
			if (c[i].size == 0 || need > SG_ESGZ_DEFAULT_MAX_CHUNK ||
			    need > sg_gz_max_output(c[i].next_offset - c[i].offset) ||
			    c[i].next_offset - c[i].offset > 2 * SG_ESGZ_DEFAULT_MAX_CHUNK)
				__builtin_trap();
			covered += c[i].size;
		}
		/* stargz.index.json has no chunks: its bytes are the TOC itself */
		if (node->type == SG_TOC_REG && node->size && covered != node->size &&
		    !(node->flags & SG_TOC_F_SELF))
			__builtin_trap();
		const char *xn;
		const void *xv;
		size_t xl;
		for (unsigned i = 0; sg_toc_xattr(toc, node, i, &xn, &xv, &xl) == 0; i++)
			(void)strlen(xn);
		for (uint32_t ch = node->first_child; ch != SG_TOC_NONE;
		     ch = sg_toc_node(toc, ch)->next_sibling)
			if (sg_toc_node(toc, ch)->parent != id)
				__builtin_trap();
	}
	(void)sg_toc_has_prefetch(toc, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sg_gz *gz;
	struct sg_esgz_options o = {
		.skip_verify = true, .max_toc_size = 4u << 20, .max_entries = 100000,
	};
	struct sg_error err;
	struct sg_toc *toc = NULL;
	int r;

	if (size < 1)
		return 0;
	if (!gz && sg_gz_new(&gz) < 0)
		return 0;
	if (data[0] & 1)
		r = sg_toc_parse_json(data + 1, size - 1, 1u << 20, &o, &toc, &err);
	else
		r = sg_esgz_load_blob(gz, data + 1, size - 1, &o, &toc, &err);
	if (r < 0) {
		if (toc || err.code == SG_ESGZ_OK || !err.msg[0])
			__builtin_trap();   /* every refusal carries a code and a message */
		return 0;
	}
	walk(toc);
	sg_toc_free(toc);
	return 0;
}
