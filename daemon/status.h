/* `stargzd status [--json]`: what the running daemon is doing, asked over its control
 * socket, ROOT/stargzd-control.sock (mode 0600 in the 0700 root: root only).
 *
 * The daemon answers GET /status (text) and GET /status?json on that socket
 * (daemon/httpd.h) with sg_status_write: the version, pid, uptime and root; the cache's use
 * and bound; each mounted layer with its image reference, mountpoint, bytes fetched of its
 * blob, chunks local, prefetch and background fetch state, passthrough and daemon opens;
 * and each registry host with its requests, retries, failures and last error (query strings
 * cut, so that no presigned URL reaches the output).  The command prints the answer. */
#ifndef STARGZD_STATUS_H
#define STARGZD_STATUS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct sg_remote;
struct sg_registry;

struct sg_status_source {
	const char *root;
	uint64_t started_ns;          /* sg_now_ns() at start */
	struct sg_remote *remote;     /* NULL: lazy pulling off */
	const struct sg_registry *registry;
};

/* 0, or -ENOMEM when the JSON could not be built. */
int sg_status_write(FILE *out, bool json, const struct sg_status_source *src);

/* The command: argv[0] is "status".  Returns the process exit code. */
int sg_status_command(int argc, char **argv);

#endif
