/* notebook: a stateful tool for agent sessions. init builds a 16 MiB lookup
 * table (the part every session shares through the template); handle keeps a
 * key/value store and a running total that persist across calls of one
 * instance. Commands (one per call):
 *   set KEY VALUE   store VALUE under KEY (replaces), answers "ok N" (N keys)
 *   get KEY         answers the value, or "missing"
 *   add NUMBER      adds to the running total, answers "total=T calls=C"
 *   fill KIB        writes KIB KiB of fresh state (dirties that many pages)
 *   rand            a number from the per-instance random state
 *   state           a digest of everything the session holds */
#include "trenv.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#define TABLE_WORDS (4u * 1024u * 1024u) /* 16 MiB shared through the template */
#define MAX_KEYS 4096

struct entry {
  char *key;
  char *value;
};

static uint32_t *table;
static struct entry entries[MAX_KEYS];
static uint32_t nkeys;
static int64_t total;
static uint64_t calls;
static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint8_t **fills;
static uint32_t nfills, cap_fills;
static char out[8192];

TRENV_DEFAULT_ALLOC

TRENV_EXPORT("trenv_init") void trenv_init(void) {
  table = malloc(TABLE_WORDS * sizeof(uint32_t));
  if (!table) __builtin_trap();
  for (uint32_t i = 0; i < TABLE_WORDS; i++) table[i] = (uint32_t)trenv_mix64(i) | 1u;
}

TRENV_EXPORT("trenv_reseed") void trenv_reseed(void) {
  uint64_t seed;
  if (getentropy(&seed, sizeof seed) == 0) rng_state = seed | 1u;
}

static char *dup_n(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) __builtin_trap();
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

static int64_t answer(int n) { return trenv_result(out, (uint32_t)(n < 0 ? 0 : n >= (int)sizeof out ? (int)sizeof out - 1 : n)); }

TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
  char *in = dup_n((const char *)(uintptr_t)ptr, (size_t)len);
  calls++;
  int64_t result;
  if (strncmp(in, "set ", 4) == 0) {
    char *key = in + 4, *sp = strchr(key, ' ');
    if (!sp) { result = answer(snprintf(out, sizeof out, "error: set KEY VALUE")); goto done; }
    *sp = 0;
    uint32_t i = 0;
    while (i < nkeys && strcmp(entries[i].key, key) != 0) i++;
    if (i == nkeys) {
      if (nkeys == MAX_KEYS) { result = answer(snprintf(out, sizeof out, "error: full")); goto done; }
      entries[nkeys++].key = dup_n(key, strlen(key));
    } else {
      free(entries[i].value);
    }
    entries[i].value = dup_n(sp + 1, strlen(sp + 1));
    result = answer(snprintf(out, sizeof out, "ok %u", nkeys));
  } else if (strncmp(in, "get ", 4) == 0) {
    uint32_t i = 0;
    while (i < nkeys && strcmp(entries[i].key, in + 4) != 0) i++;
    result = answer(i < nkeys ? snprintf(out, sizeof out, "%s", entries[i].value) : snprintf(out, sizeof out, "missing"));
  } else if (strncmp(in, "add ", 4) == 0) {
    total += strtoll(in + 4, 0, 10);
    result = answer(snprintf(out, sizeof out, "total=%lld calls=%llu", (long long)total, (unsigned long long)calls));
  } else if (strncmp(in, "fill ", 5) == 0) {
    long kib = strtol(in + 5, 0, 10);
    if (kib < 0 || kib > 256 * 1024) { result = answer(snprintf(out, sizeof out, "error: fill 0..262144")); goto done; }
    if (nfills == cap_fills) {
      cap_fills = cap_fills ? cap_fills * 2 : 16;
      fills = realloc(fills, cap_fills * sizeof *fills);
      if (!fills) __builtin_trap();
    }
    uint8_t *block = malloc((size_t)kib * 1024u + 1);
    if (!block) __builtin_trap();
    for (long i = 0; i < kib * 1024; i++) block[i] = (uint8_t)trenv_mix64((uint64_t)i + calls);
    fills[nfills++] = block;
    result = answer(snprintf(out, sizeof out, "filled %ld KiB", kib));
  } else if (strcmp(in, "rand") == 0) {
    rng_state = trenv_mix64(rng_state + 0x9E3779B97F4A7C15ull);
    result = answer(snprintf(out, sizeof out, "rand=%llu", (unsigned long long)rng_state));
  } else if (strcmp(in, "state") == 0) {
    uint64_t h = (uint64_t)total * 31u + nkeys;
    for (uint32_t i = 0; i < nkeys; i++) h = trenv_mix64(h ^ strlen(entries[i].key) ^ ((uint64_t)strlen(entries[i].value) << 20));
    for (uint32_t i = 0; i < TABLE_WORDS; i += 4096) h ^= table[i];
    result = answer(snprintf(out, sizeof out, "keys=%u total=%lld calls=%llu fills=%u digest=%llu", nkeys, (long long)total,
                             (unsigned long long)calls, nfills, (unsigned long long)h));
  } else {
    result = answer(snprintf(out, sizeof out, "error: unknown command"));
  }
done:
  free(in);
  return result;
}
