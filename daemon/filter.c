#include "daemon/filter.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PATH_FIELDS 16

enum op { OP_PRESENT, OP_EQ, OP_NE, OP_MATCH };

struct selector {
	char *path[MAX_PATH_FIELDS];
	size_t n_path;
	enum op op;
	char *value;
	regex_t re;
	bool has_re;
};

struct conjunction {
	struct selector *sel;
	size_t n;
};

struct sg_filter {
	struct conjunction *any;   /* OR of conjunctions */
	size_t n;
};

struct parser {
	const char *s;
	size_t pos;
	struct sg_error *err;
};

static int perror_at(struct parser *p, const char *what)
{
	return sg_error_set(p->err, -EINVAL, "filter \"%s\": %s at position %zu", p->s, what,
			    p->pos);
}

static void skip_space(struct parser *p)
{
	while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t')
		p->pos++;
}

/* Appends c to a growing string (room for a NUL is kept).  On failure frees *out. */
static int put_char(char **out, size_t *n, size_t *cap, char c)
{
	if (*n + 2 >= *cap) {
		char *t = realloc(*out, *cap *= 2);
		if (!t) {
			free(*out);
			*out = NULL;
			return -ENOMEM;
		}
		*out = t;
	}
	(*out)[(*n)++] = c;
	return 0;
}

/* A quoted string with delimiter " ' or /; backslash escapes \n \t \\ and the delimiter.
 * For /regex/ other escapes are kept verbatim, so the regex sees them. */
static int parse_quoted(struct parser *p, char **ret)
{
	char delim = p->s[p->pos++];
	size_t cap = 16, n = 0;
	char *out = malloc(cap);

	if (!out)
		return -ENOMEM;
	for (;;) {
		char c = p->s[p->pos];
		if (c == '\0') {
			free(out);
			return perror_at(p, "unterminated quoted string");
		}
		p->pos++;
		if (c == delim)
			break;
		if (c == '\\') {
			char e = p->s[p->pos];
			if (e == '\0') {
				free(out);
				return perror_at(p, "unterminated escape");
			}
			p->pos++;
			if (e == delim || e == '\\')
				c = e;
			else if (delim == '/') {
				/* keep "\d" etc. for the regex engine */
				if (put_char(&out, &n, &cap, '\\') < 0)
					return -ENOMEM;
				c = e;
			} else if (e == 'n')
				c = '\n';
			else if (e == 't')
				c = '\t';
			else {
				free(out);
				return perror_at(p, "unknown escape");
			}
		}
		if (put_char(&out, &n, &cap, c) < 0)
			return -ENOMEM;
	}
	out[n] = '\0';
	*ret = out;
	return 0;
}

static bool is_field_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

static int parse_field(struct parser *p, char **ret)
{
	char c = p->s[p->pos];
	size_t start = p->pos;

	if (c == '"' || c == '\'' || c == '/')
		return parse_quoted(p, ret);
	while (is_field_char(p->s[p->pos]))
		p->pos++;
	if (p->pos == start)
		return perror_at(p, "expected a field name");
	*ret = strndup(p->s + start, p->pos - start);
	return *ret ? 0 : -ENOMEM;
}

static int parse_value(struct parser *p, char **ret)
{
	char c = p->s[p->pos];
	size_t start;

	if (c == '"' || c == '\'' || c == '/')
		return parse_quoted(p, ret);
	start = p->pos;
	while (p->s[p->pos] && p->s[p->pos] != ',')
		p->pos++;
	size_t end = p->pos;
	while (end > start && (p->s[end - 1] == ' ' || p->s[end - 1] == '\t'))
		end--;
	if (end == start)
		return perror_at(p, "expected a value");
	*ret = strndup(p->s + start, end - start);
	return *ret ? 0 : -ENOMEM;
}

static void selector_clear(struct selector *s)
{
	for (size_t i = 0; i < s->n_path; i++)
		free(s->path[i]);
	free(s->value);
	if (s->has_re)
		regfree(&s->re);
}

static int parse_selector(struct parser *p, struct selector *sel)
{
	int r;

	memset(sel, 0, sizeof(*sel));
	skip_space(p);
	for (;;) {
		if (sel->n_path == MAX_PATH_FIELDS)
			return perror_at(p, "field path too long");
		r = parse_field(p, &sel->path[sel->n_path]);
		if (r < 0)
			return r;
		sel->n_path++;
		if (p->s[p->pos] != '.')
			break;
		p->pos++;
	}
	skip_space(p);
	const char *o = p->s + p->pos;
	if (o[0] == '\0' || o[0] == ',') {
		sel->op = OP_PRESENT;
		return 0;
	}
	if (o[0] == '=' && o[1] == '=')
		sel->op = OP_EQ;
	else if (o[0] == '!' && o[1] == '=')
		sel->op = OP_NE;
	else if (o[0] == '~' && o[1] == '=')
		sel->op = OP_MATCH;
	else
		return perror_at(p, "expected ==, != or ~=");
	p->pos += 2;
	skip_space(p);
	r = parse_value(p, &sel->value);
	if (r < 0)
		return r;
	if (sel->op == OP_MATCH) {
		int rc = regcomp(&sel->re, sel->value, REG_EXTENDED | REG_NOSUB);
		if (rc != 0) {
			char msg[128];
			regerror(rc, &sel->re, msg, sizeof(msg));
			return sg_error_set(p->err, -EINVAL, "filter \"%s\": bad regular expression: %s",
					    p->s, msg);
		}
		sel->has_re = true;
	}
	skip_space(p);
	return 0;
}

static int parse_one(struct parser *p, struct conjunction *conj)
{
	int r;

	conj->sel = NULL;
	conj->n = 0;
	for (;;) {
		struct selector *t = realloc(conj->sel, (conj->n + 1) * sizeof(*t));
		if (!t)
			return -ENOMEM;
		conj->sel = t;
		r = parse_selector(p, &conj->sel[conj->n]);
		if (r < 0) {
			selector_clear(&conj->sel[conj->n]);
			return r;
		}
		conj->n++;
		if (p->s[p->pos] == '\0')
			return 0;
		if (p->s[p->pos] != ',')
			return perror_at(p, "expected ,");
		p->pos++;
	}
}

static void conjunction_clear(struct conjunction *c)
{
	for (size_t i = 0; i < c->n; i++)
		selector_clear(&c->sel[i]);
	free(c->sel);
}

void sg_filter_free(struct sg_filter *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++)
		conjunction_clear(&f->any[i]);
	free(f->any);
	free(f);
}

int sg_filter_parse(const char *const *filters, size_t n, struct sg_filter **ret,
		    struct sg_error *err)
{
	struct sg_filter *f = calloc(1, sizeof(*f));
	int r = 0;

	if (!f)
		return -ENOMEM;
	if (n > 0) {
		f->any = calloc(n, sizeof(*f->any));
		if (!f->any) {
			free(f);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct parser p = { .s = filters[i], .err = err };
		skip_space(&p);
		if (filters[i][p.pos] == '\0')
			continue;   /* an empty filter adds no condition */
		r = parse_one(&p, &f->any[f->n]);
		if (r < 0) {
			conjunction_clear(&f->any[f->n]);
			sg_filter_free(f);
			return r;
		}
		f->n++;
	}
	*ret = f;
	return 0;
}

static bool selector_match(const struct selector *s, sg_filter_field_fn field, void *userdata)
{
	const char *value = NULL;
	bool present = field((const char *const *)s->path, s->n_path, &value, userdata);

	switch (s->op) {
	case OP_PRESENT:
		return present;
	case OP_EQ:
		return present && strcmp(value, s->value) == 0;
	case OP_NE:
		/* As containerd: a missing field is "" and so differs from any non-empty value. */
		return strcmp(present ? value : "", s->value) != 0;
	case OP_MATCH:
		return regexec(&s->re, present ? value : "", 0, NULL, 0) == 0;
	}
	return false;
}

bool sg_filter_match(const struct sg_filter *f, sg_filter_field_fn field, void *userdata)
{
	if (f->n == 0)
		return true;
	for (size_t i = 0; i < f->n; i++) {
		bool all = true;
		for (size_t j = 0; j < f->any[i].n && all; j++)
			all = selector_match(&f->any[i].sel[j], field, userdata);
		if (all)
			return true;
	}
	return false;
}
