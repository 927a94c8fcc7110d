// AppSync Events: aws-amplify 6's events client, API_KEY mode, over TLS:
// events.connect subscribes to a session's channel at
// wss://…/event/realtime (subprotocols aws-appsync-event-ws and header-…),
// events.post publishes with POST https://…/event.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { CLIENT_KEY, SERVICE_KEY, ask, checkAnswer, collector, countingWebSocket, demoAnswer, startServer, within } from './lib.mjs';

const { WebSocket: Counting, counter } = countingWebSocket(WebSocket);
globalThis.WebSocket = Counting;
const { Amplify } = await import('amplify6');
const { events } = await import('amplify6/data');

let srv;
before(async () => {
  srv = await startServer({ tls: true });
  Amplify.configure({ API: { Events: { endpoint: `${srv.base}/event`, region: 'us-east-1', defaultAuthMode: 'apiKey', apiKey: CLIENT_KEY } } });
});
after(async () => {
  await events.closeAll();
  await srv?.stop();
});

/** Resolves when the socket says subscribe_success or subscribe_error. */
function acked(socket) {
  return new Promise((resolve) => {
    const seen = (msg) => {
      const m = JSON.parse(String(msg.data ?? msg));
      if (m.type === 'subscribe_success' || m.type === 'subscribe_error') {
        socket.removeEventListener('message', seen);
        resolve(m);
      }
    };
    socket.addEventListener('message', seen);
  });
}

/** Subscribes to a session's channel; events pass to onEvent once live. */
async function watch(sessionId, onEvent, onError = (err) => assert.fail(`subscription error ${JSON.stringify(err?.errors ?? String(err))}`)) {
  const channel = await events.connect(`/tokencast/sessions/${sessionId}`);
  const ack = acked(counter.sockets.at(-1));
  channel.subscribe({ next: (data) => onEvent(data.event), error: onError });
  return { channel, ack: await within(15_000, ack, 'subscribe_success') };
}

test('Amplify v6 events: a session channel receives the whole answer, then a service\'s publishes', async () => {
  const c = collector();
  const later = [];
  let sawLater;
  const laterSeen = new Promise((resolve) => { sawLater = resolve; });
  const { channel, ack } = await watch('evt-1', (ev) => {
    if (ev.requestId) { c.push(ev); return; }
    later.push(ev);
    if (later.length === 2) sawLater(later);
  });
  try {
    assert.equal(ack.type, 'subscribe_success');
    const url = new URL(counter.urls.at(-1));
    assert.equal(url.protocol, 'wss:');
    assert.equal(url.pathname, '/event/realtime');
    assert.equal(counter.protocols.at(-1)[0], 'aws-appsync-event-ws');
    assert.match(counter.protocols.at(-1)[1], /^header-/);
    assert.equal(counter.sockets.at(-1).protocol, 'aws-appsync-event-ws');

    const requestId = await ask(srv, { sessionId: 'evt-1', message: 'Hello from Events' });
    const answer = await within(15_000, c.done, 'answer');
    checkAnswer(assert, answer, requestId, demoAnswer('en', 'Hello from Events'));

    // A service publishes: over HTTP (events.post), and over the socket.
    const failed = await events.post('/tokencast/sessions/evt-1', { message: 'posted by the service', locale: 'en' }, { apiKey: SERVICE_KEY });
    assert.equal(failed, undefined, `failed events: ${JSON.stringify(failed)}`);
    await channel.publish('published by the service', { apiKey: SERVICE_KEY });
    const got = await within(15_000, laterSeen, 'the service\'s events');
    assert.deepEqual(got.map((e) => [e.type, e.message]), [['MESSAGE', 'posted by the service'], ['MESSAGE', 'published by the service']]);
    assert.equal(got[0].sessionId, 'evt-1');
  } finally {
    channel.close();
  }
});

test('Amplify v6 events: a client may not publish into a session', async () => {
  const { channel } = await watch('evt-2', () => {});
  try {
    await assert.rejects(channel.publish('not mine to send'), /UnauthorizedException/);
    await assert.rejects(events.post('/tokencast/sessions/evt-2', 'nor this'), /UnauthorizedException|401/);
  } finally {
    channel.close();
  }
});

test('Amplify v6 events: a second subscriber joining mid-answer gets it from its START (no replay in Events: the answer in flight)', async () => {
  const first = collector();
  let firstDelta;
  const sawDelta = new Promise((resolve) => { firstDelta = resolve; });
  const a = await watch('evt-3', (ev) => { first.push(ev); if (ev.type === 'DELTA') firstDelta(); });
  let b;
  try {
    const requestId = await ask(srv, { sessionId: 'evt-3', message: 'Join me late' });
    await within(15_000, sawDelta, 'the first DELTA');
    const late = collector();
    b = await watch('evt-3', (ev) => late.push(ev));
    const want = demoAnswer('en', 'Join me late');
    checkAnswer(assert, await within(15_000, first.done, 'answer'), requestId, want);
    checkAnswer(assert, await within(15_000, late.done, 'late answer'), requestId, want);
  } finally {
    a.channel.close();
    b?.channel.close();
  }
});
