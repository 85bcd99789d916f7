#include "daemon/core/range_source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

struct file_source {
	struct sg_range_source base;   /* first: the vtable pointer leads */
	int fd;
};

static int file_read(struct sg_range_source *src, uint64_t offset, size_t len, void *buf,
		     struct sg_op *op, sg_op_cb cb)
{
	struct file_source *fs = (struct file_source *)src;

	return sg_read(src->loop, op, fs->fd, buf, len, offset, cb);
}

static int file_cancel(struct sg_range_source *src, struct sg_op *op)
{
	return sg_op_cancel(op);
}

/* Owns no op: each read is the caller's own op, so the caller's free check covers it.  It
 * must not destroy the source before its reads have called back (drain first): a read
 * still queued for an SQE, or resubmitted to finish a short transfer, would use the
 * closed fd number. */
static void file_destroy(struct sg_range_source *src)
{
	struct file_source *fs = (struct file_source *)src;

	if (fs->fd >= 0)
		close(fs->fd);
	free(fs);
}

static const struct sg_range_source_ops file_ops = {
	.read = file_read,
	.cancel = file_cancel,
	.destroy = file_destroy,
};

int sg_range_source_file_new(struct sg_loop *loop, int fd, struct sg_range_source **ret_src)
{
	struct file_source *fs;
	struct stat st;
	int nfd;

	if (!loop || fd < 0 || !ret_src)
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (nfd < 0)
		return -errno;
	fs = calloc(1, sizeof(*fs));
	if (!fs) {
		close(nfd);
		return -ENOMEM;
	}
	fs->base = (struct sg_range_source){ .ops = &file_ops, .loop = loop,
					     .size = (uint64_t)st.st_size };
	fs->fd = nfd;
	*ret_src = &fs->base;
	return 0;
}

int sg_range_source_file_open(struct sg_loop *loop, const char *path,
			      struct sg_range_source **ret_src)
{
	int fd, r;

	if (!path)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = sg_range_source_file_new(loop, fd, ret_src);
	close(fd);
	return r;
}
