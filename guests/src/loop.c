/* loop: spins forever on any input; only an epoch deadline stops it. */
#include "trenv.h"

TRENV_DEFAULT_ALLOC
static volatile uint64_t spins;

TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
  (void)ptr; (void)len;
  for (;;) spins++;
}
