#include "fs/diskcache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/estargz.h"

#define FD_SLOTS 128
#define BITMAP_NAME "chunks.bitmap"

struct fd_slot {
	uint32_t node;
	int fd;
	bool used;
	unsigned busy;             /* ops using fd: it is not closed before they end */
};

struct sg_diskcache {
	struct sg_loop *loop;
	char dir[4096];
	uint32_t n_chunks;
	uint32_t n_present;
	uint8_t *present;          /* bitmap: chunk is in the disk cache */
	/* bitmap: the chunk's bytes in the disk cache were verified during this mount (we
	 * wrote them after checking them, or read them back and checked them).  Only files
	 * whose chunks are all trusted are handed to the kernel for passthrough. */
	uint8_t *trusted;
	int bitmap_fd;
	int toc_json_fd;           /* stargz.index.json's content, -1 = none */
	struct fd_slot fds[FD_SLOTS];
	unsigned fd_clock;
};

static bool bit_get(const uint8_t *map, uint32_t c)
{
	return map[c >> 3] & (1u << (c & 7));
}

static void bit_set(uint8_t *map, uint32_t c, bool on)
{
	if (on)
		map[c >> 3] |= (uint8_t)(1u << (c & 7));
	else
		map[c >> 3] &= (uint8_t)~(1u << (c & 7));
}

static int load_bitmap(struct sg_diskcache *dc)
{
	char path[4200];
	size_t bytes = (dc->n_chunks + 7) / 8;
	struct stat st;

	snprintf(path, sizeof(path), "%s/" BITMAP_NAME, dc->dir);
	dc->bitmap_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (dc->bitmap_fd < 0)
		return -errno;
	if (fstat(dc->bitmap_fd, &st) == 0 && (size_t)st.st_size == bytes) {
		if (pread(dc->bitmap_fd, dc->present, bytes, 0) != (ssize_t)bytes)
			memset(dc->present, 0, bytes);
	} else if (ftruncate(dc->bitmap_fd, 0) < 0 || ftruncate(dc->bitmap_fd, (off_t)bytes) < 0) {
		return -errno;   /* a bitmap of another size belongs to another TOC: start over */
	}
	for (uint32_t c = 0; c < dc->n_chunks; c++)
		if (bit_get(dc->present, c))
			dc->n_present++;
	return 0;
}

int sg_diskcache_open(struct sg_loop *loop, const char *dir, uint32_t n_chunks,
		      struct sg_diskcache **ret)
{
	struct sg_diskcache *dc = calloc(1, sizeof(*dc));
	int r;

	if (!dc)
		return -ENOMEM;
	dc->loop = loop;
	dc->n_chunks = n_chunks;
	dc->bitmap_fd = -1;
	dc->toc_json_fd = -1;
	snprintf(dc->dir, sizeof(dc->dir), "%s", dir);
	if (mkdir(dc->dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		goto fail;
	}
	dc->present = calloc((n_chunks + 7) / 8 + 1, 1);
	dc->trusted = calloc((n_chunks + 7) / 8 + 1, 1);
	if (!dc->present || !dc->trusted) {
		r = -ENOMEM;
		goto fail;
	}
	r = load_bitmap(dc);
	if (r < 0)
		goto fail;
	*ret = dc;
	return 0;
fail:
	sg_diskcache_free(dc);
	return r;
}

void sg_diskcache_free(struct sg_diskcache *dc)
{
	if (!dc)
		return;
	for (unsigned i = 0; i < FD_SLOTS; i++)
		if (dc->fds[i].used)
			close(dc->fds[i].fd);
	if (dc->bitmap_fd >= 0) {
		/* The last bits' own writes may have been cancelled by the close: the bitmap in
		 * memory only has bits whose data landed, so it is the one to keep.  (A short
		 * synchronous write at unmount, n_chunks / 8 bytes.) */
		size_t bytes = (dc->n_chunks + 7) / 8;
		if (bytes && pwrite(dc->bitmap_fd, dc->present, bytes, 0) != (ssize_t)bytes) {
			/* a bit lost is a refetch, never a wrong byte */
		}
		close(dc->bitmap_fd);
	}
	if (dc->toc_json_fd >= 0)
		close(dc->toc_json_fd);
	free(dc->present);
	free(dc->trusted);
	free(dc);
}

/* Opening is a local metadata call done synchronously on the loop (one per file and
 * FD_SLOTS files at a time).  A descriptor is never closed while an op uses it: an op
 * waiting in the submission queue resolves its fd only when the kernel issues it (a closed
 * number may by then name another cache file), and a short transfer is resumed with the
 * same fd. */
int sg_diskcache_fd_get(struct sg_diskcache *dc, uint32_t node, struct sg_diskcache_fd *ref)
{
	char path[4200];
	unsigned i;

	for (i = 0; i < FD_SLOTS; i++)
		if (dc->fds[i].used && dc->fds[i].node == node) {
			dc->fds[i].busy++;
			*ref = (struct sg_diskcache_fd){ .fd = dc->fds[i].fd, .slot = (int)i };
			return 0;
		}
	snprintf(path, sizeof(path), "%s/%u", dc->dir, node);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* Clock replacement among the slots no op uses. */
	for (unsigned tries = 0; tries < FD_SLOTS; tries++) {
		i = dc->fd_clock++ % FD_SLOTS;
		if (dc->fds[i].used && dc->fds[i].busy)
			continue;
		if (dc->fds[i].used)
			close(dc->fds[i].fd);
		dc->fds[i] = (struct fd_slot){ .node = node, .fd = fd, .used = true, .busy = 1 };
		*ref = (struct sg_diskcache_fd){ .fd = fd, .slot = (int)i };
		return 0;
	}
	*ref = (struct sg_diskcache_fd){ .fd = fd, .slot = -1 };
	return 0;
}

void sg_diskcache_fd_put(struct sg_diskcache *dc, struct sg_diskcache_fd *ref)
{
	if (ref->fd < 0)
		return;
	if (ref->slot >= 0)
		dc->fds[ref->slot].busy--;
	else
		close(ref->fd);
	ref->fd = -1;
}

int sg_diskcache_open_file(const struct sg_diskcache *dc, uint32_t node)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/%u", dc->dir, node);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

bool sg_diskcache_present(const struct sg_diskcache *dc, uint32_t c)
{
	return bit_get(dc->present, c);
}

uint32_t sg_diskcache_next_present(const struct sg_diskcache *dc, uint32_t c)
{
	for (; c < dc->n_chunks; c++) {
		if (!dc->present[c >> 3]) {
			c |= 7;   /* a whole byte of the bitmap is empty */
			continue;
		}
		if (bit_get(dc->present, c))
			return c;
	}
	return dc->n_chunks;
}

uint32_t sg_diskcache_present_count(const struct sg_diskcache *dc)
{
	return dc->n_present;
}

void sg_diskcache_set_present(struct sg_diskcache *dc, uint32_t c)
{
	if (bit_get(dc->present, c))
		return;
	bit_set(dc->present, c, true);
	dc->n_present++;
}

int sg_diskcache_write_bit(struct sg_diskcache *dc, uint32_t c, struct sg_op *op, sg_op_cb cb)
{
	/* Writes of one byte may complete out of order; a lost bit means a refetch, and a
	 * stale one is caught by the digest check on load. */
	if (dc->bitmap_fd < 0)
		return -EBADF;
	return sg_write(dc->loop, op, dc->bitmap_fd, &dc->present[c >> 3], 1, c >> 3, cb);
}

void sg_diskcache_clear(struct sg_diskcache *dc, uint32_t c)
{
	if (bit_get(dc->present, c))
		dc->n_present--;
	bit_set(dc->present, c, false);
	bit_set(dc->trusted, c, false);
	if (dc->bitmap_fd >= 0 && pwrite(dc->bitmap_fd, &dc->present[c >> 3], 1, c >> 3) != 1) {
		/* The bit stays set on disk: the check on load finds a hole and refetches. */
	}
}

/* The punch is a short synchronous metadata call (extent tree update, tens of
 * microseconds); an eviction batch makes at most a few dozen. */
int sg_diskcache_punch(struct sg_diskcache *dc, uint32_t node, uint64_t offset, uint64_t len)
{
	struct sg_diskcache_fd fdr;
	int r = sg_diskcache_fd_get(dc, node, &fdr);

	if (r < 0)
		return r;
	r = fallocate(fdr.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
		      (off_t)len);
	if (r < 0)
		r = -errno;
	sg_diskcache_fd_put(dc, &fdr);
	return r;
}

bool sg_diskcache_trusted(const struct sg_diskcache *dc, uint32_t c)
{
	return bit_get(dc->trusted, c);
}

void sg_diskcache_set_trusted(struct sg_diskcache *dc, uint32_t c, bool on)
{
	bit_set(dc->trusted, c, on);
}

/* A plain file holding the decompressed bytes, like the other cache files.  The write is
 * synchronous on the loop, like the TOC parse that just produced the bytes (a few ms for a
 * TOC of 10 MB into the page cache). */
int sg_diskcache_store_toc_json(struct sg_diskcache *dc, const void *json, size_t len)
{
	char path[4200], tmp[4220];
	size_t done = 0;
	int fd, r = 0;

	snprintf(path, sizeof(path), "%s/%s", dc->dir, SG_ESGZ_TOC_NAME);
	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (done < len) {
		ssize_t n = write(fd, (const uint8_t *)json + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)n;
	}
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		(void)unlink(tmp);
		close(fd);
		return r;
	}
	dc->toc_json_fd = fd;
	return 0;
}

int sg_diskcache_toc_json_fd(const struct sg_diskcache *dc)
{
	return dc->toc_json_fd;
}
