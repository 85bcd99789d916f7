#include "daemon/fdstore.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/core/log.h"
#include "daemon/core/loop.h"

#define HOLDER_TIMEOUT_S 3
#define HOLDER_START_MS 3000

struct sg_fdstore {
	enum sg_fdstore_kind kind;
	uint64_t started_ns;          /* a holder was started then (holder_start); 0 = never */
	char root[PATH_MAX];
	char sock_path[PATH_MAX + 32];
	struct sockaddr_un notify;    /* systemd */
	socklen_t notify_len;
};

const char *sg_fdstore_kind_name(enum sg_fdstore_kind kind)
{
	switch (kind) {
	case SG_FDSTORE_HOLDER: return "the fd holder";
	case SG_FDSTORE_SYSTEMD: return "systemd's fd store";
	default: return "nothing (mounts end with the daemon)";
	}
}

enum sg_fdstore_kind sg_fdstore_kind(const struct sg_fdstore *st)
{
	return st ? st->kind : SG_FDSTORE_NONE;
}

static int send_msg(int sock, const struct sockaddr_un *to, socklen_t tolen, const char *text,
		    int fd)
{
	return sg_fdmsg_send(sock, to, tolen, text, fd);
}

static int recv_msg(int sock, char *buf, size_t cap, int *ret_fd)
{
	return sg_fdmsg_recv(sock, buf, cap, ret_fd);
}

/* ---- the holder ---- */

static int holder_connect(struct sg_fdstore *st, int *ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = HOLDER_TIMEOUT_S };
	int s;

	if (strlen(st->sock_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, st->sock_path, strlen(st->sock_path) + 1);
	s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	(void)setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		close(s);
		return e;
	}
	*ret = s;
	return 0;
}

/* Starts `stargzd fdholder --root ROOT`, detached (its own session, reparented to init by a
 * double fork so that nobody has to reap it), with the daemon's signal mask undone, without
 * waiting for it to answer.  Two holders started for one root settle it between them (the
 * second finds the first's lock and exits). */
static int holder_start(struct sg_fdstore *st)
{
	char logpath[PATH_MAX + 32];
	pid_t pid;

	snprintf(logpath, sizeof(logpath), "%s/fdholder.log", st->root);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		sigset_t none;
		if (fork() != 0)
			_exit(0);
		(void)setsid();
		sigemptyset(&none);
		(void)sigprocmask(SIG_SETMASK, &none, NULL);
		int nul = open("/dev/null", O_RDWR);
		int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (nul >= 0) {
			(void)dup2(nul, 0);
			(void)dup2(nul, 1);
		}
		if (log >= 0)
			(void)dup2(log, 2);
		(void)close_range(3, ~0u, 0);
		/* /proc/self/exe: the binary this daemon runs, even if an upgrade replaced the
		 * file meanwhile. */
		execl("/proc/self/exe", "stargzd", "fdholder", "--root", st->root, (char *)NULL);
		_exit(127);
	}
	(void)waitpid(pid, NULL, 0);   /* the first child: it exits at once */
	st->started_ns = sg_now_ns();
	return 0;
}

/* A holder was started less than HOLDER_START_MS ago: it may not answer yet. */
static bool holder_starting(const struct sg_fdstore *st)
{
	return st->started_ns && sg_now_ns() - st->started_ns < HOLDER_START_MS * 1000000ull;
}

/* Waits until a holder started by holder_start answers. */
static int holder_wait(struct sg_fdstore *st)
{
	for (int waited = 0; waited < HOLDER_START_MS; waited += 10) {
		int s;
		if (holder_connect(st, &s) == 0) {
			close(s);
			return 0;
		}
		struct timespec ts = { .tv_nsec = 10 * 1000000 };
		nanosleep(&ts, NULL);
	}
	return -ETIMEDOUT;
}

static int holder_call(struct sg_fdstore *st, const char *msg, int fd, bool spawn)
{
	char reply[SG_FDHOLDER_MSG_MAX + 1];
	int s, rfd, r;

	r = holder_connect(st, &s);
	if ((r == -ENOENT || r == -ECONNREFUSED) && spawn) {
		/* One started by sg_fdstore_warm and not answering yet is waited for. */
		r = holder_starting(st) ? 0 : holder_start(st);
		if (r == 0)
			r = holder_wait(st);
		if (r == 0)
			r = holder_connect(st, &s);
	}
	if (r < 0)
		return r;
	r = send_msg(s, NULL, 0, msg, fd);
	if (r == 0)
		r = recv_msg(s, reply, sizeof(reply), &rfd);
	if (r == 0 && rfd >= 0)
		close(rfd);
	if (r == 0 && strcmp(reply, "OK") != 0)
		r = -EPROTO;
	close(s);
	return r;
}

static int holder_take(struct sg_fdstore *st, struct sg_held_fd **ret, size_t *ret_n)
{
	struct sg_held_fd *v = NULL;
	size_t n = 0;
	int s, r;

	r = holder_connect(st, &s);
	if (r == -ENOENT || r == -ECONNREFUSED)
		return 0;   /* no holder: nothing held */
	if (r < 0)
		return r;
	r = send_msg(s, NULL, 0, "GET", -1);
	while (r == 0) {
		char msg[SG_FDHOLDER_MSG_MAX + 1];
		int fd;
		r = recv_msg(s, msg, sizeof(msg), &fd);
		if (r < 0)
			break;
		if (strcmp(msg, "END") == 0)
			break;
		if (strncmp(msg, "FD ", 3) != 0 || fd < 0) {
			if (fd >= 0)
				close(fd);
			r = -EPROTO;
			break;
		}
		struct sg_held_fd *nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv) {
			close(fd);
			r = -ENOMEM;
			break;
		}
		v = nv;
		size_t len = strnlen(msg + 3, SG_FDHOLDER_NAME_MAX);
		memcpy(v[n].name, msg + 3, len);
		v[n].name[len] = '\0';
		v[n++].fd = fd;
	}
	close(s);
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			close(v[i].fd);
		free(v);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* ---- systemd ---- */

static int systemd_setup(struct sg_fdstore *st, const char *path)
{
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(st->notify.sun_path))
		return -EINVAL;
	st->notify.sun_family = AF_UNIX;
	memcpy(st->notify.sun_path, path, len);
	if (path[0] == '@')
		st->notify.sun_path[0] = '\0';   /* abstract namespace */
	st->notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
				     (path[0] == '@' ? 0 : 1));
	return 0;
}

static int systemd_send(struct sg_fdstore *st, const char *text, int fd)
{
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	int r = send_msg(s, &st->notify, st->notify_len, text, fd);
	close(s);
	return r;
}

/* $LISTEN_FDS descriptors from 3 on, named by $LISTEN_FDNAMES (colon-separated), meant for
 * this pid ($LISTEN_PID).  The variables are removed so that children do not see them. */
static int systemd_take(struct sg_held_fd **ret, size_t *ret_n)
{
	const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	struct sg_held_fd *v = NULL;
	long n = 0;
	int r = 0;

	if (pid && nfds && strtol(pid, NULL, 10) == (long)getpid())
		n = strtol(nfds, NULL, 10);
	if (n <= 0 || n > 65536)
		goto out;
	v = calloc((size_t)n, sizeof(*v));
	if (!v) {
		r = -ENOMEM;
		goto out;
	}
	const char *p = names ? names : "";
	for (long i = 0; i < n; i++) {
		const char *colon = strchr(p, ':');
		size_t len = colon ? (size_t)(colon - p) : strlen(p);
		if (len > SG_FDHOLDER_NAME_MAX)
			len = SG_FDHOLDER_NAME_MAX;
		memcpy(v[i].name, p, len);
		v[i].name[len] = '\0';
		v[i].fd = 3 + (int)i;
		(void)fcntl(v[i].fd, F_SETFD, FD_CLOEXEC);
		p = colon ? colon + 1 : p + strlen(p);
	}
	*ret = v;
	*ret_n = (size_t)n;
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return r;
}

/* ---- the interface ---- */

int sg_fdstore_open(const char *root, struct sg_fdstore **ret, struct sg_held_fd **ret_held,
		    size_t *ret_n, struct sg_error *err)
{
	struct sg_fdstore *st = calloc(1, sizeof(*st));
	const char *force = getenv("STARGZD_FDSTORE"), *notify = getenv("NOTIFY_SOCKET");
	int r = 0;

	*ret_held = NULL;
	*ret_n = 0;
	if (!st)
		return sg_error_set(err, -ENOMEM, "out of memory");
	snprintf(st->root, sizeof(st->root), "%s", root);
	snprintf(st->sock_path, sizeof(st->sock_path), "%s/" SG_FDHOLDER_SOCK, root);
	if (force && strcmp(force, "none") == 0)
		st->kind = SG_FDSTORE_NONE;
	else if (force && strcmp(force, "holder") == 0)
		st->kind = SG_FDSTORE_HOLDER;
	else if (force && strcmp(force, "systemd") != 0 && force[0])
		r = sg_error_set(err, -EINVAL, "STARGZD_FDSTORE must be systemd, holder or none, "
				 "not \"%s\"", force);
	else if (notify && notify[0])
		st->kind = SG_FDSTORE_SYSTEMD;
	else if (force)
		r = sg_error_set(err, -EINVAL, "STARGZD_FDSTORE=systemd but NOTIFY_SOCKET is not set");
	else
		st->kind = SG_FDSTORE_HOLDER;
	if (r == 0 && st->kind == SG_FDSTORE_SYSTEMD) {
		r = systemd_setup(st, notify);
		if (r < 0)
			sg_error_set(err, r, "NOTIFY_SOCKET=%s is not a usable socket path", notify);
		else
			r = systemd_take(ret_held, ret_n);
	} else if (r == 0 && st->kind == SG_FDSTORE_HOLDER) {
		r = holder_take(st, ret_held, ret_n);
		if (r < 0)
			sg_error_set(err, r, "cannot take the descriptors back from the fd holder at "
				     "%s: %s", st->sock_path, strerror(-r));
	}
	if (r < 0) {
		free(st);
		return r;
	}
	*ret = st;
	return 0;
}

int sg_fdstore_put(struct sg_fdstore *st, const char *name, int fd, struct sg_error *err)
{
	char msg[SG_FDHOLDER_MSG_MAX];
	int r = 0;

	if (!st || st->kind == SG_FDSTORE_NONE)
		return 0;
	if (st->kind == SG_FDSTORE_SYSTEMD) {
		snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
		r = systemd_send(st, msg, fd);
	} else {
		snprintf(msg, sizeof(msg), "PUT %s", name);
		r = holder_call(st, msg, fd, true);
	}
	if (r < 0)
		sg_error_set(err, r, "%s did not take the FUSE session %s: %s",
			     sg_fdstore_kind_name(st->kind), name, strerror(-r));
	return r;
}

void sg_fdstore_warm(struct sg_fdstore *st)
{
	int s;

	if (!st || st->kind != SG_FDSTORE_HOLDER)
		return;
	if (holder_starting(st))
		return;   /* on its way */
	int r = holder_connect(st, &s);
	if (r == 0) {
		close(s);
		return;   /* running */
	}
	if (r == -ENOENT || r == -ECONNREFUSED)
		(void)holder_start(st);   /* a failure shows at the put, which tries again */
}

int sg_fdstore_remove(struct sg_fdstore *st, const char *name, struct sg_error *err)
{
	char msg[SG_FDHOLDER_MSG_MAX];
	int r;

	if (!st || st->kind == SG_FDSTORE_NONE)
		return 0;
	if (st->kind == SG_FDSTORE_SYSTEMD) {
		snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
		r = systemd_send(st, msg, -1);
	} else {
		snprintf(msg, sizeof(msg), "DEL %s", name);
		r = holder_call(st, msg, -1, false);
		if (r == -ENOENT || r == -ECONNREFUSED)
			r = 0;   /* no holder: it held nothing */
	}
	if (r < 0)
		sg_error_set(err, r, "cannot make %s forget %s: %s", sg_fdstore_kind_name(st->kind),
			     name, strerror(-r));
	return r;
}

void sg_fdstore_notify(struct sg_fdstore *st, const char *state)
{
	if (st && st->kind == SG_FDSTORE_SYSTEMD)
		(void)systemd_send(st, state, -1);
}

void sg_fdstore_free(struct sg_fdstore *st)
{
	free(st);
}
