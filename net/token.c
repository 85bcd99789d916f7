/* The bearer token table.  See token.h. */
#include "net/token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/list.h"
#include "net/reference.h"
#include "net/url.h"

struct sg_token {
	struct sg_list link;                  /* t->entries, oldest first */
	char key[SG_URL_HOST_MAX + SG_REF_NAME_MAX + 4];
	char *value;                          /* "Bearer ..." or NULL */
	time_t expiry;
	bool fetching;
};

struct sg_tokens {
	struct sg_list entries;
	unsigned n, max;
};

int sg_tokens_new(unsigned max, struct sg_tokens **ret)
{
	struct sg_tokens *t = calloc(1, sizeof(*t));

	*ret = NULL;
	if (!t)
		return -ENOMEM;
	sg_list_init(&t->entries);
	t->max = max ? max : SG_TOKENS_MAX;
	*ret = t;
	return 0;
}

static void entry_free(struct sg_tokens *t, struct sg_token *e)
{
	sg_list_unlink(&e->link);
	free(e->value);
	free(e);
	t->n--;
}

void sg_tokens_free(struct sg_tokens *t)
{
	if (!t)
		return;
	while (!sg_list_empty(&t->entries))
		entry_free(t, sg_container_of(t->entries.next, struct sg_token, link));
	free(t);
}

struct sg_token *sg_tokens_entry(struct sg_tokens *t, const char *host, const char *repo,
				 bool create)
{
	char key[sizeof(((struct sg_token *)0)->key)];
	struct sg_list *pos, *tmp;
	struct sg_token *e;

	if (snprintf(key, sizeof(key), "%s %s", host, repo) >= (int)sizeof(key))
		return NULL;
	sg_list_for_each_safe(pos, tmp, &t->entries) {
		e = sg_container_of(pos, struct sg_token, link);
		if (!strcmp(e->key, key))
			return e;
	}
	if (!create)
		return NULL;
	if (t->n >= t->max) {
		/* Drop the oldest entry that no request waits on (those wait for a fetch). */
		sg_list_for_each_safe(pos, tmp, &t->entries) {
			e = sg_container_of(pos, struct sg_token, link);
			if (!e->fetching) {
				entry_free(t, e);
				break;
			}
		}
		if (t->n >= t->max)
			return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	strcpy(e->key, key);
	sg_list_insert_tail(&t->entries, &e->link);
	t->n++;
	return e;
}

const char *sg_token_value(const struct sg_token *e, time_t *ret_expiry)
{
	if (ret_expiry)
		*ret_expiry = e->expiry;
	return e->value;
}

int sg_token_set(struct sg_token *e, const char *token, time_t expiry)
{
	free(e->value);
	e->value = malloc(strlen(token) + 8);
	if (!e->value)
		return -ENOMEM;
	sprintf(e->value, "Bearer %s", token);
	e->expiry = expiry;
	return 0;
}

void sg_token_drop(struct sg_token *e)
{
	free(e->value);
	e->value = NULL;
}

bool sg_token_fetching(const struct sg_token *e)
{
	return e->fetching;
}

void sg_token_set_fetching(struct sg_token *e, bool fetching)
{
	e->fetching = fetching;
}
