#include "fs/py_imports.h"

#include <stdbool.h>
#include <string.h>

struct scan {
	const uint8_t *p, *end;   /* the statement: up to its newline or ';' */
	void (*cb)(void *ctx, const char *name, size_t len);
	void *ctx;
	unsigned n;
};

static bool blank(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f';
}

static bool ident_start(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool ident(uint8_t c)
{
	return ident_start(c) || (c >= '0' && c <= '9');
}

static void skip_blanks(struct scan *s)
{
	while (s->p < s->end && (blank(*s->p) || *s->p == '(' || *s->p == '\\'))
		s->p++;
}

/* Does the statement continue with keyword `kw` followed by a blank? */
static bool keyword(struct scan *s, const char *kw)
{
	size_t n = strlen(kw);

	if ((size_t)(s->end - s->p) <= n || memcmp(s->p, kw, n) != 0 || !blank(s->p[n]))
		return false;
	s->p += n;
	skip_blanks(s);
	return true;
}

/* A dotted name at s->p into out (NUL-terminated); its length, 0 if there is none or it is
 * too long (then it is skipped). */
static size_t dotted(struct scan *s, char out[SG_PY_MODULE_MAX + 1])
{
	size_t len = 0;
	bool too_long = false;

	if (s->p == s->end || !ident_start(*s->p))
		return 0;
	while (s->p < s->end && (ident(*s->p) || (*s->p == '.' && s->p + 1 < s->end &&
						 ident_start(s->p[1])))) {
		if (len < SG_PY_MODULE_MAX)
			out[len++] = (char)*s->p;
		else
			too_long = true;
		s->p++;
	}
	out[len] = '\0';
	return too_long ? 0 : len;
}

static void report(struct scan *s, const char *name, size_t len)
{
	if (len == 0 || s->n >= SG_PY_IMPORTS_MAX)
		return;
	s->cb(s->ctx, name, len);
	s->n++;
}

/* After a name: `as alias`, then ',' and the next one; false at the end of the list. */
static bool next_in_list(struct scan *s)
{
	char alias[SG_PY_MODULE_MAX + 1];

	skip_blanks(s);
	if (keyword(s, "as"))
		(void)dotted(s, alias);
	skip_blanks(s);
	if (s->p == s->end || *s->p != ',')
		return false;
	s->p++;
	skip_blanks(s);
	return true;
}

static void statement(struct scan *s)
{
	char name[SG_PY_MODULE_MAX + 1], sub[2 * SG_PY_MODULE_MAX + 2];

	skip_blanks(s);
	if (keyword(s, "import")) {
		do
			report(s, name, dotted(s, name));
		while (next_in_list(s));
	} else if (keyword(s, "from")) {
		size_t len = dotted(s, name);   /* 0 for a relative import: skipped */
		skip_blanks(s);
		if (len == 0 || !keyword(s, "import"))
			return;
		report(s, name, len);
		do {
			char member[SG_PY_MODULE_MAX + 1];
			size_t mlen = dotted(s, member);
			if (mlen > 0 && len + 1 + mlen <= SG_PY_MODULE_MAX) {
				memcpy(sub, name, len);
				sub[len] = '.';
				memcpy(sub + len + 1, member, mlen + 1);
				report(s, sub, len + 1 + mlen);
			}
		} while (next_in_list(s));
	}
}

unsigned sg_py_imports(const uint8_t *buf, size_t len,
		       void (*cb)(void *ctx, const char *name, size_t len), void *ctx)
{
	struct scan s = { .cb = cb, .ctx = ctx };
	const uint8_t *p = buf, *end = buf + len;

	while (p < end && s.n < SG_PY_IMPORTS_MAX) {
		const uint8_t *stop = p;
		while (stop < end && *stop != '\n' && *stop != ';' && *stop != '#')
			stop++;
		s.p = p;
		s.end = stop;
		statement(&s);
		if (stop < end && *stop == '#') {   /* a comment runs to the end of its line */
			const uint8_t *nl = memchr(stop, '\n', (size_t)(end - stop));
			stop = nl ? nl : end;
		}
		p = stop < end ? stop + 1 : end;
	}
	return s.n;
}
