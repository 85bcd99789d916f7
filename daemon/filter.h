/* containerd's filter syntax, as used by the snapshot List RPC.
 *
 *   filter   := selector ( "," selector )*          all selectors must match
 *   selector := fieldpath [ op value ]              no op: the field must be present
 *   fieldpath:= field ( "." field )*                field: [A-Za-z0-9_]+ or a quoted string
 *   op       := "==" | "!=" | "~="                  ~= is an (unanchored) regular expression
 *   value    := quoted string | run of chars up to "," (quotes: "..." '...' /.../, \ escapes)
 *
 * Several filters (the request's repeated field) match when any one matches.  Fields of a
 * snapshot: name, parent, kind (active|view|committed), labels.KEY. */
#ifndef STARGZD_FILTER_H
#define STARGZD_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/core/error.h"

struct sg_filter;

/* Field lookup for the object being matched: sets *value and returns true when the field
 * (path[0..n-1]) exists. */
typedef bool (*sg_filter_field_fn)(const char *const *path, size_t n, const char **value,
				   void *userdata);

/* Parses n filter strings (OR-ed).  n == 0 (or all empty) matches everything.
 * -EINVAL with a message in err on a syntax error. */
int sg_filter_parse(const char *const *filters, size_t n, struct sg_filter **ret,
		    struct sg_error *err);
void sg_filter_free(struct sg_filter *f);
bool sg_filter_match(const struct sg_filter *f, sg_filter_field_fn field, void *userdata);

#endif
