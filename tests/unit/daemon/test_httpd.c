/* The Prometheus text writer (daemon/prom.c) and the HTTP endpoint of metrics and status
 * (daemon/httpd.c) on a real loop: what a request gets, what other requests get, and that
 * shutdown leaves nothing in flight. */
#include "daemon/httpd.h"
#include "daemon/prom.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "daemon/core/loop.h"
#include "tests/helpers/tmpdir.h"

TEST(samples_escape_label_values)
{
	struct sg_prom p;

	sg_prom_init(&p);
	sg_prom_family(&p, "x_total", "counter", "help with \\ and\nnewline");
	sg_prom_sample(&p, "x_total", (const char *[]){ "a", "q\"b\\s\nn", "b", "v", NULL }, 42);
	sg_prom_sample(&p, "x_total", NULL, 0.5);
	CHECK(!sg_prom_failed(&p));
	CHECK_STR(p.buf, "# HELP x_total help with \\\\ and\\nnewline\n"
			 "# TYPE x_total counter\n"
			 "x_total{a=\"q\\\"b\\\\s\\nn\",b=\"v\"} 42\n"
			 "x_total 0.5\n");
	sg_prom_done(&p);
}

TEST(histograms_are_cumulative_with_their_first_bounds)
{
	struct sg_hist h = { 0 };
	struct sg_prom p;

	sg_hist_observe(&h, 0.5);    /* le 1 */
	sg_hist_observe(&h, 3);      /* le 4 */
	sg_hist_observe(&h, 4);      /* le 4 */
	sg_hist_observe(&h, 100);    /* beyond 4: only +Inf */
	sg_prom_init(&p);
	sg_prom_hist(&p, "d_seconds", (const char *[]){ "m", "x", NULL }, &h, 3, 0.001);
	CHECK_STR(p.buf, "d_seconds_bucket{m=\"x\",le=\"0.001\"} 1\n"
			 "d_seconds_bucket{m=\"x\",le=\"0.002\"} 1\n"
			 "d_seconds_bucket{m=\"x\",le=\"0.004\"} 3\n"
			 "d_seconds_bucket{m=\"x\",le=\"+Inf\"} 4\n"
			 "d_seconds_sum{m=\"x\"} 0.1075\n"
			 "d_seconds_count{m=\"x\"} 4\n");
	sg_prom_done(&p);
}

static char last_query[64];

static int collect(FILE *out, const struct sg_httpd_req *req, void *userdata)
{
	int *scrapes = userdata;
	struct sg_prom p;

	(*scrapes)++;
	snprintf(last_query, sizeof(last_query), "%s", req->query);
	sg_prom_init(&p);
	sg_prom_family(&p, "t_up", "gauge", "up");
	sg_prom_sample(&p, "t_up", NULL, 1);
	fwrite(p.buf, 1, p.len, out);
	sg_prom_done(&p);
	return 0;
}

static int broken(FILE *out, const struct sg_httpd_req *req, void *userdata)
{
	fputs("half", out);
	return -ENOMEM;
}

static int acted;

static int act(FILE *out, const struct sg_httpd_req *req, void *userdata)
{
	acted++;
	fputs("done\n", out);
	return 0;
}

static char last_path[256];

/* A prefix route that answers with a status of its own (the resolve hook's shape). */
static int hook(FILE *out, const struct sg_httpd_req *req, void *userdata)
{
	snprintf(last_path, sizeof(last_path), "%s", req->path);
	fputs("not here\n", out);
	return 404;
}

static const struct sg_httpd_route routes[] = {
	{ .path = "/metrics", .content_type = "text/plain; version=0.0.4; charset=utf-8", .fn = collect },
	{ .path = "/broken", .content_type = "text/plain", .fn = broken },
	{ .path = "/act", .content_type = "text/plain", .fn = act, .acts = true },
	{ .path = "/v2/", .content_type = "text/plain", .fn = hook, .prefix = true },
};

/* Sends `req` on a new connection to the unix socket and runs the loop until the server
 * closes it; returns what came back. */
static char *exchange(struct sg_loop *loop, const char *path, const char *req)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	static char resp[65536];
	size_t got = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memcpy(a.sun_path, path, strlen(path) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return NULL;
	if (*req && send(fd, req, strlen(req), MSG_NOSIGNAL) < 0)
		return NULL;
	for (int i = 0; i < 2000; i++) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		sg_loop_run_once(loop, 5);
		if (poll(&pfd, 1, 0) == 1) {
			ssize_t n = recv(fd, resp + got, sizeof(resp) - 1 - got, MSG_DONTWAIT);
			if (n == 0)
				break;
			if (n > 0)
				got += (size_t)n;
		}
	}
	close(fd);
	resp[got] = '\0';
	return resp;
}

TEST(a_scrape_a_404_a_405_then_shutdown)
{
	const char *dir = test_tmpdir("test_metrics");
	struct sg_httpd *s = NULL;
	struct sg_error err = { 0 };
	struct sg_loop *loop;
	char path[200];
	struct stat st;
	int scrapes = 0;
	char *r;

	snprintf(path, sizeof(path), "%.90s/m.sock", dir);
	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_httpd_new(loop, path, 0600, routes, 4, &scrapes, &s, &err), 0);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	r = exchange(loop, path, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(r && strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
	CHECK(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	CHECK(strstr(r, "Content-Length: 40\r\n"));
	CHECK(strstr(r, "\r\n\r\n# HELP t_up up\n# TYPE t_up gauge\nt_up 1\n"));
	CHECK_EQ(scrapes, 1);
	CHECK_STR(last_query, "");
	r = exchange(loop, path, "GET /metrics?json HTTP/1.0\r\n\r\n");
	CHECK(r && strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
	CHECK_STR(last_query, "json");
	r = exchange(loop, path, "GET /broken HTTP/1.0\r\n\r\n");
	CHECK(r && strncmp(r, "HTTP/1.1 500 ", 13) == 0 && !strstr(r, "half"));
	r = exchange(loop, path, "GET /other HTTP/1.1\r\n\r\n");
	CHECK(r && strncmp(r, "HTTP/1.1 404 ", 13) == 0);
	r = exchange(loop, path, "POST /metrics HTTP/1.1\r\n\r\n");
	CHECK(r && strncmp(r, "HTTP/1.1 405 ", 13) == 0);
	r = exchange(loop, path, "HEAD /metrics HTTP/1.0\r\n\r\n");
	CHECK(r && strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(r, "\r\n\r\n")[4] == '\0');
	CHECK_EQ(scrapes, 3);   /* the two GETs and the HEAD */
	/* A route that acts is not run for a HEAD (405), only for a GET. */
	r = exchange(loop, path, "HEAD /act HTTP/1.0\r\n\r\n");
	CHECK(r && strncmp(r, "HTTP/1.1 405 ", 13) == 0);
	CHECK_EQ(acted, 0);
	r = exchange(loop, path, "GET /act HTTP/1.0\r\n\r\n");
	CHECK(r && strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(r, "\r\n\r\ndone\n"));
	CHECK_EQ(acted, 1);
	/* A prefix route gets every path under it, with the path, and its own status; a HEAD
	 * runs it too (it does not act) and gets the status without the body. */
	r = exchange(loop, path, "GET /v2/a/b/manifests/t?ns=h HTTP/1.1\r\n\r\n");
	CHECK(r && strncmp(r, "HTTP/1.1 404 Not Found\r\n", 24) == 0);
	CHECK(strstr(r, "Content-Type: text/plain\r\n") && strstr(r, "\r\n\r\nnot here\n"));
	CHECK_STR(last_path, "/v2/a/b/manifests/t");
	last_path[0] = '\0';
	r = exchange(loop, path, "HEAD /v2/x HTTP/1.1\r\n\r\n");
	CHECK(r && strncmp(r, "HTTP/1.1 404 ", 13) == 0 && strstr(r, "\r\n\r\n")[4] == '\0');
	CHECK_STR(last_path, "/v2/x");
	r = exchange(loop, path, "GET /v2 HTTP/1.1\r\n\r\n");   /* not under the prefix */
	CHECK(r && strncmp(r, "HTTP/1.1 404 ", 13) == 0 && !strstr(r, "not here"));
	CHECK_STR(last_path, "/v2/x");
	r = exchange(loop, path, "garbage\r\n\r\n");
	CHECK(r && strncmp(r, "HTTP/1.1 400 ", 13) == 0);
	/* A client that connects and says nothing keeps a connection (with its recv) open:
	 * shutdown must cancel it. */
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memcpy(a.sun_path, path, strlen(path) + 1);
	int idle = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(connect(idle, (struct sockaddr *)&a, sizeof(a)) == 0);
	for (int i = 0; i < 20; i++)
		sg_loop_run_once(loop, 5);
	CHECK(sg_httpd_busy(s));
	CHECK_ABORTS(sg_httpd_free(s));
	sg_httpd_shutdown(s);
	for (int i = 0; i < 200 && sg_httpd_busy(s); i++)
		sg_loop_run_once(loop, 5);
	CHECK(!sg_httpd_busy(s));
	sg_httpd_free(s);
	CHECK(stat(path, &st) < 0 && errno == ENOENT);
	close(idle);
	sg_loop_free(loop);
}

TEST(bad_addresses_are_refused_with_a_reason)
{
	struct sg_httpd *s = NULL;
	struct sg_error err = { 0 };
	struct sg_loop *loop;
	int scrapes = 0;

	CHECK_EQ(sg_loop_new(NULL, &loop), 0);
	CHECK_EQ(sg_httpd_new(loop, "localhost", 0660, routes, 2, &scrapes, &s, &err), -EINVAL);
	CHECK(strstr(err.msg, "expected host:port"));
	CHECK_EQ(sg_httpd_new(loop, "127.0.0.1:http", 0660, routes, 2, &scrapes, &s, &err), -EINVAL);
	CHECK(strstr(err.msg, "bad port"));
	CHECK_EQ(sg_httpd_new(loop, "[::1:80", 0660, routes, 2, &scrapes, &s, &err), -EINVAL);
	CHECK(s == NULL);
	sg_loop_free(loop);
}

TEST_MAIN()
