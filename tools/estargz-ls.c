/* estargz-ls: look inside an eStargz (or legacy stargz) blob with stargzd's reader.
 *
 *   estargz-ls [-d TOCDIGEST | -k] [-l] BLOB         list the tree
 *   estargz-ls [-d TOCDIGEST | -k] -c PATH BLOB      write a file's content to stdout
 *
 * -d gives the TOC digest to verify against (the layer's
 * containerd.io/snapshot/stargz/toc.digest annotation); -k skips verification explicitly.
 * One of them is required, like in the daemon.  Contents are always read chunk by chunk
 * through the same verification the daemon uses (unless -k).
 *
 * -l prints one tab-separated line per entry, for scripts:
 *   path type mode uid gid size mtime link dev sha256 xattrs flags
 * where a whiteout is printed under its tar name (".wh.NAME"), an opaque directory adds a
 * ".wh..wh..opq" line, sha256 is that of the content read back (regular files), and
 * flags lists "implied" for directories the TOC did not contain. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/core/digest.h"
#include "fs/estargz.h"
#include "fs/gz.h"

static const char *type_name(int t)
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

struct ctx {
	struct sg_gz *gz;
	const uint8_t *blob;
	size_t blob_len;
	struct sg_toc *toc;
	bool skip_verify;
};

/* Reads a regular file through its chunks; hashes it and/or writes it out. */
static int read_file(struct ctx *c, const struct sg_toc_node *n, FILE *out,
		     struct sg_digest *ret_digest)
{
	const struct sg_toc_chunk *ch = sg_toc_chunks(c->toc, n);
	struct sg_sha256 h;
	struct sg_error err;

	sg_sha256_init(&h);
	if (n->flags & SG_TOC_F_SELF) {
		/* stargz.index.json: the TOC JSON the loader kept (and verified, unless -k). */
		const void *json;
		size_t len;
		if (!sg_toc_json(c->toc, &json, &len))
			return -ENODATA;
		sg_sha256_update(&h, json, len);
		if (out && fwrite(json, 1, len, out) != len)
			return -EIO;
	}
	for (uint32_t i = 0; ch && i < n->nchunks; i++) {
		uint8_t *buf = malloc(ch[i].size ? ch[i].size : 1);
		if (!buf)
			return -ENOMEM;
		if (ch[i].next_offset > c->blob_len) {
			free(buf);
			return -ERANGE;
		}
		int r = sg_esgz_extract_chunk(c->gz, &ch[i], c->blob + ch[i].offset,
					      ch[i].next_offset - ch[i].offset, c->skip_verify, buf,
					      &err);
		if (r < 0) {
			fprintf(stderr, "estargz-ls: %s: %s\n", sg_esgz_code_name(err.code), err.msg);
			free(buf);
			return r;
		}
		sg_sha256_update(&h, buf, ch[i].size);
		if (out && fwrite(buf, 1, ch[i].size, out) != ch[i].size) {
			free(buf);
			return -EIO;
		}
		free(buf);
	}
	if (ret_digest)
		sg_sha256_final(&h, ret_digest);
	return 0;
}

static void print_long(struct ctx *c, uint32_t id, const char *path)
{
	const struct sg_toc_node *n = sg_toc_node(c->toc, id);
	const struct sg_toc_node *data = sg_toc_resolve(c->toc, n);
	char link[8192] = "", sha[SG_DIGEST_STRLEN + 1] = "-";

	if (n->type == SG_TOC_SYMLINK)
		snprintf(link, sizeof(link), "%s", sg_toc_str(c->toc, n->link));
	else if (n->type == SG_TOC_HARDLINK)
		sg_toc_path(c->toc, n->link, link, sizeof(link));
	if (n->type == SG_TOC_REG) {
		struct sg_digest d;
		if (read_file(c, n, NULL, &d) < 0)
			snprintf(sha, sizeof(sha), "ERROR");
		else
			sg_digest_format(&d, sha);
	}
	if (n->flags & SG_TOC_F_WHITEOUT) {
		const char *slash = strrchr(path, '/');
		int dl = slash ? (int)(slash - path) + 1 : 0;
		printf("%.*s.wh.%s", dl, path, path + dl);
	} else {
		printf("%s", id == SG_TOC_ROOT ? "." : path);
	}
	printf("\t%s\t%04o\t%u\t%u\t%llu\t%lld\t%s\t%u,%u\t%s\t", type_name(n->type),
	       n->mode, n->uid, n->gid,
	       (unsigned long long)(n->type == SG_TOC_REG ? data->size : 0),
	       (long long)n->mtime_sec, link, n->dev_major, n->dev_minor, sha);
	const char *xn;
	const void *xv;
	size_t xl;
	for (unsigned i = 0; sg_toc_xattr(c->toc, n, i, &xn, &xv, &xl) == 0; i++) {
		printf("%s%s=", i ? ";" : "", xn);
		for (size_t k = 0; k < xl; k++)
			printf("%02x", ((const uint8_t *)xv)[k]);
	}
	printf("\t%s\n", (n->flags & SG_TOC_F_IMPLIED) ? "implied" : "-");
	if (n->flags & SG_TOC_F_OPAQUE)
		printf("%s%s.wh..wh..opq\treg\t-\t-\t-\t0\t-\t\t0,0\t-\t\t-\n",
		       id == SG_TOC_ROOT ? "" : path, id == SG_TOC_ROOT ? "" : "/");
}

static void print_short(struct ctx *c, uint32_t id, const char *path)
{
	const struct sg_toc_node *n = sg_toc_node(c->toc, id);
	char when[32];
	time_t t = (time_t)n->mtime_sec;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
	printf("%-8s %04o %5u/%-5u %10llu %s %s%s", type_name(n->type), n->mode, n->uid, n->gid,
	       (unsigned long long)sg_toc_resolve(c->toc, n)->size, when,
	       id == SG_TOC_ROOT ? "." : path, n->type == SG_TOC_DIR && id ? "/" : "");
	if (n->type == SG_TOC_SYMLINK)
		printf(" -> %s", sg_toc_str(c->toc, n->link));
	if (n->type == SG_TOC_HARDLINK) {
		char target[8192];
		sg_toc_path(c->toc, n->link, target, sizeof(target));
		printf(" link to %s", target);
	}
	if (n->flags & SG_TOC_F_WHITEOUT)
		printf("  (whiteout)");
	if (n->flags & SG_TOC_F_OPAQUE)
		printf("  (opaque)");
	if (n->flags & SG_TOC_F_IMPLIED)
		printf("  (implied)");
	printf("\n");
}

/* Depth-first in TOC order. */
static void walk(struct ctx *c, uint32_t id, bool longfmt)
{
	char path[8192];

	if (sg_toc_path(c->toc, id, path, sizeof(path)) < 0)
		return;
	if (longfmt)
		print_long(c, id, path);
	else
		print_short(c, id, path);
	const struct sg_toc_node *n = sg_toc_node(c->toc, id);
	if (n->type != SG_TOC_DIR)
		return;
	for (uint32_t ch = n->first_child; ch != SG_TOC_NONE; ch = sg_toc_node(c->toc, ch)->next_sibling)
		walk(c, ch, longfmt);
}

static int usage(void)
{
	fprintf(stderr, "usage: estargz-ls (-d TOCDIGEST | -k) [-l] BLOB\n"
			"       estargz-ls (-d TOCDIGEST | -k) -c PATH BLOB\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct ctx c = { 0 };
	struct sg_digest digest;
	struct sg_esgz_options o = { .keep_json = true };   /* stargz.index.json */
	struct sg_error err;
	const char *cat = NULL;
	bool longfmt = false;
	int opt, fd, r;
	struct stat st;

	while ((opt = getopt(argc, argv, "d:klc:h")) != -1) {
		switch (opt) {
		case 'd':
			if (sg_digest_parse(optarg, strlen(optarg), &digest) < 0) {
				fprintf(stderr, "estargz-ls: bad digest %s\n", optarg);
				return 2;
			}
			o.toc_digest = &digest;
			break;
		case 'k': o.skip_verify = true; break;
		case 'l': longfmt = true; break;
		case 'c': cat = optarg; break;
		default: return usage();
		}
	}
	if (optind + 1 != argc)
		return usage();
	c.skip_verify = o.skip_verify;
	fd = open(argv[optind], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "estargz-ls: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	c.blob_len = (size_t)st.st_size;
	c.blob = c.blob_len ? mmap(NULL, c.blob_len, PROT_READ, MAP_PRIVATE, fd, 0) : (void *)"";
	close(fd);
	if (c.blob == MAP_FAILED) {
		fprintf(stderr, "estargz-ls: mmap: %s\n", strerror(errno));
		return 1;
	}
	if (sg_gz_new(&c.gz) < 0)
		return 1;
	r = sg_esgz_load_blob(c.gz, c.blob, c.blob_len, &o, &c.toc, &err);
	if (r < 0) {
		fprintf(stderr, "estargz-ls: %s: %s (%s)\n", argv[optind], err.msg,
			sg_esgz_code_name(err.code));
		return 1;
	}
	if (cat) {
		uint32_t id = sg_toc_lookup_path(c.toc, cat);
		const struct sg_toc_node *n = sg_toc_resolve(c.toc, sg_toc_node(c.toc, id));
		if (!n || n->type != SG_TOC_REG) {
			fprintf(stderr, "estargz-ls: %s: not a regular file in the layer\n", cat);
			return 1;
		}
		r = read_file(&c, n, stdout, NULL);
	} else {
		walk(&c, SG_TOC_ROOT, longfmt);
		r = 0;
	}
	sg_toc_free(c.toc);
	sg_gz_free(c.gz);
	if (fflush(stdout) != 0)
		return 1;
	return r < 0 ? 1 : 0;
}
