/* Loading an image's lazy layers while containerd still resolves it.
 *
 * Under containerd's CRI plugin (as kubelet pulls), the first Prepare of a pull comes about
 * 0.25 s after the PullImage (measured on the bench's default link, 2026-12-06): containerd
 * resolves the tag, fetches the manifest and the config, and only then asks for the first
 * snapshot.  A snapshotter that waits for that Prepare starts its first TOC fetch then.  The
 * CRI proxy (daemon/cri_proxy.h) sees the PullImage itself: for each, this fetches the
 * image's manifest (linux/amd64's of an index, as the daemon's other manifest fetches; with
 * the pull's own credentials, which the proxy gave the registry already) and hands its
 * layers to sg_remote_hold, so that their TOCs, profile replays and entry programs start at
 * once, beside containerd's own resolving.  Only a hint: every
 * byte is verified as always, a Prepare naming another TOC digest is refused and pulled by
 * containerd, and nothing held outlives the PullImage's answer.
 *
 * Everything runs on the loop.  Nothing here keeps credentials. */
#ifndef STARGZD_PULL_AHEAD_H
#define STARGZD_PULL_AHEAD_H

#include <stdbool.h>

struct sg_loop;
struct sg_registry;
struct sg_remote;

struct sg_pull_ahead_ctx {
	struct sg_registry *registry;
	struct sg_remote *remote;
	/* Skip Docker Hub, where the extra manifest GET counts against the pull rate limit. */
	bool skip_docker_hub;
};

/* A PullImage of `image` (normalized) went to containerd: its manifest is fetched and its
 * layers held (sg_remote_hold).  Returns the token for sg_pull_ahead_end, NULL when nothing
 * started (skipped, or no memory). */
void *sg_pull_ahead_start(const struct sg_pull_ahead_ctx *ctx, const char *image);
/* Its answer came (pulled: OK): the layers are let go (a manifest still on its way is
 * dropped when it comes).  Once per token. */
void sg_pull_ahead_end(void *token, bool pulled);

#endif
