/* containerd.services.snapshots.v1.Snapshots over gRPC: unpacks each request (protobuf-c),
 * runs it against the snapshot store and answers with the reply or a gRPC status that
 * containerd maps back to its errdefs. */
#ifndef STARGZD_SNAPSHOT_RPC_H
#define STARGZD_SNAPSHOT_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/grpc.h"

struct sg_fdstore;
struct sg_held_fd;
struct sg_snapshots;
struct sg_remote;
struct sg_loop;
struct sg_snapshot_service;

/* The service: the snapshot store plus, when remote is not NULL, lazy mounting of remote
 * layers on Prepare (falling back to the plain path when a layer cannot be mounted).  It
 * also mounts again, at start, the remote snapshots a previous run left. */
int sg_snapshot_service_new(struct sg_loop *loop, struct sg_snapshots *snapshots,
			    struct sg_remote *remote, struct sg_snapshot_service **ret);
void sg_snapshot_service_free(struct sg_snapshot_service *svc);
/* Mounts every remote snapshot of the store again (after a restart); failures are logged and
 * retried periodically, and until then containers cannot be created on top of them. */
void sg_snapshot_service_restore(struct sg_snapshot_service *svc);
/* Sessions a previous daemon left held (daemon/fdstore.h; the array is the service's from
 * here on): the next sg_snapshot_service_restore takes each over for its snapshot
 * (sg_remote_adopt) and ends those that belong to no remote snapshot.  Logs how long the
 * takeover took since start_ns (sg_now_ns() at the daemon's start). */
void sg_snapshot_service_take_over(struct sg_snapshot_service *svc, struct sg_fdstore *st,
				   struct sg_held_fd *held, size_t n, uint64_t start_ns);
/* Stops retries and unmounts every lazy layer, or with keep_mounts hands over those the
 * fdstore keeps (they stay mounted for the next daemon); done runs from the loop. */
void sg_snapshot_service_shutdown(struct sg_snapshot_service *svc, bool keep_mounts,
				  void (*done)(void *), void *ud);

/* The method table for sg_grpc_server_new(); the server's userdata is the service. */
extern const struct sg_grpc_method sg_snapshot_methods[];
extern const size_t sg_snapshot_methods_count;

#endif
