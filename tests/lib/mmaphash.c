/* mmaphash FILE...: prints "FNV-1a-64 FILE" for each file, read through mmap (page faults,
 * as a dynamic loader reads a library), not read(2).  Built static at test time so that it
 * runs inside a busybox container (tests/integration/containerd_takeover.sh). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int rc = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		int fd = open(argv[i], O_RDONLY);
		if (fd < 0 || fstat(fd, &st) < 0) {
			perror(argv[i]);
			rc = 1;
			continue;
		}
		uint64_t h = 14695981039346656037ull;
		if (st.st_size > 0) {
			const uint8_t *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
			if (p == MAP_FAILED) {
				perror(argv[i]);
				rc = 1;
				close(fd);
				continue;
			}
			/* A failed page-in is SIGBUS: the container's loop logs the exit status. */
			for (off_t k = 0; k < st.st_size; k++)
				h = (h ^ p[k]) * 1099511628211ull;
			munmap((void *)p, (size_t)st.st_size);
		}
		close(fd);
		printf("%016llx %s\n", (unsigned long long)h, argv[i]);
	}
	return rc;
}
