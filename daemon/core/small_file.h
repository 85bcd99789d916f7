/* Small local files (docker's config.json, containerd's hosts.toml, CA bundles, startup
 * profiles), read whole.
 *
 * A blocking read: for configuration time and first use only, never on the loop's hot path.
 * Errors are negative errno values: the open's errno (-ENOENT, -EACCES, -ENOTDIR...), -EFBIG
 * for anything but a regular file of at most `max` bytes, -ENOMEM.
 */
#ifndef STARGZD_CORE_SMALL_FILE_H
#define STARGZD_CORE_SMALL_FILE_H

#include <stddef.h>

/* Returns 0 with *ret (NUL-terminated, free with free) and its length. */
int sg_small_file_read(const char *path, size_t max, char **ret, size_t *ret_len);

/* Up to size bytes of fd into buf, read on until then, its end or an error (EINTR retried):
 * how many.  For files whose size stat does not tell (procfs) or that may shrink. */
size_t sg_read_up_to(int fd, void *buf, size_t size);

#endif
