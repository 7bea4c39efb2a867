/* hello: echoes its input, prefixed with "hello: ". */
#include "trenv.h"
#include <stdio.h>

TRENV_DEFAULT_ALLOC

static char *out;
static uint32_t out_cap;

TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
  const char prefix[] = "hello: ";
  uint32_t need = (uint32_t)len + sizeof(prefix);
  if (need > out_cap) {
    free(out);
    out = malloc(need);
    out_cap = out ? need : 0;
    if (!out) __builtin_trap();
  }
  memcpy(out, prefix, sizeof(prefix) - 1);
  memcpy(out + sizeof(prefix) - 1, (const void *)(uintptr_t)ptr, (size_t)len);
  if (len > 0 && ((const char *)(uintptr_t)ptr)[0] == '!') {
    fprintf(stdout, "log line for input of %d bytes\n", len);
    fprintf(stderr, "stderr line\n");
    fflush(stdout);
  }
  return trenv_result(out, (uint32_t)len + sizeof(prefix) - 1);
}
