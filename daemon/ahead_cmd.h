/* `stargzd pull-ahead IMAGE [--] COMMAND [ARG...]`: a pull client run with the image's lazy
 * layers loading ahead of its first Prepare.
 *
 * A pull client resolves the image (tag, manifest, config) before it asks the snapshotter for
 * anything: `ctr-remote images rpull` takes 0.32-0.35 s from its start to containerd's first
 * Prepare on the bench's default link and 0.61-0.65 s on the far one, and the snapshotter can
 * do nothing meanwhile.  The CRI proxy closes that gap for kubelet's pulls
 * (daemon/pull_ahead.h); this closes it for a command line.  The command asks the daemon, on
 * its control socket, to start the image's pull ahead (its manifest, then sg_remote_hold: the
 * TOCs, profile replays, entry programs), runs COMMAND, and when COMMAND exits tells the
 * daemon whether it succeeded; the hold ends then.  If the daemon cannot be reached, or does
 * not take the image, COMMAND runs anyway, only without the head start.  The exit status is
 * COMMAND's.
 *
 * The daemon side keeps the pulls started this way, each with an id.  One that nobody ends
 * (the command was killed) is let go after its time to live (`--hold`, 600 s by default, at
 * most an hour), on the daemon's periodic timer; every one at shutdown.  Nothing from the
 * early manifest is trusted more than from the CRI proxy's: every byte is verified against
 * its TOC digest, and containerd's own Prepare decides what is mounted. */
#ifndef STARGZD_AHEAD_CMD_H
#define STARGZD_AHEAD_CMD_H

#include <stdint.h>
#include <stdio.h>

#include "daemon/httpd.h"
#include "daemon/pull_ahead.h"

#define SG_AHEAD_PULLS_MAX 64
#define SG_AHEAD_HOLD_DEFAULT_S 600u
#define SG_AHEAD_HOLD_MAX_S 3600u

struct sg_ahead_pulls;

/* The daemon's table; ctx is copied (its registry and remote must outlive the table). */
int sg_ahead_pulls_new(const struct sg_pull_ahead_ctx *ctx, struct sg_ahead_pulls **ret);
/* GET /pull-ahead?image=REF[&hold=SECONDS]: starts one, writes its id and a newline to out.
 * -EINVAL: no image or a bad one (nothing started); -ENOSPC: SG_AHEAD_PULLS_MAX are held. */
int sg_ahead_pulls_start(struct sg_ahead_pulls *a, const char *query, FILE *out, uint64_t now_ns);
/* GET /pull-ahead-end?id=N&pulled=0|1: ends it (its layers let go; pulled says whether the
 * command succeeded).  -ENOENT: no such id (ended already, or let go past its time). */
int sg_ahead_pulls_end(struct sg_ahead_pulls *a, const char *query, FILE *out);
/* The resolve hook (`resolve_hook_address`): a host listed before the registry in
 * containerd's hosts.toml (capabilities "pull" and "resolve"), so that containerd's resolver
 * asks it first, as `HEAD /v2/NAME/manifests/REFERENCE?ns=REGISTRY`, whenever a pull of an
 * image of that registry starts (ctr with --hosts-dir, nerdctl, the CRI plugin's
 * config_path, BuildKit).  It answers 404 to everything, so containerd goes on to the next
 * host at once; a HEAD of a manifest also starts holding NS/NAME:REFERENCE (or @digest) as
 * `stargzd pull-ahead` does, for SG_AHEAD_HOOK_HOLD_S (nobody tells the hook when the pull
 * ends; containerd's Prepares take the layers long before).  A HEAD of the same image while
 * it is held extends the hold instead of starting another.  Returns the HTTP status (404). */
#define SG_AHEAD_HOOK_HOLD_S 120u
int sg_ahead_pulls_hook(struct sg_ahead_pulls *a, const struct sg_httpd_req *req, FILE *out,
			uint64_t now_ns);
/* The image a hook request names, "NS/NAME:TAG" or "NS/NAME@DIGEST", into image.  0,
 * -ENOENT (no ns: containerd before 1.5, or a path override), -EINVAL (not
 * /v2/NAME/manifests/REFERENCE, or a bad name, reference or ns), -ENAMETOOLONG. */
int sg_ahead_hook_image(const char *path, const char *query, char *image, size_t cap);

/* Ends those held past their time at now_ns.  NULL is fine. */
void sg_ahead_pulls_expire(struct sg_ahead_pulls *a, uint64_t now_ns);
/* Ends every one still held (not pulled) and frees the table.  NULL is fine. */
void sg_ahead_pulls_free(struct sg_ahead_pulls *a);

/* The command: argv[0] is "pull-ahead".  Returns the process exit code. */
int sg_pull_ahead_command(int argc, char **argv);

#endif
