/* Bounded yajl tree parsing.  See json.h. */
#include "net/json.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Depth of [ and { outside strings; NUL bytes anywhere are refused (yajl would stop at them). */
static int scan(const char *buf, size_t len)
{
	unsigned depth = 0;
	bool in_str = false;

	for (size_t i = 0; i < len; i++) {
		char c = buf[i];
		if (c == '\0')
			return -EBADMSG;
		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = false;
			continue;
		}
		if (c == '"') {
			in_str = true;
		} else if (c == '[' || c == '{') {
			if (++depth > SG_JSON_DEPTH_MAX)
				return -E2BIG;
		} else if ((c == ']' || c == '}') && depth > 0) {
			depth--;
		}
	}
	return 0;
}

int sg_json_parse(const char *buf, size_t len, size_t max_len, yajl_val *ret,
		  struct sg_error *err)
{
	char errbuf[128];
	char *copy;
	yajl_val v;
	int r;

	*ret = NULL;
	if (len > max_len)
		return sg_error_set(err, -E2BIG, "document too large");
	r = scan(buf, len);
	if (r < 0)
		return sg_error_set(err, r, "%s",
				    r == -E2BIG ? "document nested too deeply" : "NUL byte in document");
	copy = malloc(len + 1);
	if (!copy)
		return sg_error_set(err, -ENOMEM, "out of memory");
	memcpy(copy, buf, len);
	copy[len] = '\0';
	errbuf[0] = '\0';
	v = yajl_tree_parse(copy, errbuf, sizeof(errbuf));
	free(copy);
	if (!v) {
		/* yajl reports an allocation failure in words ("out of memory") on its message's
		 * first line; the lines after it echo the input, which may say anything (the
		 * manifest fuzzer's {"scmaVermemory[]} was once taken for an allocation failure,
		 * and with no message). */
		size_t first = strcspn(errbuf, "\n");
		if (memmem(errbuf, first, "memory", 6))
			return sg_error_set(err, -ENOMEM, "out of memory");
		return sg_error_set(err, -EBADMSG, "malformed JSON");
	}
	*ret = v;
	return 0;
}

yajl_val sg_json_member(yajl_val obj, const char *key)
{
	if (!YAJL_IS_OBJECT(obj))
		return NULL;
	for (size_t i = 0; i < obj->u.object.len; i++)
		if (strcmp(obj->u.object.keys[i], key) == 0)
			return obj->u.object.values[i];
	return NULL;
}

const char *sg_json_string(yajl_val obj, const char *key)
{
	yajl_val v = sg_json_member(obj, key);

	return YAJL_IS_STRING(v) ? v->u.string : NULL;
}
