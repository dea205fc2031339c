// Source benchmark driver: commit-to-SSE latency of ebridge views against the
// logical-decoding floor (pg_recvlogical), the highest change rate ebridge
// sustains, and ebridge's resident memory per idle view.
//
// bench/source/run starts Postgres (scripts/pg) and ebridge, then calls
//   node bench.mjs drive --url http://HOST:PORT --pid EBRIDGE_PID \
//        --pg-url URL --data-dir DIR [options]
// One run, in this order (one ebridge process throughout):
//   setup     inserts entities /bench/e0../bench/e<max views - 1>, tags
//             {"v":"v<i>"} (so view i has exactly one member), and starts the
//             floor: pg_recvlogical on its own slot (test_decoding), reading
//             the same commits as ebridge, at nice -5 like ebridge's HTTP
//             threads (when root), so priority alone favours neither.
//   baseline  the writer at --rate with no view registered: the floor while
//             ebridge only consumes its feed (--no-baseline skips it).
//   for N in --views (default 1000,10000): registers views {"v":"v<i>"} up to
//             N (POST ensure-stream; the first --sequential-registers one at
//             a time, the rest --register-concurrency at a time; the first
//             views are reused), with ebridge's VmRSS just before and 2 s
//             after; then a latency phase: S SSE subscribers (--subscribers,
//             views 0..S-1), --latency-writers psql processes committing
//             UPDATEs of those views' entities round-robin at --rate per
//             second, --warmup s, then --duration s measured. After each
//             registration, Postgres finishes the maintenance it caused
//             (VACUUM (ANALYZE), CHECKPOINT, no autovacuum worker running);
//             before each phase and step, ebridge must have caught up (a
//             marker commit seen on SSE, up to --settle-timeout s).
//   idle      registers --empty-views views whose tags match no entity
//             (0 members), RSS before and --idle-settle s after (by then
//             the registrations' 30 s request timeouts have fired, so the
//             views are idle and what is left is what an idle view keeps).
//   steps     with all views registered, the rate steps through --steps
//             (default 1000,2000,4000,8000) and then "max" (writers unpaced:
//             as fast as Postgres commits), with --writers psql processes.
//   alone     ebridge and pg_recvlogical are paused (SIGSTOP) while the same
//             writers run unpaced: the rate Postgres commits with no consumer
//             taking CPU; then they are resumed (SIGCONT) and the time each
//             takes to deliver the backlog is measured (--no-alone skips it).
//
// Every statement is its own autocommitted transaction:
//   UPDATE entities SET updated_at = <clock_timestamp() in µs>, status = ...
//   WHERE tenant_id = 'default' AND url = '/bench/e<i>' RETURNING updated_at;
// so each commit carries the server clock just before it commits, and each
// produces exactly one SSE event (on one subscriber) and one pg_recvlogical
// line. Latency = receiver wall clock (µs) - updated_at, for both; the
// writer's own receipt of the RETURNING row gives the commit's share. The
// receivers run in this process, the writers in a child process (bench.mjs
// writer, forked) so pacing does not delay the receivers' event loop. Per
// window it also records CPU by process (/proc), the driver's event-loop
// delay, and ebridge's registry writes (entity_bridges rows in the floor's
// stream).
//
// Output: one table on stdout; --out FILE.json keeps every number, --raw
// FILE.csv appends every event (phase,receiver,url,commit_us,latency_us).
// Only Node built-ins.

import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import { spawn, fork, execFileSync } from "node:child_process";
import { parseArgs } from "node:util";
import { performance, monitorEventLoopDelay } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { percentile, procCpu, procMemKb } from "../common.mjs";

const PG_RECVLOGICAL = "/usr/lib/postgresql/15/bin/pg_recvlogical";
const FLOOR_NICE = -5;
const STATUSES = ["running", "idle"];

// ---------------------------------------------------------------- clock

// Wall clock in µs with sub-ms resolution: performance.now() (monotonic) plus
// an offset to the realtime clock, re-anchored at the start of each phase by
// waiting for Date.now() to tick (so NTP slew cannot accumulate over a run).
let clockOffsetUs = performance.timeOrigin * 1000;
const nowUs = () => clockOffsetUs + performance.now() * 1000;
function calibrateClock() {
  const before = nowUs();
  const d0 = Date.now();
  let d;
  let p;
  do {
    p = performance.now();
    d = Date.now();
  } while (d === d0);
  clockOffsetUs = d * 1000 - p * 1000;
  return nowUs() - before - (performance.now() - p) * 1000; // change of the offset, µs (drift)
}

// ---------------------------------------------------------------- helpers

function stats(samplesUs) {
  const s = Float64Array.from(samplesUs).sort();
  const ms = (v) => (v === null ? null : v / 1000);
  return { n: s.length, p50: ms(percentile(s, 50)), p99: ms(percentile(s, 99)), max: ms(s.length ? s[s.length - 1] : null) };
}
const log = (...a) => console.error("[bench]", ...a);

function rssKb(pid) {
  return procMemKb(pid) ?? { rss: NaN, hwm: NaN };
}
function cpuSeconds(pid) {
  return procCpu(pid)?.sec ?? NaN;
}
/** CPU seconds of every process, by pid: {comm, sec}. */
function allCpu(pids) {
  const out = new Map();
  for (const d of pids ?? fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(String(d))) continue;
    const x = procCpu(d);
    if (x) out.set(Number(d), x);
  }
  return out;
}
/** CPU % of one core per process group over a window, from two allCpu() samples. */
function cpuBreakdown(a0, a1, seconds, groupOf) {
  const g = {};
  for (const [pid, x] of a1) {
    const before = a0.get(pid)?.sec ?? 0;
    const d = x.sec - before;
    if (d <= 0) continue;
    const k = groupOf(pid, x.comm);
    g[k] = (g[k] ?? 0) + (d / seconds) * 100;
  }
  return Object.fromEntries(Object.entries(g).sort((x, y) => y[1] - x[1]).map(([k, v]) => [k, Math.round(v)]));
}

/** Names the process groups of the CPU breakdown, from Postgres' view of its backends. */
function makeGroupOf(pgUrl, { ebridgePid, floorSlot }) {
  const roles = new Map();
  const text = psql(pgUrl,
    `SELECT a.pid, CASE WHEN s.slot_name = '${floorSlot}' THEN 'pg walsender (floor)' WHEN s.slot_name IS NOT NULL THEN 'pg walsender (ebridge)' ` +
      `WHEN a.application_name = 'psql' THEN 'pg backends (writers)' WHEN a.backend_type = 'client backend' THEN 'pg backends (ebridge)' ` +
      `ELSE 'pg other' END FROM pg_stat_activity a LEFT JOIN pg_replication_slots s ON s.active_pid = a.pid`);
  for (const line of text.split("\n")) {
    const [pid, role] = line.split("|");
    roles.set(Number(pid), role);
  }
  return (pid, comm) => {
    if (pid === ebridgePid) return "ebridge";
    if (pid === process.pid) return "driver";
    if (writer && pid === writer.pid) return "writer (node)";
    if (comm === "psql") return "psql";
    if (comm === "pg_recvlogical") return "pg_recvlogical";
    if (comm === "postgres") return roles.get(pid) ?? "pg other";
    return "other";
  };
}

/** Machine-wide CPU ticks from /proc/stat: busy (user..steal minus idle, iowait), iowait, total. */
function machineCpu() {
  const f = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((x, y) => x + y, 0);
  return { busy: total - f[3] - f[4], iowait: f[4], total };
}
function duKb(dir) {
  try {
    return Number(execFileSync("du", ["-sk", dir], { encoding: "utf8" }).split("\t")[0]);
  } catch {
    return NaN;
  }
}
function psql(pgUrl, sql) {
  return execFileSync("psql", [pgUrl, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], { encoding: "utf8" }).trim();
}
const updateSql = (i, k) =>
  `UPDATE entities SET updated_at = (extract(epoch from clock_timestamp())*1000000)::bigint, ` +
  `status = '${STATUSES[k & 1]}' WHERE tenant_id = 'default' AND url = '/bench/e${i}' RETURNING updated_at;\n`;

// ---------------------------------------------------------------- writer (child)

// A pool of psql processes fed on stdin. Messages from the parent:
//   {cmd:"start", writers:K, rate:R|0 (0 = unpaced), entities:[i...]}
//   {cmd:"stop"}   -> {type:"stopped", ...stats} once every statement is acknowledged
//   {cmd:"count"}  -> {type:"count", acked}
// psql runs with -At, without -q: per statement it prints the RETURNING value
// (once committed: the commit's latency as the writer sees it) and "UPDATE 1" (the ack).
async function writerMain() {
  const pgUrl = process.env.BENCH_PG_URL;
  const pool = [];
  let run = null;
  const errors = [];
  function psqlProc(j) {
    if (pool[j]) return pool[j];
    const p = spawn("psql", [pgUrl, "-X", "-At", "-v", "ON_ERROR_STOP=1"], { stdio: ["pipe", "pipe", "pipe"] });
    const w = { p, sent: 0, acked: 0, bad: 0, tail: "", cursor: 0, entities: [] };
    p.stdout.setEncoding("utf8");
    p.stdout.on("data", (d) => {
      const t = nowUs();
      const text = w.tail + d;
      const lines = text.split("\n");
      w.tail = lines.pop();
      for (const l of lines) {
        if (l === "UPDATE 1") w.acked++;
        else if (/^\d+$/.test(l)) commits.push(Number(l), t - Number(l));
        else if (l.startsWith("UPDATE")) {
          w.acked++;
          w.bad++;
        }
      }
      if (run && run.rate === 0) topUp(w);
    });
    p.stderr.setEncoding("utf8");
    p.stderr.on("data", (d) => errors.length < 5 && errors.push(d.trim()));
    p.on("exit", (code) => {
      if (!stopping) errors.push(`psql ${j} exited with ${code}`);
    });
    p.stdin.on("error", () => {});
    pool[j] = w;
    return w;
  }
  let stopping = false;
  let commits = []; // flat [updated_at, ack latency µs, ...]
  const UNPACED_INFLIGHT = 32;
  function send(w, n) {
    let s = "";
    for (let k = 0; k < n; k++) {
      s += updateSql(w.entities[w.cursor % w.entities.length], w.sent + k);
      w.cursor++;
    }
    w.sent += n;
    w.p.stdin.write(s);
  }
  function topUp(w) {
    if (!run || run.stopped) return;
    const n = UNPACED_INFLIGHT - (w.sent - w.acked);
    if (n > 0) send(w, n);
  }
  const active = () => pool.slice(0, run.writers);
  const acked = () => pool.reduce((s, w) => s + (w ? w.acked : 0), 0);
  const sentTotal = () => pool.reduce((s, w) => s + (w ? w.sent : 0), 0);

  function tick() {
    if (!run || run.stopped) return;
    const t = performance.now();
    if (run.lastTick !== null) run.maxGapMs = Math.max(run.maxGapMs, t - run.lastTick);
    run.lastTick = t;
    const due = Math.floor(((t - run.t0) / 1000) * run.rate) - run.sent;
    if (due > 0) {
      // spread over the writers in proportion (round-robin remainder)
      const ws = active();
      for (let k = 0; k < ws.length; k++) {
        const n = Math.floor(due / ws.length) + ((run.rr + k) % ws.length < due % ws.length ? 1 : 0);
        if (n > 0) send(ws[k], n);
      }
      run.rr = (run.rr + due) % ws.length;
      run.sent += due;
      const outstanding = ws.reduce((s, w) => s + w.sent - w.acked, 0);
      run.maxOutstanding = Math.max(run.maxOutstanding, outstanding);
    }
    setTimeout(tick, 2);
  }

  process.on("message", async (m) => {
    if (m.cmd === "start") {
      for (let j = 0; j < m.writers; j++) {
        const w = psqlProc(j);
        w.entities = m.entities.filter((_, k) => k % m.writers === j);
        w.cursor = 0;
      }
      calibrateClock();
      commits = [];
      run = { ...m, t0: performance.now(), sent: 0, rr: 0, maxGapMs: 0, lastTick: null, maxOutstanding: 0, stopped: false, acked0: acked(), sent0: sentTotal(), bad0: pool.reduce((s, w) => s + (w ? w.bad : 0), 0) };
      if (m.rate > 0) tick();
      else for (const w of active()) topUp(w);
    } else if (m.cmd === "count") {
      process.send({ type: "count", acked: acked() });
    } else if (m.cmd === "stop") {
      run.stopped = true;
      const tStop = performance.now();
      const outstandingAtStop = sentTotal() - acked();
      while (sentTotal() > acked() && performance.now() - tStop < 30000) await sleep(5);
      const lat = [];
      for (let k = 0; k < commits.length; k += 2)
        if (m.t0 === undefined || (commits[k] >= m.t0 && commits[k] < m.t1)) lat.push(commits[k + 1]);
      process.send({
        type: "stopped",
        sent: sentTotal() - run.sent0,
        acked: acked() - run.acked0,
        bad: pool.reduce((s, w) => s + (w ? w.bad : 0), 0) - run.bad0,
        outstandingAtStop,
        drainMs: performance.now() - tStop,
        maxOutstanding: run.maxOutstanding,
        maxTickGapMs: run.maxGapMs,
        errors: errors.splice(0),
        commit: stats(lat),
      });
    } else if (m.cmd === "exit") {
      shutdown();
    }
  });
  function shutdown() {
    stopping = true;
    for (const w of pool) if (w) w.p.kill("SIGTERM");
    setTimeout(() => process.exit(0), 100);
  }
  process.on("disconnect", shutdown);
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", () => {}); // the parent decides
}

// ---------------------------------------------------------------- receivers

/** Per-phase sink of received changes: ebridge (SSE) and floor. */
class Sink {
  constructor() {
    this.reset();
  }
  reset() {
    this.ebridge = []; // [url, updatedAt, recvUs]
    this.floor = [];
    this.registryChanges = 0; // entity_bridges rows seen by the floor
    this.registryTxMaxRows = 0;
  }
}
const sink = new Sink();

/** Floor: pg_recvlogical on its own test_decoding slot, lines to stdout. */
function startFloor(pgUrl, slot) {
  const args = ["-d", pgUrl, "--slot", slot, "--create-slot", "--if-not-exists", "-P", "test_decoding",
    "-o", "skip-empty-xacts=1", "-o", "include-xids=0", "--start", "-f", "-", "-F", "0", "-s", "1"];
  const p = spawn(PG_RECVLOGICAL, args, { stdio: ["ignore", "pipe", "pipe"] });
  // ebridge's HTTP threads, which deliver its SSE events, ask for nice -5:
  // the floor gets the same, so neither side wins the cores by priority.
  try {
    os.setPriority(p.pid, FLOOR_NICE);
    p.nice = FLOOR_NICE;
  } catch {
    p.nice = 0; // not root: ebridge cannot raise its threads either
  }
  let tail = "";
  let txRows = 0;
  let stderr = "";
  const re = /url\[text\]:'([^']*)'.*updated_at\[bigint\]:(\d+)/;
  p.stdout.setEncoding("utf8");
  p.stdout.on("data", (d) => {
    const t = nowUs();
    const lines = (tail + d).split("\n");
    tail = lines.pop();
    for (const l of lines) {
      if (l.startsWith("table public.entities: UPDATE:")) {
        const nt = l.indexOf("new-tuple:");
        const m = re.exec(nt >= 0 ? l.slice(nt) : l);
        if (m) sink.floor.push([m[1], Number(m[2]), t]);
      } else if (l.startsWith("table public.entity_bridges:")) {
        sink.registryChanges++;
        txRows++;
      } else if (l === "COMMIT") {
        sink.registryTxMaxRows = Math.max(sink.registryTxMaxRows, txRows);
        txRows = 0;
      }
    }
  });
  p.stderr.setEncoding("utf8");
  p.stderr.on("data", (d) => (stderr += d));
  p.on("exit", (code, sig) => {
    if (!shuttingDown) log(`pg_recvlogical exited (${code ?? sig}): ${stderr.trim().slice(0, 500)}`);
  });
  return p;
}

/** One SSE subscriber on a stream; reconnects from its last offset when the server ends the response. */
class Subscriber {
  constructor(base, path) {
    this.base = base;
    this.path = path;
    this.offset = "-1";
    this.req = null;
    this.open = false;
    this.upToDate = false;
    this.reconnects = 0;
    this.errors = 0;
  }
  connect() {
    this.open = true;
    this.upToDate = false;
    const url = `${this.base}${this.path}?offset=${encodeURIComponent(this.offset)}&live=sse`;
    this.req = http.get(url, { agent: false }, (res) => {
      if (res.statusCode !== 200) {
        this.errors++;
        res.resume();
        return;
      }
      res.setEncoding("utf8");
      let buf = "";
      res.on("data", (d) => {
        const t = nowUs();
        buf += d;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          this.onEvent(buf.slice(0, i), t);
          buf = buf.slice(i + 2);
        }
      });
      res.on("end", () => this.reopen());
      res.on("error", () => {});
    });
    this.req.on("error", () => {
      if (this.open) this.errors++;
      this.reopen();
    });
  }
  reopen() {
    if (!this.open) return;
    this.reconnects++;
    this.req = null;
    setTimeout(() => this.open && this.connect(), 10);
  }
  onEvent(block, t) {
    let type = "";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) type = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (type === "control") {
      const c = JSON.parse(data.join("\n"));
      if (c.streamNextOffset) this.offset = c.streamNextOffset;
      if (c.upToDate) this.upToDate = true;
    } else if (type === "data") {
      for (const e of JSON.parse(data.join("\n"))) {
        if (e.headers?.operation === "update" && e.value?.updated_at > 0) sink.ebridge.push([e.key, e.value.updated_at, t]);
      }
    }
  }
  close() {
    this.open = false;
    if (this.req) this.req.destroy();
    this.req = null;
  }
}

// ---------------------------------------------------------------- registration

const agentFor = (n) => new http.Agent({ keepAlive: true, maxSockets: n });
function post(base, path, body, agent) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(`${base}${path}`, {
      method: "POST",
      agent,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data) },
    }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode, text }));
    });
    req.on("error", reject);
    req.end(data);
  });
}

/** Registers views tagsOf(i) for i in [from, to), `concurrency` at a time. */
async function registerViews(base, from, to, tagsOf, concurrency, streams) {
  const agent = agentFor(concurrency);
  const lat = [];
  let failures = 0;
  let retries = 0;
  const firstErrors = [];
  let next = from;
  const t0 = performance.now();
  async function worker() {
    while (next < to) {
      const i = next++;
      for (let attempt = 0; ; attempt++) {
        const ts = performance.now();
        let r;
        try {
          r = await post(base, "/_electric/observations/entities/ensure-stream", { tags: tagsOf(i) }, agent);
        } catch (e) {
          r = { status: 0, text: String(e.message) };
        }
        if (r.status === 200) {
          lat.push((performance.now() - ts) * 1000);
          if (streams) streams[i] = JSON.parse(r.text).streamUrl;
          break;
        }
        if (firstErrors.length < 3) firstErrors.push(`view ${i}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
        if (attempt >= 2) {
          failures++;
          break;
        }
        retries++;
        await sleep(200);
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  const seconds = (performance.now() - t0) / 1000;
  return { views: to - from, seconds, perSec: (to - from) / seconds, latencyMs: stats(lat), failures, retries, firstErrors };
}

// ---------------------------------------------------------------- phases

let writer = null;
let shuttingDown = false;
const writerReplies = [];
function writerAsk(msg, type) {
  return new Promise((resolve) => {
    writerReplies.push({ type, resolve });
    writer.send(msg);
  });
}

/**
 * Waits until ebridge has caught up with the feed, so that a phase does not
 * inherit the previous one's backlog: commits a marker update of the first
 * subscribed entity and waits for it on SSE. Returns the wait in ms, or null
 * after --settle-timeout.
 */
async function settle(ctx) {
  const url = `/bench/e${ctx.writeEntities[0]}`;
  const t = performance.now();
  const v = Number(psql(ctx.pgUrl, `UPDATE entities SET updated_at = (extract(epoch from clock_timestamp())*1000000)::bigint ` +
    `WHERE tenant_id = 'default' AND url = '${url}' RETURNING updated_at`));
  while (performance.now() - t < ctx.opt.settleTimeout * 1000) {
    if (sink.ebridge.some((r) => r[0] === url && r[1] === v)) return performance.now() - t;
    await sleep(50);
  }
  return null;
}

/**
 * Lets Postgres finish the maintenance a setup step caused before anything is
 * measured: registering thousands of views inserts and updates thousands of
 * rows, and the autovacuum and analyze that follow (and a checkpoint) would
 * otherwise land in the next windows, slowing commits for ebridge and the
 * floor alike. VACUUM (ANALYZE) the bench's tables, CHECKPOINT, then wait
 * (up to 30 s) until no autovacuum worker runs. Returns the seconds it took.
 */
async function quiesce(ctx) {
  const t = performance.now();
  psql(ctx.pgUrl, "VACUUM (ANALYZE) entities");
  psql(ctx.pgUrl, "VACUUM (ANALYZE) entity_bridges");
  psql(ctx.pgUrl, "CHECKPOINT");
  while (performance.now() - t < 30000) {
    const n = Number(psql(ctx.pgUrl, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"));
    if (n === 0) break;
    await sleep(200);
  }
  const seconds = (performance.now() - t) / 1000;
  log(`  Postgres quiet after the setup (vacuum, analyze, checkpoint) in ${seconds.toFixed(1)} s`);
  return seconds;
}

/**
 * One measured window: subscribers open, the writer runs `rate` (0 = unpaced)
 * with `writers` psql processes for warmup + duration s; changes whose commit
 * time falls in the measured window are matched between ebridge and the floor.
 */
async function measure(ctx, { name, rate, writers, warmup, duration }) {
  const { opt } = ctx;
  const subs = ctx.baseline ? [] : ctx.subs;
  for (const s of subs) {
    s.reconnects = 0;
    s.connect();
  }
  const tw = performance.now();
  while (!subs.every((s) => s.upToDate) && performance.now() - tw < 30000) await sleep(10);
  const notUpToDate = subs.filter((s) => !s.upToDate).length;
  await sleep(200);
  sink.reset();
  const settleMs = subs.length ? await settle(ctx) : 0;
  if (settleMs === null) log(`${name}: ebridge still behind after ${opt.settleTimeout} s; measuring anyway`);
  else if (settleMs > 1000) log(`${name}: waited ${(settleMs / 1000).toFixed(1)} s for ebridge to catch up first`);
  for (const s of subs) s.reconnects = 0;
  sink.reset();
  const drift = calibrateClock();

  writer.send({ cmd: "start", writers, rate, entities: ctx.writeEntities });
  // (synchronous calls block the receivers: only here, in the warm-up, and cheap ones at the window's ends)
  await sleep(100);
  ctx.groupOf = makeGroupOf(ctx.pgUrl, { ebridgePid: ctx.pid, floorSlot: ctx.floorSlot });
  const pids = [...allCpu().keys()];
  await sleep(warmup * 1000 - 100);
  const cpu0 = cpuSeconds(ctx.pid);
  const m0 = machineCpu();
  const all0 = allCpu(pids);
  const loop = monitorEventLoopDelay({ resolution: 2 });
  loop.enable();
  const self0 = process.cpuUsage();
  const reg0 = sink.registryChanges;
  const t0 = nowUs();
  await sleep(duration * 1000);
  const t1 = nowUs();
  const cpu1 = cpuSeconds(ctx.pid);
  const m1 = machineCpu();
  const all1 = allCpu(pids);
  loop.disable();
  const self1 = process.cpuUsage(self0);
  const reg1 = sink.registryChanges;
  await sleep(1000);
  const recvByT1 = sink.ebridge.length; // delivered within 1 s of the window's end
  const w = await writerAsk({ cmd: "stop", t0, t1 }, "stopped");

  // Drain: wait until every floor change committed in the window reached ebridge's subscribers.
  const inWindow = (c) => c >= t0 && c < t1;
  const keyOf = (url, c) => `${url} ${c}`;
  const td = performance.now();
  let floorWin;
  let got;
  for (;;) {
    floorWin = sink.floor.filter((r) => inWindow(r[1]));
    got = new Set(sink.ebridge.filter((r) => inWindow(r[1])).map((r) => keyOf(r[0], r[1])));
    const missing = subs.length ? floorWin.filter((r) => !got.has(keyOf(r[0], r[1]))).length : 0;
    if ((missing === 0 && performance.now() - td > 300) || performance.now() - td > opt.drainTimeout * 1000) break;
    await sleep(100);
  }
  const drainMs = performance.now() - td;
  for (const s of subs) s.close();

  const floorKeys = new Map(floorWin.map((r) => [keyOf(r[0], r[1]), r]));
  const seen = new Set();
  let duplicates = 0;
  let unknown = 0;
  const eb = [];
  const paired = []; // per commit seen by both: ebridge's latency minus the floor's
  const ebHalves = [[], []];
  const half = (t0 + t1) / 2;
  let deliveredByT1 = 0;
  for (let k = 0; k < sink.ebridge.length; k++) {
    const [url, c, t] = sink.ebridge[k];
    if (!inWindow(c)) continue;
    const key = keyOf(url, c);
    if (seen.has(key)) {
      duplicates++;
      continue;
    }
    seen.add(key);
    const f = floorKeys.get(key);
    if (!f) unknown++;
    else paired.push(t - f[2]);
    eb.push(t - c);
    ebHalves[c < half ? 0 : 1].push(t - c);
    if (k < recvByT1) deliveredByT1++;
  }
  if (opt.raw) {
    let out = "";
    for (const [url, c, t] of sink.ebridge) if (inWindow(c)) out += `${name},ebridge,${url},${c},${(t - c).toFixed(0)}\n`;
    for (const [url, c, t] of floorWin) out += `${name},floor,${url},${c},${(t - c).toFixed(0)}\n`;
    fs.appendFileSync(opt.raw, out);
  }
  const floorHalves = [[], []];
  for (const r of floorWin) floorHalves[r[1] < half ? 0 : 1].push(r[2] - r[1]);
  const seconds = (t1 - t0) / 1e6;
  const result = {
    name,
    offeredRate: rate || "max",
    writers,
    seconds,
    committed: floorWin.length,
    committedPerSec: floorWin.length / seconds,
    deliveredPerSec: deliveredByT1 / seconds, // window commits delivered by t1 + 1 s
    delivered: seen.size - unknown,
    missing: subs.length ? floorWin.length - (seen.size - unknown) : null,
    duplicates,
    unknown,
    deliveredByWindowEnd: deliveredByT1,
    drainMs,
    ebridge: stats(eb),
    ebridgeHalves: ebHalves.map((h) => stats(h).p99),
    floor: stats(floorWin.map((r) => r[2] - r[1])),
    paired: stats(paired),
    floorHalves: floorHalves.map((h) => stats(h).p99),
    ebridgeCpuPct: ((cpu1 - cpu0) / seconds) * 100,
    machineBusyPct: (os.cpus().length * 100 * (m1.busy - m0.busy)) / (m1.total - m0.total),
    machineIowaitPct: (os.cpus().length * 100 * (m1.iowait - m0.iowait)) / (m1.total - m0.total),
    driverCpuPct: ((self1.user + self1.system) / 1e6 / seconds) * 100,
    cpuByProcess: cpuBreakdown(all0, all1, seconds, ctx.groupOf),
    driverLoopDelayMs: { p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
    commit: w.commit,
    registryChangesPerSec: (reg1 - reg0) / seconds,
    registryTxMaxRows: sink.registryTxMaxRows,
    reconnects: subs.reduce((s, x) => s + x.reconnects, 0),
    sseErrors: subs.reduce((s, x) => s + x.errors, 0),
    notUpToDate,
    settleMs,
    clockDriftUs: drift,
    writer: w,
  };
  const e = result.ebridge;
  const f = result.floor;
  log(
    `${name}: committed ${result.committedPerSec.toFixed(0)}/s, delivered ${result.deliveredPerSec.toFixed(0)}/s, ` +
      `ebridge p50/p99/max ${fmt(e.p50, 2)}/${fmt(e.p99, 2)}/${fmt(e.max, 1)} ms, floor ${fmt(f.p50, 2)}/${fmt(f.p99, 2)}/${fmt(f.max, 1)} ms, ` +
      `missing ${result.missing}, dup ${duplicates}, CPU ebridge ${result.ebridgeCpuPct.toFixed(0)}% machine ${result.machineBusyPct.toFixed(0)}% ` +
      `(iowait ${result.machineIowaitPct.toFixed(0)}%) driver ${result.driverCpuPct.toFixed(0)}%, registry rows/s ${result.registryChangesPerSec.toFixed(0)}, ` +
      `psql backlog max ${w.maxOutstanding}, commit (psql ack) p50/p99/max ${fmt(w.commit.p50, 2)}/${fmt(w.commit.p99, 2)}/${fmt(w.commit.max, 1)} ms`,
  );
  log(`  CPU % by process: ${JSON.stringify(result.cpuByProcess)}; driver event-loop delay p99/max ${fmt(result.driverLoopDelayMs.p99, 1)}/${fmt(result.driverLoopDelayMs.max, 1)} ms, writer max tick gap ${fmt(w.maxTickGapMs, 1)} ms`);
  return result;
}

/** Postgres alone: ebridge and pg_recvlogical stopped, writers unpaced; then ebridge's catch-up. */
async function alone(ctx, { writers, duration }) {
  const { subs, pid, floorProc } = ctx;
  for (const s of subs) {
    s.reconnects = 0;
    s.connect();
  }
  const tw = performance.now();
  while (!subs.every((s) => s.upToDate) && performance.now() - tw < 30000) await sleep(10);
  await sleep(200);
  sink.reset();
  const settleMs = await settle(ctx);
  sink.reset();
  calibrateClock();
  const tPause = nowUs();
  ctx.paused = true;
  process.kill(pid, "SIGSTOP");
  floorProc.kill("SIGSTOP");
  writer.send({ cmd: "start", writers, rate: 0, entities: ctx.writeEntities });
  await sleep(1000);
  const a0 = (await writerAsk({ cmd: "count" }, "count")).acked;
  const t0 = performance.now();
  await sleep(duration * 1000);
  const a1 = (await writerAsk({ cmd: "count" }, "count")).acked;
  const seconds = (performance.now() - t0) / 1000;
  const w = await writerAsk({ cmd: "stop" }, "stopped");
  const tResume = nowUs();
  process.kill(pid, "SIGCONT");
  floorProc.kill("SIGCONT");
  ctx.paused = false;
  // catch-up: until every change the floor saw has reached ebridge's subscribers
  const total = w.acked;
  const tc = performance.now();
  const backlogOf = (list) => list.filter((r) => r[1] >= tPause);
  let floorDoneMs = null;
  let eb = [];
  while (performance.now() - tc < ctx.opt.drainTimeout * 1000 * 3) {
    if (floorDoneMs === null && backlogOf(sink.floor).length >= total) floorDoneMs = performance.now() - tc;
    eb = backlogOf(sink.ebridge);
    if (eb.length >= total && floorDoneMs !== null) break;
    await sleep(50);
  }
  const ebridgeDoneMs = eb.length >= total ? (Math.max(...eb.map((r) => r[2])) - clockOffsetUs) / 1000 - tc : null;
  for (const s of subs) s.close();
  const result = {
    commitsPerSec: (a1 - a0) / seconds,
    writers,
    backlog: total,
    ebridgeCatchupMs: ebridgeDoneMs,
    ebridgeCatchupPerSec: ebridgeDoneMs ? total / (ebridgeDoneMs / 1000) : null,
    floorCatchupMs: floorDoneMs,
    ebridgeReceived: eb.length,
    settleMs,
    resumedAtUs: tResume,
    writer: w,
  };
  log(`alone: Postgres ${result.commitsPerSec.toFixed(0)} commits/s with ${writers} writers; backlog ${total} delivered by ebridge in ${fmt(ebridgeDoneMs, 0)} ms (floor ${fmt(floorDoneMs, 0)} ms)`);
  return result;
}

// ---------------------------------------------------------------- drive

const fmt = (v, d) => (v === null || v === undefined || Number.isNaN(v) ? "-" : typeof v === "number" ? v.toFixed(d) : String(v));

async function drive(argv) {
  const { values: a } = parseArgs({
    args: argv,
    options: {
      url: { type: "string" },
      pid: { type: "string" },
      "pg-url": { type: "string" },
      "data-dir": { type: "string" },
      views: { type: "string", default: "1000,10000" },
      rate: { type: "string", default: "1000" },
      duration: { type: "string", default: "10" },
      warmup: { type: "string", default: "2" },
      subscribers: { type: "string", default: "100" },
      steps: { type: "string", default: "1000,2000,4000,8000" },
      writers: { type: "string", default: "4" },
      "empty-views": { type: "string", default: "5000" },
      "idle-settle": { type: "string", default: "33" },
      repeats: { type: "string", default: "5" },
      "register-concurrency": { type: "string", default: "16" },
      "drain-timeout": { type: "string", default: "10" },
      "settle-timeout": { type: "string", default: "30" },
      "no-alone": { type: "boolean", default: false },
      "no-baseline": { type: "boolean", default: false },
      "latency-writers": { type: "string", default: "2" },
      "sequential-registers": { type: "string", default: "20" },
      "floor-slot": { type: "string", default: "bench_source_floor" },
      out: { type: "string" },
      raw: { type: "string" },
      "command-line": { type: "string", default: "" },
      "ebridge-version": { type: "string", default: "" },
    },
  });
  const opt = {
    views: a.views.split(",").map(Number).filter((n) => n > 0).sort((x, y) => x - y),
    rate: Number(a.rate),
    duration: Number(a.duration),
    warmup: Number(a.warmup),
    subscribers: Number(a.subscribers),
    steps: a.steps ? a.steps.split(",").map(Number).filter((n) => n > 0) : [],
    writers: Number(a.writers),
    emptyViews: Number(a["empty-views"]),
    idleSettle: Number(a["idle-settle"]),
    repeats: Math.max(1, Number(a.repeats)),
    concurrency: Number(a["register-concurrency"]),
    drainTimeout: Number(a["drain-timeout"]),
    settleTimeout: Number(a["settle-timeout"]),
    alone: !a["no-alone"],
    raw: a.raw,
    baseline: !a["no-baseline"],
    latencyWriters: Number(a["latency-writers"]),
    sequentialRegisters: Number(a["sequential-registers"]),
  };
  if (!a.url || !a.pid || !a["pg-url"]) throw new Error("--url, --pid and --pg-url are required");
  const maxViews = opt.views[opt.views.length - 1];
  if (opt.subscribers > opt.views[0]) throw new Error("--subscribers must not exceed the smallest --views");
  const base = a.url;
  const pid = Number(a.pid);
  const pgUrl = a["pg-url"];
  const host = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? "?",
    memGb: os.totalmem() / 2 ** 30,
    kernel: os.release(),
    loadavg: os.loadavg(),
    node: process.version,
    postgres: psql(pgUrl, "SHOW server_version"),
    settings: psql(pgUrl, "SELECT string_agg(name || '=' || setting, ' ') FROM pg_settings WHERE name IN ('synchronous_commit','fsync','wal_level','shared_buffers')"),
  };
  const results = { options: opt, host, commandLine: a["command-line"], ebridgeVersion: a["ebridge-version"] };

  // setup: entities, floor, writer process
  log(`inserting ${maxViews} entities`);
  psql(pgUrl,
    `INSERT INTO entities (url, type, status, tags, created_at, updated_at) ` +
      `SELECT '/bench/e' || i, 'bench', 'idle', jsonb_build_object('v', 'v' || i), 0, 0 FROM generate_series(0, ${maxViews - 1}) i ` +
      `ON CONFLICT (tenant_id, url) DO UPDATE SET tags = EXCLUDED.tags, updated_at = 0`);
  const floorProc = startFloor(pgUrl, a["floor-slot"]);
  writer = fork(new URL(import.meta.url).pathname, ["writer"], { env: { ...process.env, BENCH_PG_URL: pgUrl }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  writer.on("message", (m) => {
    const k = writerReplies.findIndex((r) => r.type === m.type);
    if (k >= 0) writerReplies.splice(k, 1)[0].resolve(m);
  });
  host.floorNice = floorProc.nice;
  const ctx = { opt, pid, pgUrl, floorSlot: a["floor-slot"], floorProc, subs: [], writeEntities: Array.from({ length: opt.subscribers }, (_, i) => i), paused: false };
  const cleanup = () => {
    shuttingDown = true;
    if (ctx.paused) {
      try { process.kill(pid, "SIGCONT"); } catch {}
      try { floorProc.kill("SIGCONT"); } catch {}
    }
    for (const s of ctx.subs) s.close();
    try { writer.kill("SIGTERM"); } catch {}
    try { floorProc.kill("SIGTERM"); } catch {}
  };
  for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => { cleanup(); process.exit(sig === "SIGINT" ? 130 : 143); });

  try {
    // wait for the floor slot to exist and stream
    for (let k = 0; k < 100 && psql(pgUrl, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = '${a["floor-slot"]}' AND active`) !== "1"; k++) await sleep(100);
    await sleep(1000);
    // Memory: RSS just before and 2 s after each registration batch; the
    // per-view cost is the difference over the batch only.
    const mem = () => ({ ...rssKb(pid), diskKb: duKb(a["data-dir"]) });
    results.memory = [];
    results.registration = [];
    results.phases = [];
    if (opt.baseline) {
      ctx.baseline = true;
      results.baseline = await measure(ctx, { name: `0 views (floor only) @${opt.rate}/s`, rate: opt.rate, writers: opt.latencyWriters, warmup: opt.warmup, duration: opt.duration });
      ctx.baseline = false;
    }
    const streams = [];
    let registered = 0;
    async function register(from, to, tagsOf, label, empty) {
      await sleep(1000);
      const before = mem();
      const parts = [];
      // the first few one at a time: a register's latency on an otherwise idle server
      const seq = from === 0 && !empty ? Math.min(opt.sequentialRegisters, to) : 0;
      if (seq > 0) parts.push(await registerViews(base, 0, seq, tagsOf, 1, streams));
      const bulk = await registerViews(base, seq, to, tagsOf, opt.concurrency, empty ? null : streams);
      await sleep(empty ? opt.idleSettle * 1000 : 2000);
      const after = mem();
      const r = { label, from, to, views: to - from, empty, sequential: seq > 0 ? parts[0] : null, bulk, before, after,
        kbPerView: (after.rss - before.rss) / (to - from), diskKbPerView: (after.diskKb - before.diskKb) / (to - from) };
      log(`  ${label}: ${bulk.views} views in ${bulk.seconds.toFixed(1)} s (${bulk.perSec.toFixed(0)}/s, ${opt.concurrency} at a time), ` +
        `p50/p99 ${fmt(bulk.latencyMs.p50, 1)}/${fmt(bulk.latencyMs.p99, 1)} ms, failures ${bulk.failures}` +
        (seq > 0 ? `; one at a time p50 ${fmt(parts[0].latencyMs.p50, 1)} ms` : "") +
        `; RSS ${(before.rss / 1024).toFixed(1)} -> ${(after.rss / 1024).toFixed(1)} MB = ${r.kbPerView.toFixed(2)} KB/view`);
      results.registration.push(r);
      return r;
    }
    for (const n of opt.views) {
      log(`registering views ${registered}..${n - 1}`);
      await register(registered, n, (i) => ({ v: `v${i}` }), `views ${registered}..${n - 1} (1 member each)`, false);
      registered = n;
      if (!ctx.subs.length) ctx.subs = ctx.writeEntities.map((i) => new Subscriber(base, streams[i]));
      await quiesce(ctx);
      // p99 on 2 shared cores moves by tens of ms between windows: measure
      // --repeats windows and keep the median one (by ebridge p99 - floor
      // p99); every window's difference is printed beside it.
      const windows = [];
      for (let k = 0; k < opt.repeats; k++) {
        const suffix = opt.repeats > 1 ? ` (window ${k + 1}/${opt.repeats})` : "";
        windows.push(await measure(ctx, { name: `${n} views @${opt.rate}/s${suffix}`, rate: opt.rate, writers: opt.latencyWriters, warmup: opt.warmup, duration: opt.duration }));
      }
      const diff = (w) => (w.ebridge.p99 ?? Infinity) - (w.floor.p99 ?? 0);
      const sorted = [...windows].sort((x, y) => diff(x) - diff(y));
      const median = sorted[Math.floor((sorted.length - 1) / 2)];
      results.phases.push({ views: n, ...median, windows: windows.map((w) => ({ ebridgeP99: w.ebridge.p99, floorP99: w.floor.p99, diff: diff(w), pairedP99: w.paired.p99, missing: w.missing, duplicates: w.duplicates })) });
    }
    if (opt.emptyViews > 0) {
      log(`registering ${opt.emptyViews} views with no member`);
      await register(0, opt.emptyViews, (i) => ({ v: `none${i}` }), `${opt.emptyViews} more views, 0 members`, true);
    }
    results.steps = [];
    await quiesce(ctx);
    for (const rate of [...opt.steps, 0]) {
      results.steps.push(await measure(ctx, { name: `step ${rate || "max"}/s`, rate, writers: opt.writers, warmup: opt.warmup, duration: opt.duration }));
    }
    if (opt.alone) results.alone = await alone(ctx, { writers: opt.writers, duration: Math.max(3, opt.duration / 2) });
    results.rssEnd = rssKb(pid);
  } finally {
    writer.send({ cmd: "exit" });
    cleanup();
  }
  if (a.out) fs.writeFileSync(a.out, JSON.stringify(results, null, 2));
  report(results);
}

// ---------------------------------------------------------------- report

function report(r) {
  const o = r.options;
  const rows = [["metric", "ebridge", "floor (pg_recvlogical)", "target", "met"]];
  const lat = (x) => (x && x.n ? `${fmt(x.p50, 2)} / ${fmt(x.p99, 2)} / ${fmt(x.max, 1)}` : "-");
  const cpu = (p) => `CPU ebridge ${fmt(p.ebridgeCpuPct, 0)}%, machine ${fmt(p.machineBusyPct, 0)}% (iowait ${fmt(p.machineIowaitPct, 0)}%)`;
  const yes = (ok, counts) => (counts ? (ok ? "yes" : "NO") : ok ? "(yes)" : "(no)");
  if (r.baseline) {
    const b = r.baseline;
    rows.push([`latency ms p50/p99/max @${o.rate}/s, 0 views (ebridge idle)`, "-", lat(b.floor), "", ""]);
    rows.push([`  commit alone (UPDATE to psql's ack) p50/p99/max ms`, "", lat(b.commit), "", ""]);
    rows.push([`  committed/s (${b.writers} psql); ${cpu(b)}`, "", fmt(b.committedPerSec, 0), "", ""]);
  }
  for (const p of r.phases) {
    const counts = p.views === 10000 && o.rate === 1000;
    rows.push([`latency ms p50/p99/max @${o.rate}/s, ${p.views} views`, lat(p.ebridge), lat(p.floor), "", ""]);
    rows.push([`  commit alone (UPDATE to psql's ack) p50/p99/max ms`, "", lat(p.commit), "", ""]);
    const d = p.ebridge.p99 - p.floor.p99;
    const ws = p.windows || [];
    rows.push([`  ebridge p99 - floor p99, ms${ws.length > 1 ? ` (median of ${ws.length} windows)` : ""}`, fmt(d, 2), "", "<= 5", yes(d <= 5, counts)]);
    if (ws.length > 1) rows.push([`  per window: ebridge p99 - floor p99 ms`, ws.map((w) => `${fmt(w.ebridgeP99, 1)}-${fmt(w.floorP99, 1)}=${fmt(w.diff, 1)}`).join("; "), "", "", ""]);
    if (p.paired?.n) rows.push([`  per commit: its ebridge - its floor latency p50/p99 ms${ws.length > 1 ? "; p99 per window" : ""}`, `${fmt(p.paired.p50, 2)} / ${fmt(p.paired.p99, 2)}${ws.length > 1 ? "; " + ws.map((w) => fmt(w.pairedP99, 1)).join(" ") : ""}`, "", "", ""]);
    const bad = ws.filter((w) => w.missing !== 0 || w.duplicates !== 0).length;
    if (bad > 0) rows.push([`  windows with missing or duplicate events`, `${bad}`, "", "0", "NO"]);
    rows.push([`  committed/s (${p.writers} psql) -> delivered/s`, fmt(p.deliveredPerSec, 0), fmt(p.committedPerSec, 0), `${o.rate}`, yes(p.committedPerSec >= 0.98 * o.rate, counts)]);
    rows.push([`  missing / duplicate events`, `${p.missing} / ${p.duplicates}`, "", "0 / 0", p.missing === 0 && p.duplicates === 0 ? "yes" : "NO"]);
    rows.push([`  ${cpu(p)}`, "", "", "", ""]);
  }
  const sustained = (s) =>
    s.deliveredPerSec >= 0.98 * s.committedPerSec && s.missing === 0 &&
    (s.ebridgeHalves[1] ?? Infinity) <= 1.5 * (s.ebridgeHalves[0] ?? 0) + 5;
  let best = null;
  const views = r.phases.length ? r.phases[r.phases.length - 1].views : 0;
  for (const s of r.steps) {
    const ok = sustained(s);
    if (ok && (!best || s.committedPerSec > best.committedPerSec)) best = s;
    rows.push([`step ${s.offeredRate}/s, ${s.writers} psql, ${views} views: committed -> delivered/s`, fmt(s.deliveredPerSec, 0), fmt(s.committedPerSec, 0), "delivered = committed", ok ? "sustained" : "NOT sustained"]);
    rows.push([`  p50/p99/max ms; p99 1st / 2nd half`, `${lat(s.ebridge)}; ${fmt(s.ebridgeHalves[0], 1)} / ${fmt(s.ebridgeHalves[1], 1)}`,
      `${lat(s.floor)}; ${fmt(s.floorHalves[0], 1)} / ${fmt(s.floorHalves[1], 1)}`, "", ""]);
    rows.push([`  commit alone (UPDATE to psql's ack) p50/p99/max ms`, "", lat(s.commit), "", ""]);
    rows.push([`  ${cpu(s)}; missing ${s.missing}`, "", "", "", ""]);
  }
  const ceiling = r.steps.length ? r.steps[r.steps.length - 1] : null;
  if (ceiling) {
    rows.push([`max sustained change rate, commits/s`, best ? fmt(best.committedPerSec, 0) : "none", "", `>= ceiling (${fmt(ceiling.committedPerSec, 0)})`,
      best && best.committedPerSec >= 0.95 * ceiling.committedPerSec ? "yes" : "NO"]);
    rows.push([`Postgres commit ceiling: unpaced, ${ceiling.writers} psql, all running`, "", `${fmt(ceiling.committedPerSec, 0)}/s`, "", ""]);
  }
  if (r.alone) {
    const al = r.alone;
    rows.push([`Postgres alone: same writers, ebridge + floor paused`, "", `${fmt(al.commitsPerSec, 0)}/s`, "", ""]);
    rows.push([`  then the backlog (${al.backlog} changes) caught up in`,
      al.ebridgeCatchupMs === null ? `not in time (${al.ebridgeReceived})` : `${fmt(al.ebridgeCatchupMs / 1000, 2)} s = ${fmt(al.ebridgeCatchupPerSec, 0)}/s`,
      al.floorCatchupMs === null ? "not in time" : `${fmt(al.floorCatchupMs / 1000, 2)} s`, "", ""]);
  }
  for (const g of r.registration) {
    rows.push([`RSS per idle view KB: ${g.label}`, `${fmt(g.kbPerView, 2)} (${fmt(g.before.rss / 1024, 1)} -> ${fmt(g.after.rss / 1024, 1)} MB)`, "", "< 4",
      g.kbPerView < 4 ? "yes" : "NO"]);
  }
  for (const g of r.registration) {
    rows.push([`registration: ${g.label}, ${o.concurrency} at a time`, `${fmt(g.bulk.seconds, 1)} s = ${fmt(g.bulk.perSec, 0)}/s`,
      `p50/p99 ${fmt(g.bulk.latencyMs.p50, 0)}/${fmt(g.bulk.latencyMs.p99, 0)} ms`, "", g.bulk.failures ? `${g.bulk.failures} failed` : ""]);
    if (g.sequential) rows.push([`  first ${g.sequential.views} one at a time: p50/p99 ms`, `${fmt(g.sequential.latencyMs.p50, 1)}/${fmt(g.sequential.latencyMs.p99, 1)}`, "", "", ""]);
  }
  const last = r.registration.filter((g) => !g.empty).pop();
  if (last) rows.push([`stream store on disk per view KB`, fmt(r.registration.filter((g) => !g.empty).reduce((x, g) => x + g.diskKbPerView * g.views, 0) / last.to, 2), "", "", ""]);
  const all = [r.baseline, ...r.phases, ...r.steps].filter(Boolean);
  rows.push([`registry writes: entity_bridges rows/s, per phase`, all.map((p) => fmt(p.registryChangesPerSec, 0)).join(" / "), "", "", ""]);

  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => [...String(row[c])].length)));
  const line = (row) => row.map((cell, c) => (c === 0 ? String(cell).padEnd(widths[c]) : String(cell).padStart(widths[c]))).join("  ");
  console.log(line(rows[0]));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows.slice(1)) console.log(line(row));

  console.log(`\nCPU, % of one core, by process over each measured window (${r.host.cpus} cores = ${r.host.cpus * 100}%):`);
  for (const p of all) console.log(`  ${p.name}: ${Object.entries(p.cpuByProcess ?? {}).filter(([, v]) => v >= 1).map(([k, v]) => `${k} ${v}`).join(", ")}`);

  const notes = [];
  for (const p of all) {
    if (p.reconnects) notes.push(`${p.name}: ${p.reconnects} SSE reconnects during the window`);
    if (p.sseErrors) notes.push(`${p.name}: ${p.sseErrors} SSE errors`);
    if (p.settleMs === null) notes.push(`${p.name}: started with ebridge still behind (no catch-up within ${o.settleTimeout} s)`);
    else if (p.settleMs > 1000) notes.push(`${p.name}: waited ${fmt(p.settleMs / 1000, 1)} s for ebridge to catch up before starting`);
    if (p.notUpToDate) notes.push(`${p.name}: ${p.notUpToDate} subscribers were not up to date at the start`);
    if (p.unknown) notes.push(`${p.name}: ${p.unknown} events ebridge delivered that the floor did not see`);
    if (p.writer.errors?.length) notes.push(`${p.name}: writer errors: ${p.writer.errors.join(" | ").slice(0, 300)}`);
    if (p.writer.bad) notes.push(`${p.name}: ${p.writer.bad} UPDATEs matched no row`);
    if (p.driverCpuPct > 80) notes.push(`${p.name}: the driver (receivers) used ${fmt(p.driverCpuPct, 0)}% of a core: latencies include its queueing`);
    if (p.offeredRate !== "max" && p.committedPerSec < 0.98 * p.offeredRate)
      notes.push(`${p.name}: the writers fell behind (${fmt(p.committedPerSec, 0)} of ${p.offeredRate}/s committed, up to ${p.writer.maxOutstanding} statements queued)`);
  }
  for (const g of r.registration) for (const e of g.bulk.firstErrors) notes.push(`registration: ${e}`);
  console.log(
    `\nLatency: receiver wall clock (µs) minus updated_at, which each UPDATE sets to clock_timestamp() just before` +
      ` its autocommit, so it includes the commit (WAL flush). The same commits reach ebridge (SSE: ${o.subscribers} subscribers on` +
      ` views 0..${o.subscribers - 1}, one event per commit) and the floor (pg_recvlogical, test_decoding, its own slot);` +
      ` both receivers run in the driver process. Window: ${o.warmup} s warm-up, ${o.duration} s measured (by commit time),` +
      ` then up to ${o.drainTimeout} s for stragglers.` +
      ` "Per commit": each commit's ebridge latency minus its own floor latency; a stall that delays both cancels out,` +
      ` so its p99 is what ebridge adds on its worst 1% (stricter than the difference of the two p99s, the target's measure).` +
      `\nAfter each registration Postgres is left to finish the maintenance it caused (VACUUM (ANALYZE) of the bench's tables, CHECKPOINT, no autovacuum worker running), so it does not land in the windows.` +
      `\nBefore each phase and step ebridge must have caught up (a marker commit seen on SSE, up to ${o.settleTimeout} s),` +
      ` so none inherits the previous one's backlog.` +
      `\nSteps: "max" = writers unpaced (32 statements queued per psql). Sustained = delivered/s >= 98% of committed/s,` +
      ` nothing missing, p99 of the 2nd half <= 1.5 x 1st half + 5 ms.` +
      `\nRSS = VmRSS of ebridge 1 s before and 2 s after registering a batch of views (no readers); per view = difference / views. The 0-member batch comes last and is read ${o.idleSettle} s after it (not 2 s): every registration holds CAF request timeouts (30 s) that are not per idle view.` +
      ` Registry writes = entity_bridges row changes in the floor's stream (ebridge's cursor persistence).` +
      `\nEverything (Postgres, ebridge, pg_recvlogical, psql writers, the driver) shares the machine's ${r.host.cpus} cores` +
      ` and one disk; "machine" CPU is % of one core, summed over cores.`,
  );
  if (notes.length) console.log("\nnotes:\n  " + notes.join("\n  "));
  const h = r.host;
  console.log(
    `\ncommand: ${r.commandLine}` +
      `\nmachine: ${h.cpus} x ${h.cpuModel}, ${h.memGb.toFixed(1)} GB RAM, Linux ${h.kernel}, load average at start ${h.loadavg.map((x) => x.toFixed(2)).join(" ")}` +
      `\nPostgreSQL ${h.postgres} (${h.settings}); Node ${h.node}; ${r.ebridgeVersion}` +
      `\npg_recvlogical (the floor) at nice ${h.floorNice ?? 0}, as ebridge's HTTP threads`,
  );
}

// ---------------------------------------------------------------- main

const [command, ...rest] = process.argv.slice(2);
if (command === "writer") {
  await writerMain();
} else if (command === "drive") {
  try {
    await drive(rest);
    process.exit(0);
  } catch (e) {
    console.error(`bench.mjs: ${e.stack ?? e.message}`);
    process.exit(1);
  }
} else if (command === "report") {
  report(JSON.parse(fs.readFileSync(rest[0], "utf8")));
} else {
  console.error("usage: node bench.mjs drive --url URL --pid PID --pg-url URL [options] | report FILE.json");
  process.exit(2);
}
