#include "daemon/core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void set_v(struct sg_error *err, int code, const char *fmt, va_list ap)
{
	err->code = code;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int sg_error_set(struct sg_error *err, int ret, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return ret;
	va_start(ap, fmt);
	set_v(err, 0, fmt, ap);
	va_end(ap);
	return ret;
}

int sg_error_setc(struct sg_error *err, int ret, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return ret;
	va_start(ap, fmt);
	set_v(err, code, fmt, ap);
	va_end(ap);
	return ret;
}

void sg_error_prefix(struct sg_error *err, const char *fmt, ...)
{
	char context[SG_ERROR_MSG_MAX], old[SG_ERROR_MSG_MAX];
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(context, sizeof(context), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Context first; what does not fit is cut from the end of the old message. */
	size_t n = strlen(context);
	if (n > sizeof(err->msg) - 1)
		n = sizeof(err->msg) - 1;
	memcpy(err->msg, context, n);
	err->msg[n] = '\0';
	if (old[0] && n + 2 < sizeof(err->msg)) {
		memcpy(err->msg + n, ": ", 3);
		n += 2;
		size_t m = strnlen(old, sizeof(err->msg) - 1 - n);
		memcpy(err->msg + n, old, m);
		err->msg[n + m] = '\0';
	}
}

void sg_error_clear(struct sg_error *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}
