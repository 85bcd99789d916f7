/* Replays the checked-in corpus of the grpc_server fuzz target (tests/fuzz/grpc_server/) without
 * libFuzzer, so every `make check` build (the ASan+UBSan one included) runs the whole server
 * on those inputs.  The target abort()s on a broken invariant or a hang. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>

#define LLVMFuzzerTestOneInput fuzz_grpc_server
#include "tests/fuzz/grpc_server/fuzz.c"
#undef LLVMFuzzerTestOneInput

#include "tests/unit/test.h"

/* Each file whole, plus about 32 of its prefixes (truncated conversations). */
TEST(corpus_grpc_server)
{
	const char *top = getenv("STARGZD_TOP");
	char dir[4096];
	int files = 0;

	snprintf(dir, sizeof(dir), "%s/tests/fuzz/grpc_server/corpus", top ? top : ".");
	DIR *d = opendir(dir);
	if (!d)
		SKIP("no corpus at %s (run from the repository root or set STARGZD_TOP)", dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		char path[8192];
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20))
			continue;
		FILE *f = fopen(path, "rb");
		CHECK(f != NULL);
		uint8_t *buf = malloc((size_t)st.st_size + 1);
		size_t n = fread(buf, 1, (size_t)st.st_size, f);
		fclose(f);
		size_t step = n / 32 ? n / 32 : 1;
		for (size_t k = 1; k <= n; k = k == n ? n + 1 : (k + step > n ? n : k + step)) {
			uint8_t *in = malloc(k);
			memcpy(in, buf, k);
			fuzz_grpc_server(in, k);
			free(in);
		}
		free(buf);
		files++;
	}
	closedir(d);
	CHECK(files > 0);
}

TEST_MAIN()
