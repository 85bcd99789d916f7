/* A bounded front-end to yajl's tree parser, shared by the net/ parsers (token responses,
 * config.json, manifests).
 *
 * yajl_tree_parse wants a NUL-terminated copy, and yajl_tree_free recurses once per nesting
 * level, so a hostile document of a million '[' would overflow the stack when freed.  This
 * wrapper bounds the size, scans the nesting depth before parsing, and rejects embedded NULs.
 */
#ifndef STARGZD_NET_JSON_H
#define STARGZD_NET_JSON_H

#include <stddef.h>
#include <yajl/yajl_tree.h>

#include "daemon/core/error.h"

/* Deeper than any manifest, index or config ever gets. */
#define SG_JSON_DEPTH_MAX 32

/* Returns 0 with *ret (free with yajl_tree_free), -E2BIG if len > max_len or too deep,
 * -EBADMSG if not JSON, -ENOMEM.  For -E2BIG and -EBADMSG err (may be NULL) says why;
 * -ENOMEM comes without a message. */
int sg_json_parse(const char *buf, size_t len, size_t max_len, yajl_val *ret,
		  struct sg_error *err);

/* The member `key` of an object, or NULL.  Does not descend. */
yajl_val sg_json_member(yajl_val obj, const char *key);
/* The string member `key`, or NULL if absent or not a string. */
const char *sg_json_string(yajl_val obj, const char *key);

#endif
