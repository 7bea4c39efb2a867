#!/usr/bin/env bash
# Ensures a local PostgreSQL 15 is installed and running with a fresh database for the tests, then
# prints its connection string. Needs root on a fresh machine (apt-get, pg_ctlcluster).
set -euo pipefail
db=${1:-trenv_test}
if ! command -v pg_ctlcluster >/dev/null || [[ ! -d /usr/lib/postgresql/15 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >/dev/null
fi
if ! pg_lsclusters -h 2>/dev/null | grep -q '^15 *main'; then
  pg_createcluster 15 main >/dev/null 2>&1
fi
pg_ctlcluster 15 main start >/dev/null 2>&1 || true
for _ in $(seq 1 50); do
  su postgres -c "pg_isready -q" && break
  sleep 0.2
done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='trenv'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE trenv LOGIN SUPERUSER PASSWORD 'trenv'\"" >&2
su postgres -c "psql -qc 'DROP DATABASE IF EXISTS $db'" >&2
su postgres -c "psql -qc 'CREATE DATABASE $db OWNER trenv'" >&2
echo "Host=127.0.0.1;Port=5432;Username=trenv;Password=trenv;Database=$db"
