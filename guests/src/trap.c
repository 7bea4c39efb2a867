/* trap: fails in each way a guest can fail by itself; answers "ok" to
 * anything else, so a test can show the sandbox recovers.
 *   "trap"    unreachable
 *   "div"     integer division by zero
 *   "exit"    proc_exit(3) from inside a request
 *   "recurse" unbounded recursion (stack overflow) */
#include "trenv.h"

TRENV_DEFAULT_ALLOC
static volatile int zero;

static int deep(volatile int n) {
  volatile char pad[256];
  pad[n & 255] = (char)n;
  return deep(n + 1) + pad[0];
}

TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
  const char *in = (const char *)(uintptr_t)ptr;
  static char buf[16];
  if (len >= 4 && memcmp(in, "trap", 4) == 0) __builtin_trap();
  if (len >= 3 && memcmp(in, "div", 3) == 0) {
    buf[0] = (char)(len / zero);
    return trenv_result(buf, 1);
  }
  if (len >= 4 && memcmp(in, "exit", 4) == 0) exit(3);
  if (len >= 7 && memcmp(in, "recurse", 7) == 0) {
    buf[0] = (char)deep(len);
    return trenv_result(buf, 1);
  }
  static const char ok[] = "ok";
  return trenv_result(ok, 2);
}
