/* Learned startup profiles, a part of the layer object (fs/layer_int.h): the recorder that
 * notes the order in which a layer's chunks are first read, and the cursor of a replay
 * (sg_layer_replay, fs/layer.h).  The replay's requests are scheduled with prefetch, before
 * it (fs/layer_prefetch.c); the profile itself is fs/profile.h, its store
 * fs/profile_store.h (the owner's). */
#ifndef STARGZD_FS_LAYER_PROFILE_H
#define STARGZD_FS_LAYER_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sg_layer;

/* At sg_layer_new: the recorder when the config asks for one.  0 or -ENOMEM. */
int sg_layer_profile_init(struct sg_layer *l);
/* A reader wants chunk c: the first time, it is recorded. */
void sg_layer_profile_note(struct sg_layer *l, uint32_t c);
/* A new user (a mount, a container): its reads are recorded from now on too. */
void sg_layer_profile_new_user(struct sg_layer *l);
/* At sg_layer_close: what was recorded and not handed to the owner yet goes now. */
void sg_layer_profile_close(struct sg_layer *l);
/* While a replay has requests to send, it counts as a reader of the link (daemon/core/
 * link_meter.h's on-demand account): other layers' background fetch and streams on the link
 * wait for it and for the quiet gap after it, as they do for on-demand reads, and so does
 * this layer's own.  hold: the replay runs; !hold: it is over (done, failed or closing). */
void sg_layer_replay_hold_link(struct sg_layer *l, bool hold);
/* At sg_layer_free. */
void sg_layer_profile_free(struct sg_layer *l);

/* When the recorded workload read the chunks the replay asks for next: ms since its epoch
 * (fs/profile.h), 0 for a profile without times, UINT64_MAX when nothing is left. */
uint64_t sg_layer_replay_due(const struct sg_layer *l);

/* Starts the replay's next request.  The replay goes through the profile a window at a
 * time: the chunks that still need a fetch, in recorded order, up to window_bytes
 * (compressed; what may be in flight at once), sorted into blob order; each request takes
 * the next of them that lie within sg_layer_batch_gap of each other (the bytes between
 * are read along: 64 KiB, cheaper than a round trip; from a vectored source only 4 KiB,
 * the farther ones going in up to SG_LAYER_BATCH_SPANS spans), up to max_bytes (a single
 * larger chunk is one of its own).
 * Returns the chunks it asked for, 0 when the replay is over (every range done or the budget
 * spent), or a negative errno from the fetch (-EAGAIN: no memory now, the same chunks come
 * next time). */
int sg_layer_replay_next(struct sg_layer *l, size_t max_bytes, size_t window_bytes);

#endif
