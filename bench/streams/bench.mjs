// Durable Streams load driver: ebridge vs the Node reference server.
//
// What it measures, against ONE running server (bench/streams/run starts each
// server in turn and calls this once per server, then `report` once):
//
//   writes-N   N JSON streams (default N = 100, then 1000), one producer per
//              stream (Producer-Id/Epoch/Seq), exactly one POST in flight per
//              stream, each a 256-byte JSON string; after a warm-up, counts
//              the 200 answers for a fixed time: appends/s, p50/p99 latency.
//   sse        one stream, S SSE subscribers (default 100) from offset=now,
//              one writer appending {"i":k,"t":<send time>} at R/s
//              (default 100) for the duration; latency = receive time - t,
//              measured at each subscriber (same process, same clock). Also
//              the writer's POST latency (t to the 200), for a breakdown.
//              --repeats windows (default 3), each on a fresh stream: the
//              rows show the window with the median p99, plus every
//              window's p99.
//   catchup    pre-fills one stream with 10 MB of 1 KB JSON messages (batched
//              POSTs), checks that one reader gets every message back, then
//              has 100 concurrent readers each read the whole stream from
//              offset=-1 following Stream-Next-Offset until Stream-Up-To-Date,
//              in rounds until the duration has passed (at least one round):
//              aggregate MB/s (MB = 10^6 bytes of response body). No
//              Accept-Encoding is sent, so no server compresses.
//   disk       (with --disk-dir, just before sse) the floor under any durable
//              append: 300-byte writes to a file in that directory, each
//              followed by fdatasync, at the SSE rate for --disk-seconds
//              (default 5): fdatasync p50/p99/max. Every durable server's
//              SSE latency includes one such sync; nothing can be faster.
//
// Also samples the server's CPU (/proc/PID/stat) and the generator's CPU
// over each measured window, and the server's peak RSS (VmHWM) at the end.
// The generator runs on the same machine as the server, so the numbers are
// lower bounds when the generator's CPU is high.
//
// Generators. A Node process costs ~150 µs of CPU per request, which on one
// core caps writes and catch-up below what the servers can do, and its event
// loop adds its own delay to SSE latencies. So by default the measured parts
// of writes-N, sse and catchup are driven by ebridge_loadgen
// (bench/loadgen.cpp: C++, Boost.Beast on Asio, one thread unless
// --generator-threads N), with the same semantics as the Node code below; it
// prints one JSON line, which this driver folds into the same result shape.
// Setup that is not measured (catch-up pre-fill and check) and the read-back
// integrity checks stay here. --node-generator drives everything from Node,
// as before, for comparison.
//
// Usage:
//   node bench.mjs drive --url http://127.0.0.1:PORT --label NAME --pid PID \
//        --out FILE.json [--duration 10] [--warmup 1] [--streams 100,1000]
//        [--body-bytes 256] [--subscribers 100] [--rate 100]
//        [--catchup-mb 10] [--catchup-msg-bytes 1024] [--readers 100]
//        [--workloads writes,sse,catchup]
//        [--loadgen PATH (default build/ebridge_loadgen)]
//        [--generator-threads 1] [--node-generator]
//        [--repeats 3 (SSE windows)]
//        [--sse-raw FILE.csv (loadgen: per-event, per-subscriber latencies;
//         windows after the first go to FILE.csv.sse-K)]
//   node bench.mjs report FILE.json...      one table, ratios vs the first file
//
// Node load generation uses only Node built-ins (http with keep-alive Agents).

import http from "node:http";
import fs from "node:fs";
import { execFile } from "node:child_process";
import os from "node:os";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { percentile, procCpu, procMemKb } from "../common.mjs";

// ---------------------------------------------------------------- helpers

const now = () => performance.now();


function latencyStats(samples) {
  const sorted = Float64Array.from(samples).sort();
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1] : null,
  };
}

/** Tallies failed requests by kind and keeps the first few for the report. */
class Failures {
  constructor() {
    this.count = 0;
    this.byKind = {};
    this.samples = [];
  }
  add(kind, detail) {
    this.count++;
    this.byKind[kind] = (this.byKind[kind] ?? 0) + 1;
    if (this.samples.length < 5) this.samples.push(`${kind}: ${detail}`.slice(0, 300));
  }
  toJSON() {
    return { count: this.count, byKind: this.byKind, samples: this.samples };
  }
}

/**
 * One HTTP request. Resolves (never rejects) with
 * {status, headers, bytes, body?, error?}; status 0 = transport error.
 * body: "none" (drain), "count" (count bytes only) or "text".
 * Error bodies (status >= 400) are always kept, for the report.
 */
function request(target, { agent, method, path, headers = {}, body, read = "none", timeoutMs = 60_000 }) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r) => {
      if (!done) {
        done = true;
        resolve(r);
      }
    };
    const req = http.request(
      { agent, host: target.host, port: target.port, method, path, headers },
      (res) => {
        const keep = read === "text" || res.statusCode >= 400;
        const chunks = keep ? [] : null;
        let bytes = 0;
        res.on("data", (c) => {
          bytes += c.length;
          if (keep) chunks.push(c);
        });
        res.on("end", () =>
          finish({
            status: res.statusCode,
            headers: res.headers,
            bytes,
            body: keep ? Buffer.concat(chunks).toString("utf8") : undefined,
          }),
        );
        res.on("error", (e) => finish({ status: 0, error: e }));
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on("error", (e) => finish({ status: 0, error: e }));
    req.end(body);
  });
}

function describe(r) {
  if (r.status === 0) return r.error?.code ?? r.error?.message ?? "transport error";
  return `HTTP ${r.status} ${(r.body ?? "").trim()}`;
}

/** Runs fn(i) for i in [0, n) with at most `limit` running at once. */
async function forEachLimit(n, limit, fn) {
  let next = 0;
  const worker = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(n, limit) }, worker));
}

async function createStream(target, agent, path) {
  const r = await request(target, {
    agent,
    method: "PUT",
    path,
    headers: { "content-type": "application/json", "content-length": 0 },
  });
  if (r.status !== 201 && r.status !== 200) throw new Error(`PUT ${path}: ${describe(r)}`);
}

/** Reads a whole JSON stream from offset=-1; returns {messages, pages}. */
async function readAllJson(target, agent, path) {
  let offset = "-1";
  let messages = 0;
  let pages = 0;
  for (;;) {
    const r = await request(target, { agent, method: "GET", path: `${path}?offset=${offset}`, read: "text" });
    if (r.status !== 200) throw new Error(`GET ${path}?offset=${offset}: ${describe(r)}`);
    pages++;
    messages += JSON.parse(r.body).length;
    if (r.headers["stream-up-to-date"] !== undefined) return { messages, pages };
    const next = r.headers["stream-next-offset"];
    if (!next || next === offset) throw new Error(`GET ${path}: no progress at offset ${offset}`);
    offset = next;
  }
}

/**
 * Runs ebridge_loadgen MODE ARGS... and resolves with the JSON line it prints
 * on stdout; rejects if it fails or prints {"error": ...}. Its stderr is
 * passed through.
 */
function runLoadgen(ctx, mode, args) {
  const { opt } = ctx;
  const argv = [mode, "--url", ctx.url, "--threads", String(opt.generatorThreads), ...args];
  if (ctx.pid) argv.push("--pid", String(ctx.pid));
  return new Promise((resolve, reject) => {
    const child = execFile(opt.loadgen, argv, { maxBuffer: 64 << 20 }, (err, stdout) => {
      const line = stdout.trim().split("\n").pop() ?? "";
      let out = null;
      try {
        out = JSON.parse(line);
      } catch {
        // reported below
      }
      if (out?.error) return reject(new Error(`ebridge_loadgen: ${out.error}`));
      if (err || !out) return reject(new Error(`ebridge_loadgen ${mode} failed: ${err?.message ?? `bad output: ${line.slice(0, 200)}`}`));
      resolve(out);
    });
    child.stderr.pipe(process.stderr);
  });
}

// CPU of the server (from /proc) and of this process, over a window.
function serverCpuSeconds(pid) {
  return pid ? procCpu(pid)?.sec ?? null : null;
}
function cpuMark(pid) {
  return { t: now(), srv: serverCpuSeconds(pid), gen: process.cpuUsage() };
}
/** CPU use since `mark`, in % of one core (200 = both cores of a 2-core box). */
function cpuSince(pid, mark) {
  const seconds = (now() - mark.t) / 1000;
  const srv = serverCpuSeconds(pid);
  const gen = process.cpuUsage(mark.gen);
  return {
    serverPct: srv === null || mark.srv === null ? null : (100 * (srv - mark.srv)) / seconds,
    generatorPct: (100 * (gen.user + gen.system)) / 1e6 / seconds,
  };
}

function memoryOf(pid) {
  const m = procMemKb(pid);
  return m && { hwmKb: m.hwm, rssKb: m.rss };
}

// ---------------------------------------------------------------- workloads

/** Reads back what a few producers had accepted; returns the mismatches. */
async function writesIntegrity(target, agent, base, streams, accepted) {
  const integrity = [];
  for (const i of [0, Math.floor(streams / 2), streams - 1]) {
    try {
      const { messages } = await readAllJson(target, agent, `${base}/s${i}`);
      if (messages !== accepted[i]) integrity.push(`s${i}: accepted ${accepted[i]} appends, read back ${messages}`);
    } catch (e) {
      integrity.push(`s${i}: read back failed: ${e.message}`);
    }
  }
  return integrity;
}

/**
 * writes-N driven by ebridge_loadgen: it creates the N streams (PUT, one
 * connection per stream, all connected before the clock starts) and runs the
 * producers exactly as writesNode below does; then the same read-back check.
 */
async function writesLoadgen(ctx, streams) {
  const { target, opt } = ctx;
  const base = `${ctx.prefix}/w${streams}`;
  const r = await runLoadgen(ctx, "writes", [
    "--base", base,
    "--streams", String(streams),
    "--body-bytes", String(opt.bodyBytes),
    "--warmup", String(opt.warmup),
    "--duration", String(opt.duration),
  ]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const integrity = await writesIntegrity(target, agent, base, streams, r.accepted);
  agent.destroy();
  return {
    streams,
    setupSeconds: r.setupSeconds,
    connections: r.connections,
    appendsPerSec: r.appendsPerSec,
    latencyMs: r.latencyMs,
    duplicates: r.duplicates,
    failures: r.failures,
    integrity,
    cpu: r.cpu,
    generatorThreads: r.threads,
  };
}

/** N streams, one producer each, one append in flight per stream. */
async function writes(ctx, streams) {
  return ctx.opt.nodeGenerator ? writesNode(ctx, streams) : writesLoadgen(ctx, streams);
}

/** writes-N driven from this Node process. */
async function writesNode(ctx, streams) {
  const { target, opt, pid } = ctx;
  const agent = new http.Agent({ keepAlive: true, maxSockets: streams + 8, maxFreeSockets: streams + 8 });
  const base = `${ctx.prefix}/w${streams}`;
  // All creates at once: this also opens one keep-alive connection per stream
  // before the clock starts (1000 simultaneous connects can overflow a listen
  // backlog and stall for SYN retransmits, which must not land in the window).
  const tSetup = now();
  await forEachLimit(streams, streams, (i) => createStream(target, agent, `${base}/s${i}`));
  const setupSeconds = (now() - tSetup) / 1000;
  await sleep(10); // sockets return to the free list just after their response
  const connections = Object.values(agent.freeSockets).reduce((n, list) => n + list.length, 0);

  // One 256-byte body, built once and shared by every request.
  const body = Buffer.from(JSON.stringify("x".repeat(Math.max(0, opt.bodyBytes - 2))));
  const failures = new Failures();
  const latencies = [];
  const accepted = new Array(streams).fill(0);
  let duplicates = 0;

  const start = now();
  const measureFrom = start + opt.warmup * 1000;
  const measureTo = measureFrom + opt.duration * 1000;
  let cpu = null;
  const cpuTimer = setTimeout(() => (cpu = cpuMark(pid)), opt.warmup * 1000);
  let cpuUse = null;
  const cpuEnd = setTimeout(() => (cpuUse = cpuSince(pid, cpu)), opt.warmup * 1000 + opt.duration * 1000);

  const producer = async (i) => {
    const path = `${base}/s${i}`;
    const id = `bench-${i}`;
    let seq = 0;
    while (now() < measureTo) {
      const t0 = now();
      const r = await request(target, {
        agent,
        method: "POST",
        path,
        headers: {
          "content-type": "application/json",
          "content-length": body.length,
          "producer-id": id,
          "producer-epoch": "0",
          "producer-seq": String(seq),
        },
        body,
      });
      const t1 = now();
      if (r.status === 200) {
        seq++;
        accepted[i]++;
        if (t1 >= measureFrom && t1 <= measureTo) latencies.push(t1 - t0);
      } else if (r.status === 204) {
        seq++; // duplicate: the server already had this seq (a retry after an error)
        duplicates++;
      } else {
        failures.add(r.status === 0 ? "transport" : `HTTP ${r.status}`, `${path} seq=${seq}: ${describe(r)}`);
        const expected = r.headers?.["producer-expected-seq"];
        if (r.status === 409 && expected !== undefined) seq = Number(expected);
        await sleep(10);
      }
    }
  };
  await Promise.all(Array.from({ length: streams }, (_, i) => producer(i)));
  clearTimeout(cpuTimer);
  clearTimeout(cpuEnd);
  if (cpuUse === null && cpu !== null) cpuUse = cpuSince(pid, cpu);

  // Integrity: what a few producers had accepted must read back exactly.
  const integrity = await writesIntegrity(target, agent, base, streams, accepted);
  agent.destroy();

  const lat = latencyStats(latencies);
  return {
    streams,
    setupSeconds,
    connections,
    appendsPerSec: lat.n / opt.duration,
    latencyMs: lat,
    duplicates,
    failures: failures.toJSON(),
    integrity,
    cpu: cpuUse,
  };
}

/** Minimal SSE parser: calls onEvent(type, data) per complete event. */
function sseParser(onEvent) {
  let buffer = "";
  return (chunk) => {
    buffer += chunk;
    for (;;) {
      const lf = buffer.indexOf("\n\n");
      const crlf = buffer.indexOf("\r\n\r\n");
      let end = lf;
      let sep = 2;
      if (crlf !== -1 && (lf === -1 || crlf < lf)) {
        end = crlf;
        sep = 4;
      }
      if (end === -1) return;
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + sep);
      let type = "message";
      const data = [];
      for (const raw of block.split("\n")) {
        const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(line[5] === " " ? 6 : 5));
      }
      if (data.length) onEvent(type, data.join("\n"));
    }
  };
}

/** fdatasync latency of small appends in `dir`, paced at `rate` per second. */
async function diskFloor(ctx) {
  const { diskDir, rate, diskSeconds } = ctx.opt;
  const file = `${diskDir}/fsync-probe`;
  const fd = fs.openSync(file, "w");
  const record = Buffer.alloc(300, "x");
  const samples = [];
  try {
    const start = now();
    for (let k = 0; now() - start < diskSeconds * 1000; k++) {
      const due = start + (k * 1000) / rate;
      if (due > now()) await sleep(due - now());
      fs.writeSync(fd, record);
      const t = now();
      fs.fdatasyncSync(fd);
      samples.push(now() - t);
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
  return { fdatasyncMs: latencyStats(samples), bytes: record.length, rate };
}

/** One stream, S SSE subscribers from offset=now, one writer at R events/s. */
async function sseFanout(ctx, name) {
  return ctx.opt.nodeGenerator ? sseNode(ctx, name) : sseLoadgen(ctx, name);
}

/**
 * --repeats SSE windows, each on a stream of its own: the one with the median
 * p99 stands for the server (as bench/source does), and every window's p99
 * is kept, so one noisy window on a shared machine neither makes nor breaks
 * the row, and the spread is in the table.
 */
async function sseWindows(ctx) {
  const windows = [];
  for (let k = 0; k < ctx.opt.repeats; k++) {
    const w = await sseFanout(ctx, k === 0 ? "sse" : `sse-${k}`);
    if (w.error) throw new Error(w.error);
    windows.push(w);
  }
  const byP99 = [...windows].sort((a, b) => (a.latencyMs?.p99 ?? Infinity) - (b.latencyMs?.p99 ?? Infinity));
  const median = byP99[Math.floor((byP99.length - 1) / 2)];
  return { ...median, windowP99s: windows.map((w) => w.latencyMs?.p99 ?? null) };
}

/**
 * sse driven by ebridge_loadgen: it creates the stream (PUT), connects the
 * subscribers, and runs the writer exactly as sseNode below does (t is
 * steady_clock ns in the generator; latencies in ms).
 */
async function sseLoadgen(ctx, name) {
  const { opt } = ctx;
  const args = [
    "--path", `${ctx.prefix}/${name}`,
    "--subscribers", String(opt.subscribers),
    "--rate", String(opt.rate),
    "--warmup", String(opt.warmup),
    "--duration", String(opt.duration),
  ];
  if (opt.sseRaw) args.push("--raw", name === "sse" ? opt.sseRaw : `${opt.sseRaw}.${name}`);
  const r = await runLoadgen(ctx, "sse", args);
  const { mode, threads, ...rest } = r;
  return { ...rest, generatorThreads: threads };
}

/** sse driven from this Node process. */
async function sseNode(ctx, name) {
  const { target, opt, pid } = ctx;
  const path = `${ctx.prefix}/${name}`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: opt.subscribers + 8 });
  await createStream(target, agent, path);

  const failures = new Failures();
  const latencies = [];
  const appendLatencies = []; // writer: t to the POST's answer, measured events
  let firstMeasured = Infinity; // index of the first event sent after warm-up
  let lastMeasured = -1;
  let delivered = 0; // measured events delivered, summed over subscribers
  let reconnects = 0;
  let stopping = false;

  const subscribers = Array.from({ length: opt.subscribers }, () => ({
    lastIndex: -1,
    offset: "now",
    req: null,
  }));

  const connect = (sub) =>
    new Promise((resolve) => {
      const req = http.request(
        {
          agent,
          host: target.host,
          port: target.port,
          method: "GET",
          path: `${path}?offset=${sub.offset}&live=sse`,
          headers: { accept: "text/event-stream" },
        },
        (res) => {
          if (res.statusCode !== 200) {
            failures.add(`HTTP ${res.statusCode}`, `SSE subscribe at ${sub.offset}`);
            res.resume();
            return resolve(false);
          }
          res.setEncoding("utf8");
          res.on(
            "data",
            sseParser((type, data) => {
              const t = now();
              if (type === "control") {
                const control = JSON.parse(data);
                if (control.streamNextOffset) sub.offset = control.streamNextOffset;
                return;
              }
              if (type !== "data") return;
              for (const msg of JSON.parse(data)) {
                if (msg.i <= sub.lastIndex) continue; // re-delivery after a reconnect
                sub.lastIndex = msg.i;
                if (msg.i >= firstMeasured && msg.i <= lastMeasured) {
                  delivered++;
                  latencies.push(t - msg.t);
                }
              }
            }),
          );
          res.on("end", () => {
            if (stopping) return;
            reconnects++; // servers close SSE after a while; resume from the last control offset
            connect(sub);
          });
          res.on("error", () => {});
          resolve(true);
        },
      );
      req.on("error", (e) => {
        if (!stopping) failures.add("transport", `SSE: ${e.code ?? e.message}`);
        resolve(false);
      });
      sub.req = req;
      req.end();
    });

  const connected = await Promise.all(subscribers.map(connect));
  if (!connected.every(Boolean)) failures.add("setup", `${connected.filter((c) => !c).length} subscribers failed to connect`);
  await sleep(200); // let every subscription settle at the tail

  // The writer: event k is due at start + k/rate; one POST in flight.
  const period = 1000 / opt.rate;
  const start = now();
  const measureFrom = start + opt.warmup * 1000;
  const measureTo = measureFrom + opt.duration * 1000;
  let cpu = null;
  let sent = 0;
  let late = 0; // sends that started more than one period after their slot
  let k = 0;
  for (; now() < measureTo; k++) {
    // A slow server makes the writer fall behind; it then sends back to back
    // but still stops at the end of the window (see achievedRate).
    const due = start + k * period;
    const wait = due - now();
    if (wait > 0) await sleep(wait);
    else if (-wait > period) late++;
    const t = now();
    if (t >= measureTo) break;
    if (cpu === null && t >= measureFrom) cpu = cpuMark(pid);
    if (t >= measureFrom) {
      firstMeasured = Math.min(firstMeasured, k);
      lastMeasured = k;
    }
    const body = JSON.stringify({ i: k, t });
    const r = await request(target, {
      agent,
      method: "POST",
      path,
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        "producer-id": "bench-sse",
        "producer-epoch": "0",
        "producer-seq": String(k),
      },
      body,
    });
    if (r.status === 200 && t >= measureFrom) {
      sent++;
      appendLatencies.push(now() - t);
    } else if (r.status !== 200) failures.add(r.status === 0 ? "transport" : `HTTP ${r.status}`, `SSE writer k=${k}: ${describe(r)}`);
  }
  const cpuUse = cpu ? cpuSince(pid, cpu) : null;

  // Grace period for the last deliveries.
  const expected = sent * opt.subscribers;
  const graceUntil = now() + 3000;
  while (delivered < expected && now() < graceUntil) await sleep(20);
  stopping = true;
  for (const sub of subscribers) sub.req?.destroy();
  agent.destroy();

  return {
    subscribers: opt.subscribers,
    rate: opt.rate,
    achievedRate: sent / opt.duration,
    sent,
    late,
    expected,
    delivered,
    deliveredPct: expected ? (100 * delivered) / expected : null,
    reconnects,
    latencyMs: latencyStats(latencies),
    appendLatencyMs: latencyStats(appendLatencies),
    failures: failures.toJSON(),
    cpu: cpuUse,
  };
}

/** Pre-fill one stream, then many readers read all of it from offset=-1. */
async function catchup(ctx) {
  const { target, opt, pid } = ctx;
  const path = `${ctx.prefix}/catchup`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: opt.readers + 8, maxFreeSockets: opt.readers + 8 });
  await createStream(target, agent, path);
  const failures = new Failures();

  // Pre-fill: 1 KB JSON string messages, ~1 MB per POST (JSON arrays are flattened).
  const message = JSON.stringify("y".repeat(Math.max(0, opt.catchupMsgBytes - 2)));
  const total = Math.ceil((opt.catchupMb * 1e6) / opt.catchupMsgBytes);
  const perBatch = Math.max(1, Math.floor(1e6 / opt.catchupMsgBytes));
  const tFill = now();
  for (let done = 0; done < total; ) {
    const n = Math.min(perBatch, total - done);
    const body = Buffer.from(`[${new Array(n).fill(message).join(",")}]`);
    const r = await request(target, {
      agent,
      method: "POST",
      path,
      headers: { "content-type": "application/json", "content-length": body.length },
      body,
    });
    if (r.status !== 200 && r.status !== 204) throw new Error(`pre-fill POST: ${describe(r)}`);
    done += n;
  }
  const fillSeconds = (now() - tFill) / 1000;

  // Check once that everything comes back (also warms caches for every server alike).
  const check = await readAllJson(target, agent, path);
  const integrity = check.messages === total ? [] : [`wrote ${total} messages, read back ${check.messages}`];
  const setup = { readers: opt.readers, messages: total, fillSeconds, pagesPerReader: check.pages };

  if (!opt.nodeGenerator) {
    // The measured rounds, from ebridge_loadgen (same rules as below).
    agent.destroy();
    const r = await runLoadgen(ctx, "catchup", [
      "--path", path,
      "--readers", String(opt.readers),
      "--duration", String(opt.duration),
    ]);
    return {
      ...setup,
      rounds: r.rounds,
      seconds: r.seconds,
      bytes: r.bytes,
      mbPerSec: r.mbPerSec,
      completedReads: r.completedReads,
      integrity,
      failures: r.failures,
      cpu: r.cpu,
      generatorThreads: r.threads,
    };
  }

  const reader = async () => {
    let offset = "-1";
    let bytes = 0;
    let pages = 0;
    for (;;) {
      const r = await request(target, { agent, method: "GET", path: `${path}?offset=${offset}`, read: "count", timeoutMs: 120_000 });
      if (r.status !== 200) {
        failures.add(r.status === 0 ? "transport" : `HTTP ${r.status}`, `catch-up GET offset=${offset}: ${describe(r)}`);
        return { bytes, pages, ok: false };
      }
      bytes += r.bytes;
      pages++;
      if (r.headers["stream-up-to-date"] !== undefined) return { bytes, pages, ok: true };
      const next = r.headers["stream-next-offset"];
      if (!next || next === offset) {
        failures.add("protocol", `catch-up: no progress at offset ${offset}`);
        return { bytes, pages, ok: false };
      }
      offset = next;
    }
  };
  // Rounds of `readers` concurrent full reads, until --duration has passed
  // (at least one round).
  const cpu = cpuMark(pid);
  const t0 = now();
  let rounds = 0;
  let bytes = 0;
  let completedReads = 0;
  do {
    const results = await Promise.all(Array.from({ length: opt.readers }, reader));
    rounds++;
    bytes += results.reduce((s, r) => s + r.bytes, 0);
    completedReads += results.filter((r) => r.ok).length;
  } while (now() - t0 < opt.duration * 1000);
  const seconds = (now() - t0) / 1000;
  const cpuUse = cpuSince(pid, cpu);
  agent.destroy();

  return {
    ...setup,
    rounds,
    seconds,
    bytes,
    mbPerSec: bytes / 1e6 / seconds,
    completedReads,
    integrity,
    failures: failures.toJSON(),
    cpu: cpuUse,
  };
}

// ---------------------------------------------------------------- drive

async function drive(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: "string" },
      label: { type: "string", default: "server" },
      pid: { type: "string" },
      out: { type: "string" },
      duration: { type: "string", default: "10" },
      warmup: { type: "string", default: "1" },
      streams: { type: "string", default: "100,1000" },
      "body-bytes": { type: "string", default: "256" },
      subscribers: { type: "string", default: "100" },
      rate: { type: "string", default: "100" },
      "catchup-mb": { type: "string", default: "10" },
      "catchup-msg-bytes": { type: "string", default: "1024" },
      readers: { type: "string", default: "100" },
      workloads: { type: "string", default: "writes,sse,catchup" },
      loadgen: { type: "string", default: new URL("../../build/ebridge_loadgen", import.meta.url).pathname },
      "generator-threads": { type: "string", default: "1" },
      "node-generator": { type: "boolean", default: false },
      "sse-raw": { type: "string" },
      "disk-dir": { type: "string" },
      "disk-seconds": { type: "string", default: "5" },
      repeats: { type: "string", default: "3" },
    },
  });
  if (!values.url) throw new Error("--url is required");
  const url = new URL(values.url);
  const opt = {
    duration: Number(values.duration),
    warmup: Number(values.warmup),
    streams: values.streams.split(",").map(Number),
    bodyBytes: Number(values["body-bytes"]),
    subscribers: Number(values.subscribers),
    rate: Number(values.rate),
    catchupMb: Number(values["catchup-mb"]),
    catchupMsgBytes: Number(values["catchup-msg-bytes"]),
    readers: Number(values.readers),
    workloads: values.workloads.split(","),
    nodeGenerator: values["node-generator"],
    loadgen: values.loadgen,
    generatorThreads: Number(values["generator-threads"]),
    sseRaw: values["sse-raw"],
    diskDir: values["disk-dir"],
    diskSeconds: Number(values["disk-seconds"]),
    repeats: Number(values.repeats),
  };
  if (!Number.isInteger(opt.repeats) || opt.repeats < 1) throw new Error("--repeats must be a whole number >= 1");
  if (!opt.nodeGenerator && ["writes", "sse", "catchup"].some((w) => opt.workloads.includes(w))) {
    try {
      fs.accessSync(opt.loadgen, fs.constants.X_OK);
    } catch {
      throw new Error(`no load generator at ${opt.loadgen} (ninja -C build ebridge_loadgen, or --node-generator)`);
    }
  }
  const ctx = {
    url: values.url,
    target: { host: url.hostname, port: Number(url.port) },
    opt,
    pid: values.pid ? Number(values.pid) : null,
    prefix: `/v1/stream/bench-${Date.now().toString(36)}`,
  };
  const result = {
    label: values.label,
    url: values.url,
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, node: process.version },
    generator: opt.nodeGenerator
      ? { writes: "node", catchup: "node", sse: "node", threads: 1 }
      : { writes: "ebridge_loadgen", catchup: "ebridge_loadgen", sse: "ebridge_loadgen", threads: opt.generatorThreads },
    options: opt,
    workloads: {},
    memory: null,
  };
  const save = () => values.out && fs.writeFileSync(values.out, JSON.stringify(result, null, 2));

  const run = async (name, fn) => {
    const t = now();
    process.stderr.write(`[${values.label}] ${name} ... `);
    try {
      result.workloads[name] = await fn();
    } catch (e) {
      result.workloads[name] = { error: e.message };
    }
    const w = result.workloads[name];
    process.stderr.write(`${((now() - t) / 1000).toFixed(1)} s${w.error ? ` FAILED: ${w.error}` : ""}\n`);
    save();
  };

  if (opt.workloads.includes("writes"))
    for (const n of opt.streams) await run(`writes-${n}`, () => writes(ctx, n));
  if (opt.workloads.includes("sse")) {
    if (opt.diskDir) await run("disk", () => diskFloor(ctx));
    await run("sse", () => sseWindows(ctx));
  }
  if (opt.workloads.includes("catchup")) await run("catchup", () => catchup(ctx));
  if (ctx.pid) result.memory = memoryOf(ctx.pid);
  save();
}

// ---------------------------------------------------------------- report

// Generator CPU (% of one core) from which a workload counts as generator-bound.
const GENERATOR_BOUND = 85;

function report(files) {
  const results = files.map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
  if (results.length === 0) throw new Error("no result files");
  const ref = results[0]; // ratios are results[0] / each other server
  const opt = ref.options;

  const fmt = (v, digits) =>
    v === null || v === undefined || Number.isNaN(v) ? "-" : typeof v === "string" ? v : v.toFixed(digits);
  const failuresOf = (w) => (w?.error ? NaN : (w?.failures?.count ?? 0) + (w?.integrity?.length ?? 0));

  // [label, value(result), digits, better: "hi" | "lo" | null]
  const rows = [];
  for (const n of opt.streams) {
    const w = (r) => r.workloads[`writes-${n}`];
    rows.push([`writes ${n} streams: appends/s`, (r) => w(r)?.appendsPerSec, 0, "hi"]);
    rows.push([`writes ${n} streams: p50 ms`, (r) => w(r)?.latencyMs?.p50, 2, "lo"]);
    rows.push([`writes ${n} streams: p99 ms`, (r) => w(r)?.latencyMs?.p99, 2, "lo"]);
    rows.push([`writes ${n} streams: server / gen CPU %`, (r) => cpuCell(w(r)), null, null]);
    rows.push([`writes ${n} streams: server CPU µs/append`, (r) => perUnit(w(r), w(r)?.appendsPerSec, 1e6), 0, "lo"]);
  }
  const disk = (r) => r.workloads.disk?.fdatasyncMs;
  rows.push([`disk floor: fdatasync p50 ms (${opt.rate}/s, before SSE)`, (r) => disk(r)?.p50, 2, null]);
  rows.push([`disk floor: fdatasync p99 ms`, (r) => disk(r)?.p99, 2, null]);
  const sse = (r) => r.workloads.sse;
  rows.push([`SSE ${opt.subscribers} subs @ ${opt.rate}/s: p50 ms`, (r) => sse(r)?.latencyMs?.p50, 2, "lo"]);
  rows.push([`SSE ${opt.subscribers} subs @ ${opt.rate}/s: p99 ms`, (r) => sse(r)?.latencyMs?.p99, 2, "lo"]);
  rows.push([
    `SSE p99 ms of each of ${opt.repeats ?? 1} windows`,
    (r) => sse(r)?.windowP99s?.map((v) => (v === null ? "-" : v.toFixed(2))).join(" "),
    null,
    null,
  ]);
  rows.push([`SSE ${opt.subscribers} subs @ ${opt.rate}/s: max ms`, (r) => sse(r)?.latencyMs?.max, 2, "lo"]);
  rows.push([`SSE writer POST p50 ms`, (r) => sse(r)?.appendLatencyMs?.p50, 2, "lo"]);
  rows.push([`SSE writer POST p99 ms`, (r) => sse(r)?.appendLatencyMs?.p99, 2, "lo"]);
  rows.push([`SSE writer events/s achieved`, (r) => sse(r)?.achievedRate, 1, "hi"]);
  rows.push([`SSE delivered %`, (r) => sse(r)?.deliveredPct, 2, "hi"]);
  rows.push([`SSE server / gen CPU %`, (r) => cpuCell(sse(r)), null, null]);
  rows.push([
    `SSE server CPU µs/delivered event`,
    (r) => perUnit(sse(r), sse(r) && (sse(r).achievedRate * sse(r).subscribers * sse(r).deliveredPct) / 100, 1e6),
    1,
    "lo",
  ]);
  const cu = (r) => r.workloads.catchup;
  rows.push([`catch-up ${opt.readers} x ${opt.catchupMb} MB: MB/s`, (r) => cu(r)?.mbPerSec, 1, "hi"]);
  rows.push([`catch-up server / gen CPU %`, (r) => cpuCell(cu(r)), null, null]);
  rows.push([`catch-up server CPU ms/MB`, (r) => perUnit(cu(r), cu(r)?.mbPerSec, 1e3), 2, "lo"]);
  rows.push([`peak RSS MB (VmHWM)`, (r) => (r.memory?.hwmKb ? r.memory.hwmKb / 1024 : null), 1, "lo"]);
  rows.push([
    `failed requests + integrity errors`,
    (r) => Object.values(r.workloads).reduce((s, w) => s + failuresOf(w), 0),
    0,
    null,
  ]);

  // Server CPU per unit of work (scale: 1e6 = µs, 1e3 = ms), independent of
  // how fast the generator could push.
  function perUnit(w, unitsPerSec, scale) {
    if (!w?.cpu || w.cpu.serverPct === null || !unitsPerSec) return null;
    return ((w.cpu.serverPct / 100) * scale) / unitsPerSec;
  }
  function cpuCell(w) {
    if (!w?.cpu) return null;
    // A generator with T threads can use T cores.
    const mark = w.cpu.generatorPct >= GENERATOR_BOUND * (w.generatorThreads ?? 1) ? "*" : "";
    return `${fmt(w.cpu.serverPct, 0)} / ${fmt(w.cpu.generatorPct, 0)}${mark}`;
  }

  const header = ["metric", ...results.map((r) => r.label), ...results.slice(1).map((r) => `${ref.label} / ${r.label}`)];
  const table = [header];
  for (const [label, get, digits, better] of rows) {
    const values = results.map(get);
    if (values.every((v) => v === null || v === undefined)) continue; // a workload no file ran
    const ratios = results.slice(1).map((r, i) => {
      const a = values[0];
      const b = values[i + 1];
      if (better === null || typeof a !== "number" || typeof b !== "number" || !b) return "";
      return `${(a / b).toFixed(2)}x`;
    });
    const arrow = better === "hi" ? " (↑)" : better === "lo" ? " (↓)" : "";
    table.push([label + arrow, ...values.map((v) => fmt(v, digits ?? 0)), ...ratios]);
  }
  const widths = header.map((_, c) => Math.max(...table.map((row) => [...String(row[c])].length)));
  const line = (row) => row.map((cell, c) => (c === 0 ? String(cell).padEnd(widths[c]) : String(cell).padStart(widths[c]))).join("  ");
  console.log(line(table[0]));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of table.slice(1)) console.log(line(row));

  console.log(
    `\n(↑) higher is better, (↓) lower is better; ratios are ${ref.label} / other.` +
      `\nwrites: ${opt.bodyBytes}-byte JSON appends with producer headers, one in flight per stream,` +
      ` ${opt.warmup} s warm-up + ${opt.duration} s measured.` +
      `\nSSE: the window with the median p99 of ${opt.repeats ?? 1} (each on a fresh stream);` +
      ` latency from just before the writer's POST (so it includes the append) to a subscriber` +
      ` parsing the event, same process and clock; the writer keeps one POST in flight;` +
      ` writer POST = from the same instant to the POST's 200.` +
      `\ndisk floor: 300-byte writes each followed by fdatasync, in the server's data directory, at the SSE rate for` +
      ` ${opt.diskSeconds ?? 5} s just before that server's SSE workload (the server idle): the disk's own sync latency,` +
      ` which every durable append, and so every SSE event of a durable server, includes.` +
      `\ncatch-up: MB = 10^6 bytes of response bodies, ${opt.catchupMsgBytes}-byte messages, no compression.` +
      `\nCPU %: of one core over the measured window (the machine has ${ref.host.cpus} cores);` +
      ` server CPU per unit of work does not depend on how hard the generator pushed.` +
      `\nThe load generator shares the ${ref.host.cpus} cores with the server,` +
      ` so every number is a lower bound for the server.` +
      `\n* generator at >= ${GENERATOR_BOUND}% of a core (per generator thread): there the generator, not the server,` +
      ` probably limits the rate.`,
  );
  // Which generator drove what, per server (older result files: all Node).
  const generatorOf = (r) => {
    const g = r.generator ?? { writes: "node", catchup: "node", sse: "node", threads: 1 };
    const name = (kind) =>
      kind === "node" ? "Node (bench.mjs, one process)" : `ebridge_loadgen (C++ Beast/Asio, ${g.threads} thread${g.threads === 1 ? "" : "s"})`;
    return g.writes === g.catchup && g.catchup === g.sse
      ? `${name(g.writes)} for all workloads`
      : `writes + catch-up: ${name(g.writes)}; SSE: ${name(g.sse)}`;
  };
  const generators = results.map(generatorOf);
  console.log(
    generators.every((g) => g === generators[0])
      ? `load generator: ${generators[0]}`
      : results.map((r, i) => `load generator for ${r.label}: ${generators[i]}`).join("\n"),
  );

  // Details of anything that failed.
  for (const r of results) {
    for (const [name, w] of Object.entries(r.workloads)) {
      if (w.error) console.log(`\n${r.label} ${name}: workload failed: ${w.error}`);
      if (w.failures?.count) {
        console.log(`\n${r.label} ${name}: ${w.failures.count} failed requests ${JSON.stringify(w.failures.byKind)}`);
        for (const s of w.failures.samples) console.log(`  ${s}`);
      }
      for (const s of w.integrity ?? []) console.log(`\n${r.label} ${name}: integrity: ${s}`);
      if (w.reconnects) console.log(`\n${r.label} ${name}: ${w.reconnects} SSE reconnects`);
      if (w.late) console.log(`\n${r.label} ${name}: the writer started ${w.late} sends more than one period late`);
      if (w.connections !== undefined && w.connections < w.streams)
        console.log(`\n${r.label} ${name}: only ${w.connections} of ${w.streams} connections were open at the start`);
      if (w.duplicates) console.log(`\n${r.label} ${name}: ${w.duplicates} duplicate (204) appends`);
    }
  }
}

// ---------------------------------------------------------------- main

const [command, ...rest] = process.argv.slice(2);
try {
  if (command === "drive") await drive(rest);
  else if (command === "report") report(rest);
  else {
    console.error("usage: node bench.mjs drive --url URL [options] | report FILE.json...");
    process.exit(2);
  }
} catch (e) {
  console.error(`bench.mjs: ${e.message}`);
  process.exit(1);
}
