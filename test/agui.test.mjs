// AG-UI: @ag-ui/client's HttpAgent against /api/agui.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { HttpAgent } from '@ag-ui/client';
import { CLIENT_KEY, demoAnswer, startServer, within } from './lib.mjs';

let srv; // the built-in tools run without asking
let gated; // the calculator waits for the owner's approval
let slow; // slow enough to break a run off mid-answer
before(async () => {
  const config = join(mkdtempSync(join(tmpdir(), 'tokencast-agui-')), 'tokencast.yaml');
  writeFileSync(config, 'tools:\n  builtin.calculator: { approval: required }\n');
  [srv, gated, slow] = await Promise.all([startServer(), startServer({ args: ['--config', config] }),
    startServer({ args: ['--demo-token-interval', '40ms'] })]);
});
after(async () => { await Promise.all([srv?.stop(), gated?.stop(), slow?.stop()]); });

function agent(server, threadId) {
  return new HttpAgent({ url: `${server.base}/api/agui`, headers: { 'x-api-key': CLIENT_KEY }, threadId });
}

/** Runs the agent, collecting the events it received. */
async function run(a, params = {}) {
  const events = [];
  const result = await within(15_000, a.runAgent(params, { onEvent: ({ event }) => { events.push(event); } }), 'the run');
  return { events, result };
}

test('ag-ui: HttpAgent gets a whole run with reasoning, tool calls and their results', async () => {
  const a = agent(srv, 'agui-tools');
  a.addMessage({ id: 'u1', role: 'user', content: '[[demo:agent]] please' });
  const { events } = await run(a, { runId: 'agui-run-1' });
  assert.equal(events[0].type, 'RUN_STARTED');
  assert.equal(events[0].runId, 'agui-run-1');
  assert.equal(events.at(-1).type, 'RUN_FINISHED');
  assert.equal(events.at(-1).outcome?.type, 'success');

  const calls = a.messages.flatMap((m) => m.toolCalls ?? []);
  const calc = calls.find((c) => c.id === 'demo_calc_1');
  assert.equal(calc?.function.name, 'calculator', JSON.stringify(a.messages));
  assert.deepEqual(JSON.parse(calc.function.arguments), { expression: '6*7' });
  assert.ok(calls.some((c) => c.function.name === 'clock'));
  const result = a.messages.find((m) => m.role === 'tool' && m.toolCallId === 'demo_calc_1');
  assert.equal(result?.content, '42');
  const reasoning = a.messages.find((m) => m.role === 'reasoning');
  assert.match(reasoning?.content ?? '', /calculator/);
  const answer = a.messages.filter((m) => m.role === 'assistant' && m.content).at(-1);
  assert.match(answer.content, /^The calculator says 6\*7 = 42\./);
});

test('ag-ui: a plain question streams the demo answer; the run id is the request id', async () => {
  const a = agent(srv, 'agui-text');
  a.addMessage({ id: 'u1', role: 'user', content: 'Hello, AG-UI' });
  await run(a, { runId: 'agui-run-2' });
  const answer = a.messages.filter((m) => m.role === 'assistant').at(-1);
  assert.equal(answer.content, demoAnswer('en', 'Hello, AG-UI'));
  // Running the same id again: the thread's conversation as a snapshot.
  const again = agent(srv, 'agui-text');
  const { events } = await run(again, { runId: 'agui-run-2' });
  assert.deepEqual(events.map((e) => e.type), ['RUN_STARTED', 'MESSAGES_SNAPSHOT', 'RUN_FINISHED']);
  assert.equal(again.messages.find((m) => m.id === 'agui-run-2')?.content, demoAnswer('en', 'Hello, AG-UI'));
});

test('ag-ui: an approval ends the run with an interrupt; resume answers it and the run goes on', async () => {
  const a = agent(gated, 'agui-approval');
  a.addMessage({ id: 'u1', role: 'user', content: '[[demo:agent]] ask me first' });
  const first = await run(a);
  const finished = first.events.at(-1);
  assert.equal(finished.outcome?.type, 'interrupt', JSON.stringify(finished));
  const [interrupt] = finished.outcome.interrupts;
  assert.equal(interrupt.toolCallId, 'demo_calc_1');
  assert.deepEqual(a.pendingInterrupts.map((i) => i.id), [interrupt.id]);

  const second = await run(a, { resume: [{ interruptId: interrupt.id, status: 'resolved', payload: { approved: true } }] });
  assert.equal(second.events.at(-1).outcome?.type, 'success');
  const answer = a.messages.filter((m) => m.role === 'assistant' && m.content).at(-1);
  assert.match(answer.content, /^The calculator says 6\*7 = 42\./);
});

test('ag-ui: a run broken off mid-answer goes on after its last event id, the message whole and once', async () => {
  const question = 'Resume me by my last event';
  const a = agent(slow, 'agui-last-event');
  a.addMessage({ id: 'u1', role: 'user', content: question });
  let lastEventId;
  let deltas = 0;
  let finished = false;
  // The page keeps the id of the last event it applied, then loses the run.
  await within(15_000, a.runAgent({ runId: 'agui-cut' }, {
    onEvent: ({ event }) => {
      if (event.metadata?.eventId) lastEventId = event.metadata.eventId;
      if (event.type === 'RUN_FINISHED') finished = true;
      if (event.type === 'TEXT_MESSAGE_CONTENT' && ++deltas === 3) a.abortRun();
    },
  }), 'the cut run');
  assert.ok(!finished && deltas >= 3, `the run was not cut mid-answer: ${deltas} deltas`);
  const held = a.messages.filter((m) => m.role === 'assistant');
  assert.equal(held.length, 1, JSON.stringify(a.messages));
  assert.ok(lastEventId, 'no event carried an id');
  const partial = held[0].content;
  assert.ok(partial.length > 0 && demoAnswer('en', question).startsWith(partial), partial);

  // HttpAgent sends its history again; the id says where it stopped.
  const { events } = await run(a, { forwardedProps: { lastEventId } });
  assert.equal(events.at(-1).type, 'RUN_FINISHED');
  const start = events.find((e) => e.type === 'TEXT_MESSAGE_START');
  assert.equal(start?.messageId, held[0].id, 'the message in flight is opened again under its own id');
  const answers = a.messages.filter((m) => m.role === 'assistant');
  assert.equal(answers.length, 1, JSON.stringify(a.messages));
  assert.equal(answers[0].content, demoAnswer('en', question));
});

test('ag-ui: a last event id of another thread is refused with INVALID_CURSOR', async () => {
  const other = agent(srv, 'agui-id-other');
  other.addMessage({ id: 'u1', role: 'user', content: 'Mine' });
  const { events } = await run(other);
  const lastEventId = events.findLast((e) => e.metadata?.eventId)?.metadata.eventId;
  assert.ok(lastEventId, 'no event carried an id');
  const a = agent(srv, 'agui-id-mine');
  a.addMessage({ id: 'u1', role: 'user', content: 'Hello' });
  await run(a);
  await assert.rejects(a.runAgent({ forwardedProps: { lastEventId } }), /INVALID_CURSOR/);
});
