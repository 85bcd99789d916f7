#include "daemon/process.h"

#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int sg_mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return -errno;
			*p = c;
			if (c == '\0')
				break;
		}
	}
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int sg_root_lock(const char *root, int *ret_lockfd, struct sg_error *err)
{
	char path[PATH_MAX];
	int fd, r;

	r = sg_mkdir_p(root, 0700);
	if (r < 0)
		return sg_error_set(err, r, "cannot create root directory %s: %s", root,
				    strerror(-r));
	if (snprintf(path, sizeof(path), "%s/stargzd.lock", root) >= (int)sizeof(path))
		return sg_error_set(err, -ENAMETOOLONG, "root path too long: %s", root);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return sg_error_set(err, -errno, "root directory %s is not writable: %s", root,
				    strerror(errno));
	/* access() would answer for the real uid; a probe file answers for what we can do. */
	if (faccessat(AT_FDCWD, root, W_OK, AT_EACCESS) < 0) {
		r = -errno;
		sg_error_set(err, r, "root directory %s is not writable: %s", root, strerror(errno));
		close(fd);
		return r;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
		if (n > 0) {
			pid[n] = '\0';
			pid[strcspn(pid, "\n")] = '\0';
		}
		if (r == -EBUSY)
			sg_error_set(err, r, "another stargzd%s%s%s is already running on root %s",
				     *pid ? " (pid " : "", pid, *pid ? ")" : "", root);
		else
			sg_error_set(err, r, "cannot lock %s: %s", path, strerror(-r));
		close(fd);
		return r;
	}
	*ret_lockfd = fd;
	return 0;
}

int sg_root_lock_write_pid(int lockfd, pid_t pid)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)pid);

	if (ftruncate(lockfd, 0) < 0 || pwrite(lockfd, buf, (size_t)n, 0) != n)
		return -errno;
	return 0;
}

int sg_listen_unix(const char *path, int *ret_fd, struct sg_error *err)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char dir[PATH_MAX];
	struct stat st;
	int fd = -1, r;

	if (strlen(path) >= sizeof(addr.sun_path))
		return sg_error_set(err, -ENAMETOOLONG, "socket path too long (max %zu bytes): %s",
				    sizeof(addr.sun_path) - 1, path);
	memcpy(addr.sun_path, path, strlen(path) + 1);

	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		r = sg_mkdir_p(dir, 0711);
		if (r < 0)
			return sg_error_set(err, r, "cannot create socket directory %s: %s", dir,
					    strerror(-r));
	}

	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return sg_error_set(err, -EEXIST, "%s exists and is not a socket", path);
		/* Is anybody answering?  A live daemon accepts; a dead one's file refuses. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0)
			return sg_error_set(err, -errno, "socket(): %s", strerror(errno));
		r = connect(probe, (struct sockaddr *)&addr, sizeof(addr));
		int saved = errno;
		bool owner_gone = false;
		if (r == 0) {
			/* A daemon killed with -9 can leave its socket listening for a while: the
			 * kernel tears its io_uring down after the process is gone, and an accept
			 * still queued there holds the socket.  The listener's pid (its credentials
			 * at listen time) tells whether anybody is behind it. */
			struct ucred cred;
			socklen_t len = sizeof(cred);
			if (getsockopt(probe, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
			    cred.pid > 0 && kill(cred.pid, 0) < 0 && errno == ESRCH)
				owner_gone = true;
		}
		close(probe);
		if (r == 0 && !owner_gone)
			return sg_error_set(err, -EADDRINUSE, "socket %s is in use by a live daemon",
					    path);
		if (r == 0)
			saved = ECONNREFUSED;   /* its owner is gone: as stale as a refusing one */
		if (saved != ECONNREFUSED && saved != ENOENT)
			return sg_error_set(err, -saved, "cannot probe existing socket %s: %s", path,
					    strerror(saved));
		if (unlink(path) < 0 && errno != ENOENT)
			return sg_error_set(err, -errno, "cannot remove stale socket %s: %s", path,
					    strerror(errno));
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return sg_error_set(err, -errno, "socket(): %s", strerror(errno));
	/* Bind under a umask that never lets the socket be wider than 0660, then set it
	 * exactly: there is no moment where others could connect. */
	mode_t old = umask(0117);
	r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	int saved = errno;
	umask(old);
	if (r < 0) {
		r = -saved;
		sg_error_set(err, r, "cannot bind %s: %s", path, strerror(saved));
		goto fail;
	}
	if (chmod(path, 0660) < 0 || listen(fd, 128) < 0) {
		r = -errno;
		sg_error_set(err, r, "cannot listen on %s: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	*ret_fd = fd;
	return 0;
fail:
	close(fd);
	return r;
}
