/* An image's entry programs: what its container runs first, read from the image config
 * (Entrypoint, then Cmd; PATH from Env, WorkingDir), so that their first chunks are fetched
 * while containerd still creates the container (issue #13, "start before containerd asks").
 *
 * Most containers run their image's own command.  Its program is the first file the
 * workload reads after the loader and libc, and usually the largest one of the start
 * (python3.11's first chunk: 1.9 MB, which waited 0.2-0.3 s behind the link in every
 * unoptimized python run).  The config names it; containerd does not tell a snapshotter,
 * so the daemon fetches the config itself, with the credentials it pulls with, once per
 * image, the first time it mounts one of its layers.
 *
 * The programs: argv[0] of Entrypoint + Cmd; when that is a shell run as `sh -c STRING`,
 * also the commands of STRING (words in command position: after ; & | && || ( ) or a
 * newline, skipping assignments, redirections, keywords, the shell's builtins, and looking
 * through exec/command/env/nohup).  A name without '/' becomes one candidate path per PATH
 * directory, in PATH order (the first that a layer has is the one run); a relative path is
 * taken from WorkingDir.  Only a hint: nothing here is trusted beyond choosing what to fetch
 * ahead, and every fetched byte is verified as always.
 *
 * A continuation in the loop's shape (daemon/core/loop.h).  Nothing here logs.
 */
#ifndef STARGZD_IMAGE_ENTRY_H
#define STARGZD_IMAGE_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"
#include "daemon/core/loop.h"

struct sg_registry;

/* An image config larger than this is refused (configs with a long history are tens of
 * kB). */
#define SG_IMAGE_CONFIG_MAX ((size_t)1 << 20)
/* Commands taken from one config at most, and candidate paths in all. */
#define SG_ENTRY_COMMANDS_MAX 8
#define SG_ENTRY_PATHS_MAX 64
#define SG_ENTRY_PATH_MAX 256

struct sg_image_entry {
	size_t n;
	struct {
		char path[SG_ENTRY_PATH_MAX];   /* absolute */
		uint8_t command;                /* candidates of one command share it */
	} p[SG_ENTRY_PATHS_MAX];
};

/* Parses an image config (JSON, len bytes) into *ret.  0 (possibly with no path: no
 * command, or only builtins), -EBADMSG with err saying why (not JSON, "config" not an
 * object, Entrypoint, Cmd or Env not a list of strings), -E2BIG (above SG_IMAGE_CONFIG_MAX
 * or too deep), -ENOMEM.  Paths that do not fit SG_ENTRY_PATH_MAX are left out. */
int sg_image_entry_parse(const char *json, size_t len, struct sg_image_entry *ret,
			 struct sg_error *err);

/* Fetches the config of image `ref` (its manifest for `platform`, NULL = linux/amd64, then
 * the config blob by the manifest's descriptor: size and sha256 verified, at most
 * SG_IMAGE_CONFIG_MAX) and parses it.  cb(op) runs once from the loop: op->res 0 with *ret
 * filled, or a negative errno with err saying why.  Returns 0, or -EINVAL / -ENOMEM /
 * -EBUSY / -ECANCELED at once (cb never runs).  sg_registry_shutdown ends it with
 * -ECANCELED. */
int sg_image_entry_fetch(struct sg_loop *loop, struct sg_registry *registry, const char *ref,
			 const char *platform, struct sg_image_entry *ret, struct sg_error *err,
			 struct sg_op *op, sg_op_cb cb);

#endif
