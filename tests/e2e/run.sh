#!/usr/bin/env bash
# CTest entry: installs the pinned State Protocol client (npm install) when missing,
# then runs the end-to-end workload test against PATH_TO_EBRIDGE.
set -uo pipefail
ebridge=${1:?usage: run.sh PATH_TO_EBRIDGE}
if [[ -z "${TEST_DATABASE_URL:-}" ]]; then
  echo "TEST_DATABASE_URL is not set (the test needs a Postgres cluster with wal_level=logical): run through scripts/test or scripts/pg run"
  echo "0 passed, 1 failed"
  exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
if [[ ! -d "$here/node_modules/@durable-streams/state" ]]; then
  # --omit=peer: TypeScript, a peer of @tanstack/db, is not needed to run.
  # If this npm's `npm ci` refuses the lock, npm install honours the same pins.
  (cd "$here" && { npm ci --no-audit --no-fund --omit=peer ||
                   npm install --no-audit --no-fund --omit=peer; }) ||
    { echo "npm ci failed"; echo "0 passed, 1 failed"; exit 1; }
fi
exec node "$here/workload.mjs" "$ebridge"
