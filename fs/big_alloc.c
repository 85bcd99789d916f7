#include "fs/big_alloc.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096u
#define HUGE_PAGE (2u << 20)

size_t sg_big_size(size_t size)
{
	if (size == 0)
		return 0;
	if (size > SIZE_MAX - PAGE)
		return SIZE_MAX;
	return (size + PAGE - 1) & ~(size_t)(PAGE - 1);
}

void *sg_big_realloc(void *p, size_t old_size, size_t new_size)
{
	size_t o = sg_big_size(old_size), n = sg_big_size(new_size);
	void *q;

	if (n == SIZE_MAX)
		return NULL;
	if (!p || o == 0) {
		if (n == 0)
			return NULL;
		q = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (q == MAP_FAILED)
			return NULL;
	} else {
		if (n == o)
			return p;
		if (n == 0) {
			munmap(p, o);
			return NULL;
		}
		q = mremap(p, o, n, MREMAP_MAYMOVE);
		if (q == MAP_FAILED)
			return NULL;
	}
	/* Small arrays stay on small pages: a 2 MiB page for a 10-entry TOC would be waste. */
	if (n >= HUGE_PAGE)
		(void)madvise(q, n, MADV_HUGEPAGE);
	return q;
}

void sg_big_free(void *p, size_t size)
{
	if (p && size)
		munmap(p, sg_big_size(size));
}
