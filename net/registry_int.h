/* The registry client's parts, for the modules that implement its requests (net/blob.c,
 * net/manifest_fetch.c); not for use outside net/.
 *
 * A request object that points at the registry holds it (sg_registry_hold) until it is
 * freed, so that sg_registry_busy() stays true and sg_registry_free refuses meanwhile. */
#ifndef STARGZD_NET_REGISTRY_INT_H
#define STARGZD_NET_REGISTRY_INT_H

#include <stdbool.h>

#include "net/registry.h"

struct sg_endpoints;
struct sg_exchanges;

struct sg_loop *sg_registry_loop(const struct sg_registry *r);
struct sg_endpoints *sg_registry_endpoints(struct sg_registry *r);
struct sg_exchanges *sg_registry_exchanges(struct sg_registry *r);
/* After sg_registry_shutdown: new requests are refused with -ECANCELED. */
bool sg_registry_closing(const struct sg_registry *r);
void sg_registry_hold(struct sg_registry *r);
void sg_registry_release(struct sg_registry *r);

#endif
