/* containerd.services.snapshots.v1.Snapshots over gRPC: unpacks each request (protobuf-c),
 * runs it against the snapshot store and answers with the reply or a gRPC status that
 * containerd maps back to its errdefs. */
#ifndef STARGZD_SNAPSHOT_RPC_H
#define STARGZD_SNAPSHOT_RPC_H

#include <stddef.h>

#include "daemon/grpc.h"

/* The method table for sg_grpc_server_new(); the server's userdata is the snapshot store. */
extern const struct sg_grpc_method sg_snapshot_methods[];
extern const size_t sg_snapshot_methods_count;

#endif
