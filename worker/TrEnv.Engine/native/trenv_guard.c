/* SIGBUS guard for template mappings.
 *
 * A MAP_PRIVATE page of the pool file raises SIGBUS when the file was truncated
 * under the mapping. Wasmtime and the .NET runtime would both turn that into a
 * process crash when the faulting access is in host code (copying input or
 * output). This handler, installed in front of theirs, recognises faults inside
 * registered template ranges, maps an anonymous page over the faulting address so
 * the access can complete, and counts the event. The engine then discards the
 * instance and reports the truncation: the guest's result is never used.
 * Everything here is async-signal-safe: a fixed table, atomics and mmap. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define SLOTS 256
static uintptr_t starts[SLOTS];
static uintptr_t ends[SLOTS];
static int faults;
static struct sigaction previous;
static int installed;

static void chain(int sig, siginfo_t *info, void *context) {
  if (previous.sa_flags & SA_SIGINFO) {
    previous.sa_sigaction(sig, info, context);
  } else if (previous.sa_handler == SIG_IGN) {
    return;
  } else if (previous.sa_handler == SIG_DFL) {
    signal(sig, SIG_DFL);
    raise(sig);
  } else {
    previous.sa_handler(sig);
  }
}

static void on_sigbus(int sig, siginfo_t *info, void *context) {
  uintptr_t address = (uintptr_t)info->si_addr;
  for (int i = 0; i < SLOTS; i++) {
    uintptr_t start = __atomic_load_n(&starts[i], __ATOMIC_ACQUIRE);
    uintptr_t end = __atomic_load_n(&ends[i], __ATOMIC_ACQUIRE);
    if (start != 0 && address >= start && address < end) {
      void *page = (void *)(address & ~(uintptr_t)4095);
      if (mmap(page, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) {
        __atomic_add_fetch(&faults, 1, __ATOMIC_RELEASE);
        return;
      }
    }
  }
  chain(sig, info, context);
}

int trenv_guard_install(void) {
  if (__atomic_exchange_n(&installed, 1, __ATOMIC_ACQ_REL))
    return 0;
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = on_sigbus;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  return sigaction(SIGBUS, &action, &previous);
}

/* Returns a slot number, or -1 when the table is full. */
int trenv_guard_add(uintptr_t start, uintptr_t end) {
  for (int i = 0; i < SLOTS; i++) {
    uintptr_t expected = 0;
    if (__atomic_compare_exchange_n(&starts[i], &expected, (uintptr_t)1, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
      __atomic_store_n(&ends[i], end, __ATOMIC_RELEASE);
      __atomic_store_n(&starts[i], start, __ATOMIC_RELEASE);
      return i;
    }
  }
  return -1;
}

void trenv_guard_remove(int slot) {
  if (slot < 0 || slot >= SLOTS)
    return;
  __atomic_store_n(&ends[slot], 0, __ATOMIC_RELEASE);
  __atomic_store_n(&starts[slot], 0, __ATOMIC_RELEASE);
}

int trenv_guard_faults(void) { return __atomic_load_n(&faults, __ATOMIC_ACQUIRE); }
