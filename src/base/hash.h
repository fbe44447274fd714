/* hash.h — the 64-bit finalizer (MurmurHash3's fmix64) that sluice's hash tables mix with. */
#ifndef SLUICE_BASE_HASH_H
#define SLUICE_BASE_HASH_H

#include <stdint.h>

/* Spreads every input bit over every output bit; a bijection, so distinct inputs stay
 * distinct. Callers fold a per-table secret seed into the input. */
static inline uint64_t hash_mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53u;
	h ^= h >> 33;
	return h;
}

#endif
