/* esgz_hostile KIND OUT: writes a small eStargz blob to OUT and prints its TOC digest (the
 * digest a publisher would have signed off, so the blob mounts) on stdout.  KIND:
 *
 *   good        big.bin (3 chunks of 64 KiB + a bit), small.txt, other.bin (1 chunk)
 *   tampered    the same, with one byte of big.bin's middle chunk flipped inside its gzip
 *               member and the member's CRC fixed: the member decompresses cleanly, only
 *               the chunk digest can tell
 *
 * The content of big.bin is deterministic: byte i is (i * 131 + (i >> 12)) & 0xff, so a
 * test can compute its expected hash.  Used by tests/integration/lazy_mount_faults.sh. */
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/digest.h"
#include "tests/helpers/esgz_build.h"

#define CHUNK (64u * 1024)
#define BIG_LEN (3 * CHUNK + 777)

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

int main(int argc, char **argv)
{
	static uint8_t big[BIG_LEN], other[40000];
	struct esgz_b b;
	struct sg_digest d;
	char hex[SG_DIGEST_STRLEN + 1];
	size_t middle = 0;

	if (argc != 3 || (strcmp(argv[1], "good") && strcmp(argv[1], "tampered"))) {
		fprintf(stderr, "usage: esgz_hostile good|tampered OUT\n");
		return 2;
	}
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 131 + (i >> 12));
	for (size_t i = 0; i < sizeof(other); i++)
		other[i] = (uint8_t)(i * 7 + 3);
	/* Level 0: stored deflate blocks, so the chunk's bytes sit verbatim in the blob. */
	esgz_init(&b, 0);
	esgz_add(&b, "small.txt", '0', 0644, "small\n", 6, NULL, 0, NULL);
	esgz_add(&b, "big.bin", '0', 0644, big, sizeof(big), NULL, CHUNK, NULL);
	esgz_add(&b, "other.bin", '0', 0644, other, sizeof(other), NULL, 0, NULL);
	esgz_finish(&b, 0, &d);

	if (strcmp(argv[1], "tampered") == 0) {
		/* The middle chunk's member: find it by its stored bytes (the member holds exactly
		 * the chunk, the next chunk starts a new member). */
		const uint8_t *want = big + CHUNK;
		for (size_t off = 0; off + CHUNK <= b.blob.len; off++)
			if (b.blob.p[off] == 0x1f && off + 15 + 256 <= b.blob.len &&
			    b.blob.p[off + 1] == 0x8b && memcmp(b.blob.p + off + 15, want, 256) == 0) {
				middle = off;
				break;
			}
		if (!middle) {
			fprintf(stderr, "esgz_hostile: middle chunk not found\n");
			return 1;
		}
		/* gzip header (10) + stored block header (5), then data; the first stored block
		 * holds at most 65535 bytes, so offset 1000 is inside it. */
		uint8_t *data = b.blob.p + middle + 15;
		data[1000] ^= 0x01;
		/* Recompute the member's CRC over the chunk as it now decompresses. */
		uint8_t *chunk = malloc(CHUNK);
		if (!chunk)
			return 1;
		memcpy(chunk, big + CHUNK, CHUNK);
		chunk[1000] ^= 0x01;
		uint32_t crc = libdeflate_crc32(0, chunk, CHUNK);
		free(chunk);
		/* Two stored blocks (65535 + 1 bytes): the trailer follows the second. */
		size_t trailer = middle + 10 + 5 + 65535 + 5 + 1;
		put_le32(b.blob.p + trailer, crc);
	}
	FILE *f = fopen(argv[2], "w");
	if (!f || fwrite(b.blob.p, 1, b.blob.len, f) != b.blob.len || fclose(f) != 0) {
		perror(argv[2]);
		return 1;
	}
	sg_digest_format(&d, hex);
	printf("%s\n", hex);
	esgz_done(&b);
	return 0;
}
