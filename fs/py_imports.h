/* The modules a Python source imports, read from its text: a pure function over untrusted
 * bytes (a script or a `python -c` command named on a command line), for speculation
 * (daemon/proc_hint.h).  No parsing beyond statements: `import a.b [as c], d` and
 * `from a.b import c, d` at the start of a line or after a ';', indented ones too (a lazy
 * import is reported like any other); relative imports (`from . import x`) are skipped. */
#ifndef STARGZD_FS_PY_IMPORTS_H
#define STARGZD_FS_PY_IMPORTS_H

#include <stddef.h>
#include <stdint.h>

/* At most this many names are reported per source. */
#define SG_PY_IMPORTS_MAX 128
/* A longer dotted name is skipped. */
#define SG_PY_MODULE_MAX 255

/* Calls cb(ctx, name, len) for each module a statement imports, in text order: a dotted name
 * ("email.mime.multipart"), NUL-terminated at len, in a buffer of the caller's stack valid
 * during the call.  For `from a import b, c` it reports "a", then "a.b" and "a.c" (each may
 * be a submodule or only an attribute: the caller looks).  A statement cut off at len is
 * still read up to there.  Returns how many names were reported. */
unsigned sg_py_imports(const uint8_t *buf, size_t len,
		       void (*cb)(void *ctx, const char *name, size_t len), void *ctx);

#endif
