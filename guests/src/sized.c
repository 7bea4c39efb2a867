/* sized: a template of a chosen size, for measuring restore time against template size.
 * init fills SIZE_MB MiB (environment variable, default 16) with pseudo-random words, so every page is
 * non-zero and lands in the template; handle reads one word from 64 pages spread over the whole buffer
 * and answers their sum, so the first invocation after a restore costs the same at every size. */
#include "trenv.h"
#include <stdio.h>

static uint64_t *buffer;
static size_t words;
static char answer[48];

TRENV_EXPORT("trenv_init") void trenv_init(void) {
  const char *s = getenv("SIZE_MB");
  size_t mb = s ? strtoull(s, 0, 10) : 16;
  words = mb * 1024 * 1024 / sizeof(uint64_t);
  buffer = malloc(words * sizeof(uint64_t));
  if (!buffer || words == 0) __builtin_trap();
  for (size_t i = 0; i < words; i++) buffer[i] = trenv_mix64(i) | 1;
}

TRENV_DEFAULT_ALLOC

TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
  (void)ptr;
  (void)len;
  uint64_t sum = 0;
  for (size_t k = 0; k < 64; k++) sum += buffer[k * (words / 64)];
  int n = snprintf(answer, sizeof answer, "%zu:%016llx", words / 131072, (unsigned long long)sum);
  return trenv_result(answer, (uint32_t)n);
}
