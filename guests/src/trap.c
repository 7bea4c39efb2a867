/* trap: traps on "trap" (unreachable) and "div" (integer division by zero);
 * answers "ok" to anything else, so a test can show the sandbox recovers. */
#include "trenv.h"

TRENV_DEFAULT_ALLOC
static volatile int zero;

TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
  const char *in = (const char *)(uintptr_t)ptr;
  if (len >= 4 && memcmp(in, "trap", 4) == 0) __builtin_trap();
  if (len >= 3 && memcmp(in, "div", 3) == 0) {
    static char buf[16];
    buf[0] = (char)(len / zero);
    return trenv_result(buf, 1);
  }
  static const char ok[] = "ok";
  return trenv_result(ok, 2);
}
