/* Which JSON library should parse the eStargz TOC?  Parses the TOC of an eStargz blob (by
 * default the 100k-entry node_modules-shaped layer tools/toc-bench -o writes) with cJSON
 * (DOM), jansson (DOM) and yajl (callbacks, no DOM), each in a forked child, and prints time
 * and peak heap growth (VmHWM delta) per library.  Each parser must also walk the entries
 * and read the fields the index needs, so the DOM libraries are not credited for work they
 * defer.
 *
 *   json-compare BLOB
 *
 * The TOC JSON is taken from the blob by the daemon's own loader (fs/estargz.h, keep_json;
 * unverified: the blob is our own).
 * Built and run by tools/bench/toc-load.sh (it links -lcjson -ljansson, which the daemon
 * does not, and build/libstargzd.a). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

#include "fs/estargz.h"
#include "fs/gz.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long vm_kb(const char *key)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0)
			v = atol(line + strlen(key));
	fclose(f);
	return v;
}

static unsigned long long sink;

static int run_cjson(const char *j, size_t n)
{
	cJSON *root = cJSON_ParseWithLength(j, n);
	if (!root)
		return -1;
	cJSON *ents = cJSON_GetObjectItemCaseSensitive(root, "entries"), *e;
	cJSON_ArrayForEach(e, ents) {
		cJSON *f;
		cJSON_ArrayForEach(f, e) {
			if (cJSON_IsString(f))
				sink += strlen(f->valuestring);
			else if (cJSON_IsNumber(f))
				sink += (unsigned long long)f->valuedouble;
		}
	}
	printf("  (DOM resident after parse: VmRSS %ld kB)\n", vm_kb("VmRSS:"));
	cJSON_Delete(root);
	return 0;
}

static int run_jansson(const char *j, size_t n)
{
	json_error_t err;
	json_t *root = json_loadb(j, n, 0, &err);
	if (!root)
		return -1;
	json_t *ents = json_object_get(root, "entries"), *e;
	size_t i;
	json_array_foreach(ents, i, e) {
		const char *k;
		json_t *v;
		json_object_foreach(e, k, v) {
			if (json_is_string(v))
				sink += json_string_length(v);
			else if (json_is_integer(v))
				sink += (unsigned long long)json_integer_value(v);
		}
	}
	printf("  (DOM resident after parse: VmRSS %ld kB)\n", vm_kb("VmRSS:"));
	json_decref(root);
	return 0;
}

static int y_str(void *ctx, const unsigned char *s, size_t l) { sink += l; return 1; }
static int y_num(void *ctx, const char *s, size_t l) { sink += strtoull(s, NULL, 10); return 1; }
static int y_key(void *ctx, const unsigned char *s, size_t l) { sink += s[0]; return 1; }
static int y_any(void *ctx) { return 1; }
static int y_bool(void *ctx, int b) { return 1; }

static int run_yajl(const char *j, size_t n)
{
	yajl_callbacks cb = { .yajl_null = y_any, .yajl_boolean = y_bool, .yajl_number = y_num,
			      .yajl_string = y_str, .yajl_start_map = y_any, .yajl_map_key = y_key,
			      .yajl_end_map = y_any, .yajl_start_array = y_any,
			      .yajl_end_array = y_any };
	yajl_handle h = yajl_alloc(&cb, NULL, NULL);
	int ok = yajl_parse(h, (const unsigned char *)j, n) == yajl_status_ok &&
		 yajl_complete_parse(h) == yajl_status_ok;
	yajl_free(h);
	return ok ? 0 : -1;
}

/* The verified TOC JSON of the blob at path (malloc'd), or NULL. */
static char *load_toc_json(const char *path, size_t *ret_len, unsigned *ret_nodes)
{
	struct sg_esgz_options o = { .keep_json = true, .skip_verify = true };   /* no digest given */
	struct sg_error err = { 0 };
	struct sg_toc *toc = NULL;
	struct sg_gz *gz = NULL;
	char *json = NULL;
	const void *j;
	struct stat st;
	void *blob = MAP_FAILED;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0 ||
	    (blob = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0)) == MAP_FAILED) {
		fprintf(stderr, "json-compare: %s: %s\n", path, strerror(errno));
		goto out;
	}
	if (sg_gz_new(&gz) < 0 ||
	    sg_esgz_load_blob(gz, blob, (size_t)st.st_size, &o, &toc, &err) < 0 ||
	    !sg_toc_json(toc, &j, ret_len)) {
		fprintf(stderr, "json-compare: %s: no TOC: %s\n", path, err.msg);
		goto out;
	}
	json = malloc(*ret_len);
	if (json)
		memcpy(json, j, *ret_len);
	*ret_nodes = sg_toc_count(toc);
out:
	sg_toc_free(toc);
	sg_gz_free(gz);
	if (blob != MAP_FAILED)
		munmap(blob, (size_t)st.st_size);
	if (fd >= 0)
		close(fd);
	return json;
}

int main(int argc, char **argv)
{
	static const struct { const char *name; int (*fn)(const char *, size_t); } libs[] = {
		{ "cjson", run_cjson }, { "jansson", run_jansson }, { "yajl", run_yajl },
	};
	size_t len = 0;
	unsigned nodes = 0;
	char *json;

	if (argc != 2) {
		fprintf(stderr, "usage: %s BLOB   (an eStargz blob, e.g. from toc-bench -o)\n", argv[0]);
		return 2;
	}
	json = load_toc_json(argv[1], &len, &nodes);
	if (!json)
		return 1;
	malloc_trim(0);   /* the children measure their own peak from here */
	printf("TOC: %u index nodes, %zu bytes of JSON\n", nodes, len);
	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			double best = 1e9;
			long hwm0 = vm_kb("VmHWM:");
			for (int rep = 0; rep < 3; rep++) {
				double t0 = now_ms();
				if (libs[i].fn(json, len) < 0) {
					printf("%s: parse failed\n", libs[i].name);
					fflush(stdout);
					_exit(1);
				}
				double t = now_ms() - t0;
				if (t < best)
					best = t;
			}
			long hwm1 = vm_kb("VmHWM:");
			printf("%-8s parse+walk %7.1f ms (best of 3)  peak heap growth %6.1f MiB  "
			       "(%.0f bytes/entry)\n", libs[i].name, best, (hwm1 - hwm0) / 1024.0,
			       (hwm1 - hwm0) * 1024.0 / nodes);
			fflush(stdout);
			_exit(0);
		}
		int st;
		waitpid(pid, &st, 0);
	}
	free(json);
	return 0;
}
