/* Error messages: one convention for the whole code base.
 *
 * Errors are negative errno values (the result).  A function that can also say *why* takes
 * `struct sg_error *err` as its last argument (before a continuation's op and cb, see
 * daemon/core/loop.h); NULL means the caller wants no message.  On failure it returns the
 * negative errno and fills err->msg with one line, lower case, no trailing period, that
 * names what failed and the cause ("blob sha256:ab…: HTTP 404 from 127.0.0.1:5000").  A module
 * with finer causes than errno puts its own code in err->code (an enum of that module; the
 * line number for a parser); 0 otherwise.  On success err is left alone.
 *
 * A caller adds its context in front: sg_error_prefix(err, "layer %s", digest) turns the
 * message above into "layer sha256:cd…: blob sha256:ab…: HTTP 404 …".  For an asynchronous
 * call err belongs to the caller and stays valid until the callback, like the op.
 *
 * Nothing here logs: the daemon decides what reaches the log. */
#ifndef STARGZD_CORE_ERROR_H
#define STARGZD_CORE_ERROR_H

#include <stddef.h>

#define SG_ERROR_MSG_MAX 512

struct sg_error {
	int code;                    /* the module's own cause, 0 if none */
	char msg[SG_ERROR_MSG_MAX];  /* "" when no message was set */
};

/* Sets the message (code 0) and returns ret, so that `return sg_error_set(err, -EIO, …);`
 * reads as one step.  err may be NULL. */
int sg_error_set(struct sg_error *err, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The same with a module code. */
int sg_error_setc(struct sg_error *err, int ret, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Puts "<context>: " in front of the message (code kept).  err may be NULL. */
void sg_error_prefix(struct sg_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Clears code and message. */
void sg_error_clear(struct sg_error *err);

#endif
