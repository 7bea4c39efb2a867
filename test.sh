#!/usr/bin/env bash
# Runs every test: installs what is missing, builds guests, the solution and the sandbox host, then runs all test projects.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
cd "$root"
scripts/bootstrap.sh
scripts/docker-engine.sh  # the compose test runs the cluster in containers: installs and starts dockerd when missing
mkdir -p artifacts
CONFIGURATION=Release scripts/build.sh
scripts/build-python.sh  # the Python runtime the runtime tests deploy scripts on (cached outside the repo)
scripts/fetch-ruby.sh    # and the Ruby runtime (npm @ruby/3.4-wasm-wasi)
export TRENV_SANDBOX_HOST="$root/artifacts/sandbox-host"
# Two cluster tests keep their registry in PostgreSQL 15, each in a fresh database of its own.
TRENV_TEST_POSTGRES=$(scripts/postgres.sh trenv_test)
TRENV_TEST_POSTGRES_SESSIONS=$(scripts/postgres.sh trenv_test_sessions)
export TRENV_TEST_POSTGRES TRENV_TEST_POSTGRES_SESSIONS

log=artifacts/test-output.txt
set +e
# One test assembly at a time: the multi-process tests need the two cores more than the run needs parallelism.
dotnet test TrEnv.Cluster.sln -c Release --no-build -nologo -m:1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -oE 'Passed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
failed=$(grep -oE 'Failed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
skipped=$(grep -oE 'Skipped: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
