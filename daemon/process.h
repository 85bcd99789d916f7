/* What the daemon needs from the operating system before its loop starts: the root
 * directory with its lock, and the listening unix socket.  Each function fills `err`
 * (daemon/core/error.h) with a one-line explanation when it fails. */
#ifndef STARGZD_PROCESS_H
#define STARGZD_PROCESS_H

#include <stddef.h>
#include <sys/types.h>

#include "daemon/core/error.h"

/* Creates the root directory (and parents) if needed, takes an exclusive lock on
 * ROOT/stargzd.lock and returns its fd.  -EBUSY when another live stargzd holds the lock
 * (its pid is named in err), -EACCES/-EROFS/... when the root is not usable. */
int sg_root_lock(const char *root, int *ret_lockfd, struct sg_error *err);
/* Records pid in the lock file, for the message a second instance prints. */
int sg_root_lock_write_pid(int lockfd, pid_t pid);

/* Binds and listens on a unix socket at path, mode 0660.  A socket file left by a dead
 * daemon is replaced; one that a live process answers on fails with -EADDRINUSE. */
int sg_listen_unix(const char *path, int *ret_fd, struct sg_error *err);

/* mkdir -p with the given mode for the components it creates. */
int sg_mkdir_p(const char *path, mode_t mode);

#endif
