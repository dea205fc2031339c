#!/usr/bin/env node
// Crash durability of ebridge's embedded Durable Streams server.
//
// What it proves: an append acknowledged with 200 survives `kill -9` of the
// server, exactly once, whole, contiguous and in producer order; an append
// whose answer was lost to the kill is stored all-or-nothing and at most once;
// nothing is stored that was never sent; and the idempotent-producer state
// (Producer-Id/Epoch/Seq) survives exactly as the data does: after a restart
// a resend of the last acknowledged batch is a 204 duplicate that changes
// nothing, and a resend of the lost batch answers 200 exactly when the data
// shows it was not stored (204 when it was), after which seq+1 is accepted.
//
// How: 8 JSON streams, 16 producers (2 per stream, epoch 0, seq 0,1,2,...),
// each with one request in flight, POST batches of 1-5 small objects as fast
// as they can; after 300-1500 ms the server gets SIGKILL with requests in
// flight; it restarts on the same data dir and every stream is read back and
// checked. Three such cycles in one run, the producers continuing.
//
// usage: node durability.mjs PATH_TO_EBRIDGE   (needs TEST_DATABASE_URL)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const STREAMS = 8, PRODUCERS_PER_STREAM = 2, CYCLES = 3;
const ebridge = process.argv[2];
let passed = 0, failed = 0;
let server = null;   // the running ebridge: { child, base, log, exited, gone }
let dataDir = null;
const stats = { acked: 0, unknown: 0, unknownStored: 0, verified: 0 };

function check(ok, what) {
  if (ok) passed++; else { failed++; console.log(`FAIL: ${what}`); }
  return ok;
}

// ---- the server -------------------------------------------------------------

function startServer() {
  const args = [`--postgres.url=${process.env.TEST_DATABASE_URL}`,
    '--http.listen=127.0.0.1:0', `--data-dir=${dataDir}`, 'serve'];
  const child = spawn(ebridge, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const srv = { child, base: null, log: [], exited: null };
  srv.gone = new Promise((r) => child.once('exit', r));
  server = srv;
  return new Promise((resolve, reject) => {
    const fail = (why) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`ebridge did not start: ${why}\n  ${srv.log.join('\n  ')}`));
    };
    const timer = setTimeout(() => fail('no "event=serving" line within 10 s'), 10000);
    child.on('error', (e) => fail(e.message));
    child.on('exit', (code, signal) => {
      srv.exited = signal ?? code;
      if (!srv.base) fail(`exited with ${srv.exited}`);
    });
    // Keep reading stderr for the whole run (a full pipe would stall the server).
    createInterface({ input: child.stderr }).on('line', (line) => {
      srv.log.push(line);
      if (srv.log.length > 100) srv.log.shift();
      const m = /event=serving http=127\.0\.0\.1:(\d+)/.exec(line);
      if (m && !srv.base) {
        clearTimeout(timer);
        srv.base = `http://127.0.0.1:${m[1]}`;
        resolve(srv);
      }
    });
  });
}

// Load until kill -9. The kill comes from another process at a random moment:
// a kill from this process's own timer would always land after every answer
// already sent had been read, so no request would be in flight in the server.
async function loadAndKill(srv, delay) {
  const killer = spawn('sh', ['-c', `sleep ${delay / 1000}; kill -9 ${srv.child.pid}`], { stdio: 'ignore' });
  const backstop = setTimeout(() => srv.child.kill('SIGKILL'), delay + 10000);
  try {
    await Promise.all(producers.map((p) => produce(p, srv)));   // all end at the kill
    await srv.gone;
  } finally {
    clearTimeout(backstop);
    killer.kill('SIGKILL');
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- streams, producers and their batches -----------------------------------

const streamUrl = (s) => `${server.base}/v1/stream/durability-${s}`;
const producers = [];
for (let s = 0; s < STREAMS; s++) {
  for (let k = 0; k < PRODUCERS_PER_STREAM; k++) {
    // next: batches 0..next-1 are acknowledged; unknown: batch `next` was sent
    // and its answer lost; unknownStored: what the read-back found for it.
    producers.push({ id: `prod-${producers.length}`, stream: s, next: 0,
      unknown: false, unknownStored: false });
  }
}

// A batch is a function of (producer, seq), so the test knows what was sent.
function batch(id, seq) {
  const n = 1 + ((seq * 7 + Number(id.slice(5))) % 5);
  return Array.from({ length: n }, (_, i) => ({ p: id, seq, i }));
}

async function post(p, seq) {
  try {
    const res = await fetch(streamUrl(p.stream), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Producer-Id': p.id,
        'Producer-Epoch': '0', 'Producer-Seq': String(seq) },
      body: JSON.stringify(batch(p.id, seq)),
      signal: AbortSignal.timeout(15000),
    });
    await res.arrayBuffer();
    return { status: res.status, headers: res.headers };
  } catch (error) {
    return { status: 0, error };   // network error: stored or not, unknown
  }
}

// One producer under load: one request in flight, until the kill stops it.
async function produce(p, srv) {
  for (;;) {
    const r = await post(p, p.next);
    if (r.status === 200) { p.next++; stats.acked++; continue; }
    if (r.status === 0) {
      p.unknown = true;
      stats.unknown++;
      const down = await Promise.race([srv.gone.then(() => true), sleep(5000).then(() => false)]);
      check(down, `${p.id} seq ${p.next}: network error while the server was up: ${r.error?.cause ?? r.error}`);
      return;
    }
    throw new Error(`${p.id} seq ${p.next}: POST answered ${r.status}, wanted 200`);
  }
}

// The whole stream, page by page, until Stream-Up-To-Date.
async function readAll(s) {
  let offset = '-1';
  const msgs = [];
  for (;;) {
    const res = await fetch(`${streamUrl(s)}?offset=${offset}`);
    if (res.status !== 200) throw new Error(`GET stream ${s} at ${offset}: ${res.status}`);
    msgs.push(...await res.json());
    const next = res.headers.get('stream-next-offset');
    if (res.headers.get('stream-up-to-date') === 'true') return { msgs, tail: next };
    if (!next || next === offset) throw new Error(`GET stream ${s}: no progress at ${offset}`);
    offset = next;
  }
}

// ---- verification -------------------------------------------------------------

// JSON with sorted keys: the server may re-serialize a message (key order).
const canon = (v) => (v && typeof v === 'object' && !Array.isArray(v)
  ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`
  : Array.isArray(v) ? `[${v.map(canon).join(',')}]` : JSON.stringify(v));

// Walks the stream batch by batch: each run must be one whole batch that was
// sent by a producer of this stream; then each producer's batches must be
// seq 0,1,2,... (each once), covering every acknowledged batch and at most
// the one unknown batch beyond.
function verifyStream(s, msgs) {
  const mine = new Map(producers.filter((p) => p.stream === s).map((p) => [p.id, p]));
  const seqs = new Map([...mine.keys()].map((id) => [id, []]));
  let shape = null;
  for (let k = 0; k < msgs.length && !shape;) {
    const m = msgs[k], p = mine.get(m?.p);
    const sent = p && Number.isInteger(m.seq) && m.seq >= 0 &&
      (m.seq < p.next || (m.seq === p.next && p.unknown));
    if (!sent) { shape = `item ${k} was never sent: ${JSON.stringify(m)}`; break; }
    const want = canon(batch(p.id, m.seq));
    const got = canon(msgs.slice(k, k + batch(p.id, m.seq).length));
    if (got !== want) { shape = `item ${k}: batch ${p.id}/${m.seq} not whole and contiguous: ${got} != ${want}`; break; }
    seqs.get(p.id).push(m.seq);
    k += batch(p.id, m.seq).length;
  }
  check(!shape, `stream ${s}: every item belongs to a whole, contiguous, sent batch${shape ? `: ${shape}` : ''}`);
  for (const [id, p] of mine) {
    const got = seqs.get(id);
    const bad = got.findIndex((seq, j) => seq !== j);
    check(bad < 0, `${id}: batches in seq order, each once (position ${bad} holds seq ${got[bad]})`);
    check(got.length >= p.next, `${id}: all ${p.next} acknowledged batches stored (found ${got.length})`);
    check(got.length <= p.next + (p.unknown ? 1 : 0),
      `${id}: nothing beyond what was sent (found ${got.length}, acked ${p.next}, unknown ${p.unknown})`);
    p.unknownStored = p.unknown && got.length === p.next + 1;
    stats.verified += Math.min(got.length, p.next);
  }
}

async function verifyAll() {
  const contents = [];
  for (let s = 0; s < STREAMS; s++) {
    const c = await readAll(s);
    verifyStream(s, c.msgs);
    contents.push(c);
  }
  return contents;
}

// After a restart: duplicates change nothing, lost batches resolve consistently.
async function resendAndResolve(before) {
  await Promise.all(producers.filter((p) => p.next > 0).map(async (p) => {
    const r = await post(p, p.next - 1);
    const last = String(p.unknownStored ? p.next : p.next - 1);
    check(r.status === 204, `${p.id}: resend of acknowledged seq ${p.next - 1} answers 204 (got ${r.status})`);
    check(r.headers?.get('producer-seq') === last,
      `${p.id}: duplicate names last accepted seq ${last} (got ${r.headers?.get('producer-seq')})`);
  }));
  for (let s = 0; s < STREAMS; s++) {
    const after = await readAll(s);
    check(after.tail === before[s].tail && JSON.stringify(after.msgs) === JSON.stringify(before[s].msgs),
      `stream ${s}: unchanged by duplicate resends (tail ${before[s].tail} -> ${after.tail})`);
  }
  await Promise.all(producers.filter((p) => p.unknown).map(async (p) => {
    const want = p.unknownStored ? 204 : 200;
    const r = await post(p, p.next);
    check(r.status === want, `${p.id}: resend of unknown seq ${p.next} answers ${want} ` +
      `(stored before: ${p.unknownStored}), got ${r.status}`);
    if (p.unknownStored) stats.unknownStored++;
    p.unknown = false;
    p.next++;
    const r2 = await post(p, p.next);
    check(r2.status === 200, `${p.id}: next seq ${p.next} after the unknown answers 200 (got ${r2.status})`);
    if (r2.status === 200) { p.next++; stats.acked++; }
  }));
}

// ---- the run ------------------------------------------------------------------

function storeLine(srv) {
  const line = srv.log.find((l) => l.includes('component=store') && l.includes('event=opened')) ?? '';
  return { streams: /streams=(\d+)/.exec(line)?.[1], refused: /refused=(\d+)/.exec(line)?.[1] };
}

async function main() {
  let srv = await startServer();
  for (let s = 0; s < STREAMS; s++) {
    const res = await fetch(streamUrl(s), { method: 'PUT', headers: { 'Content-Type': 'application/json' } });
    if (res.status !== 201) throw new Error(`PUT stream ${s}: ${res.status}, wanted 201`);
  }
  for (let cycle = 1; cycle <= CYCLES; cycle++) {
    const delay = 300 + Math.floor(Math.random() * 1200);
    const ackedBefore = stats.acked, unknownBefore = stats.unknown;
    await loadAndKill(srv, delay);
    check(srv.exited === 'SIGKILL', `cycle ${cycle}: server ran until the kill -9 (exited: ${srv.exited})`);
    console.log(`cycle ${cycle}: killed after ${delay} ms; ${stats.acked - ackedBefore} batches acked, ` +
      `${stats.unknown - unknownBefore} unknown`);

    srv = await startServer();
    const opened = storeLine(srv);
    check(opened.streams === String(STREAMS) && opened.refused === '0',
      `cycle ${cycle}: restart recovered ${STREAMS} streams, none refused (streams=${opened.streams} refused=${opened.refused})`);
    for (let s = 0; s < STREAMS; s++) {
      const res = await fetch(streamUrl(s), { method: 'PUT', headers: { 'Content-Type': 'application/json' } });
      check(res.status === 200, `cycle ${cycle}: stream ${s} kept its config (PUT again: ${res.status}, wanted 200)`);
    }
    const contents = await verifyAll();
    await resendAndResolve(contents);
    check(srv.exited === null, `cycle ${cycle}: server still running after verification (exited: ${srv.exited})`);
  }
  await verifyAll();   // the resolved batches, read back once more
}

function cleanup() {
  if (server && server.exited === null) server.child.kill('SIGKILL');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  dataDir = null;
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

if (!ebridge || !process.env.TEST_DATABASE_URL) {
  console.log(!ebridge ? 'usage: node durability.mjs PATH_TO_EBRIDGE'
    : 'TEST_DATABASE_URL is not set (ebridge serve needs Postgres): run through scripts/test or scripts/pg run');
  check(false, 'test setup');
} else {
  dataDir = mkdtempSync(join(tmpdir(), 'ebridge-durability-'));
  try {
    await main();
  } catch (e) {
    check(false, `aborted: ${e.stack ?? e}`);
    if (server) console.log(`last ebridge log lines:\n  ${server.log.slice(-20).join('\n  ')}`);
  } finally {
    cleanup();
  }
}
console.log(`batches acked ${stats.acked}, unknown ${stats.unknown} (stored before the kill: ` +
  `${stats.unknownStored}), acked batches verified ${stats.verified} (over ${CYCLES + 1} read-backs)`);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
