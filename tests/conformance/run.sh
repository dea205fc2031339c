#!/usr/bin/env bash
# CTest entry: the official Durable Streams conformance suite against a fresh
# `ebridge serve` (free port, new data directory, 500 ms long-poll timeout,
# and the origin its CORS preflight test sends listed in http.cors-origins).
# The Fork groups are excluded: forks are not implemented yet.
set -uo pipefail
ebridge=${1:?usage: run.sh PATH_TO_EBRIDGE}
: "${TEST_DATABASE_URL:?TEST_DATABASE_URL is not set: run through scripts/test}"
here=$(cd "$(dirname "$0")" && pwd)
if [[ ! -d "$here/node_modules/@durable-streams/server-conformance-tests" ]]; then
  # npm ci: installs exactly the lock and never rewrites it (the lock lists
  # the Windows-only optional dependency npm 11 expects, so it accepts it).
  (cd "$here" && npm ci --no-audit --no-fund) || { echo "npm ci failed"; exit 1; }
fi
work=$(mktemp -d /tmp/ebridge-conformance.XXXXXX)
pid=""
cleanup() {
  [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
"$ebridge" --postgres.url="$TEST_DATABASE_URL" --http.listen=127.0.0.1:0 \
  --data-dir="$work/data" --http.long-poll-timeout=500ms \
  --http.cors-origins=https://example.com \
  --log.level=info serve >"$work/log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(grep -oE 'event=serving http=127\.0\.0\.1:[0-9]+' "$work/log" | grep -oE '[0-9]+$' || true)
  [[ -n "$port" ]] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$port" ]]; then
  echo "ebridge did not start:"; cat "$work/log"; exit 1
fi
cd "$here"
CONFORMANCE_TEST_URL="http://127.0.0.1:$port" CONFORMANCE_FILTER='^(?!.*Fork)' \
  npx vitest run --reporter=default --reporter=json --outputFile="$work/result.json"
status=$?
node -e '
  const r = require(process.argv[1]);
  console.log(`conformance: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ` +
              `${r.numPendingTests} excluded (Fork groups)`);
  process.exit(r.numFailedTests === 0 && r.numPassedTests > 0 ? 0 : 1);
' "$work/result.json" || status=1
exit "$status"
