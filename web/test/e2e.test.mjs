// End-to-end tests of the chat page in real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; no browser is downloaded)
// against the built tokencast binary with the demo model.
//
//   cd web && npm test          (TOKENCAST_CHROMIUM overrides the browser path)
//
// Screenshots of the main states go to web/test-output/screenshots (or
// $TEST_OUTPUT/screenshots).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const webDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const repo = path.resolve(webDir, '..');
const outDir = path.resolve(process.env.TEST_OUTPUT || path.join(webDir, 'test-output'));
const shots = path.join(outDir, 'screenshots');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'tokencast-e2e-'));
const binary = path.join(tmp, 'tokencast');
const API_KEY = 'e2e-secret-key-0123456789';

// The demo model's exact text (internal/provider/demo Answer); the questions
// used here are plain ASCII, for which Go's %q is JSON's quoting.
const greetings = { en: 'Hello', fr: 'Bonjour', de: 'Hallo', es: 'Hola', it: 'Ciao', pt: 'Olá', ja: 'こんにちは' };
function demoAnswer(locale, ...questions) {
  const q = questions[questions.length - 1];
  let s = `${greetings[locale.split('-')[0]] || 'Hello'}! This is answer ${questions.length} of this conversation, to: ${JSON.stringify(q)}.`;
  if (questions.length > 1) s += ` Before that you asked: ${JSON.stringify(questions[questions.length - 2])}.`;
  return s + ` I am the tokencast demo model answering in locale ${locale}; every word you see streamed to each subscriber of this session as it was generated.`;
}

// The demo model's agent run (internal/provider/demo/agent.go).
const AGENT_TRIGGER = '[[demo:agent]]';
const AGENT_REASONING = 'The user asked for the demo agent run. I will work out 6*7 with the calculator and read the clock, then answer with what they say.';

// Markup that must stay text wherever the run shows it.
const HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>' +
  '<b>not bold</b></pre><a href="javascript:window.__pwned=3">click</a> &amp;';

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

const servers = [];

/**
 * Starts the binary on a free port with its own data dir and any extra flags;
 * resolves once /readyz says ready.
 */
async function startServer(env = {}, flags = []) {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(tmp, 'data-'));
  // Slow enough that a test can act mid-answer: ~45 tokens at 80 ms ≈ 3.6 s.
  const args = ['serve', '--addr', `127.0.0.1:${port}`, '--data-dir', dataDir,
    '--demo-ttft', '300ms', '--demo-token-interval', '80ms', '--log-level', 'warn', ...flags];
  const proc = spawn(binary, args, { env: { PATH: process.env.PATH, HOME: tmp, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  const server = { url: `http://127.0.0.1:${port}`, proc, log: () => log };
  servers.push(server);
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      const res = await fetch(server.url + '/readyz');
      if (res.ok) return server;
    } catch { /* not listening yet */ }
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error('server did not start:\n' + log);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A minimal MCP server over Streamable HTTP (JSON answers, no event
 * streams) offering one tool, calculator, that answers with output (an
 * error result when isError).
 */
async function startMCP(output, isError) {
  const port = await freePort();
  const srv = http.createServer((req, res) => {
    if (req.method === 'DELETE') { res.writeHead(200); res.end(); return; }
    if (req.method !== 'POST') { res.writeHead(405); res.end(); return; }
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const msg = JSON.parse(body);
      if (msg.id === undefined) { res.writeHead(202); res.end(); return; } // a notification
      const result = {
        initialize: () => ({
          protocolVersion: msg.params.protocolVersion,
          capabilities: { tools: {} },
          serverInfo: { name: 'hostile', version: '1' },
        }),
        'tools/list': () => ({
          tools: [{
            name: 'calculator',
            description: 'Answers with markup.',
            inputSchema: { type: 'object', properties: { expression: { type: 'string' } } },
          }],
        }),
        'tools/call': () => ({ content: [{ type: 'text', text: output }], isError }),
        ping: () => ({}),
      }[msg.method];
      // Anything else (the SDK's newer discovery call first) is refused as
      // JSON-RPC says, and the client falls back to initialize.
      const answer = result
        ? { jsonrpc: '2.0', id: msg.id, result: result() }
        : { jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'method not found' } };
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'hostile-session' });
      res.end(JSON.stringify(answer));
    });
  });
  await new Promise((resolve) => srv.listen(port, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${port}/mcp`, close: () => srv.close() };
}

/** A local OpenID provider: discovery document, JWKS, and RS256 tokens it signs. */
async function startIssuer() {
  const keyPair = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
  const { privateKey, publicKey } = keyPair();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const srv = http.createServer((req, res) => {
    const body = {
      '/.well-known/openid-configuration': { issuer: url, jwks_uri: url + '/jwks', id_token_signing_alg_values_supported: ['RS256'] },
      '/jwks': { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'RS256', use: 'sig' }] },
    }[req.url];
    res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body || {}));
  });
  await new Promise((resolve) => srv.listen(port, '127.0.0.1', resolve));
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  /** A JWT for subject, signed by this issuer's key unless another is given. */
  function token(subject, key = privateKey) {
    const now = Math.floor(Date.now() / 1000);
    const unsigned = b64({ alg: 'RS256', typ: 'JWT', kid: 'k1' }) + '.' +
      b64({ iss: url, aud: 'tokencast', sub: subject, iat: now, exp: now + 3600 });
    return unsigned + '.' + sign('sha256', Buffer.from(unsigned), key).toString('base64url');
  }
  return { url, token, forged: (subject) => token(subject, keyPair().privateKey), close: () => srv.close() };
}

/** key is an API key, or "Bearer <token>" sent as Authorization (as the page does). */
async function graphql(server, query, variables, key) {
  const auth = !key ? {} : /^bearer /i.test(key) ? { authorization: key } : { 'x-api-key': key };
  const res = await fetch(server.url + '/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...auth },
    body: JSON.stringify({ query, variables }),
  });
  return res.json();
}

async function conversation(server, sessionId, key) {
  const r = await graphql(server, 'query($s:String!){conversation(sessionId:$s){turns{requestId role text status model locale}}}', { s: sessionId }, key);
  assert.equal(r.errors, undefined, JSON.stringify(r.errors));
  return r.data.conversation.turns;
}

let browser;
let open; // the server without keys
let locked; // a server with TOKENCAST_API_KEYS
let twoModels; // a server with a second, named model from --config
let limited; // a server that takes one question per minute
let issuer; // the OpenID provider oidc trusts
let oidc; // a server that takes bearer tokens from issuer
let approving; // a server whose calculator waits for the owner's approval (and that cuts the clock's output)
let mcp; // an MCP server whose calculator answers with markup
let hostile; // a server whose demo agent calls mcp's calculator

before(async () => {
  mkdirSync(shots, { recursive: true });
  execFileSync('go', ['build', '-o', binary, './cmd/tokencast'], { cwd: repo, stdio: 'inherit' });
  // The second model's END events name its reference, demo:second.
  const models = path.join(tmp, 'models.yaml');
  writeFileSync(models, 'models:\n  second:\n    ref: demo:second\n');
  const approval = path.join(tmp, 'approval.yaml');
  writeFileSync(approval, 'tools:\n  builtin.calculator: { approval: required }\n');
  // The hostile calculator's output is longer than that server keeps of it.
  mcp = await startMCP(HOSTILE + ' ' + 'x'.repeat(600), true);
  const hostileConfig = path.join(tmp, 'hostile.yaml');
  writeFileSync(hostileConfig, `mcp_servers:\n  hostile:\n    url: ${mcp.url}\n` +
    'models:\n  agent:\n    ref: demo:agent\n    tools: [hostile.calculator, builtin.clock]\ndefault_model: agent\n');
  issuer = await startIssuer();
  [open, locked, twoModels, limited, oidc, approving, hostile] = await Promise.all([
    startServer(),
    startServer({ TOKENCAST_API_KEYS: 'e2e:' + API_KEY }),
    startServer({}, ['--config', models]),
    startServer({}, ['--ask-rate', '1', '--ask-burst', '1']),
    startServer({}, ['--oidc-issuer', issuer.url, '--oidc-audience', 'tokencast']),
    startServer({}, ['--config', approval, '--agent-max-tool-output', '40']),
    startServer({}, ['--config', hostileConfig, '--agent-max-tool-output', '300']),
  ]);
  browser = await chromium.launch({
    executablePath: process.env.TOKENCAST_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  if (browser) await browser.close();
  for (const s of servers) s.proc.kill('SIGTERM');
  await Promise.all(servers.map((s) => (s.proc.exitCode !== null ? null : new Promise((r) => s.proc.on('exit', r)))));
  if (issuer) issuer.close();
  if (mcp) mcp.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** A fresh browser profile (own localStorage) on the page, failing on page errors. */
async function newPage(server, hash = '', options = {}) {
  const { init, ...contextOptions } = options;
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 }, ...contextOptions });
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  page.errors = [];
  page.dialogs = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('dialog', (d) => { page.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  await page.goto(server.url + '/' + (hash ? '#' + hash : ''));
  return page;
}

const lastAnswer = (page) => page.locator('.turn.assistant').last();

async function waitForConnected(page) {
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 10000 });
}

async function send(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

async function waitForStatus(page, status, timeout = 20000) {
  await page.waitForSelector(`.turn.assistant:last-of-type[data-status="${status}"]`, { timeout });
}

async function sessionOf(page) {
  return page.evaluate(() => decodeURIComponent(location.hash.slice(1)));
}

/** Reloads the page and checks that a picker still holds what was picked. */
async function assertKeptAfterReload(page, picker, value) {
  await page.reload();
  await waitForConnected(page);
  assert.equal(await page.locator(picker).inputValue(), value, `${picker} keeps ${value} after a reload`);
}

/**
 * The parts of the last answer's agent run as the page shows them, in
 * order, as text: what a user would read.
 */
function runOf(page) {
  return lastAnswer(page).evaluate((turn) => [...turn.querySelectorAll('.content.run > .part')].map((p) => {
    const text = (sel) => (p.querySelector(sel) ? p.querySelector(sel).textContent : null);
    if (p.classList.contains('reasoning')) return { kind: 'reasoning', open: p.open, summary: text('summary'), text: text('.reasoning-text') };
    if (p.classList.contains('step')) return { kind: 'step', label: p.textContent };
    if (p.classList.contains('text')) return { kind: 'text', text: p.textContent };
    if (p.classList.contains('sources')) return { kind: 'sources', text: p.textContent };
    const result = p.querySelector('.tool-result');
    const note = p.querySelector('.tool-note');
    return {
      kind: 'tool', name: text('.tool-name'), state: p.dataset.state, input: text('.tool-input'),
      output: result.hidden ? null : text('.tool-output'), duration: text('.tool-duration'),
      truncated: !note.hidden,
    };
  }));
}

/** What of the page's markup could run: none of it, whatever a tool said. */
function runnableMarkup(page) {
  return page.evaluate(() => ({
    pwned: window.__pwned,
    onerror: document.querySelectorAll('[onerror]').length,
    scripts: document.querySelectorAll('.messages script').length,
    markupInCards: document.querySelectorAll('.tool img, .tool script, .tool b, .tool a').length,
    jsLinks: [...document.querySelectorAll('.messages a')].filter((a) => /^\s*javascript:/i.test(a.getAttribute('href') || '')).length,
  }));
}

const INERT = { pwned: undefined, onerror: 0, scripts: 0, markupInCards: 0, jsLinks: 0 };

/** The approval box of the last answer's tool card named tool. */
function approvalOf(page, tool) {
  return lastAnswer(page).locator('.tool', { has: page.locator('.tool-name', { hasText: tool }) }).locator('.tool-approval');
}

function shot(page, name) {
  return page.screenshot({ path: path.join(shots, name + '.png') });
}

describe('chat page', { timeout: 120000 }, () => {
  test('an answer renders incrementally, then in full with its metrics', async () => {
    const page = await newPage(open);
    await waitForConnected(page);
    await shot(page, '01-empty');
    const q = 'Stream this answer please';
    await send(page, q);
    await page.waitForSelector('.turn.user');
    assert.equal(await page.locator('#input').inputValue(), '', 'Enter sent the message and cleared the box');
    const seen = new Set();
    let sawStreaming = false;
    const deadline = Date.now() + 20000;
    for (;;) {
      const { status, text, conn } = await page.evaluate(() => {
        const el = [...document.querySelectorAll('.turn.assistant')].pop();
        return { status: el && el.dataset.status, text: el ? el.querySelector('.content').textContent : '', conn: document.getElementById('conn').dataset.state };
      });
      if (status === 'COMPLETE') break;
      if (status === 'IN_PROGRESS' && text) seen.add(text);
      if (conn === 'streaming') sawStreaming = true;
      if (seen.size === 2) await shot(page, '02-streaming');
      assert.ok(Date.now() < deadline, 'the answer did not complete');
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.ok(seen.size >= 2, `saw ${seen.size} intermediate states before END, want at least 2`);
    assert.ok(sawStreaming, 'the connection state said "streaming" during the answer');
    const want = demoAnswer('en', q);
    for (const partial of seen) assert.ok(want.startsWith(partial.trimEnd()), `intermediate state ${JSON.stringify(partial)} is a prefix of the answer`);
    assert.equal((await lastAnswer(page).locator('.content').textContent()).trim(), want);
    const meta = await lastAnswer(page).locator('.meta').textContent();
    assert.match(meta, /TTFT \d+ ms/);
    assert.match(meta, /tokens\/s/);
    assert.match(meta, /\d+ in · \d+ out · \d+ tokens/);
    assert.match(meta, /demo:default/);
    assert.equal(await page.locator('#conn').getAttribute('data-state'), 'connected');
    // The sidebar remembers the conversation.
    assert.equal(await page.locator('.session.current').textContent(), q);
    await shot(page, '03-complete');
    // Shift+Enter breaks the line instead of sending.
    await page.fill('#input', 'line one');
    await page.press('#input', 'Shift+Enter');
    await page.keyboard.type('line two');
    assert.equal(await page.locator('#input').inputValue(), 'line one\nline two');
    assert.equal(await page.locator('.turn.user').count(), 1);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test('stop ends the answer and the stored turn is CANCELLED', async () => {
    const page = await newPage(open);
    await waitForConnected(page);
    await send(page, 'Please stop me');
    await page.waitForFunction(() => {
      const el = [...document.querySelectorAll('.turn.assistant')].pop();
      return el && el.dataset.status === 'IN_PROGRESS' && el.querySelector('.content').textContent.length > 10;
    }, null, { timeout: 10000 });
    await page.click('#stop');
    await waitForStatus(page, 'CANCELLED', 10000);
    assert.match(await lastAnswer(page).locator('.turn-status').textContent(), /Stopped/);
    assert.ok(await page.locator('#send').isVisible(), 'Send is back after the stop');
    await shot(page, '04-stopped');
    const turns = await conversation(open, await sessionOf(page));
    const answer = turns.find((t) => t.role === 'ASSISTANT');
    assert.equal(answer.status, 'CANCELLED');
    assert.ok(demoAnswer('en', 'Please stop me').startsWith(answer.text), 'the stored partial answer is a prefix of the full one');
    assert.ok(answer.text.length < demoAnswer('en', 'Please stop me').length, 'the stored answer is partial');
    // Regenerate asks the same question again, in the same conversation.
    await lastAnswer(page).locator('.regenerate').click();
    await page.waitForFunction(() => document.querySelectorAll('.turn.assistant').length === 2);
    await waitForStatus(page, 'COMPLETE');
    assert.equal((await lastAnswer(page).locator('.content').textContent()).trim(), demoAnswer('en', 'Please stop me', 'Please stop me'));
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test('a reload mid-answer resumes after the last cursor and ends with the full text', async () => {
    const page = await newPage(open);
    const subscribes = [];
    page.on('websocket', (ws) => ws.on('framesent', (f) => {
      try {
        const m = JSON.parse(f.payload);
        if (m.type === 'subscribe') subscribes.push(m.payload.variables);
      } catch { /* not JSON */ }
    }));
    await waitForConnected(page);
    const q = 'Survive a reload';
    await send(page, q);
    await page.waitForFunction(() => {
      const el = [...document.querySelectorAll('.turn.assistant')].pop();
      return el && el.dataset.status === 'IN_PROGRESS' && el.querySelector('.content').textContent.length > 30;
    }, null, { timeout: 10000 });
    const before = subscribes.length;
    await page.reload();
    await page.waitForSelector('.turn.assistant');
    const midway = await lastAnswer(page).getAttribute('data-status');
    await waitForStatus(page, 'COMPLETE');
    assert.equal(midway, 'IN_PROGRESS', 'the page came back while the answer was still streaming');
    assert.equal((await lastAnswer(page).locator('.content').textContent()).trim(), demoAnswer('en', q));
    const resumed = subscribes.slice(before);
    assert.ok(resumed.length >= 1 && resumed[0].after, `the reloaded page subscribed with after: cursor (${JSON.stringify(resumed)})`);
    assert.equal(await page.locator('.turn.user').count(), 1, 'the question is shown once');
    await shot(page, '05-resumed-after-reload');
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test('a dropped connection mid-answer reconnects, resumes after the cursor and loses nothing', async () => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
    // Keep a handle on the page's sockets so the test can cut one.
    await context.addInitScript(() => {
      const Native = window.WebSocket;
      window.__sockets = [];
      window.WebSocket = class extends Native {
        constructor(...args) {
          super(...args);
          window.__sockets.push(this);
        }
      };
    });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const subscribes = [];
    page.on('websocket', (ws) => ws.on('framesent', (f) => {
      try {
        const m = JSON.parse(f.payload);
        if (m.type === 'subscribe') subscribes.push(m.payload.variables);
      } catch { /* not JSON */ }
    }));
    await page.goto(open.url + '/');
    await waitForConnected(page);
    const q = 'Survive a dropped connection';
    await send(page, q);
    await page.waitForFunction(() => {
      const el = [...document.querySelectorAll('.turn.assistant')].pop();
      return el && el.dataset.status === 'IN_PROGRESS' && el.querySelector('.content').textContent.length > 30;
    }, null, { timeout: 10000 });
    const before = subscribes.length;
    await page.evaluate(() => window.__sockets[window.__sockets.length - 1].close(3000, 'dropped by the test'));
    await page.waitForSelector('#conn[data-state="reconnecting"]', { timeout: 5000 });
    await shot(page, '05b-reconnecting');
    await waitForStatus(page, 'COMPLETE');
    assert.equal((await lastAnswer(page).locator('.content').textContent()).trim(), demoAnswer('en', q));
    const resumed = subscribes.slice(before);
    assert.ok(resumed.length >= 1 && resumed[0].after, `the new subscription resumed with after: cursor (${JSON.stringify(resumed)})`);
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('two tabs on one session show the same answer', async () => {
    const a = await newPage(open);
    await waitForConnected(a);
    const session = await sessionOf(a);
    const b = await newPage(open, session);
    await waitForConnected(b);
    const q = 'Seen by two tabs';
    await send(a, q);
    await Promise.all([waitForStatus(a, 'COMPLETE'), waitForStatus(b, 'COMPLETE')]);
    const want = demoAnswer('en', q);
    assert.equal((await lastAnswer(a).locator('.content').textContent()).trim(), want);
    assert.equal((await lastAnswer(b).locator('.content').textContent()).trim(), want);
    await b.waitForSelector('.turn.user');
    assert.equal(await b.locator('.turn.user .content').textContent(), q, 'the other tab shows the question too');
    await shot(b, '06-second-tab');
    assert.deepEqual([...a.errors, ...b.errors], []);
    await a.context().close();
    await b.context().close();
  });

  test('a tab opened right after an answer ended shows it once, without streaming it again', async () => {
    const a = await newPage(open);
    await waitForConnected(a);
    const session = await sessionOf(a);
    const q = 'Ended just before the second tab';
    await send(a, q);
    await waitForStatus(a, 'COMPLETE');
    const endCursor = await a.evaluate((s) => JSON.parse(localStorage.getItem('tokencast.resume.' + s)).cursor, session);
    // The new tab has no cursor of its own, so the server replays it the
    // answer that ended less than --late-join-window ago, after the page
    // loaded that answer from the conversation. Record every state the
    // answer shows in between.
    const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
    await context.addInitScript(() => {
      window.seen = [];
      new MutationObserver(() => {
        const turns = [...document.querySelectorAll('.turn.assistant')];
        window.seen.push({ turns: turns.length, status: turns.map((t) => t.dataset.status).join(), text: turns.map((t) => t.querySelector('.content').textContent.trim()).join('|') });
      }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    const b = await context.newPage();
    b.errors = [];
    b.on('pageerror', (e) => b.errors.push(e.message));
    await b.goto(open.url + '/#' + session);
    // The replay reached the tab once it resumes from the END's cursor.
    await b.waitForFunction(([s, c]) => JSON.parse(localStorage.getItem('tokencast.resume.' + s) || '{}').cursor === c, [session, endCursor], { timeout: 10000 });
    const want = demoAnswer('en', q);
    const seen = await b.evaluate(() => window.seen.filter((s) => s.turns > 0));
    assert.ok(seen.length > 0, 'the answer was shown');
    for (const s of seen) {
      assert.deepEqual(s, { turns: 1, status: 'COMPLETE', text: want }, 'the answer is only ever shown whole, once');
    }
    assert.equal(await b.locator('.turn.assistant').count(), 1);
    assert.equal((await lastAnswer(b).locator('.content').textContent()).trim(), want);
    assert.doesNotMatch(await lastAnswer(b).locator('.meta').textContent(), /TTFT/, 'no timing made up from the replay');
    assert.deepEqual([...a.errors, ...b.errors], []);
    await a.context().close();
    await context.close();
  });

  test('Markdown renders with highlighting and hostile markup stays inert', async () => {
    const page = await newPage(open);
    await waitForConnected(page);
    await send(page, 'Show [[demo:markdown]]');
    await waitForStatus(page, 'COMPLETE');
    const answer = lastAnswer(page).locator('.content');
    assert.equal(await answer.locator('h1').textContent(), 'Markdown demo');
    assert.equal(await answer.locator('li').count(), 3);
    assert.ok(await answer.locator('pre code .hljs-keyword').count() > 0, 'the Go block is highlighted');
    const dom = await page.evaluate(() => ({
      onerror: document.querySelectorAll('[onerror]').length,
      scripts: document.querySelectorAll('.messages script').length,
      jsLinks: [...document.querySelectorAll('.messages a')].filter((a) => /^\s*javascript:/i.test(a.getAttribute('href') || '')).length,
      imgs: [...document.querySelectorAll('.messages img')].map((i) => i.outerHTML),
    }));
    assert.equal(dom.onerror, 0, 'no element carries an onerror handler');
    assert.equal(dom.scripts, 0, 'no script element from the answer');
    assert.equal(dom.jsLinks, 0, 'no javascript: link');
    const url = page.url();
    await answer.locator('a', { hasText: 'click' }).click();
    await page.waitForTimeout(300);
    assert.equal(page.url(), url, 'the javascript: link navigates nowhere');
    assert.deepEqual(page.dialogs, [], 'no dialog was opened');
    const safe = answer.locator('a', { hasText: 'link to the Go site' });
    assert.equal(await safe.getAttribute('href'), 'https://go.dev/');
    assert.equal(await safe.getAttribute('rel'), 'noopener noreferrer nofollow');
    await shot(page, '07-markdown');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot(page, '08-markdown-dark');
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    await shot(page, '09-phone');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the page fits a phone width (overflow ${overflow}px)`);
    await page.click('#menu');
    await page.waitForTimeout(300);
    assert.ok(await page.locator('#new-chat').isVisible(), 'the sidebar opens on a phone');
    await shot(page, '10-phone-sidebar');
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test('an ERROR answer shows its code as a sentence', async () => {
    const page = await newPage(open);
    await waitForConnected(page);
    await send(page, 'fail [[demo:error]]');
    await waitForStatus(page, 'ERROR');
    const status = await lastAnswer(page).locator('.turn-status').textContent();
    assert.match(status, /The model failed while answering/);
    assert.match(status, /PROVIDER_ERROR/);
    await shot(page, '11-error');
    await page.context().close();
  });

  test('past conversations reload from the sidebar', async () => {
    const page = await newPage(open);
    await waitForConnected(page);
    await send(page, 'First conversation');
    await waitForStatus(page, 'COMPLETE');
    const first = await sessionOf(page);
    await page.click('#new-chat');
    await page.waitForFunction((s) => decodeURIComponent(location.hash.slice(1)) !== s, first);
    assert.equal(await page.locator('.turn').count(), 0, 'a new chat starts empty');
    await send(page, 'Second conversation');
    await waitForStatus(page, 'COMPLETE');
    await page.reload();
    await page.locator('.session', { hasText: 'First conversation' }).click();
    await page.waitForSelector('.turn.assistant[data-status="COMPLETE"]');
    assert.equal(await sessionOf(page), first);
    assert.equal((await lastAnswer(page).locator('.content').textContent()).trim(), demoAnswer('en', 'First conversation'));
    assert.match(await lastAnswer(page).locator('.meta').textContent(), /\d+ out/);
    await page.context().close();
  });

  test('a server with keys asks for one, refuses a wrong one and works with the right one', async () => {
    const page = await newPage(locked);
    await page.waitForSelector('#auth:not([hidden])');
    assert.match(await page.locator('#auth-prompt').textContent(), /requires an API key/);
    await page.fill('#api-key', 'wrong-key-0123456789');
    await page.press('#api-key', 'Enter');
    await page.waitForFunction(() => /refused/.test(document.getElementById('auth-error').textContent));
    assert.equal(await page.locator('#conn').getAttribute('data-state'), 'refused');
    await shot(page, '12-key-refused');
    await page.fill('#api-key', API_KEY);
    await page.press('#api-key', 'Enter');
    await waitForConnected(page);
    assert.ok(await page.locator('#auth').isHidden());
    await send(page, 'With a key');
    await waitForStatus(page, 'COMPLETE');
    assert.equal((await lastAnswer(page).locator('.content').textContent()).trim(), demoAnswer('en', 'With a key'));
    await shot(page, '13-key-accepted');
    await page.context().close();
  });

  test('the model picker lists the configured models and the answer comes from the one picked', async () => {
    const page = await newPage(twoModels);
    await waitForConnected(page);
    const names = await page.locator('#model option').evaluateAll((os) => os.map((o) => o.value));
    assert.deepEqual(names.sort(), ['demo:default', 'second'], 'the picker lists what the models query says');
    assert.equal(await page.locator('#model').inputValue(), 'demo:default', 'the default model is picked at first');
    await page.selectOption('#model', 'second');
    const q = 'Which model answers?';
    await send(page, q);
    await waitForStatus(page, 'COMPLETE');
    assert.equal((await lastAnswer(page).locator('.content').textContent()).trim(), demoAnswer('en', q));
    const meta = await lastAnswer(page).locator('.meta').textContent();
    assert.match(meta, /demo:second/, 'the END event names the picked model');
    assert.doesNotMatch(meta, /demo:default/);
    const turns = await conversation(twoModels, await sessionOf(page));
    assert.equal(turns.find((t) => t.role === 'ASSISTANT').model, 'demo:second', 'the stored answer came from the picked model');
    await shot(page, '14-model-picked');
    await assertKeptAfterReload(page, '#model', 'second');
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test('the locale selector changes the language of the answer', async () => {
    const page = await newPage(twoModels, '', { locale: 'en-US' });
    await waitForConnected(page);
    assert.equal(await page.locator('#locale').inputValue(), 'en');
    await page.selectOption('#locale', 'fr');
    const q1 = 'Answer in French';
    await send(page, q1);
    await waitForStatus(page, 'COMPLETE');
    const french = (await lastAnswer(page).locator('.content').textContent()).trim();
    assert.equal(french, demoAnswer('fr', q1));
    assert.match(french, /^Bonjour! .* in locale fr;/);
    await page.selectOption('#locale', 'ja');
    const q2 = 'Now in Japanese';
    await send(page, q2);
    await page.waitForFunction(() => document.querySelectorAll('.turn.assistant').length === 2);
    await waitForStatus(page, 'COMPLETE');
    const japanese = (await lastAnswer(page).locator('.content').textContent()).trim();
    assert.equal(japanese, demoAnswer('ja', q1, q2));
    assert.match(japanese, /^こんにちは! .* in locale ja;/);
    const turns = await conversation(twoModels, await sessionOf(page));
    assert.deepEqual(turns.filter((t) => t.role === 'USER').map((t) => t.locale), ['fr', 'ja'], 'each question carried the locale picked');
    await shot(page, '15-locales');
    await assertKeptAfterReload(page, '#locale', 'ja');
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test('a question over the rate limit shows RATE_LIMITED as a sentence with the wait', async () => {
    const page = await newPage(limited);
    await waitForConnected(page);
    await send(page, 'The one question allowed');
    await waitForStatus(page, 'COMPLETE');
    await send(page, 'One too many');
    await page.waitForFunction(() => document.querySelectorAll('.turn.assistant').length === 2);
    await waitForStatus(page, 'ERROR', 10000);
    const status = await lastAnswer(page).locator('.turn-status').textContent();
    const m = status.match(/You are asking faster than this server allows\. Try again in (\d+) s\./);
    assert.ok(m, `the refusal reads as a sentence with the wait: ${JSON.stringify(status)}`);
    // --ask-rate 1 is one question a minute: the wait is what is left of it.
    assert.ok(Number(m[1]) >= 1 && Number(m[1]) <= 61, `wait ${m[1]} s`);
    assert.match(status, /RATE_LIMITED/);
    assert.ok(await page.locator('#send').isVisible(), 'Send is back after the refusal');
    await shot(page, '16-rate-limited');
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test('dark mode: with prefers-color-scheme dark the page is dark, and light otherwise', async () => {
    // Relative luminance (WCAG) of a computed rgb()/rgba() colour.
    const luminance = (css) => {
      const [r, g, b] = css.match(/[\d.]+/g).slice(0, 3).map((v) => {
        const c = Number(v) / 255;
        return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const colours = (page) => page.evaluate(() => {
      const style = (sel) => getComputedStyle(document.querySelector(sel));
      return {
        page: style('body').backgroundColor, text: style('body').color,
        sidebar: style('.sidebar').backgroundColor, input: style('#input').backgroundColor,
      };
    });
    const page = await newPage(open, '', { colorScheme: 'dark' });
    await waitForConnected(page);
    const dark = await colours(page);
    for (const part of ['page', 'sidebar', 'input']) {
      assert.ok(luminance(dark[part]) < 0.05, `dark ${part} background is dark: ${dark[part]}`);
    }
    assert.ok(luminance(dark.text) > 0.6, `dark text is light: ${dark.text}`);
    assert.ok((luminance(dark.text) + 0.05) / (luminance(dark.page) + 0.05) >= 7, 'dark text contrasts with its background');
    await shot(page, '17-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    const light = await colours(page);
    for (const part of ['page', 'sidebar', 'input']) {
      assert.ok(luminance(light[part]) > 0.8, `light ${part} background is light: ${light[part]}`);
    }
    assert.ok(luminance(light.text) < 0.05, `light text is dark: ${light.text}`);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test('a server with OIDC takes a bearer token, refuses a forged one and owns sessions by its subject', async () => {
    const page = await newPage(oidc);
    const authorization = [];
    page.on('request', (req) => {
      if (req.url().endsWith('/graphql') && req.method() === 'POST') authorization.push(req.headers().authorization);
    });
    await page.waitForSelector('#auth:not([hidden])');
    await page.fill('#api-key', 'Bearer ' + issuer.forged('alice'));
    await page.press('#api-key', 'Enter');
    await page.waitForFunction(() => /refused this token/.test(document.getElementById('auth-error').textContent));
    assert.equal(await page.locator('#conn').getAttribute('data-state'), 'refused');
    await shot(page, '18-token-refused');
    const alice = 'Bearer ' + issuer.token('alice');
    await page.fill('#api-key', alice);
    await page.press('#api-key', 'Enter');
    await waitForConnected(page);
    assert.ok(await page.locator('#auth').isHidden());
    const q = 'With a bearer token';
    await send(page, q);
    await waitForStatus(page, 'COMPLETE');
    assert.equal((await lastAnswer(page).locator('.content').textContent()).trim(), demoAnswer('en', q));
    assert.equal(authorization[authorization.length - 1], alice, 'the page sent the token as Authorization');
    const session = await sessionOf(page);
    assert.equal((await conversation(oidc, session, alice)).length, 2, 'the conversation is alice\'s');
    const bob = await graphql(oidc, 'query($s:String!){conversation(sessionId:$s){turns{text}}}', { s: session }, 'Bearer ' + issuer.token('bob'));
    assert.equal(bob.errors && bob.errors[0].extensions.code, 'FORBIDDEN', 'another subject cannot read it');
    await shot(page, '19-token-accepted');
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });
});

describe('agent runs', { timeout: 120000 }, () => {
  test('an agent run shows its reasoning, tool calls and answer as they happen, and the same after a reload', async () => {
    // Record every state the tool cards pass through, and the reasoning
    // text while the answer streams.
    const page = await newPage(open, '', {
      init: () => {
        window.seen = { tools: [], reasoning: [] };
        new MutationObserver(() => {
          const turn = [...document.querySelectorAll('.turn.assistant')].pop();
          if (!turn) return;
          for (const card of turn.querySelectorAll('.tool')) {
            const s = card.querySelector('.tool-name').textContent + ':' + card.dataset.state;
            if (!window.seen.tools.includes(s)) window.seen.tools.push(s);
          }
          const r = turn.querySelector('.reasoning-text');
          const last = window.seen.reasoning[window.seen.reasoning.length - 1];
          if (r && turn.dataset.status === 'IN_PROGRESS' && r.textContent !== last) window.seen.reasoning.push(r.textContent);
        }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
      },
    });
    await waitForConnected(page);
    await send(page, AGENT_TRIGGER + ' run');
    // A tool card appears while the answer streams (the built-in tools
    // answer at once, so its running state may last no frame at all).
    await page.waitForSelector('.turn.assistant .tool', { timeout: 20000 });
    await shot(page, '20-agent-running');
    await waitForStatus(page, 'COMPLETE');

    const seen = await page.evaluate(() => window.seen);
    assert.ok(seen.reasoning.length >= 2, `the reasoning grew while it streamed (${seen.reasoning.length} states)`);
    for (const r of seen.reasoning) assert.ok(AGENT_REASONING.startsWith(r), `reasoning state ${JSON.stringify(r)} is a prefix of the whole`);
    for (const tool of ['calculator', 'clock']) {
      const running = seen.tools.indexOf(tool + ':running');
      const finished = seen.tools.indexOf(tool + ':finished');
      assert.ok(finished >= 0 && running < finished, `${tool} finished, never going back to running: ${seen.tools}`);
    }

    const run = await runOf(page);
    assert.deepEqual(run.map((p) => p.kind), ['reasoning', 'tool', 'tool', 'step', 'text']);
    const [reasoning, calculator, clock, step, text] = run;
    assert.deepEqual(reasoning, { kind: 'reasoning', open: false, summary: 'Reasoning', text: AGENT_REASONING }, 'the reasoning is folded and whole');
    assert.equal(calculator.name, 'calculator');
    assert.equal(calculator.state, 'finished');
    assert.equal(calculator.input, '{\n  "expression": "6*7"\n}', 'the arguments are indented JSON');
    assert.equal(calculator.output, '42');
    assert.match(calculator.duration, /^(\d+\.\d|\d+) ms$|^\d+\.\d\d s$/, 'a duration in ms (one decimal under 10 ms) or seconds');
    assert.equal(calculator.truncated, false);
    assert.equal(clock.name, 'clock');
    assert.equal(clock.state, 'finished');
    assert.equal(clock.input, '{}');
    assert.match(clock.output, /"timezone": "UTC"/, 'the clock\'s structured output is indented JSON');
    assert.equal(step.label, 'Step 2');
    assert.match(text.text, /The calculator says 6\*7 = 42\. The clock says .*That was the demo agent run/);
    assert.match(await lastAnswer(page).locator('.meta').textContent(), /demo:default/);
    await shot(page, '21-agent-complete');
    await lastAnswer(page).locator('.reasoning summary').click();
    assert.equal(await lastAnswer(page).locator('.reasoning').evaluate((d) => d.open), true, 'a click unfolds the reasoning');
    await shot(page, '22-agent-reasoning-open');

    // The stored conversation has the steps; a reload shows them alone
    // (the page resumes after the END's cursor: nothing is replayed).
    const turns = await graphql(open, 'query($s:String!){conversation(sessionId:$s){turns{role steps{reasoning toolCalls{name output}}}}}', { s: await sessionOf(page) });
    const steps = turns.data.conversation.turns.find((t) => t.role === 'ASSISTANT').steps;
    assert.deepEqual(steps.map((s) => s.toolCalls.map((c) => c.name)), [['calculator', 'clock'], []]);
    await page.reload();
    await page.waitForSelector('.turn.assistant[data-status="COMPLETE"] .content.run .tool');
    assert.deepEqual(await runOf(page), run, 'after a reload the page shows the same run, from the conversation');
    await shot(page, '23-agent-after-reload');
    await page.setViewportSize({ width: 390, height: 844 });
    // The sidebar slides away on a phone.
    await page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().right <= 0);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the run fits a phone width (overflow ${overflow}px)`);
    await shot(page, '23b-agent-phone');
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test('a tool call waiting for approval shows in a second tab, which approves it; the first answer wins', async () => {
    const a = await newPage(approving);
    await waitForConnected(a);
    const session = await sessionOf(a);
    await send(a, AGENT_TRIGGER + ' with approval');
    const boxA = approvalOf(a, 'calculator');
    await boxA.locator('.approve').waitFor({ state: 'visible', timeout: 20000 });
    assert.equal(await boxA.getAttribute('data-approval'), 'pending');
    assert.ok(await boxA.locator('.deny').isVisible(), 'Deny is shown beside Approve');
    assert.ok(await boxA.locator('.deny-reason').isVisible(), 'a denial may say why');
    assert.match(await boxA.locator('.approval-why').textContent(), /waits for your approval/);
    // The clock needs no approval: it runs while the calculator waits.
    await a.waitForSelector('.turn.assistant:last-of-type .tool[data-state="finished"]', { timeout: 10000 });
    let run = await runOf(a);
    assert.deepEqual(run.map((p) => [p.kind, p.name, p.state]), [
      ['reasoning', undefined, undefined], ['tool', 'calculator', 'approval'], ['tool', 'clock', 'finished'], ['step', undefined, undefined],
    ]);
    assert.equal(run[1].output, null, 'no result before the approval');
    assert.equal(await lastAnswer(a).getAttribute('data-status'), 'IN_PROGRESS');
    assert.equal(await a.locator('#conn').textContent(), 'Waiting for approval');
    await shot(a, '24-approval-pending');
    await a.emulateMedia({ colorScheme: 'dark' });
    await shot(a, '24b-approval-pending-dark');
    await a.emulateMedia({ colorScheme: 'light' });

    // A reload shows the run so far and the pending approval again.
    await a.reload();
    await boxA.locator('.approve').waitFor({ state: 'visible', timeout: 10000 });
    assert.deepEqual(await runOf(a), run, 'the reloaded tab shows the same run');

    // Another browser profile on the same session is replayed the request.
    const b = await newPage(approving, session);
    const boxB = approvalOf(b, 'calculator');
    await boxB.locator('.approve').waitFor({ state: 'visible', timeout: 10000 });
    await b.waitForSelector('.turn.user');
    await shot(b, '25-approval-second-tab');

    // Tab a denies first, but its answer is held on the way until tab b
    // has approved: b's approval wins, and a says why its own did not.
    let held;
    const heldAnswer = new Promise((resolve) => { held = resolve; });
    await a.route('**/graphql', (route) => {
      if (/answerApproval/.test(route.request().postData() || '')) held(route);
      else route.continue();
    });
    await boxA.locator('.deny-reason').fill('not now');
    await boxA.locator('.deny').click();
    const aRoute = await heldAnswer;
    assert.equal(await boxA.locator('.deny').isDisabled(), true, 'the buttons wait while the answer is sent');
    await boxB.locator('.approve').click();
    await Promise.all([a, b].map((p) => p.waitForSelector('.turn.assistant:last-of-type .tool-approval[data-approval="approved"]', { timeout: 10000 })));
    await aRoute.continue();
    await a.waitForFunction(() => {
      const e = document.querySelector('.turn.assistant:last-of-type .approval-error');
      return e && !e.hidden && e.textContent;
    }, null, { timeout: 10000 });
    const refusal = await boxA.locator('.approval-error').textContent();
    assert.match(refusal, /already answered|no longer waits/, `a's late denial says why it did not count: ${refusal}`);
    assert.match(refusal, /ALREADY_ANSWERED|APPROVAL_NOT_PENDING/);

    await Promise.all([waitForStatus(a, 'COMPLETE'), waitForStatus(b, 'COMPLETE')]);
    for (const p of [a, b]) {
      run = await runOf(p);
      const calculator = run.find((x) => x.kind === 'tool' && x.name === 'calculator');
      assert.equal(calculator.state, 'finished');
      assert.equal(calculator.output, '42');
      assert.match(run.find((x) => x.kind === 'text').text, /The calculator says 6\*7 = 42\./);
      assert.equal(await approvalOf(p, 'calculator').locator('.approval-answer').textContent(), 'Approved');
      assert.equal(await approvalOf(p, 'calculator').locator('.approval-actions').isHidden(), true, 'no buttons once answered');
    }
    await shot(a, '26-approval-answered');
    await shot(b, '27-approval-answered-second-tab');
    assert.deepEqual([...a.errors, ...b.errors], []);
    await a.context().close();
    await b.context().close();
  });

  test('hostile tool output stays text: a denial\'s reason on the card, in the answer, and after a reload', async () => {
    // A denial's reason comes back in the APPROVAL event, as the
    // calculator's (error) result, and in the answer that quotes it.
    const reason = HOSTILE;
    const page = await newPage(approving);
    await waitForConnected(page);
    await send(page, AGENT_TRIGGER + ' to deny');
    const box = approvalOf(page, 'calculator');
    await box.locator('.deny').waitFor({ state: 'visible', timeout: 20000 });
    await box.locator('.deny-reason').fill(reason);
    await box.locator('.deny').click();
    await page.waitForSelector('.turn.assistant:last-of-type .tool-approval[data-approval="denied"]', { timeout: 10000 });
    assert.equal(await box.locator('.approval-answer').textContent(), 'Denied: ' + reason, 'the reason shows as the text it is');
    await waitForStatus(page, 'COMPLETE');
    const check = async (when) => {
      const run = await runOf(page);
      const calculator = run.find((p) => p.kind === 'tool' && p.name === 'calculator');
      assert.equal(calculator.state, 'failed', `${when}: the denied call shows as failed`);
      assert.equal(calculator.output, 'the user denied this tool call: ' + reason, `${when}: the output is shown as the text it is`);
      assert.equal(calculator.truncated, false);
      // This server keeps 40 bytes of a tool's output: the clock's is cut.
      const clock = run.find((p) => p.kind === 'tool' && p.name === 'clock');
      assert.equal(clock.state, 'finished');
      assert.match(clock.output, /^\{"time":.*\n\[truncated: \d+ more bytes\]$/s);
      assert.equal(clock.truncated, true, `${when}: the card says the output was cut`);
      assert.match(run.find((p) => p.kind === 'text').text, /^The calculator could not answer: the user denied this tool call: /);
      assert.deepEqual(await runnableMarkup(page), INERT, `${when}: nothing of the output became markup that runs`);
    };
    await check('live');
    await shot(page, '28-hostile-tool-output');
    await page.reload();
    await page.waitForSelector('.turn.assistant[data-status="COMPLETE"] .content.run .tool');
    await check('after a reload');
    assert.deepEqual(page.dialogs, []);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });

  test('an MCP tool\'s hostile output stays text on its card and in the answer, cut to the server\'s limit, also after a reload', async () => {
    const page = await newPage(hostile);
    await waitForConnected(page);
    await send(page, AGENT_TRIGGER + ' hostile tool');
    await waitForStatus(page, 'COMPLETE');
    const check = async (when) => {
      const run = await runOf(page);
      const calculator = run.find((p) => p.kind === 'tool' && p.name === 'calculator');
      assert.equal(calculator.state, 'failed', `${when}: the tool's error result shows as failed`);
      assert.ok(calculator.output.startsWith(HOSTILE + ' xxx'), `${when}: the output is shown as the text it is: ${calculator.output}`);
      assert.match(calculator.output, /\n\[truncated: \d+ more bytes\]$/);
      assert.equal(calculator.truncated, true, `${when}: the card says the output was cut`);
      assert.match(run.find((p) => p.kind === 'text').text, /^The calculator could not answer: /);
      assert.deepEqual(await runnableMarkup(page), INERT, `${when}: nothing of the output became markup that runs`);
    };
    await check('live');
    await shot(page, '29-hostile-mcp-tool');
    await page.reload();
    await page.waitForSelector('.turn.assistant[data-status="COMPLETE"] .content.run .tool');
    await check('after a reload');
    assert.deepEqual(page.dialogs, []);
    assert.deepEqual(page.errors, []);
    await page.context().close();
  });
});
