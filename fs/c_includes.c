#include "fs/c_includes.h"

#include <string.h>

static bool blank(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/* Does name[0..len) have a ".." component?  A header that names one points out of its
 * directory, which resolving inside a layer's tree would allow, so it is not followed. */
static bool has_dotdot(const char *name, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (name[i] == '.' && name[i + 1] == '.' && (i == 0 || name[i - 1] == '/') &&
		    (i + 2 == len || name[i + 2] == '/'))
			return true;
	return false;
}

/* The directive starting at p (just after '#' and blanks), up to end: reports it and returns
 * true if it is an include of a literal name. */
static bool directive(const uint8_t *p, const uint8_t *end,
		      void (*cb)(void *ctx, const struct sg_c_include *inc), void *ctx)
{
	static const char kw[] = "include";
	struct sg_c_include inc = { 0 };
	char name[SG_C_INCLUDE_NAME_MAX + 1];

	if ((size_t)(end - p) < sizeof(kw) - 1 || memcmp(p, kw, sizeof(kw) - 1) != 0)
		return false;
	p += sizeof(kw) - 1;
	if (end - p >= 5 && memcmp(p, "_next", 5) == 0) {
		inc.next = true;
		p += 5;
	}
	while (p < end && blank(*p))
		p++;
	if (p == end || (*p != '<' && *p != '"'))
		return false;   /* a macro, or another directive (#includes...) */
	uint8_t close = *p == '<' ? '>' : '"';
	inc.quoted = *p == '"';
	const uint8_t *start = ++p;
	while (p < end && *p != close && *p != '\n' && *p != '\0')
		p++;
	if (p == end || *p != close)
		return false;   /* cut off, or not closed on its line */
	inc.len = (size_t)(p - start);
	if (inc.len == 0 || inc.len > SG_C_INCLUDE_NAME_MAX)
		return false;
	memcpy(name, start, inc.len);
	name[inc.len] = '\0';
	if (has_dotdot(name, inc.len))
		return false;
	inc.name = name;
	cb(ctx, &inc);
	return true;
}

unsigned sg_c_includes(const uint8_t *buf, size_t len,
		       void (*cb)(void *ctx, const struct sg_c_include *inc), void *ctx)
{
	const uint8_t *p = buf, *end = buf + len;
	unsigned n = 0;

	while (p < end && n < SG_C_INCLUDES_MAX) {
		const uint8_t *eol = memchr(p, '\n', (size_t)(end - p));
		const uint8_t *line_end = eol ? eol : end;
		const uint8_t *q = p;
		while (q < line_end && blank(*q))
			q++;
		if (q < line_end && *q == '#') {
			q++;
			while (q < line_end && blank(*q))
				q++;
			/* Only a whole line counts: the last one may be cut off at len. */
			if (eol && directive(q, line_end, cb, ctx))
				n++;
		}
		if (!eol)
			break;
		p = eol + 1;
	}
	return n;
}
