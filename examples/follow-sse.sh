#!/usr/bin/env bash
# follow-sse.sh: follow a view live over Server-Sent Events with curl, printing the
# raw stream: `event: data` lines carry a JSON array of members events (insert,
# update, delete), each followed by an `event: control` line with the next offset.
# It registers the view first (idempotent), reads from OFFSET (default -1: the
# current members first, then every change), and when the server ends the response
# (it does about once a minute) reconnects from the last offset it saw. Ctrl-C stops it.
#
#   EBRIDGE_URL=http://127.0.0.1:8080 examples/follow-sse.sh '{"team":"infra"}' [OFFSET]
set -euo pipefail

base=${EBRIDGE_URL:-http://127.0.0.1:8080}
if [[ $# -lt 1 ]]; then
  echo "usage: follow-sse.sh TAGS_JSON [OFFSET]      e.g. follow-sse.sh '{\"team\":\"infra\"}'" >&2
  exit 2
fi
tags=$1
offset=${2:--1}

if ! answer=$(curl -sS --fail-with-body -H 'Content-Type: application/json' \
     -d "{\"tags\":$tags}" "$base/_electric/observations/entities/ensure-stream"); then
  [[ -z $answer ]] || printf '%s\n' "$answer" >&2
  exit 1
fi
stream=$(sed -E 's/.*"streamUrl":"([^"]*)".*/\1/' <<<"$answer")
echo "# $tags → $base$stream" >&2

curl=""
trap '[[ -z $curl ]] || kill "$curl" 2>/dev/null; exit 130' INT
trap '[[ -z $curl ]] || kill "$curl" 2>/dev/null; exit 143' TERM
while :; do
  exec 3< <(curl -sS -N "$base$stream?offset=$offset&live=sse")
  curl=$!
  while IFS= read -r line <&3; do
    printf '%s\n' "$line"
    # control events carry {"streamNextOffset":"…",…}: where to resume
    if [[ $line =~ \"streamNextOffset\":\"([^\"]+)\" ]]; then offset=${BASH_REMATCH[1]}; fi
  done
  exec 3<&-
  echo "# reconnecting from offset $offset" >&2
  sleep 1
done
