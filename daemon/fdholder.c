#include "daemon/fdholder.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Enough for the layers of many images; one pollfd each. */
#define MAX_HELD 4096
#define IDLE_EXIT_MS (60 * 1000)

struct held {
	char name[SG_FDHOLDER_NAME_MAX + 1];
	int fd;
};

static struct held held[MAX_HELD];
static size_t n_held;
static bool ever_held;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "stargzd fdholder[%ld]: ", (long)getpid());
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void drop(size_t i)
{
	close(held[i].fd);
	held[i] = held[--n_held];
}

static ssize_t find(const char *name)
{
	for (size_t i = 0; i < n_held; i++)
		if (strcmp(held[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

int sg_fdmsg_send(int sock, const struct sockaddr_un *to, unsigned tolen, const char *text,
		  int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = (void *)text, .iov_len = strlen(text) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_name = (void *)to,
			     .msg_namelen = to ? tolen : 0 };

	if (fd >= 0) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

int sg_fdmsg_recv(int sock, char *buf, size_t cap, int *ret_fd)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { .iov_base = buf, .iov_len = cap - 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);

	*ret_fd = -1;
	if (n < 0)
		return -errno;
	if (n == 0)
		return -ECONNRESET;
	buf[n] = '\0';
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t j = 0; j < k; j++) {
			int f;
			memcpy(&f, CMSG_DATA(c) + j * sizeof(int), sizeof(int));
			if (*ret_fd < 0)
				*ret_fd = f;
			else
				close(f);   /* one descriptor per message */
		}
	}
	return 0;
}

static int send_msg(int sock, const char *text, int fd)
{
	return sg_fdmsg_send(sock, NULL, 0, text, fd);
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > SG_FDHOLDER_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return false;
	return true;
}

/* One client connection: messages until it closes (or 5 s of silence). */
static void serve_client(int sock)
{
	struct timeval tv = { .tv_sec = 5 };
	(void)setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	for (;;) {
		char buf[SG_FDHOLDER_MSG_MAX + 1];
		int fd;
		if (sg_fdmsg_recv(sock, buf, sizeof(buf), &fd) < 0)
			return;
		if (strncmp(buf, "PUT ", 4) == 0 && valid_name(buf + 4) && fd >= 0) {
			ssize_t i = find(buf + 4);
			if (i >= 0) {
				close(held[i].fd);
				held[i].fd = fd;
			} else if (n_held == MAX_HELD) {
				close(fd);
				(void)send_msg(sock, "ERR full", -1);
				continue;
			} else {
				/* valid_name: at most SG_FDHOLDER_NAME_MAX bytes */
				memcpy(held[n_held].name, buf + 4, strlen(buf + 4) + 1);
				held[n_held++].fd = fd;
			}
			ever_held = true;
			(void)send_msg(sock, "OK", -1);
			continue;
		}
		if (fd >= 0)
			close(fd);
		if (strncmp(buf, "DEL ", 4) == 0 && valid_name(buf + 4)) {
			ssize_t i = find(buf + 4);
			if (i >= 0)
				drop((size_t)i);
			(void)send_msg(sock, "OK", -1);
		} else if (strcmp(buf, "GET") == 0) {
			char line[SG_FDHOLDER_MSG_MAX];
			for (size_t i = 0; i < n_held; i++) {
				/* names are at most SG_FDHOLDER_NAME_MAX bytes: this fits */
				memcpy(line, "FD ", 3);
				memcpy(line + 3, held[i].name, strlen(held[i].name) + 1);
				if (send_msg(sock, line, held[i].fd) < 0)
					return;
			}
			(void)send_msg(sock, "END", -1);
		} else {
			(void)send_msg(sock, "ERR unknown request", -1);
		}
	}
}

static void usage(void)
{
	fputs("Usage: stargzd fdholder --root DIR\n"
	      "Keeps the daemon's FUSE session descriptors across its restarts (started by the\n"
	      "daemon itself; see README.md, \"Restarts\").\n", stderr);
}

int sg_fdholder_main(int argc, char **argv)
{
	const char *root = NULL;
	char path[PATH_MAX], lockpath[PATH_MAX];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int lockfd, lsock;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--root") == 0 && i + 1 < argc)
			root = argv[++i];
		else {
			usage();
			return 2;
		}
	}
	if (!root) {
		usage();
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/* The daemon's signals are not ours: a terminal's Ctrl-C or a test's SIGTERM to the
	 * daemon must not end the mounts' keeper. */
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	snprintf(lockpath, sizeof(lockpath), "%s/" SG_FDHOLDER_LOCK, root);
	snprintf(path, sizeof(path), "%s/" SG_FDHOLDER_SOCK, root);
	if (strlen(path) >= sizeof(sa.sun_path)) {
		say("socket path too long: %s", path);
		return 1;
	}
	lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lockfd < 0) {
		say("cannot open %s: %s", lockpath, strerror(errno));
		return 1;
	}
	if (flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		/* Another holder serves this root (two daemons raced to start one). */
		return 0;
	}
	char pid[32];
	int pl = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(lockfd, 0) < 0 || pwrite(lockfd, pid, (size_t)pl, 0) != pl)
		say("cannot record the pid in %s", lockpath);
	/* Whoever held the lock before us is gone: its socket file is stale. */
	(void)unlink(path);
	lsock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	mode_t old = umask(0077);
	int br = lsock < 0 ? -1 : bind(lsock, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (br < 0 || listen(lsock, 16) < 0) {
		say("cannot serve %s: %s", path, strerror(errno));
		return 1;
	}
	say("holding FUSE sessions for %s", root);
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	static struct pollfd pfd[MAX_HELD + 1];
	for (;;) {
		pfd[0] = (struct pollfd){ .fd = lsock, .events = POLLIN };
		/* events 0: only POLLERR/POLLHUP, i.e. the session ended (unmounted, aborted). */
		for (size_t i = 0; i < n_held; i++)
			pfd[i + 1] = (struct pollfd){ .fd = held[i].fd, .events = 0 };
		int r = poll(pfd, n_held + 1, 1000);
		if (r < 0 && errno != EINTR) {
			say("poll: %s", strerror(errno));
			break;
		}
		for (size_t i = n_held; r > 0 && i-- > 0;)
			if (pfd[i + 1].revents & (POLLERR | POLLHUP | POLLNVAL))
				drop(i);
		if (r > 0 && (pfd[0].revents & POLLIN)) {
			int c = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0) {
				serve_client(c);
				close(c);
			}
		}
		if (ever_held && n_held == 0)
			break;   /* every mount it kept is gone */
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!ever_held && (now.tv_sec - start.tv_sec) * 1000 > IDLE_EXIT_MS)
			break;
	}
	/* Unlink while still holding the lock: a successor binds only after taking it. */
	(void)unlink(path);
	say("nothing left to hold; exiting");
	return 0;
}
