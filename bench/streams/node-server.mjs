// Starts the Node reference Durable Streams server (@durable-streams/server) on
// loopback for bench/streams/run, one server per process.
//
//   node node-server.mjs                  in-memory store
//   node node-server.mjs --data-dir DIR   file-backed store (LMDB + append-only
//                                         segment files, fdatasync per append)
//
// Prints `event=serving http=127.0.0.1:PORT` on stderr once it listens (the
// same line ebridge prints, so the run script parses both alike) and stops
// cleanly on SIGTERM/SIGINT.
import { parseArgs } from "node:util";
import { DurableStreamTestServer } from "@durable-streams/server";

const { values } = parseArgs({
  options: {
    "data-dir": { type: "string" },
    port: { type: "string", default: "0" },
  },
});

const server = new DurableStreamTestServer({
  port: Number(values.port),
  host: "127.0.0.1",
  dataDir: values["data-dir"], // undefined: in-memory
  longPollTimeout: 20_000,
});
const url = await server.start();
process.stderr.write(
  `event=serving http=${new URL(url).host} store=${values["data-dir"] ? "file" : "memory"}\n`,
);

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, async () => {
    if (stopping) return;
    stopping = true;
    await server.stop().catch(() => {});
    process.exit(0);
  });
}
