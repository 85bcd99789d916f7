/* The converter's input, mapped (input.h). */
#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/stargzify/input.h"
#include "tools/stargzify/util.h"

void sz_input_done(struct sz_input *in)
{
	if (in->map && in->map != MAP_FAILED && in->map_len)
		munmap(in->map, in->map_len);
	memset(in, 0, sizeof(*in));
}

static int tmpfile_fd(void)
{
	const char *dir = getenv("TMPDIR");
	int fd;

	if (!dir || !*dir)
		dir = "/var/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/stargzify.XXXXXX", dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd < 0)
			return -errno;
		unlink(path);
	}
	return fd;
}

void sz_input_from_memory(struct sz_input *in, const void *tar, size_t len)
{
	memset(in, 0, sizeof(*in));
	in->buf = tar;
	in->len = len;
}

/* Gunzips every member of cbuf into a temp file and maps it. */
static int gunzip_to_map(const uint8_t *cbuf, size_t clen, struct sz_input *in)
{
	struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
	size_t in_off = 0, out_len = 0, cap;
	uint8_t *map = NULL;
	int fd = -1, ret;

	if (!d)
		return -ENOMEM;
	fd = tmpfile_fd();
	if (fd < 0) {
		ret = fd;
		sz_errorf("cannot create a temporary file in $TMPDIR: %s", strerror(-ret));
		goto out;
	}
	/* First guess: the last member's ISIZE (exact for a single member under 4 GiB). */
	cap = clen >= 4 ? (size_t)(cbuf[clen - 4] | cbuf[clen - 3] << 8 | cbuf[clen - 2] << 16 |
				   (uint32_t)cbuf[clen - 1] << 24) : 0;
	if (cap < clen * 2)
		cap = clen * 2;
	cap = (cap + (1u << 20)) & ~(size_t)((1u << 20) - 1);
	if (ftruncate(fd, (off_t)cap) < 0) {
		ret = -errno;
		goto out;
	}
	map = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		ret = -errno;
		map = NULL;
		goto out;
	}
	while (in_off < clen) {
		size_t used_in = 0, produced = 0;
		if (clen - in_off < 18 || cbuf[in_off] != 0x1f || cbuf[in_off + 1] != 0x8b) {
			/* Tolerate zero padding after the last member, like gzip(1). */
			size_t i = in_off;
			while (i < clen && cbuf[i] == 0)
				i++;
			if (i == clen)
				break;
			sz_errorf("input: trailing garbage after gzip member at offset %zu", in_off);
			ret = -EBADMSG;
			goto out;
		}
		enum libdeflate_result r = libdeflate_gzip_decompress_ex(d, cbuf + in_off, clen - in_off,
									  map + out_len, cap - out_len,
									  &used_in, &produced);
		if (r == LIBDEFLATE_INSUFFICIENT_SPACE) {
			size_t ncap = cap * 2;
			uint8_t *nm;
			if (ftruncate(fd, (off_t)ncap) < 0) {
				ret = -errno;
				goto out;
			}
			nm = mremap(map, cap, ncap, MREMAP_MAYMOVE);
			if (nm == MAP_FAILED) {
				ret = -errno;
				goto out;
			}
			map = nm;
			cap = ncap;
			continue;
		}
		if (r != LIBDEFLATE_SUCCESS) {
			sz_errorf("input: corrupt or truncated gzip data (member at offset %zu)", in_off);
			ret = -EBADMSG;
			goto out;
		}
		in_off += used_in;
		out_len += produced;
	}
	if (ftruncate(fd, (off_t)(out_len ? out_len : 1)) < 0) {
		ret = -errno;
		goto out;
	}
	/* Shrink the mapping to what is used; the pages stay in the page cache. */
	if (out_len < cap) {
		size_t keep = out_len ? (out_len + 4095) & ~(size_t)4095 : 4096;
		if (keep < cap)
			munmap(map + keep, cap - keep);
		cap = keep;
	}
	madvise(map, cap, MADV_DONTNEED);
	in->map = map;
	in->map_len = cap;
	in->buf = map;
	in->len = out_len;
	in->droppable = true;
	in->was_gzip = true;
	in->compressed_len = clen;
	map = NULL;
	ret = 0;
out:
	if (map)
		munmap(map, cap);
	if (fd >= 0)
		close(fd);
	libdeflate_free_decompressor(d);
	return ret;
}

/* Maps a tar or tar.gz from a path ("-" = stdin); non-regular inputs go through a temp file. */
int sz_input_open(const char *path, struct sz_input *in)
{
	int fd = -1, tfd = -1, ret;
	struct stat st;
	uint8_t *map = NULL;
	size_t len;

	memset(in, 0, sizeof(*in));
	if (strcmp(path, "-") == 0)
		fd = dup(STDIN_FILENO);
	else
		fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		sz_errorf("cannot open %s: %s", path, strerror(errno));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		static uint8_t chunk[1 << 20];
		tfd = tmpfile_fd();
		if (tfd < 0) {
			ret = tfd;
			sz_errorf("cannot create a temporary file: %s", strerror(-ret));
			goto out;
		}
		for (;;) {
			ssize_t n = read(fd, chunk, sizeof(chunk));
			if (n < 0) {
				if (errno == EINTR)
					continue;
				ret = -errno;
				sz_errorf("reading %s: %s", path, strerror(errno));
				goto out;
			}
			if (n == 0)
				break;
			ret = sz_write_all(tfd, chunk, (size_t)n);
			if (ret < 0) {
				sz_errorf("writing a temporary file: %s", strerror(-ret));
				goto out;
			}
		}
		close(fd);
		fd = tfd;
		tfd = -1;
		if (fstat(fd, &st) < 0) {
			ret = -errno;
			goto out;
		}
	}
	len = (size_t)st.st_size;
	if (len > 0) {
		map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			ret = -errno;
			map = NULL;
			sz_errorf("cannot map %s: %s", path, strerror(errno));
			goto out;
		}
		madvise(map, len, MADV_SEQUENTIAL);
	}
	if (len >= 2 && map[0] == 0x1f && map[1] == 0x8b) {
		ret = gunzip_to_map(map, len, in);
		munmap(map, len);
		map = NULL;
		goto out;
	}
	if (len >= 4 && map[0] == 0x28 && map[1] == 0xb5 && map[2] == 0x2f && map[3] == 0xfd) {
		sz_errorf("%s: zstd-compressed layers are not supported; decompress it first", path);
		ret = -ENOTSUP;
		goto out;
	}
	in->map = map;
	in->map_len = len;
	in->buf = map;
	in->len = len;
	in->droppable = true;
	map = NULL;
	ret = 0;
out:
	if (map)
		munmap(map, len);
	if (fd >= 0)
		close(fd);
	if (tfd >= 0)
		close(tfd);
	return ret;
}
