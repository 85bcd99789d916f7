/* A strict reader of the TOML subset that configuration files here use: one lexer and
 * grammar for the daemon's config.toml (daemon/config.c) and containerd's hosts.toml
 * (net/hosts_toml.c), each of which gives the keys their meaning through two callbacks.
 *
 * Supported: comments, bare and quoted keys, basic and literal strings on one line (escapes
 * \b \t \n \f \r \" \\ \uXXXX \UXXXXXXXX), true/false, arrays (nested up to 2 deep,
 * multi-line, trailing comma), [table] headers of up to 8 dotted parts, and, when the
 * options allow them, decimal integers (sign, _ separators) and [[array tables]].  Refused
 * with a message and a line: multi-line strings, floats, dates, inline tables, dotted keys
 * on the left of '=', a NUL byte, anything longer than the limits.
 *
 * Errors: the reader and the callbacks report through sg_toml_fail, which keeps the first
 * error; err->code is then the 1-based line it is about: a table header's line for the
 * table callback, the first line of the value for the key callback. */
#ifndef STARGZD_CORE_TOML_H
#define STARGZD_CORE_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"

#define SG_TOML_PATH_MAX 8

enum sg_toml_type { SG_TOML_STRING, SG_TOML_BOOL, SG_TOML_INT, SG_TOML_ARRAY };

struct sg_toml_value {
	enum sg_toml_type type;
	bool b;
	int64_t i;
	char *s;                        /* SG_TOML_STRING; a callback may take it (set NULL) */
	struct sg_toml_value *items;    /* SG_TOML_ARRAY */
	size_t n;
};

struct sg_toml_options {
	size_t max_len;                 /* of the file; 0 = 64 KiB */
	size_t max_string;              /* bytes of one string; 0 = 4096 */
	size_t max_array;               /* items of one array; 0 = 32 */
	bool integers;                  /* else "numbers and dates are not supported here" */
	bool array_tables;              /* else "array tables [[...]] are not supported" */
};

struct sg_toml;

struct sg_toml_handler {
	/* A [path] or [[path]] header; path[i] are the parts, unquoted. */
	int (*table)(void *userdata, struct sg_toml *t, char *const *path, size_t n, bool array);
	/* key = value, in the table of the last header (top level before any). */
	int (*keyval)(void *userdata, struct sg_toml *t, const char *key, struct sg_toml_value *v);
	void *userdata;
};

/* Reads text (len bytes, not NUL-terminated) and calls the handler in file order.  Returns 0,
 * the first error a callback or the reader reported (-EBADMSG, -E2BIG, -ENOMEM, ...), with
 * err filled (may be NULL). */
int sg_toml_parse(const char *text, size_t len, const struct sg_toml_options *opts,
		  const struct sg_toml_handler *h, struct sg_error *err);

/* Reports an error at the current line (see above) and returns the error to return: the
 * first one reported, later ones are dropped.  The message is cut at 159 bytes.  t may be
 * NULL (code shared with defaults built without a document): then it just returns rc. */
int sg_toml_fail(struct sg_toml *t, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The line the current callback is about. */
unsigned sg_toml_line(const struct sg_toml *t);

void sg_toml_value_done(struct sg_toml_value *v);

#endif
