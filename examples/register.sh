#!/usr/bin/env bash
# register.sh: register a view (a tag filter) with a running ebridge and print its
# answer, {"sourceRef":…,"streamUrl":…}. Registering is idempotent: the same tags
# (in any key order) always give the same stream.
#
#   EBRIDGE_URL=http://127.0.0.1:8080 examples/register.sh '{"team":"infra","role":"reviewer"}'
#
# The answer comes once the view's first snapshot is durable. A bad filter (a value
# that is not a string, say) gets HTTP 400 and {"error":{"code":"INVALID_REQUEST",…}};
# the script then prints that body to stderr and exits 1 (as it does when
# ebridge cannot be reached).
set -euo pipefail

base=${EBRIDGE_URL:-http://127.0.0.1:8080}
if [[ $# -lt 1 ]]; then
  echo "usage: register.sh TAGS_JSON      e.g. register.sh '{\"team\":\"infra\"}'" >&2
  exit 2
fi
tags=$1

if ! answer=$(curl -sS --fail-with-body -H 'Content-Type: application/json' \
     -d "{\"tags\":$tags}" "$base/_electric/observations/entities/ensure-stream"); then
  [[ -z $answer ]] || printf '%s\n' "$answer" >&2
  exit 1
fi
printf '%s\n' "$answer"
