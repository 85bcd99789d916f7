/* The strict TOML reader shared by config.toml and hosts.toml.  See toml.h. */
#include "daemon/core/toml.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- values ---- */

void sg_toml_value_done(struct sg_toml_value *v)
{
	if (!v)
		return;
	free(v->s);
	for (size_t i = 0; i < v->n; i++)
		sg_toml_value_done(&v->items[i]);
	free(v->items);
	*v = (struct sg_toml_value){ 0 };
}

/* ---- parser state ---- */

struct sg_toml {
	const char *t;
	size_t len, pos;
	unsigned line;
	struct sg_error *err;
	int rc;
	struct sg_toml_options o;
};

/* Messages keep the bound they always had, so that a long key quoted in one reads the same. */
#define MSG_MAX 160

int sg_toml_fail(struct sg_toml *p, int rc, const char *fmt, ...)
{
	va_list ap;
	char msg[MSG_MAX];

	if (!p)
		return rc;      /* no document (a default built from code): just the result */
	if (p->rc)
		return p->rc;   /* keep the first error */
	p->rc = rc;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sg_error_setc(p->err, rc, (int)p->line, "%s", msg);
}

static int peek(const struct sg_toml *p)
{
	return p->pos < p->len ? (unsigned char)p->t[p->pos] : -1;
}

static void skip_ws(struct sg_toml *p)
{
	while (p->pos < p->len && (p->t[p->pos] == ' ' || p->t[p->pos] == '\t'))
		p->pos++;
}

static void skip_comment(struct sg_toml *p)
{
	if (peek(p) == '#')
		while (p->pos < p->len && p->t[p->pos] != '\n')
			p->pos++;
}

/* At a newline (LF or CRLF): consume it.  Returns true if one was there. */
static bool newline(struct sg_toml *p)
{
	if (peek(p) == '\n') {
		p->pos++;
		p->line++;
		return true;
	}
	if (peek(p) == '\r' && p->pos + 1 < p->len && p->t[p->pos + 1] == '\n') {
		p->pos += 2;
		p->line++;
		return true;
	}
	return false;
}

static int end_of_line(struct sg_toml *p)
{
	skip_ws(p);
	skip_comment(p);
	if (p->pos >= p->len || newline(p))
		return 0;
	return sg_toml_fail(p, -EBADMSG, "unexpected '%c' after value", p->t[p->pos]);
}

/* Inside arrays: whitespace, newlines and comments. */
static void skip_blank(struct sg_toml *p)
{
	for (;;) {
		skip_ws(p);
		skip_comment(p);
		if (!newline(p))
			return;
	}
}

static int put_utf8(char *out, size_t *o, uint32_t cp)
{
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0)
		return -1;
	if (cp < 0x80) {
		out[(*o)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*o)++] = (char)(0xc0 | (cp >> 6));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*o)++] = (char)(0xe0 | (cp >> 12));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		out[(*o)++] = (char)(0xf0 | (cp >> 18));
		out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	}
	return 0;
}

/* A basic "..." or literal '...' string on one line.  *ret is malloc'd. */
static int parse_string(struct sg_toml *p, char **ret)
{
	char q = p->t[p->pos];
	char *out;
	size_t o = 0;

	if (p->pos + 2 < p->len && p->t[p->pos + 1] == q && p->t[p->pos + 2] == q)
		return sg_toml_fail(p, -EBADMSG, "multi-line strings are not supported");
	p->pos++;
	out = malloc(p->o.max_string + 8);
	if (!out)
		return sg_toml_fail(p, -ENOMEM, "out of memory");
	for (;;) {
		if (p->pos >= p->len || p->t[p->pos] == '\n' || p->t[p->pos] == '\r') {
			free(out);
			return sg_toml_fail(p, -EBADMSG, "unterminated string");
		}
		if (o >= p->o.max_string) {
			free(out);
			return sg_toml_fail(p, -E2BIG, "string longer than %zu bytes", p->o.max_string);
		}
		unsigned char c = (unsigned char)p->t[p->pos++];
		if (c == (unsigned char)q)
			break;
		if ((c < ' ' && c != '\t') || c == 0x7f) {
			free(out);
			return sg_toml_fail(p, -EBADMSG, "control character in string");
		}
		if (c != '\\' || q == '\'') {
			out[o++] = (char)c;
			continue;
		}
		if (p->pos >= p->len) {
			free(out);
			return sg_toml_fail(p, -EBADMSG, "unterminated string");
		}
		c = (unsigned char)p->t[p->pos++];
		switch (c) {
		case 'b': out[o++] = '\b'; break;
		case 't': out[o++] = '\t'; break;
		case 'n': out[o++] = '\n'; break;
		case 'f': out[o++] = '\f'; break;
		case 'r': out[o++] = '\r'; break;
		case '"': out[o++] = '"'; break;
		case '\\': out[o++] = '\\'; break;
		case 'u':
		case 'U': {
			unsigned digits = c == 'u' ? 4 : 8;
			uint32_t cp = 0;
			for (unsigned k = 0; k < digits; k++) {
				int ch = peek(p), h;
				if (ch >= '0' && ch <= '9')
					h = ch - '0';
				else if (ch >= 'a' && ch <= 'f')
					h = ch - 'a' + 10;
				else if (ch >= 'A' && ch <= 'F')
					h = ch - 'A' + 10;
				else {
					free(out);
					return sg_toml_fail(p, -EBADMSG, "bad \\%c escape", c);
				}
				cp = cp << 4 | (uint32_t)h;
				p->pos++;
			}
			if (put_utf8(out, &o, cp) < 0) {
				free(out);
				return sg_toml_fail(p, -EBADMSG, "bad unicode escape");
			}
			break;
		}
		default:
			free(out);
			return sg_toml_fail(p, -EBADMSG, "unknown escape \\%c", isprint(c) ? c : '?');
		}
	}
	out[o] = '\0';
	*ret = out;
	return 0;
}

static bool is_bare(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static int parse_key(struct sg_toml *p, char **ret)
{
	int c = peek(p);

	if (c == '"' || c == '\'')
		return parse_string(p, ret);
	size_t s = p->pos;
	while (p->pos < p->len && is_bare((unsigned char)p->t[p->pos]))
		p->pos++;
	if (p->pos == s) {
		if (c < 0)
			return sg_toml_fail(p, -EBADMSG, "expected a key");
		return sg_toml_fail(p, -EBADMSG, "expected a key, found '%c'", c);
	}
	*ret = strndup(p->t + s, p->pos - s);
	return *ret ? 0 : sg_toml_fail(p, -ENOMEM, "out of memory");
}

/* A decimal integer: [+-]digits with single underscores between digits, no leading zeros
 * (TOML's rule); floats, hex and dates are refused. */
static int parse_integer(struct sg_toml *p, int64_t *ret)
{
	bool neg = false, digit = false;
	uint64_t v = 0;
	size_t start = p->pos;

	if (peek(p) == '+' || peek(p) == '-')
		neg = p->t[p->pos++] == '-';
	for (;;) {
		int c = peek(p);
		if (c >= '0' && c <= '9') {
			if (digit && v == 0 && p->t[p->pos - 1] == '0')
				return sg_toml_fail(p, -EBADMSG, "leading zero in a number");
			if (v > (UINT64_MAX - (uint64_t)(c - '0')) / 10 || v * 10 + (uint64_t)(c - '0') >
			    (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
				return sg_toml_fail(p, -E2BIG, "number out of range");
			v = v * 10 + (uint64_t)(c - '0');
			digit = true;
			p->pos++;
		} else if (c == '_' && digit && p->pos + 1 < p->len && p->t[p->pos + 1] >= '0' &&
			   p->t[p->pos + 1] <= '9') {
			p->pos++;
		} else {
			break;
		}
	}
	int c = peek(p);
	if (!digit)
		return sg_toml_fail(p, -EBADMSG, "expected a number");
	if (c == '.' || c == 'e' || c == 'E' || c == ':' || c == '-' || c == 'x' || c == 'o' ||
	    c == 'b' || c == 'T' || c == 'Z' || is_bare(c))
		return sg_toml_fail(p, -EBADMSG, "only decimal integers are supported (\"%.*s...\")",
				    (int)(p->pos - start + 1 < 40 ? p->pos - start + 1 : 40), p->t + start);
	*ret = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

static int parse_value(struct sg_toml *p, struct sg_toml_value *v, unsigned depth)
{
	int c = peek(p);
	int r;

	*v = (struct sg_toml_value){ 0 };
	if (c == '"' || c == '\'') {
		v->type = SG_TOML_STRING;
		return parse_string(p, &v->s);
	}
	if (p->len - p->pos >= 4 && memcmp(p->t + p->pos, "true", 4) == 0 &&
	    !is_bare(p->pos + 4 < p->len ? p->t[p->pos + 4] : ' ')) {
		p->pos += 4;
		v->type = SG_TOML_BOOL;
		v->b = true;
		return 0;
	}
	if (p->len - p->pos >= 5 && memcmp(p->t + p->pos, "false", 5) == 0 &&
	    !is_bare(p->pos + 5 < p->len ? p->t[p->pos + 5] : ' ')) {
		p->pos += 5;
		v->type = SG_TOML_BOOL;
		return 0;
	}
	if (c == '[') {
		if (depth >= 2)
			return sg_toml_fail(p, -EBADMSG, "arrays nested too deeply");
		v->type = SG_TOML_ARRAY;
		v->items = calloc(p->o.max_array, sizeof(*v->items));
		if (!v->items)
			return sg_toml_fail(p, -ENOMEM, "out of memory");
		p->pos++;
		for (;;) {
			skip_blank(p);
			if (peek(p) == ']') {
				p->pos++;
				return 0;
			}
			if (peek(p) < 0)
				return sg_toml_fail(p, -EBADMSG, "unterminated array");
			if (v->n >= p->o.max_array)
				return sg_toml_fail(p, -E2BIG, "more than %zu array items", p->o.max_array);
			r = parse_value(p, &v->items[v->n], depth + 1);
			v->n++;   /* counted even on failure so that val_done frees it */
			if (r < 0)
				return r;
			skip_blank(p);
			if (peek(p) == ',') {
				p->pos++;
				continue;
			}
			if (peek(p) == ']') {
				p->pos++;
				return 0;
			}
			if (peek(p) < 0)
				return sg_toml_fail(p, -EBADMSG, "unterminated array");
			return sg_toml_fail(p, -EBADMSG, "expected ',' or ']' in array");
		}
	}
	if (c == '{')
		return sg_toml_fail(p, -EBADMSG, "inline tables are not supported");
	if (c < 0 || c == '\n' || c == '\r' || c == '#')
		return sg_toml_fail(p, -EBADMSG, "missing value");
	if ((c >= '0' && c <= '9') || c == '+' || c == '-') {
		if (!p->o.integers)
			return sg_toml_fail(p, -EBADMSG, "numbers and dates are not supported here");
		v->type = SG_TOML_INT;
		return parse_integer(p, &v->i);
	}
	return sg_toml_fail(p, -EBADMSG, "unsupported value");
}

/* ---- the document ---- */

/* [a."b".c] or [[a.b]]: the parts into path (malloc'd), their count into *n. */
static int table_header(struct sg_toml *p, char **path, size_t *n, bool *array)
{
	p->pos++;
	*array = peek(p) == '[';
	if (*array) {
		if (!p->o.array_tables)
			return sg_toml_fail(p, -EBADMSG, "array tables [[...]] are not supported");
		p->pos++;
	}
	for (;;) {
		skip_ws(p);
		if (*n >= SG_TOML_PATH_MAX)
			return sg_toml_fail(p, -EBADMSG, "table name has too many parts");
		if (parse_key(p, &path[*n]) < 0)
			return p->rc;
		(*n)++;
		skip_ws(p);
		if (peek(p) == '.') {
			p->pos++;
			continue;
		}
		if (peek(p) == ']') {
			p->pos++;
			if (*array && peek(p) != ']')
				return sg_toml_fail(p, -EBADMSG, "expected ']]' after an array table name");
			if (*array)
				p->pos++;
			return 0;
		}
		return sg_toml_fail(p, -EBADMSG, "expected '.' or ']' in table name");
	}
}

int sg_toml_parse(const char *text, size_t len, const struct sg_toml_options *opts,
		  const struct sg_toml_handler *h, struct sg_error *err)
{
	struct sg_toml p = { .t = text, .len = len, .line = 1, .err = err };
	char *path[SG_TOML_PATH_MAX] = { 0 };
	size_t npath = 0;
	char *key = NULL;
	struct sg_toml_value v = { 0 };

	if (opts)
		p.o = *opts;
	if (!p.o.max_len)
		p.o.max_len = 64 * 1024;
	if (!p.o.max_string)
		p.o.max_string = 4096;
	if (!p.o.max_array)
		p.o.max_array = 32;
	if (len > p.o.max_len)
		return sg_toml_fail(&p, -E2BIG, "file larger than %zu bytes", p.o.max_len);
	if (memchr(text, '\0', len))
		return sg_toml_fail(&p, -EBADMSG, "NUL byte in file");

	while (p.pos < p.len) {
		skip_ws(&p);
		skip_comment(&p);
		if (p.pos >= p.len)
			break;
		if (newline(&p))
			continue;
		if (peek(&p) == '[') {
			bool array;
			for (size_t i = 0; i < npath; i++)
				free(path[i]);
			npath = 0;
			if (table_header(&p, path, &npath, &array) < 0)
				goto fail;
			unsigned hdr_line = p.line;
			if (end_of_line(&p) < 0)
				goto fail;
			/* Errors about the table point at its header line. */
			unsigned next_line = p.line;
			p.line = hdr_line;
			if (h->table(h->userdata, &p, path, npath, array) < 0)
				goto fail;
			p.line = next_line;
			continue;
		}
		/* key = value */
		if (parse_key(&p, &key) < 0)
			goto fail;
		skip_ws(&p);
		if (peek(&p) == '.') {
			sg_toml_fail(&p, -EBADMSG, "dotted keys are not supported (use a [table])");
			goto fail;
		}
		if (peek(&p) != '=') {
			sg_toml_fail(&p, -EBADMSG, "expected '=' after \"%s\"", key);
			goto fail;
		}
		p.pos++;
		skip_ws(&p);
		unsigned start_line = p.line;
		if (parse_value(&p, &v, 0) < 0 || end_of_line(&p) < 0) {
			/* "port: unsupported value" says which setting to fix. */
			sg_error_prefix(err, "%s", key);
			goto fail;
		}
		/* Errors about the assignment point at its first line. */
		unsigned end_line = p.line;
		p.line = start_line;
		int r = h->keyval(h->userdata, &p, key, &v);
		p.line = end_line;
		if (r < 0)
			goto fail;
		sg_toml_value_done(&v);
		free(key);
		key = NULL;
	}
	for (size_t i = 0; i < npath; i++)
		free(path[i]);
	return 0;
fail:
	for (size_t i = 0; i < npath; i++)
		free(path[i]);
	free(key);
	sg_toml_value_done(&v);
	return p.rc ? p.rc : -EBADMSG;
}

unsigned sg_toml_line(const struct sg_toml *t)
{
	return t->line;
}
