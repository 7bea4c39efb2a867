#!/usr/bin/env bash
# What a page fault costs on this machine, the floor under every restore: maps a 10 MiB file-backed region
# privately (as a template is mapped) and writes 69 pages into it in 46 runs (as a session's delta is applied),
# first by pread (a fault per page), then by mmap plus MADV_POPULATE_WRITE (one call per run). Needs gcc.
# Usage: scripts/fault-cost.sh [rounds]
set -euo pipefail
rounds=${1:-5}
work=$(mktemp -d)
trap 'rm -rf "$work" /dev/shm/trenv-fault-cost.$$' EXIT
cat >"$work/fault.c" <<'C'
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
static double us(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
int main(int argc, char **argv) {
  const size_t len = 10 << 20, file = 64 << 20;
  int rounds = atoi(argv[2]), fd = open(argv[1], O_RDWR | O_CREAT, 0600);
  static char fill[1 << 16];
  memset(fill, 7, sizeof fill);
  if (fd < 0 || ftruncate(fd, file) != 0) { perror("pool"); return 1; }
  for (size_t o = 0; o < file; o += sizeof fill) if (pwrite(fd, fill, sizeof fill, o) != sizeof fill) { perror("fill"); return 1; }
  char *base = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  for (int r = 0; r < rounds; r++) {
    mmap(base, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
    double t0 = us();
    for (int i = 0; i < 46; i++) { long off = (long)i * 200 * 1024; size_t n = 4096 * (1 + i % 2); if (pread(fd, base + off, n, (32 << 20) + off) != (ssize_t)n) return 1; }
    double t1 = us();
    mmap(base, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
    double t2 = us();
    for (int i = 0; i < 46; i++) { long off = (long)i * 200 * 1024; size_t n = 4096 * (1 + i % 2); mmap(base + off, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, (32 << 20) + off); madvise(base + off, n, MADV_POPULATE_WRITE); }
    double t3 = us();
    printf("69 pages: pread %.0f us (%.1f us a page)   mmap+populate %.0f us (%.1f us a page)\n", t1 - t0, (t1 - t0) / 69, t3 - t2, (t3 - t2) / 69);
  }
  return 0;
}
C
gcc -O2 -o "$work/fault" "$work/fault.c"
"$work/fault" /dev/shm/trenv-fault-cost.$$ "$rounds"
