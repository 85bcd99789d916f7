/* The control socket's client side: one request to the running daemon's
 * ROOT/stargzd-control.sock (daemon/httpd.h serves it; root only, mode 0600), for the commands
 * that talk to it (`stargzd status`, `stargzd pull-ahead`).  Blocking, bounded: a daemon that
 * stops answering fails the request after 10 s instead of hanging the command. */
#ifndef STARGZD_CONTROL_H
#define STARGZD_CONTROL_H

#include <stddef.h>

#define SG_CONTROL_SOCKET_NAME "stargzd-control.sock"

/* GETs `target` ("/status?json") from the daemon on `root`.  0 with the 200 answer's body
 * in *ret_body (malloc'd, NUL-terminated, *ret_len bytes); or -errno with what went wrong in
 * err (the socket cannot be reached, no answer, an answer other than 200: -EPROTO). */
int sg_control_get(const char *root, const char *target, char **ret_body, size_t *ret_len,
		   char *err, size_t err_len);

#endif
