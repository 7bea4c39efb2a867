/* loop: never answers. Any input spins in guest code, where only the epoch
 * deadline stops it; "sleep" blocks in a WASI call (poll_oneoff), where epochs
 * are not checked, so only the parent's hard deadline (killing the sandbox
 * process) stops it. */
#include "trenv.h"
#include <unistd.h>

TRENV_DEFAULT_ALLOC
static volatile uint64_t spins;

TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
  if (len >= 5 && memcmp((const char *)(uintptr_t)ptr, "sleep", 5) == 0) {
    for (;;) sleep(3600);
  }
  for (;;) spins++;
}
