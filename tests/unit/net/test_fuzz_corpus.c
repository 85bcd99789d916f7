/* Replays the checked-in fuzz corpora (tests/fuzz/NAME/corpus/) through the fuzz targets
 * without libFuzzer, so that `make check` exercises them in every build, including the
 * ASan+UBSan one (the systemd fuzz-main.c idea).  The targets abort() on a broken invariant. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>

#define LLVMFuzzerTestOneInput fuzz_http1
#include "tests/fuzz/http1/fuzz.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_hosts_toml
#include "tests/fuzz/hosts_toml/fuzz.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_manifest
#include "tests/fuzz/manifest/fuzz.c"
#undef LLVMFuzzerTestOneInput

#include "tests/unit/test.h"

/* Runs every file of tests/fuzz/NAME/corpus through fn, plus every prefix of each (cheap, and
 * it turns each seed into many truncated inputs).  Returns the number of files. */
static int replay(const char *name, int (*fn)(const uint8_t *, size_t))
{
	const char *top = getenv("STARGZD_TOP");
	char dir[4096];
	int files = 0;

	snprintf(dir, sizeof(dir), "%s/tests/fuzz/%s/corpus", top ? top : ".", name);
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
		for (size_t k = 0; k <= n; k++) {
			/* An exact-size copy per run, so that over-reads are caught by ASan. */
			uint8_t *in = malloc(k ? k : 1);
			memcpy(in, buf, k);
			fn(in, k);
			free(in);
		}
		free(buf);
		files++;
	}
	closedir(d);
	return files;
}

TEST(corpus_http1)
{
	CHECK(replay("http1", fuzz_http1) > 0);
}

TEST(corpus_hosts_toml)
{
	CHECK(replay("hosts_toml", fuzz_hosts_toml) > 0);
}

TEST(corpus_manifest)
{
	CHECK(replay("manifest", fuzz_manifest) > 0);
}

TEST_MAIN()
