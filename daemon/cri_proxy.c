/* The CRI image-service proxy.  See cri_proxy.h. */
#include "daemon/cri_proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "daemon/grpc.h"
#include "daemon/grpc_client.h"
#include "daemon/process.h"
#include "net/auth.h"
#include "net/reference.h"
#include "net/registry.h"

#define SERVICE "/runtime.v1.ImageService/"

struct sg_cri_proxy {
	struct sg_loop *loop;
	struct sg_registry *registry;
	struct sg_grpc_server *server;
	struct sg_grpc_client *client;
	int listen_fd;
	char listen_path[108];
	unsigned inflight;               /* forwarded calls not answered yet */
	struct sg_cri_pull_hooks hooks;
	bool server_done;
	void (*done)(void *userdata);
	void *done_userdata;
	struct sg_op done_op;
};

struct fwd {
	struct sg_cri_proxy *p;
	struct sg_grpc_call *call;
	struct sg_op op;
	struct sg_grpc_reply reply;
	void *pull;                      /* hooks.started's token; NULL: none */
};

/* ---- PullImageRequest, read by hand: image = 1 (ImageSpec: image = 1), auth = 2
 * (AuthConfig: username = 1, password = 2, auth = 3, server_address = 4), field numbers of
 * k8s.io/cri-api runtime/v1/api.proto.  Everything else is skipped. ---- */

static int varint(const uint8_t *m, size_t len, size_t *i, uint64_t *ret)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64 && *i < len; shift += 7) {
		uint8_t b = m[(*i)++];
		v |= (uint64_t)(b & 0x7f) << shift;
		if (b < 0x80) {
			*ret = v;
			return 0;
		}
	}
	return -EBADMSG;
}

/* Calls fn for each length-delimited field; skips the others. */
static int fields(const uint8_t *m, size_t len,
		  int (*fn)(void *ud, uint64_t num, const uint8_t *v, size_t vlen), void *ud)
{
	size_t i = 0;

	while (i < len) {
		uint64_t key, n;
		if (varint(m, len, &i, &key) < 0)
			return -EBADMSG;
		switch (key & 7) {
		case 0:
			if (varint(m, len, &i, &n) < 0)
				return -EBADMSG;
			break;
		case 1:
			if (len - i < 8)
				return -EBADMSG;
			i += 8;
			break;
		case 5:
			if (len - i < 4)
				return -EBADMSG;
			i += 4;
			break;
		case 2:
			if (varint(m, len, &i, &n) < 0 || n > len - i)
				return -EBADMSG;
			if (fn(ud, key >> 3, m + i, (size_t)n) < 0)
				return -EBADMSG;
			i += (size_t)n;
			break;
		default:
			return -EBADMSG;
		}
	}
	return 0;
}

static int copy_field(char *out, size_t cap, const uint8_t *v, size_t n)
{
	if (n >= cap || memchr(v, '\0', n))
		return -EBADMSG;
	memcpy(out, v, n);
	out[n] = '\0';
	return 0;
}

static int spec_field(void *ud, uint64_t num, const uint8_t *v, size_t n)
{
	struct sg_cri_pull *r = ud;
	return num == 1 ? copy_field(r->image, sizeof(r->image), v, n) : 0;
}

static int auth_field(void *ud, uint64_t num, const uint8_t *v, size_t n)
{
	struct sg_cri_pull *r = ud;

	switch (num) {
	case 1: return copy_field(r->username, sizeof(r->username), v, n);
	case 2: return copy_field(r->password, sizeof(r->password), v, n);
	case 3: return copy_field(r->auth, sizeof(r->auth), v, n);
	case 4: return copy_field(r->server_address, sizeof(r->server_address), v, n);
	default: return 0;
	}
}

static int pull_field(void *ud, uint64_t num, const uint8_t *v, size_t n)
{
	if (num == 1)
		return fields(v, n, spec_field, ud);
	if (num == 2)
		return fields(v, n, auth_field, ud);
	return 0;
}

int sg_cri_parse_pull(const uint8_t *msg, size_t len, struct sg_cri_pull *ret)
{
	*ret = (struct sg_cri_pull){ 0 };
	return fields(msg, len, pull_field, ret);
}

/* A length-delimited field `num` holding len bytes at buf + at: the key and the length as
 * varints, then the bytes.  The new end, or -ENOSPC. */
static int put_field(uint8_t *buf, size_t cap, size_t at, unsigned num, const void *v,
		     size_t len)
{
	uint64_t head[2] = { (uint64_t)num << 3 | 2, len };

	for (size_t k = 0; k < 2; k++)
		for (uint64_t x = head[k];; x >>= 7) {
			if (at == cap)
				return -ENOSPC;
			buf[at++] = (uint8_t)(x & 0x7f) | (x > 0x7f ? 0x80 : 0);
			if (x <= 0x7f)
				break;
		}
	if (cap - at < len)
		return -ENOSPC;
	memcpy(buf + at, v, len);
	return (int)(at + len);
}

int sg_cri_build_pull(const char *image, uint8_t *buf, size_t cap)
{
	uint8_t spec[600];   /* ImageSpec{image}: an image reference is at most 512 bytes */
	int n = put_field(spec, sizeof(spec), 0, 1, image, strlen(image));

	return n < 0 ? n : put_field(buf, cap, 0, 1, spec, (size_t)n);
}

struct reply_ref {
	char *out;
	size_t cap;
	bool found;
};

static int reply_field(void *ud, uint64_t num, const uint8_t *v, size_t n)
{
	struct reply_ref *r = ud;

	if (num != 1)
		return 0;
	r->found = true;
	return copy_field(r->out, r->cap, v, n);
}

int sg_cri_parse_pull_reply(const uint8_t *msg, size_t len, char *image_ref, size_t cap)
{
	struct reply_ref r = { image_ref, cap, false };

	if (fields(msg, len, reply_field, &r) < 0)
		return -EBADMSG;
	return r.found ? 0 : -ENOENT;
}

/* Keeps a PullImage's credentials for its registry host (and the server_address it names);
 * its image, normalized as containerd's CRI plugin does (docker.io/library/x:latest; a digest
 * without the tag), goes to image ("" when it is not one). */
static void take_pull(struct sg_cri_proxy *p, const uint8_t *msg, size_t len, char *image,
		      size_t cap)
{
	struct sg_cri_pull *pull = calloc(1, sizeof(*pull));
	struct sg_ref ref;

	image[0] = '\0';
	if (!pull)
		return;
	if (sg_cri_parse_pull(msg, len, pull) < 0 || sg_ref_parse(pull->image, &ref, NULL) < 0)
		goto out;
	if (ref.digest[0])   /* the host and domain below are all that is used of it after */
		ref.tag[0] = '\0';
	if (sg_ref_format(&ref, image, cap) < 0)
		image[0] = '\0';
	if (!p->registry)
		goto out;
	if (!pull->username[0] && pull->auth[0]) {
		/* "auth" is base64("user:password"), as in docker's config.json. */
		uint8_t dec[sizeof(pull->auth)];
		int n = sg_base64_decode(pull->auth, strlen(pull->auth), dec, sizeof(dec) - 1);
		char *colon = n > 0 ? memchr(dec, ':', (size_t)n) : NULL;
		size_t ul = colon ? (size_t)(colon - (char *)dec) : 0;
		size_t pl = colon ? (size_t)n - ul - 1 : 0;
		if (colon && ul < sizeof(pull->username) && pl < sizeof(pull->password)) {
			memcpy(pull->username, dec, ul);
			pull->username[ul] = '\0';
			memcpy(pull->password, colon + 1, pl);
			pull->password[pl] = '\0';
		}
		explicit_bzero(dec, sizeof(dec));
	}
	if (!pull->username[0])
		goto out;
	(void)sg_registry_give_credentials(p->registry, ref.host, pull->username, pull->password);
	if (strcmp(ref.domain, ref.host) != 0)
		(void)sg_registry_give_credentials(p->registry, ref.domain, pull->username,
						   pull->password);
out:
	explicit_bzero(pull, sizeof(*pull));
	free(pull);
}

/* ---- forwarding ---- */

static void maybe_done(struct sg_cri_proxy *p);

static void forwarded(struct sg_op *op)
{
	struct fwd *f = sg_container_of(op, struct fwd, op);
	struct sg_cri_proxy *p = f->p;

	if (op->res < 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "image service unavailable: %s", strerror(-op->res));
		sg_grpc_finish(f->call, SG_GRPC_UNAVAILABLE, msg);
	} else {
		if (f->reply.status == SG_GRPC_OK && !sg_grpc_call_closed(f->call) &&
		    sg_grpc_send(f->call, f->reply.body ? f->reply.body : (const uint8_t *)"",
				 f->reply.body_len) < 0) {
			sg_grpc_finish(f->call, SG_GRPC_INTERNAL, "cannot queue the answer");
		} else {
			sg_grpc_finish(f->call, (enum sg_grpc_status)f->reply.status,
				       f->reply.message[0] ? f->reply.message : NULL);
		}
	}
	if (f->pull)
		p->hooks.ended(f->pull, op->res == 0 && f->reply.status == SG_GRPC_OK);
	sg_grpc_reply_done(&f->reply);
	free(f);
	p->inflight--;
	maybe_done(p);
}

static void forward(struct sg_grpc_call *call, const uint8_t *msg, size_t len, void *userdata)
{
	struct sg_cri_proxy *p = userdata;
	const char *path = sg_grpc_call_path(call);
	struct fwd *f;
	char image[512] = "";

	if (strcmp(path, SERVICE "PullImage") == 0)
		take_pull(p, msg, len, image, sizeof(image));
	f = calloc(1, sizeof(*f));
	if (!f) {
		sg_grpc_finish(call, SG_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	f->p = p;
	f->call = call;
	sg_op_init(&f->op);
	/* The request may carry credentials: it is passed on, never copied anywhere else. */
	int r = sg_grpc_client_call(p->client, path, msg, len, 0, &f->reply, &f->op, forwarded);
	if (r < 0) {
		free(f);
		sg_grpc_finish(call, SG_GRPC_UNAVAILABLE, "image service unavailable");
		return;
	}
	p->inflight++;
	/* After the forward, whose request goes first: containerd starts resolving the image
	 * while the hook does. */
	if (image[0] && p->hooks.started)
		f->pull = p->hooks.started(p->hooks.ctx, image);
}

void sg_cri_proxy_set_pull_hooks(struct sg_cri_proxy *p, const struct sg_cri_pull_hooks *h)
{
	p->hooks = *h;
}

static const struct sg_grpc_method methods[] = {
	{ SERVICE "ListImages", forward },
	{ SERVICE "ImageStatus", forward },
	{ SERVICE "PullImage", forward },
	{ SERVICE "RemoveImage", forward },
	{ SERVICE "ImageFsInfo", forward },
};

int sg_cri_proxy_new(struct sg_loop *loop, const char *listen_path, const char *image_service_path,
		     struct sg_registry *registry, struct sg_cri_proxy **ret, struct sg_error *err)
{
	struct sg_cri_proxy *p = calloc(1, sizeof(*p));
	int r;

	if (!p)
		return sg_error_set(err, -ENOMEM, "out of memory");
	p->loop = loop;
	p->registry = registry;
	p->listen_fd = -1;
	sg_op_init(&p->done_op);
	snprintf(p->listen_path, sizeof(p->listen_path), "%s", listen_path);
	r = sg_grpc_client_new(loop, image_service_path, &p->client);
	if (r < 0) {
		sg_error_set(err, r, "image_service_path %s: %s", image_service_path, strerror(-r));
		goto fail;
	}
	r = sg_listen_unix(listen_path, &p->listen_fd, err);
	if (r < 0)
		goto fail;
	r = sg_grpc_server_new(loop, p->listen_fd, methods, sizeof(methods) / sizeof(methods[0]),
			       NULL, p, &p->server);
	if (r < 0) {
		sg_error_set(err, r, "cannot serve the CRI image service: %s", strerror(-r));
		goto fail;
	}
	*ret = p;
	return 0;
fail:
	if (p->listen_fd >= 0) {
		close(p->listen_fd);
		unlink(listen_path);
	}
	sg_grpc_client_free(p->client);
	free(p);
	return r;
}

static void done_posted(struct sg_op *op)
{
	struct sg_cri_proxy *p = sg_container_of(op, struct sg_cri_proxy, done_op);
	if (p->done)
		p->done(p->done_userdata);
}

static void maybe_done(struct sg_cri_proxy *p)
{
	/* The client's own ops (its connection closing) are cancelled already and complete
	 * by the loop's drain; only the answers the server owes are waited for. */
	if (!p->done || !p->server_done || p->inflight || sg_op_busy(&p->done_op))
		return;
	(void)sg_post(p->loop, &p->done_op, 0, done_posted);
}

static void server_done(void *userdata)
{
	struct sg_cri_proxy *p = userdata;

	p->server_done = true;
	maybe_done(p);
}

void sg_cri_proxy_shutdown(struct sg_cri_proxy *p, void (*done)(void *userdata), void *userdata)
{
	if (!p) {
		return;
	}
	p->done = done;
	p->done_userdata = userdata;
	/* Calls still forwarded are answered UNAVAILABLE now (kubelet tries again) rather than
	 * holding the daemon's stop for as long as containerd takes. */
	sg_grpc_client_shutdown(p->client);
	sg_grpc_server_shutdown(p->server, server_done, p);
}

void sg_cri_proxy_free(struct sg_cri_proxy *p)
{
	if (!p)
		return;
	SG_FREE_CHECK(p->inflight || sg_grpc_client_busy(p->client) || sg_op_busy(&p->done_op),
		      "CRI proxy");
	sg_grpc_server_free(p->server);
	sg_grpc_client_free(p->client);
	if (p->listen_fd >= 0) {
		close(p->listen_fd);
		unlink(p->listen_path);
	}
	free(p);
}
