/* Lazy template restore: a userfaultfd handler thread inside the sandbox process.
 *
 * The instance's pages are mapped MAP_PRIVATE from the node's mirror file (tmpfs) exactly as for an
 * eager restore, then registered for MISSING faults. A page the mirror does not hold yet faults here:
 * the thread asks the worker's page server (a unix socket) to write that window of the template into
 * the mirror, then wakes the faulting thread, whose retried fault maps the now-present page-cache page,
 * shared with every other instance on the node. The thread is native so no garbage collector can stop
 * it while a guest waits on a page. If a page cannot be had, the process exits: the worker reports a
 * crashed sandbox rather than let a guest read a page that is not the template's. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_RANGES 256
#define WINDOW (64 * 1024)
#define PAGE 4096UL

struct range { uintptr_t addr; size_t len; int64_t file_off; };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct range ranges[MAX_RANGES];
static int uffd = -1, server = -1;
static long faults, fetched_bytes;

static void die(const char *what) {
  fprintf(stderr, "sandbox: lazy restore cannot get a page (%s: %s); stopping this sandbox\n", what, strerror(errno));
  /* _exit ends every thread at once; a SIGKILL to ourselves would be ignored, as the host is PID 1 of its namespace. */
  _exit(86);
}

/* Reads or writes all of buf; a page server silent for 30 s counts as gone (the guest must not wait forever). */
static int full_io(int fd, void *buf, size_t n, int writing) {
  char *p = buf;
  while (n > 0) {
    struct pollfd w = {fd, writing ? POLLOUT : POLLIN, 0};
    int ready = poll(&w, 1, 30000);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) { errno = ETIMEDOUT; return -1; }
    ssize_t r = writing ? write(fd, p, n) : read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r; n -= (size_t)r;
  }
  return 0;
}

static void *handler(void *unused) {
  (void)unused;
  for (;;) {
    struct pollfd p = {uffd, POLLIN, 0};
    if (poll(&p, 1, -1) < 0) { if (errno == EINTR) continue; die("poll"); }
    struct uffd_msg m;
    ssize_t r = read(uffd, &m, sizeof m);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (r != sizeof m) die("read fault");
    if (m.event != UFFD_EVENT_PAGEFAULT) continue;
    uintptr_t addr = (uintptr_t)m.arg.pagefault.address & ~(PAGE - 1);
    struct range hit = {0, 0, 0};
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_RANGES; i++)
      if (ranges[i].len && addr >= ranges[i].addr && addr < ranges[i].addr + ranges[i].len) { hit = ranges[i]; break; }
    pthread_mutex_unlock(&lock);
    if (!hit.len) die("fault outside every registered range");
    /* A window of pages around the fault, inside the range: fewer round trips for sequential touches. */
    uintptr_t start = addr - ((addr - hit.addr) % WINDOW);
    uintptr_t end = start + WINDOW > hit.addr + hit.len ? hit.addr + hit.len : start + WINDOW;
    int64_t req[2] = {hit.file_off + (int64_t)(start - hit.addr), (int64_t)(end - start)};
    int64_t status = -1;
    if (full_io(server, req, sizeof req, 1) || full_io(server, &status, sizeof status, 0)) die("page server");
    if (status != 0) { errno = EIO; die("page server refused the range"); }
    struct uffdio_range wake = {start, end - start};
    if (ioctl(uffd, UFFDIO_WAKE, &wake)) die("wake");
    __atomic_add_fetch(&faults, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&fetched_bytes, (long)(end - start), __ATOMIC_RELAXED);
  }
  return 0;
}

/* Starts the handler once per process, connected to the page server. 0 or -errno. */
int trenv_uffd_init(const char *socket_path) {
  if (uffd >= 0) return 0;
  int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev < 0) return -errno;
    fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    close(dev);
    if (fd < 0) return -errno;
  }
  struct uffdio_api api = {.api = UFFD_API, .features = 0};
  if (ioctl(fd, UFFDIO_API, &api)) { int e = errno; close(fd); return -e; }
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (s < 0 || strlen(socket_path) >= sizeof a.sun_path) { int e = s < 0 ? errno : ENAMETOOLONG; close(fd); if (s >= 0) close(s); return -e; }
  strcpy(a.sun_path, socket_path);
  if (connect(s, (struct sockaddr *)&a, sizeof a)) { int e = errno; close(fd); close(s); return -e; }
  uffd = fd;
  server = s;
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &attr, handler, 0);
  pthread_attr_destroy(&attr);
  return rc ? -rc : 0;
}

/* Registers [addr, addr+len), backed by the mirror at file_off, for missing-page faults. 0 or -errno. */
int trenv_uffd_register(void *addr, size_t len, int64_t file_off) {
  pthread_mutex_lock(&lock);
  int slot = -1;
  for (int i = 0; i < MAX_RANGES; i++) if (!ranges[i].len) { slot = i; break; }
  if (slot < 0) { pthread_mutex_unlock(&lock); return -ENOSPC; }
  ranges[slot] = (struct range){(uintptr_t)addr, len, file_off};
  pthread_mutex_unlock(&lock);
  struct uffdio_register reg = {.range = {(uintptr_t)addr, len}, .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg)) {
    int e = errno;
    pthread_mutex_lock(&lock);
    ranges[slot].len = 0;
    pthread_mutex_unlock(&lock);
    return -e;
  }
  return 0;
}

/* Forgets every range inside [addr, addr+len) (the instance is going away). */
void trenv_uffd_unregister(void *addr, size_t len) {
  struct uffdio_range r = {(uintptr_t)addr, len};
  ioctl(uffd, UFFDIO_UNREGISTER, &r);
  pthread_mutex_lock(&lock);
  for (int i = 0; i < MAX_RANGES; i++)
    if (ranges[i].len && ranges[i].addr >= (uintptr_t)addr && ranges[i].addr < (uintptr_t)addr + len) ranges[i].len = 0;
  pthread_mutex_unlock(&lock);
}

long trenv_uffd_faults(void) { return __atomic_load_n(&faults, __ATOMIC_RELAXED); }
long trenv_uffd_fetched_bytes(void) { return __atomic_load_n(&fetched_bytes, __ATOMIC_RELAXED); }
