/* The CRI image-service proxy (stargz-snapshotter's [cri_keychain]): kubelet, started with
 * --image-service-endpoint=unix://LISTEN_PATH, sends runtime.v1.ImageService calls here;
 * each is forwarded as it is to containerd's CRI socket (image_service_path) and its answer
 * returned.  The credentials of a PullImage (its AuthConfig: username and password, or
 * "auth") are kept for the image's registry host (net/registry.h
 * sg_registry_give_credentials), so that the lazy layers of that image are fetched with
 * them.  Credentials never reach a log line or a metric: the proxy logs nothing of a request.
 * Everything runs on the loop (daemon/grpc.h server, daemon/grpc_client.h client). */
#ifndef STARGZD_CRI_PROXY_H
#define STARGZD_CRI_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/error.h"

struct sg_loop;
struct sg_registry;
struct sg_cri_proxy;

/* Listens on listen_path (mode 0660) and forwards to image_service_path (both must outlive
 * the proxy).  registry may be NULL (lazy pulling off: nothing to give credentials to). */
int sg_cri_proxy_new(struct sg_loop *loop, const char *listen_path, const char *image_service_path,
		     struct sg_registry *registry, struct sg_cri_proxy **ret, struct sg_error *err);
/* Told of each PullImage the proxy forwards, so that the image's lazy layers can be loaded
 * while containerd still resolves it (daemon/pull_ahead.h): started(ctx, image) right after
 * the call went to containerd (image normalized as containerd's CRI plugin names it, the
 * call's credentials given to the registry already) returns a token, NULL for none;
 * ended(token, pulled) runs once, when the call's answer came or it failed (containerd answers a
 * PullImage after every layer was prepared).  Set before the first call. */
struct sg_cri_pull_hooks {
	void *(*started)(void *ctx, const char *image);
	void (*ended)(void *token, bool pulled);   /* pulled: answered OK */
	void *ctx;
};
void sg_cri_proxy_set_pull_hooks(struct sg_cri_proxy *p, const struct sg_cri_pull_hooks *h);
/* Stops accepting; calls still forwarded are answered UNAVAILABLE at once (kubelet retries);
 * done runs from the loop when nothing is left. */
void sg_cri_proxy_shutdown(struct sg_cri_proxy *p, void (*done)(void *userdata), void *userdata);
void sg_cri_proxy_free(struct sg_cri_proxy *p);

/* What a PullImageRequest carries (exposed for the unit test): the image and the
 * credentials, each NUL-terminated; "" when absent.  0 or -EBADMSG. */
struct sg_cri_pull {
	char image[512];
	char username[256], password[256], auth[1024], server_address[256];
};
int sg_cri_parse_pull(const uint8_t *msg, size_t len, struct sg_cri_pull *ret);

/* The other side of a pull, for a CRI client (tools/cri-pull): a PullImageRequest for
 * `image` into buf (its length, or -ENOSPC); and the image_ref of a PullImageResponse into
 * image_ref (NUL-terminated; 0, -ENOENT when it has none, -EBADMSG). */
int sg_cri_build_pull(const char *image, uint8_t *buf, size_t cap);
int sg_cri_parse_pull_reply(const uint8_t *msg, size_t len, char *image_ref, size_t cap);

#endif
