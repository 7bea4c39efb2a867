#!/bin/sh
# Worker container start: make the container's own cgroup tree usable for per-sandbox groups, then run the
# worker. Docker mounts /sys/fs/cgroup read-only; with CAP_SYS_ADMIN in a private cgroup namespace the
# worker may remount it read-write, which touches only this container's subtree. On cgroup v2 a group
# with processes cannot hand controllers to children, so this shell first moves itself into a leaf.
set -e
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mount -o remount,rw /sys/fs/cgroup 2>/dev/null || echo "worker-entrypoint: /sys/fs/cgroup stays read-only; sandboxes run without cgroup limits" >&2
  if [ -w /sys/fs/cgroup/cgroup.procs ]; then
    mkdir -p /sys/fs/cgroup/init
    echo $$ > /sys/fs/cgroup/init/cgroup.procs || true
  fi
fi
exec dotnet /app/trenv-worker.dll "$@"
