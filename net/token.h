/* Bearer tokens of the registry client, cached per (registry host, repository).
 *
 * A plain table, no I/O: the exchange module (net/exchange.c) fetches tokens, decides when a
 * cached one is sent or dropped, and keeps the requests that wait for a fetch.  An entry
 * holds the Authorization value ("Bearer ..."), its expiry, and whether a token request for
 * it is in flight (at most one per entry).  The table is bounded: adding to a full table
 * drops the oldest entry with no fetch in flight.
 */
#ifndef STARGZD_NET_TOKEN_H
#define STARGZD_NET_TOKEN_H

#include <stdbool.h>
#include <time.h>

struct sg_tokens;
struct sg_token;

#define SG_TOKENS_MAX 256

/* max 0 = SG_TOKENS_MAX.  Returns 0 or -ENOMEM. */
int sg_tokens_new(unsigned max, struct sg_tokens **ret);
void sg_tokens_free(struct sg_tokens *t);

/* The entry for (host, repo), created when absent and `create` is set.  NULL when absent,
 * when the table is full of entries being fetched, or out of memory.  The pointer stays
 * valid until an entry is created (which may drop one that is not being fetched). */
struct sg_token *sg_tokens_entry(struct sg_tokens *t, const char *host, const char *repo,
				 bool create);

/* The cached Authorization value and its expiry, or NULL. */
const char *sg_token_value(const struct sg_token *e, time_t *ret_expiry);
/* Replaces the value with "Bearer <token>", valid until expiry.  Returns 0 or -ENOMEM (then
 * the entry has no value). */
int sg_token_set(struct sg_token *e, const char *token, time_t expiry);
/* Forgets the value (expired, or refused by the registry). */
void sg_token_drop(struct sg_token *e);

bool sg_token_fetching(const struct sg_token *e);
void sg_token_set_fetching(struct sg_token *e, bool fetching);

#endif
