/* The few structures of the kernel's FUSE protocol that the FUSE mount (fs/lazyfs.c) needs
 * beyond what libfuse lets it reach, spelled out as the kernel's include/uapi/linux/fuse.h
 * defines them (header-only).
 *
 * Protocol 7.40 (Linux 6.9) lets the server answer OPEN with a "backing id": the kernel then
 * reads that file directly, through its own page cache, and never asks us (fs/passthrough.h).
 * libfuse 3.14's headers predate it.  The request and reply headers also let the mount see
 * every request and reply go by (fs/fuse_watchdog.h). */
#ifndef STARGZD_FS_FUSE_KABI_H
#define STARGZD_FS_FUSE_KABI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

#define K_FUSE_INIT 26u
#define K_FUSE_INIT_EXT (1u << 30)
#define K_FUSE_PASSTHROUGH_HI (1u << (37 - 32))   /* FUSE_PASSTHROUGH, in flags2 */
#define K_FOPEN_PASSTHROUGH (1u << 7)

/* Opcodes the kernel expects no reply to. */
#define K_FUSE_FORGET 2u
#define K_FUSE_INTERRUPT 36u
#define K_FUSE_NOTIFY_REPLY 41u
#define K_FUSE_BATCH_FORGET 42u

/* Protocol 7.40 (Linux 6.9): a notification (a reply header with unique 0 and the code in
 * `error`) that makes the kernel queue again every request a server read but did not
 * answer; the copies carry FUSE_UNIQUE_RESEND in their unique.  A server that takes over a
 * session whose previous server died sends it once before serving. */
#define K_FUSE_NOTIFY_RESEND 7
#define K_FUSE_UNIQUE_RESEND (1ull << 63)

struct k_in_header {
	uint32_t len, opcode;
	uint64_t unique, nodeid;
	uint32_t uid, gid, pid;
	uint16_t total_extlen, padding;
};
struct k_init_in {
	uint32_t major, minor, max_readahead, flags, flags2;
	uint32_t unused[11];
};
struct k_out_header {
	uint32_t len;
	int32_t error;
	uint64_t unique;
};
struct k_init_out {
	uint32_t major, minor, max_readahead, flags;
	uint16_t max_background, congestion_threshold;
	uint32_t max_write, time_gran;
	uint16_t max_pages, map_alignment;
	uint32_t flags2, max_stack_depth;
	uint32_t unused[6];
};
struct k_open_out {
	uint64_t fh;
	uint32_t open_flags;
	int32_t backing_id;
};
struct k_backing_map {
	int32_t fd;
	uint32_t flags;
	uint64_t padding;
};
#define K_FUSE_DEV_IOC_BACKING_OPEN _IOW(229, 1, struct k_backing_map)
#define K_FUSE_DEV_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)
_Static_assert(sizeof(struct k_in_header) == 40, "fuse_in_header");
_Static_assert(sizeof(struct k_init_out) == 64, "fuse_init_out");
_Static_assert(offsetof(struct k_init_out, max_stack_depth) == 36, "fuse_init_out.max_stack_depth");
_Static_assert(sizeof(struct k_open_out) == 16, "fuse_open_out");

#endif
