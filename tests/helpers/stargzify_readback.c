/* stargzify_readback BLOB TOCDIGEST: reads an eStargz blob back with our reader
 * (fs/estargz.h: sg_esgz_load_blob with the TOC digest checked, sg_esgz_extract_chunk with
 * every chunk digest checked) and prints one JSON object per node, in node order:
 *
 *   {"path":"<hex>","type":"reg","mode":420,"uid":0,"gid":0,"size":5,"mtime":1700000000,
 *    "link":"<hex>","devMajor":0,"devMinor":0,"xattrs":{"<hex name>":"<hex value>"},
 *    "sha256":"<hex of the content>"}
 *
 * Paths, link targets and xattrs are hex so any byte survives.  A hardlink's "link" is its
 * target's path.  Exits 1 with a message on the first failure.  Used by
 * tests/integration/stargzify.sh for the converter -> reader round trip. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/core/digest.h"
#include "fs/estargz.h"
#include "fs/gz.h"

static void hex(const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
}

static const char *type_name(unsigned t)
{
	switch (t) {
	case SG_TOC_DIR: return "dir";
	case SG_TOC_REG: return "reg";
	case SG_TOC_SYMLINK: return "symlink";
	case SG_TOC_HARDLINK: return "hardlink";
	case SG_TOC_CHAR: return "char";
	case SG_TOC_BLOCK: return "block";
	case SG_TOC_FIFO: return "fifo";
	default: return "?";
	}
}

int main(int argc, char **argv)
{
	struct sg_esgz_options opts = { 0 };
	struct sg_error err = { 0 };
	struct sg_digest want;
	struct sg_toc *toc = NULL;
	struct sg_gz *gz = NULL;
	struct stat st;
	uint8_t *blob;
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: %s BLOB TOCDIGEST\n", argv[0]);
		return 2;
	}
	if (sg_digest_parse(argv[2], strlen(argv[2]), &want) < 0) {
		fprintf(stderr, "bad digest %s\n", argv[2]);
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) {
		fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	blob = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (blob == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	opts.toc_digest = &want;
	opts.keep_json = true;   /* stargz.index.json's content */
	if (sg_gz_new(&gz) < 0) {
		fprintf(stderr, "sg_gz_new failed\n");
		return 1;
	}
	if (sg_esgz_load_blob(gz, blob, (size_t)st.st_size, &opts, &toc, &err) < 0) {
		fprintf(stderr, "load: %s: %s\n", sg_esgz_code_name(err.code), err.msg);
		return 1;
	}
	for (uint32_t id = 0; id < sg_toc_count(toc); id++) {
		const struct sg_toc_node *n = sg_toc_node(toc, id);
		char path[8192];
		int pl = sg_toc_path(toc, id, path, sizeof(path));

		if (pl < 0) {
			fprintf(stderr, "node %u: path too long\n", id);
			return 1;
		}
		printf("{\"path\":\"");
		hex(path, (size_t)pl);
		printf("\",\"type\":\"%s\",\"mode\":%u,\"uid\":%u,\"gid\":%u,\"size\":%" PRIu64
		       ",\"mtime\":%" PRId64 ",\"devMajor\":%u,\"devMinor\":%u,\"flags\":%u",
		       type_name(n->type), n->mode, n->uid, n->gid, n->size, n->mtime_sec, n->dev_major,
		       n->dev_minor, n->flags);
		if (n->type == SG_TOC_SYMLINK) {
			const char *l = sg_toc_str(toc, n->link);
			printf(",\"link\":\"");
			hex(l, strlen(l));
			printf("\"");
		} else if (n->type == SG_TOC_HARDLINK) {
			char lp[8192];
			int ll = sg_toc_path(toc, n->link, lp, sizeof(lp));
			printf(",\"link\":\"");
			hex(lp, ll > 0 ? (size_t)ll : 0);
			printf("\"");
		}
		printf(",\"xattrs\":{");
		for (unsigned i = 0;; i++) {
			const char *xn;
			const void *xv;
			size_t xl;
			if (sg_toc_xattr(toc, n, i, &xn, &xv, &xl) < 0)
				break;
			printf("%s\"", i ? "," : "");
			hex(xn, strlen(xn));
			printf("\":\"");
			hex(xv, xl);
			printf("\"");
		}
		printf("}");
		if (n->type == SG_TOC_REG) {
			const struct sg_toc_chunk *c = sg_toc_chunks(toc, n);
			struct sg_sha256 h;
			struct sg_digest d;
			uint64_t off = 0;

			sg_sha256_init(&h);
			if (n->flags & SG_TOC_F_SELF) {
				const void *json = NULL;
				size_t jl = 0;
				(void)sg_toc_json(toc, &json, &jl);
				sg_sha256_update(&h, json, jl);
				off = jl;
			}
			for (uint32_t k = 0; k < n->nchunks; k++) {
				uint8_t *buf = malloc(c[k].size ? c[k].size : 1);
				if (!buf || c[k].file_offset != off || c[k].next_offset > (uint64_t)st.st_size ||
				    c[k].offset >= c[k].next_offset) {
					fprintf(stderr, "node %u: bad chunk %u\n", id, k);
					return 1;
				}
				if (sg_esgz_extract_chunk(gz, &c[k], blob + c[k].offset,
							  c[k].next_offset - c[k].offset, false, buf, &err) < 0) {
					fprintf(stderr, "node %u chunk %u: %s: %s\n", id, k,
						sg_esgz_code_name(err.code), err.msg);
					return 1;
				}
				sg_sha256_update(&h, buf, c[k].size);
				off += c[k].size;
				free(buf);
			}
			if (off != n->size) {
				fprintf(stderr, "node %u: chunks cover %" PRIu64 " of %" PRIu64 " bytes\n", id, off,
					n->size);
				return 1;
			}
			sg_sha256_final(&h, &d);
			printf(",\"sha256\":\"");
			hex(d.bytes, sizeof(d.bytes));
			printf("\"");
		}
		printf("}\n");
	}
	sg_toc_free(toc);
	sg_gz_free(gz);
	munmap(blob, (size_t)st.st_size);
	close(fd);
	return 0;
}
