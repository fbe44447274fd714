/* policy_index.c — the hash index from names, name suffixes and prefixes to their rules. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_internal.h"

struct policy_index_slot {
	uint32_t hash;
	uint8_t kind; /* enum policy_key; 0 = empty slot */
	uint8_t key_len;
	uint32_t key_off;
	uint32_t list_off, list_len;
};

/* One (key, rule) pair before grouping. */
struct posting {
	uint32_t hash;
	uint8_t kind;
	uint8_t key_len;
	uint32_t key_off;
	uint32_t rule;
	const uint8_t *key; /* set once the key pool stops growing */
};

uint32_t policy_hash(const uint8_t *key, size_t len)
{
	uint64_t h = POLICY_HASH_SEED;
	while (len > 0)
		h = policy_hash_step(h, key[--len]);
	return policy_hash_final(h);
}

size_t policy_cidr_key(const struct addr *a, uint8_t prefix, uint8_t *key)
{
	size_t n = addr_len(a);
	key[0] = a->family;
	key[1] = prefix;
	for (size_t i = 0; i < n; i++) {
		unsigned bits = prefix > i * 8 ? prefix - (unsigned)(i * 8) : 0;
		uint8_t mask = bits >= 8 ? 0xff : (uint8_t)(0xff00u >> bits);
		key[2 + i] = a->bytes[i] & mask;
	}
	return n + 2;
}

/* The growing arrays of a build, freed together. */
struct builder {
	struct posting *postings;
	size_t n_postings, cap_postings;
	uint8_t *keys;
	size_t n_keys, cap_keys;
};

static int add_posting(struct builder *b, enum policy_key kind, const void *key, size_t len,
		       uint32_t rule)
{
	if (policy_array_grow((void **)&b->postings, &b->cap_postings, b->n_postings + 1,
		    sizeof *b->postings) < 0 ||
	    policy_array_grow((void **)&b->keys, &b->cap_keys, b->n_keys + len, 1) < 0)
		return -ENOMEM;
	memcpy(b->keys + b->n_keys, key, len);
	struct posting *po = &b->postings[b->n_postings++];
	po->hash = policy_hash(key, len);
	po->kind = (uint8_t)kind;
	po->key_len = (uint8_t)len;
	po->key_off = (uint32_t)b->n_keys;
	po->rule = rule;
	b->n_keys += len;
	return 0;
}

static int compare_keys(const struct posting *x, const struct posting *y)
{
	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	return memcmp(x->key, y->key, x->key_len);
}

static int compare_postings(const void *a, const void *b)
{
	const struct posting *x = a, *y = b;
	int c = compare_keys(x, y);
	if (c)
		return c;
	return (x->rule > y->rule) - (x->rule < y->rule);
}

static int append_rule(uint32_t **list, size_t *n, size_t *cap, uint32_t rule)
{
	if (*n > 0 && (*list)[*n - 1] == rule)
		return 0;
	if (policy_array_grow((void **)list, cap, *n + 1, sizeof **list) < 0)
		return -ENOMEM;
	(*list)[(*n)++] = rule;
	return 0;
}

static void note_prefix(uint8_t *set, uint8_t *n, uint8_t prefix)
{
	for (uint8_t i = 0; i < *n; i++)
		if (set[i] == prefix)
			return;
	set[(*n)++] = prefix;
}

/* Collects the postings and the scanned lists from the rules. */
static int collect(struct policy *p, struct builder *b)
{
	struct policy_index *ix = &p->index;
	size_t cap_any = 0, cap_other = 0, cap_targetless = 0;
	for (size_t r = 0; r < p->n_rules; r++) {
		const struct policy_rule *rule = &p->rules[r];
		if (rule->target_count == 0 &&
		    append_rule(&ix->targetless, &ix->n_targetless, &cap_targetless,
				(uint32_t)r) < 0)
			return -ENOMEM;
		for (uint32_t i = 0; i < rule->target_count; i++) {
			uint32_t ti = rule->target_first + i;
			const struct policy_target *t = &p->targets[ti];
			const char *pattern = t->kind == TARGET_DOMAIN ? p->strings + t->off : NULL;
			uint8_t key[18];
			int rc = 0;
			if (t->kind == TARGET_CIDR) {
				size_t len = policy_cidr_key(&t->cidr.base, t->cidr.prefix, key);
				rc = add_posting(b, KEY_CIDR, key, len, (uint32_t)r);
				if (t->cidr.base.family == ADDR_V4)
					note_prefix(ix->v4_prefixes, &ix->n_v4_prefixes,
						    t->cidr.prefix);
				else
					note_prefix(ix->v6_prefixes, &ix->n_v6_prefixes,
						    t->cidr.prefix);
			} else if (t->glob == GLOB_EXACT) {
				rc = add_posting(b, KEY_EXACT, pattern, t->len, (uint32_t)r);
				if (t->len > ix->max_exact)
					ix->max_exact = t->len;
			} else if (t->glob == GLOB_SUFFIX) {
				rc = add_posting(b, KEY_SUFFIX, pattern + 2, t->len - 2,
						 (uint32_t)r);
				if (t->len - 2 > ix->max_suffix)
					ix->max_suffix = t->len - 2;
			} else if (t->glob == GLOB_ANY) {
				rc = append_rule(&ix->any_name, &ix->n_any_name, &cap_any,
						 (uint32_t)r);
			} else {
				rc = policy_array_grow((void **)&ix->other_globs, &cap_other,
					     ix->n_other_globs + 1, sizeof *ix->other_globs);
				if (rc == 0)
					ix->other_globs[ix->n_other_globs++] = ti;
			}
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

int policy_index_build(struct policy *p)
{
	struct policy_index *ix = &p->index;
	struct builder b = { 0 };
	int rc = collect(p, &b);
	if (rc < 0)
		goto fail;
	rc = -ENOMEM;
	for (size_t i = 0; i < b.n_postings; i++)
		b.postings[i].key = b.keys + b.postings[i].key_off;
	if (b.n_postings > 1)
		qsort(b.postings, b.n_postings, sizeof *b.postings, compare_postings);

	size_t n_entries = 0;
	for (size_t i = 0; i < b.n_postings; i++)
		if (i == 0 || compare_keys(&b.postings[i - 1], &b.postings[i]) != 0)
			n_entries++;
	size_t slots = 16;
	while (slots < n_entries * 2)
		slots *= 2;
	ix->slots = calloc(slots, sizeof *ix->slots);
	ix->keys = malloc(b.n_keys ? b.n_keys : 1);
	ix->lists = malloc((b.n_postings ? b.n_postings : 1) * sizeof *ix->lists);
	if (!ix->slots || !ix->keys || !ix->lists)
		goto fail;
	ix->mask = slots - 1;
	if (b.n_keys)
		memcpy(ix->keys, b.keys, b.n_keys);

	size_t n_lists = 0;
	struct policy_index_slot *slot = NULL;
	for (size_t i = 0; i < b.n_postings; i++) {
		const struct posting *po = &b.postings[i];
		if (i == 0 || compare_keys(&b.postings[i - 1], po) != 0) {
			size_t at = po->hash & ix->mask;
			while (ix->slots[at].kind)
				at = (at + 1) & ix->mask;
			slot = &ix->slots[at];
			slot->hash = po->hash;
			slot->kind = po->kind;
			slot->key_len = po->key_len;
			slot->key_off = po->key_off;
			slot->list_off = (uint32_t)n_lists;
			slot->list_len = 0;
		} else if (ix->lists[n_lists - 1] == po->rule) {
			continue;
		}
		ix->lists[n_lists++] = po->rule;
		slot->list_len++;
	}
	rc = 0;
fail:
	free(b.postings);
	free(b.keys);
	return rc;
}

void policy_index_free(struct policy_index *ix)
{
	free(ix->slots);
	free(ix->keys);
	free(ix->lists);
	free(ix->any_name);
	free(ix->other_globs);
	free(ix->targetless);
	memset(ix, 0, sizeof *ix);
}

const uint32_t *policy_index_lookup(const struct policy_index *ix, enum policy_key kind,
				    const uint8_t *key, size_t len, uint32_t h, size_t *n)
{
	*n = 0;
	if (!ix->slots)
		return NULL;
	for (size_t at = h & ix->mask;; at = (at + 1) & ix->mask) {
		const struct policy_index_slot *s = &ix->slots[at];
		if (!s->kind)
			return NULL;
		if (s->hash == h && s->kind == kind && s->key_len == len &&
		    memcmp(ix->keys + s->key_off, key, len) == 0) {
			*n = s->list_len;
			return ix->lists + s->list_off;
		}
	}
}
