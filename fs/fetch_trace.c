#include "fs/fetch_trace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/core/loop.h"

#define TRACE_BUF (64u << 10)
/* The longest line: a 4 KiB path with every byte escaped as \u00XX, and the rest. */
#define LINE_MAX_BYTES (4096u * 6 + 1024)

struct sg_fetch_trace {
	int fd;
	bool failed;
	uint64_t t0_ns;
	size_t used;
	char path[4200];
	char buf[TRACE_BUF];
};

static void put(struct sg_fetch_trace *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static const char *const kind_names[SG_FETCH_KINDS] = {
	[SG_FETCH_ONDEMAND] = "ondemand",
	[SG_FETCH_SPEC] = "spec",
	[SG_FETCH_PREFETCH] = "prefetch",
	[SG_FETCH_BACKGROUND] = "background",
	[SG_FETCH_STREAM] = "stream",
	[SG_FETCH_PROFILE] = "profile",
};

const char *sg_fetch_kind_name(enum sg_fetch_kind kind)
{
	return (unsigned)kind < SG_FETCH_KINDS ? kind_names[kind] : "?";
}

int sg_fetch_trace_open(const char *dir, struct sg_fetch_trace **ret_trace)
{
	struct sg_fetch_trace *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	int n = snprintf(t->path, sizeof(t->path), "%s/trace-%ld.jsonl", dir, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(t->path)) {
		free(t);
		return -ENAMETOOLONG;
	}
	t->fd = open(t->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (t->fd < 0) {
		int r = -errno;
		free(t);
		return r;
	}
	t->t0_ns = sg_now_ns();
	/* The clock's origin on the wall clock: a reader lines the trace up with times taken
	 * outside the daemon (the bench's pull start), which its start does not give: the
	 * daemon opens the trace after its configuration and database (about 0.1 s). */
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	put(t, "{\"t\":0.000,\"ev\":\"start\",\"epoch\":%lld.%06ld}\n", (long long)wall.tv_sec,
	    wall.tv_nsec / 1000);
	*ret_trace = t;
	return 0;
}

void sg_fetch_trace_flush(struct sg_fetch_trace *t)
{
	size_t done = 0;

	if (!t || t->failed)
		return;
	/* A few small blocking writes, at a layer's close or the daemon's exit: the trace is
	 * a measuring aid, not on a read's path. */
	while (done < t->used) {
		ssize_t w = write(t->fd, t->buf + done, t->used - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			t->failed = true;
			break;
		}
		done += (size_t)w;
	}
	t->used = 0;
}

void sg_fetch_trace_close(struct sg_fetch_trace *t)
{
	if (!t)
		return;
	sg_fetch_trace_flush(t);
	close(t->fd);
	free(t);
}

const char *sg_fetch_trace_path(const struct sg_fetch_trace *t)
{
	return t ? t->path : "";
}

bool sg_fetch_trace_failed(const struct sg_fetch_trace *t)
{
	return t && t->failed;
}

/* Room for one more line; false when the trace is off. */
static bool room(struct sg_fetch_trace *t)
{
	if (!t || t->failed)
		return false;
	if (TRACE_BUF - t->used < LINE_MAX_BYTES)
		sg_fetch_trace_flush(t);
	return !t->failed;
}

static void put(struct sg_fetch_trace *t, const char *fmt, ...)
{
	va_list ap;
	size_t left = TRACE_BUF - t->used;

	va_start(ap, fmt);
	int n = vsnprintf(t->buf + t->used, left, fmt, ap);
	va_end(ap);
	if (n > 0)
		t->used += (size_t)n < left ? (size_t)n : left - 1;
}

/* s as a JSON string (quoted, escaped), at most max bytes of it. */
static void put_string(struct sg_fetch_trace *t, const char *s, size_t max)
{
	put(t, "\"");
	for (size_t i = 0; s[i] && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			put(t, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			put(t, "\\u%04x", c);
		else
			put(t, "%c", c);
	}
	put(t, "\"");
}

static double ms_since(const struct sg_fetch_trace *t, uint64_t ns)
{
	return ns > t->t0_ns ? (double)(ns - t->t0_ns) / 1e6 : 0.0;
}

static void put_head(struct sg_fetch_trace *t, uint64_t start_ns, const char *ev,
		     const char *layer)
{
	put(t, "{\"t\":%.3f,\"ev\":\"%s\",\"layer\":", ms_since(t, start_ns), ev);
	put_string(t, layer ? layer : "", 128);
}

void sg_fetch_trace_read(struct sg_fetch_trace *t, const char *layer, const char *path,
			 uint64_t off, uint64_t len, uint64_t start_ns, uint64_t wait_ns, bool net)
{
	if (!room(t))
		return;
	put_head(t, start_ns, "read", layer);
	put(t, ",\"path\":");
	put_string(t, path ? path : "", 4096);
	put(t, ",\"off\":%llu,\"len\":%llu,\"wait_ms\":%.3f,\"net\":%s}\n", (unsigned long long)off,
	    (unsigned long long)len, (double)wait_ns / 1e6, net ? "true" : "false");
}

void sg_fetch_trace_fetch(struct sg_fetch_trace *t, const char *layer, enum sg_fetch_kind kind,
			  uint64_t off, uint64_t len, unsigned chunks, unsigned spans,
			  uint64_t start_ns, uint64_t took_ns, bool ok, int64_t beside,
			  int64_t beside_spec)
{
	if (!room(t))
		return;
	put_head(t, start_ns, "fetch", layer);
	put(t, ",\"kind\":\"%s\",\"off\":%llu,\"len\":%llu,\"chunks\":%u,\"spans\":%u,"
	    "\"ms\":%.3f,\"ok\":%s", sg_fetch_kind_name(kind), (unsigned long long)off,
	    (unsigned long long)len, chunks, spans, (double)took_ns / 1e6, ok ? "true" : "false");
	if (beside >= 0)
		put(t, ",\"beside\":%lld", (long long)beside);
	if (beside_spec >= 0)
		put(t, ",\"beside_spec\":%lld", (long long)beside_spec);
	put(t, "}\n");
}

static void put_kinds(struct sg_fetch_trace *t, const char *name, const uint64_t v[SG_FETCH_KINDS])
{
	put(t, ",\"%s\":{", name);
	for (int k = 0; k < SG_FETCH_KINDS; k++)
		put(t, "%s\"%s\":%llu", k ? "," : "", kind_names[k], (unsigned long long)v[k]);
	put(t, "}");
}

void sg_fetch_trace_toc(struct sg_fetch_trace *t, const char *layer, uint64_t asked_ns,
		       uint64_t took_ns)
{
	if (!room(t))
		return;
	put_head(t, asked_ns, "toc", layer);
	put(t, ",\"ms\":%.3f}\n", (double)took_ns / 1e6);
}

void sg_fetch_trace_layer(struct sg_fetch_trace *t, const char *layer,
			  const uint64_t fetched[SG_FETCH_KINDS], const uint64_t used[SG_FETCH_KINDS])
{
	if (!room(t))
		return;
	put_head(t, sg_now_ns(), "layer", layer);
	put_kinds(t, "fetched", fetched);
	put_kinds(t, "used", used);
	put(t, "}\n");
}
