/* What every part of the converter shares: its name, its one way of reporting a problem (a
 * line "stargzify: ..." on stderr), and a blocking write that finishes what it starts.
 *
 * stargzify is a command-line tool: its modules report on stderr as they go, in the order
 * things happen (a warning mid-conversion, then the result), and return a negative errno. */
#ifndef STARGZIFY_UTIL_H
#define STARGZIFY_UTIL_H

#include <stddef.h>

#define SZ_PROG "stargzify"

/* Prints "stargzify: <message>\n" on stderr. */
void sz_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes all n bytes (retrying short writes and EINTR).  0 or -errno. */
int sz_write_all(int fd, const void *buf, size_t n);

#endif
