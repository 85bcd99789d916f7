#include "fs/layer_spec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/c_includes.h"
#include "fs/elf_needed.h"
#include "fs/gz.h"
#include "fs/layer_fetch.h"
#include "fs/layer_int.h"
#include "fs/layer_prefetch.h"
#include "fs/profile.h"

#define SPEC_FILE_MAX (1u << 20)   /* compressed bytes of one file taken at most */
/* l->spec_queued[chunk]: in spec_queue; fetched as a neighbour of a miss and not read yet. */
#define SPEC_QUEUED 1u
#define SPEC_NEIGHBOUR 2u
/* The first chunk of a file about to be used, whose contents name what comes next: a
 * program about to run (speculate_program), a library such a program needs, a header about
 * to be included.  When it arrives, what it names is picked as for a file in use
 * (sg_layer_spec_contents), so that a chain of dependencies costs a round trip per level
 * ahead of the reader instead of a miss per file. */
#define SPEC_FOLLOW 4u
/* A header whose includes were picked (spec_header): once is enough. */
#define SPEC_PARSED 8u
/* Named by a process's command line (sg_layer_speculate_paths): small files all over the
 * blob, which a precise batch gathers as spans of one request (gather_near). */
#define SPEC_GATHER 16u
/* A large program's or library's first chunk whose first bytes were read ahead of it
 * (sg_layer_spec_peek): once. */
#define SPEC_PEEKED 32u
/* ... and those bytes were an ELF file's, handled as its contents (spec_elf): when the chunk
 * arrives, only what needs all of its bytes is done again (the budgets are not spent twice). */
#define SPEC_PEEK_ELF 64u
#define SPEC_BATCH_MAX (512u << 10)
#define SPEC_BATCH_CHUNKS 256
/* Chunks looked at per miss at most: a directory of thousands of files already fetched
 * must not make each miss walk all of them. */
#define SPEC_SCAN_MAX 8192u
/* An ELF file in use is fetched whole up to this size (uncompressed): the loader maps all of
 * it and relocates its data segment, at its end, at once (python3.11, 6.7 MB: its second
 * chunk read 70 ms after its first).  A larger one is used in parts, or over seconds: gcc's
 * cc1 (28 MB, seven 2 MB members) fetched whole at its first read made unoptimized gcc
 * 5.3 s -> 5.5-6.1 s, its bytes 29 -> 30-41 MB. */
#define SPEC_ELF_WHOLE_MAX ((uint64_t)8 << 20)
/* A larger one, up to this size, is read through by the prefetch machinery instead
 * (sg_layer_prefetch_file): one request after the other as the link drains, behind what
 * the loader maps first, never more than the pacing allows ahead of an on-demand read.
 * gcc, unoptimized, default link, alternated runs: 4.36 -> 3.91 s (cc1's chunks queued
 * with the precise picks instead, at most one in flight: 4.05 s). */
#define SPEC_ELF_STREAM_MAX ((uint64_t)64 << 20)
/* Each miss in a new file takes budget / SPEC_SHRINK_DIV off: the budget grows while more
 * than about that share of the speculated bytes is read.  An eighth, measured on python3
 * importing 16 stdlib packages from a layer of /usr/lib/python3.11: a quarter left 17 of
 * the 178 files it read to wait on the network, an eighth 11, no shrinking 9, for about
 * the same bytes (the neighbourhoods in use get covered either way). */
#define SPEC_SHRINK_DIV 8
/* The hit rate of this layer's neighbour speculation (bytes of the neighbours of misses
 * read ÷ fetched; precise picks, nearly all read, would hide it) is judged once this much
 * was fetched: under a quarter, a miss halves the budget and takes only its directory, not
 * the files after it in the blob; under a sixteenth, no neighbours at all.  What an ELF
 * file in use needs (precise) is picked whatever the rate. */
#define SPEC_JUDGE_BYTES (1u << 20)
#define SPEC_DOUBTFUL_DIV 4
#define SPEC_FAILING_DIV 16
/* Less than this left of the budget: the pick is done. */
#define SPEC_BUDGET_LEFT_MIN (4u << 10)

static size_t budget_max(const struct sg_layer *l)
{
	return l->cfg.spec_budget_max ? l->cfg.spec_budget_max : SG_SPEC_BUDGET_MAX;
}

void sg_layer_spec_init(struct sg_layer *l)
{
	l->spec_budget = SG_SPEC_BUDGET_START;
	if (l->spec_budget > budget_max(l))
		l->spec_budget = budget_max(l);
	l->spec_last_file = UINT32_MAX;
	for (unsigned i = 0; i < SG_LAYER_SPEC_DIRS; i++)
		l->spec_dirs[i] = SG_TOC_NONE;
}

/* Did one of the last misses in new files fall in directory `dir`?  Remembers it either way.
 * Two misses in one directory are fresher evidence than the layer's hit rate: a compiler
 * that has loaded its programs opens header after header of a few directories, each a
 * round trip (gcc, unoptimized: 20 misses, 0.9 s), after the neighbours of its programs
 * went unread and the rate had stopped speculation. */
static bool dir_missed_lately(struct sg_layer *l, uint32_t dir)
{
	bool seen = false;

	for (unsigned i = 0; i < SG_LAYER_SPEC_DIRS; i++)
		seen |= l->spec_dirs[i] == dir;
	l->spec_dirs[l->spec_dirs_next] = dir;
	l->spec_dirs_next = (l->spec_dirs_next + 1) % SG_LAYER_SPEC_DIRS;
	return seen;
}

void sg_layer_spec_paid(struct sg_layer *l, uint32_t chunk, uint64_t bytes)
{
	size_t max = budget_max(l);

	if (!(l->spec_queued[chunk] & SPEC_NEIGHBOUR))
		return;   /* a precise pick: it says nothing of the neighbours */
	l->spec_queued[chunk] &= (uint8_t)~SPEC_NEIGHBOUR;
	l->spec_nb_used += bytes;
	l->spec_budget = bytes >= max - l->spec_budget ? max : l->spec_budget + (size_t)bytes;
}

/* What one miss selects: runs of chunks in the order they should go. */
struct pick {
	struct sg_layer *l;
	bool follow;   /* the files' first chunks picked are followed (SPEC_FOLLOW) */
	size_t budget, taken;
	unsigned scanned;
	unsigned n;
	struct { uint32_t first, end; } runs[SG_LAYER_SPEC_QUEUE];
};

static bool pick_full(const struct pick *p)
{
	return p->budget - p->taken < SPEC_BUDGET_LEFT_MIN || p->scanned >= SPEC_SCAN_MAX ||
	       p->n >= SG_LAYER_SPEC_QUEUE;
}

static void pick_chunk(struct pick *p, uint32_t c, uint64_t bytes)
{
	struct sg_layer *l = p->l;

	if (p->follow && sg_layer_chunk(l, c)->file_offset == 0 && !sg_memcache_get(l->mem, c) &&
	    !sg_diskcache_present(l->disk, c))
		l->spec_queued[c] |= SPEC_FOLLOW;   /* also when queued or on its way already */
	if ((l->spec_queued[c] & SPEC_QUEUED) || !sg_layer_fetch_needed(l, c))
		return;
	l->spec_queued[c] |= SPEC_QUEUED;
	p->taken += bytes;
	if (p->n > 0 && p->runs[p->n - 1].end == c) {
		p->runs[p->n - 1].end = c + 1;
		return;
	}
	p->runs[p->n].first = c;
	p->runs[p->n].end = c + 1;
	p->n++;
}

/* The chunks of regular file `id` (hardlinks resolved) that fit in the budget: its first
 * chunk, and the next ones within its first SPEC_FILE_MAX compressed bytes.  A chunk larger
 * than what is left of the budget is not taken (one member can be several MiB). */
static void pick_file(struct pick *p, uint32_t id)
{
	const struct sg_toc *toc = p->l->toc;
	const struct sg_toc_node *n = sg_toc_resolve(toc, sg_toc_node(toc, id));
	uint64_t file_bytes = 0;

	if (!n || n->type != SG_TOC_REG || n->nchunks == 0 || (n->flags & SG_TOC_F_SELF))
		return;
	for (uint32_t i = 0; i < n->nchunks && !pick_full(p); i++) {
		uint32_t c = n->first_chunk + i;
		const struct sg_toc_chunk *ch = sg_layer_chunk(p->l, c);
		uint64_t bytes = ch->next_offset - ch->offset;
		p->scanned++;
		if (bytes > p->budget - p->taken || (i > 0 && file_bytes + bytes > SPEC_FILE_MAX))
			return;
		file_bytes += bytes;
		pick_chunk(p, c, bytes);
	}
}

/* Forgets the queued runs from index `from` on. */
static void forget_runs(struct sg_layer *l, unsigned from)
{
	for (unsigned i = from; i < l->spec_n; i++)
		for (uint32_t c = l->spec_queue[i].first; c < l->spec_queue[i].end; c++)
			l->spec_queued[c] &= (uint8_t)~SPEC_QUEUED;
	if (l->spec_n > from)
		l->spec_n = from;
}

/* Puts the picked runs in the queue: precise ones (what an ELF file in use needs) after the
 * precise runs queued before them (the loader maps libraries in the order it is given
 * them), neighbours of a miss right behind every precise run, in front of the other
 * neighbours (the newest miss says most about what comes next, but a library the loader is
 * about to map is surer).  Runs pushed off the end are forgotten. */
static void queue_front(struct sg_layer *l, const struct pick *p, bool precise)
{
	unsigned at = l->spec_precise_n, keep = l->spec_n;

	if (keep > SG_LAYER_SPEC_QUEUE - p->n)
		keep = SG_LAYER_SPEC_QUEUE - p->n;
	forget_runs(l, keep);
	if (at > keep)
		at = keep;
	memmove(&l->spec_queue[at + p->n], &l->spec_queue[at],
		(keep - at) * sizeof(l->spec_queue[0]));
	memcpy(&l->spec_queue[at], p->runs, p->n * sizeof(l->spec_queue[0]));
	l->spec_n = keep + p->n;
	if (l->spec_precise_n > keep)
		l->spec_precise_n = keep;
	if (precise)
		l->spec_precise_n += p->n;
}

/* Where the loader looks for a library it has no path for (after /etc/ld.so.cache, which
 * on Debian-like images lists these same directories, /usr/local/lib for a program built
 * from source), in its order. */
static const char *const lib_dirs[] = {
	"usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib64", "lib64", "usr/lib", "lib",
	"usr/local/lib",
};

/* Symlinks followed while resolving one path, at most (the kernel allows 40; a loader's
 * path takes two or three: /lib64 -> usr/lib64, the library's own link). */
#define RESOLVE_HOPS 16
#define RESOLVE_PATH_MAX 1024

/* The regular file `path` names in this layer's tree (from its root), following symlinks
 * inside the layer: an absolute target starts again at the root, a relative one from the
 * link's directory, ".." goes up.  SG_TOC_NONE when a part of it is not in this layer (it
 * may be in another layer of the image: overlayfs merges them, a TOC knows only its own). */
static uint32_t resolve_path(const struct sg_toc *toc, const char *path)
{
	char bufs[2][RESOLVE_PATH_MAX];
	const char *p = path;
	uint32_t cur = SG_TOC_ROOT;
	unsigned hops = 0, which = 0;

	for (;;) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		const char *rest = p + len;
		if (len == 1 && p[0] == '.') {
			p = rest;
			continue;
		}
		if (len == 2 && p[0] == '.' && p[1] == '.') {
			cur = sg_toc_node(toc, cur)->parent;
			p = rest;
			continue;
		}
		uint32_t id = sg_toc_lookup(toc, cur, p, len);
		if (id == SG_TOC_NONE)
			return SG_TOC_NONE;
		const struct sg_toc_node *n = sg_toc_node(toc, id);
		if (n->type != SG_TOC_SYMLINK) {
			cur = id;
			p = rest;
			continue;
		}
		/* The link's target, then what was left after it. */
		const char *target = sg_toc_str(toc, n->link);
		char *next = bufs[which];
		which ^= 1;
		if (++hops > RESOLVE_HOPS || !*target ||
		    snprintf(next, RESOLVE_PATH_MAX, "%s%s", target, rest) >= RESOLVE_PATH_MAX)
			return SG_TOC_NONE;
		if (target[0] == '/')
			cur = SG_TOC_ROOT;
		p = next;
	}
	const struct sg_toc_node *f = sg_toc_resolve(toc, sg_toc_node(toc, cur));
	if (!f || f->type != SG_TOC_REG)
		return SG_TOC_NONE;
	return (uint32_t)(f - sg_toc_node(toc, 0));
}

/* The file the loader would map for library `name` (a plain file name): the first of the
 * library directories that has it in this layer; SG_TOC_NONE if none does. */
static uint32_t find_library(const struct sg_toc *toc, const char *name)
{
	char path[RESOLVE_PATH_MAX];

	for (size_t i = 0; i < sizeof(lib_dirs) / sizeof(lib_dirs[0]); i++) {
		if (snprintf(path, sizeof(path), "%s/%s", lib_dirs[i], name) >= (int)sizeof(path))
			return SG_TOC_NONE;
		uint32_t file = resolve_path(toc, path);
		if (file != SG_TOC_NONE)
			return file;
	}
	return SG_TOC_NONE;
}

/* A file in this layer for `path` (from the root if it has a '/', else a library name). */
static uint32_t find_needed(const struct sg_toc *toc, const char *path)
{
	return strchr(path, '/') ? resolve_path(toc, path) : find_library(toc, path);
}

/* Picks the first chunk of `file` if it is still needed and fits: the loader reads a
 * library's header, then maps it (a library is usually one chunk). */
static void pick_first_chunk(struct pick *p, uint32_t file)
{
	const struct sg_toc_node *n = sg_toc_node(p->l->toc, file);

	if (n->nchunks == 0 || (n->flags & SG_TOC_F_SELF))
		return;
	const struct sg_toc_chunk *ch = sg_layer_chunk(p->l, n->first_chunk);
	if (ch->next_offset - ch->offset <= p->budget - p->taken)
		pick_chunk(p, n->first_chunk, ch->next_offset - ch->offset);
}

/* What an ELF file in use needs: from this layer if it has it, else the owner is told (it
 * asks the image's other layers: a program in an upper layer, its libraries in the base). */
static void pick_needed(struct pick *p, const char *path)
{
	struct sg_layer *l = p->l;
	uint32_t file = find_needed(l->toc, path);

	if (file != SG_TOC_NONE)
		pick_first_chunk(p, file);
	else if (l->cfg.on_needed_elsewhere)
		l->cfg.on_needed_elsewhere(l->cfg.userdata, path);
}

static void pick_library(void *ctx, const char *name, size_t len)
{
	(void)len;   /* NUL-terminated at len (fs/elf_needed.h) */
	pick_needed(ctx, name);
}

/* Does the layer know what its workload reads: it replays, or has replayed, a startup profile
 * (the record of that start)?  Then what every start reads (the layer's start picks) and
 * what a command line names are not guessed.  Not only while the replay sends requests: once
 * it had sent its last one, python3.11's arrival took 1.1 MB of guesses that the recorded
 * start had never read. */
static bool profiled(const struct sg_layer *l)
{
	return l->replay != NULL;
}

/* Is chunk c in the profile the layer replays or replayed?  A file the recorded start read is
 * followed by what that start read next, which the profile brings: nothing is guessed from it
 * (what a runtime or a toolchain reads as it starts, neighbours, what a header includes).  A
 * file outside it (another workload on the same base layer: gcc with python's profile) is
 * handled as in a layer without a profile. */
static bool covered(const struct sg_layer *l, uint32_t c)
{
	return l->replay && sg_profile_has(l->replay, c);
}

/* Is chunk c on its way already, in the order the workload reads: named by the profile the
 * layer replays, or among the prioritized files an optimized layer prefetches? */
static bool coming_anyway(const struct sg_layer *l, uint32_t c)
{
	if (l->replaying && sg_profile_has(l->replay, c))
		return true;
	return sg_layer_chunk(l, c)->offset < l->prefetch_end;   /* 0 without a prefetch */
}

/* The chunks of ELF file `file` after its first, up to SPEC_ELF_WHOLE_MAX: their own
 * allowance, not the budget (what a file in use is about to read is not a guess), but for
 * those coming anyway. */
static void pick_rest_of_elf(struct pick *p, uint32_t file)
{
	const struct sg_toc_node *n = sg_toc_node(p->l->toc, file);

	if (n->type != SG_TOC_REG || n->size > SPEC_ELF_WHOLE_MAX || (n->flags & SG_TOC_F_SELF))
		return;
	for (uint32_t i = 1; i < n->nchunks && p->n < SG_LAYER_SPEC_QUEUE; i++) {
		uint32_t c = n->first_chunk + i;
		const struct sg_toc_chunk *ch = sg_layer_chunk(p->l, c);
		if (!coming_anyway(p->l, c))
			pick_chunk(p, c, ch->next_offset - ch->offset);
	}
}

/* The chunk of file `file` that holds byte `offset`, unless coming anyway. */
static void pick_chunk_at(struct pick *p, uint32_t file, uint64_t offset)
{
	const struct sg_toc_node *n = sg_toc_node(p->l->toc, file);

	if (n->type != SG_TOC_REG || offset >= n->size || (n->flags & SG_TOC_F_SELF))
		return;
	uint32_t i = sg_toc_chunk_at(p->l->toc, n, offset);
	if (i >= n->nchunks)
		return;
	uint32_t c = n->first_chunk + i;
	const struct sg_toc_chunk *ch = sg_layer_chunk(p->l, c);
	if (!coming_anyway(p->l, c))
		pick_chunk(p, c, ch->next_offset - ch->offset);
}

void sg_layer_spec_program(struct sg_layer *l, uint32_t chunk)
{
	uint32_t file = l->chunk_file[chunk];
	const struct sg_toc_node *n = sg_toc_node(l->toc, file);
	struct pick rest = { .l = l };

	if (!l->cfg.speculate || l->closing || chunk != n->first_chunk || n->nchunks < 2 ||
	    !(n->mode & 0111))
		return;
	pick_rest_of_elf(&rest, file);
	if (rest.n > 0) {
		queue_front(l, &rest, true);
		sg_layer_spec_continue(l);
	}
}

/* A program larger than SPEC_ELF_WHOLE_MAX: its other chunks stream (fs/layer_prefetch.h),
 * unless a replayed profile or an optimized image's prefetch brings them in their order. */
static void stream_large_elf(struct sg_layer *l, uint32_t file)
{
	const struct sg_toc_node *n = sg_toc_node(l->toc, file);

	if (n->type != SG_TOC_REG || n->size <= SPEC_ELF_WHOLE_MAX ||
	    n->size > SPEC_ELF_STREAM_MAX || n->nchunks < 2 || (n->flags & SG_TOC_F_SELF) ||
	    covered(l, n->first_chunk) || coming_anyway(l, n->first_chunk + n->nchunks - 1))
		return;
	sg_layer_prefetch_file(l, n->first_chunk + 1, n->first_chunk + n->nchunks);
}

enum spec_rate { SPEC_PAYS, SPEC_DOUBTFUL, SPEC_FAILING };

static enum spec_rate spec_rate(const struct sg_layer *l)
{
	uint64_t fetched = l->spec_nb_fetched, used = l->spec_nb_used;

	if (fetched < SPEC_JUDGE_BYTES)
		return SPEC_PAYS;
	if (used * SPEC_FAILING_DIV < fetched)
		return SPEC_FAILING;
	return used * SPEC_DOUBTFUL_DIV < fetched ? SPEC_DOUBTFUL : SPEC_PAYS;
}

/* The files after `file` in its directory (a package's modules, a library's neighbours),
 * then those before it (a tar lists a directory in readdir order, which has nothing to do
 * with the order of use), then, while speculation pays, those after it in the blob
 * (subdirectories, the next directory). */
static void pick_neighbours(struct pick *p, uint32_t file, enum spec_rate rate)
{
	const struct sg_toc *toc = p->l->toc;
	const struct sg_toc_node *f = sg_toc_node(toc, file);

	for (uint32_t s = f->next_sibling; s != SG_TOC_NONE && !pick_full(p);
	     s = sg_toc_node(toc, s)->next_sibling) {
		p->scanned++;
		pick_file(p, s);
	}
	for (uint32_t s = sg_toc_node(toc, f->parent)->first_child;
	     s != SG_TOC_NONE && s != file && !pick_full(p);
	     s = sg_toc_node(toc, s)->next_sibling) {
		p->scanned++;
		pick_file(p, s);
	}
	for (uint32_t c = f->first_chunk + f->nchunks;
	     rate == SPEC_PAYS && c < p->l->n_chunks && !pick_full(p);) {
		const struct sg_toc_node *g = sg_toc_node(toc, p->l->chunk_file[c]);
		pick_file(p, p->l->chunk_file[c]);
		p->scanned++;
		c = g->first_chunk + g->nchunks > c ? g->first_chunk + g->nchunks : c + 1;
	}
}

/* What an interpreter reads from its own library as it starts, for the programs whose
 * library lies beside their bin/ (<prefix>/bin/python3.N and <prefix>/lib/python3.N: Debian's
 * /usr, the python images' /usr/local).  CPython 3.11 and later freeze the modules its start
 * imports (abc, codecs, io, os, site...) but not the codecs package or sitecustomize: three
 * misses one after the other as python starts, 0.2-0.3 s of every unoptimized python run on
 * the default link.  Writes the ones this layer has to files[] (in this order; at most
 * RUNTIME_STARTUP_MAX) and returns how many: 0 for any other program. */
#define RUNTIME_STARTUP_MAX 4
static size_t runtime_startup_files(const struct sg_toc *toc, uint32_t program, uint32_t *files)
{
	static const char *const python_startup[RUNTIME_STARTUP_MAX] = {
		"encodings/__pycache__/__init__.cpython-3%u.pyc",
		"encodings/__pycache__/aliases.cpython-3%u.pyc",
		"encodings/__pycache__/utf_8.cpython-3%u.pyc",
		"__pycache__/sitecustomize.cpython-3%u.pyc",
	};
	char prefix[RESOLVE_PATH_MAX], name[64], path[RESOLVE_PATH_MAX + 128];
	unsigned minor;
	int end = 0;
	size_t n = 0;

	if (sg_toc_path(toc, program, prefix, sizeof(prefix)) < 0)
		return 0;
	char *base = strrchr(prefix, '/');
	if (!base || base - prefix < 4 || strncmp(base - 4, "/bin", 4) != 0)
		return 0;
	if (sscanf(base + 1, "python3.%2u%n", &minor, &end) != 1 || base[1 + end] != '\0' ||
	    minor < 11)
		return 0;
	base[-4] = '\0';   /* the prefix: path up to /bin */
	for (size_t i = 0; i < RUNTIME_STARTUP_MAX; i++) {
		snprintf(name, sizeof(name), python_startup[i], minor);
		int w = snprintf(path, sizeof(path), "/%s/lib/python3.%u/%s", prefix, minor, name);
		if (w < 0 || (size_t)w >= sizeof(path))
			break;
		uint32_t file = resolve_path(toc, path);
		if (file != SG_TOC_NONE)
			files[n++] = file;
	}
	return n;
}

/* The program at `path` (symlinks inside the layer followed) is about to run: its first chunk
 * goes to the front of the queue whatever its size (not the budget's: what runs next is no
 * guess about a neighbourhood; cc1's first chunk is 1.7 MB), then its other chunks if it is
 * at most 8 MiB, and when the first arrives, what it needs is picked as for a file in use
 * (sg_layer_spec_contents: its libraries, here or in the image's other layers).  Nothing for a
 * layer that replays a profile (it recorded the start) or brings the file anyway. */
static int speculate_program(struct sg_layer *l, const char *path)
{
	struct pick first = { .l = l, .follow = true }, rest = { .l = l };
	uint32_t file = resolve_path(l->toc, path);
	if (file == SG_TOC_NONE)
		return -ENOENT;
	const struct sg_toc_node *n = sg_toc_node(l->toc, file);
	if (n->type != SG_TOC_REG || !(n->mode & 0111))
		return -ENOENT;   /* not what exec runs */
	if (n->nchunks == 0 || covered(l, n->first_chunk) || coming_anyway(l, n->first_chunk))
		return 0;
	const struct sg_toc_chunk *ch = sg_layer_chunk(l, n->first_chunk);
	first.budget = SIZE_MAX;
	pick_chunk(&first, n->first_chunk, ch->next_offset - ch->offset);
	if (first.n == 0)
		return 0;   /* here or on its way already */
	queue_front(l, &first, true);
	pick_rest_of_elf(&rest, file);
	if (rest.n > 0)
		queue_front(l, &rest, true);
	return 0;
}

/* The modules of CPython's library (3.11 and later) that nearly every application's imports
 * pull in, and that the interpreter does not freeze: what `import re`, `collections`,
 * `enum`, `functools` and `contextlib` import, which asyncio, logging, json, email, http,
 * unittest... all do.  Unoptimized, python3 importing 16 stdlib packages missed them one
 * after the other, each a round trip (collections, keyword, reprlib, re, enum, types,
 * copyreg, contextlib: 0.6 s).  A plain `python3 -c 'print()'` imports none of them, so
 * they are picked only once the application imports something that is not part of the
 * start: its first miss in the library. */
static const char *const python_core[] = {
	"collections/__pycache__/__init__", "__pycache__/keyword", "__pycache__/operator",
	"__pycache__/reprlib", "__pycache__/functools", "__pycache__/types", "__pycache__/enum",
	"re/__pycache__/__init__", "re/__pycache__/_compiler", "re/__pycache__/_parser",
	"re/__pycache__/_constants", "re/__pycache__/_casefix", "__pycache__/copyreg",
	"__pycache__/contextlib",
};

#define PYTHON_LIB_MAX (4u << 20)

/* A miss in file `file`: if it is a module of <prefix>/lib/python3.N/ (N >= 11), the first
 * such miss in this layer picks the core modules (precise: what the imports need next). */
static void python_core_after(struct sg_layer *l, uint32_t file)
{
	char path[RESOLVE_PATH_MAX], mod[RESOLVE_PATH_MAX + 160];
	unsigned minor;
	int end = 0;

	if (l->spec_python_core || sg_toc_path(l->toc, file, path, sizeof(path)) < 0)
		return;
	char *lib = strstr(path, "/lib/python3.");
	if (!lib || sscanf(lib, "/lib/python3.%2u/%n", &minor, &end) != 1 || end == 0 ||
	    minor < 11 || !strstr(lib + end, ".pyc"))
		return;
	l->spec_python_core = true;
	lib[end] = '\0';   /* the prefix up to and with "lib/python3.N/" */
	struct pick p = { .l = l, .budget = SIZE_MAX };
	for (size_t i = 0; i < sizeof(python_core) / sizeof(python_core[0]); i++) {
		int w = snprintf(mod, sizeof(mod), "/%s%s.cpython-3%u.pyc", path, python_core[i],
				 minor);
		if (w < 0 || (size_t)w >= sizeof(mod))
			continue;
		uint32_t m = resolve_path(l->toc, mod);
		if (m != SG_TOC_NONE && !coming_anyway(l, sg_toc_node(l->toc, m)->first_chunk))
			pick_file(&p, m);
	}
	if (p.n > 0)
		queue_front(l, &p, true);
	/* Then, behind the core (precise picks, in blob order, within PYTHON_LIB_MAX), the
	 * library's other top-level modules (2.4 MB in Debian's python3.11, of which the
	 * imports workload reads 1.1 MB): what an application's imports go through after the
	 * core, each otherwise a miss of its own.  Queued as neighbours they were not fetched
	 * (the layer's hit rate had stopped that): imports 3.26 s either way; precise, 2.94 s.
	 * Each package's __init__ (28, 135 kB) picked too measured no better. */
	snprintf(mod, sizeof(mod), "/%s__pycache__/keyword.cpython-3%u.pyc", path, minor);
	uint32_t any = resolve_path(l->toc, mod);
	if (any == SG_TOC_NONE)
		return;
	const struct sg_toc_node *dir = sg_toc_node(l->toc, sg_toc_node(l->toc, any)->parent);
	struct pick mods = { .l = l, .budget = PYTHON_LIB_MAX };
	for (uint32_t c = dir->first_child; c != SG_TOC_NONE && !pick_full(&mods);
	     c = sg_toc_node(l->toc, c)->next_sibling) {
		mods.scanned++;
		pick_file(&mods, c);
	}
	if (mods.n > 0)
		queue_front(l, &mods, true);
}

/* What a GCC driver runs and reads next, for Debian's and Ubuntu's layout (the gcc and
 * build images): a driver named [<triplet>-]gcc-<version> (or g++-<version>) in <prefix>/bin,
 * its passes in <prefix>/lib/gcc/<triplet>/<version>/, binutils as <triplet>-as and
 * <triplet>-ld.bfd beside the driver.  The driver runs the compiler proper, the assembler,
 * collect2 and the linker one after the other; each of them, each of their libraries, the
 * headers every C compile against glibc reads and the link's inputs were a miss of their
 * own: unoptimized gcc on the default link waited 1.5 s after cc1 on 14 misses in a row.
 * So a driver in use brings the compiler proper, as a program about to run; and the
 * compiler proper in use (its libraries picked first) brings the rest, the programs among
 * them with their libraries picked as their first chunks arrive. */
enum gcc_part { GCC_NONE, GCC_DRIVER, GCC_DRIVER_CXX, GCC_PROPER };
#define GCC_TRIPLET_DEFAULT "x86_64-linux-gnu"
struct gcc_layout {
	char prefix[RESOLVE_PATH_MAX], triplet[64], version[16];
};

static enum gcc_part gcc_part_of(const struct sg_toc *toc, uint32_t program, struct gcc_layout *g)
{
	char *path = g->prefix;

	if (sg_toc_path(toc, program, path, sizeof(g->prefix)) < 0)
		return GCC_NONE;
	char *base = strrchr(path, '/');
	if (!base)
		return GCC_NONE;
	if (strcmp(base, "/cc1") == 0 || strcmp(base, "/cc1plus") == 0) {
		/* <prefix>/lib/gcc/<triplet>/<version>/cc1 */
		*base = '\0';
		char *v = strrchr(path, '/');
		if (!v || strlen(v + 1) >= sizeof(g->version))
			return GCC_NONE;
		snprintf(g->version, sizeof(g->version), "%s", v + 1);
		*v = '\0';
		char *t = strrchr(path, '/');
		if (!t || strlen(t + 1) >= sizeof(g->triplet) || t - path < 8 ||
		    strncmp(t - 8, "/lib/gcc", 8) != 0)
			return GCC_NONE;
		snprintf(g->triplet, sizeof(g->triplet), "%s", t + 1);
		t[-8] = '\0';
		return GCC_PROPER;
	}
	if (base - path < 4 || strncmp(base - 4, "/bin", 4) != 0)
		return GCC_NONE;
	char *drv = strstr(base + 1, "gcc-"), *drvxx = strstr(base + 1, "g++-");
	if (!drv || (drvxx && drvxx > drv))
		drv = drvxx;
	if (!drv || (drv != base + 1 && drv[-1] != '-'))
		return GCC_NONE;
	size_t vlen = strspn(drv + 4, "0123456789.");
	if (vlen == 0 || vlen >= sizeof(g->version) || drv[4 + vlen] != '\0')
		return GCC_NONE;
	memcpy(g->version, drv + 4, vlen);
	g->version[vlen] = '\0';
	size_t tlen = drv == base + 1 ? 0 : (size_t)(drv - 1 - (base + 1));
	if (tlen >= sizeof(g->triplet))
		return GCC_NONE;
	if (tlen) {
		memcpy(g->triplet, base + 1, tlen);
		g->triplet[tlen] = '\0';
	} else {
		snprintf(g->triplet, sizeof(g->triplet), "%s", GCC_TRIPLET_DEFAULT);
	}
	bool cxx = drv[1] == '+';
	base[-4] = '\0';
	return cxx ? GCC_DRIVER_CXX : GCC_DRIVER;
}

/* After the compiler proper, in the order of use: "P" is the prefix, "T" the triplet, "V"
 * the version. */
static const char *const gcc_after_proper[] = {
	/* the headers any C source that includes a glibc header reads */
	"P/include/stdc-predef.h", "P/include/features.h", "P/include/features-time64.h",
	"P/include/T/bits/libc-header-start.h", "P/include/T/sys/cdefs.h",
	"P/include/T/bits/wordsize.h", "P/include/T/bits/timesize.h",
	"P/include/T/bits/long-double.h", "P/include/T/gnu/stubs.h", "P/include/T/gnu/stubs-64.h",
	"P/lib/gcc/T/V/include/stddef.h", "P/lib/gcc/T/V/include/stdarg.h",
	/* the assembler, collect2, the linker and its plugin */
	"P/bin/T-as", "P/lib/gcc/T/V/collect2", "P/bin/T-ld.bfd",
	"P/lib/gcc/T/V/liblto_plugin.so",
	/* the link's inputs */
	"P/lib/T/Scrt1.o", "P/lib/T/crti.o", "P/lib/gcc/T/V/crtbeginS.o",
	"P/lib/gcc/T/V/libgcc.a", "P/lib/gcc/T/V/libgcc_s.so", "P/lib/T/libc.so",
	"P/lib/T/libc_nonshared.a", "P/lib/gcc/T/V/crtendS.o", "P/lib/T/crtn.o",
};

/* "P/lib/gcc/T/V/collect2" -> "/usr/lib/gcc/x86_64-linux-gnu/12/collect2" */
static bool gcc_path(const struct gcc_layout *g, const char *tmpl, char *out, size_t size)
{
	size_t n = 0;

	out[n++] = '/';
	for (const char *t = tmpl; *t; t++) {
		const char *part = *t == 'P' ? g->prefix : *t == 'T' ? g->triplet :
				   *t == 'V' ? g->version : NULL;
		size_t len = part ? strlen(part) : 1;
		if (n + len + 1 > size)
			return false;
		memcpy(out + n, part ? part : t, len);
		n += len;
	}
	out[n] = '\0';
	return true;
}

static void toolchain_start(struct sg_layer *l, uint32_t program)
{
	struct gcc_layout g;
	char path[RESOLVE_PATH_MAX + 160];
	enum gcc_part part = gcc_part_of(l->toc, program, &g);

	size_t plen = strlen(g.prefix), tlen = strlen(g.triplet);
	if (part != GCC_NONE && plen < sizeof(l->spec_gcc.prefix) &&
	    tlen < sizeof(l->spec_gcc.triplet)) {   /* (the version fits: same size) */
		memcpy(l->spec_gcc.prefix, g.prefix, plen + 1);
		memcpy(l->spec_gcc.triplet, g.triplet, tlen + 1);
		memcpy(l->spec_gcc.version, g.version, sizeof(l->spec_gcc.version));
	}
	if (part == GCC_DRIVER || part == GCC_DRIVER_CXX) {
		snprintf(path, sizeof(path), "/%s/lib/gcc/%s/%s/%s", g.prefix, g.triplet, g.version,
			 part == GCC_DRIVER_CXX ? "cc1plus" : "cc1");
		(void)speculate_program(l, path);
		return;
	}
	if (part != GCC_PROPER)
		return;
	/* Each followed: the programs' libraries, the headers' includes come as they arrive. */
	struct pick rest = { .l = l, .follow = true, .budget = SIZE_MAX };
	for (size_t i = 0; i < sizeof(gcc_after_proper) / sizeof(gcc_after_proper[0]); i++) {
		if (!gcc_path(&g, gcc_after_proper[i], path, sizeof(path)))
			continue;
		uint32_t file = resolve_path(l->toc, path);
		if (file == SG_TOC_NONE)
			continue;
		const struct sg_toc_node *n = sg_toc_node(l->toc, file);
		if (n->type != SG_TOC_REG || n->nchunks == 0 || coming_anyway(l, n->first_chunk))
			continue;
		pick_file(&rest, file);
	}
	/* The shared libgcc the link names (the libgcc_s.so script), in the base layer */
	pick_needed(&rest, "libgcc_s.so.1");
	if (rest.n > 0)
		queue_front(l, &rest, true);
}

/* sg_layer_spec_contents for an ELF file.  needs_only: what the ELF headers and strings name
 * (the data segment's end, the loader, the libraries), for a chunk whose first bytes were
 * handled already (sg_layer_spec_peek): a prefix may have lacked some of them. */
static void spec_elf(struct sg_layer *l, uint32_t chunk, const uint8_t *data, size_t len,
		     bool needs_only)
{
	/* The libraries are followed: each one's own libraries come as it arrives, before the
	 * loader opens it (as's libbfd needs libsframe, a miss of its own after libbfd's).
	 * Not a guess about a neighbourhood: at least an ELF file's allowance, whatever the
	 * neighbours' budget has shrunk to (ssl's _ssl arrived when misses had brought it to
	 * 256 KiB, and libcrypto's 1.8 MB first chunk was left to a miss of 260 ms). */
	struct pick p = { .l = l, .follow = true,
			  .budget = l->spec_budget > SPEC_ELF_WHOLE_MAX ? l->spec_budget :
									   SPEC_ELF_WHOLE_MAX };
	struct pick rest = { .l = l };
	const char *interp;
	size_t interp_len;

	/* The chunk where its data segment ends, first: the kernel clears the tail of that
	 * segment's last page as it maps the program, before the loader runs (python3.11's
	 * second chunk, read 3 ms after its first arrived, waited 235 ms sharing the link with
	 * the libraries picked before it). */
	uint64_t data_end;
	if (sg_elf_data_end(data, len, &data_end)) {
		struct pick first = { .l = l };
		pick_chunk_at(&first, l->chunk_file[chunk], data_end);
		if (first.n > 0)
			queue_front(l, &first, true);
	}
	/* A program: the kernel maps its interpreter next, which first reads the cache of
	 * library paths, then maps the libraries in DT_NEEDED order. */
	if (sg_elf_interp(data, len, &interp, &interp_len)) {
		pick_needed(&p, interp);   /* NUL-terminated in data */
		pick_needed(&p, "/etc/ld.so.cache");
	}
	sg_elf_needed(data, len, pick_library, &p);
	if (p.n > 0)
		queue_front(l, &p, true);
	if (needs_only)
		return;
	/* Then the rest of the file: touched once the libraries are mapped (relocation), and
	 * paged in as the program runs (python3.11's second chunk: 0.2 s after its first, a
	 * miss of its own). */
	pick_rest_of_elf(&rest, l->chunk_file[chunk]);
	if (rest.n > 0)
		queue_front(l, &rest, true);
	else
		stream_large_elf(l, l->chunk_file[chunk]);
	/* Then what the runtime reads as it starts, once the program runs. */
	uint32_t files[RUNTIME_STARTUP_MAX];
	size_t nfiles = covered(l, chunk) ? 0 : runtime_startup_files(l->toc, l->chunk_file[chunk], files);
	struct pick startup = { .l = l, .budget = l->spec_budget };
	for (size_t i = 0; i < nfiles; i++)
		if (!coming_anyway(l, sg_toc_node(l->toc, files[i])->first_chunk))
			pick_first_chunk(&startup, files[i]);
	if (startup.n > 0)
		queue_front(l, &startup, true);
	/* A compiler driver: the passes it runs next. */
	if (!covered(l, chunk))
		toolchain_start(l, l->chunk_file[chunk]);
	/* And what its first one's miss would have brought along: the codecs package is where
	 * an application's imports go next (a miss there took its neighbours; imports,
	 * unoptimized: 3.64 s without them, 3.34 s with the miss). */
	if (nfiles > 0 && !covered(l, chunk)) {
		struct pick nb = { .l = l, .budget = l->spec_budget };
		pick_neighbours(&nb, files[0], spec_rate(l));
		if (nb.n > 0)
			queue_front(l, &nb, false);
	}
}

/* ---- What a header includes ---- */

/* Compressed bytes a layer picks for what headers include, at most (<bits/stdc++.h> and all
 * it includes: about 2 MB of headers, 0.4 MB compressed). */
#define SPEC_HEADERS_MAX ((uint64_t)8 << 20)
/* Headers already here (fetched ahead, not read yet) are followed at once, this deep. */
#define HEADER_DEPTH_MAX 8
#define HEADER_DIRS_MAX 10

/* Is `path` (from the root) a header: under a directory named "include", its name ending in
 * ".h", or anywhere under include/c++/ (the C++ library's headers have no suffix)? */
static bool is_header(const char *path)
{
	const char *inc = strstr(path, "include/");

	if (!inc || (inc != path && inc[-1] != '/'))
		return false;
	size_t len = strlen(path);
	return (len > 2 && strcmp(path + len - 2, ".h") == 0) || strstr(inc, "include/c++/");
}

struct header_search {
	char dirs[HEADER_DIRS_MAX][RESOLVE_PATH_MAX];
	unsigned n;
};

static void search_add(struct header_search *hs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void search_add(struct header_search *hs, const char *fmt, ...)
{
	va_list ap;

	if (hs->n == HEADER_DIRS_MAX)
		return;
	va_start(ap, fmt);
	int len = vsnprintf(hs->dirs[hs->n], RESOLVE_PATH_MAX, fmt, ap);
	va_end(ap);
	if (len > 0 && len < RESOLVE_PATH_MAX)
		hs->n++;
}

/* Where a compiler looks for <name>, in its order: GCC's on Debian and Ubuntu (for a header
 * of the C++ library, that library's directories first; then GCC's own, /usr/local/include,
 * GCC's include-fixed, the multiarch directory, /usr/include), with the prefix, triplet and
 * version of the GCC seen in use in this layer (toolchain_start), or the usual multiarch
 * directories when none was.  Paths from the root without a leading '/', as sg_toc_path
 * gives them. */
static void header_search_path(const struct sg_layer *l, bool cxx, struct header_search *hs)
{
	const char *P = l->spec_gcc.prefix, *T = l->spec_gcc.triplet, *V = l->spec_gcc.version;

	hs->n = 0;
	if (P[0] && cxx) {
		search_add(hs, "%s/include/c++/%s", P, V);
		search_add(hs, "%s/include/%s/c++/%s", P, T, V);
		search_add(hs, "%s/include/c++/%s/backward", P, V);
	}
	if (P[0])
		search_add(hs, "%s/lib/gcc/%s/%s/include", P, T, V);
	search_add(hs, "usr/local/include");
	if (P[0]) {
		search_add(hs, "%s/lib/gcc/%s/%s/include-fixed", P, T, V);
		search_add(hs, "%s/include/%s", P, T);
	} else {
		search_add(hs, "usr/include/x86_64-linux-gnu");
		search_add(hs, "usr/include/aarch64-linux-gnu");
	}
	search_add(hs, "%s/include", P[0] ? P : "usr");
}

struct header_pick {
	struct pick p;
	const struct header_search *hs;
	const char *path;      /* the including header's */
	uint32_t file;
	uint32_t here[SG_C_INCLUDES_MAX];   /* included files already here, followed next */
	unsigned n_here;
};

/* The file `dir`/`name` names in this layer, SG_TOC_NONE if none. */
static uint32_t header_in(const struct sg_toc *toc, const char *dir, size_t dir_len,
			  const char *name)
{
	char path[RESOLVE_PATH_MAX];

	if (snprintf(path, sizeof(path), "%.*s/%s", (int)dir_len, dir, name) >= (int)sizeof(path))
		return SG_TOC_NONE;
	return resolve_path(toc, path);
}

/* One directive of the header: the file the compiler would open, picked (or, when it is
 * here already, remembered to be followed). */
static void pick_include(void *ctx, const struct sg_c_include *inc)
{
	struct header_pick *h = ctx;
	struct sg_layer *l = h->p.l;
	uint32_t found = SG_TOC_NONE;
	unsigned from = 0;

	if (inc->quoted) {
		const char *slash = strrchr(h->path, '/');
		if (slash)
			found = header_in(l->toc, h->path, (size_t)(slash - h->path), inc->name);
	}
	if (inc->next) {
		/* The directories after the one the including header was found in: the
		 * longest that holds it (usr/include/x86_64-linux-gnu, not usr/include). */
		size_t longest = 0;
		for (unsigned i = 0; i < h->hs->n; i++) {
			size_t len = strlen(h->hs->dirs[i]);
			if (len > longest && strncmp(h->path, h->hs->dirs[i], len) == 0 &&
			    h->path[len] == '/') {
				longest = len;
				from = i + 1;
			}
		}
	}
	for (unsigned i = from; i < h->hs->n && (found == SG_TOC_NONE || found == h->file); i++)
		found = header_in(l->toc, h->hs->dirs[i], strlen(h->hs->dirs[i]), inc->name);
	if (found == SG_TOC_NONE || found == h->file)
		return;
	const struct sg_toc_node *n = sg_toc_node(l->toc, found);
	if (n->nchunks == 0 || (n->flags & SG_TOC_F_SELF) || coming_anyway(l, n->first_chunk))
		return;
	if (sg_memcache_get(l->mem, n->first_chunk)) {
		if (h->n_here < SG_C_INCLUDES_MAX)
			h->here[h->n_here++] = n->first_chunk;
		return;
	}
	pick_file(&h->p, found);
}

/* sg_layer_spec_contents for a header: the headers it includes, precise and followed, so
 * that what they include in turn comes as they arrive.  A compiler reads them one after the
 * other, each a miss of its own (gcc, unoptimized, `#include <stdio.h>`: 14 misses in a row,
 * 0.3 s); a chain costs a round trip per level of includes instead. */
static void spec_header(struct sg_layer *l, uint32_t chunk, const uint8_t *data, size_t len,
			unsigned depth)
{
	char path[RESOLVE_PATH_MAX];
	struct header_search hs;
	uint32_t file = l->chunk_file[chunk];

	if ((l->spec_queued[chunk] & SPEC_PARSED) || covered(l, chunk) ||
	    l->spec_header_bytes >= SPEC_HEADERS_MAX ||
	    sg_toc_path(l->toc, file, path, sizeof(path)) < 0 || !is_header(path))
		return;
	l->spec_queued[chunk] |= SPEC_PARSED;
	header_search_path(l, strstr(path, "include/c++/") != NULL, &hs);
	struct header_pick h = {
		.p = { .l = l, .follow = true, .budget = SPEC_HEADERS_MAX - l->spec_header_bytes },
		.hs = &hs, .path = path, .file = file,
	};
	(void)sg_c_includes(data, len, pick_include, &h);
	l->spec_header_bytes += h.p.taken;
	if (h.p.n > 0)
		queue_front(l, &h.p, true);
	/* Those fetched ahead already (a miss's neighbours): what they include, now. */
	for (unsigned i = 0; i < h.n_here && depth < HEADER_DEPTH_MAX; i++) {
		struct sg_mem_chunk *e = sg_memcache_get(l->mem, h.here[i]);
		if (e)
			spec_header(l, h.here[i], e->data, e->size, depth + 1);
	}
}

void sg_layer_spec_contents(struct sg_layer *l, uint32_t chunk, const uint8_t *data, size_t len)
{
	if (!l->cfg.speculate || l->closing)
		return;
	if (len >= 4 && memcmp(data, "\x7f" "ELF", 4) == 0)
		spec_elf(l, chunk, data, len, l->spec_queued[chunk] & SPEC_PEEK_ELF);
	else
		spec_header(l, chunk, data, len, 0);
}

/* What every container start reads first, from the base layer that has them: the user and
 * group files (runc resolves the container's user in them before it starts the process),
 * the shell (`sh -c`), the loader (x86-64, aarch64), the cache of library paths, the C
 * library, and the files the C library and most runtimes read at startup: the C.UTF-8
 * locale (LANG=C.UTF-8 in most images), the converters' cache, the time zone.  Small files;
 * unoptimized python's start waited 0.5 s on the last three and the group file, one miss
 * after the other. */
static const char *const entry_points[] = {
	"/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1", "/etc/ld.so.cache",
	"libc.so.6",
};
/* What runc reads in the rootfs before the process starts (the container's user): not for a
 * layer replaying a profile, which recorded it; an optimized image's prioritized files do
 * not have it (they are the workload's), and behind their prefetch (9.6 MB in four
 * requests) runc's read of /etc/group waited 0.5 s in every optimized imports run. */
static const char *const container_files[] = { "/etc/passwd", "/etc/group" };
/* What the C library and most runtimes read at start: not for a layer that knows what its
 * workload reads, because it replays a profile or prefetches an optimized image's
 * prioritized files. */
static const char *const startup_files[] = {
	"/bin/sh",
	"/usr/lib/locale/C.utf8/LC_CTYPE",
	"/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
	"/usr/lib/aarch64-linux-gnu/gconv/gconv-modules.cache",
	"/etc/localtime",
};

static int queue_path(struct sg_layer *l, const char *path, bool follow, bool *ret_queued);

/* Queued together, started once: the first batches then take what lies near them in the
 * blob (gather_near), rather than each path going out alone as it is queued. */
static void speculate_paths(struct sg_layer *l, const char *const *paths, size_t n)
{
	bool queued;

	for (size_t i = 0; i < n; i++)
		(void)queue_path(l, paths[i], false, &queued);   /* most layers have none */
}

#define SPECULATE_PATHS(l, list) speculate_paths(l, list, sizeof(list) / sizeof(list[0]))

void sg_layer_spec_start(struct sg_layer *l)
{
	SPECULATE_PATHS(l, entry_points);
	if (!profiled(l)) {
		SPECULATE_PATHS(l, container_files);
		if (l->prefetch_end == 0)   /* (not the prefetch's flag: it may be over already) */
			SPECULATE_PATHS(l, startup_files);
	}
	sg_layer_spec_continue(l);
}

/* sg_layer_speculate_path without starting anything; *ret_queued: something was queued.
 * follow: the file's contents are followed as it arrives (SPEC_FOLLOW). */
static int queue_path(struct sg_layer *l, const char *path, bool follow, bool *ret_queued)
{
	struct pick p = { .l = l, .follow = follow, .budget = l->spec_budget };

	*ret_queued = false;
	if (!l->cfg.speculate || l->closing)
		return -ECANCELED;
	uint32_t file = find_needed(l->toc, path);
	if (file == SG_TOC_NONE)
		return -ENOENT;
	pick_first_chunk(&p, file);
	if (p.n > 0) {
		queue_front(l, &p, true);
		*ret_queued = true;
	}
	return 0;
}

int sg_layer_speculate_path(struct sg_layer *l, const char *path)
{
	bool queued;
	int r = queue_path(l, path, true, &queued);

	if (queued)
		sg_layer_spec_continue(l);
	return r;
}

int sg_layer_speculate_paths(struct sg_layer *l, const char *const *paths, size_t n,
			     bool *found)
{
	uint32_t firsts[SG_LAYER_SPEC_QUEUE];
	size_t nf = 0;
	int have = 0;

	if (!l->cfg.speculate || l->closing || profiled(l))
		return -ECANCELED;
	for (size_t i = 0; i < n; i++) {
		if (found[i])
			continue;
		uint32_t file = resolve_path(l->toc, paths[i]);
		if (file == SG_TOC_NONE)
			continue;
		found[i] = true;
		have++;
		const struct sg_toc_node *f = sg_toc_node(l->toc, file);
		if (f->nchunks == 0 || (f->flags & SG_TOC_F_SELF) || nf == SG_LAYER_SPEC_QUEUE ||
		    coming_anyway(l, f->first_chunk))
			continue;
		firsts[nf++] = f->first_chunk;
	}
	/* In the order named (a compiler reads a source's headers in the order it includes
	 * them): the batches gather them from the front of the queue, so the first request
	 * holds the first named, whatever their places in the blob. */
	struct pick p = { .l = l, .follow = true, .budget = SIZE_MAX };
	for (size_t i = 0; i < nf && !pick_full(&p); i++) {
		const struct sg_toc_chunk *ch = sg_layer_chunk(l, firsts[i]);
		pick_chunk(&p, firsts[i], ch->next_offset - ch->offset);
		/* Also one queued already (a neighbour of a miss, behind the precise picks):
		 * a gathering batch takes it from there. */
		if (l->spec_queued[firsts[i]] & SPEC_QUEUED)
			l->spec_queued[firsts[i]] |= SPEC_GATHER;
	}
	if (p.n > 0) {
		queue_front(l, &p, true);
		sg_layer_spec_continue(l);
	}
	return have;
}

int sg_layer_speculate_program(struct sg_layer *l, const char *path)
{
	if (!l->cfg.speculate || l->closing)
		return -ECANCELED;
	int r = speculate_program(l, path);
	if (r == 0)
		sg_layer_spec_continue(l);
	return r;
}

/* A file in use that speculation did not bring as a neighbour (a miss, or a file a command
 * line named): its neighbours go to the front of the queue (the caller starts them), within
 * `budget`, and it becomes the file whose further jumps take none.  Returns the bytes
 * queued. */
static size_t take_neighbours(struct sg_layer *l, uint32_t file, size_t budget,
			      enum spec_rate rate)
{
	struct pick p = { .l = l, .budget = budget };

	l->spec_last_file = file;
	pick_neighbours(&p, file, rate);
	if (p.n > 0)
		queue_front(l, &p, false);
	return p.n > 0 ? p.taken : 0;
}

void sg_layer_spec_hint_used(struct sg_layer *l, uint32_t chunk)
{
	uint32_t file = l->chunk_file[chunk];

	if (!(l->spec_queued[chunk] & SPEC_GATHER))
		return;
	l->spec_queued[chunk] &= (uint8_t)~SPEC_GATHER;
	if (!l->cfg.speculate || l->closing || file == l->spec_last_file ||
	    (sg_toc_node(l->toc, file)->mode & 0111))
		return;
	if (take_neighbours(l, file, l->spec_budget, spec_rate(l)) > 0)
		sg_layer_spec_continue(l);
}

bool sg_layer_spec_follow_arrived(struct sg_layer *l, uint32_t chunk)
{
	bool follow = l->spec_queued[chunk] & SPEC_FOLLOW;

	l->spec_queued[chunk] &= (uint8_t)~SPEC_FOLLOW;
	return follow;
}

void sg_layer_spec_miss(struct sg_layer *l, struct sg_range_source *src, uint32_t chunk)
{
	uint32_t file = l->chunk_file[chunk];
	enum spec_rate rate = spec_rate(l);

	if (!l->cfg.speculate || l->closing || file == l->spec_last_file)
		return;   /* another jump in the same file: its neighbours were taken already */
	/* A miss in a new file after the first: speculation did not cover it. */
	if (l->spec_last_file != UINT32_MAX)
		l->spec_budget -= rate == SPEC_PAYS ? l->spec_budget / SPEC_SHRINK_DIV :
						      l->spec_budget / 2;
	if (l->spec_budget < SG_SPEC_BUDGET_MIN)
		l->spec_budget = SG_SPEC_BUDGET_MIN;
	l->spec_last_file = file;
	l->spec_src = src;
	if (!covered(l, chunk))
		python_core_after(l, file);
	const struct sg_toc_node *f = sg_toc_node(l->toc, file);
	bool hot = dir_missed_lately(l, f->parent);
	/* A program's neighbours are other programs: python3.11's in /usr/bin were 1 MB that
	 * shared the link with its first chunk, none read; gcc-12's and cc1's drove the rate
	 * down before the headers came (gcc, unoptimized: 4.01 -> 3.71 s without them). */
	if ((rate == SPEC_FAILING && !hot) || (f->mode & 0111)) {
		sg_layer_spec_continue(l);   /* precise picks still go */
		return;
	}

	size_t taken = take_neighbours(l, file, l->spec_budget, rate);
	if (rate == SPEC_FAILING)
		l->spec_hot_left = taken;   /* the directory's, at the front of the queue */
	sg_layer_spec_continue(l);
}

/* Chunks of the precise runs still queued, at most this many looked at per batch; of all
 * runs for a batch of files a command line named. */
#define GATHER_SCAN_MAX 64u
#define GATHER_HINTS_SCAN_MAX 2048u
/* Bytes of a gathered batch at most (gaps read along within a span included). */
#define SPEC_GATHER_MAX (256u << 10)

/* A precise batch [start, end) also takes the precise picks queued behind it that lie
 * within a gap of it in the blob, wherever they are in the queue: the files every
 * container start reads sit together at the start of a base layer's blob (/etc/group at
 * 8 kB, /etc/ld.so.cache at 10 kB, /etc/passwd at 19 kB), and queued one behind the other
 * they went out as separate requests, the group file behind the loader and libc, so that
 * runc's read of it became a miss of its own (python, unoptimized: 30-150 ms, and the
 * on-demand fetch held background fetch back for a second).  The list stays in blob order.
 * Returns the new count. */
/* Spans of a list in blob order (sg_layer_span_joins: the batch's own rule), and in
 * *ret_bytes what a request for them fetches: the spans with the gaps read along in them. */
static unsigned count_spans(const struct sg_layer *l, const uint32_t *list, size_t n,
			    uint64_t *ret_bytes)
{
	unsigned spans = 0;
	uint64_t bytes = 0, start = 0, end = 0;

	for (size_t i = 0; i < n; i++) {
		const struct sg_toc_chunk *ch = sg_layer_chunk(l, list[i]);
		if (i == 0 || !sg_layer_span_joins(end, ch->offset, SG_LAYER_BATCH_GAP)) {
			bytes += end - start;   /* the span before (0 for none) */
			start = ch->offset;
			spans++;
		}
		if (i == 0 || ch->next_offset > end)
			end = ch->next_offset;
	}
	*ret_bytes = bytes + (end - start);
	return spans;
}

static size_t gather_near(struct sg_layer *l, uint32_t *list, size_t n, uint64_t start,
			  uint64_t end, size_t max)
{
	unsigned scanned = 0;
	/* A batch of files a command line named takes the others, wherever they are, as
	 * spans of its own, up to the bytes allowed (counted without the gaps). */
	bool gather = (l->spec_queued[list[0]] & SPEC_GATHER) && sg_layer_batch_spans(l) > 1;
	uint64_t gathered = 0;

	/* A batch is served when all of it has arrived: the first file named waits for the
	 * last (on the far link a gathered 510 KB made the first of them wait 200 ms). */
	if (gather && max > SPEC_GATHER_MAX)
		max = SPEC_GATHER_MAX;
	for (size_t i = 0; gather && i < n; i++)
		gathered += sg_layer_chunk(l, list[i])->next_offset - sg_layer_chunk(l, list[i])->offset;
	unsigned runs = gather ? l->spec_n : l->spec_precise_n;
	unsigned scan_max = gather ? GATHER_HINTS_SCAN_MAX : GATHER_SCAN_MAX;
	for (unsigned r = 0; r < runs && scanned < scan_max; r++) {
		for (uint32_t c = l->spec_queue[r].first;
		     c < l->spec_queue[r].end && scanned < scan_max && n < SPEC_BATCH_CHUNKS;
		     c++, scanned++) {
			const struct sg_toc_chunk *ch = sg_layer_chunk(l, c);
			if (!sg_layer_fetch_needed(l, c))
				continue;
			bool near = !gather &&
				    sg_layer_span_joins(end, ch->offset, SG_LAYER_BATCH_GAP) &&
				    sg_layer_span_joins(ch->next_offset, start, SG_LAYER_BATCH_GAP);
			if (!near && !(gather && (l->spec_queued[c] & SPEC_GATHER) &&
				       gathered + (ch->next_offset - ch->offset) <= max))
				continue;
			uint64_t s = ch->offset < start ? ch->offset : start;
			uint64_t e = ch->next_offset > end ? ch->next_offset : end;
			if (near && e - s > max)
				continue;
			size_t at = n;
			bool dup = false;
			for (size_t i = 0; i < n; i++)
				dup |= list[i] == c;
			if (dup)
				continue;
			while (at > 0 && sg_layer_chunk(l, list[at - 1])->offset > ch->offset) {
				list[at] = list[at - 1];
				at--;
			}
			list[at] = c;
			n++;
			uint64_t bytes;
			if (!near && (count_spans(l, list, n, &bytes) > sg_layer_batch_spans(l) ||
				      bytes > max)) {
				memmove(&list[at], &list[at + 1], (n - at - 1) * sizeof(list[0]));
				n--;
				continue;   /* no span or byte left for it */
			}
			gathered += ch->next_offset - ch->offset;
			start = s;
			end = e;
			/* (left in its run: taken, it is no longer needed when its turn comes) */
		}
	}
	return n;
}

/* Takes the next batch off the queue: chunks in blob order, close together, up to `max`
 * bytes (at least one chunk); from the precise runs only while there are some.  Chunks
 * fetched meanwhile are dropped.  Returns the count. */
static size_t take_batch(struct sg_layer *l, uint32_t *list, size_t max)
{
	size_t n = 0;
	uint64_t start = 0, end = 0, prev = 0;
	bool precise = l->spec_precise_n > 0;

	while (l->spec_n > 0 && n < SPEC_BATCH_CHUNKS && (!precise || l->spec_precise_n > 0)) {
		uint32_t c = l->spec_queue[0].first;
		const struct sg_toc_chunk *ch = sg_layer_chunk(l, c);
		if (sg_layer_fetch_needed(l, c)) {
			if (n > 0 && (ch->offset < prev ||
				      !sg_layer_span_joins(end, ch->offset, SG_LAYER_BATCH_GAP) ||
				      ch->next_offset - start > max))
				break;
			if (n == 0)
				start = ch->offset;
			list[n++] = c;
			prev = ch->offset;
			if (ch->next_offset > end)
				end = ch->next_offset;
		}
		l->spec_queued[c] &= (uint8_t)~SPEC_QUEUED;
		if (++l->spec_queue[0].first == l->spec_queue[0].end) {
			l->spec_n--;
			if (l->spec_precise_n > 0)
				l->spec_precise_n--;
			memmove(&l->spec_queue[0], &l->spec_queue[1],
				l->spec_n * sizeof(l->spec_queue[0]));
		}
	}
	if (precise && n > 0 && n < SPEC_BATCH_CHUNKS)
		n = gather_near(l, list, n, start, end, max);
	return n;
}

/* Precise batches in flight: their first chunk (its job lives while the batch does) and
 * bytes.  They have room of their own: measured on python3, the batches streaming the
 * program's layer and fetching the base in the background held the link's room for bytes
 * fetched ahead when the program was read, and the libraries it needed waited 300 ms
 * behind them, past the loader's own misses. */
static size_t precise_room(struct sg_layer *l, unsigned *ret_slot)
{
	const struct sg_link_meter *m = l->src ? l->src->link : NULL;
	size_t cap = m ? sg_link_meter_inflight_cap(m) : SG_LAYER_AHEAD_CAP, inflight = 0;
	unsigned busy = 0;

	*ret_slot = SG_LAYER_PRECISE_BATCHES;
	for (unsigned i = 0; i < SG_LAYER_PRECISE_BATCHES; i++) {
		if (l->spec_precise[i].bytes && l->jobs[l->spec_precise[i].chunk]) {
			/* A batch larger than half the cap counts as half: while its last
			 * bytes arrive, the next pick is on its way (python3.11's 0.9 MB
			 * second chunk went out only once its 1.9 MB first had arrived, a
			 * round trip after, and its read waited 180 ms). */
			inflight += l->spec_precise[i].bytes < cap / 2 ? l->spec_precise[i].bytes :
									  cap / 2;
			busy++;
		} else {
			l->spec_precise[i].bytes = 0;
			*ret_slot = i;
		}
	}
	if (busy >= SG_LAYER_PRECISE_BATCHES)
		return 0;
	/* What the loader maps next may take connections beyond those fetching ahead, but
	 * one of the host's stays free for on-demand reads. */
	if (sg_layer_ahead_requests(l) >= SG_LINK_AHEAD_REQUESTS + SG_LINK_PRECISE_EXTRA) {
		sg_layer_wait_for_room(l);
		return 0;
	}
	return inflight < cap ? cap - inflight : 0;
}

void sg_layer_spec_continue(struct sg_layer *l)
{
	uint32_t list[SPEC_BATCH_CHUNKS];

	while (l->spec_n > 0 && !l->closing) {
		bool precise = l->spec_precise_n > 0;
		unsigned slot = 0;
		if (!precise && spec_rate(l) == SPEC_FAILING && l->spec_hot_left == 0) {
			/* Queued before the rate fell: not worth it either. */
			forget_runs(l, l->spec_precise_n);
			return;
		}
		size_t room = precise ? precise_room(l, &slot) : sg_layer_ahead_room(l);
		if (room == 0) {
			sg_layer_wait_for_room(l);   /* the next batch end, or a timer, looks again */
			return;
		}
		size_t max = room < SPEC_BATCH_MAX ? room : SPEC_BATCH_MAX;
		if (max > l->cfg.max_batch_bytes)
			max = l->cfg.max_batch_bytes;
		size_t n = take_batch(l, list, max);
		if (n == 0)
			continue;
		int r = sg_layer_fetch_batch(l, l->spec_src ? l->spec_src : l->src, list, n,
					     SG_FETCH_SPEC);
		if (r == -EAGAIN)
			return;   /* no memory to spare: those chunks are dropped, the rest waits */
		if (r < 0)
			return;
		if (precise) {
			l->spec_precise[slot].chunk = list[0];
			l->spec_precise[slot].bytes = sg_layer_chunk(l, list[n - 1])->next_offset -
						      sg_layer_chunk(l, list[0])->offset;
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			const struct sg_toc_chunk *ch = sg_layer_chunk(l, list[i]);
			uint64_t bytes = ch->next_offset - ch->offset;
			l->spec_queued[list[i]] |= SPEC_NEIGHBOUR;
			l->spec_nb_fetched += bytes;
			l->spec_hot_left -= bytes < l->spec_hot_left ? bytes : l->spec_hot_left;
		}
	}
}

/* ---- What a large program needs, before its first chunk arrives ---- */

/* A first chunk at least this large (compressed) is peeked at: at 100 Mbit/s it takes 20 ms
 * more than its first bytes, at 25 Mbit/s 80 ms. */
#define PEEK_CHUNK_MIN ((uint64_t)256 << 10)
/* The compressed bytes read, and what they may inflate to: an ELF file's program headers,
 * interpreter and (in its first segment) the names of its libraries. */
#define PEEK_BYTES (64u << 10)
#define PEEK_OUT_MAX (256u << 10)

struct spec_peek {
	struct sg_layer *l;
	struct sg_list link;            /* l->spec_peeks */
	struct sg_range_source *src;
	uint32_t chunk;
	struct sg_op op;
	uint8_t buf[PEEK_BYTES];
};

static void peek_read(struct sg_op *op)
{
	struct spec_peek *pk = sg_container_of(op, struct spec_peek, op);
	struct sg_layer *l = pk->l;
	size_t out_len = 0;
	uint8_t *out;

	sg_list_unlink(&pk->link);
	/* Only while the chunk is still on its way: once it arrived, its contents were handled
	 * whole (sg_layer_spec_contents). */
	if (op->res > 0 && !l->closing && l->jobs[pk->chunk] &&
	    (out = malloc(PEEK_OUT_MAX)) != NULL) {
		/* Unverified bytes (the chunk's digest covers all of it, on its way): they only
		 * choose what to fetch, as a verified chunk's contents would; nothing of them is
		 * served or kept. */
		if (sg_gz_inflate_prefix(pk->buf, (size_t)op->res, out, PEEK_OUT_MAX, &out_len) == 0 &&
		    out_len >= 4 && memcmp(out, "\x7f" "ELF", 4) == 0) {
			spec_elf(l, pk->chunk, out, out_len, false);
			l->spec_queued[pk->chunk] |= SPEC_PEEK_ELF;
			sg_layer_spec_continue(l);
		}
		free(out);
	}
	free(pk);
	sg_layer_maybe_close_done(l);
}

void sg_layer_spec_peek(struct sg_layer *l, struct sg_range_source *src, uint32_t chunk,
			bool in_use)
{
	const struct sg_toc_chunk *c = sg_layer_chunk(l, chunk);
	const struct sg_toc_node *f = sg_toc_node(l->toc, l->chunk_file[chunk]);
	char path[RESOLVE_PATH_MAX];

	/* Every chunk of every batch comes here: the tests that turn most away go first. */
	if (c->file_offset != 0 || c->next_offset - c->offset < PEEK_CHUNK_MIN ||
	    c->inner_offset != 0 || !l->cfg.speculate || l->closing ||
	    (l->spec_queued[chunk] & SPEC_PEEKED) ||
	    !(in_use || (l->spec_queued[chunk] & SPEC_FOLLOW)) || covered(l, chunk))
		return;
	/* What the loader maps: a program, or a library (most are 0644). */
	if (!(f->mode & 0111) && (sg_toc_path(l->toc, l->chunk_file[chunk], path, sizeof(path)) < 0 ||
				  !strstr(path, ".so")))
		return;
	l->spec_queued[chunk] |= SPEC_PEEKED;
	struct spec_peek *pk = malloc(sizeof(*pk));
	if (!pk)
		return;
	pk->l = l;
	pk->src = src;
	pk->chunk = chunk;
	pk->link = (struct sg_list){ 0 };
	sg_op_init(&pk->op);
	if (sg_range_read(src, c->offset, sizeof(pk->buf), pk->buf, &pk->op, peek_read) < 0) {
		free(pk);
		return;
	}
	sg_list_insert_tail(&l->spec_peeks, &pk->link);
	l->stats.peek_requests++;
}

void sg_layer_spec_cancel_peeks(struct sg_layer *l)
{
	for (struct sg_list *n = l->spec_peeks.next; n != &l->spec_peeks; n = n->next) {
		struct spec_peek *pk = sg_container_of(n, struct spec_peek, link);
		(void)sg_range_cancel(pk->src, &pk->op);   /* each still completes once */
	}
}
