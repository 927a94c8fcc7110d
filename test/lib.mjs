// Shared by the client tests: start the built server, ask over HTTP, and
// compute the demo model's exact answer.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CLIENT_KEY = 'client-key-0123456789abcdef';
export const SERVICE_KEY = 'service-key-0123456789abcdef';
export const WRONG_KEY = 'wrong-key-0123456789abcdef';

export const START = '#START_STREAM#';
export const END = '#END_STREAM#';

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts tokencast with API keys required, a fast demo model and, with
 * tls: true, the test certificate. Resolves once /readyz says ready.
 */
export async function startServer({ tls = false, args = [], env = {} } = {}) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'tokencast-data-'));
  const all = ['serve', '--addr', `127.0.0.1:${port}`, '--data-dir', dataDir,
    '--demo-ttft', '20ms', '--demo-token-interval', '3ms', '--log-level', 'warn', ...args];
  if (tls) {
    all.push('--tls-cert', process.env.TOKENCAST_TLS_CERT_FILE, '--tls-key', process.env.TOKENCAST_TLS_KEY_FILE);
  }
  const proc = spawn(process.env.TOKENCAST_BIN, all, {
    env: { PATH: process.env.PATH, TOKENCAST_API_KEYS: `web:${CLIENT_KEY}`, TOKENCAST_SERVICE_KEYS: `svc:${SERVICE_KEY}`, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  const http = tls ? 'https' : 'http';
  const base = `${http}://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`tokencast exited: ${stderr}`);
    try {
      const res = await fetch(`${base}/readyz`);
      if (res.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`tokencast not ready: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    base,
    url: `${base}/graphql`,
    wsUrl: `${tls ? 'wss' : 'ws'}://127.0.0.1:${port}/graphql`,
    stderr: () => stderr,
    /** Ends the process the hard way, as a crash would. */
    async crash() {
      proc.kill('SIGKILL');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const ASK = `query Ask($input: GetLlmResponseInput!) {
  getLlmResponse(input: $input) { sessionId locale requestId messages { content contentType } }
}`;

export const SUBSCRIBE = `subscription Watch($sessionId: String!) {
  onSendMessage(sessionId: $sessionId) { sessionId message locale timeStamp type requestId index }
}`;

/** The same events with their resume cursor, from after a cursor when given. */
export const SUBSCRIBE_AFTER = `subscription Watch($sessionId: String!, $after: String) {
  onSendMessage(sessionId: $sessionId, after: $after) { sessionId message locale timeStamp type requestId index cursor }
}`;

const CONVERSATION = `query Conversation($sessionId: String!) {
  conversation(sessionId: $sessionId) { turns { requestId role status } }
}`;

/**
 * Resolves once the conversation shows the answer to requestId with status
 * (COMPLETE by default): the answer is over. (The turn is stored just before
 * its END is published; a subscriber that starts in between is replayed the
 * answer as one in flight, which a user cannot tell apart.)
 */
export async function answered(srv, { sessionId, requestId, status = 'COMPLETE', key = CLIENT_KEY }, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const res = await fetch(srv.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify({ query: CONVERSATION, variables: { sessionId } }),
    });
    const body = await res.json();
    if (!res.ok || body.errors) throw new Error(`conversation: ${res.status} ${JSON.stringify(body)}`);
    const turn = body.data.conversation.turns.find((t) => t.requestId === requestId && t.role === 'ASSISTANT');
    if (turn?.status === status) return;
    if (Date.now() > deadline) throw new Error(`answer ${requestId} still ${JSON.stringify(turn)}`);
    await sleep(20);
  }
}

/** Asks a question over plain HTTP and returns its requestId. */
export async function ask(srv, { sessionId, message, locale = 'en', key = CLIENT_KEY }) {
  const res = await fetch(srv.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body: JSON.stringify({ query: ASK, variables: { input: { sessionId, message, locale } } }),
  });
  const body = await res.json();
  if (!res.ok || body.errors) throw new Error(`ask: ${res.status} ${JSON.stringify(body)}`);
  const got = body.data.getLlmResponse;
  if (got.messages[0].content !== 'success') throw new Error(`ask answered ${JSON.stringify(got)}`);
  return got.requestId;
}

const greetings = { en: 'Hello', fr: 'Bonjour', de: 'Hallo', es: 'Hola', it: 'Ciao', pt: 'Olá', ja: 'こんにちは' };

/**
 * The demo model's answer (internal/provider/demo Answer) to the questions
 * of a session, the last one being answered. Questions here are plain
 * ASCII, for which Go's %q and JSON.stringify agree.
 */
export function demoAnswer(locale, ...questions) {
  const lang = locale.toLowerCase().split(/[-_]/)[0];
  const greeting = greetings[lang] ?? greetings.en;
  const n = questions.length;
  let s = `${greeting}! This is answer ${n} of this conversation, to: ${JSON.stringify(questions[n - 1])}.`;
  if (n > 1) s += ` Before that you asked: ${JSON.stringify(questions[n - 2])}.`;
  s += ` I am the tokencast demo model answering in locale ${locale}; every word you see streamed to each subscriber of this session as it was generated.`;
  return s;
}

/**
 * Collects onSendMessage events of one answer: push each event; done
 * resolves with the events once END or ERROR arrived.
 */
export function collector() {
  const events = [];
  let finish;
  const done = new Promise((resolve) => { finish = resolve; });
  return {
    events,
    done,
    push(ev) {
      events.push(ev);
      if (ev.type === 'END' || ev.type === 'ERROR') finish(events);
    },
  };
}

/**
 * Asserts the whole answer arrived in order: START with its marker, the
 * DELTAs whose text is exactly the demo answer, END with its marker, gap-free
 * indexes, one requestId.
 */
export function checkAnswer(assert, events, requestId, want) {
  const types = events.map((e) => e.type);
  assert.equal(types[0], 'START', `types ${types}`);
  assert.equal(events[0].message, START);
  assert.equal(types.at(-1), 'END', `types ${types}`);
  assert.equal(events.at(-1).message, END);
  events.forEach((e, i) => {
    assert.equal(e.index, i, `event ${i} index`);
    assert.equal(e.requestId, requestId, `event ${i} requestId`);
    if (i > 0 && i < events.length - 1) assert.equal(e.type, 'DELTA', `event ${i} type`);
  });
  const text = events.slice(1, -1).map((e) => e.message).join('');
  assert.equal(text, want);
  // The sample's UI reads only message: markers and text in order.
  assert.equal(events.map((e) => e.message).join(''), START + want + END);
}

/** Resolves after ms, or rejects when the promise takes longer. */
export function within(ms, promise, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); }),
  ]);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A WebSocket class (ws) that counts the connections a client opens. */
export function countingWebSocket(Base) {
  const counter = {
    opened: 0,
    urls: [],
    protocols: [],
    sockets: [],
    /** Resolves once every socket the client opened has closed. */
    async allClosed(ms = 10_000) {
      const deadline = Date.now() + ms;
      while (counter.sockets.some((s) => s.readyState !== Base.CLOSED)) {
        if (Date.now() > deadline) throw new Error('the client kept a socket open');
        await sleep(50);
      }
    },
  };
  class Counting extends Base {
    constructor(url, protocols, ...rest) {
      super(url, protocols, ...rest);
      counter.opened++;
      counter.urls.push(String(url));
      counter.protocols.push(protocols);
      counter.sockets.push(this);
    }
  }
  return { WebSocket: Counting, counter };
}
