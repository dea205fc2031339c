#!/usr/bin/env node
// End to end: a random workload on a real `entities` table, every view
// checked against SQL with the official State Protocol client.
//
// What it proves (the invariant of ARCHITECTURE.md): once caught up, each
// view's stream folds to exactly `SELECT ... FROM entities WHERE tenant_id =
// 'default' AND tags @> filter`, whole member rows included; no event is
// ever emitted twice; a view that follows changes skips none -- across
// inserts, retags that move rows in and out of views, primary-key and tenant
// changes, no-op updates, rolled-back and concurrent transactions, TRUNCATE,
// late registrations and three kill -9 restarts.
//
// How: a database and a replication slot of its own; ebridge serves on them;
// triggers record every row change in e2e_history (the test's own table).
// Views with overlapping tag filters are registered, most before any row,
// some while rows change. Writers (seeded, one PRNG each; several statements
// per psql call, multi-row transactions, some rolled back) change the table
// in three phases, each ending with every view checked:
//   (a) the raw stream (GET offset=-1, page by page) folds strictly -- an
//       insert only of a non-member, an update only of a member and only if
//       the row changed, a delete only of a member with its last row as
//       old_value -- to the SQL rows;
//   (b) against e2e_history: phase 1 (no resync yet), every committed state
//       of every url appears, in order (states inside a transaction may);
//       later, every state shown is one the row had, in order;
//   (c) a live createStreamDB follower, open since registration, and (d) a
//       new createStreamDB reading from the start hold the SQL rows.
// Phase 1: changes. Truncate phase: a TRUNCATE, more changes; the slot's
// confirmed position must then pass the TRUNCATE (idle views included:
// every view bootstraps again after it). Phase 2: two writers go
// on while ebridge is killed with SIGKILL three times (at random, right after
// another TRUNCATE, at random) and restarted on the same data dir, slot and
// port (after kill 1, which no TRUNCATE precedes, every view must resume
// from its cursor without a resync, idle ones included). Fault phase: the
// walsender terminated, Postgres restarted (scripts/pg restart), the slot
// dropped (a new feed: every view resyncs), each followed by changes and
// the checks; then also: every follower saw exactly the raw stream's events
// (its reconnects neither skipped nor repeated any). Finally ebridge must stop
// cleanly on SIGTERM.
//
// usage: node workload.mjs PATH_TO_EBRIDGE   (needs TEST_DATABASE_URL;
//        E2E_SEED=N replays a run: the writers' statements come from the seed,
//        phase 1 and the truncate phase exactly; in phase 2, how many run and
//        how they meet the kills depends on timing. E2E_KEEP_LOG=1 keeps the
//        server log and the SQL, which are kept anyway when a check fails;
//        E2E_VERBOSE=1 lists the checks that pass too)
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createStateSchema, createStreamDB } from '@durable-streams/state/db';

const ebridge = process.argv[2];
const PHASE1_OPS = 100, TRUNCATE_PHASE_OPS = 60, PHASE2_MIN_OPS = 100, KILLS = 3, CATCH_UP_MS = 15000,
  CONFIRM_MS = 11000, WATCHDOG_MS = 180000;
let passed = 0, failed = 0;

function check(ok, what, detail) {
  if (ok) { passed++; if (process.env.E2E_VERBOSE) console.log(`ok: ${what}`); } else { failed++; console.log(`FAIL: ${what}`); if (detail) console.log(detail); }
  return ok;
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- seeded randomness ------------------------------------------------------

const seed = process.env.E2E_SEED !== undefined ? Number(process.env.E2E_SEED) >>> 0
  : (Math.random() * 2 ** 32) >>> 0;
// Odd seeds move idle cursors at every check (the moves race the kills);
// even ones run the default, where they seldom move (restarts replay more).
const IDLE_LAG = seed & 1 ? '0' : '64MB';
function mulberry32(a) {
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
// Batch sizes and the phases' plan; each writer has a generator of its own.
const planRand = mulberry32(seed ^ 0x1b873593);
const int = (n) => Math.floor(planRand() * n);
// Kill timing has a generator of its own, so the SQL depends on the seed only.
const killRand = mulberry32(seed ^ 0x5bd1e995);

// ---- Postgres through psql ----------------------------------------------------

let adminUrl = null, dbUrl = null, dbName = null, slot = null;

function withDatabase(url, name) {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}
const lit = (s) => `'${String(s).replace(/'/g, "''")}'`;
const jsonb = (v) => `${lit(JSON.stringify(v))}::jsonb`;

function psqlSync(url, sql) {
  const r = spawnSync('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', url],
    { input: sql, encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`psql failed (${r.status}): ${r.stderr.trim()}\n-- SQL:\n${sql.slice(0, 2000)}`);
  return r.stdout;
}

function psql(url, sql) {
  return new Promise((resolve, reject) => {
    const child = spawn('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', url],
      { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    // 'close', not 'exit': 'exit' can come before the last of stdout is read
    // (an empty answer read as 0 once made seqHi 0 and failed a good run).
    child.on('close', (code) => (code === 0 ? resolve(out)
      : reject(new Error(`psql failed (${code}): ${err.trim()}\n-- SQL:\n${sql.slice(0, 2000)}`))));
    child.stdin.end(sql);
  });
}

// ---- the workload -------------------------------------------------------------

const STATUSES = ['spawning', 'running', 'idle', 'paused', 'stopping', 'stopped', 'killed'];
const TYPES = ['worker', 'reviewer', 'builder'];
const TAG_VALUES = { team: ['infra', 'web', 'data'], role: ['reviewer', 'builder', 'ops'],
  region: ['eu', 'us'], 'k"ey': ['v/ü', 'w'], 10: ['x', 'y'] };
const INSERT = 'INSERT INTO entities (tenant_id, url, type, status, tags, tags_index, spawn_args, ' +
  'parent, created_by, type_revision, inbox_schemas, state_schemas, created_at, updated_at) VALUES ';
const stats = { ops: 0, txns: 0, rollbacks: 0, truncates: 0, psqlCalls: 0 };
const tagsIndex = (t) => `ARRAY[${Object.entries(t).map(([k, v]) => lit(JSON.stringify([k, v])))
  .sort().join(',')}]::text[]`;
const contains = (tags, filter) => Object.entries(filter).every(([k, v]) => tags[k] === v);
const where = (r) => `tenant_id = ${lit(r.tenant)} AND url = ${lit(r.url)}`;
const writers = [];

// One writer: its own random sequence, its own urls (/e2e/<prefix><n>) and a
// model of its rows (`${tenant}|${url}` -> { tenant, url, tags }), enough to
// pick rows to change. Writers never touch each other's rows.
class Writer {
  constructor(prefix, seedOf, { slowTxns = false, clock }) {
    this.prefix = prefix;
    this.clock = clock;   // created_at / updated_at values, increasing
    this.rand = mulberry32(seedOf);
    this.model = new Map();
    this.nextId = 0;
    this.slowTxns = slowTxns;   // transactions that stay open a little (snapshots see them in progress)
    writers.push(this);
  }
  int(n) { return Math.floor(this.rand() * n); }
  pick(a) { return a[this.int(a.length)]; }
  chance(p) { return this.rand() < p; }
  now() { return (this.clock += 1 + this.int(50)); }
  rowsOf(m, tenant) { return [...m.values()].filter((r) => r.tenant === tenant); }
  mine() { return `url LIKE ${lit(`/e2e/${this.prefix}%`)}`; }

  randTags() {
    const t = {};
    if (this.chance(0.6)) t.team = this.pick(TAG_VALUES.team);
    if (this.chance(0.5)) t.role = this.pick(TAG_VALUES.role);
    if (this.chance(0.4)) t.region = this.pick(TAG_VALUES.region);
    if (this.chance(0.15)) t['k"ey'] = this.pick(TAG_VALUES['k"ey']);
    if (this.chance(0.12)) t['10'] = this.pick(TAG_VALUES[10]);
    return t;
  }
  // One key changed, added or removed: small moves in and out of views.
  retag(tags) {
    const t = { ...tags };
    const k = this.pick(Object.keys(TAG_VALUES));
    if (k in t && this.chance(0.4)) delete t[k];
    else t[k] = this.pick(TAG_VALUES[k]);
    return t;
  }

  insertValues(m, tenant, url) {
    const tags = this.randTags(), t = this.now();
    m.set(`${tenant}|${url}`, { tenant, url, tags });
    const spawnArgs = this.chance(0.2) ? 'NULL'
      : jsonb(this.chance(0.5) ? {} : { n: this.int(100), s: 'a"b\\c' });
    const parent = this.chance(0.3) ? lit(`/e2e/p${this.int(5)}`) : 'NULL';
    const rev = this.chance(0.5) ? String(this.int(4)) : 'NULL';
    const inbox = this.chance(0.3) ? jsonb({ msg: { type: 'string' } }) : 'NULL';
    return `(${lit(tenant)}, ${lit(url)}, ${lit(this.pick(TYPES))}, ${lit(this.pick(STATUSES))}, ` +
      `${jsonb(tags)}, ${tagsIndex(tags)}, ${spawnArgs}, ${parent}, 'e2e', ${rev}, ${inbox}, NULL, ${t}, ${t})`;
  }

  // One statement against model `m` (updated as if it committed).
  statement(m) {
    const tenant = this.chance(0.9) ? 'default' : 'other';
    const rows = this.rowsOf(m, tenant);
    const newUrl = () => `/e2e/${this.prefix}${this.nextId++}`;
    // Sometimes reuse a url that exists in the other tenant: same url, other row.
    const freshUrl = () => {
      const others = this.rowsOf(m, tenant === 'default' ? 'other' : 'default')
        .filter((r) => !m.has(`${tenant}|${r.url}`));
      return others.length && this.chance(0.2) ? this.pick(others).url : newUrl();
    };
    const p = this.rand();
    if (rows.length < 3 || p < 0.30) {
      const n = this.chance(0.3) ? 2 + this.int(3) : 1;
      const values = [];
      for (let i = 0; i < n; i++) values.push(this.insertValues(m, tenant, freshUrl()));
      return INSERT + values.join(', ');
    }
    const r = this.pick(rows);
    if (p < 0.36) {   // upsert
      const url = this.chance(0.6) ? r.url : freshUrl();
      const tags = this.randTags(), t = this.now();
      m.set(`${tenant}|${url}`, { tenant, url, tags });
      return `${INSERT}(${lit(tenant)}, ${lit(url)}, 'worker', ${lit(this.pick(STATUSES))}, ${jsonb(tags)}, ` +
        `${tagsIndex(tags)}, NULL, NULL, NULL, NULL, NULL, NULL, ${t}, ${t}) ON CONFLICT (tenant_id, url) ` +
        'DO UPDATE SET status = EXCLUDED.status, tags = EXCLUDED.tags, tags_index = EXCLUDED.tags_index, ' +
        'updated_at = EXCLUDED.updated_at';
    }
    if (p < 0.53) {   // retag: moves in and out of views
      const tags = this.chance(0.7) ? this.retag(r.tags) : this.randTags();
      r.tags = tags;
      return `UPDATE entities SET tags = ${jsonb(tags)}, tags_index = ${tagsIndex(tags)}, ` +
        `updated_at = ${this.now()} WHERE ${where(r)}`;
    }
    if (p < 0.68) {
      return `UPDATE entities SET status = ${lit(this.pick(STATUSES))}, updated_at = ${this.now()} WHERE ${where(r)}`;
    }
    if (p < 0.73) {   // changes no member field: must emit nothing
      return this.pick([`UPDATE entities SET status = status WHERE ${where(r)}`,
        `UPDATE entities SET created_by = ${lit(`u${this.int(9)}`)} WHERE ${where(r)}`,
        `UPDATE entities SET tags = tags, tags_index = tags_index WHERE ${where(r)}`]);
    }
    if (p < 0.78) {   // other member fields, some set to NULL
      return this.pick([
        `UPDATE entities SET spawn_args = ${this.chance(0.3) ? 'NULL' : jsonb({ k: this.int(9), l: [1, 'x'] })} WHERE ${where(r)}`,
        `UPDATE entities SET parent = ${this.chance(0.5) ? 'NULL' : lit(`/e2e/p${this.int(5)}`)}, ` +
          `type = ${lit(this.pick(TYPES))} WHERE ${where(r)}`,
        `UPDATE entities SET type_revision = COALESCE(type_revision, 0) + 1, ` +
          `state_schemas = ${jsonb({ v: this.int(3) })} WHERE ${where(r)}`,
        `UPDATE entities SET inbox_schemas = NULL, created_at = created_at - 1 WHERE ${where(r)}`]);
    }
    if (p < 0.88) { m.delete(`${tenant}|${r.url}`); return `DELETE FROM entities WHERE ${where(r)}`; }
    if (p < 0.92) {   // many rows at once, by tag filter
      const f = this.pick([{ team: 'web' }, { role: 'builder' }, { region: 'eu' }, { team: 'infra', role: 'ops' }]);
      return `UPDATE entities SET status = ${lit(this.pick(STATUSES))}, updated_at = ${this.now()} ` +
        `WHERE tenant_id = ${lit(tenant)} AND tags @> ${jsonb(f)} AND ${this.mine()}`;
    }
    if (p < 0.94) {
      const f = this.pick([{ team: 'data', role: 'ops' }, { region: 'us', role: 'reviewer' }, { 10: 'y' }]);
      for (const row of this.rowsOf(m, tenant)) if (contains(row.tags, f)) m.delete(`${tenant}|${row.url}`);
      return `DELETE FROM entities WHERE tenant_id = ${lit(tenant)} AND tags @> ${jsonb(f)} AND ${this.mine()}`;
    }
    if (p < 0.97) {   // primary key change: the old url leaves every view, the new one arrives
      const url = newUrl();
      m.delete(`${tenant}|${r.url}`);
      m.set(`${tenant}|${url}`, { tenant, url, tags: r.tags });
      return `UPDATE entities SET url = ${lit(url)}, updated_at = ${this.now()} WHERE ${where(r)}`;
    }
    const to = tenant === 'default' ? 'other' : 'default';   // tenant change
    if (m.has(`${to}|${r.url}`)) return `UPDATE entities SET status = 'idle' WHERE ${where(r)}`;
    m.delete(`${tenant}|${r.url}`);
    m.set(`${to}|${r.url}`, { tenant: to, url: r.url, tags: r.tags });
    return `UPDATE entities SET tenant_id = ${lit(to)} WHERE ${where(r)}`;
  }

  // SQL for about `ops` operations: single statements and transactions (some
  // rolled back). Returns [sql, operations]; the model follows what commits.
  batchSql(ops, truncate) {
    const parts = [];
    let done = 0;
    if (truncate) {   // empties the table: every writer's model
      stats.truncates++;
      for (const w of writers) w.model = new Map();
      if (this.chance(0.5)) { parts.push('TRUNCATE entities;'); done++; } else {
        const stmts = ['TRUNCATE entities'];
        for (let i = 0, n = 1 + this.int(3); i < n; i++) stmts.push(this.statement(this.model));
        parts.push(`BEGIN;\n${stmts.join(';\n')};\nCOMMIT;`);
        stats.txns++; done += stmts.length;
      }
    }
    while (done < ops) {
      if (this.chance(0.3)) {
        const rollback = this.chance(0.15);
        const m = rollback ? new Map([...this.model].map(([k, v]) => [k, { ...v }])) : this.model;
        const stmts = [];
        for (let i = 0, n = 2 + this.int(4); i < n; i++) {
          stmts.push(this.statement(m));
          if (this.slowTxns) stmts.push('SELECT pg_sleep(0.01)');
        }
        parts.push(`BEGIN;\n${stmts.join(';\n')};\n${rollback ? 'ROLLBACK' : 'COMMIT'};`);
        stats.txns++; if (rollback) stats.rollbacks++;
        done += stmts.length;
      } else {
        parts.push(`${this.statement(this.model)};`);
        done++;
      }
    }
    stats.ops += done;
    return [parts.join('\n'), done];
  }

  // Runs one batch in one psql call. A truncating batch runs alone: the
  // other writers' batches in flight end first and none starts meanwhile
  // (their models must not miss rows the truncate removed).
  async run(ops, truncate = false) {
    while (gate.closed) await gate.closed;
    let open;
    if (truncate) {
      gate.closed = new Promise((r) => { open = r; });
      await Promise.all(writers.filter((w) => w !== this).map((w) => w.inflight));
    }
    const [sql, n] = this.batchSql(ops, truncate);
    stats.psqlCalls++;
    sqlLog.push(`-- writer ${this.prefix}, psql call ${stats.psqlCalls} at ${new Date().toISOString()}\n${sql}`);
    const done = psql(dbUrl, sql);
    this.inflight = done.catch(() => {});
    try { await done; } finally { if (truncate) { gate.closed = null; open(); } }
    return n;
  }
}
const gate = { closed: null };

// ---- the server ------------------------------------------------------------------

let server = null, dataDir = null, port = 0;
const fullLog = [];
const sqlLog = [];   // every workload batch, kept with the server log on failure

function startServer() {
  const args = [`--postgres.url=${dbUrl}`, `--http.listen=127.0.0.1:${port}`, `--data-dir=${dataDir}`,
    `--source.slot=${slot}`, '--source.idle-interval=1s', `--source.idle-lag=${IDLE_LAG}`,
    '--http.long-poll-timeout=2s',
    '--log.level=info', 'serve'];
  const child = spawn(ebridge, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const srv = { child, base: null, log: [], exited: null, expectExit: false, refetches: 0, feedChanged: 0, resumed: 0, sourceErrors: 0 };
  srv.gone = new Promise((r) => child.once('exit', r));
  server = srv;
  fullLog.push(`---- ebridge start (pid ${child.pid}) ----`);
  return new Promise((resolve, reject) => {
    const fail = (why) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`ebridge did not start: ${why}\n  ${srv.log.slice(-30).join('\n  ')}`));
    };
    const timer = setTimeout(() => fail('no "event=serving" line within 10 s'), 10000);
    child.on('error', (e) => fail(e.message));
    child.on('exit', (code, signal) => {
      srv.exited = signal ?? code;
      fullLog.push(`---- ebridge exit (pid ${child.pid}): ${srv.exited} ----`);
      if (!srv.base) fail(`exited with ${srv.exited}`);
      else if (!srv.expectExit) {
        const term = srv.log.some((l) => l.includes('event="shutting down"'));
        check(false, `ebridge exited on its own with ${srv.exited}` +
          (term ? ' (it logged a shutdown signal that this test did not send)' : ''),
          `  ${srv.log.slice(-30).join('\n  ')}`);
      }
    });
    createInterface({ input: child.stderr }).on('line', (line) => {
      srv.log.push(line);
      if (srv.log.length > 300) srv.log.shift();
      if (line.includes('event="must refetch"')) srv.refetches++;
      if (line.includes('component=bridge event=resumed')) srv.resumed++;
      if (line.includes('event="source error"')) srv.sourceErrors++;
      if (line.includes('the replication feed changed')) srv.feedChanged++;
      if (fullLog.length < 200000) fullLog.push(line);
      const m = /event=serving http=127\.0\.0\.1:(\d+)/.exec(line);
      if (m && !srv.base) {
        clearTimeout(timer);
        srv.base = `http://127.0.0.1:${m[1]}`;
        port = Number(m[1]);
        resolve(srv);
      }
    });
  });
}

// A restart takes the same port, so that live followers reconnect by themselves.
async function restartServer() {
  for (let attempt = 1; ; attempt++) {
    try { return await startServer(); } catch (e) {
      if (attempt >= 20) throw e;
      await sleep(250);
    }
  }
}

async function killServer() {
  const srv = server;
  srv.expectExit = true;
  srv.child.kill('SIGKILL');
  await srv.gone;
  return srv.exited;
}

// ---- views -------------------------------------------------------------------------

const views = [];   // { name, filter, ref, path, late, seqHi, follower, followerEvents, followerError }
const stateSchema = createStateSchema({
  members: {
    schema: { '~standard': { version: 1, vendor: 'ebridge-e2e', validate: (value) => ({ value }) } },
    type: 'members',
    primaryKey: 'url',
  },
});

async function register(filter) {
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(`${server.base}/_electric/observations/entities/ensure-stream`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ tags: filter }), signal: AbortSignal.timeout(15000),
      });
      const body = await res.json();
      if (res.status === 200) return body;
      if (attempt >= 5 || res.status !== 503) throw new Error(`register ${JSON.stringify(filter)}: ${res.status} ${JSON.stringify(body)}`);
    } catch (e) {
      if (attempt >= 5) throw e;
    }
    await sleep(500);
  }
}

function openDb(path, live, onEvent) {
  return createStreamDB({
    streamOptions: { url: `http://127.0.0.1:${port}${path}`, contentType: 'application/json',
      backoffOptions: { initialDelay: 50, maxDelay: 500, multiplier: 1.5 } },
    state: stateSchema, live, onEvent,
  });
}

// The history's last seq so far (a sequence that was never used reads 1).
async function historySeq() {
  const text = (await psql(dbUrl, 'SELECT last_value FROM e2e_history_seq_seq;')).trim();
  if (!/^\d+$/.test(text)) throw new Error(`the history's last seq: not a number: ${JSON.stringify(text)}`);
  return Number(text);
}

async function addView(name, filter) {
  const answer = await register(filter);
  const v = { name, filter, ref: answer.sourceRef, path: answer.streamUrl, followerEvents: [],
    late: stats.ops > 0,
    // Every change recorded so far has a seq at most this: the snapshot came before.
    seqHi: await historySeq() };
  check(v.path === `/_entities/${v.ref}`, `${name}: streamUrl is /_entities/<sourceRef> (got ${JSON.stringify(answer)})`);
  v.follower = openDb(v.path, 'long-poll', (e) => v.followerEvents.push(e));
  v.follower.preload().catch((e) => { v.followerError = e; });
  views.push(v);
  console.log(`view ${name} ${JSON.stringify(filter)} -> ${v.ref}`);
  return v;
}

// ---- reading and checking ------------------------------------------------------------

const canon = (v) => (v && typeof v === 'object' && !Array.isArray(v)
  ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`
  : Array.isArray(v) ? `[${v.map(canon).join(',')}]` : JSON.stringify(v));

// SQL truth of every view: url -> the member row as ebridge must emit it.
function truth() {
  const row = "json_build_object('url', url, 'type', type, 'status', status, 'tags', tags, " +
    "'spawn_args', COALESCE(spawn_args, '{}'::jsonb), 'parent', parent, 'type_revision', type_revision, " +
    "'inbox_schemas', inbox_schemas, 'state_schemas', state_schemas, 'created_at', created_at, " +
    "'updated_at', updated_at)";
  const sql = views.map((v) => `SELECT COALESCE(json_agg(${row} ORDER BY url), '[]') FROM entities ` +
    `WHERE tenant_id = 'default' AND tags @> ${jsonb(v.filter)};`).join('\n');
  const lines = psqlSync(dbUrl, sql).split('\n').filter((l) => l.trim() !== '');
  return lines.map((l) => new Map(JSON.parse(l).map((r) => [r.url, r])));
}

async function readRaw(path) {
  let offset = '-1';
  const events = [];
  for (let page = 0; ; page++) {
    const res = await fetch(`${server.base}${path}?offset=${offset}`, { signal: AbortSignal.timeout(10000) });
    if (res.status !== 200) throw new Error(`GET ${path}?offset=${offset}: ${res.status} ${await res.text()}`);
    const items = await res.json();
    if (!Array.isArray(items)) throw new Error(`GET ${path}: body is not a JSON array`);
    events.push(...items);
    const next = res.headers.get('stream-next-offset');
    if (res.headers.get('stream-up-to-date') === 'true') return events;
    if (!next || next === offset || page > 10000) throw new Error(`GET ${path}: no progress at ${offset}`);
    offset = next;
  }
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
// The strict fold: any event that would be a duplicate or a no-op is an error.
function strictFold(events) {
  const members = new Map();
  const count = { insert: 0, update: 0, delete: 0 };
  for (let i = 0; i < events.length; i++) {
    const e = events[i], op = e?.headers?.operation, cur = members.get(e?.key);
    const bad = (why) => ({ members, count, error: { index: i, key: e?.key, why, event: e } });
    if (e?.type !== 'members' || typeof e.key !== 'string') return bad('not a members event with a string key');
    if (!ISO.test(e.headers?.timestamp ?? '')) return bad('timestamp header is not ISO-8601 UTC with ms');
    if (op === 'insert' || op === 'update') {
      if (!e.value || e.value.url !== e.key) return bad('value.url differs from key');
      if (op === 'insert' && cur) return bad('insert of a url that is already a member (duplicate)');
      if (op === 'update' && !cur) return bad('update of a url that is not a member');
      if (op === 'update' && canon(cur) === canon(e.value)) return bad('update that changes nothing (duplicate or no-op)');
      members.set(e.key, e.value);
    } else if (op === 'delete') {
      if (!cur) return bad('delete of a url that is not a member (duplicate)');
      if (canon(e.old_value) !== canon(cur)) return bad(`delete whose old_value is not the last row emitted (${canon(cur)})`);
      members.delete(e.key);
    } else return bad(`unknown operation ${op}`);
    count[op]++;
  }
  return { members, count, error: null };
}

// Differences between a member map and the SQL truth, for a report.
function diff(got, want, events) {
  const out = [];
  const urls = new Set([...got.keys(), ...want.keys()]);
  for (const url of [...urls].sort()) {
    const g = got.get(url), w = want.get(url);
    if (g && w && canon(g) === canon(w)) continue;
    out.push({ url, expected: w ?? '(not a member)', got: g ?? '(not a member)' });
  }
  if (!out.length) return '';
  return out.slice(0, 5).map((d) => `    url ${d.url}\n      expected ${canon(d.expected)}\n      got      ${canon(d.got)}` +
    (events ? `\n      raw events for it:\n${eventsFor(events, d.url)}` : '')).join('\n') +
    (out.length > 5 ? `\n    ... and ${out.length - 5} more urls differ` : '');
}
function eventsFor(events, url) {
  return events.map((e, i) => [i, e]).filter(([, e]) => e?.key === url)
    .map(([i, e]) => `        #${i} ${JSON.stringify(e)}`).join('\n') || '        (none)';
}

// The collection adds _seq and TanStack's virtual $-fields; a member row has neither.
const stripSeq = (row) => Object.fromEntries(Object.entries(row).filter(([k]) => k !== '_seq' && !k.startsWith('$')));
const dbMembers = (db) => new Map([...db.collections.members.entries()].map(([k, v]) => [k, stripSeq(v)]));

// Polls `read` until its members equal the truth or the time is up; returns the last state.
async function converge(read, want, deadline) {
  let last;
  for (;;) {
    last = await read();
    if (last.error || (last.members.size === want.size && !diff(last.members, want))) return last;
    if (Date.now() > deadline) return last;
    await sleep(200);
  }
}

// ---- the history of every row: "no gap" and "only committed states" ---------------
//
// Triggers on entities record every row change (and TRUNCATE) with its
// transaction id into e2e_history, in execution order (per row, the order of
// commits: a row's changes wait on each other's locks). From it, per view and
// url, the states the url went through in the view: a member row, or absent.
// A state that ended a transaction was committed and visible: a view that
// follows changes (no resync) must pass through every one of them, in order;
// states inside a transaction may or may not show. A view that resyncs
// (TRUNCATE, restarts) may skip states, but never shows a state the row did
// not have, nor an older one after a newer one.
const HISTORY_SQL = `
CREATE TABLE e2e_history (seq bigserial PRIMARY KEY, xid bigint NOT NULL DEFAULT txid_current(),
  op text NOT NULL, old jsonb, new jsonb);
CREATE FUNCTION e2e_record() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO e2e_history (op) VALUES ('TRUNCATE');
  ELSE
    INSERT INTO e2e_history (op, old, new) VALUES (TG_OP,
      CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END, CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
  END IF;
  RETURN NULL;
END $f$;
CREATE TRIGGER e2e_rows AFTER INSERT OR UPDATE OR DELETE ON entities FOR EACH ROW EXECUTE FUNCTION e2e_record();
CREATE TRIGGER e2e_truncate AFTER TRUNCATE ON entities FOR EACH STATEMENT EXECUTE FUNCTION e2e_record();
`;

const memberRow = (r) => ({ url: r.url, type: r.type, status: r.status, tags: r.tags,
  spawn_args: r.spawn_args ?? {}, parent: r.parent, type_revision: r.type_revision,
  inbox_schemas: r.inbox_schemas, state_schemas: r.state_schemas,
  created_at: r.created_at, updated_at: r.updated_at });

function readHistory() {
  return JSON.parse(psqlSync(dbUrl, 'SELECT COALESCE(json_agg(h ORDER BY seq), \'[]\') FROM e2e_history h;'));
}

// url -> [{ state (canonical row, or null for absent), final (ended its
// transaction), seq (where it began) }], beginning with the initial absent
// state, equal neighbours merged.
function historyOf(history, filter) {
  const byUrl = new Map();
  const push = (url, state, xid, seq) => {
    if (!byUrl.has(url)) byUrl.set(url, [{ state: null, xid: null, seq: 0 }]);
    byUrl.get(url).push({ state, xid, seq });
  };
  const stateOf = (row) => (row && row.tenant_id === 'default' && contains(row.tags, filter)
    ? canon(memberRow(row)) : null);
  for (const h of history) {
    if (h.op === 'TRUNCATE') { for (const url of byUrl.keys()) push(url, null, h.xid, h.seq); continue; }
    const slots = new Map();   // the (default, url) rows this change touches
    if (h.old && h.old.tenant_id === 'default') slots.set(h.old.url, null);
    if (h.new && h.new.tenant_id === 'default') slots.set(h.new.url, null);
    for (const url of slots.keys()) push(url, h.new && h.new.url === url ? stateOf(h.new) : null, h.xid, h.seq);
  }
  for (const [url, list] of byUrl) {
    const merged = [];
    list.forEach((e, i) => {
      const final = i === 0 || i === list.length - 1 || list[i + 1].xid !== e.xid;
      const last = merged[merged.length - 1];
      if (last && last.state === e.state) last.final ||= final;
      else merged.push({ state: e.state, final, seq: e.seq });
    });
    byUrl.set(url, merged);
  }
  return byUrl;
}

// Per url, the states a view's stream went through.
function streamStates(events) {
  const byUrl = new Map();
  for (const e of events) {
    if (!byUrl.has(e.key)) byUrl.set(e.key, []);
    byUrl.get(e.key).push(e.headers.operation === 'delete' ? null : canon(e.value));
  }
  return byUrl;
}

// Matches stream states S against history H from index `from` (the view's
// state there is H[from]). gaps=false: no final state may be skipped.
function matchFrom(S, H, from, gaps) {
  let cur = from;
  for (let k = 0; k < S.length; k++) {
    let j = cur + 1;
    while (j < H.length && H[j].state !== S[k]) {
      if (!gaps && H[j].final) return { ok: false, at: k, skipped: H[j].state };
      j++;
    }
    if (j >= H.length) return { ok: false, at: k, missing: true };
    cur = j;
  }
  return { ok: true };
}

// mode: 'exact' (registered before any row: every committed state, from the
// start), 'late' (registered later: from a committed state on, every one),
// 'weak' (resyncs happened: only states the row had, in order).
// seqHi: for 'late', an upper bound of the history when the view's snapshot was taken.
function checkHistory(events, H, mode, seqHi) {
  const S = streamStates(events);
  for (const [url, states] of S) {
    const h = H.get(url) ?? [{ state: null, final: true }];
    let r;
    if (mode === 'exact') r = matchFrom(states, h, 0, false);
    else if (mode === 'weak') r = matchFrom(states, h, 0, true);
    else {
      // The view's first event for the url is its snapshot state (a committed
      // one), or the url came later (the view then starts from absent).
      r = { ok: false };
      for (let i = 0; i < h.length && !r.ok; i++) {
        if (!h[i].final || h[i].seq > seqHi) continue;
        if (h[i].state === states[0]) r = matchFrom(states.slice(1), h, i, false);
        else if (h[i].state === null) r = matchFrom(states, h, i, false);
      }
      if (!r.ok) r = matchFrom(states, h, 0, true).ok ? { ok: false, gap: true } : r;
    }
    if (!r.ok) {
      return `    url ${url}: ${r.skipped !== undefined ? `a committed state was skipped before stream state #${r.at}: ${r.skipped ?? '(absent)'}`
        : r.gap ? 'a committed state after the snapshot was skipped'
          : `stream state #${r.at ?? '?'} is not a state the row had (or comes out of order)`}\n` +
        `      stream states:  ${states.map((x) => x ?? '(absent)').join('\n                      ')}\n` +
        `      history states (seq: state; the view's snapshot came before seq ${seqHi ?? '-'}):\n` +
        `                      ${h.map((x) => `${x.seq}: ${x.final ? '' : '(in txn) '}${x.state ?? '(absent)'}`).join('\n                      ')}`;
    }
  }
  return '';
}

async function verify(label, { final = false, gaps = true } = {}) {
  const want = truth();
  const history = readHistory();
  const t0 = Date.now(), deadline = t0 + CATCH_UP_MS;
  const summary = [];
  for (let i = 0; i < views.length; i++) {
    const v = views[i], w = want[i];
    const what = `${label}: view ${v.name} ${JSON.stringify(v.filter)}`;
    // (a) the raw stream, folded strictly
    let events = [];
    const raw = await converge(async () => {
      try { events = await readRaw(v.path); } catch (e) { return { members: new Map(), error: { why: String(e) } }; }
      return strictFold(events);
    }, w, deadline);
    if (check(!raw.error, `${what}: raw stream folds strictly (no duplicate, no no-op, no event of a non-member)`,
      raw.error && `    event #${raw.error.index}: ${raw.error.why}\n    ${JSON.stringify(raw.error.event)}\n` +
        `    raw events for url ${raw.error.key}:\n${eventsFor(events, raw.error.key)}`)) {
      check(!diff(raw.members, w), `${what}: raw stream folds to the SQL rows (${w.size} members)`,
        diff(raw.members, w, events));
      const mode = gaps ? 'weak' : v.late ? 'late' : 'exact';
      const bad = checkHistory(events, historyOf(history, v.filter), mode, v.seqHi);
      check(!bad, `${what}: ${mode === 'weak' ? 'every state the stream shows is one the row had, in order'
        : `no committed change skipped${mode === 'late' ? ' after the snapshot' : ''}, none invented, in order`}`, bad);
    }
    // (b) the live follower, open since the view was registered
    let fol = await converge(async () => ({ members: dbMembers(v.follower), error: v.followerError }), w, deadline);
    check(!fol.error && !diff(fol.members, w), `${what}: live createStreamDB follower holds the SQL rows`,
      fol.error ? `    follower failed: ${fol.error}` : diff(fol.members, w, events));
    // (c) a new reader from the start
    const fresh = await converge(async () => {
      const db = openDb(v.path, false);
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('preload did not finish in time')),
          Math.max(1000, deadline - Date.now()));
      });
      try { await Promise.race([db.preload(), timeout]); return { members: dbMembers(db) }; } catch (e) {
        return { members: new Map(), error: e };
      } finally { clearTimeout(timer); db.close(); }
    }, w, deadline);
    check(!fresh.error && !diff(fresh.members, w), `${what}: new createStreamDB reader (from offset -1) holds the SQL rows`,
      fresh.error ? `    reader failed: ${fresh.error}` : diff(fresh.members, w, events));
    // (d) the follower saw exactly the stream: no event skipped or repeated by its reconnects
    if (final) {
      const a = v.followerEvents.map(canon), b = events.map(canon);
      const k = a.findIndex((x, j) => x !== b[j]);
      check(a.length === b.length && k < 0, `${what}: the live follower received exactly the stream's ${b.length} events`,
        `    follower got ${a.length} events, stream holds ${b.length}; first difference at #${k < 0 ? Math.min(a.length, b.length) : k}:` +
        `\n      follower ${a[k < 0 ? Math.min(a.length, b.length) : k]}\n      stream   ${b[k < 0 ? Math.min(a.length, b.length) : k]}`);
    }
    summary.push(`${v.name}=${w.size}/${events.length}ev(i${raw.count?.insert ?? '?'} u${raw.count?.update ?? '?'} d${raw.count?.delete ?? '?'})`);
  }
  console.log(`${label}: checked in ${Date.now() - t0} ms; members/events per view: ${summary.join(' ')}`);
}

// ---- the run -------------------------------------------------------------------------

// Writer a runs alone but for the late registrations; writer b (transactions
// that stay open a few ms) joins then and in phase 2. Writers' SQL depends on
// the seed only, not on timing.
const writerA = new Writer('a', seed, { clock: 1700000000000 });
const writerB = new Writer('b', (seed ^ 0x9e3779b9) >>> 0, { slowTxns: true, clock: 1800000000000 });

async function phase1() {
  await addView('all', {});
  await addView('infra', { team: 'infra' });
  await addView('web', { team: 'web' });
  await addView('infra-reviewer', { team: 'infra', role: 'reviewer' });
  await addView('builder', { role: 'builder' });
  await addView('eu-infra', { region: 'eu', team: 'infra' });
  await addView('nobody', { team: 'nobody' });   // matches no row, ever
  let ops = 0, late = false;
  while (ops < PHASE1_OPS) {
    if (!late && ops >= PHASE1_OPS / 3) {
      // Registered while rows exist and transactions are open and committing.
      late = true;
      let registering = true;
      const b = (async () => { let n = 0; while (registering || n < 10) n += await writerB.run(2 + writerB.int(3)); return n; })();
      const a = writerA.run(5);
      await addView('quoted-key', { 'k"ey': 'v/ü' });
      await addView('int-key', { 10: 'x', role: 'reviewer' });
      registering = false;
      ops += await a + await b;
      continue;
    }
    ops += await writerA.run(3 + int(8));
  }
  console.log(`phase 1: ${ops} operations`);
  await verify('phase 1', { gaps: false });
}

// A TRUNCATE (every view resyncs), in a transaction with more changes or
// alone, then more changes.
async function truncatePhase() {
  const before = psqlSync(dbUrl, 'SELECT pg_current_wal_lsn();').trim();
  let ops = await writerA.run(1 + int(4), true);
  const after = psqlSync(dbUrl, 'SELECT pg_current_wal_lsn();').trim();
  // With --source.idle-lag=0, views that get nothing move to the feed's
  // position at every check: the slot passes all WAL up to just after the
  // TRUNCATE. With 64MB they stay where they bootstrapped again, right after
  // the TRUNCATE (ebridge's own registry writes may come between it and
  // `after`): the slot passes all WAL before it. That it passes the
  // TRUNCATE itself, kill 1 shows: a restart that replayed it would resync.
  const [lsn, op] = IDLE_LAG === '0' ? [after, '>='] : [before, '>'];
  while (ops < TRUNCATE_PHASE_OPS) ops += await writerA.run(3 + int(8));
  console.log(`truncate phase: ${ops} operations`);
  // The slot must release the WAL the views have made durable (a standby
  // status update at least every 10 s). It also lets the restarts of phase 2
  // resume from their cursors: a restart that replays the TRUNCATE resyncs.
  // Waited for alongside the checks.
  const t0 = Date.now();
  const confirmedPast = (async () => {
    for (;;) {
      const got = (await psql(adminUrl, `SELECT confirmed_flush_lsn::text || ' ' || ` +
        `(confirmed_flush_lsn ${op} ${lit(lsn)}::pg_lsn)::text FROM pg_replication_slots ` +
        `WHERE slot_name = ${lit(slot)};`)).trim();
      if (got.endsWith('true') || Date.now() - t0 > CONFIRM_MS) return got;
      await sleep(250);
    }
  })();
  await verify('after truncate');
  const confirmed = await confirmedPast;
  check(confirmed.endsWith('true'), `the slot's confirmed position is ${op} ${lsn} (${IDLE_LAG === '0'
    ? 'just after' : 'just before'} the TRUNCATE) ` +
    `within ${CONFIRM_MS / 1000} s, views that got nothing included (confirmed_flush_lsn ` +
    `${confirmed.split(' ')[0] || 'unknown'})`);
  console.log(`slot ${confirmed.endsWith('true') ? 'confirmed past the TRUNCATE' : 'still behind the TRUNCATE'} ` +
    `after ${Date.now() - t0} ms`);
}

// Both writers go on while ebridge is killed three times: at a random
// moment, right after a TRUNCATE (views resyncing), and at a random moment.
async function phase2() {
  let restarted1 = null;
  let ops = 0, crashesDone = false, truncateArmed = false, truncated = null;
  const truncateDone = new Promise((r) => { truncated = r; });
  const loop = async (w, size, pause, truncates) => {
    while (!crashesDone || ops < PHASE2_MIN_OPS) {
      const truncate = truncates && truncateArmed;
      if (truncate) truncateArmed = false;
      ops += await w.run(size(), truncate);
      if (truncate) truncated(Date.now());
      await sleep(pause());
    }
  };
  const workload = Promise.all([
    loop(writerA, () => 1 + int(5), () => 5 + int(40), true),
    loop(writerB, () => 1 + int(3), () => 10 + int(60), false)]);
  workload.catch(() => truncated(Date.now()));   // a failed writer must not leave kill 2 waiting
  try {
    for (let k = 1; k <= KILLS; k++) {
      let delay = 200 + Math.floor(killRand() * 1500), why = 'at random';
      if (k === 2) {
        // Nothing was truncated since kill 1: every view resumed from its
        // cursor (idle ones included) and none had to resync.
        const r1 = restarted1.srv, t1 = Date.now();
        while (r1.resumed < restarted1.views && Date.now() - t1 < 5000) await sleep(50);
        await sleep(300);
        check(r1.resumed >= restarted1.views && r1.refetches === 0 && r1.sourceErrors === 0,
          `after kill 1 all ${restarted1.views} views resumed from their cursors without a resync ` +
          `(${r1.resumed} resumed, ${r1.refetches} "must refetch", ${r1.sourceErrors} source errors)`);
        truncateArmed = true;
        const at = await truncateDone;
        delay = Math.floor(killRand() * 300);
        why = 'after the TRUNCATE';
        await sleep(Math.max(0, at + delay - Date.now()));
      } else await sleep(delay);
      const exited = await killServer();
      check(exited === 'SIGKILL', `kill ${k}: ebridge ran until the kill -9 (exited: ${exited})`);
      const down = Math.floor(killRand() * 500);
      await sleep(down);
      const t = Date.now();
      await restartServer();
      console.log(`kill ${k}: ${delay} ms ${why} (ops so far ${ops}), down ${down} ms, restarted in ${Date.now() - t} ms`);
      if (k === 1) await addView('ops-us', { role: 'ops', region: 'us' });   // a view born between crashes
      if (k === 1) restarted1 = { srv: server, views: views.length - 1 };
    }
  } finally {
    crashesDone = true;
    truncateArmed = false;
    await workload;
  }
  console.log(`phase 2: ${ops} operations, ${KILLS} kills`);
  // A client registers again after the restarts: same ref, and the view is up.
  for (const v of views) {
    const again = await register(v.filter);
    check(again.sourceRef === v.ref, `${v.name}: registering again answers the same ref (${again.sourceRef})`);
  }
  await verify('after crashes', { final: true });
}

// Replication faults, each followed by more changes and every view checked:
// the walsender terminated, Postgres restarted, the slot dropped (a new
// feed: every view must refetch and resync).
async function faultPhase() {
  const slotSql = `FROM pg_replication_slots WHERE slot_name = ${lit(slot)}`;
  await writerA.run(5);
  const terminated = (await psql(adminUrl,
    `SELECT count(pg_terminate_backend(active_pid)) ${slotSql} AND active_pid IS NOT NULL;`)).trim();
  check(terminated === '1', `fault 1: ebridge's walsender was terminated (${terminated})`);
  await writerA.run(10 + int(10));
  await verify('after the walsender was terminated');

  const dir = process.env.PG_CLUSTER_DIR;
  if (check(!!dir, 'fault 2: PG_CLUSTER_DIR names the cluster to restart (run through scripts/pg run)')) {
    const root = new URL('../..', import.meta.url).pathname;
    const r = spawnSync(join(root, 'scripts/pg'), ['restart', dir], { encoding: 'utf8' });
    check(r.status === 0, `fault 2: Postgres restarted (scripts/pg restart: ${r.status})`, r.stderr);
  }
  await writerA.run(10 + int(10));
  await verify('after Postgres restarted');

  const before = server.feedChanged;
  let dropped = false;
  for (let i = 0; i < 100 && !dropped; i++) {
    // ebridge reconnects at once: terminate its walsender and drop the slot
    // in one go, again until the drop wins the race.
    try {
      const out = await psql(adminUrl,
        `SELECT pg_terminate_backend(active_pid) ${slotSql} AND active_pid IS NOT NULL;\n` +
        `SELECT pg_sleep(0.05);\nSELECT count(pg_drop_replication_slot(slot_name)) ${slotSql} AND NOT active;`);
      dropped = out.trim().split('\n').pop() === '1';
    } catch { /* the slot was active again: retry */ }
  }
  check(dropped, 'fault 3: the slot was dropped');
  await writerA.run(10 + int(10));
  const t0 = Date.now();
  while (server.feedChanged === before && Date.now() - t0 < 15000) await sleep(100);
  check(server.feedChanged > before, 'fault 3: ebridge saw a new feed (a new slot) and had every view refetch');
  await verify('after the slot was dropped', { final: true });
}

async function stopCleanly() {
  for (const v of views) v.follower.close();
  const srv = server;
  srv.expectExit = true;
  srv.child.kill('SIGTERM');
  const timer = sleep(10000).then(() => 'timeout');
  const how = await Promise.race([srv.gone.then(() => srv.exited), timer]);
  check(how === 0, `ebridge stops cleanly on SIGTERM within 10 s (got ${how})`);
}

let cleaned = false;
function cleanup() {
  if (cleaned) return;
  cleaned = true;
  for (const v of views) { try { v.follower.close(); } catch { /* closing anyway */ } }
  if (server && server.exited === null) { server.expectExit = true; server.child.kill('SIGKILL'); }
  if (adminUrl && dbName) {
    // The slot pins the database: drop it once its walsender is gone.
    for (let i = 0; i < 50; i++) {
      try {
        const left = psqlSync(adminUrl, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots ` +
          `WHERE slot_name = ${lit(slot)} AND NOT active;\n` +
          `SELECT count(*) FROM pg_replication_slots WHERE slot_name = ${lit(slot)};`);
        if (left.trim().split('\n').pop() === '0') break;
      } catch (e) { if (i === 49) console.log(`cleanup: cannot drop slot ${slot}: ${e.message}`); }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    }
    try { psqlSync(adminUrl, `DROP DATABASE IF EXISTS ${dbName} WITH (FORCE);`); } catch (e) {
      console.log(`cleanup: cannot drop database ${dbName}: ${e.message}`);
    }
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

// Whatever happens (a hang of ebridge or of a client), the run ends.
setTimeout(() => {
  check(false, `watchdog: the run took over ${WATCHDOG_MS / 1000} s`);
  if (server) console.log(`last ebridge log lines:\n  ${server.log.slice(-30).join('\n  ')}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(1);   // the exit handler cleans up
}, WATCHDOG_MS).unref();

console.log(`seed ${seed} (rerun with E2E_SEED=${seed}); --source.idle-lag=${IDLE_LAG}`);
if (!ebridge || !process.env.TEST_DATABASE_URL) {
  console.log(!ebridge ? 'usage: node workload.mjs PATH_TO_EBRIDGE'
    : 'TEST_DATABASE_URL is not set (the test needs a Postgres cluster with wal_level=logical): ' +
      'run through scripts/test or scripts/pg run');
  check(false, 'test setup');
} else {
  const t0 = Date.now();
  try {
    adminUrl = process.env.TEST_DATABASE_URL;
    dbName = `e2e_${process.pid}`;
    slot = dbName;
    psqlSync(adminUrl, `CREATE DATABASE ${dbName};`);
    dbUrl = withDatabase(adminUrl, dbName);
    dataDir = mkdtempSync(join(tmpdir(), 'ebridge-e2e-'));
    await startServer();   // migrates: entities exists from here on
    psqlSync(dbUrl, HISTORY_SQL);
    await phase1();
    await truncatePhase();
    await phase2();
    await faultPhase();
    await stopCleanly();
  } catch (e) {
    check(false, `aborted: ${e.stack ?? e}`);
    if (server) console.log(`last ebridge log lines:\n  ${server.log.slice(-30).join('\n  ')}`);
  } finally {
    if (failed > 0 || process.env.E2E_KEEP_LOG) {
      const file = join(tmpdir(), `ebridge-e2e-${process.pid}.log`);
      writeFileSync(file, `${fullLog.join('\n')}\n`);
      writeFileSync(file.replace(/\.log$/, '.sql'), `${sqlLog.join('\n')}\n`);
      console.log(`ebridge log kept in ${file}, the workload's SQL in ${file.replace(/\.log$/, '.sql')}`);
    }
    cleanup();
  }
  console.log(`workload: ${stats.ops} operations (${stats.txns} transactions, ${stats.rollbacks} rolled back, ` +
    `${stats.truncates} truncates) in ${stats.psqlCalls} psql calls; ${views.length} views; ${Date.now() - t0} ms`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
