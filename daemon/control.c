/* The control socket's client side.  See control.h. */
#include "daemon/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

int sg_control_get(const char *root, const char *target, char **ret_body, size_t *ret_len,
		   char *err, size_t err_len)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char req[4096], buf[8192], *resp = NULL;
	size_t len = 0;
	ssize_t n;
	int fd, r;

	*ret_body = NULL;
	*ret_len = 0;
	if (snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%s", root, SG_CONTROL_SOCKET_NAME) >=
	    (int)sizeof(addr.sun_path)) {
		snprintf(err, err_len, "root path too long for a socket name");
		return -ENAMETOOLONG;
	}
	if (snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", target) >= (int)sizeof(req)) {
		snprintf(err, err_len, "request too long");
		return -E2BIG;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		r = -errno;
		snprintf(err, err_len, "cannot reach the daemon at %s: %s", addr.sun_path, strerror(-r));
		if (fd >= 0)
			close(fd);
		return r;
	}
	struct timeval tv = { .tv_sec = 10 };
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	FILE *m = open_memstream(&resp, &len);
	n = send(fd, req, strlen(req), MSG_NOSIGNAL);
	while (m && n >= 0 && (n = recv(fd, buf, sizeof(buf), 0)) > 0)
		fwrite(buf, 1, (size_t)n, m);
	int rerr = errno;
	close(fd);
	if (!m || fclose(m) != 0) {
		snprintf(err, err_len, "out of memory");
		return -ENOMEM;
	}
	const char *body = resp ? strstr(resp, "\r\n\r\n") : NULL;
	if (n < 0 || !body) {
		snprintf(err, err_len, "no answer from the daemon%s%s", n < 0 ? ": " : "",
			 n < 0 ? strerror(rerr) : "");
		r = n < 0 ? -rerr : -EPROTO;
		goto fail;
	}
	if (strncmp(resp, "HTTP/1.1 200 ", 13) != 0) {
		const char *eol = strstr(resp, "\r\n");
		snprintf(err, err_len, "the daemon answered \"%.*s\"", (int)(eol - resp), resp);
		r = -EPROTO;
		goto fail;
	}
	size_t off = (size_t)(body + 4 - resp);
	memmove(resp, resp + off, len - off + 1);   /* with the stream's NUL */
	*ret_body = resp;
	*ret_len = len - off;
	return 0;
fail:
	free(resp);
	return r;
}
