/* The authentication of an exchange (net/exchange.h), for net/exchange.c only.
 *
 * Which credentials a request carries: the hosts.toml headers of its endpoint, a token
 * request's Basic credentials, a cached Bearer token for (host, repository), or Basic
 * credentials once the host asked for them; and only on the origin the exchange started at
 * (see sg_xauth_may_send).  How a 401 is answered, once per exchange: a Bearer challenge by
 * a token request (one per (host, repository) at a time, shared by every request that needs
 * it: those wait on it), a Basic one with the docker config's or a credential helper's
 * credentials (a helper is waited for).  The texts of its failures are the registry's
 * ("401 Unauthorized (no credentials for HOST in the docker config)", "token request failed:
 * ..."). */
#ifndef STARGZD_NET_EXCHANGE_AUTH_H
#define STARGZD_NET_EXCHANGE_AUTH_H

#include <stdbool.h>

struct sg_exchange;
struct sg_http1_writer;

/* The one decision whether the request may carry credentials (of any kind) now. */
bool sg_xauth_may_send(const struct sg_exchange *x);
/* Adds the credentials the request carries (if it may) to its head. */
void sg_xauth_add_headers(struct sg_exchange *x, struct sg_http1_writer *w);
/* Before an attempt: true when it waits for a token request in flight (it goes once that
 * has answered) instead of collecting a 401 of its own. */
bool sg_xauth_wait_token(struct sg_exchange *x);
/* A 401's WWW-Authenticate: keeps the challenge to answer (Bearer before Basic).  False if
 * none is usable. */
bool sg_xauth_pick_challenge(struct sg_exchange *x);
/* Answers the 401 kept: the exchange goes again with credentials, waits, or finishes with
 * -EACCES and why. */
void sg_xauth_answer(struct sg_exchange *x);

#endif
