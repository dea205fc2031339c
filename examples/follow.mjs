// follow.mjs: follow a view with the official Durable Streams JavaScript client
// (@durable-streams/client). It registers the view (idempotent), then reads its
// stream from the start: the current members arrive as inserts, then every change.
// Each event is applied to a Map (url → row), the State Protocol fold, and printed;
// whenever the reader is up to date it prints the members.
//
//   cd examples && npm install             # once: installs the pinned client
//   EBRIDGE_URL=http://127.0.0.1:8080 node follow.mjs '{"team":"infra"}'          # long-poll
//   EBRIDGE_URL=http://127.0.0.1:8080 node follow.mjs '{"team":"infra"}' --sse    # SSE
//   EBRIDGE_URL=http://127.0.0.1:8080 node follow.mjs '{"team":"infra"}' --once
//
// Live reads go on until Ctrl-C; the client reconnects by itself (an SSE response
// ends about once a minute). --once reads up to the current end, prints the members
// as a JSON array and exits.
import { stream } from '@durable-streams/client';

const base = process.env.EBRIDGE_URL ?? 'http://127.0.0.1:8080';
const [tagsJson, flag] = process.argv.slice(2);
if (!tagsJson) {
  console.error(`usage: node follow.mjs TAGS_JSON [--sse|--once]   e.g. node follow.mjs '{"team":"infra"}'`);
  process.exit(2);
}

// Register: POST the tag filter, get back the view's stream path.
const answer = await fetch(`${base}/_electric/observations/entities/ensure-stream`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ tags: JSON.parse(tagsJson) }),
});
if (!answer.ok) {
  console.error(`register failed: HTTP ${answer.status} ${await answer.text()}`);
  process.exit(1);
}
const { sourceRef, streamUrl } = await answer.json();

const live = { undefined: 'long-poll', '--sse': 'sse', '--once': false }[flag];
if (live === undefined) {
  console.error(`unknown option ${flag}: use --sse or --once`);
  process.exit(2);
}
const once = live === false;
const res = await stream({ url: `${base}${streamUrl}`, offset: '-1', live });

// Events: {type:"members", key:url, value:row | old_value:row, headers:{operation,timestamp}}
const members = new Map();
function apply(event) {
  if (event.type !== 'members') return;
  if (event.headers.operation === 'delete') members.delete(event.key);
  else members.set(event.key, event.value);
}

if (once) {
  for (const event of await res.json()) apply(event);  // everything up to the current end
  console.log(JSON.stringify([...members.values()], null, 2));
} else {
  console.error(`# following ${tagsJson} (view ${sourceRef}) at ${base}${streamUrl}, live=${live}`);
  let shownAt;  // the offset of the last member list printed (SSE repeats up-to-date when idle)
  res.subscribeJson((batch) => {
    for (const event of batch.items) {
      const row = event.value ?? event.old_value;
      console.log(`${event.headers.operation.padEnd(6)} ${event.key}  ${row.status}  ${JSON.stringify(row.tags)}`);
      apply(event);
    }
    if (batch.upToDate && batch.offset !== shownAt) {
      shownAt = batch.offset;
      const list = [...members.values()].map((r) => `${r.url} (${r.status})`).join(', ');
      console.log(`  up to date at ${batch.offset}: ${members.size} members${list ? `: ${list}` : ''}`);
    }
  });
  process.on('SIGINT', () => { res.cancel(); process.exit(0); });
  await res.closed;
}
