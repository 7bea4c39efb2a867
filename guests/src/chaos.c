/* chaos: the chaos runner's guest (chaos/TrEnv.Chaos/ChaosGuest.cs computes the same answers).
 * init builds a 4 MiB table from the SALT environment variable; handle answers "SALT:H:INPUT", where H
 * folds every input byte through the table. A template restored with the wrong pages, a version with
 * the wrong environment, or another request's input each change the answer. */
#include "trenv.h"
#include <stdio.h>

#define WORDS (1u << 20)

static uint32_t *table;
static uint64_t salt;
static char *out;
static uint32_t out_cap;

#define mix trenv_mix64

TRENV_EXPORT("trenv_init") void trenv_init(void) {
  const char *s = getenv("SALT");
  salt = s ? strtoull(s, 0, 10) : 0;
  table = malloc(WORDS * sizeof(uint32_t));
  if (!table) __builtin_trap();
  for (uint32_t i = 0; i < WORDS; i++) table[i] = (uint32_t)mix(i ^ salt);
}

TRENV_DEFAULT_ALLOC

TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
  const uint8_t *in = (const uint8_t *)(uintptr_t)ptr;
  uint64_t h = salt;
  for (int32_t i = 0; i < len; i++) h = mix(h ^ in[i] ^ table[(uint32_t)(h ^ in[i]) & (WORDS - 1)]);
  uint32_t need = (uint32_t)len + 64;
  if (need > out_cap) {
    free(out);
    out = malloc(need);
    out_cap = out ? need : 0;
    if (!out) __builtin_trap();
  }
  int n = snprintf(out, 64, "%llu:%016llx:", (unsigned long long)salt, (unsigned long long)h);
  memcpy(out + n, in, (size_t)len);
  return trenv_result(out, (uint32_t)n + (uint32_t)len);
}
