/* `stargzd pull-ahead`: the daemon's table of pulls started on its control socket, and the
 * command.  See ahead_cmd.h. */
#include "daemon/ahead_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/control.h"
#include "daemon/core/hex.h"
#include "daemon/core/log.h"
#include "daemon/core/loop.h"

/* ---- the daemon's side ---- */

struct ahead_pull {
	uint64_t id;                   /* 0: a free slot */
	void *token;                   /* sg_pull_ahead_start's */
	uint64_t deadline_ns;
	unsigned hold_s;
	bool hooked;                   /* started by the resolve hook, which never ends it */
	char image[512];
};

struct sg_ahead_pulls {
	struct sg_pull_ahead_ctx ctx;
	uint64_t last_id;
	struct ahead_pull slots[SG_AHEAD_PULLS_MAX];
};

int sg_ahead_pulls_new(const struct sg_pull_ahead_ctx *ctx, struct sg_ahead_pulls **ret)
{
	struct sg_ahead_pulls *a = calloc(1, sizeof(*a));

	if (!a)
		return -ENOMEM;
	a->ctx = *ctx;
	*ret = a;
	return 0;
}

/* The value of `key` in a query string ("a=1&b=x%2Fy"), percent-decoded into buf.  0, -ENOENT
 * (absent), -EINVAL (a bad escape, or a NUL in it), -ENAMETOOLONG (does not fit). */
static int query_get(const char *query, const char *key, char *buf, size_t cap)
{
	size_t klen = strlen(key);

	for (const char *p = query; p && *p; p = strchr(p, '&'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, klen) != 0 || p[klen] != '=')
			continue;
		size_t n = 0;
		for (const char *v = p + klen + 1; *v && *v != '&'; v++) {
			int c = (unsigned char)*v;
			if (c == '%') {
				int hi = sg_hexval(v[1]), lo = hi < 0 ? -1 : sg_hexval(v[2]);
				if (hi < 0 || lo < 0 || (hi | lo) == 0)
					return -EINVAL;
				c = hi * 16 + lo;
				v += 2;
			}
			if (n + 1 >= cap)
				return -ENAMETOOLONG;
			buf[n++] = (char)c;
		}
		buf[n] = '\0';
		return 0;
	}
	return -ENOENT;
}

static int query_uint(const char *query, const char *key, uint64_t *ret)
{
	char buf[32], *end;
	int r = query_get(query, key, buf, sizeof(buf));

	if (r < 0)
		return r;
	errno = 0;
	unsigned long long v = strtoull(buf, &end, 10);
	if (errno || end == buf || *end || buf[0] == '-')
		return -EINVAL;
	*ret = v;
	return 0;
}

static void slot_end(struct ahead_pull *s, bool pulled)
{
	void *token = s->token;

	*s = (struct ahead_pull){ 0 };
	sg_pull_ahead_end(token, pulled);
}

/* Starts holding `image` (shorter than a slot's image) for hold_s in a free slot, for the
 * resolve hook or for `stargzd pull-ahead`.  The slot, or NULL (-ENOSPC: every slot is taken;
 * -EINVAL: not a reference, or no memory) with *res set. */
static struct ahead_pull *hold(struct sg_ahead_pulls *a, const char *image, unsigned hold_s,
			       bool hooked, uint64_t now_ns, int *res)
{
	const char *by = hooked ? "resolve hook" : "`stargzd pull-ahead`";
	struct ahead_pull *free_slot = NULL;

	for (size_t i = 0; i < SG_AHEAD_PULLS_MAX && !free_slot; i++)
		if (a->slots[i].id == 0)
			free_slot = &a->slots[i];
	if (!free_slot) {
		sg_warn("image %s: not loaded ahead of its pull: %d pulls are loading ahead already",
			image, SG_AHEAD_PULLS_MAX);
		*res = -ENOSPC;
		return NULL;
	}
	void *token = sg_pull_ahead_start(&a->ctx, image);
	if (!token) {
		sg_warn("image %s: not loaded ahead of its pull (%s): not an image reference, or no "
			"memory", image, by);
		*res = -EINVAL;
		return NULL;
	}
	*free_slot = (struct ahead_pull){
		.id = ++a->last_id,
		.token = token,
		.deadline_ns = now_ns + hold_s * 1000000000ull,
		.hold_s = hold_s,
		.hooked = hooked,
	};
	memcpy(free_slot->image, image, strlen(image) + 1);
	sg_info("image %s: loading ahead of its pull (%s, id %llu, held %u s at most)", image, by,
		(unsigned long long)free_slot->id, free_slot->hold_s);
	return free_slot;
}

int sg_ahead_pulls_start(struct sg_ahead_pulls *a, const char *query, FILE *out, uint64_t now_ns)
{
	char image[sizeof(a->slots[0].image)];
	uint64_t hold_s = SG_AHEAD_HOLD_DEFAULT_S;
	int r;

	r = query_get(query, "image", image, sizeof(image));
	if (r < 0 || !image[0])
		return -EINVAL;
	r = query_uint(query, "hold", &hold_s);
	if ((r < 0 && r != -ENOENT) || hold_s == 0)
		return -EINVAL;
	if (hold_s > SG_AHEAD_HOLD_MAX_S)
		hold_s = SG_AHEAD_HOLD_MAX_S;
	struct ahead_pull *s = hold(a, image, (unsigned)hold_s, false, now_ns, &r);
	if (!s)
		return r;
	fprintf(out, "%llu\n", (unsigned long long)s->id);
	return 0;
}

/* A repository name as the distribution spec writes it: lowercase alphanumeric components
 * separated by '.', '_', '__', '-' runs or '/'.  Checked loosely (the reference parser has the
 * last word): the characters, and no empty component. */
static bool repository_name_ok(const char *s, size_t n)
{
	if (n == 0 || s[0] == '/' || s[n - 1] == '/')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
			  c == '-' || c == '/';
		if (!ok || (c == '/' && s[i + 1] == '/'))
			return false;
	}
	return true;
}

/* A tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}) or a digest (algorithm:hex). */
static bool manifest_reference_ok(const char *s, bool *digest)
{
	size_t n = strlen(s);

	*digest = strchr(s, ':') != NULL;
	if (n == 0 || n > 200 || s[0] == '.' || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '.' || c == '-' || (*digest && (c == ':' || c == '+'));
		if (!ok)
			return false;
	}
	return *digest || n <= 128;
}

/* A registry host as containerd names it in `ns`: a name or address, maybe a port. */
static bool host_ok(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
			return false;
	}
	return true;
}

int sg_ahead_hook_image(const char *path, const char *query, char *image, size_t cap)
{
	static const char v2[] = "/v2/", manifests[] = "/manifests/";
	char ns[256];
	bool digest;

	if (strncmp(path, v2, sizeof(v2) - 1) != 0)
		return -EINVAL;
	const char *name = path + sizeof(v2) - 1;
	const char *m = NULL;
	for (const char *p = strstr(name, manifests); p; p = strstr(p + 1, manifests))
		m = p;   /* the last one: a repository may have a component named "manifests" */
	if (!m || !repository_name_ok(name, (size_t)(m - name)))
		return -EINVAL;
	const char *ref = m + sizeof(manifests) - 1;
	if (!manifest_reference_ok(ref, &digest))
		return -EINVAL;
	int r = query_get(query, "ns", ns, sizeof(ns));
	if (r < 0)
		return r == -ENOENT ? -ENOENT : -EINVAL;
	if (!host_ok(ns))
		return -EINVAL;
	int n = snprintf(image, cap, "%s/%.*s%c%s", ns, (int)(m - name), name, digest ? '@' : ':',
			 ref);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int sg_ahead_pulls_hook(struct sg_ahead_pulls *a, const struct sg_httpd_req *req, FILE *out,
			uint64_t now_ns)
{
	char image[sizeof(a->slots[0].image)];
	int r;

	if (!req->head) {
		fputs("stargzd: resolve hook; this host serves nothing\n", out);
		return 404;
	}
	r = sg_ahead_hook_image(req->path, req->query, image, sizeof(image));
	if (r < 0) {
		/* Not containerd resolving an image through hosts.toml: nothing to start. */
		sg_debug("resolve hook: HEAD %s?%s names no image (%s); nothing is loaded ahead",
			 req->path, req->query, r == -ENOENT ? "no ns" : strerror(-r));
		return 404;
	}
	for (size_t i = 0; i < SG_AHEAD_PULLS_MAX; i++) {
		struct ahead_pull *s = &a->slots[i];
		if (s->id && s->hooked && strcmp(s->image, image) == 0) {
			/* Resolved again while held (a retry, another pull of it): held longer. */
			s->deadline_ns = now_ns + s->hold_s * 1000000000ull;
			return 404;
		}
	}
	(void)hold(a, image, SG_AHEAD_HOOK_HOLD_S, true, now_ns, &r);
	return 404;
}

int sg_ahead_pulls_end(struct sg_ahead_pulls *a, const char *query, FILE *out)
{
	uint64_t id, pulled;

	if (query_uint(query, "id", &id) < 0 || id == 0 || query_uint(query, "pulled", &pulled) < 0 ||
	    pulled > 1)
		return -EINVAL;
	for (size_t i = 0; i < SG_AHEAD_PULLS_MAX; i++)
		if (a->slots[i].id == id) {
			slot_end(&a->slots[i], pulled == 1);
			fputs("ended\n", out);
			return 0;
		}
	return -ENOENT;
}

void sg_ahead_pulls_expire(struct sg_ahead_pulls *a, uint64_t now_ns)
{
	for (size_t i = 0; a && i < SG_AHEAD_PULLS_MAX; i++) {
		struct ahead_pull *s = &a->slots[i];
		if (s->id == 0 || now_ns < s->deadline_ns)
			continue;
		if (s->hooked)
			sg_debug("image %s: loaded ahead of its pull (resolve hook, id %llu) for %u s: "
				 "its layers no Prepare took are let go", s->image,
				 (unsigned long long)s->id, s->hold_s);
		else
			sg_info("image %s: its `stargzd pull-ahead` (id %llu) did not end within %u s: "
				"its layers are let go", s->image, (unsigned long long)s->id, s->hold_s);
		slot_end(s, false);
	}
}

void sg_ahead_pulls_free(struct sg_ahead_pulls *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < SG_AHEAD_PULLS_MAX; i++)
		if (a->slots[i].id)
			slot_end(&a->slots[i], false);
	free(a);
}

/* ---- the command ---- */

static const char pull_ahead_usage[] =
	"Usage: stargzd pull-ahead [--root DIR] [--hold SECONDS] IMAGE [--] COMMAND [ARG...]\n"
	"\n"
	"Runs COMMAND, a pull client (`ctr-remote images rpull IMAGE`, `nerdctl pull IMAGE`),\n"
	"with IMAGE's lazy layers loading in the daemon on ROOT (default " SG_DEFAULT_ROOT ")\n"
	"from the start: their TOCs, startup profiles and entry programs are fetched while\n"
	"COMMAND still resolves the image, instead of at its first Prepare.  The daemon keeps\n"
	"them for COMMAND's Prepares until COMMAND exits (or SECONDS pass, 600 by default).  If\n"
	"the daemon cannot be reached, COMMAND runs anyway.  Exits with COMMAND's status.\n"
	"Asks ROOT/" SG_CONTROL_SOCKET_NAME " (root only).\n";

/* image percent-encoded for a query string: all but RFC 3986's unreserved characters and
 * those a query may hold as they are (a reference's '/', ':' and '@'). */
static int encode(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~' || c == '/' ||
			     c == ':' || c == '@';
		if (n + (plain ? 1 : 3) >= cap)
			return -ENAMETOOLONG;
		if (plain) {
			out[n++] = (char)c;
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	out[n] = '\0';
	return 0;
}

/* Runs argv; its exit status as a shell gives it (128 + the signal that ended it). */
static int run_command(char **argv)
{
	struct sigaction ign = { .sa_handler = SIG_IGN }, old_int, old_quit;
	int status;
	pid_t pid;

	/* As system(3): a ^C goes to the pull client, which decides; we wait for it. */
	sigemptyset(&ign.sa_mask);
	sigaction(SIGINT, &ign, &old_int);
	sigaction(SIGQUIT, &ign, &old_quit);
	pid = fork();
	if (pid == 0) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGQUIT, &old_quit, NULL);
		execvp(argv[0], argv);
		fprintf(stderr, "stargzd pull-ahead: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (pid < 0) {
		fprintf(stderr, "stargzd pull-ahead: cannot run %s: %s\n", argv[0], strerror(errno));
		status = 127 << 8;
	} else {
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGQUIT, &old_quit, NULL);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

int sg_pull_ahead_command(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "hold", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *root = SG_DEFAULT_ROOT;
	unsigned long hold_s = SG_AHEAD_HOLD_DEFAULT_S;
	char target[2048], enc[1536], err[512], *body = NULL, *end;
	size_t len;
	int c;

	opterr = 0;
	optind = 1;
	/* "+": options stop at IMAGE; COMMAND's own are its own. */
	while ((c = getopt_long(argc, argv, "+:r:H:h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': root = optarg; break;
		case 'H':
			errno = 0;
			hold_s = strtoul(optarg, &end, 10);
			if (errno || end == optarg || *end || hold_s == 0 || hold_s > SG_AHEAD_HOLD_MAX_S) {
				fprintf(stderr, "stargzd pull-ahead: --hold: 1 to %u seconds\n",
					SG_AHEAD_HOLD_MAX_S);
				return 2;
			}
			break;
		case 'h':
			fputs(pull_ahead_usage, stdout);
			return 0;
		default:
			fprintf(stderr, "stargzd pull-ahead: bad option %s (see --help)\n",
				argv[optind - 1]);
			return 2;
		}
	}
	/* The "--" is optional: options stopped at IMAGE already. */
	int at = optind + 1 < argc && strcmp(argv[optind + 1], "--") == 0 ? optind + 2 : optind + 1;
	if (optind >= argc || at >= argc) {
		fprintf(stderr, "stargzd pull-ahead: IMAGE [--] COMMAND [ARG...] expected (see --help)\n");
		return 2;
	}
	const char *image = argv[optind];
	char **command = argv + at;
	unsigned long long id = 0;

	if (encode(image, enc, sizeof(enc)) < 0) {
		fprintf(stderr, "stargzd pull-ahead: image name too long\n");
		return 2;
	}
	snprintf(target, sizeof(target), "/pull-ahead?image=%s&hold=%lu", enc, hold_s);
	if (sg_control_get(root, target, &body, &len, err, sizeof(err)) < 0) {
		fprintf(stderr, "stargzd pull-ahead: %s not loaded ahead: %s\n", image, err);
	} else {
		id = strtoull(body, &end, 10);
		if (end == body || id == 0) {
			fprintf(stderr, "stargzd pull-ahead: unexpected answer from the daemon\n");
			id = 0;
		}
	}
	free(body);
	int status = run_command(command);
	if (id) {
		snprintf(target, sizeof(target), "/pull-ahead-end?id=%llu&pulled=%d", id, status == 0);
		body = NULL;
		if (sg_control_get(root, target, &body, &len, err, sizeof(err)) < 0)
			fprintf(stderr, "stargzd pull-ahead: could not tell the daemon that the pull "
				"ended (%s); it lets %s's layers go within %lu s\n", err, image, hold_s);
		free(body);
	}
	return status;
}
