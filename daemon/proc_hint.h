/* What a process reading from a lazy layer will read next, from its command line: the
 * headers a C or C++ compiler's sources include.  A compiler reads them one after the other,
 * each a miss a round trip long; its command line names the sources a second or more before
 * it gets to their first #include (it pages its own 28 MB in first).  (Python programs'
 * imports, from a -c command or a script, were tried too and dropped: measured no faster on
 * the default link and slower on the far one.)
 *
 * The daemon learns a reader's pid from each FUSE read (fs/layer.h, on_reader).  It reads
 * /proc/PID/cmdline and the name of /proc/PID/exe on the loop (procfs, no FUSE); a source is
 * read as the process sees it (openat2 with RESOLVE_IN_ROOT under /proc/PID/root,
 * or its cwd) on a worker thread, never the loop's: the file may lie on one of our own lazy
 * layers, whose FUSE requests the loop serves.  At most SG_PROC_FILE_MAX bytes of at most
 * SG_PROC_FILES_MAX files, regular files only.  Their text is only scanned for names; it is
 * not kept, logged or served.  Everything named is a hint: paths are looked up in the
 * image's layers (their TOCs), fetched ahead and verified like any other speculation. */
#ifndef STARGZD_DAEMON_PROC_HINT_H
#define STARGZD_DAEMON_PROC_HINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/loop.h"

#define SG_PROC_FILES_MAX 4
#define SG_PROC_FILE_MAX ((size_t)256 << 10)
#define SG_PROC_CMDLINE_MAX ((size_t)16 << 10)

enum sg_proc_kind { SG_PROC_NONE, SG_PROC_CC };

/* A command line, interpreted (pointers into the caller's cmdline buffer). */
struct sg_proc_cmd {
	enum sg_proc_kind kind;
	const char *files[SG_PROC_FILES_MAX];   /* a compiler's sources */
	unsigned n_files;
};

/* Interprets argv (cmdline[0..len): NUL-separated, as /proc/PID/cmdline gives it; the last
 * string NUL-terminated) run by executable `exe` (the name of /proc/PID/exe:
 * x86_64-linux-gnu-gcc-12, cc1, clang...).  Pure. */
void sg_proc_cmd_parse(const char *cmdline, size_t len, const char *exe, struct sg_proc_cmd *cmd);

/* The paths (from the root, no leading '/') an image's layers may have that the process reads
 * next, from the text of one of its sources (src[0..len)): each header it includes, in
 * /usr/local/include, the multiarch directories and /usr/include (a layer's speculation
 * follows each one's own includes as it arrives, with GCC's own directories).  Pure. */
void sg_proc_hint_paths(const struct sg_proc_cmd *cmd, const uint8_t *src, size_t len,
			void (*cb)(void *ctx, const char *path), void *ctx);

/* At most this many paths are asked for per command line. */
#define SG_PROC_PATHS_MAX 1024

/* The owner's: ask the layers of images refs[0..n_refs) for paths[0..n_paths) (fetch them
 * ahead), all at once. */
typedef void (*sg_proc_hint_cb)(void *userdata, const char *const *refs, size_t n_refs,
				const char *const *paths, size_t n_paths);

struct sg_proc_hints;

int sg_proc_hints_new(struct sg_loop *loop, sg_proc_hint_cb cb, void *userdata,
		      struct sg_proc_hints **ret);
/* File reads still on their threads end without calling cb; the last one frees what is
 * left. */
void sg_proc_hints_free(struct sg_proc_hints *h);
/* Would a read by `pid` now be looked at (not the pid looked at less than 20 ms ago)?  For
 * the caller to skip gathering refs for sg_proc_hints_reader on every read of a `tar`. */
bool sg_proc_hints_due(const struct sg_proc_hints *h, uint32_t pid);
/* Process `pid` read the start of a file of a layer of images refs[0..n_refs) (at most 4
 * are kept): if its command line is one it has not seen for that pid (an exec changes it)
 * and names sources, what they include is asked for once a worker has read them. */
void sg_proc_hints_reader(struct sg_proc_hints *h, uint32_t pid, const char *const *refs,
			  size_t n_refs);

#endif
