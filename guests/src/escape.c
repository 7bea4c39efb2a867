/* escape: tries to read host files outside its /tmp and reports each
 * attempt as "path=ok" or "path=denied"; also writes and reads back a file
 * in /tmp. Input "read:NAME" returns the content of /tmp/NAME or "missing",
 * "write:NAME" creates /tmp/NAME, "env:NAME" returns getenv(NAME) or "unset",
 * "hold:NAME" opens /tmp/NAME and keeps the descriptor (returns its number),
 * "fd:N" says whether descriptor N is "open" or "closed", "trap" traps and
 * "spin" never returns (used by the isolation tests: nothing of one function,
 * even one that failed, may be visible to the next). */
#include "trenv.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

TRENV_DEFAULT_ALLOC
static char out[4096];

static int readable(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char c;
  size_t n = fread(&c, 1, 1, f);
  fclose(f);
  return n == 1;
}

TRENV_EXPORT("trenv_handle") int64_t trenv_handle(int32_t ptr, int32_t len) {
  const char *in = (const char *)(uintptr_t)ptr;
  char name[256];
  if (len > 5 && len < 200 && memcmp(in, "read:", 5) == 0) {
    snprintf(name, sizeof name, "/tmp/%.*s", len - 5, in + 5);
    FILE *f = fopen(name, "r");
    if (!f) return trenv_result("missing", 7);
    size_t n = fread(out, 1, sizeof out, f);
    fclose(f);
    return trenv_result(out, (uint32_t)n);
  }
  if (len > 4 && len < 200 && memcmp(in, "env:", 4) == 0) {
    snprintf(name, sizeof name, "%.*s", len - 4, in + 4);
    const char *v = getenv(name);
    if (!v) return trenv_result("unset", 5);
    int n = snprintf(out, sizeof out, "%s", v);
    return trenv_result(out, (uint32_t)n);
  }
  if (len > 5 && len < 200 && memcmp(in, "hold:", 5) == 0) {
    snprintf(name, sizeof name, "/tmp/%.*s", len - 5, in + 5);
    int fd = open(name, O_RDWR | O_CREAT, 0644);
    int n = snprintf(out, sizeof out, "%d", fd);
    return trenv_result(out, (uint32_t)n);
  }
  if (len == 4 && memcmp(in, "trap", 4) == 0)
    __builtin_trap();
  if (len == 4 && memcmp(in, "spin", 4) == 0)
    for (volatile int i = 0;; i++) {}
  if (len > 3 && len < 16 && memcmp(in, "fd:", 3) == 0) {
    int fd = atoi(in + 3);
    struct stat st;
    return fstat(fd, &st) == -1 && errno == EBADF ? trenv_result("closed", 6) : trenv_result("open", 4);
  }
  if (len > 6 && len < 200 && memcmp(in, "write:", 6) == 0) {
    snprintf(name, sizeof name, "/tmp/%.*s", len - 6, in + 6);
    FILE *f = fopen(name, "w");
    if (!f) return trenv_result("failed", 6);
    fputs("secret", f);
    fclose(f);
    return trenv_result("written", 7);
  }
  static const char *probes[] = {"/etc/passwd", "/tmp/../etc/passwd", "../etc/passwd",
                                 "/proc/self/environ", "/etc/hostname", "/root/.bashrc"};
  int n = 0;
  for (unsigned i = 0; i < sizeof probes / sizeof *probes; i++)
    n += snprintf(out + n, sizeof out - (size_t)n, "%s=%s\n", probes[i],
                  readable(probes[i]) ? "ok" : "denied");
  FILE *f = fopen("/tmp/probe.txt", "w");
  int tmp_ok = 0;
  if (f) { fputs("x", f); fclose(f); tmp_ok = readable("/tmp/probe.txt"); }
  n += snprintf(out + n, sizeof out - (size_t)n, "/tmp/probe.txt=%s\n", tmp_ok ? "ok" : "denied");
  return trenv_result(out, (uint32_t)n);
}
