/* libFuzzer target: manifest/index parsing and platform selection, plus the other JSON-facing
 * net/ parsers (token responses, Docker config.json, referrers indexes and artifact manifests
 * with their embedded content), which share the bounded yajl front end.  Byte 0 picks the
 * Content-Type and the parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/digest.h"
#include "net/auth.h"
#include "net/manifest.h"
#include "net/referrers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Embedded content handed out is the descriptor's, always. */
static void check_data(const struct sg_oci_desc *d, struct sg_oci_data *data)
{
	char got[SG_DIGEST_STRLEN + 1];
	struct sg_digest dg;

	if (data->bytes) {
		if (data->rejected || d->size > SG_OCI_DATA_MAX)
			abort();
		sg_sha256(data->bytes, (size_t)d->size, &dg);
		sg_digest_format(&dg, got);
		if (strcmp(got, d->digest) != 0)
			abort();
	}
	sg_oci_data_free(data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const cts[] = { NULL, "", SG_MT_OCI_INDEX, SG_MT_OCI_MANIFEST,
					   SG_MT_DOCKER_LIST, SG_MT_DOCKER_MANIFEST,
					   "application/json; charset=utf-8" };
	if (size < 1)
		return 0;
	unsigned sel = data[0];
	const char *json = (const char *)data + 1;
	size_t len = size - 1;
	char *copy = malloc(len ? len : 1);
	memcpy(copy, json, len);

	if ((sel & 0xc0) == 0x40) {
		struct sg_auth_token t;
		if (sg_auth_parse_token(copy, len, &t) == 0) {
			if (!t.token || !*t.token || t.expires_in < 60)
				abort();
			sg_auth_token_done(&t);
		}
	} else if ((sel & 0xc0) == 0x80) {
		struct sg_docker_config *cfg = NULL;
		struct sg_error e = { 0 };
		if (sg_docker_config_parse(copy, len, &cfg, &e) == 0) {
			static const char *const hosts[] = { "docker.io", "ghcr.io", "localhost:5000" };
			for (size_t i = 0; i < 3; i++) {
				struct sg_docker_cred c;
				if (sg_docker_config_lookup(cfg, hosts[i], &c) == 0)
					sg_docker_cred_done(&c);
			}
			sg_docker_config_free(cfg);
		}
	} else if ((sel & 0xe0) == 0xe0) {
		static const char *const type = "application/vnd.stargzd.profile.v1+json";
		struct sg_oci_desc d;
		struct sg_oci_data dd = { 0 };
		struct sg_error e = { 0 };
		if (sg_referrers_pick(copy, len, type, &d, &dd, &e) == 0)
			check_data(&d, &dd);
		else if (dd.bytes || e.msg[0] == '\0')
			abort();
		dd = (struct sg_oci_data){ 0 };
		if (sg_artifact_manifest_check(copy, len, type,
					       "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
					       type, 1 << 20, &d, &dd, &e) == 0)
			check_data(&d, &dd);
		else if (dd.bytes)
			abort();
	} else {
		struct sg_manifest *m = NULL;
		struct sg_error e = { 0 };
		int r = sg_manifest_parse(copy, len, cts[sel % 7], &m, &e);
		if (r == 0) {
			if (m->kind == SG_MANIFEST_INDEX) {
				static const char *const plats[] = { "linux/amd64", "linux/arm/v7",
								     "linux/arm64", "windows/amd64/v3" };
				for (size_t i = 0; i < 4; i++) {
					struct sg_platform p;
					if (sg_platform_parse(plats[i], &p) != 0)
						abort();
					int s = sg_manifest_select(m, &p, &e);
					if (s >= 0 && (size_t)s >= m->nmanifests)
						abort();
				}
			} else {
				for (size_t i = 0; i < m->nlayers; i++) {
					(void)sg_layer_compression(m->layers[i].media_type);
					if (m->layers[i].toc_digest &&
					    strncmp(m->layers[i].toc_digest, "sha", 3) != 0)
						abort();
				}
			}
			sg_manifest_free(m);
		} else if (m != NULL || e.msg[0] == '\0') {
			abort();
		}
	}
	free(copy);
	return 0;
}
