/* Which JSON library should parse the eStargz TOC?  Parses the same 100k-entry
 * node_modules-shaped TOC with cJSON (DOM), jansson (DOM) and yajl (callbacks, no DOM),
 * each in a forked child, and prints time and peak heap growth (VmHWM delta) per library.
 * Each parser must also walk the entries and read the fields the index needs, so the DOM
 * libraries are not credited for work they defer.
 *
 * Built and run by tools/bench/toc-load.sh (it links -lcjson -ljansson, which the
 * daemon does not). */
#include <cjson/cJSON.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

#include "tests/helpers/esgz_build.h"

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

int main(int argc, char **argv)
{
	unsigned nfiles = argc > 1 ? (unsigned)atoi(argv[1]) : 100000;
	struct esgz_b b;
	struct esgz_buf j = { 0 };
	static const struct { const char *name; int (*fn)(const char *, size_t); } libs[] = {
		{ "cjson", run_cjson }, { "jansson", run_jansson }, { "yajl", run_yajl },
	};

	esgz_init(&b, 1);
	esgz_gen_node_modules(&b, nfiles, 42);
	esgz_buf_printf(&j, "{\"version\":1,\"entries\":[%s]}", (char *)b.toc.p);
	printf("TOC: %d entries, %zu bytes of JSON\n", b.nentries, j.len);
	esgz_done(&b);
	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			double best = 1e9;
			long hwm0 = vm_kb("VmHWM:");
			for (int rep = 0; rep < 3; rep++) {
				double t0 = now_ms();
				if (libs[i].fn((const char *)j.p, j.len) < 0) {
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
			       (hwm1 - hwm0) * 1024.0 / nfiles);
			fflush(stdout);
			_exit(0);
		}
		int st;
		waitpid(pid, &st, 0);
	}
	free(j.p);
	return 0;
}
