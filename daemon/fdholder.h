/* The fd holder: a tiny process that keeps the daemon's /dev/fuse session descriptors open
 * while no daemon runs (a crash, a restart, an upgrade), so that the kernel keeps every
 * lazily mounted layer alive and queues its requests until a new daemon takes them over.
 *
 * Used when no service manager keeps them (without systemd: `make run`, the tests); under
 * systemd the service's file descriptor store does the same job (daemon/fdstore.h).  It
 * does no FUSE work: it holds descriptors by name, hands copies of all of them back on
 * request, and drops one when asked or when its connection dies (the mount was unmounted:
 * /dev/fuse then polls POLLERR).  It exits when the last descriptor it held is gone, or
 * when nothing was handed to it within a minute of its start.
 *
 * `stargzd fdholder --root ROOT` runs it (the daemon starts it, detached, on its first
 * mount).  It serves ROOT/fdholder.sock (SOCK_SEQPACKET, mode 0600) and holds
 * ROOT/fdholder.lock (flock, with its pid) for its whole life: one holder per root.
 *
 * Protocol, one datagram each way per message:
 *   "PUT NAME" + one descriptor (SCM_RIGHTS)  -> "OK" (a descriptor of that name is replaced)
 *   "DEL NAME"                                -> "OK" (also when it did not hold NAME)
 *   "GET"                                     -> "FD NAME" + descriptor, ..., then "END"
 * Anything else -> "ERR reason".  Names: 1-200 bytes, no NUL, no whitespace. */
#ifndef STARGZD_FDHOLDER_H
#define STARGZD_FDHOLDER_H

#include <stddef.h>

#define SG_FDHOLDER_SOCK "fdholder.sock"
#define SG_FDHOLDER_LOCK "fdholder.lock"
#define SG_FDHOLDER_NAME_MAX 200
#define SG_FDHOLDER_MSG_MAX 256

struct sockaddr_un;

/* One message of text with at most one descriptor (SCM_RIGHTS), to `to` (NULL: the
 * connected peer); both sides of the holder protocol and systemd's notify socket use it.
 * 0 or -errno. */
int sg_fdmsg_send(int sock, const struct sockaddr_un *to, unsigned tolen, const char *text,
		  int fd);
/* Receives one message into buf (NUL-terminated) and its descriptor (-1 when none; extra
 * ones are closed).  0, -ECONNRESET at end of stream, or -errno. */
int sg_fdmsg_recv(int sock, char *buf, size_t cap, int *ret_fd);

/* `stargzd fdholder ARGS` (argv[0] is "fdholder"); returns the exit code. */
int sg_fdholder_main(int argc, char **argv);

#endif
