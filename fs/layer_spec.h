/* Speculation by locality, a part of the layer object (fs/layer_int.h).
 *
 * A start-up reads file after file, each read waiting a round trip for its miss: the loader
 * opens a program's libraries, an interpreter imports a package's modules.  Files read
 * together sit together: in one directory, and one after the other in the blob (a tar is
 * written directory by directory).  So on an on-demand miss in file F, the files after F in
 * its directory, then those before it (a tar lists a directory in readdir order), then the
 * files after F in the blob are fetched too (kind spec): each file's first chunk and the
 * next ones within its first MiB of compressed bytes, for at most `budget` bytes per miss
 * (a chunk that does not fit is left out).
 *
 * The budget adapts to what pays: each speculated byte a reader then reads adds a byte to
 * it, each miss in a new file takes an eighth off it (so it grows while more than about an
 * eighth of the bytes get read, and shrinks otherwise), between 256 KiB and
 * spec_budget_max (16 MiB by default); it starts at 1 MiB.  Under a quarter of the
 * neighbours' bytes read, a miss takes only its directory; under a sixteenth, nothing,
 * unless one of the last four misses in new files fell in the same directory: then its
 * directory, whatever the rate (misses close together are fresher evidence).  A miss in an
 * executable file (any x bit) takes no neighbours: a program's are other programs, rarely
 * run with it (what it needs comes through sg_layer_spec_contents).
 *
 * Speculative batches never hold up an on-demand read by more than about one chunk's
 * transfer: they start only while the speculative bytes in flight are under
 * sg_layer_ahead_room (2 MiB, in 3 requests at most, so that the registry's connections are
 * not all taken), at most 512 KiB each, and what waits for room is queued here, never in
 * front of an on-demand fetch (those go out at once).  What was taken already (the
 * miss's own read-ahead and window, earlier speculation, the disk cache) is skipped. */
#ifndef STARGZD_FS_LAYER_SPEC_H
#define STARGZD_FS_LAYER_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_layer;
struct sg_range_source;

#define SG_SPEC_BUDGET_START (1u << 20)
#define SG_SPEC_BUDGET_MIN (256u << 10)
#define SG_SPEC_BUDGET_MAX (16u << 20)

/* At sg_layer_new: the starting budget. */
void sg_layer_spec_init(struct sg_layer *l);
/* At sg_layer_start: what every container start reads first, if this layer has it (a base
 * layer: the ELF interpreter, /etc/ld.so.cache, libc.so.6; unless the layer replays a
 * profile, /etc/passwd and /etc/group; and unless it replays a profile or prefetches an
 * optimized image's prioritized files, /bin/sh, the C.UTF-8 LC_CTYPE, gconv-modules.cache,
 * /etc/localtime), fetched ahead as precise picks before containerd starts the container. */
void sg_layer_spec_start(struct sg_layer *l);
/* An on-demand fetch of `chunk` (its file's first chunk read, or a jump in it) just went out
 * to src: queue the neighbours and start what the cap allows.  The first such miss in a module of
 * <prefix>/lib/python3.N/ (N >= 11) also picks CPython's core modules (what re,
 * collections, enum, functools and contextlib import) and then the library's other
 * top-level modules, within 4 MiB, as precise picks. */
void sg_layer_spec_miss(struct sg_layer *l, struct sg_range_source *src, uint32_t chunk);
/* Starts queued speculation while there is room: after a miss and after each batch. */
void sg_layer_spec_continue(struct sg_layer *l);
/* Speculated bytes of `chunk` were read: if it was a neighbour of a miss, the budget grows
 * by as much and the neighbours' hit rate counts them. */
void sg_layer_spec_paid(struct sg_layer *l, uint32_t chunk, uint64_t bytes);
/* The verified first chunk `chunk` of a file in use (data[0..len)): it arrived for a
 * reader, or a reader asked for it after it was fetched ahead, or it arrived followed (see
 * sg_layer_spec_follow_arrived).  What its contents say comes next is picked, precise:
 * - An ELF file: the chunk where its data segment ends (the kernel touches it as it maps the
 *   program), then the first chunks of the libraries it needs (DT_NEEDED, fs/elf_needed.h)
 *   that are in this layer, followed (their own libraries come as they arrive), within the
 *   budget, and behind them the file's own other chunks if it is at most 8 MiB (the loader
 *   relocates its data at its end at once), on an allowance of their own, but for those a
 *   replayed profile names or the prefetch brings; a larger program, up to 64 MiB, streams
 *   its other chunks instead, paced, one request after the other (sg_layer_prefetch_file),
 *   unless the layer replays a profile or prefetches it.  Libraries are looked up by name in
 *   usr/lib/x86_64-linux-gnu, lib/x86_64-linux-gnu, usr/lib64, lib64, usr/lib and lib
 *   (symlinks in the same directory followed); those another layer has are asked of the
 *   owner.  Then what the runtime reads next: python3.N's (N >= 11) start files; a GCC
 *   driver's compiler proper, as a program about to run; the compiler proper's assembler,
 *   collect2 and linker, the headers every compile against glibc reads and the link's
 *   inputs (Debian's layout, see toolchain_start), each followed.
 * - A header (under a directory named include; fs/c_includes.h): the headers it includes,
 *   looked up as GCC would (its own directory for "name"; GCC's, /usr/local/include, the
 *   multiarch directory and /usr/include for <name>, with the GCC seen in use here), each
 *   followed, at most 8 MiB of them per layer.  Those already here are followed at once.
 *   Nothing for a layer replaying a profile.
 * Only files in use or followed: speculated programs would speculate their libraries in
 * turn, and measured on the base image's `true`, /usr/bin's neighbours brought 8 MB of
 * libraries nobody read.  Started by the next sg_layer_spec_continue. */
void sg_layer_spec_contents(struct sg_layer *l, uint32_t chunk, const uint8_t *data, size_t len);
/* Chunk `chunk` was just asked of src, for a reader (in_use) or followed.  When it is the
 * first chunk of a program or a library (an executable file, or a name with ".so") and large
 * (256 KiB compressed or more), its first 64 KiB are read too, in a request of their own, and
 * inflated as far as they go: an ELF file's interpreter and libraries are picked from them as
 * sg_layer_spec_contents would when the chunk arrives, a transfer earlier.  python3.11's first
 * chunk is 1.9 MB: on the default link its libm.so.6 was asked for 100 ms after python3.11,
 * and a reader waited for it 100 ms more; on the far link 600 ms after.  The bytes are not
 * verified (the chunk's digest covers the whole chunk): they choose what is fetched, nothing
 * else.  Once per chunk; not for a chunk the layer's profile names (the profile brings what
 * it needs).  A close cancels the read and waits for it. */
void sg_layer_spec_peek(struct sg_layer *l, struct sg_range_source *src, uint32_t chunk,
			bool in_use);
/* At close: asks each peek in flight to end (each still completes, once; the close waits for
 * them). */
void sg_layer_spec_cancel_peeks(struct sg_layer *l);
/* A reader wants the first chunk of an executable file, and it is not here yet: the rest of
 * the file (up to the size an ELF file in use is fetched whole) is queued now rather than
 * when that chunk arrives and shows an ELF header.  The kernel touches the program's data
 * segment, in its last chunk, as soon as it maps it: python3.11's, asked for when its first
 * chunk arrived, was read 3 ms later and waited 150 ms. */
void sg_layer_spec_program(struct sg_layer *l, uint32_t chunk);
/* A reader's first use of `chunk`, fetched ahead: if a command line named its file
 * (sg_layer_speculate_paths), its neighbours are taken as a miss there would have taken
 * them (a header's directory), without the budget shrinking (it was no miss).  Clears the
 * mark. */
void sg_layer_spec_hint_used(struct sg_layer *l, uint32_t chunk);
/* For the fetch path: is `chunk` followed, the first chunk of a file about to be used whose
 * contents are read as it arrives, as for a file in use (a GCC driver's pass, an image's entry
 * program, a library such a program needs, a header about to be included)?  Clears the
 * mark. */
bool sg_layer_spec_follow_arrived(struct sg_layer *l, uint32_t chunk);

#endif
