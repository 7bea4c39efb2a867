/* membomb: allocates and touches 1 MiB blocks until malloc fails, then
 * aborts (a trap). Only the memory limit stops it. The blocks are chained
 * through a volatile head so the compiler cannot elide the allocations. */
#include "trenv.h"

TRENV_DEFAULT_ALLOC
static void *volatile head;

TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
  (void)ptr; (void)len;
  for (;;) {
    char *p = malloc(1u << 20);
    if (!p) abort();
    memset(p, 0xAB, 1u << 20);
    *(void **)p = head;
    head = p;
  }
}
