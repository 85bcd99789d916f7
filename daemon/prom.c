#include "daemon/prom.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sg_prom_init(struct sg_prom *p)
{
	*p = (struct sg_prom){ 0 };
}

void sg_prom_done(struct sg_prom *p)
{
	free(p->buf);
	*p = (struct sg_prom){ 0 };
}

bool sg_prom_failed(const struct sg_prom *p)
{
	return p->oom;
}

static bool reserve(struct sg_prom *p, size_t more)
{
	if (p->oom)
		return false;
	if (p->len + more + 1 <= p->cap)
		return true;
	size_t cap = p->cap ? p->cap : 4096;
	while (cap < p->len + more + 1)
		cap *= 2;
	char *nb = realloc(p->buf, cap);
	if (!nb) {
		p->oom = true;
		return false;
	}
	p->buf = nb;
	p->cap = cap;
	return true;
}

static void put(struct sg_prom *p, const char *s, size_t n)
{
	if (!reserve(p, n))
		return;
	memcpy(p->buf + p->len, s, n);
	p->len += n;
	p->buf[p->len] = '\0';
}

static void puts_(struct sg_prom *p, const char *s)
{
	put(p, s, strlen(s));
}

static void printf_(struct sg_prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_(struct sg_prom *p, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(p, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* HELP text escapes \ and newline; label values also ". */
static void escaped(struct sg_prom *p, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			puts_(p, "\\\\");
		else if (*s == '\n')
			puts_(p, "\\n");
		else if (quote && *s == '"')
			puts_(p, "\\\"");
		else
			put(p, s, 1);
	}
}

void sg_prom_family(struct sg_prom *p, const char *name, const char *type, const char *help)
{
	printf_(p, "# HELP %s ", name);
	escaped(p, help, false);
	printf_(p, "\n# TYPE %s %s\n", name, type);
}

/* name{labels[,extra="value"]} */
static void series(struct sg_prom *p, const char *name, const char *suffix,
		   const char *const *labels, const char *extra, const char *extra_value)
{
	bool any = false;

	puts_(p, name);
	puts_(p, suffix);
	for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
		put(p, any ? "," : "{", 1);
		puts_(p, labels[i]);
		puts_(p, "=\"");
		escaped(p, labels[i + 1], true);
		put(p, "\"", 1);
		any = true;
	}
	if (extra) {
		put(p, any ? "," : "{", 1);
		printf_(p, "%s=\"%s\"", extra, extra_value);
		any = true;
	}
	if (any)
		put(p, "}", 1);
}

/* Integers as integers (counters read better), the rest with full precision. */
static void value(struct sg_prom *p, double v)
{
	if (v >= 0 && v < 9007199254740992.0 && v == (double)(unsigned long long)v)
		printf_(p, " %llu\n", (unsigned long long)v);
	else
		printf_(p, " %.17g\n", v);
}

void sg_prom_sample(struct sg_prom *p, const char *name, const char *const *labels, double v)
{
	series(p, name, "", labels, NULL, NULL);
	value(p, v);
}

void sg_prom_hist(struct sg_prom *p, const char *name, const char *const *labels,
		  const struct sg_hist *h, unsigned nbounds, double scale)
{
	uint64_t cum = 0;
	double bound = 1;
	char le[48];

	if (nbounds > SG_HIST_BOUNDS)
		nbounds = SG_HIST_BOUNDS;
	for (unsigned i = 0; i < nbounds; i++, bound *= 2) {
		cum += h->bucket[i];
		snprintf(le, sizeof(le), "%.15g", bound * scale);
		series(p, name, "_bucket", labels, "le", le);
		value(p, (double)cum);
	}
	series(p, name, "_bucket", labels, "le", "+Inf");
	value(p, (double)h->count);
	series(p, name, "_sum", labels, NULL, NULL);
	value(p, h->sum * scale);
	series(p, name, "_count", labels, NULL, NULL);
	value(p, (double)h->count);
}
