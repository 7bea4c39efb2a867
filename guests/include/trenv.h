/* Guest ABI v1 helpers: see guests/CONTRACT.md and docs/ARCHITECTURE.md. */
#ifndef TRENV_H
#define TRENV_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TRENV_EXPORT(name) __attribute__((export_name(name)))

/* Packs an output buffer the way trenv_handle must return it. */
static inline int64_t trenv_result(const void *ptr, uint32_t len) {
  return (int64_t)(((uint64_t)(uintptr_t)ptr << 32) | (uint64_t)len);
}

/* A 64-bit finaliser (MurmurHash3's fmix64): the sample guests' deterministic state and answers. */
static inline uint64_t trenv_mix64(uint64_t x) {
  x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

/* The default input allocator: one reusable buffer grown on demand. */
#define TRENV_DEFAULT_ALLOC                                                    \
  static uint8_t *trenv_in_buf;                                                \
  static uint32_t trenv_in_cap;                                                \
  TRENV_EXPORT("trenv_alloc") int32_t trenv_alloc(int32_t len) {               \
    if (len < 0) return 0;                                                     \
    if ((uint32_t)len + 1 > trenv_in_cap) {                                    \
      free(trenv_in_buf);                                                      \
      trenv_in_cap = (uint32_t)len + 1;                                        \
      trenv_in_buf = malloc(trenv_in_cap);                                     \
      if (!trenv_in_buf) { trenv_in_cap = 0; return 0; }                       \
    }                                                                          \
    return (int32_t)(uintptr_t)trenv_in_buf;                                   \
  }

#endif
