// The Vercel AI SDK (`ai`): DefaultChatTransport and readUIMessageStream,
// as a useChat page uses them, against /api/chat.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DefaultChatTransport, readUIMessageStream } from 'ai';
import { CLIENT_KEY, answered, demoAnswer, freePort, startServer, within } from './lib.mjs';

let srv; // a fast demo model
let slow; // one slow enough to reload and stop mid-answer
before(async () => {
  [srv, slow] = await Promise.all([
    startServer(),
    startServer({ args: ['--demo-token-interval', '40ms'] }),
  ]);
});
after(async () => { await Promise.all([srv?.stop(), slow?.stop()]); });

function transport(server) {
  return new DefaultChatTransport({ api: `${server.base}/api/chat`, headers: { 'x-api-key': CLIENT_KEY } });
}

function userMessage(text) {
  return { id: `u-${Math.random().toString(36).slice(2)}`, role: 'user', parts: [{ type: 'text', text }] };
}

async function send(server, chatId, text, abortSignal) {
  return transport(server).sendMessages({
    chatId, messages: [userMessage(text)], trigger: 'submit-message', messageId: undefined, abortSignal,
  });
}

/** The UI message readUIMessageStream builds of the whole stream. */
async function lastMessage(stream) {
  let last;
  for await (const message of readUIMessageStream({ stream, terminateOnError: true })) last = message;
  return last;
}

const textOf = (message) => message.parts.filter((p) => p.type === 'text').map((p) => p.text).join('');

test('ai: DefaultChatTransport and readUIMessageStream receive a whole answer', async () => {
  const question = 'Hello from the AI SDK';
  const message = await within(15_000, lastMessage(await send(srv, 'ai-whole', question)), 'the answer');
  assert.equal(message.role, 'assistant');
  assert.equal(textOf(message), demoAnswer('en', question));
  assert.equal(message.metadata.status, 'COMPLETE');
  assert.equal(message.metadata.requestId, message.id);
  assert.ok(message.metadata.usage.outputTokens > 0);
  await answered(srv, { sessionId: 'ai-whole', requestId: message.id });
  // The server keeps the conversation: the next answer knows the first question.
  const next = await lastMessage(await send(srv, 'ai-whole', 'And then?'));
  assert.equal(textOf(next), demoAnswer('en', question, 'And then?'));
});

test('ai: an agent run shows reasoning, both tool calls with their outputs, and the answer', async () => {
  const message = await within(15_000, lastMessage(await send(srv, 'ai-agent', '[[demo:agent]] please')), 'the run');
  const reasoning = message.parts.filter((p) => p.type === 'reasoning').map((p) => p.text).join('');
  assert.match(reasoning, /calculator/);
  const calc = message.parts.find((p) => p.type === 'tool-calculator');
  assert.equal(calc?.state, 'output-available', JSON.stringify(message.parts));
  assert.deepEqual(calc.input, { expression: '6*7' });
  assert.equal(calc.output, '42');
  assert.equal(message.parts.find((p) => p.type === 'tool-clock')?.state, 'output-available');
  assert.match(textOf(message), /^The calculator says 6\*7 = 42\./);
  assert.equal(message.parts.filter((p) => p.type === 'step-start').length, 2);
});

test('ai: resuming after a reload mid-answer gets the whole answer, nothing missing or doubled', async () => {
  const question = 'Reload me';
  const reload = new AbortController();
  const reader = (await send(slow, 'ai-resume', question, reload.signal)).getReader();
  let requestId;
  for (let deltas = 0; deltas < 3;) {
    const { value, done } = await reader.read();
    assert.ok(!done, 'the answer ended before the reload');
    if (value.type === 'start') requestId = value.messageId;
    if (value.type === 'text-delta') deltas++;
  }
  reload.abort(); // the page goes away; the answer goes on at the server
  await reader.cancel().catch(() => {});

  const resumed = await transport(slow).reconnectToStream({ chatId: 'ai-resume' });
  assert.ok(resumed, 'nothing to resume while the answer is in flight');
  const message = await within(15_000, lastMessage(resumed), 'the resumed answer');
  assert.equal(message.id, requestId);
  assert.equal(textOf(message), demoAnswer('en', question));
  assert.equal(message.metadata.status, 'COMPLETE');
  await answered(slow, { sessionId: 'ai-resume', requestId });
  assert.equal(await transport(slow).reconnectToStream({ chatId: 'ai-resume' }), null, 'resume after the end');
});

test('ai: stop cancels the answer at the provider; the conversation says CANCELLED', async () => {
  const question = 'Stop me';
  const reader = (await send(slow, 'ai-stop', question)).getReader();
  let requestId;
  let shown = '';
  for (;;) {
    const { value } = await reader.read();
    if (value.type === 'start') requestId = value.messageId;
    if (value.type === 'text-delta') { shown += value.delta; break; }
  }
  // What a page's stop button calls besides useChat's stop().
  const res = await fetch(`${slow.base}/api/chat/ai-stop/stop`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY }, body: '{}',
  });
  assert.deepEqual(await res.json(), { requestId, cancelled: true });
  const rest = [];
  for (;;) {
    const { value, done } = await within(15_000, reader.read(), 'the end of the stream');
    if (done) break;
    rest.push(value);
    if (value.type === 'text-delta') shown += value.delta;
  }
  assert.equal(rest.at(-1)?.type, 'abort', JSON.stringify(rest));
  assert.equal(rest.at(-2)?.messageMetadata?.status, 'CANCELLED');
  assert.ok(demoAnswer('en', question).startsWith(shown) && shown !== demoAnswer('en', question), `shown ${shown}`);
  await answered(slow, { sessionId: 'ai-stop', requestId, status: 'CANCELLED' });
});

test('ai: a refused request is an error the transport throws, with the server\'s code', async () => {
  const bad = new DefaultChatTransport({ api: `${srv.base}/api/chat`, headers: { 'x-api-key': 'wrong-key-0123456789' } });
  await assert.rejects(
    bad.sendMessages({ chatId: 'ai-x', messages: [userMessage('hi')], trigger: 'submit-message', messageId: undefined }),
    /UNAUTHENTICATED/,
  );
});

test('ai: a worker killed mid-run: the message holds each step once and the new attempt\'s answer, sent and resumed', async (t) => {
  const nats = `127.0.0.1:${await freePort()}`;
  const api = await startServer({ args: ['--role', 'api', '--nats-listen', nats, '--ack-wait', '1s'] });
  const worker = () => startServer({ args: ['--role', 'worker', '--nats-url', `nats://${nats}`, '--ack-wait', '1s',
    '--demo-ttft', '0', '--demo-token-interval', '40ms'] });
  const workers = [await worker()];
  t.after(() => Promise.all([api, ...workers].map((s) => s.stop())));

  const check = (message, what) => {
    const kinds = message.parts.map((p) => p.type);
    assert.deepEqual(kinds, ['step-start', 'reasoning', 'tool-calculator', 'tool-clock', 'step-start', 'text'], `${what}: ${JSON.stringify(message.parts)}`);
    assert.equal(message.parts[2].output, '42', what);
    assert.equal(message.parts[3].state, 'output-available', what);
    assert.match(textOf(message), /^The calculator says 6\*7 = 42\. The clock says .+\. That was the demo agent run: reasoning, two tool calls, and this answer\.$/, what);
    assert.equal(message.metadata.status, 'COMPLETE', what);
  };
  let killed = false;
  let last;
  for await (const message of readUIMessageStream({ stream: await send(api, 'ai-crash', '[[demo:agent]] survive'), terminateOnError: true })) {
    last = message;
    // The worker dies while the second step's text streams.
    if (!killed && message.parts.at(-1)?.type === 'text' && message.parts.at(-1).text.length > 0) {
      killed = true;
      await workers[0].crash();
      workers.push(await worker());
    }
  }
  assert.ok(killed, 'the run ended before the worker could be killed');
  check(last, 'the message sent');
  await answered(api, { sessionId: 'ai-crash', requestId: last.id });

  // A page that reloads while it is in flight resumes it the same way; after
  // the end there is nothing to resume, so the resumed read is of a second
  // run, killed in the same place.
  const w = workers.at(-1);
  const stream = await send(api, 'ai-crash-2', '[[demo:agent]] survive');
  const reader = stream.getReader();
  for (let text = 0; text < 2;) {
    const { value, done } = await reader.read();
    assert.ok(!done, 'the second run ended before the crash');
    if (value.type === 'text-delta') text++;
  }
  await reader.cancel().catch(() => {});
  await w.crash();
  workers.push(await worker());
  const resumed = await transport(api).reconnectToStream({ chatId: 'ai-crash-2' });
  assert.ok(resumed, 'nothing to resume while the run is in flight');
  check(await within(30_000, lastMessage(resumed), 'the resumed run'), 'the message resumed');
});
