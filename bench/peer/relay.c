// The floor of TrEnv's invoke topology: three processes and the same crossings as a warm call, doing nothing else.
//   front:  an HTTP/1.1 keep-alive server (the coordinator's place); each request body goes out as a frame
//   middle: one TCP connection from the front (the worker's place); each frame goes to an idle leaf over a pipe
//   leaf:   one of many processes (the sandbox hosts' place), one call at a time; answers "hello: " + the input
// Frames are a 4-byte length (of what follows), an 8-byte id and the payload, as on the invoke channel. Front and
// middle are single-threaded epoll loops that gather their writes per wake-up; the leaves block in read(2).
// Usage: relay front HTTP_PORT MIDDLE_PORT | relay middle MIDDLE_PORT LEAVES | relay leaf
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 4096
#define BUF (1 << 16)

static void die(const char *what) { perror(what); exit(1); }

static void read_all(int fd, void *p, size_t n) {
  char *c = p;
  while (n > 0) {
    ssize_t r = read(fd, c, n);
    if (r == 0) exit(0);
    if (r < 0) { if (errno == EINTR) continue; die("read"); }
    c += r; n -= (size_t)r;
  }
}

static void write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0) { if (errno == EINTR || errno == EAGAIN) continue; die("write"); }
    c += w; n -= (size_t)w;
  }
}

static int listen_on(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(s, (void *)&a, sizeof a) < 0) die("bind");
  if (listen(s, 1024) < 0) die("listen");
  return s;
}

static void nodelay(int fd) { int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); }

static void add(int ep, int fd) {
  struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl");
}

// A growable byte queue: input waiting to be parsed, or output gathered until the end of a wake-up.
typedef struct { char *p; size_t len, cap; } bytes;
static void put(bytes *b, const void *p, size_t n) {
  if (b->len + n > b->cap) { b->cap = (b->len + n) * 2; b->p = realloc(b->p, b->cap); }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}
static void take(bytes *b, size_t n) { memmove(b->p, b->p + n, b->len - n); b->len -= n; }
static int fill(bytes *b, int fd) {
  char tmp[BUF];
  ssize_t r = read(fd, tmp, sizeof tmp);
  if (r > 0) put(b, tmp, (size_t)r);
  return (int)r;
}
static void put_frame(bytes *b, uint64_t id, const char *p, uint32_t n) {
  uint32_t len = 8 + n;
  put(b, &len, 4); put(b, &id, 8); put(b, p, n);
}
// A whole frame at the front of b: its id, payload and total size; 0 when more bytes are needed.
static size_t frame_at(bytes *b, uint64_t *id, char **payload, uint32_t *n) {
  if (b->len < 12) return 0;
  uint32_t len; memcpy(&len, b->p, 4);
  if (b->len < 4 + (size_t)len) return 0;
  memcpy(id, b->p + 4, 8);
  *payload = b->p + 12; *n = len - 8;
  return 4 + (size_t)len;
}

static void leaf(void) {
  char in[BUF], out[BUF + 32];
  for (;;) {
    uint32_t len; uint64_t id;
    read_all(0, &len, 4);
    read_all(0, &id, 8);
    uint32_t n = len - 8;
    if (n > BUF) exit(2);
    read_all(0, in, n);
    uint32_t m = 7 + n, outlen = 8 + m;
    memcpy(out, &outlen, 4); memcpy(out + 4, &id, 8);
    memcpy(out + 12, "hello: ", 7); memcpy(out + 19, in, n);
    write_all(1, out, 12 + m);
  }
}

typedef struct { int to, from; int busy; } leaf_t;

static void middle(int port, int count) {
  leaf_t *leaves = calloc((size_t)count, sizeof *leaves);
  int by_fd[MAX_FDS];
  for (int i = 0; i < MAX_FDS; i++) by_fd[i] = -1;
  for (int i = 0; i < count; i++) {
    int down[2], up[2];
    if (pipe(down) < 0 || pipe(up) < 0) die("pipe");
    pid_t p = fork();
    if (p == 0) {
      dup2(down[0], 0); dup2(up[1], 1);
      close(down[0]); close(down[1]); close(up[0]); close(up[1]);
      execl("/proc/self/exe", "relay", "leaf", (char *)NULL);
      die("exec");
    }
    close(down[0]); close(up[1]);
    leaves[i] = (leaf_t){.to = down[1], .from = up[0]};
    by_fd[up[0]] = i;
  }
  int l = listen_on(port);
  int c = accept(l, NULL, NULL);
  if (c < 0) die("accept");
  nodelay(c);
  int ep = epoll_create1(0);
  add(ep, c);
  for (int i = 0; i < count; i++) add(ep, leaves[i].from);
  bytes in = {0}, out = {0}, waiting = {0};
  struct epoll_event ev[256];
  for (;;) {
    int n = epoll_wait(ep, ev, 256, -1);
    for (int k = 0; k < n; k++) {
      int fd = ev[k].data.fd;
      if (fd == c) {
        if (fill(&in, c) <= 0) exit(0);
        size_t size; uint64_t id; char *p; uint32_t len;
        while ((size = frame_at(&in, &id, &p, &len)) > 0) { put(&waiting, in.p, size); take(&in, size); }
      } else {
        leaf_t *lf = &leaves[by_fd[fd]];
        uint32_t len; read_all(fd, &len, 4);
        char buf[BUF + 32]; memcpy(buf, &len, 4);
        read_all(fd, buf + 4, len);
        put(&out, buf, 4 + len);
        lf->busy = 0;
      }
    }
    // Hand waiting frames to idle leaves, then send every answer of this wake-up in one write.
    size_t size; uint64_t id; char *p; uint32_t len;
    for (int i = 0; i < count && (size = frame_at(&waiting, &id, &p, &len)) > 0; i++) {
      if (leaves[i].busy) continue;
      write_all(leaves[i].to, waiting.p, size);
      take(&waiting, size);
      leaves[i].busy = 1;
    }
    if (out.len > 0) { write_all(c, out.p, out.len); out.len = 0; }
  }
}

typedef struct { bytes in; int open; } client_t;

static void front(int http_port, int middle_port) {
  int m = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(middle_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  for (int tries = 0; connect(m, (void *)&a, sizeof a) < 0; tries++) {
    if (tries > 100) die("connect");
    close(m); m = socket(AF_INET, SOCK_STREAM, 0); usleep(50000);
  }
  nodelay(m);
  int l = listen_on(http_port);
  int ep = epoll_create1(0);
  add(ep, l); add(ep, m);
  client_t *clients = calloc(MAX_FDS, sizeof *clients);
  bytes from_middle = {0}, to_middle = {0};
  struct epoll_event ev[256];
  for (;;) {
    int n = epoll_wait(ep, ev, 256, -1);
    for (int k = 0; k < n; k++) {
      int fd = ev[k].data.fd;
      if (fd == l) {
        int c = accept(l, NULL, NULL);
        if (c < 0 || c >= MAX_FDS) { if (c >= 0) close(c); continue; }
        nodelay(c); add(ep, c);
        clients[c].open = 1; clients[c].in.len = 0;
      } else if (fd == m) {
        if (fill(&from_middle, m) <= 0) exit(0);
        size_t size; uint64_t id; char *p; uint32_t len;
        while ((size = frame_at(&from_middle, &id, &p, &len)) > 0) {
          if (clients[id].open) {
            char head[128];
            int h = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %u\r\n\r\n", len);
            struct iovec v[2] = {{head, (size_t)h}, {p, len}};
            if (writev((int)id, v, 2) < 0) { clients[id].open = 0; close((int)id); }
          }
          take(&from_middle, size);
        }
      } else {
        client_t *cl = &clients[fd];
        if (fill(&cl->in, fd) <= 0) { cl->open = 0; close(fd); continue; }
        // Whole requests: headers to the blank line, then Content-Length bytes of body.
        for (;;) {
          char *end = memmem(cl->in.p, cl->in.len, "\r\n\r\n", 4);
          if (!end) break;
          size_t head = (size_t)(end - cl->in.p) + 4, body = 0;
          for (char *h = cl->in.p; h < end; h++)
            if ((h == cl->in.p || h[-1] == '\n') && strncasecmp(h, "content-length:", 15) == 0) body = strtoul(h + 15, NULL, 10);
          if (cl->in.len < head + body) break;
          put_frame(&to_middle, (uint64_t)fd, cl->in.p + head, (uint32_t)body);
          take(&cl->in, head + body);
        }
      }
    }
    if (to_middle.len > 0) { write_all(m, to_middle.p, to_middle.len); to_middle.len = 0; }
  }
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && strcmp(argv[1], "leaf") == 0) leaf();
  else if (argc >= 4 && strcmp(argv[1], "middle") == 0) middle(atoi(argv[2]), atoi(argv[3]));
  else if (argc >= 4 && strcmp(argv[1], "front") == 0) front(atoi(argv[2]), atoi(argv[3]));
  else { fprintf(stderr, "usage: relay front HTTP_PORT MIDDLE_PORT | relay middle MIDDLE_PORT LEAVES | relay leaf\n"); return 2; }
  return 0;
}
